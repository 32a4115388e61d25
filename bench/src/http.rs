//! Accounts, sessions and ID-Certs: `cargo run --release -p fugue-bench -- http [--quick]`.
//!
//! Argon2 and certificate issuance alone in this process; then, against a child server
//! (`--serve`: production defaults, Argon2 cost included, no rate limits, SQLite
//! `synchronous=FULL`), logins with CSRs and `GET /idcert/actor/{fid}` lookups over HTTP, with
//! the server's RSS after each step.

use std::path::Path;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use rand_core::OsRng;

use fugue_client::{Client, IdentityKey};
use fugue_proto::certs::ActorCsr;
use fugue_proto::certs::issue::{self, Window};
use fugue_proto::{FederationId, Serial, SessionId};

use crate::{PASSWORD, load, open_sqlite, percentile, rss_kib, serve_child, start_child};

/// The child: `--serve <dir> <port file>`, a server with production defaults (Argon2 cost
/// included) but no rate limits.
pub async fn serve(args: &[String]) {
    let store = open_sqlite(Path::new(&args[0])).await;
    serve_child(
        &args[1],
        "localhost",
        store,
        SigningKey::generate(&mut OsRng),
        |_| {},
        |_| axum::Router::new(),
    )
    .await;
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

pub async fn bench(quick: bool) {
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
    let (child, port) = start_child("--serve", dir.path(), &[], false)
        .await
        .expect("server did not start");
    let pid = child.pid();
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
