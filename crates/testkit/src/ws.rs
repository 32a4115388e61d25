//! A raw gateway client: a plain WebSocket that sends and reads JSON frames exactly as they
//! are on the wire, so tests can check every `op`, `s`, close code and byte a client gets
//! (`fugue-client`'s typed gateway would hide them).
//!
//! The plain functions panic with what they saw instead, which is what a test wants. The
//! `try_` ones return it, for the benchmark, where one failed connection of a thousand is
//! counted rather than fatal.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::TestServer;

/// A client's gateway socket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest wait for any one frame or close.
pub const WAIT: Duration = Duration::from_secs(10);

/// What came next on a socket.
#[derive(Debug)]
pub enum Received {
    /// A text frame, parsed.
    Frame(Value),
    /// The server's close frame, with its code.
    Close(u16),
}

/// The gateway URL of a server whose HTTP base URL is `http_base` (`http://host:port`).
pub fn url(http_base: &str) -> String {
    format!(
        "{}{}",
        http_base.replacen("http://", "ws://", 1),
        fugue_proto::gateway::PATH
    )
}

/// The next text frame or close frame within `wait` (pings and pongs are skipped), or why
/// neither came: a timeout, a socket error, a frame that is not JSON, a close without a code
/// or the end of the stream without a close frame.
pub async fn try_receive(ws: &mut Ws, wait: Duration) -> Result<Received, String> {
    loop {
        let msg = match timeout(wait, ws.next()).await {
            Err(_) => return Err(format!("nothing within {wait:?}")),
            Ok(None) => return Err("the socket ended without a close frame".into()),
            Ok(Some(Err(e))) => return Err(format!("socket error: {e}")),
            Ok(Some(Ok(msg))) => msg,
        };
        match msg {
            Message::Text(t) => {
                return serde_json::from_str(t.as_str())
                    .map(Received::Frame)
                    .map_err(|e| format!("not a JSON frame ({e}): {:.300}", t.as_str()));
            }
            Message::Close(Some(f)) => return Ok(Received::Close(u16::from(f.code))),
            Message::Close(None) => return Err("a close frame without a code".into()),
            _ => {}
        }
    }
}

/// Opens a socket to `addr` with `config` and no Nagle delay, and reads Hello (within
/// `wait`).
pub async fn try_connect(
    addr: SocketAddr,
    config: Option<WebSocketConfig>,
    wait: Duration,
) -> Result<(Ws, Value), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let url = format!("ws://{addr}{}", fugue_proto::gateway::PATH);
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url, MaybeTlsStream::Plain(tcp), config)
            .await
            .map_err(|e| e.to_string())?;
    let hello = try_frame_with_op(&mut ws, fugue_proto::gateway::op::HELLO, wait).await?;
    Ok((ws, hello))
}

/// The next frame, which must have `op`.
pub async fn try_frame_with_op(ws: &mut Ws, op: u16, wait: Duration) -> Result<Value, String> {
    match try_receive(ws, wait).await? {
        Received::Frame(f) if f["op"] == op => Ok(f),
        Received::Frame(f) => Err(format!("expected op {op}, got {:.300}", f.to_string())),
        Received::Close(code) => Err(format!("expected op {op}, the socket closed with {code}")),
    }
}

/// Opens a socket to `server` and reads Hello.
pub async fn connect(server: &TestServer) -> (Ws, Value) {
    connect_to(&server.ws_url()).await
}

/// Opens a socket to the gateway at `url` and reads Hello (which must be the first frame).
pub async fn connect_to(url: &str) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the gateway accepts the socket");
    let hello = next(&mut ws).await;
    assert_eq!(hello["op"], 1, "the first frame is Hello: {hello}");
    (ws, hello)
}

/// The next text frame, parsed. Panics on a close, an error or a timeout.
pub async fn next(ws: &mut Ws) -> Value {
    match try_receive(ws, WAIT).await {
        Ok(Received::Frame(f)) => f,
        Ok(Received::Close(code)) => panic!("closed with {code} instead of a frame"),
        Err(e) => panic!("no frame: {e}"),
    }
}

/// The next frame with `op`, skipping the others.
pub async fn next_with_op(ws: &mut Ws, op: u16) -> Value {
    loop {
        let f = next(ws).await;
        if f["op"] == op {
            return f;
        }
    }
}

/// Sends `frame` as a text frame.
pub async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string()))
        .await
        .expect("the frame is sent");
}

/// Reads until the server closes; returns the close code and the frames that came first.
/// Panics on a timeout, an error, or an end without a close frame.
pub async fn closed_with(ws: &mut Ws) -> (u16, Vec<Value>) {
    let mut frames = Vec::new();
    loop {
        match try_receive(ws, WAIT).await {
            Ok(Received::Frame(f)) => frames.push(f),
            Ok(Received::Close(code)) => return (code, frames),
            Err(e) => {
                let last = frames.last().map(Value::to_string).unwrap_or_default();
                panic!(
                    "no close frame: {e}; after {} frames, the last: {last:.300}",
                    frames.len()
                )
            }
        }
    }
}

/// Asserts that the server closes with `code` and sent nothing before it.
pub async fn expect_close(ws: &mut Ws, code: u16) {
    let (got, frames) = closed_with(ws).await;
    assert_eq!(got, code, "close code (frames before it: {frames:?})");
    assert!(
        frames.is_empty(),
        "unexpected frames before {code}: {frames:?}"
    );
}

/// Identify (op 2) with `token`.
pub fn identify_frame(token: &str) -> Value {
    json!({"n": "core", "op": 2, "d": {"token": token}})
}

/// Connects to `server` and identifies (number style); returns the socket after op 12.
pub async fn identified(server: &TestServer, token: &str) -> Ws {
    identified_at(&server.ws_url(), token).await
}

/// Connects to the gateway at `url` and identifies; returns the socket after op 12, which
/// must be the first frame after Hello (`s` = 1).
pub async fn identified_at(url: &str, token: &str) -> Ws {
    let (mut ws, _) = connect_to(url).await;
    send(&mut ws, identify_frame(token)).await;
    let ack = next(&mut ws).await;
    assert_eq!(ack["op"], 12, "{ack}");
    assert_eq!(ack["s"], 1, "{ack}");
    ws
}
