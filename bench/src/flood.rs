//! Login flood against a loaded gateway: `cargo run --release -p fugue-bench -- flood [--quick]`.
//!
//! One gateway node in a child process (`--serve-gateway … argon2=production`): production
//! defaults, Argon2id at 19 MiB / t=2 included, SQLite `synchronous=FULL`; changed only where
//! the scenario needs it: per-client rate limits off (`login_per_minute = 0`, so that every
//! bad login reaches the password hasher instead of stopping at 429), up to 10,000 live
//! sessions per actor (the connections are sessions of one actor) and a 120 s heartbeat
//! interval (the clients answer the server's op 11 but send none of their own).
//!
//! 1,000 identified connections of one actor receive events at 100/s (the latency run of the
//! gateway benchmark: each event carries the time just before its publish call, latency is
//! taken at receipt), while `/health` is polled every 20 ms from another client. Measured
//! twice in the same run: first with nothing else (the baseline), then during a flood of bad
//! logins: waves of 500 concurrent `POST /login` with wrong passwords, half for the actor
//! whose connections are listening and half for names that do not exist, from 250 loopback
//! source addresses (127.0.1.1–127.0.1.250, two logins per address and wave), one wave after
//! the other until the measured period ends. The hashing queue holds 64 checks: what does not
//! fit is answered 503 `OVERLOADED` at once.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fugue_proto::api;

use crate::gateway::clients::{Stats, connect_group, epoch};
use crate::gateway::report::{Row, loadavg, print_table, row};
use crate::gateway::runs::{
    Latency, Node, ack, await_connections, latency_run, login_sessions, start_node,
};
use crate::gateway::{LATENCY_RATE, LOGIN_CONCURRENCY};
use crate::{percentile, raise_nofile};

/// Bad logins in flight at once (one wave).
const FLOOD_LOGINS: usize = 500;
/// Loopback source addresses the flood comes from: 127.0.1.1 up to 127.0.1.250.
const FLOOD_ADDRESSES: usize = 250;
/// Waves at most per measured period (the period's end comes first in practice).
const MAX_WAVES: usize = 1_000;
/// How often `/health` is asked.
const HEALTH_EVERY: Duration = Duration::from_millis(20);
/// Head start of the flood before measuring: the hashing queue is full by then.
const HEAD_START: Duration = Duration::from_millis(500);
/// The actor whose sessions hold the connections (and whose name half the flood uses).
const ACTOR: &str = "f0";
const WRONG_PASSWORD: &str = "not the benchmark password";

/// What the flood saw.
struct Logins {
    /// Answers by status (0 = no answer).
    by_status: BTreeMap<u16, u64>,
    waves: usize,
    /// From the first wave to the end of the last.
    secs: f64,
}

/// What one measured period saw.
struct Period {
    gateway: Result<Latency, String>,
    /// `/health` answer times, sorted; and requests that failed or were not 200.
    health: Vec<Duration>,
    health_failed: usize,
    /// What the flood saw; None without a flood.
    logins: Option<Logins>,
}

pub async fn bench(quick: bool) {
    let _ = epoch();
    let conns: usize = if quick { 100 } else { 1_000 };
    let secs: u64 = if quick { 2 } else { 10 };
    println!();
    println!(
        "## login flood ({FLOOD_LOGINS} concurrent bad logins from {FLOOD_ADDRESSES} loopback addresses, {conns} gateway connections at {LATENCY_RATE} events/s)"
    );
    println!(
        "server: production defaults (Argon2id 19 MiB/t=2, SQLite synchronous=FULL) but per-address and per-name login limits off (login_per_minute = 0), so that the flood reaches the password hasher"
    );
    let want_files = (conns + FLOOD_LOGINS + 1_000) as u64;
    let limit = raise_nofile(want_files);
    println!("open-file limit of this process: {limit} (needs ~{want_files})");
    println!("machine load before (1/5/15-min averages): {}", loadavg());
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), "flood", &["argon2=production".into()])
        .await
        .expect("flood server did not start");
    let http = reqwest::Client::new();
    let actors = [ACTOR.to_owned()];
    let (tokens, login_rate) =
        login_sessions(std::slice::from_ref(&node.base), &actors, conns).await;
    println!(
        "logins (Argon2 19 MiB/t=2, CSR, {LOGIN_CONCURRENCY} concurrent): {} sessions at {login_rate:.0}/s",
        tokens.len()
    );
    ack(&http, &node, &actors).await;
    let record = Arc::new(AtomicBool::new(false));
    let (group, _) = connect_group(&[node.addr], &tokens, true, &record).await;
    let held = await_connections(&http, &[&node], conns).await;
    println!("identified connections held: {held}");
    let stats: Vec<&Arc<Stats>> = group.stats.iter().collect();

    let calm = period(&http, &node, &stats, &record, secs, false).await;
    print_period("baseline (no flood)", &calm);
    let flood = period(&http, &node, &stats, &record, secs, true).await;
    print_period("during the flood", &flood);
    println!(
        "server RSS after the flood: {:.1} MiB (peak {:.1} MiB); connections closed by the server: {}",
        node.rss_mib(),
        node.peak_mib(),
        group.closed()
    );

    let mut rows = Vec::new();
    rows.extend(period_rows("baseline", &calm, conns));
    rows.extend(period_rows("flood", &flood, conns));
    group.close().await;
    drop(node);
    print_table(&rows);
}

/// One measured period of `secs`: the gateway latency run and `/health` polling, with the
/// flood (started `HEAD_START` earlier) or without.
async fn period(
    http: &reqwest::Client,
    node: &Node,
    stats: &[&Arc<Stats>],
    record: &AtomicBool,
    secs: u64,
    with_flood: bool,
) -> Period {
    let stop = Arc::new(AtomicBool::new(false));
    // Bounded even if the latency run hangs: the period plus its own 30 s wait.
    let deadline = Instant::now() + HEAD_START + Duration::from_secs(secs + 30);
    let flood = with_flood.then(|| tokio::spawn(flood(node.base.clone(), stop.clone(), deadline)));
    if with_flood {
        tokio::time::sleep(HEAD_START).await;
    }
    let health = tokio::spawn(poll_health(node.base.clone(), stop.clone(), deadline));
    let gateway = latency_run(http, node, ACTOR, &[stats], record, secs)
        .await
        .map(|mut l| l.remove(0));
    stop.store(true, Ordering::Relaxed);
    let (health, health_failed) = health.await.unwrap();
    let logins = match flood {
        Some(f) => Some(f.await.unwrap()),
        None => None,
    };
    Period {
        gateway,
        health,
        health_failed,
        logins,
    }
}

/// Asks `GET /health` every `HEALTH_EVERY` (the next request waits for the answer) until
/// `stop`; returns the sorted answer times and the number of failed requests.
async fn poll_health(
    base: String,
    stop: Arc<AtomicBool>,
    deadline: Instant,
) -> (Vec<Duration>, usize) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("{base}{}", api::health::PATH);
    let mut tick = tokio::time::interval(HEALTH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut times, mut failed) = (Vec::new(), 0);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        tick.tick().await;
        let t = Instant::now();
        let ok = match client.get(&url).send().await {
            Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
            Err(_) => false,
        };
        if ok {
            times.push(t.elapsed());
        } else {
            failed += 1;
        }
    }
    times.sort();
    (times, failed)
}

/// Waves of `FLOOD_LOGINS` concurrent bad logins from `FLOOD_ADDRESSES` source addresses,
/// each wave once the last one is answered, until `stop` or `deadline`. Returns the answers
/// by status.
async fn flood(base: String, stop: Arc<AtomicBool>, deadline: Instant) -> Logins {
    let clients: Vec<reqwest::Client> = (0..FLOOD_ADDRESSES)
        .map(|i| {
            let ip = Ipv4Addr::new(127, 0, 1, (i + 1) as u8);
            reqwest::Client::builder()
                .local_address(IpAddr::V4(ip))
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap()
        })
        .collect();
    let url = format!("{base}{}", api::login::PATH);
    let mut counts = BTreeMap::new();
    let mut waves = 0;
    let started = Instant::now();
    while waves < MAX_WAVES && !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..FLOOD_LOGINS {
            // Each address sends one login for the real actor and one for a missing name.
            let local_name = if i < FLOOD_ADDRESSES {
                ACTOR.to_owned()
            } else {
                format!("nobody{i}")
            };
            let body = api::login::Request {
                local_name,
                password: WRONG_PASSWORD.into(),
                totp: None,
                csr: None,
                session_id: None,
            };
            let (client, url) = (clients[i % FLOOD_ADDRESSES].clone(), url.clone());
            set.spawn(async move {
                match client.post(url).json(&body).send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let _ = r.bytes().await;
                        status
                    }
                    Err(_) => 0,
                }
            });
        }
        while let Some(status) = set.join_next().await {
            *counts.entry(status.unwrap()).or_insert(0) += 1;
        }
        waves += 1;
    }
    Logins {
        by_status: counts,
        waves,
        secs: started.elapsed().as_secs_f64(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn health_line(p: &Period) -> String {
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} answers, {} failed)",
        ms(percentile(&p.health, 0.5)),
        ms(percentile(&p.health, 0.99)),
        ms(p.health.last().copied().unwrap_or_default()),
        p.health.len(),
        p.health_failed
    )
}

fn logins_line(l: &Logins) -> String {
    let counts = &l.by_status;
    let total: u64 = counts.values().sum();
    let by_status = [201, 401, 429, 503]
        .iter()
        .map(|s| format!("{s}: {}", counts.get(s).copied().unwrap_or(0)))
        .chain(
            counts
                .iter()
                .filter(|(s, _)| ![201, 401, 429, 503].contains(*s))
                .map(|(s, n)| match s {
                    0 => format!("no answer: {n}"),
                    s => format!("{s}: {n}"),
                }),
        )
        .collect::<Vec<_>>()
        .join(", ");
    let checked = counts.get(&401).copied().unwrap_or(0);
    format!(
        "{total} in {} waves over {:.1} s ({by_status}); {:.0} password checks/s",
        l.waves,
        l.secs,
        checked as f64 / l.secs.max(1e-9)
    )
}

fn print_period(name: &str, p: &Period) {
    match &p.gateway {
        Ok(l) => println!(
            "{name}: publish→receipt latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} deliveries)",
            l.p50, l.p99, l.max, l.samples
        ),
        Err(e) => println!("{name}: latency run failed: {e}"),
    }
    println!(
        "{name}: /health every {} ms: {}",
        HEALTH_EVERY.as_millis(),
        health_line(p)
    );
    if let Some(l) = &p.logins {
        println!("{name}: bad logins answered: {}", logins_line(l));
    }
}

fn period_rows(label: &str, p: &Period, conns: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    let during = if p.logins.is_some() {
        format!(", during {FLOOD_LOGINS} concurrent bad logins")
    } else {
        String::new()
    };
    rows.push(match &p.gateway {
        Ok(l) => row(
            format!("{label}: publish→receipt latency, {LATENCY_RATE} events/s to {conns} connections{during}"),
            format!(
                "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} deliveries)",
                l.p50, l.p99, l.max, l.samples
            ),
            "p99 ≤ 50 ms",
            format!("p99 = {:.2}× target", l.p99 / 50.0),
        ),
        Err(e) => row(
            format!("{label}: publish→receipt latency"),
            format!("failed: {e}"),
            "p99 ≤ 50 ms",
            "—".into(),
        ),
    });
    let p99 = ms(percentile(&p.health, 0.99));
    rows.push(row(
        format!(
            "{label}: GET /health every {} ms{during}",
            HEALTH_EVERY.as_millis()
        ),
        health_line(p),
        "p50 and p99 ≤ 50 ms",
        format!("p99 = {:.2}× target", p99 / 50.0),
    ));
    if let Some(l) = &p.logins {
        rows.push(row(
            format!(
                "{label}: bad login answers ({FLOOD_ADDRESSES} source addresses, wrong password for a real and a missing name)"
            ),
            logins_line(l),
            "503 at once when the hashing queue is full",
            "—".into(),
        ));
    }
    rows
}
