//! Federation benchmarks: `cargo run --release -p fugue-bench -- federation [--quick]`.
//!
//! Two servers in child processes (`--serve-federation`), each on a loopback port with its
//! own SQLite database (`synchronous=FULL`) and no rate limits: `alpha.test`, the actors'
//! home server (cheap Argon2, so that setting up hundreds of actors is quick), and
//! `beta.test`, where they sign in with key trials (core §4.1.1). Beta reaches alpha through
//! `federation.resolve` pointed at a counting proxy in this process, so every request beta
//! sends to alpha is counted where alpha receives it; beta's own counter is printed beside.
//!
//! A sign-in is what `Session::sign_in_on` does: `GET /session/auth` (beta stores a trial),
//! an Ed25519 signature in the client, `POST /session/auth` (beta spends the trial, checks
//! the certificate and the signature, opens a session). Measured:
//!
//! - warm: the same actor and certificate again and again. Beta has the certificate cached
//!   for the window alpha signed (6 h by default), so alpha should hear nothing after the
//!   first sign-in;
//! - cold: a new actor per sign-in (each registered and logged in on alpha beforehand). Beta
//!   knows alpha's root but not the actor, so each sign-in costs one request to alpha (the
//!   actor's certificate list). A fresh certificate of one actor per sign-in would grow that
//!   list with every sign-in, and restarting beta would time its start-up, so neither is used.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ed25519_dalek::SigningKey;
use futures_util::{StreamExt, stream};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};

use fugue_client::{Client, IdentityKey, Session};
use fugue_proto::{FederationId, SessionId};

use crate::{
    KillOnDrop, PASSWORD, cheap_hashing, load, open_sqlite, percentile, serve_child, start_child,
};

const ALPHA: &str = "alpha.test";
const BETA: &str = "beta.test";
/// Sign-ins in flight at once.
const CONCURRENCY: usize = 8;
/// Logins on alpha in flight at once while setting up.
const SETUP_CONCURRENCY: usize = 16;
const RUNS: usize = 3;

// ---------------------------------------------------------------------------------------
// The children.

#[derive(Serialize, Deserialize)]
struct FedStats {
    /// Requests beta sent to other servers (its own count).
    requests_sent: u64,
}

/// `--serve-federation <dir> <port file> <domain> [resolve=<domain>=<url>]`
pub async fn serve(args: &[String]) {
    let store = open_sqlite(Path::new(&args[0])).await;
    serve_child(
        &args[1],
        &args[2],
        store,
        SigningKey::generate(&mut OsRng),
        |config| {
            config.registration = fugue_server::Registration::Open;
            cheap_hashing(config);
            for arg in &args[3..] {
                if let Some((host, url)) =
                    arg.strip_prefix("resolve=").and_then(|r| r.split_once('='))
                {
                    config.federation.resolve.insert(host.into(), url.into());
                }
            }
        },
        |server| {
            let federation = server.federation().clone();
            axum::Router::new().route(
                "/bench/federation",
                axum::routing::get(move || {
                    let requests_sent = federation.requests_sent();
                    async move { Json(FedStats { requests_sent }) }
                }),
            )
        },
    )
    .await;
}

async fn start(dir: &Path, domain: &str, extra: &[String]) -> (KillOnDrop, String) {
    let mut args = vec![domain.to_owned()];
    args.extend_from_slice(extra);
    let (child, port) = start_child("--serve-federation", &dir.join(domain), &args, true)
        .await
        .unwrap_or_else(|| panic!("{domain} did not start"));
    (child, format!("http://127.0.0.1:{port}"))
}

// ---------------------------------------------------------------------------------------
// The counting proxy in front of alpha.

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    total: AtomicU64,
    /// Requests by path, actor FIDs replaced by `*`.
    by_path: Mutex<BTreeMap<String, u64>>,
}

impl Proxy {
    fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn by_path(&self) -> String {
        let map = self.by_path.lock().unwrap();
        map.iter()
            .map(|(p, n)| format!("{p} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    p.total.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path();
    let kind = match path.find("/idcert/actor/") {
        Some(i) => format!("{}/idcert/actor/*", &path[..i]),
        None => path.to_owned(),
    };
    *p.by_path.lock().unwrap().entry(kind).or_default() += 1;
    let target = format!(
        "{}{}",
        p.upstream,
        req.uri().path_and_query().map_or("/", |pq| pq.as_str())
    );
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap();
    let Ok(resp) = p.http.request(method, target).send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    let body = resp.bytes().await.unwrap_or_default();
    let mut out = (status, body).into_response();
    if let Some(ct) = content_type {
        out.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    out
}

async fn start_proxy(upstream: &str) -> (Arc<Proxy>, String) {
    let proxy = Arc::new(Proxy {
        upstream: upstream.to_owned(),
        http: reqwest::Client::new(),
        total: AtomicU64::new(0),
        by_path: Mutex::default(),
    });
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (proxy, url)
}

// ---------------------------------------------------------------------------------------
// The parent.

/// Registers `names` on alpha and logs each in once (session `main`).
async fn actors(alpha: &Client, names: Vec<String>) -> Vec<Session> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let sessions: Vec<Session> = stream::iter(names)
        .map(|name| {
            let alpha = alpha.clone();
            async move {
                assert!(
                    Instant::now() < deadline,
                    "setting up took longer than 300 s"
                );
                alpha.register(&name, PASSWORD, None, None).await.unwrap();
                let fid: FederationId = format!("{name}@{ALPHA}").parse().unwrap();
                let sid: SessionId = "main".parse().unwrap();
                let key = IdentityKey::generate();
                alpha
                    .login(&name, PASSWORD, None, &key, &fid, &sid)
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    sessions
}

async fn beta_sent(http: &reqwest::Client, beta: &str) -> u64 {
    let stats: FedStats = http
        .get(format!("{beta}/bench/federation"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats.requests_sent
}

/// One measured run: (sign-ins/s, latencies, requests alpha received).
type Run = (f64, Vec<Duration>, u64);

/// `n` sign-ins on beta, `CONCURRENCY` at a time; sign-in `i` by `sessions[i % len]`.
async fn run(proxy: &Proxy, beta: &Client, sessions: Arc<Vec<Session>>, n: usize) -> Run {
    let before = proxy.total();
    let beta = beta.clone();
    let (rate, lat) = load(CONCURRENCY, n, Duration::from_secs(120), move |i| {
        let (beta, sessions) = (beta.clone(), sessions.clone());
        async move {
            let session = &sessions[i % sessions.len()];
            let domain = BETA.parse().unwrap();
            std::hint::black_box(session.sign_in_on(beta, &domain).await.unwrap());
        }
    })
    .await;
    assert_eq!(lat.len(), n, "a run took longer than 120 s");
    (rate, lat, proxy.total() - before)
}

/// Median rate, all runs' latencies, total requests and sign-ins.
fn summarize(runs: &[Run]) -> (f64, Vec<f64>, Vec<Duration>, u64, usize) {
    let mut rates: Vec<f64> = runs.iter().map(|r| r.0).collect();
    let list = rates.clone();
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let mut lat: Vec<Duration> = runs.iter().flat_map(|r| r.1.iter().copied()).collect();
    lat.sort();
    let requests = runs.iter().map(|r| r.2).sum();
    let sign_ins = runs.iter().map(|r| r.1.len()).sum();
    (median, list, lat, requests, sign_ins)
}

fn joined(rates: &[f64]) -> String {
    let v: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    v.join(", ")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub async fn bench(quick: bool) {
    let scale = if quick { 10 } else { 1 };
    let warm_n = 1_000 / scale;
    let cold_n = 300 / scale;
    println!();
    println!("## federation (key trial sign-ins on beta.test of actors of alpha.test)");
    let dir = tempfile::tempdir().unwrap();
    let (_alpha_child, alpha_url) = start(dir.path(), ALPHA, &[]).await;
    let (proxy, proxy_url) = start_proxy(&alpha_url).await;
    let resolve = format!("resolve={ALPHA}={proxy_url}");
    let (_beta_child, beta_url) = start(dir.path(), BETA, &[resolve]).await;
    let http = reqwest::Client::new();
    let alpha = Client::new(&alpha_url).unwrap();
    let beta = Client::new(&beta_url).unwrap();

    let t = Instant::now();
    let names: Vec<String> = (0..=RUNS * cold_n).map(|i| format!("a{i}")).collect();
    let mut sessions = actors(&alpha, names).await;
    println!(
        "set-up: {} actors registered and logged in on alpha in {:.1} s",
        sessions.len(),
        t.elapsed().as_secs_f64()
    );
    let warm = Arc::new(vec![sessions.pop().unwrap()]);

    // Warm: the first sign-in fills beta's caches; the runs after it should cost alpha nothing.
    let t = Instant::now();
    let beta_domain = BETA.parse().unwrap();
    warm[0]
        .sign_in_on(beta.clone(), &beta_domain)
        .await
        .unwrap();
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    let first_requests = proxy.total();
    println!(
        "first sign-in on a fresh beta: {first_ms:.1} ms, {first_requests} requests to alpha ({})",
        proxy.by_path()
    );
    let mut warm_runs = Vec::new();
    for i in 0..RUNS {
        let r = run(&proxy, &beta, warm.clone(), warm_n).await;
        println!(
            "warm run {}: {warm_n} sign-ins of one actor at {:.0}/s, {} requests to alpha",
            i + 1,
            r.0,
            r.2
        );
        warm_runs.push(r);
    }
    let (median, list, lat, requests, n) = summarize(&warm_runs);
    let with_first = (requests + first_requests) as f64 * 1000.0 / (n + 1) as f64;
    println!(
        "WARM: {median:.0} sign-ins/s (median of {RUNS}; runs {}), p50 {:.1} ms, p99 {:.1} ms ({CONCURRENCY} concurrent); \
         requests to alpha: {requests} in {n} sign-ins after the first, {with_first:.2} per 1,000 counting the first",
        joined(&list),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
    );

    // Cold: a new actor per sign-in.
    let mut cold_runs = Vec::new();
    for i in 0..RUNS {
        let batch: Vec<Session> = sessions.drain(..cold_n).collect();
        let r = run(&proxy, &beta, Arc::new(batch), cold_n).await;
        println!(
            "cold run {}: {cold_n} sign-ins of new actors at {:.0}/s, {} requests to alpha",
            i + 1,
            r.0,
            r.2
        );
        cold_runs.push(r);
    }
    let (median, list, lat, requests, n) = summarize(&cold_runs);
    println!(
        "COLD: {median:.0} sign-ins/s (median of {RUNS}; runs {}), p50 {:.1} ms, p99 {:.1} ms ({CONCURRENCY} concurrent); \
         requests to alpha: {requests} in {n} sign-ins = {:.0} per 1,000",
        joined(&list),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        requests as f64 * 1000.0 / n as f64
    );
    println!(
        "alpha received {} requests in all ({}); beta counted {} sent",
        proxy.total(),
        proxy.by_path(),
        beta_sent(&http, &beta_url).await
    );
}
