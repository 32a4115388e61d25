//! The gateway connection (DIGEST §3, docs/gateway.md): one WebSocket to the home server that
//! keeps itself alive and hands the application every event exactly once, in order.
//!
//! A background task owns the socket. It identifies, heartbeats with a minified number list
//! (asking again for any sequence number it missed), answers heartbeat requests, and after a
//! drop reconnects with backoff and resumes; when the server refuses to resume (4010) it
//! identifies afresh. Every event carries `id`, its position in the stream it lives in
//! (the actor's own for core events, a guild's for chat events), the same on every
//! connection: the task passes each event on once (`sequence::Dedupe`), so re-sends and
//! replays never reach the application twice.
//!
//! Frames are built and read only through [`fugue_proto::gateway`], in the spec's number
//! style. Nothing here verifies what an event claims (an op 4 signature, a new session's
//! certificate): that is the application's business.
//!
//! This module is the application's side: [`Gateway`], its events and options. The task
//! lives in `task`, the opening of one connection in `open`, and the bookkeeping of
//! sequence numbers and event ids, pure and tested on its own, in `sequence`.

mod open;
mod sequence;
mod task;
#[cfg(test)]
mod tests;

use std::time::Duration;

use reqwest::Url;
use tokio::sync::{mpsc, oneshot};

use fugue_proto::gateway::{
    CORE, CertInvalidation, ChannelAction, Envelope, MAX_EXCEPT, NewSession, ServerCertChange,
    ServiceChannel, ServiceChannelAck, op,
};

use self::open::{Intro, OpenError, open};
use self::task::Task;
use crate::error::{Error, Result};
use crate::session::Session;

/// What a server can make the client hold, so that a hostile one cannot exhaust its memory:
/// the largest message (tungstenite's default is 64 MiB) ...
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// ... the frames and bytes read before the handshake's answer (a Resume's replay comes
/// inside op 10, so a few frames are normal) ...
const MAX_HANDSHAKE_FRAMES: usize = 1024;
const MAX_HANDSHAKE_BYTES: usize = 16 * 1024 * 1024;
/// ... and the events held back for a lower sequence number (a heartbeat cannot ask for more
/// than `MAX_EXCEPT` again anyway). Beyond these the connection is dropped.
const MAX_HELD_FRAMES: usize = MAX_EXCEPT;
const MAX_HELD_BYTES: usize = 16 * 1024 * 1024;

/// How the gateway connects and reconnects.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Longest wait for the socket, Hello, and the Identify ACK or Resumed.
    pub handshake_timeout: Duration,
    /// Reconnect after a drop. Off: the first drop ends the gateway with
    /// [`GatewayEvent::Closed`].
    pub reconnect: bool,
    /// The first reconnection attempt waits up to this long (random, so that clients cut off
    /// together do not return together); each further attempt doubles it up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Attempts per outage before giving up; `None` keeps trying.
    pub max_attempts: Option<u32>,
    /// When the server refuses to resume (4010), identify afresh instead of giving up.
    pub reidentify: bool,
    /// Other nodes of the same server (gateway URLs). Reconnections go to a node picked at
    /// random among these and the first URL, as behind a load balancer; a resume works on
    /// any node.
    pub alternates: Vec<String>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(20),
            reconnect: true,
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            max_attempts: None,
            reidentify: true,
            alternates: Vec::new(),
        }
    }
}

/// What the gateway hands the application, in order. Event variants keep the frame as it
/// arrived (`envelope`, with the `s` of the connection that carried it).
#[derive(Debug, Clone)]
pub enum GatewayEvent {
    /// Op 3: another session of this actor got its first certificate.
    NewSession {
        cert_pem: String,
        envelope: Envelope,
    },
    /// Op 4: one of the actor's certificates was revoked. Unverified: check `signature` or
    /// the server's cache signature before acting on it (DIGEST §3.2).
    CertInvalidated {
        invalidation: CertInvalidation,
        envelope: Envelope,
    },
    /// Op 6: the home server's certificate changed.
    ServerCertChanged {
        change: ServerCertChange,
        envelope: Envelope,
    },
    /// An event of a subscribed service channel, or a core opcode this client does not know;
    /// `n`, `op` and `d` are in `envelope`.
    Service { envelope: Envelope },
    /// A core event whose `d` does not have its opcode's shape; passed on rather than lost.
    Malformed { error: String, envelope: Envelope },
    /// The server closed a service channel (op 8), or refused to reopen it after a reconnect.
    ChannelClosed {
        service: String,
        error: Option<String>,
    },
    /// Connected again after a drop. `resumed`: the missed events follow. Otherwise the server
    /// refused to resume (4010) and the session identified afresh: the server then sends what
    /// the session had not acknowledged, within its limits (docs/gateway.md, *Catching up*).
    Reconnected { resumed: bool },
    /// The gateway ended; nothing follows. `code` is the server's close code (1000 after
    /// [`Gateway::close`]), `None` when there was none (gave up reconnecting, HTTP refusal).
    Closed { code: Option<u16>, reason: String },
}

impl GatewayEvent {
    /// The frame of a server event; `None` for connection notices.
    pub fn envelope(&self) -> Option<&Envelope> {
        match self {
            GatewayEvent::NewSession { envelope, .. }
            | GatewayEvent::CertInvalidated { envelope, .. }
            | GatewayEvent::ServerCertChanged { envelope, .. }
            | GatewayEvent::Service { envelope }
            | GatewayEvent::Malformed { envelope, .. } => Some(envelope),
            GatewayEvent::ChannelClosed { .. }
            | GatewayEvent::Reconnected { .. }
            | GatewayEvent::Closed { .. } => None,
        }
    }

    /// The event's position in its stream (the actor's own for core events).
    pub fn id(&self) -> Option<u64> {
        self.envelope().and_then(|e| e.id)
    }
}

/// A live gateway connection. Dropping it closes the socket.
///
/// Events queue without bound until [`Gateway::recv`] takes them, so the socket is always
/// read and heartbeats never wait on the application.
#[derive(Debug)]
pub struct Gateway {
    commands: mpsc::Sender<Command>,
    events: mpsc::UnboundedReceiver<GatewayEvent>,
}

impl Gateway {
    /// Connects to `url` (`ws://` or `wss://`, the gateway path included) and identifies with
    /// `token`. Fails if the first connection does not get as far as the Identify ACK; after
    /// that, trouble arrives as [`GatewayEvent`]s.
    ///
    /// `wss://` uses rustls with the webpki roots; the process needs a default rustls crypto
    /// provider, as for the HTTP client.
    pub async fn connect(url: &str, token: String, options: GatewayOptions) -> Result<Gateway> {
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(Error::Transport(format!(
                "gateway URL {url:?} is not ws:// or wss://"
            )));
        }
        let opened = open(url, &token, Intro::Identify, options.handshake_timeout)
            .await
            .map_err(OpenError::into_error)?;
        let (command_tx, command_rx) = mpsc::channel(16);
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let task = Task::new(url.to_owned(), token, options, event_tx, command_rx);
        tokio::spawn(task.run(opened));
        Ok(Gateway {
            commands: command_tx,
            events: event_rx,
        })
    }

    /// The next event; `None` after [`GatewayEvent::Closed`].
    pub async fn recv(&mut self) -> Option<GatewayEvent> {
        self.events.recv().await
    }

    /// Subscribes to a service channel (op 8) and returns the server's answer (op 9), which
    /// may be a refusal (`success: false`). Subscriptions are renewed after every reconnect.
    pub async fn subscribe(&self, service: &str) -> Result<ServiceChannelAck> {
        self.channel(ChannelAction::Subscribe, service).await
    }

    pub async fn unsubscribe(&self, service: &str) -> Result<ServiceChannelAck> {
        self.channel(ChannelAction::Unsubscribe, service).await
    }

    async fn channel(&self, action: ChannelAction, service: &str) -> Result<ServiceChannelAck> {
        let (reply, answer) = oneshot::channel();
        let request = ServiceChannel {
            action,
            service: service.to_owned(),
        };
        self.commands
            .send(Command::Channel { request, reply })
            .await
            .map_err(|_| ended())?;
        answer.await.map_err(|_| ended())?
    }

    /// Sends a payload of a subscribed service channel (`chat` op 9, typing, for one).
    /// Such payloads are ephemeral: while the gateway is reconnecting this fails instead of
    /// queueing them.
    pub async fn send_service(&self, n: &str, op: u16, d: serde_json::Value) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        let frame = Envelope::new(n, op, d);
        self.commands
            .send(Command::Send { frame, reply })
            .await
            .map_err(|_| ended())?;
        answer.await.map_err(|_| ended())?
    }

    /// Closes the connection cleanly (1000); [`GatewayEvent::Closed`] follows the events
    /// already received.
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(Command::Close(reply)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// For tests: drops the current socket without a close frame, as a network failure would,
    /// and returns once it is gone. The gateway then reconnects and resumes as usual. Only
    /// with the `test-util` feature.
    #[cfg(any(test, feature = "test-util"))]
    pub async fn drop_connection(&self) {
        let (reply, done) = oneshot::channel();
        if self
            .commands
            .send(Command::DropConnection(reply))
            .await
            .is_ok()
        {
            let _ = done.await;
        }
    }
}

fn ended() -> Error {
    Error::Gateway("the gateway connection has ended".into())
}

impl Session {
    /// Opens the gateway of this session's server with its token.
    pub async fn gateway(&self, options: GatewayOptions) -> Result<Gateway> {
        let url = gateway_url(self.client().base_url())?;
        Gateway::connect(&url, self.token().to_owned(), options).await
    }
}

/// The gateway URL of a server base URL: `http` → `ws`, `https` → `wss`, plus the gateway path.
pub fn gateway_url(server: &str) -> Result<String> {
    let url = fugue_proto::gateway::websocket_url(server)
        .ok_or_else(|| Error::Transport(format!("server URL {server:?} is not http(s)")))?;
    Url::parse(&url)
        .map(String::from)
        .map_err(|e| Error::Transport(format!("invalid server URL {server:?}: {e}")))
}

/// Requests from the handle to the task.
enum Command {
    Channel {
        request: ServiceChannel,
        reply: oneshot::Sender<Result<ServiceChannelAck>>,
    },
    /// A service payload, sent now or refused (no connection).
    Send {
        frame: Envelope,
        reply: oneshot::Sender<Result<()>>,
    },
    #[cfg(any(test, feature = "test-util"))]
    DropConnection(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

/// Turns an event frame into what the application sees.
fn classify(envelope: Envelope) -> GatewayEvent {
    fn parse<T: serde::de::DeserializeOwned>(envelope: &Envelope) -> Result<T, String> {
        serde_json::from_value(envelope.d.clone()).map_err(|e| e.to_string())
    }
    if envelope.n != CORE {
        return GatewayEvent::Service { envelope };
    }
    let parsed = match envelope.op {
        op::NEW_SESSION => parse::<NewSession>(&envelope).map(|d| GatewayEvent::NewSession {
            cert_pem: d.cert,
            envelope: envelope.clone(),
        }),
        op::CERT_INVALIDATION => {
            parse(&envelope).map(|invalidation| GatewayEvent::CertInvalidated {
                invalidation,
                envelope: envelope.clone(),
            })
        }
        op::SERVER_CERT_CHANGE => parse(&envelope).map(|change| GatewayEvent::ServerCertChanged {
            change,
            envelope: envelope.clone(),
        }),
        _ => return GatewayEvent::Service { envelope },
    };
    parsed.unwrap_or_else(|error| GatewayEvent::Malformed { error, envelope })
}
