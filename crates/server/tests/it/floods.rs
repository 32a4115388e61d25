//! Floods and slow clients: a login flood from many addresses, slow request heads and bodies,
//! more connections than allowed, reverse proxies, per-actor caps and the cost of the public
//! certificate list. Every defence here has a test that fails without it.

use std::net::IpAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use fugue_proto::ErrorCode;
use fugue_proto::api;
use fugue_testkit::{PASSWORD, TestServer};

use crate::support::{assert_problem, unix_now};

/// A client whose connections come from `ip` (any 127.0.0.0/8 address is this machine).
fn client_from(ip: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn login_body(name: &str, password: &str) -> String {
    serde_json::json!({"localName": name, "password": password}).to_string()
}

/// Reads what the server sends until it closes the connection (or `limit` passes).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        match timeout(deadline - Instant::now(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_login_flood_from_many_addresses_is_refused_at_once_and_health_and_heartbeats_stay_fast()
{
    // Expensive hashing and no per-address limits: the queue of password checks fills up.
    let server = TestServer::start_with(|c| {
        c.password_hashing.memory_kib = 16 * 1024;
        c.password_hashing.iterations = 3;
        c.rate_limits.login_per_minute = 0;
    })
    .await;
    // A gateway connection that must stay answered during the flood.
    let alice = server.register("alice").await;
    let mut ws = fugue_testkit::ws::identified(&server, alice.token()).await;
    let url = format!("{}{}", server.url, api::login::PATH);
    let flood: Vec<_> = (0..300u32)
        .map(|i| {
            let client = client_from(IpAddr::from([
                127,
                0,
                1 + (i / 250) as u8,
                (i % 250) as u8 + 1,
            ]));
            let url = url.clone();
            tokio::spawn(async move {
                let resp = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(login_body(&format!("nobody{i}"), "wrong password"))
                    .send()
                    .await
                    .unwrap();
                let retry = resp.headers().get("retry-after").is_some();
                let status = resp.status().as_u16();
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                (
                    status,
                    retry,
                    body["error"].as_str().unwrap_or("").to_owned(),
                )
            })
        })
        .collect();
    // Meanwhile /health answers promptly: no runtime thread is parked on the queue.
    let health = server.client();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let ok = timeout(Duration::from_secs(10), health.health()).await;
        assert!(matches!(ok, Ok(Ok(_))), "/health failed during the flood");
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // And gateway heartbeats are acknowledged promptly.
    let mut slowest_ack = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let heartbeat = serde_json::json!({"n": "core", "op": 0, "d": {"from": "0", "to": "1"}});
        fugue_testkit::ws::send(&mut ws, heartbeat).await;
        let ack = fugue_testkit::ws::next_with_op(&mut ws, 7).await;
        assert_eq!(ack["op"], 7);
        slowest_ack = slowest_ack.max(started.elapsed());
    }
    let mut overloaded = 0;
    let mut checked = 0;
    for f in flood {
        let (status, retry, code) = f.await.unwrap();
        match status {
            503 => {
                assert!(retry, "503 without Retry-After");
                assert_eq!(code, "OVERLOADED");
                overloaded += 1;
            }
            401 => checked += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(overloaded > 0, "the queue never filled: {checked} checked");
    assert!(checked > 0, "nothing was checked at all");
    assert!(
        slowest < Duration::from_secs(2),
        "/health took {slowest:?} during the flood"
    );
    assert!(
        slowest_ack < Duration::from_secs(2),
        "a heartbeat ACK took {slowest_ack:?} during the flood"
    );
}

#[tokio::test]
async fn a_request_head_that_never_ends_is_cut_off() {
    let server = TestServer::start_with(|c| c.limits.header_timeout_s = 1).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(
        read_until_closed(&mut slow, Duration::from_secs(5))
            .await
            .is_some(),
        "a half-sent head held the connection"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    // An idle kept-alive connection is closed the same way.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut idle, Duration::from_secs(5))
        .await
        .expect("an idle connection was kept");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_request_body_that_never_ends_is_answered_and_closed() {
    let server = TestServer::start_with(|c| c.limits.body_timeout_s = 1).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"localName\"",
        api::login::PATH
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut slow, Duration::from_secs(5))
        .await
        .expect("a trickled body held the connection");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
}

#[tokio::test]
async fn connections_beyond_the_cap_get_503_and_places_come_back() {
    let server = TestServer::start_with(|c| c.limits.max_connections = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(server.addr).await.unwrap();
    extra
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut extra, Duration::from_secs(5))
        .await
        .expect("the refused connection was not closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("OVERLOADED"), "{answer}");
    held.clear();
    let mut served = false;
    for _ in 0..50 {
        if server.client().health().await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "closed connections never gave their places back");
}

async fn bad_login_status(server: &TestServer, name: &str, forwarded_for: &str) -> u16 {
    server
        .client()
        .raw()
        .post(format!("{}{}", server.url, api::login::PATH))
        .header("content-type", "application/json")
        .header("x-forwarded-for", forwarded_for)
        .body(login_body(name, "wrong password"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn behind_a_trusted_proxy_limits_key_on_the_forwarded_client() {
    let server = TestServer::start_with(|c| {
        c.rate_limits.login_per_minute = 3;
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    for i in 0..3 {
        assert_eq!(
            bad_login_status(&server, &format!("m{i}"), "198.51.100.1").await,
            401
        );
    }
    assert_eq!(bad_login_status(&server, "m9", "198.51.100.1").await, 429);
    // Another client behind the same proxy is not held back by the first one.
    assert_eq!(bad_login_status(&server, "n0", "198.51.100.2").await, 401);
    // A client cannot pick its address: the proxy appends the real one, read from the right.
    assert_eq!(
        bad_login_status(&server, "m10", "203.0.113.5, 198.51.100.1").await,
        429
    );
}

#[tokio::test]
async fn forwarding_headers_from_untrusted_peers_are_ignored() {
    let server = TestServer::start_with(|c| c.rate_limits.login_per_minute = 3).await;
    for i in 0..3 {
        let forwarded = format!("198.51.100.{i}");
        assert_eq!(
            bad_login_status(&server, &format!("m{i}"), &forwarded).await,
            401
        );
    }
    assert_eq!(bad_login_status(&server, "m9", "198.51.100.99").await, 429);
}

#[tokio::test]
async fn live_sessions_per_actor_are_capped() {
    let server = TestServer::start_with(|c| c.limits.max_sessions_per_actor = 2).await;
    let alice = server.register("alice").await;
    server.login("alice", "second").await.unwrap();
    assert_problem(
        server.login("alice", "third").await,
        409,
        ErrorCode::TooManySessions,
    );
    // Ending one frees its place.
    alice
        .revoke_session(&"second".parse().unwrap(), PASSWORD)
        .await
        .unwrap();
    server.login("alice", "third").await.unwrap();
    // Others are not affected.
    server.register("bob").await;
}

#[tokio::test]
async fn the_public_certificate_list_is_built_once_per_change() {
    // A clock that stands still in the middle of a minute: one cache-window step.
    let now = unix_now() / 60 * 60 + 30;
    let server =
        TestServer::start_with(move |c| c.clock = fugue_server::Clock::from_fn(move || now)).await;
    let alice = server.register("alice").await;
    let path = api::get_actor_idcerts::path(&server.fid("alice"));
    let built = server.identity.lists_built();
    for _ in 0..20 {
        let resp = server.get(&path).await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        server.identity.lists_built(),
        built + 1,
        "built once for 20 asks"
    );
    // A new certificate and a revocation show at once.
    server.login("alice", "phone").await.unwrap();
    let list: Vec<serde_json::Value> = server.get(&path).await.json().await.unwrap();
    assert_eq!(list.len(), 2);
    alice
        .revoke_session(&"phone".parse().unwrap(), PASSWORD)
        .await
        .unwrap();
    let list: Vec<serde_json::Value> = server.get(&path).await.json().await.unwrap();
    assert_eq!(list.len(), 2, "revoked certificates stay published");
    assert_eq!(
        list.iter()
            .filter(|c| c.get("invalidatedAt").is_some_and(|v| !v.is_null()))
            .count(),
        1,
        "{list:?}"
    );
    // Filters select from the kept list like the database would.
    let only_main: Vec<serde_json::Value> = server
        .get(&format!("{path}?session_id=main"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(only_main.len(), 1);
    assert_eq!(server.identity.lists_built(), built + 3);
}

#[tokio::test]
async fn gateway_connections_count_against_the_connection_cap() {
    let server = TestServer::start_with(|c| c.limits.max_connections = 2).await;
    let (_a, _) = fugue_testkit::ws::connect(&server).await;
    let (_b, _) = fugue_testkit::ws::connect(&server).await;
    let mut extra = TcpStream::connect(server.addr).await.unwrap();
    extra
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut extra, Duration::from_secs(5))
        .await
        .expect("the refused connection was not closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
}
