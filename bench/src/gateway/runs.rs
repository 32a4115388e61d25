//! Driving the gateway nodes from the parent: starting them, logging sessions in, and the
//! measured runs (flat-out fan-out, paced publish-to-receipt latency).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use fugue_client::{Client, IdentityKey};
use fugue_proto::{FederationId, SessionId};

use super::clients::{Stats, epoch, frame_len, received};
use super::report::{cpu_secs, db_label, postgres_cpu_secs, thousands};
use super::server::{AckReq, AckResp, PublishResp, StatsResp};
use super::{BATCH, LATENCY_RATE, LOGIN_CONCURRENCY, PAD, WINDOW};
use crate::{KillOnDrop, PASSWORD, percentile, rss_kib, start_child};

/// A gateway node in a child process, as the parent reaches it.
pub(crate) struct Node {
    pub(crate) child: KillOnDrop,
    pub(crate) base: String,
    pub(crate) addr: SocketAddr,
    pub(crate) postgres: bool,
}

impl Node {
    pub(crate) fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub(crate) fn rss_mib(&self) -> f64 {
        rss_kib(self.pid(), "VmRSS:") as f64 / 1024.0
    }

    pub(crate) fn peak_mib(&self) -> f64 {
        rss_kib(self.pid(), "VmHWM:") as f64 / 1024.0
    }
}

/// Starts a gateway node (`--serve-gateway`) in `dir/name` with the child options `extra`.
pub(crate) async fn start_node(dir: &Path, name: &str, extra: &[String]) -> Option<Node> {
    let (child, port) = start_child("--serve-gateway", &dir.join(name), extra, true).await?;
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
pub(crate) async fn login_sessions(
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

pub(crate) async fn post<Req: Serialize, Resp: for<'de> Deserialize<'de>>(
    http: &reqwest::Client,
    url: String,
    body: &Req,
) -> Resp {
    let resp = http.post(url).json(body).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.unwrap()
}

pub(crate) async fn connections(http: &reqwest::Client, node: &Node) -> usize {
    let resp = http
        .get(format!("{}/bench/stats", node.base))
        .send()
        .await
        .unwrap();
    resp.json::<StatsResp>().await.unwrap().connections
}

/// Waits (up to 30 s) until the nodes hold `want` identified connections together.
pub(crate) async fn await_connections(
    http: &reqwest::Client,
    nodes: &[&Node],
    want: usize,
) -> usize {
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

/// Marks every session of `actors` caught up (`POST /bench/ack`); returns how many.
pub(crate) async fn ack(http: &reqwest::Client, node: &Node, actors: &[String]) -> u64 {
    let req = AckReq {
        actors: actors.to_vec(),
    };
    let resp: AckResp = post(http, format!("{}/bench/ack", node.base), &req).await;
    resp.sessions
}

/// Publishes `count` events with `tasks` publishers and no connection listening; events/s.
pub(crate) async fn publish_alone(
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

/// How the child publishes during a fan-out run.
#[derive(Clone, Copy)]
pub(crate) struct Publisher {
    /// On a thread of its own (see [`PublishReq::thread`]) or on the server's runtime.
    pub(crate) thread: bool,
    /// Publishing tasks per request.
    pub(crate) tasks: u64,
}

impl Publisher {
    pub(crate) fn describe(self) -> String {
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

/// What one fan-out run measured.
pub(crate) struct Run {
    pub(crate) deliveries_per_s: f64,
    /// Share of the publishing time spent waiting for the slowest client (0 = the
    /// publisher was the limit, 1 = delivery was).
    pub(crate) window_wait: f64,
    /// CPU µs per delivery: server nodes, and this process (the clients).
    pub(crate) server_us: f64,
    pub(crate) client_us: f64,
    /// CPU seconds of the database readers during the run: the SQLite reader threads
    /// (connections reading the event log), or with PostgreSQL every PostgreSQL process
    /// (its event writes included).
    pub(crate) db_cpu_s: f64,
}

/// One flat-out fan-out run: `events` events published on `nodes[0]` as fast as the
/// publisher manages but at most `WINDOW` ahead of the slowest client, until every client
/// received all of them. Deliveries per second are end to end: first publish request to
/// last receipt.
pub(crate) async fn fanout_run(
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

pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
    pub(crate) samples: usize,
}

/// Events paced at `LATENCY_RATE`/s for `secs`; publish-to-receipt latency over every
/// delivery (ms). `groups` are measured together and each on its own.
pub(crate) async fn latency_run(
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

/// Runs `runs` fan-out runs (after a short warm-up) and prints each; returns them.
#[allow(
    clippy::too_many_arguments,
    reason = "a benchmark step with its parameters"
)]
pub(crate) async fn fanout_series(
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
