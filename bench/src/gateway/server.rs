//! The child side of the gateway benchmarks: a gateway node (`--serve-gateway`) with the
//! bench service channel and the bench-only routes described in `gateway/mod.rs`.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Json;
use ed25519_dalek::SigningKey;
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use fugue_server::ids::ActorId;
use fugue_server::{Events, Gateway, Publish};
use fugue_store::Store;

use super::{HEARTBEAT_MS, SERVICE, unix_nanos};
use crate::{cheap_hashing, open_sqlite, raise_nofile, serve_child};

/// Live sessions per actor the children allow: the runs log in up to 1,000 sessions of one
/// actor, ten times the production cap.
const SESSIONS_PER_ACTOR: usize = 10_000;

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
pub(super) struct PublishResp {
    pub(super) published: u64,
    pub(super) elapsed_us: u64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct AckReq {
    pub(super) actors: Vec<String>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct AckResp {
    pub(super) sessions: u64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct StatsResp {
    pub(super) connections: usize,
}

async fn publish_one(events: &Events, actor_id: ActorId, pad: &str) {
    let at = unix_nanos();
    events
        .publish(Publish::to_actor(
            actor_id,
            SERVICE,
            1,
            json!({ "at": at, "pad": pad }),
        ))
        .await
        .unwrap();
}

async fn publish(events: Events, store: Store, req: PublishReq) -> Json<PublishResp> {
    let actor_id = ActorId::from_store(store.actor_by_name(&req.actor).await.unwrap().unwrap().id);
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

async fn publish_many(events: Events, actor_id: ActorId, req: PublishReq) -> PublishResp {
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
    let mut n = 0;
    for name in req.actors {
        let actor = store.actor_by_name(&name).await.unwrap().unwrap();
        let head = store.stream_head(actor.id).await.unwrap();
        for s in store.sessions_of(actor.id).await.unwrap() {
            store
                .advance_positions(s.id, &[(actor.id, head)])
                .await
                .unwrap();
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
/// [key=<file with 32 key bytes>] [argon2=production]`
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
        (Some(url), Some(schema)) => Store::open_postgres(&url, Some(&schema), 8).await.unwrap(),
        _ => open_sqlite(dir).await,
    };
    let key = match opt("key") {
        Some(f) => SigningKey::from_bytes(&std::fs::read(f).unwrap().try_into().unwrap()),
        None => SigningKey::generate(&mut OsRng),
    };
    let production_hashing = opt("argon2").as_deref() == Some("production");
    let routes_store = store.clone();
    serve_child(
        port_file,
        "localhost",
        store,
        key,
        |config| {
            if !production_hashing {
                cheap_hashing(config);
            }
            config.limits.max_sessions_per_actor = SESSIONS_PER_ACTOR;
            config.gateway.heartbeat_interval_ms = HEARTBEAT_MS;
            if let (Some(url), Some(prefix)) = (opt("nats"), opt("prefix")) {
                config.cluster.nats_url = Some(url);
                config.cluster.subject_prefix = prefix;
            }
        },
        |server| {
            server.gateway().register_service(Arc::new(BenchService));
            routes(
                server.events().clone(),
                routes_store,
                server.gateway().clone(),
            )
        },
    )
    .await;
}
