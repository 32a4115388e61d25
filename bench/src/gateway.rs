//! Gateway benchmarks: `cargo run --release -p fugue-bench -- gateway [--quick]`.
//!
//! Measured (docs/performance.md): identified idle connections on one node and the server's
//! RSS per connection; flat-out event fan-out to the sessions of one actor (deliveries/s);
//! publish-to-receipt latency at a paced rate; and the same fan-out and latency with two
//! nodes sharing PostgreSQL and announcing through NATS (skipped with a message when either
//! is unreachable).
//!
//! The server runs in child processes (`--serve-gateway`): cheap Argon2, no rate limits, a
//! 120 s heartbeat interval (idle clients owe no heartbeat during a run; they still answer
//! an op 11), a service channel `bench`, and three bench-only routes merged in with
//! [`fugue_server::Server::serve_with`]:
//!
//! - `POST /bench/publish {actor, count, bytes, tasks, rate, thread}` publishes `count`
//!   events to the actor's stream through `Events::publish` (durable write, then the bus),
//!   from `tasks` tasks flat out, or paced at `rate` per second; on the server's runtime, or
//!   with `thread` on a runtime of its own so that publishing does not queue behind the
//!   connection tasks. Each event's `d` is `{"at": unix nanos just before the publish call,
//!   "pad": bytes × "x"}`.
//! - `POST /bench/ack {actors}` moves every session of those actors to its actor's newest
//!   event, as a client that polled `GET /events` would: Identify then replays none of the
//!   op 3 events the logins produced.
//! - `GET /bench/stats` → `{connections}` identified on that node.
//!
//! Clients are tokio-tungstenite 0.29 sockets in this process (4 KiB read and write buffers,
//! TCP_NODELAY), one task each. A client counts the event frames it receives and, while
//! latency is being recorded, `now − at` of each. Flat-out publishing stays at most
//! `WINDOW` events ahead of the slowest client, so no connection overflows its queue.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use fugue_client::{Client, IdentityKey};
use fugue_proto::gateway::{CORE, Envelope, Style, op};
use fugue_proto::{FederationId, SessionId};
use fugue_server::{Events, Gateway, Publish};
use fugue_store::Store;

use crate::{Child_, NoSink, PASSWORD, percentile, rss_kib, start_child};

/// The service channel the bench events travel on.
const SERVICE: &str = "bench";
/// Heartbeat interval of the children: longer than any phase that holds connections.
const HEARTBEAT_MS: u64 = 120_000;
/// Padding of each event: frames of ~300 bytes, as in the research fan-out figures.
const PAD: usize = 220;
/// How every bench event frame starts (numbers style; `d`'s keys are sorted, `at` first).
const EVENT_PREFIX: &str = "{\"d\":{\"at\":";
/// Flat-out publishing keeps at most this many events ahead of the slowest client: half of
/// the server's per-connection queue (`gateway.queue_len` = 1,024), so that no client is
/// closed for reading too slowly.
const WINDOW: u64 = 512;
/// Events per `POST /bench/publish` in the flat-out runs.
const BATCH: u64 = 64;
/// Publishing tasks of the main fan-out runs: events in flight at once, so that the gateway
/// gets them faster than one durable write at a time.
const PUBLISHERS: u64 = 8;
/// Paced publishing rate of the latency measure.
const LATENCY_RATE: u64 = 100;
/// Connections opened at once.
const CONNECT_CONCURRENCY: usize = 64;
/// Logins in flight at once.
const LOGIN_CONCURRENCY: usize = 16;

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const NATS_URL: &str = "nats://127.0.0.1:4222";

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Raises the soft open-file limit towards `want` (at most the hard limit); returns the
/// limit in force.
pub fn raise_nofile(want: u64) -> u64 {
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

// ---------------------------------------------------------------------------------------
// The child: a gateway node.

struct BenchService;
impl fugue_server::gateway::Service for BenchService {
    fn name(&self) -> &str {
        SERVICE
    }
}

#[derive(Deserialize)]
struct PublishReq {
    actor: String,
    count: u64,
    bytes: usize,
    #[serde(default)]
    tasks: u64,
    /// Events per second; 0 = flat out.
    #[serde(default)]
    rate: u64,
    /// Publish from a thread of its own (a runtime with one worker) instead of the server's
    /// runtime: publishing then does not wait behind the connection tasks.
    #[serde(default)]
    thread: bool,
}

#[derive(Serialize, Deserialize)]
struct PublishResp {
    published: u64,
    elapsed_us: u64,
}

#[derive(Serialize, Deserialize)]
struct AckReq {
    actors: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct AckResp {
    sessions: u64,
}

#[derive(Serialize, Deserialize)]
struct StatsResp {
    connections: usize,
}

async fn publish_one(events: &Events, actor_id: i64, pad: &str) {
    let at = unix_nanos();
    events
        .publish(Publish {
            actor_id,
            n: SERVICE.into(),
            op: 1,
            d: json!({ "at": at, "pad": pad }),
            exclude_session: None,
            collapse_key: None,
        })
        .await
        .unwrap();
}

async fn publish(events: Events, store: Store, req: PublishReq) -> Json<PublishResp> {
    let actor_id = store.actor_by_name(&req.actor).await.unwrap().unwrap().id;
    if req.thread {
        let task = publisher_runtime().spawn(publish_many(events, actor_id, req));
        return Json(task.await.unwrap());
    }
    Json(publish_many(events, actor_id, req).await)
}

/// The runtime of [`PublishReq::thread`]: one worker thread of its own, kept for the life of
/// the process (database connections opened on it stay usable).
fn publisher_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bench-publisher")
            .enable_all()
            .build()
            .unwrap()
    })
}

async fn publish_many(events: Events, actor_id: i64, req: PublishReq) -> PublishResp {
    let pad: Arc<str> = "x".repeat(req.bytes).into();
    let start = Instant::now();
    if let Some(period) = 1_000_000_000u64.checked_div(req.rate) {
        let mut tick = tokio::time::interval(Duration::from_nanos(period));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for _ in 0..req.count {
            tick.tick().await;
            publish_one(&events, actor_id, &pad).await;
        }
    } else {
        let tasks = req.tasks.max(1);
        let mut set = tokio::task::JoinSet::new();
        for t in 0..tasks {
            let n = req.count / tasks + u64::from(t < req.count % tasks);
            let (events, pad) = (events.clone(), pad.clone());
            set.spawn(async move {
                for _ in 0..n {
                    publish_one(&events, actor_id, &pad).await;
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    }
    PublishResp {
        published: req.count,
        elapsed_us: start.elapsed().as_micros() as u64,
    }
}

async fn ack(store: Store, req: AckReq) -> Json<AckResp> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut n = 0;
    for name in req.actors {
        let actor = store.actor_by_name(&name).await.unwrap().unwrap();
        let head = store.event_seq(actor.id).await.unwrap();
        for s in store.sessions_of(actor.id).await.unwrap() {
            store.advance_position(s.id, head, now).await.unwrap();
            n += 1;
        }
    }
    Json(AckResp { sessions: n })
}

fn routes(events: Events, store: Store, gw: Gateway) -> axum::Router {
    use axum::routing::{get, post};
    let (e, s) = (events, store.clone());
    axum::Router::new()
        .route(
            "/bench/publish",
            post(move |Json(req): Json<PublishReq>| publish(e.clone(), s.clone(), req)),
        )
        .route(
            "/bench/ack",
            post(move |Json(req): Json<AckReq>| ack(store.clone(), req)),
        )
        .route(
            "/bench/stats",
            get(move || {
                let gw = gw.clone();
                async move {
                    Json(StatsResp {
                        connections: gw.connections(),
                    })
                }
            }),
        )
}

/// `--serve-gateway <dir> <port file> [pg=<url> schema=<name>] [nats=<url> prefix=<p>]
/// [key=<file with 32 key bytes>]`
pub async fn serve(args: &[String]) {
    raise_nofile(65_536);
    let dir = Path::new(&args[0]);
    let port_file = &args[1];
    let opt = |k: &str| {
        args[2..]
            .iter()
            .find_map(|a| a.strip_prefix(k)?.strip_prefix('='))
            .map(str::to_owned)
    };
    let store = match (opt("pg"), opt("schema")) {
        (Some(url), Some(schema)) => Store::open_postgres(&url, Some(&schema), 8).await,
        _ => {
            fugue_store::Store::open_sqlite(&dir.join("fugue.db"), fugue_store::SqliteSync::Full)
                .await
        }
    }
    .unwrap();
    let key = match opt("key") {
        Some(f) => SigningKey::from_bytes(&std::fs::read(f).unwrap().try_into().unwrap()),
        None => SigningKey::generate(&mut OsRng),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config =
        fugue_server::Config::new("localhost".parse().unwrap(), format!("http://{addr}"));
    config.password_hashing.memory_kib = 256;
    config.password_hashing.iterations = 1;
    config.rate_limits.login_per_minute = 0;
    config.rate_limits.register_per_minute = 0;
    config.rate_limits.sensitive_per_minute = 0;
    config.gateway.heartbeat_interval_ms = HEARTBEAT_MS;
    if let (Some(url), Some(prefix)) = (opt("nats"), opt("prefix")) {
        config.cluster.nats_url = Some(url);
        config.cluster.subject_prefix = prefix;
    }
    let server = fugue_server::Server::new(config, store.clone(), key, Arc::new(NoSink))
        .await
        .unwrap();
    server.gateway().register_service(Arc::new(BenchService));
    let extra = routes(server.events().clone(), store, server.gateway().clone());
    std::fs::write(port_file, addr.port().to_string()).unwrap();
    server
        .serve_with(extra, listener, std::future::pending())
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Clients.

/// What one client saw.
#[derive(Default)]
struct Stats {
    /// Frames received (the next frame's `s`).
    frames: AtomicU64,
    /// Bench event frames received.
    events: AtomicU64,
    /// When the last event arrived, nanoseconds after [`epoch`].
    last_event: AtomicU64,
    closed: AtomicBool,
    heartbeats: AtomicU64,
    frame_len: AtomicU64,
    /// Publish-to-receipt latencies in µs, while recording.
    latencies: Mutex<Vec<u32>>,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A set of connections that stop together.
struct Group {
    stats: Vec<Arc<Stats>>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Group {
    async fn close(self) {
        let _ = self.stop.send(true);
        let deadline = Instant::now() + Duration::from_secs(30);
        for t in self.tasks {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = tokio::time::timeout(left, t).await;
        }
    }

    fn closed(&self) -> usize {
        self.stats
            .iter()
            .filter(|s| s.closed.load(Ordering::Relaxed))
            .count()
    }
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn next_text(ws: &mut Ws) -> Result<String, String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Err(_) => return Err("timed out".into()),
            Ok(Some(Ok(Message::Text(t)))) => return Ok(t.as_str().to_owned()),
            Ok(Some(Ok(Message::Close(c)))) => return Err(format!("closed: {c:?}")),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) => return Err("connection ended".into()),
        }
    }
}

async fn expect_op(ws: &mut Ws, want: u16) -> Result<(), String> {
    let text = next_text(ws).await?;
    let (env, _) = Envelope::parse(&text).map_err(|e| e.to_string())?;
    if env.op != want {
        return Err(format!("expected op {want}, got {text}"));
    }
    Ok(())
}

fn frame(op: u16, d: serde_json::Value) -> Message {
    Message::text(Envelope::new(CORE, op, d).render(Style::Numbers))
}

/// Connects, identifies and (with `subscribe`) joins the bench channel; returns the socket
/// and the number of frames received so far.
async fn handshake(addr: SocketAddr, token: &str, subscribe: bool) -> Result<(Ws, u64), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let url = format!("ws://{addr}{}", fugue_proto::gateway::PATH);
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config))
        .await
        .map_err(|e| e.to_string())?;
    expect_op(&mut ws, op::HELLO).await?;
    ws.send(frame(op::IDENTIFY, json!({ "token": token })))
        .await
        .map_err(|e| e.to_string())?;
    expect_op(&mut ws, op::IDENTIFY_ACK).await?;
    let mut frames = 2;
    if subscribe {
        let d = json!({ "action": "subscribe", "service": SERVICE });
        ws.send(frame(op::SERVICE_CHANNEL, d))
            .await
            .map_err(|e| e.to_string())?;
        expect_op(&mut ws, op::SERVICE_CHANNEL_ACK).await?;
        frames += 1;
    }
    Ok((ws, frames))
}

async fn read_loop(
    mut ws: Ws,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
    record: Arc<AtomicBool>,
) {
    let mut frames = stats.frames.load(Ordering::Relaxed);
    loop {
        let msg = tokio::select! {
            biased;
            _ = stop.changed() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return;
            }
            m = ws.next() => m,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_)) | Err(_)) | None => {
                stats.closed.store(true, Ordering::Relaxed);
                return;
            }
            Some(Ok(_)) => continue,
        };
        frames += 1;
        stats.frames.store(frames, Ordering::Relaxed);
        if let Some(rest) = text.as_str().strip_prefix(EVENT_PREFIX) {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let at: u64 = rest[..digits].parse().unwrap_or(0);
            if record.load(Ordering::Relaxed) {
                let us = unix_nanos().saturating_sub(at) / 1000;
                stats
                    .latencies
                    .lock()
                    .unwrap()
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            if stats.frame_len.load(Ordering::Relaxed) == 0 {
                stats.frame_len.store(text.len() as u64, Ordering::Relaxed);
            }
            stats
                .last_event
                .store(epoch().elapsed().as_nanos() as u64, Ordering::Relaxed);
            stats.events.fetch_add(1, Ordering::Release);
        } else if let Ok((env, _)) = Envelope::parse(text.as_str())
            && env.n == CORE
            && env.op == op::HEARTBEAT_REQUEST
        {
            // Only when the server asks: the interval is longer than the run.
            let d = json!({ "from": "0", "to": (frames - 1).to_string() });
            if ws.send(frame(op::HEARTBEAT, d)).await.is_err() {
                stats.closed.store(true, Ordering::Relaxed);
                return;
            }
            stats.heartbeats.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Opens one identified connection per token (token `i` to `addrs[i % addrs.len()]`),
/// `CONNECT_CONCURRENCY` handshakes at a time. Returns the group and connections/s.
async fn connect_group(
    addrs: &[SocketAddr],
    tokens: &[String],
    subscribe: bool,
    record: &Arc<AtomicBool>,
) -> (Group, f64) {
    let (stop, _) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let start = Instant::now();
    let mut stats = Vec::with_capacity(tokens.len());
    let mut tasks = Vec::with_capacity(tokens.len());
    for (i, token) in tokens.iter().enumerate() {
        let st = Arc::new(Stats::default());
        stats.push(st.clone());
        let (addr, token) = (addrs[i % addrs.len()], token.clone());
        let (permits, ready, stop, record) = (
            permits.clone(),
            ready_tx.clone(),
            stop.subscribe(),
            record.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let permit = permits.acquire_owned().await.unwrap();
            match handshake(addr, &token, subscribe).await {
                Ok((ws, frames)) => {
                    drop(permit);
                    st.frames.store(frames, Ordering::Relaxed);
                    let _ = ready.send(Ok(()));
                    read_loop(ws, st, stop, record).await;
                }
                Err(e) => {
                    st.closed.store(true, Ordering::Relaxed);
                    let _ = ready.send(Err(e));
                }
            }
        }));
    }
    drop(ready_tx);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut failed = 0;
    for _ in 0..tokens.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => {
                if failed == 0 {
                    eprintln!("a gateway connection failed: {e}");
                }
                failed += 1;
            }
            Ok(None) | Err(_) => {
                eprintln!("connecting took longer than 120 s");
                break;
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} gateway connections failed", tokens.len());
    }
    let rate = tokens.len() as f64 / start.elapsed().as_secs_f64();
    (Group { stats, stop, tasks }, rate)
}

// ---------------------------------------------------------------------------------------
// The parent: driving a node.

struct Node {
    child: Child_,
    base: String,
    addr: SocketAddr,
    postgres: bool,
}

impl Node {
    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn rss_mib(&self) -> f64 {
        rss_kib(self.pid(), "VmRSS:") as f64 / 1024.0
    }

    fn peak_mib(&self) -> f64 {
        rss_kib(self.pid(), "VmHWM:") as f64 / 1024.0
    }
}

async fn start_node(dir: &Path, name: &str, extra: &[String]) -> Option<Node> {
    let node_dir = dir.join(name);
    std::fs::create_dir_all(&node_dir).unwrap();
    let port_file = node_dir.join("port");
    let mut args = vec![
        "--serve-gateway".to_owned(),
        node_dir.to_str().unwrap().to_owned(),
        port_file.to_str().unwrap().to_owned(),
    ];
    args.extend_from_slice(extra);
    let (child, port) = start_child(&args, &port_file, true).await?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    Some(Node {
        child,
        base: format!("http://{addr}"),
        addr,
        postgres: extra.iter().any(|a| a.starts_with("pg=")),
    })
}

/// Registers `actors` and logs in `per_actor` sessions of each (session `i` through
/// `bases[i % len]`); returns the tokens actor by actor, and logins/s.
async fn login_sessions(
    bases: &[String],
    actors: &[String],
    per_actor: usize,
) -> (Vec<String>, f64) {
    let clients: Vec<Client> = bases.iter().map(|b| Client::new(b).unwrap()).collect();
    for a in actors {
        clients[0].register(a, PASSWORD, None, None).await.unwrap();
    }
    let total = actors.len() * per_actor;
    let next = Arc::new(AtomicU64::new(0));
    let clients = Arc::new(clients);
    let actors = Arc::new(actors.to_vec());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(300);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..LOGIN_CONCURRENCY {
        let (next, clients, actors) = (next.clone(), clients.clone(), actors.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= total || Instant::now() > deadline {
                    return out;
                }
                let actor = &actors[i / per_actor];
                let fid: FederationId = format!("{actor}@localhost").parse().unwrap();
                let sid: SessionId = format!("s{}", i % per_actor).parse().unwrap();
                let session = clients[i % clients.len()]
                    .login(actor, PASSWORD, None, &IdentityKey::generate(), &fid, &sid)
                    .await
                    .unwrap();
                out.push((i, session.token().to_owned()));
            }
        });
    }
    let mut all = Vec::with_capacity(total);
    while let Some(r) = set.join_next().await {
        all.extend(r.unwrap());
    }
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    assert_eq!(all.len(), total, "logins took longer than 300 s");
    all.sort_by_key(|(i, _)| *i);
    (all.into_iter().map(|(_, t)| t).collect(), rate)
}

async fn post<Req: Serialize, Resp: for<'de> Deserialize<'de>>(
    http: &reqwest::Client,
    url: String,
    body: &Req,
) -> Resp {
    let resp = http.post(url).json(body).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.unwrap()
}

async fn connections(http: &reqwest::Client, node: &Node) -> usize {
    let resp = http
        .get(format!("{}/bench/stats", node.base))
        .send()
        .await
        .unwrap();
    resp.json::<StatsResp>().await.unwrap().connections
}

/// Waits (up to 30 s) until the nodes hold `want` identified connections together.
async fn await_connections(http: &reqwest::Client, nodes: &[&Node], want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut n = 0;
        for node in nodes {
            n += connections(http, node).await;
        }
        if n == want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes `count` events with `tasks` publishers and no connection listening; events/s.
async fn publish_alone(
    http: &reqwest::Client,
    node: &Node,
    actor: &str,
    count: u64,
    tasks: u64,
) -> f64 {
    let req = json!({ "actor": actor, "count": count, "bytes": PAD, "tasks": tasks });
    let r: PublishResp = post(http, format!("{}/bench/publish", node.base), &req).await;
    r.published as f64 / (r.elapsed_us as f64 / 1e6)
}

fn received(stats: &[&Arc<Stats>], base: &[u64]) -> u64 {
    stats
        .iter()
        .zip(base)
        .map(|(s, b)| s.events.load(Ordering::Acquire) - b)
        .min()
        .unwrap_or(0)
}

/// How the child publishes during a fan-out run.
#[derive(Clone, Copy)]
struct Publisher {
    /// On a thread of its own (see [`PublishReq::thread`]) or on the server's runtime.
    thread: bool,
    /// Publishing tasks per request.
    tasks: u64,
}

impl Publisher {
    fn describe(self) -> String {
        format!(
            "{} publisher task{} on {}",
            self.tasks,
            if self.tasks == 1 { "" } else { "s" },
            if self.thread {
                "a thread of their own"
            } else {
                "the server's runtime"
            }
        )
    }
}

/// CPU time (user + system) of a process, or of its threads whose name starts with
/// `thread`, in seconds (clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_secs(pid: u32, thread: Option<&str>) -> f64 {
    fn ticks(stat: &str) -> u64 {
        // Fields after the command name: state is 3rd overall, utime 14th, stime 15th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        get(11) + get(12)
    }
    let total = match thread {
        None => ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default()),
        Some(prefix) => std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
            })
            .map(|t| ticks(&std::fs::read_to_string(t.path().join("stat")).unwrap_or_default()))
            .sum(),
    };
    total as f64 / 100.0
}

/// CPU time of every PostgreSQL process on the machine, in seconds.
fn postgres_cpu_secs() -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|pid| cpu_secs(pid, None))
        .sum()
}

/// What one fan-out run measured.
struct Run {
    deliveries_per_s: f64,
    /// Share of the publishing time spent waiting for the slowest client (0 = the
    /// publisher was the limit, 1 = delivery was).
    window_wait: f64,
    /// CPU µs per delivery: server nodes, and this process (the clients).
    server_us: f64,
    client_us: f64,
    /// CPU seconds of the database readers during the run: the SQLite reader threads
    /// (connections reading the event log), or with PostgreSQL every PostgreSQL process
    /// (its event writes included).
    db_cpu_s: f64,
}

/// One flat-out fan-out run: `events` events published on `nodes[0]` as fast as the
/// publisher manages but at most `WINDOW` ahead of the slowest client, until every client
/// received all of them. Deliveries per second are end to end: first publish request to
/// last receipt.
async fn fanout_run(
    http: &reqwest::Client,
    nodes: &[&Node],
    actor: &str,
    stats: &[&Arc<Stats>],
    events: u64,
    publisher: Publisher,
) -> Result<Run, String> {
    let base: Vec<u64> = stats
        .iter()
        .map(|s| s.events.load(Ordering::Acquire))
        .collect();
    let url = format!("{}/bench/publish", nodes[0].base);
    let server_cpu = |n: &[&Node]| n.iter().map(|n| cpu_secs(n.pid(), None)).sum::<f64>();
    let reader_cpu = |n: &[&Node]| {
        if n.iter().any(|n| n.postgres) {
            postgres_cpu_secs()
        } else {
            n.iter()
                .map(|n| cpu_secs(n.pid(), Some("fugue-sqlite-r")))
                .sum::<f64>()
        }
    };
    let (cpu0, reads0, self0) = (
        server_cpu(nodes),
        reader_cpu(nodes),
        cpu_secs(std::process::id(), None),
    );
    let start = epoch().elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    let closed = || stats.iter().any(|s| s.closed.load(Ordering::Relaxed));
    let mut published = 0;
    let mut waited = Duration::ZERO;
    while published < events {
        let batch = BATCH.min(events - published);
        let w0 = Instant::now();
        while published + batch > received(stats, &base) + WINDOW {
            if closed() || Instant::now() > deadline {
                return Err(format!(
                    "stalled after {published} events (a connection closed: {})",
                    closed()
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        waited += w0.elapsed();
        let req = json!({
            "actor": actor, "count": batch, "bytes": PAD,
            "tasks": publisher.tasks, "thread": publisher.thread,
        });
        let _: PublishResp = post(http, url.clone(), &req).await;
        published += batch;
    }
    let publishing = epoch().elapsed().saturating_sub(start);
    while received(stats, &base) < events {
        if closed() || Instant::now() > deadline {
            return Err(format!(
                "{} of {events} events reached every client",
                received(stats, &base)
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let end = stats
        .iter()
        .map(|s| s.last_event.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let secs = Duration::from_nanos(end)
        .saturating_sub(start)
        .as_secs_f64();
    let deliveries = (events * stats.len() as u64) as f64;
    Ok(Run {
        deliveries_per_s: deliveries / secs,
        window_wait: waited.as_secs_f64() / publishing.as_secs_f64().max(1e-9),
        server_us: (server_cpu(nodes) - cpu0) * 1e6 / deliveries,
        client_us: (cpu_secs(std::process::id(), None) - self0) * 1e6 / deliveries,
        db_cpu_s: reader_cpu(nodes) - reads0,
    })
}

struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
    samples: usize,
}

/// Events paced at `LATENCY_RATE`/s for `secs`; publish-to-receipt latency over every
/// delivery (ms). `groups` are measured together and each on its own.
async fn latency_run(
    http: &reqwest::Client,
    node: &Node,
    actor: &str,
    groups: &[&[&Arc<Stats>]],
    record: &AtomicBool,
    secs: u64,
) -> Result<Vec<Latency>, String> {
    let all: Vec<&Arc<Stats>> = groups.iter().flat_map(|g| g.iter().copied()).collect();
    let base: Vec<u64> = all
        .iter()
        .map(|s| s.events.load(Ordering::Acquire))
        .collect();
    for s in &all {
        s.latencies.lock().unwrap().clear();
    }
    record.store(true, Ordering::Relaxed);
    let count = LATENCY_RATE * secs;
    let req = json!({ "actor": actor, "count": count, "bytes": PAD, "rate": LATENCY_RATE });
    let _: PublishResp = post(http, format!("{}/bench/publish", node.base), &req).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while received(&all, &base) < count {
        if all.iter().any(|s| s.closed.load(Ordering::Relaxed)) || Instant::now() > deadline {
            record.store(false, Ordering::Relaxed);
            return Err(format!(
                "{} of {count} events reached every client",
                received(&all, &base)
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    record.store(false, Ordering::Relaxed);
    let summarize = |stats: &[&Arc<Stats>]| {
        let mut v: Vec<Duration> = stats
            .iter()
            .flat_map(|s| s.latencies.lock().unwrap().clone())
            .map(|us| Duration::from_micros(u64::from(us)))
            .collect();
        v.sort();
        Latency {
            p50: percentile(&v, 0.5).as_secs_f64() * 1e3,
            p99: percentile(&v, 0.99).as_secs_f64() * 1e3,
            max: v.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            samples: v.len(),
        }
    };
    let mut out = vec![summarize(&all)];
    if groups.len() > 1 {
        out.extend(groups.iter().map(|g| summarize(g)));
    }
    for s in &all {
        s.latencies.lock().unwrap().clear();
    }
    Ok(out)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

fn frame_len(stats: &[&Arc<Stats>]) -> u64 {
    stats
        .iter()
        .map(|s| s.frame_len.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0)
}

fn heartbeats(stats: &[&Arc<Stats>]) -> u64 {
    stats
        .iter()
        .map(|s| s.heartbeats.load(Ordering::Relaxed))
        .sum()
}

/// `/proc/loadavg`'s first three fields: other work on the machine skews every figure.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn self_rss_mib() -> f64 {
    rss_kib(std::process::id(), "VmRSS:") as f64 / 1024.0
}

fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One row of the summary table.
struct Row {
    measure: String,
    result: String,
    target: String,
    ratio: String,
}

fn row(measure: impl Into<String>, result: impl Into<String>, target: &str, ratio: String) -> Row {
    Row {
        measure: measure.into(),
        result: result.into(),
        target: target.into(),
        ratio,
    }
}

/// Runs `runs` fan-out runs (after a short warm-up) and prints each; returns them.
#[allow(
    clippy::too_many_arguments,
    reason = "a benchmark step with its parameters"
)]
async fn fanout_series(
    http: &reqwest::Client,
    nodes: &[&Node],
    actor: &str,
    stats: &[&Arc<Stats>],
    events: u64,
    runs: usize,
    publisher: Publisher,
    warm_up: bool,
) -> Vec<Run> {
    if warm_up {
        let _ = fanout_run(http, nodes, actor, stats, events / 10, publisher).await;
    }
    let mut out = Vec::new();
    for i in 0..runs {
        match fanout_run(http, nodes, actor, stats, events, publisher).await {
            Ok(r) => {
                println!(
                    "fan-out, {}, run {}: {} deliveries/s ({events} events × {} connections, frame {} bytes); publisher waited for the slowest client {:.0} % of the time; CPU per delivery: server {:.2} µs, clients {:.2} µs; {} CPU {:.2} s",
                    publisher.describe(),
                    i + 1,
                    thousands(r.deliveries_per_s),
                    stats.len(),
                    frame_len(stats),
                    r.window_wait * 100.0,
                    r.server_us,
                    r.client_us,
                    db_label(nodes),
                    r.db_cpu_s,
                );
                out.push(r);
            }
            Err(e) => println!(
                "fan-out, {}, run {} failed: {e}",
                publisher.describe(),
                i + 1
            ),
        }
    }
    out
}

fn db_label(nodes: &[&Node]) -> &'static str {
    if nodes.iter().any(|n| n.postgres) {
        "PostgreSQL"
    } else {
        "SQLite reader"
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one table row and its parameters"
)]
fn fanout_rows(
    rows: &mut Vec<Row>,
    label: &str,
    db: &str,
    runs: &[Run],
    conns: usize,
    events: u64,
    publisher: Publisher,
) {
    let what = format!(
        "{label}: deliveries/s to {conns} connections, {}",
        publisher.describe()
    );
    if runs.is_empty() {
        rows.push(row(what, "no run finished", "≥ 500,000/s", "—".into()));
        return;
    }
    let mut rates: Vec<f64> = runs.iter().map(|r| r.deliveries_per_s).collect();
    let list = rates
        .iter()
        .map(|r| thousands(*r))
        .collect::<Vec<_>>()
        .join(", ");
    let m = median(&mut rates);
    let mut waits: Vec<f64> = runs.iter().map(|r| r.window_wait * 100.0).collect();
    let mut server: Vec<f64> = runs.iter().map(|r| r.server_us).collect();
    let mut client: Vec<f64> = runs.iter().map(|r| r.client_us).collect();
    let mut reads: Vec<f64> = runs.iter().map(|r| r.db_cpu_s).collect();
    let many = if runs.len() > 1 {
        format!("median of {} runs ({list})", runs.len())
    } else {
        "1 run".to_owned()
    };
    rows.push(row(
        format!("{what}; {events} events per run"),
        format!(
            "{} = {} events/s, {many}; publisher waited for clients {:.0} % of the time; CPU/delivery server {:.2} µs, clients {:.2} µs; {db} CPU {:.2} s",
            thousands(m),
            thousands(m / conns as f64),
            median(&mut waits),
            median(&mut server),
            median(&mut client),
            median(&mut reads),
        ),
        "≥ 500,000/s",
        format!("{:.2}× target", m / 500_000.0),
    ));
}

fn latency_rows(rows: &mut Vec<Row>, label: &str, lat: &[Latency], names: &[&str], conns: usize) {
    for (l, name) in lat.iter().zip(names) {
        rows.push(row(
            format!("{label}: publish→receipt latency{name}, {LATENCY_RATE} events/s to {conns} connections"),
            format!(
                "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} deliveries)",
                l.p50, l.p99, l.max, l.samples
            ),
            "p99 ≤ 50 ms",
            format!("p99 = {:.2}× target", l.p99 / 50.0),
        ));
    }
}

fn print_table(rows: &[Row]) {
    println!("machine load after (1/5/15-min averages): {}", loadavg());
    println!();
    println!("| measure | result | target | ratio |");
    println!("| --- | --- | --- | --- |");
    for r in rows {
        println!(
            "| {} | {} | {} | {} |",
            r.measure, r.result, r.target, r.ratio
        );
    }
}

fn reachable(url: &str, default_port: u16) -> bool {
    let host_port = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let host_port = if host_port.contains(':') {
        host_port
    } else {
        format!("{host_port}:{default_port}")
    };
    use std::net::ToSocketAddrs;
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

pub async fn bench(quick: bool) {
    let _ = epoch();
    let idle_conns: usize = if quick { 1_000 } else { 10_000 };
    let fan_conns: usize = if quick { 100 } else { 1_000 };
    let fan_events: u64 = if quick { 300 } else { 3_000 };
    let fan_runs = if quick { 1 } else { 3 };
    let lat_secs: u64 = if quick { 1 } else { 5 };
    let actors_n = idle_conns / fan_conns;

    println!();
    println!("## gateway");
    let want_files = (idle_conns + 1_000) as u64;
    let limit = raise_nofile(want_files);
    println!("open-file limit of this process: {limit} (needs ~{want_files})");
    let idle_conns = if limit < want_files {
        let n = (limit.saturating_sub(1_000) as usize / fan_conns).max(1) * fan_conns;
        println!("holding only {n} idle connections: the hard limit is too low");
        n
    } else {
        idle_conns
    };
    let actors_n = actors_n.min(idle_conns / fan_conns).max(1);
    println!("machine load before (1/5/15-min averages): {}", loadavg());
    let http = reqwest::Client::new();
    let record = Arc::new(AtomicBool::new(false));
    let mut rows = Vec::new();
    let dir = tempfile::tempdir().unwrap();

    // ---- one node, SQLite ----
    println!("### one node, SQLite (synchronous=FULL)");
    let node = start_node(dir.path(), "single", &[])
        .await
        .expect("gateway server did not start");
    let actors: Vec<String> = (0..actors_n).map(|i| format!("g{i}")).collect();
    let (tokens, login_rate) =
        login_sessions(std::slice::from_ref(&node.base), &actors, fan_conns).await;
    println!(
        "logins (Argon2 256 KiB/t=1, CSR, {LOGIN_CONCURRENCY} concurrent): {} sessions of {} actors at {login_rate:.0}/s",
        tokens.len(),
        actors.len()
    );
    let n = (2_000 / if quick { 10 } else { 1 }) as u64;
    let alone1 = publish_alone(&http, &node, "g0", n, 1).await;
    let alone4 = publish_alone(&http, &node, "g0", n, 4).await;
    println!(
        "publish with no listener ({n} events, durable SQLite write + bus): {alone1:.0}/s from 1 task, {alone4:.0}/s from 4"
    );
    let acked: AckResp = post(
        &http,
        format!("{}/bench/ack", node.base),
        &AckReq {
            actors: actors.clone(),
        },
    )
    .await;
    println!("sessions marked caught up: {}", acked.sessions);

    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = node.rss_mib();
    let client_before = self_rss_mib();
    // Actor g0's sessions join the bench channel; the others only identify.
    let t0 = Instant::now();
    let (fan_group, _) = connect_group(&[node.addr], &tokens[..fan_conns], true, &record).await;
    let (idle_group, _) = connect_group(&[node.addr], &tokens[fan_conns..], false, &record).await;
    let rate = tokens.len() as f64 / t0.elapsed().as_secs_f64();
    let held = await_connections(&http, &[&node], idle_conns).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = node.rss_mib();
    let client_after = self_rss_mib();
    let per_conn_kib = (rss_after - rss_before) * 1024.0 / held.max(1) as f64;
    println!(
        "identified connections held: {held} (connect + identify: {rate:.0}/s, {CONNECT_CONCURRENCY} at a time)"
    );
    println!(
        "server RSS: {rss_before:.1} MiB before, {rss_after:.1} MiB with {held} connections = {per_conn_kib:.1} KiB per connection"
    );
    println!(
        "client process RSS: {client_before:.1} → {client_after:.1} MiB ({:.1} KiB per connection)",
        (client_after - client_before) * 1024.0 / held.max(1) as f64
    );
    rows.push(row(
        "identified idle connections on one node",
        thousands(held as f64),
        "10,000",
        format!("{:.2}× target", held as f64 / 10_000.0),
    ));
    rows.push(row(
        format!("server RSS with {held} connections (before → after; per connection)"),
        format!("{rss_before:.1} → {rss_after:.1} MiB; {per_conn_kib:.1} KiB/conn"),
        "< 200 MiB",
        format!("{:.2}× budget", rss_after / 200.0),
    ));
    let closed_early = idle_group.closed() + fan_group.closed();
    idle_group.close().await;
    let left = await_connections(&http, &[&node], fan_conns).await;
    println!("closed the idle connections; {left} remain (actor g0)");
    if closed_early > 0 {
        println!("{closed_early} connections were closed by the server while idle");
    }

    let fan: Vec<&Arc<Stats>> = fan_group.stats.iter().collect();
    let primary = Publisher {
        thread: true,
        tasks: PUBLISHERS,
    };
    let runs = fanout_series(
        &http,
        &[&node],
        "g0",
        &fan,
        fan_events,
        fan_runs,
        primary,
        true,
    )
    .await;
    fanout_rows(
        &mut rows,
        "one node",
        "SQLite reader",
        &runs,
        fan_conns,
        fan_events,
        primary,
    );
    match latency_run(&http, &node, "g0", &[&fan], &record, lat_secs).await {
        Ok(l) => {
            println!(
                "latency at {LATENCY_RATE}/s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                l[0].p50, l[0].p99, l[0].max
            );
            latency_rows(&mut rows, "one node", &l, &[""], fan_conns);
        }
        Err(e) => println!("latency run failed: {e}"),
    }
    let rss_fanout = (node.rss_mib(), node.peak_mib());
    println!(
        "server RSS after fan-out and latency: {:.1} MiB (peak {:.1} MiB); heartbeats the clients had to send: {}",
        rss_fanout.0,
        rss_fanout.1,
        heartbeats(&fan)
    );
    // The same with the publisher on the server's runtime, as a service handler would be.
    for tasks in [1, PUBLISHERS] {
        let p = Publisher {
            thread: false,
            tasks,
        };
        let runs = fanout_series(&http, &[&node], "g0", &fan, fan_events, 1, p, false).await;
        fanout_rows(
            &mut rows,
            "one node",
            "SQLite reader",
            &runs,
            fan_conns,
            fan_events,
            p,
        );
    }
    println!(
        "server RSS after those: {:.1} MiB (peak {:.1} MiB)",
        node.rss_mib(),
        node.peak_mib()
    );
    rows.push(row(
        format!(
            "server RSS with {fan_conns} connections after the fan-out and latency runs (now; peak)"
        ),
        format!("{:.1} MiB; {:.1} MiB", rss_fanout.0, rss_fanout.1),
        "—",
        "—".into(),
    ));
    rows.push(row(
        "… and after the runs with the publisher on the server's runtime (now; peak)",
        format!("{:.1} MiB; {:.1} MiB", node.rss_mib(), node.peak_mib()),
        "—",
        "—".into(),
    ));
    fan_group.close().await;
    drop(node);

    // ---- two nodes, PostgreSQL + NATS ----
    println!("### two nodes, PostgreSQL + NATS");
    let pg_url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| PG_URL.into());
    let nats_url = std::env::var("TEST_NATS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| NATS_URL.into());
    if !reachable(&pg_url, 5432) || !reachable(&nats_url, 4222) {
        println!("skipped: PostgreSQL ({pg_url}) or NATS ({nats_url}) is not reachable");
        rows.push(row(
            "two nodes (NATS)",
            "skipped: PostgreSQL or NATS unreachable",
            "—",
            "—".into(),
        ));
        print_table(&rows);
        return;
    }
    let tag = format!("{:012x}", OsRng.next_u64() & 0xffff_ffff_ffff);
    let schema = format!("bench_{tag}");
    let key_file: PathBuf = dir.path().join("server.key");
    std::fs::write(&key_file, SigningKey::generate(&mut OsRng).to_bytes()).unwrap();
    let extra = vec![
        format!("pg={pg_url}"),
        format!("schema={schema}"),
        format!("nats={nats_url}"),
        format!("prefix=fugue-bench-{tag}"),
        format!("key={}", key_file.display()),
    ];
    let a = start_node(dir.path(), "node-a", &extra).await;
    // The second node starts after the first created the schema.
    let b = match &a {
        Some(_) => start_node(dir.path(), "node-b", &extra).await,
        None => None,
    };
    let (Some(a), Some(b)) = (a, b) else {
        println!("skipped: a node did not start with PostgreSQL and NATS (see its error above)");
        rows.push(row(
            "two nodes (NATS)",
            "skipped: a node did not start",
            "—",
            "—".into(),
        ));
        print_table(&rows);
        drop_schema(&pg_url, &schema).await;
        return;
    };
    let (tokens, login_rate) = login_sessions(
        &[a.base.clone(), b.base.clone()],
        &["c0".to_owned()],
        fan_conns,
    )
    .await;
    println!(
        "logins through both nodes: {} sessions of one actor at {login_rate:.0}/s",
        tokens.len()
    );
    let n = (1_000 / if quick { 10 } else { 1 }) as u64;
    let alone1 = publish_alone(&http, &a, "c0", n, 1).await;
    let alone4 = publish_alone(&http, &a, "c0", n, 4).await;
    println!(
        "publish with no listener ({n} events, PostgreSQL write + NATS): {alone1:.0}/s from 1 task, {alone4:.0}/s from 4"
    );
    let _: AckResp = post(
        &http,
        format!("{}/bench/ack", a.base),
        &AckReq {
            actors: vec!["c0".into()],
        },
    )
    .await;
    let (group_a, _) = connect_group(&[a.addr], &tokens[..fan_conns / 2], true, &record).await;
    let (group_b, _) = connect_group(&[b.addr], &tokens[fan_conns / 2..], true, &record).await;
    let on_a = connections(&http, &a).await;
    let on_b = connections(&http, &b).await;
    println!("connections: {on_a} on node A (publishes), {on_b} on node B");
    let sa: Vec<&Arc<Stats>> = group_a.stats.iter().collect();
    let sb: Vec<&Arc<Stats>> = group_b.stats.iter().collect();
    let both: Vec<&Arc<Stats>> = sa.iter().chain(&sb).copied().collect();
    let runs = fanout_series(
        &http,
        &[&a, &b],
        "c0",
        &both,
        fan_events,
        fan_runs,
        primary,
        true,
    )
    .await;
    fanout_rows(
        &mut rows,
        "two nodes (NATS)",
        "PostgreSQL",
        &runs,
        fan_conns,
        fan_events,
        primary,
    );
    match latency_run(&http, &a, "c0", &[&sa, &sb], &record, lat_secs).await {
        Ok(l) => {
            for (l, name) in l.iter().zip(["all", "node A", "node B"]) {
                println!(
                    "latency at {LATENCY_RATE}/s, {name}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    l.p50, l.p99, l.max
                );
            }
            latency_rows(
                &mut rows,
                "two nodes (NATS)",
                &l,
                &[
                    "",
                    " (clients on the publishing node)",
                    " (clients on the other node)",
                ],
                fan_conns,
            );
        }
        Err(e) => println!("latency run failed: {e}"),
    }
    println!(
        "server RSS after fan-out: node A {:.1} MiB, node B {:.1} MiB; heartbeats the clients had to send: {}",
        a.rss_mib(),
        b.rss_mib(),
        heartbeats(&both)
    );
    group_a.close().await;
    group_b.close().await;
    drop((a, b));
    drop_schema(&pg_url, &schema).await;
    print_table(&rows);
}

/// Removes the benchmark's PostgreSQL schema.
async fn drop_schema(url: &str, schema: &str) {
    let Ok(pool) = sqlx::PgPool::connect(url).await else {
        return;
    };
    let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await {
        println!("could not drop schema {schema}: {e}");
    }
    pool.close().await;
}
