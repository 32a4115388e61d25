//! The gateway against a scripted server: each test plays the server's side frame by frame.
//! Also the small pure parts of the handle and the task (classification, backoff, URLs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use fugue_proto::gateway::{
    CORE, CertInvalidation, ChannelAction, Envelope, Identify, NumberList, Resume,
    ServiceChannelAck, Style, op,
};

use super::task::backoff;
use super::{Gateway, GatewayEvent, GatewayOptions, classify, gateway_url};
use crate::error::Error;

fn list(from: u64, to: u64, except: &[u64]) -> NumberList {
    NumberList {
        from,
        to,
        except: except.to_vec(),
    }
}

#[test]
fn backoff_grows_to_its_ceiling_with_jitter() {
    let options = GatewayOptions {
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(1000),
        ..Default::default()
    };
    assert!(backoff(&options, 0, 0) == Duration::ZERO);
    assert!(backoff(&options, 0, u32::MAX) <= Duration::from_millis(100));
    for random in [0, 1, 77, u32::MAX] {
        let d = backoff(&options, 2, random);
        assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400));
        let d = backoff(&options, 40, random);
        assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1000));
    }
}

#[test]
fn gateway_urls_follow_the_server_url() {
    assert_eq!(
        gateway_url("http://127.0.0.1:3000/").unwrap(),
        "ws://127.0.0.1:3000/.p2/core/v1/gateway"
    );
    assert_eq!(
        gateway_url("https://example.com").unwrap(),
        "wss://example.com/.p2/core/v1/gateway"
    );
    assert_eq!(
        gateway_url("https://example.com/fugue").unwrap(),
        "wss://example.com/fugue/.p2/core/v1/gateway"
    );
    assert!(gateway_url("ftp://example.com").is_err());
}

#[test]
fn events_are_classified_by_namespace_and_opcode() {
    let frame = |n: &str, op: u16, d: Value| Envelope {
        n: n.into(),
        op,
        d,
        s: Some(4),
        id: Some(9),
    };
    let e = classify(frame(CORE, 3, json!({"cert": "PEM"})));
    assert!(matches!(&e, GatewayEvent::NewSession { cert_pem, .. } if cert_pem == "PEM"));
    assert_eq!(e.id(), Some(9));
    let e = classify(frame(CORE, 4, json!({"serial": "5", "invalidSince": 10})));
    assert!(matches!(
        e,
        GatewayEvent::CertInvalidated { invalidation, .. }
            if invalidation.serial == 5 && invalidation.invalid_since == 10
    ));
    let e = classify(frame(CORE, 6, json!({"cert": "P", "oldInvalidSince": "7"})));
    assert!(
        matches!(e, GatewayEvent::ServerCertChanged { change, .. } if change.old_invalid_since == 7)
    );
    let e = classify(frame("chat", 3, json!({})));
    assert!(matches!(e, GatewayEvent::Service { .. }));
    let e = classify(frame(CORE, 3, json!({"certificate": "x"})));
    assert!(matches!(e, GatewayEvent::Malformed { .. }));
    assert!(
        GatewayEvent::Reconnected { resumed: true }
            .envelope()
            .is_none()
    );
}

// A scripted server: each test plays the server's side frame by frame.

struct Peer(WebSocketStream<TcpStream>);

impl Peer {
    async fn accept(listener: &TcpListener) -> Peer {
        let (tcp, _) = listener.accept().await.unwrap();
        Peer(tokio_tungstenite::accept_async(tcp).await.unwrap())
    }

    async fn send(&mut self, value: Value) {
        self.0.send(Message::text(value.to_string())).await.unwrap();
    }

    /// The next frame from the client (None at EOF or close).
    async fn recv(&mut self) -> Option<Envelope> {
        loop {
            match self.0.next().await? {
                Ok(Message::Text(t)) => return Some(Envelope::parse(&t).unwrap().0),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn expect(&mut self, op: u16) -> Envelope {
        let frame = self.recv().await.expect("a frame");
        assert_eq!(frame.op, op, "{frame:?}");
        frame
    }

    async fn hello(&mut self, interval_ms: u64) {
        let d = fugue_proto::gateway::hello(interval_ms);
        self.send(frame(op::HELLO, Some(0), d)).await;
    }

    async fn identify_ack(&mut self) {
        let d = serde_json::to_value(Identify {
            token: "tok".into(),
        })
        .unwrap();
        self.send(frame(op::IDENTIFY_ACK, Some(1), d)).await;
    }

    async fn close(&mut self, code: u16) {
        let frame = CloseFrame {
            code: code.into(),
            reason: "scripted".into(),
        };
        let _ = self.0.close(Some(frame)).await;
    }
}

/// A core frame in number style, built as the server builds it.
fn frame(op: u16, s: Option<u64>, d: Value) -> Value {
    let mut envelope = Envelope::new(CORE, op, d);
    envelope.s = s;
    envelope.to_value(Style::Numbers)
}

/// An op 4 event; `serial` tells the events apart.
fn event(s: u64, id: u64, serial: u64) -> Value {
    let d = CertInvalidation {
        serial,
        invalid_since: 1,
        signature: None,
        cacheable: None,
    };
    let mut envelope = Envelope::new(CORE, op::CERT_INVALIDATION, json!(d));
    envelope.s = Some(s);
    envelope.id = Some(id);
    envelope.to_value(Style::Numbers)
}

fn heartbeat_request(s: u64) -> Value {
    frame(op::HEARTBEAT_REQUEST, Some(s), json!({}))
}

async fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    (listener, url)
}

fn fast() -> GatewayOptions {
    GatewayOptions {
        backoff_min: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        handshake_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

async fn next(gateway: &mut Gateway) -> GatewayEvent {
    tokio::time::timeout(Duration::from_secs(5), gateway.recv())
        .await
        .expect("an event in time")
        .expect("the gateway is open")
}

fn serial(event: &GatewayEvent) -> u64 {
    match event {
        GatewayEvent::CertInvalidated { invalidation, .. } => invalidation.serial,
        other => panic!("not an op 4: {other:?}"),
    }
}

#[tokio::test]
async fn gaps_are_filled_from_the_ack_and_events_stay_in_order() {
    let (listener, url) = listener().await;
    let server = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        // A long interval: heartbeats come only when asked for with op 11.
        peer.hello(60_000).await;
        let identify = peer.expect(op::IDENTIFY).await;
        assert_eq!(identify.d, json!({"token": "tok"}));
        peer.identify_ack().await;
        peer.send(event(2, 10, 1)).await;
        // s 3 (id 11) is "lost"; s 4 must wait for it.
        peer.send(event(4, 12, 3)).await;
        peer.send(heartbeat_request(5)).await;
        let beat = peer.expect(op::HEARTBEAT).await;
        let numbers = NumberList::from_value(&beat.d).unwrap();
        assert_eq!(numbers, list(0, 5, &[3]));
        let resent = json!([event(3, 11, 2)]);
        peer.send(frame(op::HEARTBEAT_ACK, Some(6), resent)).await;
        // A duplicate id on a later frame is not passed on.
        peer.send(event(7, 12, 3)).await;
        peer.send(event(8, 13, 4)).await;
        peer.send(heartbeat_request(9)).await;
        let beat = peer.expect(op::HEARTBEAT).await;
        assert_eq!(NumberList::from_value(&beat.d).unwrap(), list(3, 9, &[]));
        peer.close(4004).await;
    });
    let mut gateway = Gateway::connect(&url, "tok".into(), fast()).await.unwrap();
    let serials = [
        serial(&next(&mut gateway).await),
        serial(&next(&mut gateway).await),
        serial(&next(&mut gateway).await),
        serial(&next(&mut gateway).await),
    ];
    assert_eq!(serials, [1, 2, 3, 4]);
    match next(&mut gateway).await {
        GatewayEvent::Closed { code, .. } => assert_eq!(code, Some(4004)),
        other => panic!("{other:?}"),
    }
    assert!(gateway.recv().await.is_none());
    server.await.unwrap();
}

#[tokio::test]
async fn a_drop_resumes_and_a_refused_resume_identifies_afresh() {
    let (listener, url) = listener().await;
    let server = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.hello(60_000).await;
        peer.expect(op::IDENTIFY).await;
        peer.identify_ack().await;
        peer.send(event(2, 5, 1)).await;
        peer.send(event(3, 6, 2)).await;
        // The client drops this connection (drop_connection) after reading both.
        assert!(peer.recv().await.is_none());

        let mut peer = Peer::accept(&listener).await;
        peer.hello(60_000).await;
        let resume = peer.expect(op::RESUME).await;
        let resume = Resume::from_value(&resume.d).unwrap();
        assert_eq!((resume.s, resume.token.as_str()), (3, "tok"));
        // A replay that repeats id 6, then a new event; op 10 numbered after them.
        let replay = json!([event(1, 6, 2), event(2, 7, 3)]);
        peer.send(frame(op::RESUMED, Some(3), replay)).await;
        peer.send(event(4, 8, 4)).await;
        // A resumable close: the client resumes from s 4 of this connection.
        peer.close(4000).await;

        let mut peer = Peer::accept(&listener).await;
        peer.hello(60_000).await;
        let resume = peer.expect(op::RESUME).await;
        assert_eq!(Resume::from_value(&resume.d).unwrap().s, 4);
        peer.close(4010).await;

        let mut peer = Peer::accept(&listener).await;
        peer.hello(60_000).await;
        peer.expect(op::IDENTIFY).await;
        peer.identify_ack().await;
        // Catching up after Identify repeats what was not acknowledged.
        peer.send(event(2, 8, 4)).await;
        peer.send(event(3, 9, 5)).await;
        assert!(peer.recv().await.is_none(), "the client closes");
    });
    let mut gateway = Gateway::connect(&url, "tok".into(), fast()).await.unwrap();
    assert_eq!(serial(&next(&mut gateway).await), 1);
    assert_eq!(serial(&next(&mut gateway).await), 2);
    gateway.drop_connection().await;
    assert!(matches!(
        next(&mut gateway).await,
        GatewayEvent::Reconnected { resumed: true }
    ));
    assert_eq!(serial(&next(&mut gateway).await), 3);
    assert_eq!(serial(&next(&mut gateway).await), 4);
    // The resume after 4000 is refused with 4010: one fresh Identify, one notice.
    assert!(matches!(
        next(&mut gateway).await,
        GatewayEvent::Reconnected { resumed: false }
    ));
    assert_eq!(serial(&next(&mut gateway).await), 5);
    gateway.close().await;
    match next(&mut gateway).await {
        GatewayEvent::Closed { code, .. } => assert_eq!(code, Some(1000)),
        other => panic!("{other:?}"),
    }
    server.await.unwrap();
}

#[tokio::test]
async fn heartbeats_come_every_interval_and_subscriptions_are_answered() {
    let (listener, url) = listener().await;
    let server = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.hello(100).await;
        peer.expect(op::IDENTIFY).await;
        peer.identify_ack().await;
        let sub = peer.expect(op::SERVICE_CHANNEL).await;
        assert_eq!(sub.d, json!({"action": "subscribe", "service": "chat"}));
        let ack = ServiceChannelAck {
            action: ChannelAction::Subscribe,
            service: "chat".into(),
            success: true,
            error: None,
        };
        peer.send(frame(op::SERVICE_CHANNEL_ACK, Some(2), json!(ack)))
            .await;
        let mut chat = Envelope::new("chat", 1, json!({"x": 1}));
        (chat.s, chat.id) = (Some(3), Some(1));
        peer.send(chat.to_value(Style::Numbers)).await;
        for _ in 0..2 {
            let beat = peer.expect(op::HEARTBEAT).await;
            assert!(NumberList::from_value(&beat.d).is_some());
            peer.send(frame(op::HEARTBEAT_ACK, None, json!([]))).await;
        }
        peer.close(4008).await;
    });
    let mut gateway = Gateway::connect(&url, "tok".into(), fast()).await.unwrap();
    let ack = gateway.subscribe("chat").await.unwrap();
    assert!(ack.success);
    match next(&mut gateway).await {
        GatewayEvent::Service { envelope } => {
            assert_eq!((envelope.n.as_str(), envelope.op), ("chat", 1))
        }
        other => panic!("{other:?}"),
    }
    match next(&mut gateway).await {
        GatewayEvent::Closed { code, .. } => assert_eq!(code, Some(4008)),
        other => panic!("{other:?}"),
    }
    assert!(gateway.subscribe("chat").await.is_err());
    server.await.unwrap();
}

#[tokio::test]
async fn a_bad_token_fails_the_connect() {
    let (listener, url) = listener().await;
    let server = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.hello(45_000).await;
        peer.expect(op::IDENTIFY).await;
        peer.close(4004).await;
    });
    let err = Gateway::connect(&url, "bad".into(), fast())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::GatewayClosed {
                code: Some(4004),
                ..
            }
        ),
        "{err}"
    );
    server.await.unwrap();
}

/// Sends events numbered `from..` until the client hangs up (at most `limit`); returns
/// how many went out.
async fn flood(peer: &mut Peer, from: u64, limit: u64) -> u64 {
    for s in from..from + limit {
        let text = event(s, s, s).to_string();
        if peer.0.send(Message::text(text)).await.is_err() {
            return s - from;
        }
    }
    limit
}

#[tokio::test]
async fn a_server_that_never_answers_the_identify_cannot_fill_the_clients_memory() {
    let (listener, url) = listener().await;
    let server = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.hello(45_000).await;
        peer.expect(op::IDENTIFY).await;
        flood(&mut peer, 1, 100_000).await
    });
    let options = GatewayOptions {
        handshake_timeout: Duration::from_secs(30),
        ..fast()
    };
    let started = Instant::now();
    let err = Gateway::connect(&url, "tok".into(), options)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Gateway(reason) if reason.contains("more than 1024 frames")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let sent = server.await.unwrap();
    assert!(sent < 100_000, "the client read all {sent} frames");
}

#[tokio::test]
async fn events_held_back_by_a_gap_that_never_fills_are_bounded() {
    let (listener, url) = listener().await;
    let server = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.hello(60_000).await;
        peer.expect(op::IDENTIFY).await;
        peer.identify_ack().await;
        // s 2 never comes: everything after it waits for it.
        flood(&mut peer, 3, 100_000).await
    });
    let options = GatewayOptions {
        reconnect: false,
        ..fast()
    };
    let mut gateway = Gateway::connect(&url, "tok".into(), options).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(20), gateway.recv())
        .await
        .expect("the client gives up on the gap in time")
        .expect("an event");
    match event {
        GatewayEvent::Closed { code, reason } => {
            assert_eq!(code, None);
            assert!(reason.contains("out of order"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let sent = server.await.unwrap();
    assert!(sent < 100_000, "the client held all {sent} frames");
}
