//! `fugue-client`'s gateway against the real server: new-session events, exactly-once delivery
//! across dropped connections (resume) and random cuts while events are being published.

use std::time::Duration;

use fugue_client::{Gateway, GatewayEvent, GatewayOptions};
use fugue_proto::certs::IdCert;
use fugue_testkit::{PASSWORD, TestServer};
use rand_core::{OsRng, RngCore};

/// Reconnects at once: the tests cut connections on purpose.
fn fast() -> GatewayOptions {
    GatewayOptions {
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        handshake_timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

async fn next(gateway: &mut Gateway) -> GatewayEvent {
    tokio::time::timeout(Duration::from_secs(10), gateway.recv())
        .await
        .expect("an event in time")
        .expect("the gateway is open")
}

/// The next event that is not a reconnection notice.
async fn next_event(gateway: &mut Gateway) -> GatewayEvent {
    loop {
        match next(gateway).await {
            GatewayEvent::Reconnected { .. } => {}
            other => return other,
        }
    }
}

/// The session ID of an op 3's certificate.
fn new_session(event: &GatewayEvent) -> String {
    match event {
        GatewayEvent::NewSession { cert_pem, .. } => IdCert::parse(cert_pem.as_bytes())
            .unwrap()
            .session_id()
            .unwrap()
            .to_string(),
        other => panic!("expected a new session, got {other:?}"),
    }
}

#[tokio::test]
async fn a_connected_session_hears_of_a_new_session() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mut gateway = alice.gateway(fast()).await.unwrap();
    let phone = server.login("alice", "phone").await.unwrap();
    let event = next_event(&mut gateway).await;
    assert_eq!(new_session(&event), "phone");
    let GatewayEvent::NewSession { cert_pem, envelope } = &event else {
        unreachable!()
    };
    assert_eq!(cert_pem, phone.cert_pem());
    assert!(envelope.id.is_some() && envelope.s.is_some());
    gateway.close().await;
    assert!(matches!(
        next(&mut gateway).await,
        GatewayEvent::Closed {
            code: Some(1000),
            ..
        }
    ));
}

#[tokio::test]
async fn a_bad_token_fails_the_connect_with_4004() {
    let server = TestServer::start().await;
    let url = fugue_client::gateway_url(&server.url).unwrap();
    let err = Gateway::connect(&url, "not-a-token".into(), fast())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            fugue_client::Error::GatewayClosed {
                code: Some(4004),
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_session_created_during_a_drop_arrives_once_after_the_resume() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mut gateway = alice.gateway(fast()).await.unwrap();
    server.login("alice", "second").await.unwrap();
    assert_eq!(new_session(&next_event(&mut gateway).await), "second");

    gateway.drop_connection().await;
    server.login("alice", "third").await.unwrap();
    assert!(matches!(
        next(&mut gateway).await,
        GatewayEvent::Reconnected { resumed: true }
    ));
    assert_eq!(new_session(&next_event(&mut gateway).await), "third");
    // A sentinel: had "third" come twice, the duplicate would be next.
    server.login("alice", "fourth").await.unwrap();
    assert_eq!(new_session(&next_event(&mut gateway).await), "fourth");
}

#[tokio::test]
async fn events_arrive_exactly_once_in_order_while_connections_are_cut_at_random() {
    // Short heartbeats, so that acknowledgements happen between the cuts.
    let server = TestServer::start_with(|c| c.gateway.heartbeat_interval_ms = 150).await;
    let alice = server.register("alice").await;
    let mut gateway = alice.gateway(fast()).await.unwrap();
    let names: Vec<String> = (0..12).map(|i| format!("s{i:02}")).collect();

    let client = server.client();
    let fid = server.fid("alice");
    let logins = names.clone();
    let publisher = tokio::spawn(async move {
        for name in logins {
            tokio::time::sleep(Duration::from_millis(u64::from(OsRng.next_u32() % 60))).await;
            let key = fugue_client::IdentityKey::generate();
            let sid = name.parse().unwrap();
            client
                .login("alice", PASSWORD, None, &key, &fid, &sid)
                .await
                .unwrap();
        }
    });

    let mut seen = Vec::new();
    let (mut cuts, mut resumes) = (0, 0);
    let random_pause = || Duration::from_millis(10 + u64::from(OsRng.next_u32() % 70));
    let mut next_cut = tokio::time::Instant::now() + random_pause();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < names.len() {
        // `None`: time to cut the connection.
        let step = tokio::select! {
            event = gateway.recv() => Some(event.expect("the gateway is open")),
            () = tokio::time::sleep_until(next_cut) => None,
        };
        assert!(tokio::time::Instant::now() < deadline, "only got {seen:?}");
        match step {
            Some(GatewayEvent::Reconnected { resumed }) => {
                assert!(resumed, "every cut is resumable");
                resumes += 1;
            }
            Some(event) => seen.push(new_session(&event)),
            None => {
                // A cut while reconnecting does nothing; the schedule goes on regardless.
                gateway.drop_connection().await;
                cuts += 1;
                next_cut = tokio::time::Instant::now() + random_pause();
            }
        }
    }
    publisher.await.unwrap();
    assert_eq!(seen, names);
    assert!(cuts > 0 && resumes > 0, "{cuts} cuts, {resumes} resumes");
    server.login("alice", "sentinel").await.unwrap();
    assert_eq!(new_session(&next_event(&mut gateway).await), "sentinel");
}

#[tokio::test]
async fn heartbeats_keep_an_idle_connection_open() {
    let server = TestServer::start_with(|c| c.gateway.heartbeat_interval_ms = 100).await;
    let alice = server.register("alice").await;
    let mut gateway = alice.gateway(fast()).await.unwrap();
    // Ten intervals: a heartbeat the server refused, or a missing one, would end in a close
    // and show up here as a reconnection.
    let quiet = tokio::time::timeout(Duration::from_secs(1), gateway.recv()).await;
    assert!(quiet.is_err(), "{quiet:?}");
    server.login("alice", "phone").await.unwrap();
    assert_eq!(new_session(&next(&mut gateway).await), "phone");
}

#[tokio::test]
async fn revocations_reach_every_session_and_close_the_revoked_one() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mut main = alice.gateway(fast()).await.unwrap();
    let phone = server.login("alice", "phone").await.unwrap();
    let mut on_phone = phone.gateway(fast()).await.unwrap();
    assert_eq!(new_session(&next_event(&mut main).await), "phone");

    let serial = phone.current_serial().unwrap();
    alice
        .revoke_session(phone.session_id(), PASSWORD)
        .await
        .unwrap();
    for gateway in [&mut main, &mut on_phone] {
        match next_event(gateway).await {
            GatewayEvent::CertInvalidated { invalidation, .. } => {
                assert_eq!(invalidation.serial, serial.0)
            }
            other => panic!("expected an op 4, got {other:?}"),
        }
    }
    match next(&mut on_phone).await {
        GatewayEvent::Closed { code, .. } => assert_eq!(code, Some(4003)),
        other => panic!("expected the close, got {other:?}"),
    }
    assert!(on_phone.recv().await.is_none());
}

#[tokio::test]
async fn sessions_ended_by_account_management_get_op_4_and_close() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mut main = alice.gateway(fast()).await.unwrap();
    let phone = server.login("alice", "phone").await.unwrap();
    let mut on_phone = phone.gateway(fast()).await.unwrap();
    assert_eq!(new_session(&next_event(&mut main).await), "phone");

    // A new password with endSessions: the other session ends as if revoked.
    let serial = phone.current_serial().unwrap();
    alice
        .change_password("a completely new passphrase", true, PASSWORD)
        .await
        .unwrap();
    for gateway in [&mut main, &mut on_phone] {
        match next_event(gateway).await {
            GatewayEvent::CertInvalidated { invalidation, .. } => {
                assert_eq!(invalidation.serial, serial.0)
            }
            other => panic!("expected an op 4, got {other:?}"),
        }
    }
    match next(&mut on_phone).await {
        GatewayEvent::Closed { code, .. } => assert_eq!(code, Some(4003)),
        other => panic!("expected the close, got {other:?}"),
    }

    // Deleting the account ends the calling session too.
    let serial = alice.current_serial().unwrap();
    alice
        .delete_account("a completely new passphrase")
        .await
        .unwrap();
    match next_event(&mut main).await {
        GatewayEvent::CertInvalidated { invalidation, .. } => {
            assert_eq!(invalidation.serial, serial.0)
        }
        other => panic!("expected an op 4, got {other:?}"),
    }
    match next(&mut main).await {
        GatewayEvent::Closed { code, .. } => assert_eq!(code, Some(4003)),
        other => panic!("expected the close, got {other:?}"),
    }
}

#[tokio::test]
async fn service_channels_answer_with_op_9() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let gateway = alice.gateway(fast()).await.unwrap();
    let ack = gateway.subscribe("no-such-service").await.unwrap();
    assert!(!ack.success && ack.error.is_some(), "{ack:?}");
    let ack = gateway.unsubscribe("core").await.unwrap();
    assert!(!ack.success, "core is always on: {ack:?}");
}
