//! End-to-end encryption benchmarks (docs/performance.md), against a child server on SQLite
//! (and PostgreSQL when `FUGUE_BENCH_DATABASE_URL` / `TEST_DATABASE_URL` is set), every
//! device simulated in this process with the SDK's MLS (openmls):
//!
//! - E1: an encrypted channel of 100 member devices; 10 of them send 2,000 encrypted messages
//!   (encrypted and signed before the clock starts) — messages/s the server accepts, against
//!   S2's plaintext sends, and send latency.
//! - E2: 50 members connected to the gateway; one sends 200 encrypted messages at 20/s —
//!   send-to-receipt latency over all 10,000 deliveries.
//! - E3: KeyPackage claims, 10 at a time, each handing out one package of one device —
//!   claims/s.
//! - E4: client side, no server: adding one device to a group of 1,000 (the commit and the
//!   Welcome) — median and spread over 10 tries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;

use fugue_client::Session;
use fugue_client::mls::Mls;
use fugue_proto::chat::MessageBody;
use fugue_proto::mls::ENCRYPTED_PREFIX;
use fugue_testkit::ws::{self, Received, Ws};

use crate::chat::{
    Engine, Sender, accounts, child, guild_with_channel, latencies, listener, ms, post, send_url,
};
use crate::{load, percentile, raise_nofile};

pub async fn bench(quick: bool) {
    raise_nofile(8192);
    let mut engines = vec![Engine::Sqlite];
    if let Some(url) = ["FUGUE_BENCH_DATABASE_URL", "TEST_DATABASE_URL"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    {
        engines.push(Engine::Postgres(url));
    }
    for engine in &engines {
        run(engine, quick).await;
    }
    e4(quick).await;
}

/// Runs `f` on the blocking pool (MLS work is CPU-bound).
async fn cpu<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn run(engine: &Engine, quick: bool) {
    let scale = if quick { 10 } else { 1 };
    println!("## end-to-end encryption E1–E3 on {}", engine.name());
    let (_child, base, _dir) = child(engine, "cheap").await;
    let names: Vec<String> = (0..100).map(|i| format!("e{i}")).collect();
    let sessions: Vec<Session> = accounts(&base, &names, 10).await;
    let channel = guild_with_channel(&sessions[0], &sessions[1..]).await;
    let devices: Arc<Vec<Mls>> = Arc::new(sessions.iter().map(|s| Mls::new(s).unwrap()).collect());

    // Every member device uploads 4 ordinary packages and a last-resort one.
    for (s, d) in sessions.iter().zip(devices.iter()).skip(1) {
        let kps = d.key_packages(5, true).unwrap();
        s.upload_key_packages(&kps).await.unwrap();
    }

    // E3: the owner claims every member's packages, four rounds (the fourth hands out each
    // device's last ordinary package, which it is then added with).
    let owner = sessions[0].chat();
    let fids: Arc<Vec<_>> = Arc::new(sessions[1..].iter().map(|s| s.fid().clone()).collect());
    let claimed: Arc<Mutex<Vec<fugue_proto::mls::KeyPackage>>> = Arc::default();
    let total = fids.len() * 4;
    let (rate, lat) = {
        let (owner, fids, claimed) = (owner.clone(), fids.clone(), claimed.clone());
        load(10, total, Duration::from_secs(120), move |i| {
            let (owner, fids, claimed) = (owner.clone(), fids.clone(), claimed.clone());
            async move {
                let kps = owner
                    .claim_key_packages(&fids[i % fids.len()])
                    .await
                    .unwrap();
                assert_eq!(kps.len(), 1);
                if i >= fids.len() * 3 {
                    claimed.lock().unwrap().extend(kps);
                }
            }
        })
        .await
    };
    println!(
        "E3 {} KeyPackage claims, 10 at a time: {rate:.0} claims/s",
        lat.len()
    );
    latencies("E3 claim latency", lat);

    // The group: the owner's device adds the 99 others in one commit; each joins.
    let group = owner.new_mls_group(&devices[0]).await.unwrap();
    let kps = std::mem::take(&mut *claimed.lock().unwrap());
    let started = Instant::now();
    let add = {
        let (d, g) = (devices.clone(), group.clone());
        cpu(move || d[0].add(&g, &kps).unwrap()).await
    };
    let made = started.elapsed();
    let welcome = owner
        .mls_commit(&group, &add.commit)
        .await
        .unwrap()
        .unwrap();
    devices[0].confirm(&group).unwrap();
    owner.encrypt_channel(channel, &group).await.unwrap();
    {
        let d = devices.clone();
        cpu(move || {
            for m in d.iter().skip(1) {
                m.join(&welcome).unwrap();
            }
        })
        .await;
    }
    println!(
        "group of 100 devices: one commit adding 99 made in {:.0} ms",
        ms(made)
    );

    // E1: 10 senders, encrypted and signed before the clock starts.
    let count = 2000 / scale;
    let senders: Arc<Vec<Sender>> = Arc::new(sessions[..10].iter().map(Sender::new).collect());
    let bodies: Arc<Vec<Bytes>> = {
        let (d, s, g) = (devices.clone(), senders.clone(), group.clone());
        Arc::new(
            cpu(move || {
                (0..count)
                    .map(|i| {
                        let ct = d[i % 10]
                            .encrypt(&g, format!("secret message {i}").as_bytes())
                            .unwrap();
                        let req = s[i % 10].signed(channel, format!("{ENCRYPTED_PREFIX}{ct}"));
                        Bytes::from(serde_json::to_vec(&req).unwrap())
                    })
                    .collect::<Vec<_>>()
            })
            .await,
        )
    };
    let url: Arc<str> = send_url(&senders[0], channel).into();
    let (rate, lat) = {
        let (s, url, bodies) = (senders.clone(), url.clone(), bodies.clone());
        load(10, count, Duration::from_secs(120), move |i| {
            let (s, url, bodies) = (s.clone(), url.clone(), bodies.clone());
            async move {
                post(&s[i % 10], &url, bodies[i].clone()).await;
            }
        })
        .await
    };
    println!(
        "E1 {} encrypted messages, 10 senders, 100 member devices: {rate:.0} messages/s",
        lat.len()
    );
    latencies("E1 send latency", lat);

    // E2: 50 connected members, one sender at 20/s.
    let count = 200 / scale;
    let received: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let mut readers = Vec::new();
    for m in &sessions[50..100] {
        let w = listener(&base, m).await;
        readers.push(tokio::spawn(receive(w, count, received.clone())));
    }
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let chat = sessions[1].chat();
    let tick = Duration::from_millis(50);
    let start = Instant::now();
    for i in 0..count {
        let ct = devices[1]
            .encrypt(&group, format!("paced {i}").as_bytes())
            .unwrap();
        let content = format!("{ENCRYPTED_PREFIX}{ct}");
        let body = MessageBody {
            content: content.clone(),
            reply_to: None,
            attachments: Vec::new(),
        };
        let prepared = chat.prepare_message(channel, body);
        sent.insert(content, Instant::now());
        chat.post_message(&prepared).await.unwrap();
        let next = start + tick * (u32::try_from(i).unwrap() + 1);
        tokio::time::sleep_until(next.into()).await;
    }
    for r in readers {
        r.await.unwrap();
    }
    let lat: Vec<Duration> = received
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(c, at)| sent.get(c).map(|s| at.saturating_duration_since(*s)))
        .collect();
    latencies(
        &format!("E2 send-to-receipt, 50 members, {count} encrypted messages at 20/s"),
        lat,
    );
}

/// Reads chat message events until `expect` arrived or 10 s passed without one; records
/// each content with its arrival.
async fn receive(mut w: Ws, expect: usize, out: Arc<Mutex<Vec<(String, Instant)>>>) {
    let mut got = 0;
    while got < expect {
        let Ok(Received::Frame(f)) = ws::try_receive(&mut w, Duration::from_secs(10)).await else {
            break;
        };
        if f["n"] == "chat" && f["op"] == 0 {
            let at = Instant::now();
            let content = f["d"]["content"].as_str().unwrap_or_default().to_owned();
            out.lock().unwrap().push((content, at));
            got += 1;
        }
    }
}

/// E4: adding one device to a group of 1,000, client side.
async fn e4(quick: bool) {
    let size = if quick { 200 } else { 1000 };
    println!("## end-to-end encryption E4 (client side)");
    let (_child, base, _dir) = child(&Engine::Sqlite, "cheap").await;
    let names: Vec<String> = (0..=size).map(|i| format!("g{i}")).collect();
    let sessions = accounts(&base, &names, 10).await;
    let out = cpu(move || {
        let devices: Vec<Mls> = sessions.iter().map(|s| Mls::new(s).unwrap()).collect();
        let creator = &devices[0];
        let body = creator.create_group().unwrap();
        let group = Mls::group_id_of(&body).unwrap();
        let kps: Vec<_> = devices[1..size]
            .iter()
            .map(|d| d.key_packages(1, false).unwrap().remove(0))
            .collect();
        creator.add(&group, &kps).unwrap();
        creator.confirm(&group).unwrap();
        let newcomer = &devices[size];
        let mut times = Vec::new();
        for _ in 0..10 {
            let kp = newcomer.key_packages(1, false).unwrap();
            let t = Instant::now();
            creator.add(&group, &kp).unwrap();
            times.push(t.elapsed());
            creator.discard(&group).unwrap();
        }
        times.sort();
        times
    })
    .await;
    println!(
        "E4 add one device to a group of {size}: commit + Welcome {:.1} ms median ({:.1}–{:.1} ms over 10)",
        ms(percentile(&out, 0.5)),
        ms(out[0]),
        ms(out[out.len() - 1])
    );
}
