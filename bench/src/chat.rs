//! Chat benchmarks S1–S5: the scenarios a Matrix homeserver was measured on here, so that
//! the two can be compared (docs/performance.md). Over real HTTP and the gateway on loopback,
//! against a child server on SQLite and, when `FUGUE_BENCH_DATABASE_URL` (or
//! `TEST_DATABASE_URL`) names a PostgreSQL server, on PostgreSQL too.
//!
//! - S1: register and log in 100 accounts, 10 at a time (production Argon2) — accounts/s.
//! - S2: a guild channel with 100 members; 10 concurrent senders send 2,000 signed messages —
//!   messages/s and send latency p50/p95/p99.
//! - S3: 50 members connected to the gateway; one sender sends 200 messages at 20/s —
//!   latency from send to receipt at each member, over all 10,000 deliveries.
//! - S4: fetch the latest 2,000 messages of that channel, 100 per page — wall time.
//! - S5: one channel of 1,000 connected members, 20 messages/s for 30 s — delivery p99 and
//!   the server's CPU.
//! - The server's RSS idle and its peak during S2–S5.
//!
//! S1 runs on a child with production password hashing; S2–S5 on a second child whose
//! accounts hash cheaply (set-up of 1,000 accounts is not what is measured). Chat rate limits
//! are off in both (10 senders on one channel are a load, not a spammer).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use ed25519_dalek::SigningKey;
use rand_core::{OsRng, RngCore};

use fugue_client::{Client, IdentityKey, Session};
use fugue_proto::api::{create_channel, create_guild, get_messages, join_guild, send_message};
use fugue_proto::chat::{Channel, Guild, Message, MessageBody};
use fugue_proto::{FederationId, SessionId};
use fugue_store::Store;
use fugue_testkit::ws::{self, Received, Ws};

use crate::{
    KillOnDrop, PASSWORD, cheap_hashing, load, open_sqlite, percentile, raise_nofile, rss_kib,
    serve_child, start_child,
};

const DOMAIN: &str = "localhost";

/// The child: `--serve-chat <dir> <port file> <sqlite|postgres> <cheap|production> [url]`.
pub async fn serve(args: &[String]) {
    raise_nofile(8192);
    let dir = std::path::Path::new(&args[0]);
    let store = match args[2].as_str() {
        "postgres" => {
            let schema = format!("bench_{:016x}", OsRng.next_u64());
            Store::open_postgres(&args[4], Some(&schema), 16)
                .await
                .unwrap()
        }
        _ => open_sqlite(dir).await,
    };
    let cheap = args[3] == "cheap";
    serve_child(
        &args[1],
        DOMAIN,
        store,
        SigningKey::generate(&mut OsRng),
        |c| {
            if cheap {
                cheap_hashing(c);
            }
            c.rate_limits.chat_messages_per_5s = 0;
            c.rate_limits.chat_channels_per_5min = 0;
            c.rate_limits.chat_guild_ops_per_minute = 0;
        },
        |_| axum::Router::new(),
    )
    .await;
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn fid(name: &str) -> FederationId {
    format!("{name}@{DOMAIN}").parse().unwrap()
}

pub(crate) async fn child(
    engine: &Engine,
    hashing: &str,
) -> (KillOnDrop, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut extra = vec![engine.name().to_owned(), hashing.to_owned()];
    if let Engine::Postgres(url) = engine {
        extra.push(url.clone());
    }
    let (child, port) = start_child("--serve-chat", dir.path(), &extra, true)
        .await
        .expect("chat server did not start");
    (child, format!("http://127.0.0.1:{port}"), dir)
}

/// Registers and logs in `names`, `concurrency` at a time; returns the sessions in order.
pub(crate) async fn accounts(base: &str, names: &[String], concurrency: usize) -> Vec<Session> {
    let client = Client::new(base).unwrap();
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for name in names {
        let (client, name, slots) = (client.clone(), name.clone(), slots.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire().await.unwrap();
            client.register(&name, PASSWORD, None, None).await.unwrap();
            let sid: SessionId = "bench".parse().unwrap();
            client
                .login(
                    &name,
                    PASSWORD,
                    None,
                    &IdentityKey::generate(),
                    &fid(&name),
                    &sid,
                )
                .await
                .unwrap()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// A public guild of `owner` with one text channel; `members` join it.
pub(crate) async fn guild_with_channel(owner: &Session, members: &[Session]) -> u64 {
    let http = owner.client().raw().clone();
    let base = owner.client().base_url().to_owned();
    let guild: Guild = http
        .post(format!("{base}{}", create_guild::PATH))
        .bearer_auth(owner.token())
        .json(&serde_json::json!({"name": "bench", "private": false}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let channel: Channel = http
        .post(format!("{base}{}", create_channel::path(guild.id)))
        .bearer_auth(owner.token())
        .json(&serde_json::json!({"name": "general", "type": 1}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let slots = Arc::new(tokio::sync::Semaphore::new(10));
    let mut joins = Vec::new();
    for m in members {
        let (http, url, token, slots) = (
            http.clone(),
            format!("{base}{}", join_guild::path(guild.id)),
            m.token().to_owned(),
            slots.clone(),
        );
        joins.push(tokio::spawn(async move {
            let _slot = slots.acquire().await.unwrap();
            let resp = http
                .post(url)
                .bearer_auth(token)
                .json(&join_guild::Request::default())
                .send()
                .await
                .unwrap();
            let status = resp.status();
            assert!(
                status.is_success(),
                "join: {status} {}",
                resp.text().await.unwrap_or_default()
            );
        }));
    }
    for j in joins {
        j.await.unwrap();
    }
    channel.id
}

/// A member sending signed messages, set up once: its chat handle and the serial of its
/// certificate, so that a send costs what a client's send costs (sign and post), not also a
/// parse of the certificate.
pub(crate) struct Sender {
    chat: fugue_client::Chat,
    session: Session,
    serial: fugue_proto::Serial,
}

impl Sender {
    pub(crate) fn new(session: &Session) -> Self {
        Self {
            chat: session.chat(),
            serial: session.current_serial().unwrap(),
            session: session.clone(),
        }
    }

    /// A message signed by the SDK, naming the certificate by serial (the server knows its
    /// own actors' certificates), as a client that sent it before would.
    pub(crate) fn signed(&self, channel: u64, content: String) -> send_message::Request {
        let body = MessageBody {
            content,
            reply_to: None,
            attachments: Vec::new(),
        };
        let mut request = self.chat.prepare_message(channel, body).request;
        request.id_cert = None;
        request.serial = Some(self.serial);
        request
    }
}

async fn send(s: &Sender, channel: u64, content: String) {
    let body = serde_json::to_vec(&s.signed(channel, content)).unwrap();
    post(s, &send_url(s, channel), body.into()).await;
}

pub(crate) fn send_url(s: &Sender, channel: u64) -> String {
    format!(
        "{}{}",
        s.session.client().base_url(),
        send_message::path(channel)
    )
}

/// Posts a signed request body prepared before (S2 signs all its messages before the clock
/// starts: signing is the client's work, not the server's).
pub(crate) async fn post(s: &Sender, url: &str, body: Bytes) {
    let resp = s
        .session
        .client()
        .raw()
        .post(url)
        .bearer_auth(s.session.token())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    // Read to the end: a connection goes back to the client's pool only then.
    let body = resp.text().await;
    assert_eq!(status, 201, "{body:?}");
}

/// A gateway connection identified as `s` and subscribed to `chat`.
pub(crate) async fn listener(base: &str, s: &Session) -> Ws {
    let (mut w, _) = ws::connect_to(&ws::url(base)).await;
    ws::send(&mut w, ws::identify_frame(s.token())).await;
    loop {
        if ws::next(&mut w).await["op"] == 12 {
            break;
        }
    }
    ws::send(
        &mut w,
        serde_json::json!({"n": "core", "op": 8, "d": {"action": "subscribe", "service": "chat"}}),
    )
    .await;
    loop {
        if ws::next(&mut w).await["op"] == 9 {
            return w;
        }
    }
}

/// Reads chat message events until `expect` arrived or `wait` passed without one; returns
/// send-to-receipt latencies (the content is the send time in ns).
async fn receive(mut w: Ws, expect: usize, wait: Duration) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(expect);
    while lat.len() < expect {
        let Ok(Received::Frame(f)) = ws::try_receive(&mut w, wait).await else {
            break;
        };
        if f["n"] == "chat" && f["op"] == 0 {
            let sent: u64 = f["d"]["content"]
                .as_str()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            lat.push(Duration::from_nanos(now_ns().saturating_sub(sent)));
        }
    }
    lat
}

/// The child's CPU time so far (user + system).
pub(crate) fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after the name, in
    // USER_HZ ticks, which Linux fixes at 100 a second for /proc.
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / 100.0)
}

pub(crate) fn latencies(label: &str, mut lat: Vec<Duration>) {
    lat.sort();
    println!(
        "{label}: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms ({} samples)",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.95)),
        ms(percentile(&lat, 0.99)),
        lat.len()
    );
}

pub(crate) enum Engine {
    Sqlite,
    Postgres(String),
}

impl Engine {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres(_) => "postgres",
        }
    }
}

pub async fn bench(quick: bool) {
    raise_nofile(8192);
    let mut engines = vec![Engine::Sqlite];
    if let Some(url) = ["FUGUE_BENCH_DATABASE_URL", "TEST_DATABASE_URL"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    {
        engines.push(Engine::Postgres(url));
    }
    // `FUGUE_BENCH_ENGINE=sqlite|postgres` runs one engine only, e.g. to profile it.
    let only = std::env::var("FUGUE_BENCH_ENGINE").ok();
    for engine in engines
        .iter()
        .filter(|e| only.as_deref().is_none_or(|o| o == e.name()))
    {
        run(engine, quick).await;
    }
}

async fn run(engine: &Engine, quick: bool) {
    let scale = if quick { 10 } else { 1 };
    println!("## chat S1–S5 on {}", engine.name());

    // S1 on production hashing.
    {
        let (_child, base, _dir) = child(engine, "production").await;
        let names: Vec<String> = (0..100 / scale).map(|i| format!("s1u{i}")).collect();
        let start = Instant::now();
        let made = accounts(&base, &names, 10).await;
        let rate = made.len() as f64 / start.elapsed().as_secs_f64();
        println!(
            "S1 register + log in {} accounts, 10 at a time: {rate:.1} accounts/s",
            made.len()
        );
    }

    let (child, base, _dir) = child(engine, "cheap").await;
    let pid = child.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "server idle RSS: {:.1} MiB",
        rss_kib(pid, "VmRSS:") as f64 / 1024.0
    );
    // `FUGUE_BENCH_S2_ONLY` stops after S2 (with its 100 members), e.g. to profile it.
    let s2_only = std::env::var_os("FUGUE_BENCH_S2_ONLY").is_some();
    let members = if s2_only {
        100
    } else if quick {
        1000 / 4
    } else {
        1000
    };
    let names: Vec<String> = (0..members).map(|i| format!("u{i}")).collect();
    let sessions = Arc::new(accounts(&base, &names, 10).await);
    let peak = || rss_kib(pid, "VmHWM:") as f64 / 1024.0;
    println!("server RSS peak after set-up: {:.1} MiB", peak());

    // S2: 100 members, 10 senders, 2,000 messages.
    let channel = guild_with_channel(&sessions[0], &sessions[1..100]).await;
    // `FUGUE_BENCH_S2_MESSAGES` makes S2 longer, e.g. to profile it.
    let total = std::env::var("FUGUE_BENCH_S2_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000 / scale);
    let s: Arc<Vec<Sender>> = Arc::new(sessions[..10].iter().map(Sender::new).collect());
    let url: Arc<str> = send_url(&s[0], channel).into();
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..total)
            .map(|i| {
                let request = s[i % 10].signed(channel, format!("message {i}"));
                serde_json::to_vec(&request).unwrap().into()
            })
            .collect(),
    );
    eprintln!("S2 starts");
    let (rate, lat) = load(10, total, Duration::from_secs(120), move |i| {
        let (s, url, bodies) = (s.clone(), url.clone(), bodies.clone());
        async move {
            post(&s[i % 10], &url, bodies[i].clone()).await;
        }
    })
    .await;
    println!(
        "S2 {} signed messages, 10 senders, 100 members: {rate:.0} messages/s",
        lat.len()
    );
    latencies("S2 send latency", lat);
    println!("server RSS peak after S2: {:.1} MiB", peak());
    if s2_only {
        return;
    }

    // S3: 50 connected members, one sender at 20/s.
    let count = 200 / scale;
    let mut readers = Vec::new();
    for m in &sessions[50..100] {
        let w = listener(&base, m).await;
        readers.push(tokio::spawn(receive(w, count, Duration::from_secs(10))));
    }
    pace(&sessions[0], channel, count, 20).await;
    let mut all = Vec::new();
    for r in readers {
        all.extend(r.await.unwrap());
    }
    latencies(
        &format!("S3 send-to-receipt, 50 members, {count} messages at 20/s"),
        all,
    );

    // S4: the latest 2,000 messages, 100 per page.
    let pages = 20 / scale.min(20);
    let start = Instant::now();
    let mut before: Option<u64> = None;
    let mut fetched = 0;
    let http = sessions[1].client().raw().clone();
    for _ in 0..pages {
        let mut url = format!("{base}{}?limit=100", get_messages::path(channel));
        if let Some(b) = before {
            url.push_str(&format!("&before={b}"));
        }
        let page: Vec<Message> = http
            .get(url)
            .bearer_auth(sessions[1].token())
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        fetched += page.len();
        before = page.iter().map(|m| m.id).min();
        if page.len() < 100 {
            break;
        }
    }
    println!(
        "S4 fetch the latest {fetched} messages, 100 per page: {:.1} ms",
        ms(start.elapsed())
    );

    // S5: one channel of 1,000 connected members, 20 messages/s for 30 s.
    let big = guild_with_channel(&sessions[0], &sessions[1..]).await;
    let seconds = if quick { 5 } else { 30 };
    let count = 20 * seconds;
    let connected = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for m in sessions[1..].iter() {
        let w = listener(&base, m).await;
        connected.fetch_add(1, Ordering::Relaxed);
        readers.push(tokio::spawn(receive(w, count, Duration::from_secs(10))));
    }
    println!(
        "server RSS peak after S3, S4 and connecting S5's members: {:.1} MiB",
        peak()
    );
    let cpu0 = cpu(pid);
    let start = Instant::now();
    pace(&sessions[0], big, count, 20).await;
    let mut all = Vec::new();
    for r in readers {
        all.extend(r.await.unwrap());
    }
    let wall = start.elapsed();
    let cpu_used = cpu(pid) - cpu0;
    let expected = count * (members - 1);
    println!(
        "S5 {} members connected, {count} messages at 20/s: {} of {expected} delivered; server CPU {:.0}% of one core",
        connected.load(Ordering::Relaxed),
        all.len(),
        cpu_used.as_secs_f64() / wall.as_secs_f64() * 100.0
    );
    latencies("S5 send-to-receipt", all);
    println!(
        "server RSS now {:.1} MiB, peak (set-up and S2–S5) {:.1} MiB",
        rss_kib(pid, "VmRSS:") as f64 / 1024.0,
        rss_kib(pid, "VmHWM:") as f64 / 1024.0
    );
}

/// Sends `count` messages whose content is the send time, `per_second` a second.
async fn pace(s: &Session, channel: u64, count: usize, per_second: u64) {
    let s = Sender::new(s);
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / per_second));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for _ in 0..count {
        tick.tick().await;
        send(&s, channel, now_ns().to_string()).await;
    }
}
