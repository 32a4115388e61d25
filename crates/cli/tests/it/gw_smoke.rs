//! First smoke test of the gateway; the full protocol suite is in gateway.rs.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use fugue_testkit::TestServer;

async fn next_json(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Value {
    loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .expect("frame in time")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

#[tokio::test]
async fn hello_identify_and_a_new_session_event() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["op"], 1);
    assert_eq!(hello["s"], 0);
    assert_eq!(hello["d"]["heartbeat_interval"], 45000);
    ws.send(Message::text(
        json!({"n":"core","op":2,"d":{"token": alice.token()}}).to_string(),
    ))
    .await
    .unwrap();
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["op"], 12, "{ack}");
    assert_eq!(ack["s"], 1);
    server.login("alice", "second").await.unwrap();
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["op"], 3, "{ev}");
    assert_eq!(ev["s"], 2);
    assert!(
        ev["d"]["cert"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
}
