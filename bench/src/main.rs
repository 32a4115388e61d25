//! Fugue benchmarks: `cargo run --release -p fugue-bench -- [http|gateway|federation] [--quick]`.
//!
//! Starts the home server in a child process (this binary re-executed with `--serve` or
//! `--serve-gateway`) on a loopback port with a fresh database, loads it over real HTTP and
//! WebSockets from this process and prints rates and latency percentiles. Every loop is
//! bounded in count and time. Without a subcommand every part runs: `http` (accounts,
//! sessions, ID-Certs) first, then `gateway` (see `gateway.rs`), then `federation` (key
//! trial sign-ins on a second server, see `federation.rs`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark aborts on setup errors"
)]

mod federation;
mod gateway;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use rand_core::OsRng;

use fugue_client::{Client, IdentityKey};
use fugue_proto::certs::ActorCsr;
use fugue_proto::certs::issue::{self, Window};
use fugue_proto::{FederationId, Serial, SessionId};

const PASSWORD: &str = "benchmark password 1";

const USAGE: &str = "usage: fugue-bench [http|gateway|federation] [--quick]";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match args.get(1).map(String::as_str) {
        Some("--serve") => rt.block_on(serve(&args[2], &args[3])),
        Some("--serve-gateway") => rt.block_on(gateway::serve(&args[2..])),
        Some("--serve-federation") => rt.block_on(federation::serve(&args[2..])),
        _ => {
            let quick = args.iter().any(|a| a == "--quick");
            let (mut http, mut gw, mut fed) = (false, false, false);
            for a in args.iter().skip(1).filter(|a| *a != "--quick") {
                match a.as_str() {
                    "http" | "--http" => http = true,
                    "gateway" | "--gateway" => gw = true,
                    "federation" | "--federation" => fed = true,
                    _ => {
                        eprintln!("{USAGE}");
                        std::process::exit(2);
                    }
                }
            }
            if !http && !gw && !fed {
                (http, gw, fed) = (true, true, true);
            }
            println!(
                "# fugue-bench ({} mode)",
                if quick { "quick" } else { "full" }
            );
            if http {
                rt.block_on(bench(quick));
            }
            if gw {
                rt.block_on(gateway::bench(quick));
            }
            if fed {
                rt.block_on(federation::bench(quick));
            }
        }
    }
}

/// The child: a server with production defaults (Argon2 cost included) but no rate limits.
async fn serve(dir: &str, port_file: &str) {
    let store = fugue_store::Store::open_sqlite(
        &std::path::Path::new(dir).join("fugue.db"),
        fugue_store::SqliteSync::Full,
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config =
        fugue_server::Config::new("localhost".parse().unwrap(), format!("http://{addr}"));
    config.rate_limits.login_per_minute = 0;
    config.rate_limits.register_per_minute = 0;
    config.rate_limits.sensitive_per_minute = 0;
    let sink = Arc::new(NoSink);
    let server = fugue_server::Server::new(config, store, SigningKey::generate(&mut OsRng), sink)
        .await
        .unwrap();
    std::fs::write(port_file, addr.port().to_string()).unwrap();
    server
        .serve(listener, std::future::pending())
        .await
        .unwrap();
}

pub(crate) struct NoSink;
impl fugue_server::KeySink for NoSink {
    fn persist(&self, _: &SigningKey) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) struct Child_(pub(crate) Child);
impl Drop for Child_ {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this binary with `args` and waits (up to 60 s) for the port it writes to
/// `port_file`. None if the child exited or never wrote it.
pub(crate) async fn start_child(
    args: &[String],
    port_file: &Path,
    show_stderr: bool,
) -> Option<(Child_, u16)> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Child_(
        Command::new(exe)
            .args(args)
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
        if let Ok(p) = std::fs::read_to_string(port_file)
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
async fn load<F, Fut>(
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

fn issuance_per_second(n: usize) -> f64 {
    // Parse and check the CSR, build and sign the certificate: what the CA does per login.
    let ca = SigningKey::generate(&mut OsRng);
    let fid: FederationId = "alice@localhost".parse().unwrap();
    let sid: SessionId = "bench".parse().unwrap();
    let actor = IdentityKey::generate();
    let csr = actor.csr_pem(&fid, &sid).unwrap();
    let start = Instant::now();
    for i in 0..n {
        let parsed = ActorCsr::parse(csr.as_bytes()).unwrap();
        let session = parsed.check_claims(&fid).unwrap();
        let window = Window {
            not_before: 1_800_000_000,
            not_after: 1_802_592_000,
        };
        let tbs =
            issue::actor_tbs(Serial(i as u64 + 1), &fid, &session, &parsed.key, window).unwrap();
        let der = issue::finish_cert(tbs, |m| ca.sign(m).to_bytes()).unwrap();
        std::hint::black_box(der);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn argon2_ms() -> f64 {
    use argon2::password_hash::PasswordHasher;
    let p = fugue_server::config::PasswordHashing::default();
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, None).unwrap();
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut times: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(a.hash_password(PASSWORD.as_bytes()).unwrap());
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[3]
}

async fn bench(quick: bool) {
    let scale = if quick { 10 } else { 1 };
    println!("## accounts, sessions, ID-Certs (http)");
    println!(
        "argon2id hash (19 MiB, t=2, p=1), median of 7: {:.1} ms",
        argon2_ms()
    );
    let n = 20_000 / scale;
    let one = issuance_per_second(n);
    let two = {
        let a = std::thread::spawn(move || issuance_per_second(n));
        let b = issuance_per_second(n);
        b + a.join().unwrap()
    };
    println!(
        "issuance (parse+check CSR, build+sign cert): {one:.0}/s on 1 thread, {two:.0}/s on 2 threads"
    );

    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let (child, port) = start_child(
        &[
            "--serve".into(),
            dir.path().to_str().unwrap().into(),
            port_file.to_str().unwrap().into(),
        ],
        &port_file,
        false,
    )
    .await
    .expect("server did not start");
    let pid = child.0.id();
    let base = format!("http://127.0.0.1:{port}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "server idle RSS: {:.1} MiB",
        rss_kib(pid, "VmRSS:") as f64 / 1024.0
    );

    let client = Client::new(&base).unwrap();
    client
        .register("alice", PASSWORD, None, None)
        .await
        .unwrap();
    let fid: FederationId = "alice@localhost".parse().unwrap();

    let logins = 200 / scale;
    let c = client.clone();
    let f = fid.clone();
    let (rate, lat) = load(4, logins, Duration::from_secs(30), move |i| {
        let (c, f) = (c.clone(), f.clone());
        async move {
            let sid: SessionId = format!("s{i}").parse().unwrap();
            c.login("alice", PASSWORD, None, &IdentityKey::generate(), &f, &sid)
                .await
                .unwrap();
        }
    })
    .await;
    println!(
        "logins with CSR over HTTP (4 concurrent): {rate:.1}/s, p50 {:.1} ms, p99 {:.1} ms ({} logins)",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.len()
    );

    println!(
        "server RSS after logins: {:.1} MiB",
        rss_kib(pid, "VmRSS:") as f64 / 1024.0
    );
    // A typical actor: two devices, two certificates.
    client.register("bob", PASSWORD, None, None).await.unwrap();
    let bob: FederationId = "bob@localhost".parse().unwrap();
    for sid in ["laptop", "phone"] {
        let sid: SessionId = sid.parse().unwrap();
        client
            .login("bob", PASSWORD, None, &IdentityKey::generate(), &bob, &sid)
            .await
            .unwrap();
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let url = format!("{base}{}", fugue_proto::api::get_actor_idcerts::path(&bob));
    let lookups = 200_000 / scale;
    let (rate, lat) = load(32, lookups, Duration::from_secs(15), move |_| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let resp = http.get(&url).send().await.unwrap();
            assert!(resp.status().is_success());
            std::hint::black_box(resp.bytes().await.unwrap());
        }
    })
    .await;
    println!(
        "GET /idcert/actor/{{fid}} (2 certs, 32 concurrent): {rate:.0}/s, p50 {:.2} ms, p99 {:.2} ms ({} requests)",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.len()
    );

    println!(
        "server RSS after lookups: {:.1} MiB",
        rss_kib(pid, "VmRSS:") as f64 / 1024.0
    );
    let c = client.clone();
    let f = fid.clone();
    let (rate, lat) = load(32, lookups, Duration::from_secs(15), move |_| {
        let (c, f) = (c.clone(), f.clone());
        async move {
            let q = fugue_proto::api::get_actor_idcerts::Query {
                session_id: Some("s0".into()),
                ..Default::default()
            };
            std::hint::black_box(c.actor_certs(&f, q).await.unwrap());
        }
    })
    .await;
    println!(
        "GET /idcert/actor/{{fid}}?sessionId=s0 (1 of {logins} certs, through fugue-client, 32 concurrent): {rate:.0}/s, p50 {:.2} ms, p99 {:.2} ms ({} requests)",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.len()
    );
    println!(
        "server RSS after load: {:.1} MiB (peak {:.1} MiB)",
        rss_kib(pid, "VmRSS:") as f64 / 1024.0,
        rss_kib(pid, "VmHWM:") as f64 / 1024.0
    );
    drop(child);
}
