//! Chaos: many randomized runs of publishing events while gateway connections are cut at
//! random points and resumed — on one node, and across two nodes joined by NATS (where a
//! reconnect lands on a random node). Every client must end with every event exactly once,
//! in order.

use std::sync::Arc;
use std::time::Duration;

use fugue_client::{Gateway, GatewayEvent, GatewayOptions};
use fugue_testkit::TestServer;
use rand_core::{OsRng, RngCore};
use serde_json::json;

/// A service channel the test publishes on.
struct Chaos;

impl fugue_server::gateway::Service for Chaos {
    fn name(&self) -> &str {
        "chaos"
    }
}

const EVENTS: u64 = 40;
const CLIENTS: usize = 3;

fn random_ms(max: u32) -> Duration {
    Duration::from_millis(u64::from(OsRng.next_u32() % max.max(1)))
}

/// Reads events until all arrived, cutting the connection at random moments. Returns the
/// event numbers in arrival order, how many cuts were asked for and how many resumes
/// happened.
async fn consume(mut gateway: Gateway) -> (Vec<u64>, u32, u32) {
    let mut seen = Vec::new();
    let mut cuts = 0;
    let mut resumes = 0;
    let mut next_cut = tokio::time::Instant::now() + random_ms(120);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (seen.len() as u64) < EVENTS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "after {cuts} cuts only got {seen:?}"
        );
        tokio::select! {
            event = gateway.recv() => match event.expect("the gateway stays open") {
                GatewayEvent::Service { envelope } if envelope.n == "chaos" => {
                    seen.push(envelope.d["i"].as_u64().expect("numbered event"));
                }
                // Every cut is resumable: a fresh Identify (4010) would hide lost state.
                GatewayEvent::Reconnected { resumed } => {
                    assert!(resumed, "a resume was refused");
                    resumes += 1;
                }
                GatewayEvent::Closed { code, reason } => panic!("closed: {code:?} {reason}"),
                GatewayEvent::ChannelClosed { service, error } => {
                    panic!("channel {service} closed: {error:?}")
                }
                _ => {}
            },
            () = tokio::time::sleep_until(next_cut) => {
                gateway.drop_connection().await;
                cuts += 1;
                next_cut = tokio::time::Instant::now() + random_ms(120);
            }
        }
    }
    gateway.close().await;
    (seen, cuts, resumes)
}

async fn run_once(nodes: &[TestServer], run: usize) {
    for node in nodes {
        node.gateway.register_service(Arc::new(Chaos));
    }
    let first = &nodes[0];
    let name = format!("chaos{run}");
    first.register(&name).await;
    let urls: Vec<String> = nodes.iter().map(TestServer::ws_url).collect();
    let mut consumers = Vec::new();
    for c in 0..CLIENTS {
        let session = first.login(&name, &format!("c{c}")).await.unwrap();
        let options = GatewayOptions {
            backoff_min: Duration::from_millis(5),
            backoff_max: Duration::from_millis(100),
            handshake_timeout: Duration::from_secs(10),
            alternates: urls.clone(),
            ..Default::default()
        };
        let url = &urls[c % urls.len()];
        let gateway = Gateway::connect(url, session.token().to_owned(), options)
            .await
            .unwrap();
        let ack = gateway.subscribe("chaos").await.unwrap();
        assert!(ack.success, "{ack:?}");
        consumers.push(tokio::spawn(consume(gateway)));
    }
    for i in 0..EVENTS {
        tokio::time::sleep(random_ms(15)).await;
        let node = &nodes[OsRng.next_u32() as usize % nodes.len()];
        node.publish_in(&name, "chaos", 1, json!({ "i": i }), None)
            .await;
    }
    let expected: Vec<u64> = (0..EVENTS).collect();
    let (mut total_cuts, mut total_resumes) = (0, 0);
    for consumer in consumers {
        let (seen, cuts, resumes) = consumer.await.unwrap();
        assert_eq!(
            seen, expected,
            "run {run}: lost, duplicated or reordered events"
        );
        total_cuts += cuts;
        total_resumes += resumes;
    }
    assert!(total_cuts > 0, "run {run} cut nothing");
    // A cut asked for while reconnecting does nothing: count the resumes that happened.
    assert!(total_resumes > 0, "run {run} resumed nothing");
}

#[tokio::test]
async fn every_event_arrives_exactly_once_in_order_on_one_node() {
    for run in 0..8 {
        let node = TestServer::start_with(|c| c.gateway.heartbeat_interval_ms = 200).await;
        run_once(std::slice::from_ref(&node), run).await;
    }
}

#[tokio::test]
async fn every_event_arrives_exactly_once_in_order_across_two_nodes() {
    for run in 0..5 {
        let nodes = TestServer::start_cluster(2, |c| c.gateway.heartbeat_interval_ms = 200).await;
        run_once(&nodes, run).await;
    }
}

/// Concurrent publishers of one actor announce out of commit order; every connection still
/// delivers each event once, in stream order.
#[tokio::test]
async fn concurrent_publishers_are_delivered_in_stream_order() {
    let node = TestServer::start().await;
    node.gateway.register_service(Arc::new(Chaos));
    node.register("many").await;
    let session = node.login("many", "watch").await.unwrap();
    let mut gateway = Gateway::connect(
        &node.ws_url(),
        session.token().to_owned(),
        Default::default(),
    )
    .await
    .unwrap();
    assert!(gateway.subscribe("chaos").await.unwrap().success);
    let node = Arc::new(node);
    let mut publishers = Vec::new();
    for p in 0..8u64 {
        let node = node.clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..25u64 {
                node.publish_in("many", "chaos", 1, json!({ "i": p * 100 + i }), None)
                    .await;
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    let mut ids = Vec::new();
    while ids.len() < 200 {
        let event = tokio::time::timeout(Duration::from_secs(10), gateway.recv())
            .await
            .expect("all events in time")
            .expect("open");
        if let GatewayEvent::Service { envelope } = event {
            ids.push(envelope.id.expect("events carry their position"));
        }
    }
    let first = ids[0];
    let expected: Vec<u64> = (first..first + 200).collect();
    assert_eq!(ids, expected, "every position once, in order");
}
