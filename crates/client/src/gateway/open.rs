//! Opening one gateway connection: the WebSocket upgrade, Hello, then Identify or Resume and
//! its answer, within the handshake limits of [`super`]. What the server says before that
//! answer is kept for the task, which takes it as the connection's first frames.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use fugue_proto::gateway::{CORE, Envelope, Identify, Resume, Style, hello_interval_ms, op};

use super::sequence::Sequence;
use super::{MAX_HANDSHAKE_BYTES, MAX_HANDSHAKE_FRAMES, MAX_MESSAGE_BYTES};
use crate::error::Error;

pub(super) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A zero interval would make the heartbeat timer spin (and `tokio::time::interval` panic).
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// A connection that got as far as the answer to its Identify or Resume.
pub(super) struct Opened {
    pub(super) ws: Ws,
    /// The heartbeat interval from Hello.
    pub(super) interval: Duration,
    /// Holds Hello's number; the frames in `early` are recorded when the task takes them.
    pub(super) seq: Sequence,
    /// Frames after Hello that arrived during the handshake, the answer included.
    pub(super) early: Vec<Envelope>,
}

/// How a connection starts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Intro {
    Identify,
    /// The last `s` of the previous connection up to which every frame arrived.
    Resume(u64),
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub(super) enum OpenError {
    /// The server closed the socket with a code.
    Closed { code: u16, reason: String },
    /// The upgrade was answered with an HTTP status.
    Http { status: u16, body: Option<Vec<u8>> },
    /// Socket, TLS, timeout.
    Transport(String),
    /// The server's frames were not the gateway handshake.
    Protocol(String),
}

impl OpenError {
    pub(super) fn into_error(self) -> Error {
        match self {
            OpenError::Closed { code, reason } => Error::GatewayClosed {
                code: Some(code),
                reason,
            },
            OpenError::Http { status, body } => Error::Api {
                status,
                problem: body
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .map(Box::new),
            },
            OpenError::Transport(reason) => Error::Transport(reason),
            OpenError::Protocol(reason) => Error::Gateway(reason),
        }
    }
}

impl From<tungstenite::Error> for OpenError {
    fn from(e: tungstenite::Error) -> Self {
        match e {
            tungstenite::Error::Http(response) => {
                let status = response.status().as_u16();
                OpenError::Http {
                    status,
                    body: (*response).into_body(),
                }
            }
            other => OpenError::Transport(format!("gateway: {other}")),
        }
    }
}

/// Connects, reads Hello, sends Identify or Resume and waits for its answer.
pub(super) async fn open(
    url: &str,
    token: &str,
    intro: Intro,
    timeout: Duration,
) -> Result<Opened, OpenError> {
    tokio::time::timeout(timeout, handshake(url, token, intro))
        .await
        .unwrap_or_else(|_| {
            Err(OpenError::Transport(format!(
                "gateway handshake timed out after {timeout:?}"
            )))
        })
}

async fn handshake(url: &str, token: &str, intro: Intro) -> Result<Opened, OpenError> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(config), false).await?;
    let (hello, mut read) = next_frame(&mut ws).await?;
    if hello.n != CORE || hello.op != op::HELLO {
        return Err(OpenError::Protocol(format!(
            "the first frame is op {} in {:?}, not Hello",
            hello.op, hello.n
        )));
    }
    let interval = hello_interval_ms(&hello.d)
        .ok_or_else(|| OpenError::Protocol("Hello has no heartbeat interval".into()))?;
    let interval = Duration::from_millis(interval).max(MIN_INTERVAL);
    let mut seq = Sequence::default();
    if let Some(s) = hello.s {
        seq.record(s);
    }
    let (first, answer) = match intro {
        Intro::Identify => {
            let identify = Identify {
                token: token.to_owned(),
            };
            // Serialising a struct of strings cannot fail.
            let d = serde_json::to_value(identify).unwrap_or_default();
            (Envelope::new(CORE, op::IDENTIFY, d), op::IDENTIFY_ACK)
        }
        Intro::Resume(s) => {
            let d = Resume {
                s,
                token: token.to_owned(),
            }
            .to_value();
            (Envelope::new(CORE, op::RESUME, d), op::RESUMED)
        }
    };
    ws.send(Message::text(first.render(Style::Numbers))).await?;
    let mut early = Vec::new();
    loop {
        let (frame, size) = next_frame(&mut ws).await?;
        read += size;
        let done = frame.n == CORE && frame.op == answer;
        early.push(frame);
        if done {
            break;
        }
        if early.len() >= MAX_HANDSHAKE_FRAMES || read > MAX_HANDSHAKE_BYTES {
            return Err(OpenError::Protocol(format!(
                "the server sent more than {MAX_HANDSHAKE_FRAMES} frames or {MAX_HANDSHAKE_BYTES} bytes before answering op {answer}"
            )));
        }
    }
    Ok(Opened {
        ws,
        interval,
        seq,
        early,
    })
}

/// The next gateway frame during the handshake, and its size in bytes.
async fn next_frame(ws: &mut Ws) -> Result<(Envelope, usize), OpenError> {
    loop {
        match ws.next().await {
            None => {
                return Err(OpenError::Transport(
                    "gateway: the server closed the connection during the handshake".into(),
                ));
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Text(text))) => {
                return Envelope::parse(&text)
                    .map(|(frame, _)| (frame, text.len()))
                    .map_err(|e| OpenError::Protocol(format!("unreadable frame: {e}")));
            }
            Some(Ok(Message::Close(Some(frame)))) => {
                return Err(OpenError::Closed {
                    code: frame.code.into(),
                    reason: frame.reason.as_str().to_owned(),
                });
            }
            Some(Ok(Message::Close(None))) => {
                return Err(OpenError::Transport(
                    "gateway: closed without a code during the handshake".into(),
                ));
            }
            Some(Ok(_)) => {}
        }
    }
}
