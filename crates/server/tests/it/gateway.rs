//! The gateway protocol (docs/gateway.md, DIGEST §3, SDK-COMPAT §7) seen frame by frame: a
//! raw WebSocket client against the real server, so that every `op`, `s`, `id`, close code
//! and byte of JSON is what a client actually receives. Also events over HTTP (OP-37), HTTP
//! compression (OP-40), several nodes on one database, and the reference SDK's gateway.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;

use fugue_client::{IdentityKey, Session};
use fugue_proto::api::{self, login, post_idcert};
use fugue_proto::gateway::{EVENTS_PATH, PATH};
use fugue_server::Config;
use fugue_server::gateway::Service;
use fugue_testkit::ws::{
    WAIT, Ws, closed_with, connect, connect_to, expect_close, identified, identified_at,
    identify_frame, next, send,
};
use fugue_testkit::{PASSWORD, TestServer};

use crate::support::{delete_session, unix_now};

// ---- helpers ----

/// A service channel for the tests: namespace `test`.
struct TestService;

impl Service for TestService {
    fn name(&self) -> &str {
        "test"
    }
}

/// A server with the `test` service registered, after `tweak` adjusted its configuration.
async fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let server = TestServer::start_with(tweak).await;
    server.gateway.register_service(Arc::new(TestService));
    server
}

fn resume_frame(s: u64, token: &str) -> Value {
    json!({"n": "core", "op": 5, "d": {"s": s, "token": token}})
}

/// Heartbeat with a minified number list (numbers as strings, DIGEST §3.4).
fn heartbeat(from: u64, to: u64, except: &[u64]) -> Value {
    let except: Vec<String> = except.iter().map(u64::to_string).collect();
    json!({"n": "core", "op": 0, "d": {"from": from.to_string(), "to": to.to_string(), "except": except}})
}

fn subscribe(service: &str) -> Value {
    json!({"n": "core", "op": 8, "d": {"action": "subscribe", "service": service}})
}

/// A test event for `name`: op 3 in `core`, `d` = `{"cert": "event {i}", "i": i}`.
async fn publish(server: &TestServer, name: &str, i: u64) -> u64 {
    server
        .publish(name, 3, json!({"cert": format!("event {i}"), "i": i}))
        .await
}

/// Asserts that `frame` is the number-style frame of test event `i` with id `id`.
#[track_caller]
fn assert_event(frame: &Value, i: u64, id: u64) {
    assert_eq!(frame["n"], "core", "{frame}");
    assert_eq!(frame["op"], 3, "{frame}");
    assert_eq!(frame["d"]["i"], i, "{frame}");
    assert_eq!(frame["id"], id, "{frame}");
    assert!(frame["s"].is_u64(), "{frame}");
}

fn s_of(frame: &Value) -> u64 {
    match &frame["s"] {
        Value::String(s) => s.parse().unwrap(),
        v => v.as_u64().unwrap(),
    }
}

/// The primary key of `name`'s live session `session_id`.
async fn session_pk(server: &TestServer, name: &str, session_id: &str) -> i64 {
    let actor = server.store.actor_by_name(name).await.unwrap().unwrap();
    server
        .store
        .sessions_of(actor.id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.session_id == session_id)
        .unwrap()
        .id
}

/// Waits until the session's acknowledged position reached `seq` (written in the background).
async fn wait_acked(server: &TestServer, pk: i64, seq: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let acked = server
            .store
            .stream_positions(pk)
            .await
            .unwrap()
            .iter()
            .map(|(_, p)| *p)
            .max()
            .unwrap_or(0);
        if acked >= seq as i64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "position stuck at {acked}, want {seq}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Identifies `main`, logs in session `phone` (its op 3 reaches `main`) and identifies it.
async fn with_phone(server: &TestServer, main: &Session) -> (Ws, Session, Ws) {
    let mut main_ws = identified(server, main.token()).await;
    let phone = server.login("alice", "phone").await.unwrap();
    assert_eq!(next(&mut main_ws).await["op"], 3);
    let phone_ws = identified(server, phone.token()).await;
    (main_ws, phone, phone_ws)
}

/// The client's op 4 for its own certificate: lowercase hex Ed25519 over
/// `"{invalidSince}{serial}"` with the session's key (OP-10).
fn signed_revocation(session: &Session, invalid_since: u64) -> Value {
    let serial = session.current_serial().unwrap().0;
    let signature = session
        .key()
        .sign(format!("{invalid_since}{serial}").as_bytes());
    json!({"n": "core", "op": 4, "d": {
        "serial": serial,
        "invalidSince": invalid_since,
        "signature": hex::encode(signature),
    }})
}

// ---- discovery, Hello, Identify ----

#[tokio::test]
async fn a_plain_get_answers_the_websocket_url() {
    let server = TestServer::start().await;
    let resp = server.get(PATH).await;
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"url": format!("ws://{}{PATH}", server.addr)}));
}

#[tokio::test]
async fn hello_carries_the_configured_interval_in_both_key_styles() {
    let default = TestServer::start().await;
    let (_, hello) = connect(&default).await;
    assert_eq!(
        hello,
        json!({"n": "core", "op": 1, "s": 0,
               "d": {"heartbeat_interval": 45000, "heartbeatInterval": "45000"}})
    );
    let tuned = start(|c| c.gateway.heartbeat_interval_ms = 1234).await;
    let (_, hello) = connect(&tuned).await;
    assert_eq!(hello["s"], 0);
    assert_eq!(hello["d"]["heartbeat_interval"], 1234);
    assert_eq!(hello["d"]["heartbeatInterval"], "1234");
}

#[tokio::test]
async fn identify_is_acknowledged_with_op_12_and_every_server_frame_counts_up() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (mut ws, _) = connect(&server).await;
    send(&mut ws, identify_frame(alice.token())).await;
    let ack = next(&mut ws).await;
    assert_eq!(
        ack,
        json!({"n": "core", "op": 12, "s": 1, "d": {"token": alice.token()}})
    );
    send(&mut ws, heartbeat(1, 1, &[])).await;
    assert_eq!(
        next(&mut ws).await,
        json!({"n": "core", "op": 7, "s": 2, "d": []})
    );
    let id = publish(&server, "alice", 1).await;
    let event = next(&mut ws).await;
    assert_event(&event, 1, id);
    assert_eq!(event["s"], 3);
    send(&mut ws, heartbeat(1, 3, &[])).await;
    assert_eq!(next(&mut ws).await["s"], 4);
    // Another actor's events are not this connection's.
    server.register("bob").await;
    publish(&server, "bob", 2).await;
    let id = publish(&server, "alice", 3).await;
    let event = next(&mut ws).await;
    assert_event(&event, 3, id);
    assert_eq!(event["s"], 5);
}

// ---- close codes ----

#[tokio::test]
async fn a_payload_before_identify_closes_4003() {
    let server = TestServer::start().await;
    for first in [heartbeat(0, 0, &[]), subscribe("core")] {
        let (mut ws, _) = connect(&server).await;
        send(&mut ws, first).await;
        expect_close(&mut ws, 4003).await;
    }
}

#[tokio::test]
async fn no_identify_within_one_interval_closes_4003() {
    let server = TestServer::start_with(|c| c.gateway.heartbeat_interval_ms = 300).await;
    let started = Instant::now();
    let (mut ws, _) = connect(&server).await;
    expect_close(&mut ws, 4003).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn a_session_revoked_while_connected_gets_its_op_4_then_4003() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (mut main_ws, phone, mut phone_ws) = with_phone(&server, &alice).await;
    let serial = phone.current_serial().unwrap().0;
    let resp = delete_session(&server, alice.token(), "phone", Some(PASSWORD)).await;
    assert!(resp.status().is_success(), "{}", resp.status());

    let (code, frames) = closed_with(&mut phone_ws).await;
    assert_eq!(code, 4003, "{frames:?}");
    assert_eq!(
        frames.len(),
        1,
        "only the op 4 precedes the close: {frames:?}"
    );
    let op4 = &frames[0];
    assert_eq!(op4["op"], 4, "{op4}");
    let d = &op4["d"];
    assert_eq!(d["serial"], serial, "{d}");
    assert!(d["invalidSince"].is_u64(), "{d}");
    assert_eq!(
        d["idCertPem"].as_str().unwrap().trim(),
        phone.cert_pem().trim()
    );
    for field in [
        "cacheSignature",
        "invalidatedAt",
        "cacheNotValidBefore",
        "cacheNotValidAfter",
    ] {
        assert!(d.get(field).is_some(), "op 4 lacks {field}: {d}");
    }
    assert!(d.get("signature").is_none(), "the server revoked it: {d}");
    assert_eq!(
        d["invalidatedAt"].as_str().unwrap().parse::<u64>().unwrap(),
        d["invalidSince"].as_u64().unwrap()
    );

    // The other session learns of it and stays connected.
    let same = next(&mut main_ws).await;
    assert_eq!(same["op"], 4);
    assert_eq!(same["d"], *d);
    assert_eq!(same["id"], op4["id"], "one event, the same id everywhere");
    let id = publish(&server, "alice", 1).await;
    assert_event(&next(&mut main_ws).await, 1, id);
}

#[tokio::test]
async fn a_bad_token_closes_4004() {
    let server = TestServer::start().await;
    server.register("alice").await;
    let (mut ws, _) = connect(&server).await;
    send(&mut ws, identify_frame("not a token")).await;
    expect_close(&mut ws, 4004).await;
    let (mut ws, _) = connect(&server).await;
    send(&mut ws, resume_frame(3, "not a token")).await;
    expect_close(&mut ws, 4004).await;
}

#[tokio::test]
async fn identify_or_resume_on_an_identified_connection_closes_4005() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mut ws = identified(&server, alice.token()).await;
    send(&mut ws, identify_frame(alice.token())).await;
    expect_close(&mut ws, 4005).await;
    let mut ws = identified(&server, alice.token()).await;
    send(&mut ws, resume_frame(1, alice.token())).await;
    expect_close(&mut ws, 4005).await;
}

#[tokio::test]
async fn a_server_only_opcode_closes_4001() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    for op in [1, 3, 6, 7, 9, 10, 11, 12, 99] {
        let mut ws = identified(&server, alice.token()).await;
        send(&mut ws, json!({"n": "core", "op": op, "d": {}})).await;
        let (code, frames) = closed_with(&mut ws).await;
        assert_eq!((op, code), (op, 4001), "{frames:?}");
    }
}

#[tokio::test]
async fn an_invalid_payload_closes_4002() {
    let server = start(|_| {}).await;
    let alice = server.register("alice").await;
    let cases: Vec<(&str, Message)> = vec![
        ("not JSON", Message::text("hello?")),
        ("a JSON array", Message::text("[1,2]")),
        (
            "binary",
            Message::binary(identify_frame("x").to_string().into_bytes()),
        ),
        ("no d", Message::text(r#"{"n":"core","op":0}"#)),
        (
            "op not a number",
            Message::text(r#"{"n":"core","op":"zero","d":{}}"#),
        ),
        (
            "bad heartbeat",
            Message::text(r#"{"n":"core","op":0,"d":{"from":"x"}}"#),
        ),
        (
            "from above to",
            Message::text(r#"{"n":"core","op":0,"d":{"from":"1","to":"0"}}"#),
        ),
        (
            "bad op 8",
            Message::text(r#"{"n":"core","op":8,"d":{"action":"Subscribe","service":"test"}}"#),
        ),
        (
            "unsubscribed namespace",
            Message::text(r#"{"n":"test","op":1,"d":{}}"#),
        ),
        (
            "unknown namespace",
            Message::text(r#"{"n":"nosuch","op":1,"d":{}}"#),
        ),
    ];
    for (what, msg) in cases {
        let mut ws = identified(&server, alice.token()).await;
        ws.send(msg).await.unwrap();
        let (code, frames) = closed_with(&mut ws).await;
        assert_eq!(code, 4002, "{what}: {frames:?}");
    }
}

#[tokio::test]
async fn a_frame_beyond_the_size_limit_closes_4002() {
    let server = TestServer::start_with(|c| c.gateway.max_frame_bytes = 1024).await;
    let alice = server.register("alice").await;
    let mut ws = identified(&server, alice.token()).await;
    let padding = "x".repeat(2048);
    send(
        &mut ws,
        json!({"n": "core", "op": 0, "d": {"from": "1", "to": "1", "pad": padding}}),
    )
    .await;
    expect_close(&mut ws, 4002).await;
}

#[tokio::test]
async fn an_identify_without_a_token_closes_4002() {
    let server = TestServer::start().await;
    let (mut ws, _) = connect(&server).await;
    send(&mut ws, json!({"n": "core", "op": 2, "d": {}})).await;
    expect_close(&mut ws, 4002).await;
    let (mut ws, _) = connect(&server).await;
    send(&mut ws, json!({"n": "core", "op": 5, "d": {"token": "t"}})).await;
    expect_close(&mut ws, 4002).await;
}

#[tokio::test]
async fn a_heartbeat_naming_numbers_never_sent_closes_4007() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    // Sent so far: Hello (0) and op 12 (1).
    let mut ws = identified(&server, alice.token()).await;
    send(&mut ws, heartbeat(0, 2, &[])).await;
    expect_close(&mut ws, 4007).await;
    let mut ws = identified(&server, alice.token()).await;
    send(&mut ws, heartbeat(0, 1, &[7])).await;
    expect_close(&mut ws, 4007).await;
    // The last number sent is fine.
    let mut ws = identified(&server, alice.token()).await;
    send(&mut ws, heartbeat(0, 1, &[1])).await;
    assert_eq!(next(&mut ws).await["op"], 7);
}

#[tokio::test]
async fn more_payloads_than_the_window_allows_close_4008() {
    let server = TestServer::start_with(|c| c.gateway.client_payloads_per_window = 5).await;
    let alice = server.register("alice").await;
    let mut ws = identified(&server, alice.token()).await;
    for _ in 0..6 {
        send(&mut ws, heartbeat(1, 1, &[])).await;
    }
    let (code, frames) = closed_with(&mut ws).await;
    assert_eq!(code, 4008, "{frames:?}");
    // Identify was the first payload of five: four heartbeats were answered.
    assert_eq!(frames.len(), 4, "{frames:?}");
    assert!(frames.iter().all(|f| f["op"] == 7), "{frames:?}");
}

#[tokio::test]
async fn a_client_still_sending_reads_its_close_code() {
    // The client keeps flooding heartbeats after the limit: the server finishes the closing
    // handshake instead of dropping the socket under it (RFC 6455 §7), so the code arrives.
    let server = TestServer::start_with(|c| c.gateway.client_payloads_per_window = 20).await;
    let alice = server.register("alice").await;
    let ws = identified(&server, alice.token()).await;
    let (mut sink, mut stream) = ws.split();
    let flood = tokio::spawn(async move {
        for _ in 0..2_000 {
            if sink
                .send(Message::text(heartbeat(1, 1, &[]).to_string()))
                .await
                .is_err()
            {
                break;
            }
        }
        sink
    });
    let code = loop {
        match timeout(WAIT, stream.next()).await.expect("a close in time") {
            Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
            Some(Ok(_)) => {}
            other => panic!("the socket ended without its close frame: {other:?}"),
        }
    };
    assert_eq!(code, 4008);
    let _ = flood.await;
}

#[tokio::test]
async fn close_reasons_fit_a_control_frame() {
    let server = start(|_| {}).await;
    let alice = server.register("alice").await;
    let mut ws = identified(&server, alice.token()).await;
    // The reason would name this 300-byte namespace, and a close frame holds 125 bytes.
    let name = "é".repeat(150);
    send(&mut ws, json!({"n": name, "op": 0, "d": {}})).await;
    let msg = timeout(WAIT, ws.next()).await.expect("a close in time");
    let Some(Ok(Message::Close(Some(frame)))) = msg else {
        panic!("expected a readable close frame, got {msg:?}");
    };
    assert_eq!(u16::from(frame.code), 4002);
    assert!(frame.reason.len() <= 123, "{} bytes", frame.reason.len());
    assert!(
        frame.reason.starts_with("not subscribed to é"),
        "{}",
        frame.reason
    );
}

#[tokio::test]
async fn connections_beyond_the_gateway_cap_close_4000_and_free_places_are_reused() {
    let server = TestServer::start_with(|c| c.gateway.max_connections = 2).await;
    let alice = server.register("alice").await;
    let first = identified(&server, alice.token()).await;
    let (_second, _) = connect(&server).await;
    let (mut third, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    expect_close(&mut third, 4000).await;
    drop(first);
    // The first connection's task ends after its socket does; then its place is free.
    let mut again = None;
    for _ in 0..50 {
        let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
            .await
            .unwrap();
        match timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => {
                let hello: Value = serde_json::from_str(t.as_str()).unwrap();
                assert_eq!(hello["op"], 1);
                again = Some(ws);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(
        again.is_some(),
        "a closed connection's place was never freed"
    );
}

/// Ends a session in the database only, as if its bus announcement had been lost.
async fn end_session_silently(server: &TestServer, name: &str, session_id: &str) {
    let actor = server.store.actor_by_name(name).await.unwrap().unwrap();
    let now = i64::try_from(unix_now()).unwrap();
    assert!(
        server
            .store
            .revoke_session(actor.id, session_id, now)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_session_end_whose_announcement_was_lost_still_closes_within_an_interval() {
    let server = TestServer::start_with(|c| c.gateway.heartbeat_interval_ms = 2000).await;
    let alice = server.register("alice").await;
    let mut ws = identified(&server, alice.token()).await;
    end_session_silently(&server, "alice", "main").await;
    let started = Instant::now();
    let (code, frames) = closed_with(&mut ws).await;
    assert_eq!(code, 4003, "{frames:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_resync_rechecks_the_session() {
    // A long interval: only the resync can notice the end in time.
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mut ws = identified(&server, alice.token()).await;
    end_session_silently(&server, "alice", "main").await;
    server
        .events
        .announce(fugue_server::events::BusMsg::Resync)
        .await;
    let (code, frames) = closed_with(&mut ws).await;
    assert_eq!(code, 4003, "{frames:?}");
}

#[tokio::test]
async fn a_connection_that_never_identifies_is_closed_after_the_identify_timeout() {
    let server = TestServer::start_with(|c| c.gateway.identify_timeout_ms = 300).await;
    let (mut ws, _) = connect(&server).await;
    let started = Instant::now();
    expect_close(&mut ws, 4003).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?}, the heartbeat interval rather than the identify timeout",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_unanswered_heartbeat_request_closes_4009() {
    let server = TestServer::start_with(|c| c.gateway.heartbeat_interval_ms = 300).await;
    let alice = server.register("alice").await;
    let mut ws = identified(&server, alice.token()).await;
    let started = Instant::now();
    let (code, frames) = closed_with(&mut ws).await;
    assert_eq!(code, 4009, "{frames:?}");
    assert_eq!(
        frames,
        vec![json!({"n": "core", "op": 11, "s": 2, "d": {}})],
        "one op 11 first"
    );
    // 1.25 intervals until op 11, then half an interval more.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn an_answered_heartbeat_request_keeps_the_connection() {
    let server = TestServer::start_with(|c| c.gateway.heartbeat_interval_ms = 300).await;
    let alice = server.register("alice").await;
    let mut ws = identified(&server, alice.token()).await;
    for _ in 0..3 {
        let request = next(&mut ws).await;
        assert_eq!(request["op"], 11, "{request}");
        let s = s_of(&request);
        send(&mut ws, heartbeat(1, s, &[])).await;
        assert_eq!(next(&mut ws).await["op"], 7);
    }
}

#[tokio::test]
async fn resume_is_refused_with_4010_when_it_cannot_be_exact() {
    let server = TestServer::start_with(|c| c.gateway.max_replay_events = 3).await;
    let alice = server.register("alice").await;

    // This session never had a connection.
    let (mut ws, _) = connect(&server).await;
    send(&mut ws, resume_frame(1, alice.token())).await;
    expect_close(&mut ws, 4010).await;

    // `s` beyond anything the previous connection sent.
    let mut ws = identified(&server, alice.token()).await;
    publish(&server, "alice", 1).await;
    assert_eq!(next(&mut ws).await["s"], 2);
    drop(ws);
    let (mut ws, _) = connect(&server).await;
    send(&mut ws, resume_frame(100, alice.token())).await;
    expect_close(&mut ws, 4010).await;

    // More than max_replay_events (3) missed. (Identify first brings event 1 again: nothing
    // was acknowledged.)
    let mut ws = identified(&server, alice.token()).await;
    assert_eq!(next(&mut ws).await["d"]["i"], 1);
    publish(&server, "alice", 2).await;
    assert_eq!(next(&mut ws).await["s"], 3);
    drop(ws);
    for i in 3..=6 {
        publish(&server, "alice", i).await;
    }
    let (mut ws, _) = connect(&server).await;
    send(&mut ws, resume_frame(3, alice.token())).await;
    expect_close(&mut ws, 4010).await;
}

// ---- heartbeats and re-sends ----

#[tokio::test]
async fn except_re_sends_the_exact_frames_every_time_it_is_asked() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mut ws = identified(&server, alice.token()).await;
    let op12 = json!({"n": "core", "op": 12, "s": 1, "d": {"token": alice.token()}});
    let id = publish(&server, "alice", 1).await;
    let event = next(&mut ws).await;
    assert_event(&event, 1, id);
    assert_eq!(event["s"], 2);

    send(&mut ws, heartbeat(1, 2, &[2])).await;
    assert_eq!(
        next(&mut ws).await,
        json!({"n": "core", "op": 7, "s": 3, "d": [event.clone()]})
    );
    send(&mut ws, heartbeat(1, 3, &[2])).await;
    assert_eq!(
        next(&mut ws).await,
        json!({"n": "core", "op": 7, "s": 4, "d": [event.clone()]}),
        "asked again, sent again"
    );
    // Ascending; an ACK (3) is never re-sent; a control frame (op 12) is.
    send(&mut ws, heartbeat(1, 4, &[3, 2, 1])).await;
    assert_eq!(
        next(&mut ws).await,
        json!({"n": "core", "op": 7, "s": 5, "d": [op12, event]})
    );
}

#[tokio::test]
async fn a_string_style_client_gets_strings_and_re_sends_as_ordinary_frames() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (mut ws, _) = connect(&server).await;
    send(
        &mut ws,
        json!({"n": "core", "op": "2", "d": {"token": alice.token()}}),
    )
    .await;
    assert_eq!(
        next(&mut ws).await,
        json!({"n": "core", "op": "12", "s": "1", "d": {"token": alice.token()}})
    );
    let id = publish(&server, "alice", 7).await;
    let event = next(&mut ws).await;
    assert_eq!(
        event,
        json!({"n": "core", "op": "3", "s": "2", "id": id.to_string(),
               "d": {"cert": "event 7", "i": "7"}})
    );
    // Heartbeat numbers may be numbers too; the answer stays in the client's style.
    send(
        &mut ws,
        json!({"n": "core", "op": "0", "d": {"from": 1, "to": 2}}),
    )
    .await;
    assert_eq!(
        next(&mut ws).await,
        json!({"n": "core", "op": "7", "s": "3", "d": []})
    );
    for round in 0..2 {
        send(
            &mut ws,
            json!({"n": "core", "op": "0", "d": {"from": "1", "to": "2", "except": ["2"]}}),
        )
        .await;
        assert_eq!(
            next(&mut ws).await,
            event,
            "round {round}: the frame again, as it was"
        );
        let ack = next(&mut ws).await;
        assert_eq!(ack["op"], "7");
        assert_eq!(ack["d"], json!([]));
        assert_eq!(ack["s"], (4 + round).to_string());
    }
}

// ---- events ----

#[tokio::test]
async fn a_new_session_is_announced_to_the_other_sessions_only() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mut main_ws = identified(&server, alice.token()).await;

    // A session without a certificate connects, then gets its first certificate.
    let resp = server
        .client()
        .raw()
        .post(format!("{}{}", server.url, login::PATH))
        .json(&login::Request {
            local_name: "alice".into(),
            password: PASSWORD.into(),
            totp: None,
            csr: None,
            session_id: Some("sdk".into()),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let token = resp.json::<login::Response>().await.unwrap().token;
    let mut sdk_ws = identified(&server, &token).await;
    let key = IdentityKey::generate();
    let csr = key
        .csr_pem(&server.fid("alice"), &"sdk".parse().unwrap())
        .unwrap();
    let resp = server
        .client()
        .raw()
        .post(format!("{}{}", server.url, post_idcert::PATH))
        .bearer_auth(&token)
        .header("content-type", "application/x-pem-file")
        .body(csr)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let issued = resp.json::<post_idcert::Response>().await.unwrap().id_cert;

    let op3 = next(&mut main_ws).await;
    assert_eq!(op3["op"], 3, "{op3}");
    assert_eq!(op3["d"], json!({"cert": issued}));
    // The new session's next frame is the marker published after its op 3.
    let id = publish(&server, "alice", 1).await;
    assert_event(&next(&mut sdk_ws).await, 1, id);
    assert_event(&next(&mut main_ws).await, 1, id);
}

#[tokio::test]
async fn a_signed_op_4_from_the_client_revokes_its_certificate() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (mut main_ws, phone, mut phone_ws) = with_phone(&server, &alice).await;
    let invalid_since = unix_now();
    let frame = signed_revocation(&phone, invalid_since);
    send(&mut phone_ws, frame.clone()).await;

    let op4 = next(&mut main_ws).await;
    assert_eq!(op4["op"], 4, "{op4}");
    assert_eq!(op4["d"]["serial"], frame["d"]["serial"]);
    assert_eq!(op4["d"]["invalidSince"], invalid_since);
    assert_eq!(op4["d"]["signature"], frame["d"]["signature"]);
    assert_eq!(
        op4["d"]["idCertPem"].as_str().unwrap().trim(),
        phone.cert_pem().trim()
    );
    // The revoking session hears it too, then its session is over.
    let (code, frames) = closed_with(&mut phone_ws).await;
    assert_eq!(code, 4003);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["d"], op4["d"]);
    crate::support::assert_problem(
        phone.sessions().await,
        401,
        fugue_proto::ErrorCode::InvalidToken,
    );
    let left: Vec<String> = alice
        .sessions()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.session_id.to_string())
        .collect();
    assert_eq!(left, ["main"]);
}

#[tokio::test]
async fn an_op_4_with_a_bad_signature_closes_4002_and_revokes_nothing() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (mut main_ws, phone, mut phone_ws) = with_phone(&server, &alice).await;
    let mut frame = signed_revocation(&phone, unix_now());
    // Signed by the other session's key.
    let serial = phone.current_serial().unwrap().0;
    let invalid_since = frame["d"]["invalidSince"].as_u64().unwrap();
    let wrong = alice
        .key()
        .sign(format!("{invalid_since}{serial}").as_bytes());
    frame["d"]["signature"] = json!(hex::encode(wrong));
    send(&mut phone_ws, frame.clone()).await;
    expect_close(&mut phone_ws, 4002).await;
    // No signature at all.
    let mut phone_ws = identified(&server, phone.token()).await;
    frame["d"].as_object_mut().unwrap().remove("signature");
    send(&mut phone_ws, frame).await;
    expect_close(&mut phone_ws, 4002).await;

    phone.sessions().await.unwrap();
    let id = publish(&server, "alice", 1).await;
    assert_event(&next(&mut main_ws).await, 1, id);
}

#[tokio::test]
async fn a_server_key_rotation_sends_op_6_to_every_connection() {
    let server = TestServer::start_with(|c| c.gateway.server_change_spread_ms = 100).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    server.store.set_admin("alice", true).await.unwrap();
    let mut alice_ws = identified(&server, alice.token()).await;
    let mut bob_ws = identified(&server, bob.token()).await;
    let before = unix_now();
    let pem = alice.rotate_server_key(PASSWORD).await.unwrap();
    for ws in [&mut alice_ws, &mut bob_ws] {
        let op6 = next(ws).await;
        assert_eq!(op6["op"], 6, "{op6}");
        assert_eq!(op6["s"], 2, "{op6}");
        assert_eq!(op6["d"]["cert"].as_str().unwrap().trim(), pem.trim());
        let old = op6["d"]["oldInvalidSince"].as_u64().unwrap();
        assert!(old >= before - 1 && old <= unix_now() + 1, "{op6}");
    }
}

#[tokio::test]
async fn a_server_key_change_is_sent_once_whether_connected_or_away() {
    let server = TestServer::start_with(|c| c.gateway.server_change_spread_ms = 10).await;
    let alice = server.register("alice").await;
    server.store.set_admin("alice", true).await.unwrap();
    let pk = session_pk(&server, "alice", "main").await;

    // Received while connected: not again at the next Identify.
    let mut ws = identified(&server, alice.token()).await;
    let first = alice.rotate_server_key(PASSWORD).await.unwrap();
    let op6 = next(&mut ws).await;
    assert_eq!(op6["op"], 6);
    assert_eq!(op6["d"]["cert"].as_str().unwrap().trim(), first.trim());
    send(&mut ws, heartbeat(1, 2, &[])).await;
    assert_eq!(next(&mut ws).await["op"], 7);
    drop(ws);
    let mut ws = identified(&server, alice.token()).await;
    let marker = publish(&server, "alice", 1).await;
    assert_event(&next(&mut ws).await, 1, marker);
    send(&mut ws, heartbeat(1, 2, &[])).await;
    assert_eq!(next(&mut ws).await["op"], 7);
    wait_acked(&server, pk, marker).await;
    drop(ws);

    // Missed while away: right after op 12, once.
    let second = alice.rotate_server_key(PASSWORD).await.unwrap();
    let mut ws = identified(&server, alice.token()).await;
    let op6 = next(&mut ws).await;
    assert_eq!((op6["op"].as_u64(), op6["s"].as_u64()), (Some(6), Some(2)));
    assert_eq!(op6["d"]["cert"].as_str().unwrap().trim(), second.trim());
    let marker = publish(&server, "alice", 2).await;
    assert_event(&next(&mut ws).await, 2, marker);
    drop(ws);

    // Missed between two connections of a resume: inside op 10.
    let third = alice.rotate_server_key(PASSWORD).await.unwrap();
    let (mut ws, _) = connect(&server).await;
    send(&mut ws, resume_frame(3, alice.token())).await;
    let resumed = next(&mut ws).await;
    assert_eq!(resumed["op"], 10, "{resumed}");
    let d = resumed["d"].as_array().unwrap();
    assert_eq!(d.len(), 1, "{resumed}");
    assert_eq!(d[0]["op"], 6);
    assert_eq!(d[0]["d"]["cert"].as_str().unwrap().trim(), third.trim());
    let s = s_of(&resumed);

    // Sent, but not received before the drop: the resume sends it again.
    let fourth = alice.rotate_server_key(PASSWORD).await.unwrap();
    let op6 = next(&mut ws).await;
    assert_eq!(op6["s"], s + 1);
    drop(ws);
    let (mut ws, _) = connect(&server).await;
    send(&mut ws, resume_frame(s, alice.token())).await;
    let resumed = next(&mut ws).await;
    let d = resumed["d"].as_array().unwrap();
    assert_eq!(d.len(), 1, "{resumed}");
    assert_eq!(d[0]["d"]["cert"].as_str().unwrap().trim(), fourth.trim());
}

#[tokio::test]
async fn identify_after_being_away_delivers_what_was_missed_after_op_12() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let pk = session_pk(&server, "alice", "main").await;
    let mut ws = identified(&server, alice.token()).await;
    let acked = publish(&server, "alice", 1).await;
    assert_event(&next(&mut ws).await, 1, acked);
    send(&mut ws, heartbeat(1, 2, &[])).await;
    assert_eq!(next(&mut ws).await["op"], 7);
    wait_acked(&server, pk, acked).await;
    drop(ws);

    let phone = server.login("alice", "phone").await.unwrap();
    let later = publish(&server, "alice", 2).await;
    let (mut ws, _) = connect(&server).await;
    send(&mut ws, identify_frame(alice.token())).await;
    assert_eq!(next(&mut ws).await["op"], 12);
    let op3 = next(&mut ws).await;
    assert_eq!(op3["op"], 3);
    assert_eq!(op3["s"], 2);
    assert_eq!(
        op3["d"]["cert"].as_str().unwrap().trim(),
        phone.cert_pem().trim()
    );
    let event = next(&mut ws).await;
    assert_event(&event, 2, later);
    assert_eq!(event["s"], 3);
    // Not acknowledged: an Identify now brings the same two again, and nothing older.
    drop(ws);
    let (mut ws, _) = connect(&server).await;
    send(&mut ws, identify_frame(alice.token())).await;
    assert_eq!(next(&mut ws).await["op"], 12);
    assert_eq!(next(&mut ws).await["id"], op3["id"]);
    assert_eq!(next(&mut ws).await["id"], later);
}

// ---- resume ----

#[tokio::test]
async fn resume_puts_exactly_the_missed_events_into_op_10_and_restores_services() {
    let server = start(|_| {}).await;
    let alice = server.register("alice").await;
    let mut ws = identified(&server, alice.token()).await;
    send(&mut ws, subscribe("test")).await;
    assert_eq!(next(&mut ws).await["d"]["success"], true);
    let mut ids = Vec::new();
    for i in 1..=3 {
        ids.push(publish(&server, "alice", i).await);
        assert_event(&next(&mut ws).await, i, ids[i as usize - 1]);
    }
    // Acknowledge the first two (s 3 and 4) only; the third (s 5) was received too.
    send(&mut ws, heartbeat(1, 4, &[])).await;
    assert_eq!(next(&mut ws).await["op"], 7);
    drop(ws);

    let e4 = publish(&server, "alice", 4).await;
    let t1 = server
        .publish_in("alice", "test", 1, json!({"t": 1}), None)
        .await;
    let e5 = publish(&server, "alice", 5).await;
    let (mut ws, _) = connect(&server).await;
    send(&mut ws, resume_frame(5, alice.token())).await;
    let resumed = next(&mut ws).await;
    assert_eq!(resumed["op"], 10, "{resumed}");
    assert_eq!(
        resumed["s"], 4,
        "after the three replayed frames: {resumed}"
    );
    let d = resumed["d"].as_array().unwrap();
    let got: Vec<(u64, u64)> = d
        .iter()
        .map(|f| (f["s"].as_u64().unwrap(), f["id"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, [(1, e4), (2, t1), (3, e5)], "{resumed}");
    assert_event(&d[0], 4, e4);
    assert_eq!(d[1]["n"], "test");
    assert_eq!(d[1]["d"], json!({"t": 1}));

    // The connection goes on where it left off, still subscribed to `test`.
    let t2 = server
        .publish_in("alice", "test", 1, json!({"t": 2}), None)
        .await;
    let frame = next(&mut ws).await;
    assert_eq!(
        (
            frame["n"].as_str(),
            frame["id"].as_u64(),
            frame["s"].as_u64()
        ),
        (Some("test"), Some(t2), Some(5))
    );
    // Re-sends work across the resume: replayed frames keep their new `s`.
    send(&mut ws, heartbeat(1, 5, &[2])).await;
    assert_eq!(next(&mut ws).await["d"], json!([d[1]]));
}

#[tokio::test]
async fn a_resume_takes_over_a_connection_the_server_still_holds() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mut old = identified(&server, alice.token()).await;
    let e1 = publish(&server, "alice", 1).await;
    assert_event(&next(&mut old).await, 1, e1);
    // The client gave up on `old` after s 1 (op 12); the server has not noticed.
    let (mut ws, _) = connect(&server).await;
    send(&mut ws, resume_frame(1, alice.token())).await;
    let resumed = next(&mut ws).await;
    assert_eq!(resumed["op"], 10);
    let d = resumed["d"].as_array().unwrap();
    assert_eq!(d.len(), 1, "{resumed}");
    assert_event(&d[0], 1, e1);
    let e2 = publish(&server, "alice", 2).await;
    assert_event(&next(&mut ws).await, 2, e2);
    // The old connection ends and gets nothing more.
    loop {
        match timeout(WAIT, old.next())
            .await
            .expect("the old connection ends")
        {
            Some(Ok(Message::Text(t))) => panic!("the old connection got {t}"),
            Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            Some(Ok(_)) => {}
        }
    }
    assert_eq!(server.gateway.connections(), 1);
}

#[tokio::test]
async fn a_string_style_resume_replays_ordinary_frames_then_an_empty_op_10() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (mut ws, _) = connect(&server).await;
    send(
        &mut ws,
        json!({"n": "core", "op": "2", "d": {"token": alice.token()}}),
    )
    .await;
    assert_eq!(next(&mut ws).await["op"], "12");
    let e1 = publish(&server, "alice", 1).await;
    assert_eq!(next(&mut ws).await["id"], e1.to_string());
    drop(ws);

    let e2 = publish(&server, "alice", 2).await;
    let e3 = publish(&server, "alice", 3).await;
    let (mut ws, _) = connect(&server).await;
    send(
        &mut ws,
        json!({"n": "core", "op": "5", "d": {"s": "2", "token": alice.token()}}),
    )
    .await;
    assert_eq!(
        next(&mut ws).await,
        json!({"n": "core", "op": "3", "s": "1", "id": e2.to_string(), "d": {"cert": "event 2", "i": "2"}})
    );
    assert_eq!(next(&mut ws).await["id"], e3.to_string());
    assert_eq!(
        next(&mut ws).await,
        json!({"n": "core", "op": "10", "s": "3", "d": []})
    );
    let e4 = publish(&server, "alice", 4).await;
    let frame = next(&mut ws).await;
    assert_eq!(
        (&frame["id"], &frame["s"]),
        (&json!(e4.to_string()), &json!("4"))
    );
}

#[tokio::test]
async fn resume_replays_only_the_newest_event_of_each_collapse_key() {
    let server = start(|_| {}).await;
    let alice = server.register("alice").await;
    let mut ws = identified(&server, alice.token()).await;
    send(&mut ws, subscribe("test")).await;
    assert_eq!(next(&mut ws).await["s"], 2);
    drop(ws);

    let events = [
        ("k1", Some("typing")),
        ("u1", None),
        ("k2", Some("typing")),
        ("c1", Some("count")),
        ("u2", None),
        ("k3", Some("typing")),
    ];
    for (name, key) in events {
        server
            .publish_in("alice", "test", 1, json!({"e": name}), key)
            .await;
    }
    let core = publish(&server, "alice", 1).await;
    let (mut ws, _) = connect(&server).await;
    send(&mut ws, resume_frame(2, alice.token())).await;
    let resumed = next(&mut ws).await;
    assert_eq!(resumed["op"], 10);
    let replayed: Vec<Value> = resumed["d"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            if f["n"] == "test" {
                f["d"]["e"].clone()
            } else {
                f["id"].clone()
            }
        })
        .collect();
    assert_eq!(
        replayed,
        [
            json!("u1"),
            json!("c1"),
            json!("u2"),
            json!("k3"),
            json!(core)
        ]
    );
}

// ---- service channels ----

#[tokio::test]
async fn service_channels_are_acknowledged_and_gate_their_events() {
    let server = start(|_| {}).await;
    let alice = server.register("alice").await;
    let mut ws = identified(&server, alice.token()).await;

    send(&mut ws, subscribe("core")).await;
    assert_eq!(
        next(&mut ws).await,
        json!({"n": "core", "op": 9, "s": 2,
               "d": {"action": "subscribe", "service": "core", "success": true}})
    );
    send(
        &mut ws,
        json!({"n": "core", "op": 8, "d": {"action": "unsubscribe", "service": "core"}}),
    )
    .await;
    let ack = next(&mut ws).await;
    assert_eq!(ack["d"]["success"], false, "{ack}");
    assert!(
        ack["d"]["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{ack}"
    );
    send(&mut ws, subscribe("nosuch")).await;
    let ack = next(&mut ws).await;
    assert_eq!(ack["d"]["action"], "subscribe");
    assert_eq!(ack["d"]["service"], "nosuch");
    assert_eq!(ack["d"]["success"], false, "{ack}");
    assert!(
        ack["d"]["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{ack}"
    );

    // Before subscribing, `test` events do not arrive.
    server
        .publish_in("alice", "test", 1, json!({"t": "early"}), None)
        .await;
    let marker = publish(&server, "alice", 1).await;
    assert_event(&next(&mut ws).await, 1, marker);
    send(&mut ws, subscribe("test")).await;
    let ack = next(&mut ws).await;
    assert_eq!(
        ack["d"],
        json!({"action": "subscribe", "service": "test", "success": true})
    );
    let id = server
        .publish_in("alice", "test", 5, json!({"t": "late"}), None)
        .await;
    let event = next(&mut ws).await;
    assert_eq!(
        event,
        json!({"n": "test", "op": 5, "s": 7, "id": id, "d": {"t": "late"}})
    );
    // The test service defines no client opcodes.
    send(&mut ws, json!({"n": "test", "op": 1, "d": {}})).await;
    expect_close(&mut ws, 4001).await;

    // Unsubscribing stops them again (a fresh session: nothing to catch up on).
    let phone = server.login("alice", "phone").await.unwrap();
    let mut ws = identified(&server, phone.token()).await;
    send(&mut ws, subscribe("test")).await;
    assert_eq!(next(&mut ws).await["d"]["success"], true);
    send(
        &mut ws,
        json!({"n": "core", "op": 8, "d": {"action": "unsubscribe", "service": "test"}}),
    )
    .await;
    assert_eq!(next(&mut ws).await["d"]["success"], true);
    server
        .publish_in("alice", "test", 1, json!({"t": "gone"}), None)
        .await;
    let marker = publish(&server, "alice", 2).await;
    assert_event(&next(&mut ws).await, 2, marker);
}

// ---- events over HTTP ----

#[tokio::test]
async fn events_over_http_return_what_was_missed_once() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let url = format!("{}{EVENTS_PATH}", server.url);
    let get = |token: Option<&str>| {
        let mut req = server.client().raw().get(&url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(
        get(Some(alice.token())).await.unwrap().status().as_u16(),
        204
    );
    let ids = [
        publish(&server, "alice", 1).await,
        publish(&server, "alice", 2).await,
        publish(&server, "alice", 3).await,
    ];
    let resp = get(Some(alice.token())).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let events: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(events.len(), 3, "{events:?}");
    for (i, (event, id)) in events.iter().zip(ids).enumerate() {
        assert_eq!(
            *event,
            json!({"n": "core", "op": 3, "id": id, "d": {"cert": format!("event {}", i + 1), "i": i + 1}})
        );
    }
    assert_eq!(
        get(Some(alice.token())).await.unwrap().status().as_u16(),
        204
    );
    assert_eq!(get(None).await.unwrap().status().as_u16(), 401);
    // The gateway starts after the polled position too.
    let (mut ws, _) = connect(&server).await;
    send(&mut ws, identify_frame(alice.token())).await;
    assert_eq!(next(&mut ws).await["op"], 12);
    let id = publish(&server, "alice", 4).await;
    assert_event(&next(&mut ws).await, 4, id);
}

// ---- HTTP compression ----

#[tokio::test]
async fn responses_are_compressed_as_the_client_accepts() {
    let server = TestServer::start().await;
    let raw = reqwest::Client::builder()
        .no_gzip()
        .no_zstd()
        .build()
        .unwrap();
    let url = format!("{}{}", server.url, api::get_server_idcert::PATH);
    let plain = raw.get(&url).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.unwrap();
    assert!(plain.len() > 32);
    serde_json::from_slice::<Value>(&plain).unwrap();
    for (encoding, magic) in [
        ("zstd", &[0x28, 0xb5, 0x2f, 0xfd][..]),
        ("gzip", &[0x1f, 0x8b][..]),
    ] {
        let resp = raw
            .get(&url)
            .header("accept-encoding", encoding)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            resp.headers()
                .get("content-encoding")
                .unwrap()
                .to_str()
                .unwrap(),
            encoding
        );
        let body = resp.bytes().await.unwrap();
        assert_ne!(body, plain);
        assert!(body.starts_with(magic), "{encoding}: {:?}", &body[..4]);
    }
}

// ---- slow clients ----

// Several threads, so that the connection's task keeps up with the publisher until the
// socket, not the scheduler, holds it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_closed_4000_and_resumes_what_it_missed() {
    let server = TestServer::start_with(|c| c.gateway.queue_len = 4).await;
    let alice = server.register("alice").await;
    // A small receive buffer, so that the server's writes back up soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async(server.ws_url(), MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    assert_eq!(next(&mut ws).await["op"], 1);
    send(&mut ws, identify_frame(alice.token())).await;
    assert_eq!(next(&mut ws).await["op"], 12);

    // Not reading while the events pile up: 10 MB, more than the kernel buffers (the
    // server's send buffer grows to 4 MB) and the queue of 4 can hold.
    let big = "x".repeat(32 * 1024);
    let mut published = Vec::new();
    for i in 0..320u64 {
        published.push(
            server
                .publish("alice", 3, json!({"cert": big, "i": i}))
                .await,
        );
    }
    let (code, frames) = closed_with(&mut ws).await;
    assert_eq!(code, 4000, "after {} frames", frames.len());
    assert!(
        frames.len() < published.len(),
        "the connection kept up with all {} events",
        frames.len()
    );
    let received: Vec<u64> = frames.iter().map(|f| f["id"].as_u64().unwrap()).collect();
    assert_eq!(received, published[..received.len()], "in order, no gaps");
    let last_s = frames.last().map_or(1, s_of);

    let (mut ws, _) = connect(&server).await;
    send(&mut ws, resume_frame(last_s, alice.token())).await;
    let resumed = next(&mut ws).await;
    assert_eq!(resumed["op"], 10);
    let replayed: Vec<u64> = resumed["d"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_u64().unwrap())
        .collect();
    assert_eq!(replayed, published[received.len()..], "exactly the rest");
}

// ---- several nodes ----

#[tokio::test]
async fn an_event_published_on_one_node_reaches_a_session_on_another() {
    let nodes = TestServer::start_cluster(2, |_| {}).await;
    let alice = nodes[0].register("alice").await;
    let mut ws = identified_at(&nodes[1].ws_url(), alice.token()).await;
    let id = publish(&nodes[0], "alice", 1).await;
    assert_event(&next(&mut ws).await, 1, id);
    let phone = nodes[0].login("alice", "phone").await.unwrap();
    let op3 = next(&mut ws).await;
    assert_eq!(op3["op"], 3);
    assert_eq!(
        op3["d"]["cert"].as_str().unwrap().trim(),
        phone.cert_pem().trim()
    );
    assert_eq!(op3["id"], id + 1);
}

#[tokio::test]
async fn a_session_revoked_on_one_node_is_closed_on_another() {
    let nodes = TestServer::start_cluster(2, |_| {}).await;
    let alice = nodes[0].register("alice").await;
    let phone = nodes[0].login("alice", "phone").await.unwrap();
    let mut phone_ws = identified_at(&nodes[1].ws_url(), phone.token()).await;
    alice
        .revoke_session(phone.session_id(), PASSWORD)
        .await
        .unwrap();
    let (code, frames) = closed_with(&mut phone_ws).await;
    assert_eq!(code, 4003, "{frames:?}");
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["op"], 4);
    assert_eq!(frames[0]["d"]["serial"], phone.current_serial().unwrap().0);
}

#[tokio::test]
async fn a_resume_on_another_node_is_exact() {
    let nodes = TestServer::start_cluster(2, |c| c.gateway.max_replay_events = 10).await;
    let alice = nodes[0].register("alice").await;
    let mut ws = identified_at(&nodes[0].ws_url(), alice.token()).await;
    for i in 1..=2 {
        let id = publish(&nodes[0], "alice", i).await;
        assert_event(&next(&mut ws).await, i, id);
    }
    drop(ws);
    // Nothing was acknowledged: only the previous node's state makes this exact.
    let e3 = publish(&nodes[1], "alice", 3).await;
    let e4 = publish(&nodes[0], "alice", 4).await;
    let (mut ws, _) = connect_to(&nodes[1].ws_url()).await;
    send(&mut ws, resume_frame(3, alice.token())).await;
    let resumed = next(&mut ws).await;
    assert_eq!(resumed["op"], 10, "{resumed}");
    let d = resumed["d"].as_array().unwrap();
    assert_eq!(d.len(), 2, "{resumed}");
    assert_event(&d[0], 3, e3);
    assert_event(&d[1], 4, e4);
    let e5 = publish(&nodes[0], "alice", 5).await;
    assert_event(&next(&mut ws).await, 5, e5);
}

// ---- the reference SDK (polyproto 0.21) ----

mod sdk {
    use polyproto::api::{HttpClient, Session as SdkSession};
    use polyproto::gateway::BackendBehavior;
    use polyproto::gateway::backends::GatewayMessage;
    use polyproto::gateway::backends::tungstenite::TungsteniteBackend;
    use polyproto::types::gateway::payload::Identify;
    use polyproto::types::gateway::{AnyEvent, CoreEvent, Payload};
    use polyproto::url::Url;
    use tokio::sync::watch;

    use super::*;
    use crate::interop::{Ed25519PrivateKey, Ed25519Signature};

    /// The next non-empty message the SDK's receive channel shows (a watch channel: it may
    /// skip messages that arrive together, as it does for the SDK's own tasks).
    async fn sdk_next(rx: &mut watch::Receiver<GatewayMessage>) -> GatewayMessage {
        loop {
            timeout(WAIT, rx.changed())
                .await
                .expect("a message in time")
                .expect("the gateway runs");
            let msg = rx.borrow_and_update().clone();
            if msg != GatewayMessage::Text(String::new()) {
                return msg;
            }
        }
    }

    /// The next event other than the heartbeat traffic (op 7, op 11), parsed as `CoreEvent`.
    async fn sdk_event(rx: &mut watch::Receiver<GatewayMessage>) -> CoreEvent {
        loop {
            let msg = sdk_next(rx).await;
            let event = CoreEvent::try_from(msg.clone()).unwrap_or_else(|e| panic!("{msg:?}: {e}"));
            if !matches!(
                event.data(),
                Payload::HeartbeatAck(_) | Payload::RequestHeartbeat
            ) {
                return event;
            }
        }
    }

    #[tokio::test]
    async fn the_sdk_gateway_identifies_gets_events_and_is_kept_alive_by_op_11() {
        let server = TestServer::start_with(|c| c.gateway.heartbeat_interval_ms = 400).await;
        let alice = server.register("alice").await;
        let url = Url::parse(&server.ws_url()).unwrap();
        let session = SdkSession::<Ed25519Signature, Ed25519PrivateKey>::new(
            &HttpClient::new().unwrap(),
            alice.token(),
            Url::parse(&server.url).unwrap(),
            None,
        );
        // Fails with NoHello unless our Hello parses as the SDK's.
        let gateway = TungsteniteBackend::new()
            .connect(Arc::new(session), &url)
            .await
            .unwrap();
        let mut rx = gateway.receive_channel.clone();
        let identify = CoreEvent::new(
            Payload::Identify(Identify {
                token: alice.token().to_owned(),
            }),
            None,
        );
        let text = serde_json::to_string(&identify).unwrap();
        assert!(
            text.contains(r#""op":"2""#),
            "the SDK writes strings: {text}"
        );
        gateway
            .send_channel
            .send(GatewayMessage::Text(text))
            .unwrap();
        let ack = sdk_event(&mut rx).await;
        match ack.data() {
            Payload::IdentifyAck(a) => assert_eq!(a.token, alice.token()),
            other => panic!("expected op 12, got {other:?}"),
        }
        assert_eq!(ack.sequence(), Some(1));

        let phone = server.login("alice", "phone").await.unwrap();
        let op3 = sdk_event(&mut rx).await;
        match op3.data() {
            Payload::NewSession(n) => assert_eq!(n.cert.trim(), phone.cert_pem().trim()),
            other => panic!("expected op 3, got {other:?}"),
        }

        // The SDK waits 400 *seconds* between heartbeats; op 11 keeps it alive.
        let until = Instant::now() + Duration::from_secs(3);
        let (mut requests, mut acks) = (0, 0);
        while let Ok(changed) = tokio::time::timeout_at(until, rx.changed()).await {
            changed.expect("the gateway runs");
            let msg = rx.borrow_and_update().clone();
            let GatewayMessage::Text(text) = &msg else {
                panic!("the server closed the SDK's connection: {msg:?}");
            };
            let any: AnyEvent = serde_json::from_str(text).unwrap();
            match any.op {
                11 => requests += 1,
                7 => acks += 1,
                _ => {}
            }
        }
        assert!(acks >= 3, "{requests} op 11, {acks} op 7 in 3 s");
        assert_eq!(server.gateway.connections(), 1);
        publish(&server, "alice", 1).await;
        match sdk_event(&mut rx).await.data() {
            Payload::NewSession(n) => assert_eq!(n.cert, "event 1"),
            other => panic!("expected the published event, got {other:?}"),
        }
    }

    /// Parses a frame as the SDK does: its heartbeat task's `AnyEvent` (string `op` and `s`
    /// only; it must see every `s` to acknowledge it) and the application's `CoreEvent`.
    #[track_caller]
    fn sdk_parse(frame: &Value) -> Payload {
        let text = frame.to_string();
        let any: AnyEvent = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(any.sequence, Some(s_of(frame)), "{text}");
        core_event(&text)
    }

    #[track_caller]
    fn core_event(text: &str) -> Payload {
        serde_json::from_str::<CoreEvent>(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .data()
            .clone()
    }

    #[tokio::test]
    async fn every_frame_a_string_style_client_gets_parses_as_an_sdk_core_event() {
        let server = start(|c| {
            c.gateway.heartbeat_interval_ms = 2000;
            c.gateway.server_change_spread_ms = 10;
        })
        .await;
        let alice = server.register("alice").await;
        server.store.set_admin("alice", true).await.unwrap();
        let (mut ws, hello) = connect(&server).await;
        // Hello precedes the style (number `op`): the SDK reads it with `CoreEvent` only.
        assert!(
            matches!(core_event(&hello.to_string()), Payload::Hello(h) if h.heartbeat_interval == 2000)
        );
        send(
            &mut ws,
            json!({"n": "core", "op": "2", "d": {"token": alice.token()}}),
        )
        .await;
        assert!(matches!(
            sdk_parse(&next(&mut ws).await),
            Payload::IdentifyAck(_)
        ));

        let phone = server.login("alice", "phone").await.unwrap();
        assert!(matches!(
            sdk_parse(&next(&mut ws).await),
            Payload::NewSession(_)
        ));
        alice
            .revoke_session(phone.session_id(), PASSWORD)
            .await
            .unwrap();
        match sdk_parse(&next(&mut ws).await) {
            Payload::ActorCertificateInvalidation(inv) => {
                assert_eq!(inv.certificate.cert.trim(), phone.cert_pem().trim());
                assert!(inv.certificate.invalidated_at.is_some());
            }
            other => panic!("expected op 4, got {other:?}"),
        }
        alice.rotate_server_key(PASSWORD).await.unwrap();
        assert!(matches!(
            sdk_parse(&next(&mut ws).await),
            Payload::ServerCertificateChange(_)
        ));
        send(
            &mut ws,
            json!({"n": "core", "op": "8", "d": {"action": "subscribe", "service": "test"}}),
        )
        .await;
        match sdk_parse(&next(&mut ws).await) {
            Payload::ServiceChannelAck(ack) => assert!(ack.success),
            other => panic!("expected op 9, got {other:?}"),
        }
        send(
            &mut ws,
            json!({"n": "core", "op": "0", "d": {"from": "1", "to": "5"}}),
        )
        .await;
        assert!(
            matches!(sdk_parse(&next(&mut ws).await), Payload::HeartbeatAck(a) if a.inner.is_empty())
        );
        let request = next(&mut ws).await;
        assert!(matches!(sdk_parse(&request), Payload::RequestHeartbeat));
        assert_eq!(request["op"], "11");

        drop(ws);
        publish(&server, "alice", 1).await;
        let (mut ws, _) = connect(&server).await;
        send(&mut ws, json!({"n": "core", "op": "5", "d": {"s": s_of(&request).to_string(), "token": alice.token()}})).await;
        assert!(matches!(
            sdk_parse(&next(&mut ws).await),
            Payload::NewSession(_)
        ));
        assert!(
            matches!(sdk_parse(&next(&mut ws).await), Payload::Resumed(r) if r.inner.is_empty())
        );
    }
}

// ---- ends of a connection's authority ----

#[tokio::test]
async fn a_re_key_ends_connections_identified_with_the_old_certificates_token() {
    let server = start(|_| {}).await;
    let mut alice = server.register("alice").await;
    let old_token = alice.token().to_owned();
    let old_serial = alice.current_serial().unwrap().0;
    let mut ws = identified(&server, &old_token).await;
    alice.renew_cert(PASSWORD).await.unwrap();
    // The old certificate's op 4 arrives, and the connection that authenticated with it ends.
    let (code, frames) = closed_with(&mut ws).await;
    assert_eq!(code, 4003, "{frames:?}");
    let last = frames.last().expect("the op 4 came first");
    assert_eq!(last["op"], 4);
    assert_eq!(last["d"]["serial"], old_serial);
    // The session itself goes on with its new token: it hears of the old cert's end and
    // stays connected.
    let mut ws = identified(&server, alice.token()).await;
    let missed = next(&mut ws).await;
    assert_eq!(
        (missed["op"].clone(), missed["d"]["serial"].clone()),
        (json!(4), json!(old_serial))
    );
    server.login("alice", "phone").await.unwrap();
    assert_eq!(next(&mut ws).await["op"], 3);
}

#[tokio::test]
async fn a_resume_continues_the_closed_connection_not_a_live_sibling() {
    let server = start(|_| {}).await;
    let alice = server.register("alice").await;
    let mut a = identified(&server, alice.token()).await;
    let mut b = identified(&server, alice.token()).await;
    server.login("alice", "one").await.unwrap();
    let one_a = next(&mut a).await;
    let one_b = next(&mut b).await;
    assert_eq!(
        (one_a["op"].clone(), one_b["op"].clone()),
        (json!(3), json!(3))
    );
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.login("alice", "two").await.unwrap();
    let two = next(&mut b).await;
    assert_eq!(two["op"], 3, "B stays connected");
    let (mut resumed, _) = connect(&server).await;
    send(
        &mut resumed,
        resume_frame(one_a["s"].as_u64().unwrap(), alice.token()),
    )
    .await;
    let op10 = next(&mut resumed).await;
    assert_eq!(op10["op"], 10, "{op10}");
    let ids: Vec<&Value> = op10["d"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["id"])
        .collect();
    assert_eq!(ids.len(), 1, "exactly what A missed: {op10}");
    assert_eq!(
        ids,
        [&two["id"]],
        "the event A missed, not one it had: {op10}"
    );
    // B was not taken over.
    server.login("alice", "three").await.unwrap();
    assert_eq!(next(&mut b).await["op"], 3);
}
