//! Fugue benchmarks: `cargo run --release -p fugue-bench --
//! [http|gateway|federation|flood|chat|media|migration|mls] [--quick]`.
//!
//! Starts the home server in a child process (this binary re-executed with `--serve`,
//! `--serve-gateway` or `--serve-federation`) on a loopback port with a fresh database, loads
//! it over real HTTP and WebSockets from this process and prints rates and latency
//! percentiles. Every loop is bounded in count and time. Without a subcommand every part
//! runs: `http` (accounts, sessions, ID-Certs, see `http.rs`) first, then `gateway` (see
//! `gateway/`), then `federation` (key trial sign-ins on a second server, see
//! `federation.rs`), then `flood` (a login flood against a loaded gateway, see `flood.rs`), then
//! `chat` (the chat scenarios S1–S5, see `chat.rs`), then `media` (a 100 MiB upload and
//! download against the disk's own speed, see `media.rs`), then `migration` (export and
//! import of 100,000 messages, re-signing, see `migration.rs`), then `mls` (encrypted sends,
//! delivery, KeyPackage claims and adding a device to a group of 1,000, see `mls.rs`).
//!
//! This file keeps what the parts share: the dispatcher, the child server's common set-up,
//! starting a child and killing it on drop, and the readings (RSS, percentiles, a load loop).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark aborts on setup errors"
)]

mod chat;
mod federation;
mod flood;
mod gateway;
mod http;
mod media;
mod migration;
mod mls;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;

use fugue_server::{Config, Server};
use fugue_store::Store;

const PASSWORD: &str = "benchmark password 1";

const USAGE: &str =
    "usage: fugue-bench [http|gateway|federation|flood|chat|media|migration|mls] [--quick]";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match args.get(1).map(String::as_str) {
        Some("--serve") => rt.block_on(http::serve(&args[2..])),
        Some("--serve-gateway") => rt.block_on(gateway::serve(&args[2..])),
        Some("--serve-federation") => rt.block_on(federation::serve(&args[2..])),
        Some("--serve-chat") => rt.block_on(chat::serve(&args[2..])),
        Some("--serve-media") => rt.block_on(media::serve(&args[2..])),
        _ => {
            let quick = args.iter().any(|a| a == "--quick");
            let (mut http, mut gw, mut fed, mut flood, mut chat, mut media, mut moving) =
                (false, false, false, false, false, false, false);
            let mut mls = false;
            for a in args.iter().skip(1).filter(|a| *a != "--quick") {
                match a.as_str() {
                    "http" | "--http" => http = true,
                    "gateway" | "--gateway" => gw = true,
                    "federation" | "--federation" => fed = true,
                    "flood" | "--flood" => flood = true,
                    "chat" | "--chat" => chat = true,
                    "media" | "--media" => media = true,
                    "migration" | "--migration" => moving = true,
                    "mls" | "--mls" => mls = true,
                    _ => {
                        eprintln!("{USAGE}");
                        std::process::exit(2);
                    }
                }
            }
            if !http && !gw && !fed && !flood && !chat && !media && !moving && !mls {
                (http, gw, fed, flood, chat, media, moving, mls) =
                    (true, true, true, true, true, true, true, true);
            }
            println!(
                "# fugue-bench ({} mode)",
                if quick { "quick" } else { "full" }
            );
            if http {
                rt.block_on(http::bench(quick));
            }
            if gw {
                rt.block_on(gateway::bench(quick));
            }
            if fed {
                rt.block_on(federation::bench(quick));
            }
            if flood {
                rt.block_on(flood::bench(quick));
            }
            if chat {
                rt.block_on(chat::bench(quick));
            }
            if media {
                rt.block_on(media::bench(quick));
            }
            if moving {
                rt.block_on(migration::bench(quick));
            }
            if mls {
                rt.block_on(mls::bench(quick));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The child side.

/// The SQLite database of a child in `dir` (`synchronous=FULL`, as in production).
pub(crate) async fn open_sqlite(dir: &Path) -> Store {
    Store::open_sqlite(&dir.join("fugue.db"), fugue_store::SqliteSync::Full)
        .await
        .unwrap()
}

/// Cheap Argon2 (256 KiB, one pass), for children that set up hundreds of accounts and do not
/// measure password checks.
pub(crate) fn cheap_hashing(config: &mut Config) {
    config.password_hashing.memory_kib = 256;
    config.password_hashing.iterations = 1;
}

/// Runs a child server until it is killed: production defaults for `domain` (Argon2 cost
/// included) but no per-client rate limits and no cap on one actor's sessions, changed further by `configure`, on a loopback
/// port written to `port_file` once it listens, with the routes `extra` builds merged in.
pub(crate) async fn serve_child(
    port_file: &str,
    domain: &str,
    store: Store,
    key: SigningKey,
    configure: impl FnOnce(&mut Config),
    extra: impl FnOnce(&Server) -> axum::Router,
) {
    // What the server logs as failures reaches the benchmark's terminal (children started
    // with their stderr shown).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .try_init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = Config::new(domain.parse().unwrap(), format!("http://{addr}"));
    config.rate_limits.login_per_minute = 0;
    config.rate_limits.failed_logins_per_minute = 0;
    config.rate_limits.register_per_minute = 0;
    config.rate_limits.sensitive_per_minute = 0;
    // The load opens many sessions of one actor (a shape, not a person).
    config.limits.max_sessions_per_actor = 100_000;
    configure(&mut config);
    let server = Server::new(config, store, key, Arc::new(NoSink))
        .await
        .unwrap();
    let extra = extra(&server);
    std::fs::write(port_file, addr.port().to_string()).unwrap();
    server
        .serve_with(extra, listener, std::future::pending())
        .await
        .unwrap();
}

pub(crate) struct NoSink;
impl fugue_server::KeySink for NoSink {
    fn persist(&self, _: &SigningKey) -> std::io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The parent side.

/// A child process, killed and reaped when this is dropped (also when the benchmark panics).
pub(crate) struct KillOnDrop(Child);

impl KillOnDrop {
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this binary as a child server: `flag <dir> <dir>/port extra…`, `dir` created first.
/// Waits (up to 60 s) for the port the child writes to `<dir>/port`; None if the child
/// exited or never wrote it.
pub(crate) async fn start_child(
    flag: &str,
    dir: &Path,
    extra: &[String],
    show_stderr: bool,
) -> Option<(KillOnDrop, u16)> {
    std::fs::create_dir_all(dir).unwrap();
    let port_file = dir.join("port");
    let exe = std::env::current_exe().unwrap();
    let mut child = KillOnDrop(
        Command::new(exe)
            .arg(flag)
            .arg(dir)
            .arg(&port_file)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(if show_stderr {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(p) = std::fs::read_to_string(&port_file)
            && let Ok(p) = p.trim().parse::<u16>()
        {
            return Some((child, p));
        }
        if Instant::now() > deadline || child.0.try_wait().ok().flatten().is_some() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Raises the soft open-file limit towards `want` (at most the hard limit); returns the
/// limit in force.
pub(crate) fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let current = lim.current.unwrap_or(u64::MAX);
    if current >= want {
        return current;
    }
    let target = lim.maximum.map_or(want, |m| m.min(want));
    let new = Rlimit {
        current: Some(target),
        maximum: lim.maximum,
    };
    match setrlimit(Resource::Nofile, new) {
        Ok(()) => target,
        Err(_) => current,
    }
}

pub(crate) fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs `op` from `concurrency` tasks until `max_ops` operations or `max_time` passed;
/// returns (operations per second, sorted latencies).
pub(crate) async fn load<F, Fut>(
    concurrency: usize,
    max_ops: usize,
    max_time: Duration,
    op: F,
) -> (f64, Vec<Duration>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (op, counter) = (op.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= max_ops || start.elapsed() > max_time {
                    return lat;
                }
                let t = Instant::now();
                op(i).await;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    (all.len() as f64 / elapsed, all)
}
