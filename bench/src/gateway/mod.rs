//! Gateway benchmarks: `cargo run --release -p fugue-bench -- gateway [--quick]`.
//!
//! Measured (docs/performance.md): identified idle connections on one node and the server's
//! RSS per connection; flat-out event fan-out to the sessions of one actor (deliveries/s);
//! publish-to-receipt latency at a paced rate; and the same fan-out and latency with two
//! nodes sharing PostgreSQL and announcing through NATS (skipped with a message when either
//! is unreachable).
//!
//! The server runs in child processes (`--serve-gateway`): cheap Argon2 (production cost with
//! `argon2=production`, as the flood benchmark asks), no rate limits, up to 10,000 live
//! sessions per actor, a 120 s heartbeat interval (idle clients owe no heartbeat during a run; they still answer
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
//!
//! Layout: `server.rs` is the child (routes and `serve`), `clients.rs` the WebSocket clients,
//! `runs.rs` starts nodes, logs sessions in and runs the measures, `report.rs` reads CPU and
//! RSS and builds the table; here, `bench` runs one phase per node set, each returning its
//! rows.

pub(crate) mod clients;
pub(crate) mod report;
pub(crate) mod runs;
mod server;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use rand_core::{OsRng, RngCore};

use clients::{Stats, connect_group, epoch, heartbeats};
use report::{
    Row, db_label, fanout_rows, latency_rows, loadavg, print_table, row, self_rss_mib, thousands,
};
use runs::{
    Node, Publisher, ack, await_connections, connections, fanout_series, latency_run,
    login_sessions, publish_alone, start_node,
};
pub use server::serve;

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
/// The publisher of the main fan-out runs: `PUBLISHERS` tasks off the server's runtime.
const PRIMARY: Publisher = Publisher {
    thread: true,
    tasks: PUBLISHERS,
};
/// Paced publishing rate of the latency measure.
pub(crate) const LATENCY_RATE: u64 = 100;
/// Connections opened at once.
const CONNECT_CONCURRENCY: usize = 64;
/// Logins in flight at once.
pub(crate) const LOGIN_CONCURRENCY: usize = 16;

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const NATS_URL: &str = "nats://127.0.0.1:4222";

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// What both phases share: the sizes of this run and the parent's HTTP client.
struct Setup {
    quick: bool,
    idle_conns: usize,
    fan_conns: usize,
    fan_events: u64,
    fan_runs: usize,
    lat_secs: u64,
    actors_n: usize,
    http: reqwest::Client,
    /// Whether the clients record latencies (only during a latency run).
    record: Arc<AtomicBool>,
    dir: tempfile::TempDir,
}

pub async fn bench(quick: bool) {
    let _ = epoch();
    let idle_conns: usize = if quick { 1_000 } else { 10_000 };
    let fan_conns: usize = if quick { 100 } else { 1_000 };
    let actors_n = idle_conns / fan_conns;

    println!();
    println!("## gateway");
    let want_files = (idle_conns + 1_000) as u64;
    let limit = crate::raise_nofile(want_files);
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
    let setup = Setup {
        quick,
        idle_conns,
        fan_conns,
        fan_events: if quick { 300 } else { 3_000 },
        fan_runs: if quick { 1 } else { 3 },
        lat_secs: if quick { 1 } else { 5 },
        actors_n,
        http: reqwest::Client::new(),
        record: Arc::new(AtomicBool::new(false)),
        dir: tempfile::tempdir().unwrap(),
    };
    let mut rows = one_node(&setup).await;
    rows.extend(two_nodes(&setup).await);
    print_table(&rows);
}

/// Publishes with no connection listening, from 1 and from 4 tasks, and prints both rates.
async fn publish_alone_pair(s: &Setup, node: &Node, actor: &str, n: u64, what: &str) {
    let alone1 = publish_alone(&s.http, node, actor, n, 1).await;
    let alone4 = publish_alone(&s.http, node, actor, n, 4).await;
    println!(
        "publish with no listener ({n} events, {what}): {alone1:.0}/s from 1 task, {alone4:.0}/s from 4"
    );
}

/// The main fan-out series (publisher [`PRIMARY`] on `nodes[0]`) to every client of
/// `groups`, then the paced latency run, measured over all of them and, with more than one
/// group, over each; `names` holds, per latency measured, its name in the printed line and
/// in the table. Returns the rows.
async fn fanout_and_latency(
    s: &Setup,
    label: &str,
    nodes: &[&Node],
    actor: &str,
    groups: &[&[&Arc<Stats>]],
    names: &[(&str, &str)],
) -> Vec<Row> {
    let all: Vec<&Arc<Stats>> = groups.iter().flat_map(|g| g.iter().copied()).collect();
    let runs = fanout_series(
        &s.http,
        nodes,
        actor,
        &all,
        s.fan_events,
        s.fan_runs,
        PRIMARY,
        true,
    )
    .await;
    let mut rows = Vec::new();
    fanout_rows(
        &mut rows,
        label,
        db_label(nodes),
        &runs,
        s.fan_conns,
        s.fan_events,
        PRIMARY,
    );
    match latency_run(&s.http, nodes[0], actor, groups, &s.record, s.lat_secs).await {
        Ok(l) => {
            for (l, (name, _)) in l.iter().zip(names) {
                println!(
                    "latency at {LATENCY_RATE}/s{name}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    l.p50, l.p99, l.max
                );
            }
            let in_table: Vec<&str> = names.iter().map(|(_, t)| *t).collect();
            latency_rows(&mut rows, label, &l, &in_table, s.fan_conns);
        }
        Err(e) => println!("latency run failed: {e}"),
    }
    rows
}

/// One node on SQLite: idle connections and their memory, fan-out and latency, and fan-out
/// with the publisher on the server's runtime.
async fn one_node(s: &Setup) -> Vec<Row> {
    let mut rows = Vec::new();
    println!("### one node, SQLite (synchronous=FULL)");
    let node = start_node(s.dir.path(), "single", &[])
        .await
        .expect("gateway server did not start");
    let actors: Vec<String> = (0..s.actors_n).map(|i| format!("g{i}")).collect();
    let (tokens, login_rate) =
        login_sessions(std::slice::from_ref(&node.base), &actors, s.fan_conns).await;
    println!(
        "logins (Argon2 256 KiB/t=1, CSR, {LOGIN_CONCURRENCY} concurrent): {} sessions of {} actors at {login_rate:.0}/s",
        tokens.len(),
        actors.len()
    );
    let n = (2_000 / if s.quick { 10 } else { 1 }) as u64;
    publish_alone_pair(s, &node, "g0", n, "durable SQLite write + bus").await;
    let acked = ack(&s.http, &node, &actors).await;
    println!("sessions marked caught up: {acked}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = node.rss_mib();
    let client_before = self_rss_mib();
    // Actor g0's sessions join the bench channel; the others only identify.
    let t0 = Instant::now();
    let (fan_group, _) = connect_group(&[node.addr], &tokens[..s.fan_conns], true, &s.record).await;
    let (idle_group, _) =
        connect_group(&[node.addr], &tokens[s.fan_conns..], false, &s.record).await;
    let rate = tokens.len() as f64 / t0.elapsed().as_secs_f64();
    let held = await_connections(&s.http, &[&node], s.idle_conns).await;
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
    let left = await_connections(&s.http, &[&node], s.fan_conns).await;
    println!("closed the idle connections; {left} remain (actor g0)");
    if closed_early > 0 {
        println!("{closed_early} connections were closed by the server while idle");
    }

    let fan: Vec<&Arc<Stats>> = fan_group.stats.iter().collect();
    rows.extend(fanout_and_latency(s, "one node", &[&node], "g0", &[&fan], &[("", "")]).await);
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
        let runs = fanout_series(&s.http, &[&node], "g0", &fan, s.fan_events, 1, p, false).await;
        fanout_rows(
            &mut rows,
            "one node",
            "SQLite reader",
            &runs,
            s.fan_conns,
            s.fan_events,
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
            "server RSS with {} connections after the fan-out and latency runs (now; peak)",
            s.fan_conns
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
    rows
}

/// Two nodes sharing PostgreSQL and announcing through NATS: fan-out and latency with half
/// of the clients on each node. A skip row when either service is unreachable.
async fn two_nodes(s: &Setup) -> Vec<Row> {
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
        return vec![row(
            "two nodes (NATS)",
            "skipped: PostgreSQL or NATS unreachable",
            "—",
            "—".into(),
        )];
    }
    let tag = format!("{:012x}", OsRng.next_u64() & 0xffff_ffff_ffff);
    let schema = format!("bench_{tag}");
    let key_file: PathBuf = s.dir.path().join("server.key");
    std::fs::write(&key_file, SigningKey::generate(&mut OsRng).to_bytes()).unwrap();
    let extra = vec![
        format!("pg={pg_url}"),
        format!("schema={schema}"),
        format!("nats={nats_url}"),
        format!("prefix=fugue-bench-{tag}"),
        format!("key={}", key_file.display()),
    ];
    let a = start_node(s.dir.path(), "node-a", &extra).await;
    // The second node starts after the first created the schema.
    let b = match &a {
        Some(_) => start_node(s.dir.path(), "node-b", &extra).await,
        None => None,
    };
    let (Some(a), Some(b)) = (a, b) else {
        println!("skipped: a node did not start with PostgreSQL and NATS (see its error above)");
        drop_schema(&pg_url, &schema).await;
        return vec![row(
            "two nodes (NATS)",
            "skipped: a node did not start",
            "—",
            "—".into(),
        )];
    };
    let (tokens, login_rate) = login_sessions(
        &[a.base.clone(), b.base.clone()],
        &["c0".to_owned()],
        s.fan_conns,
    )
    .await;
    println!(
        "logins through both nodes: {} sessions of one actor at {login_rate:.0}/s",
        tokens.len()
    );
    let n = (1_000 / if s.quick { 10 } else { 1 }) as u64;
    publish_alone_pair(s, &a, "c0", n, "PostgreSQL write + NATS").await;
    ack(&s.http, &a, &["c0".into()]).await;
    let half = s.fan_conns / 2;
    let (group_a, _) = connect_group(&[a.addr], &tokens[..half], true, &s.record).await;
    let (group_b, _) = connect_group(&[b.addr], &tokens[half..], true, &s.record).await;
    let on_a = connections(&s.http, &a).await;
    let on_b = connections(&s.http, &b).await;
    println!("connections: {on_a} on node A (publishes), {on_b} on node B");
    let sa: Vec<&Arc<Stats>> = group_a.stats.iter().collect();
    let sb: Vec<&Arc<Stats>> = group_b.stats.iter().collect();
    let rows = fanout_and_latency(
        s,
        "two nodes (NATS)",
        &[&a, &b],
        "c0",
        &[&sa, &sb],
        &[
            (", all", ""),
            (", node A", " (clients on the publishing node)"),
            (", node B", " (clients on the other node)"),
        ],
    )
    .await;
    let both: Vec<&Arc<Stats>> = sa.iter().chain(&sb).copied().collect();
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
    rows
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
