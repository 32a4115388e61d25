//! The gateway connection (DIGEST §3, docs/gateway.md): one WebSocket to the home server that
//! keeps itself alive and hands the application every event exactly once, in order.
//!
//! A background task owns the socket. It identifies, heartbeats with a minified number list
//! (asking again for any sequence number it missed), answers heartbeat requests, and after a
//! drop reconnects with backoff and resumes; when the server refuses to resume (4010) it
//! identifies afresh. Every event carries `id`, its position in the actor's event stream, the
//! same on every connection: the task passes an event on only if its `id` is above the last
//! one it passed on, so re-sends and replays never reach the application twice.
//!
//! Frames are built and read only through [`fugue_proto::gateway`], in the spec's number
//! style. Nothing here verifies what an event claims (an op 4 signature, a new session's
//! certificate): that is the application's business.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand_core::{OsRng, RngCore};
use reqwest::Url;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use fugue_proto::gateway::{
    CORE, CertInvalidation, ChannelAction, Close, Envelope, Identify, MAX_EXCEPT, NewSession,
    NumberList, Resume, ServerCertChange, ServiceChannel, ServiceChannelAck, Style,
    hello_interval_ms, op,
};

use crate::error::{Error, Result};
use crate::session::Session;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a clean close waits for the server's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// A zero interval would make the heartbeat timer spin (and `tokio::time::interval` panic).
const MIN_INTERVAL: Duration = Duration::from_millis(10);
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

    /// The event's position in the actor's event stream.
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
        let conn = open(url, &token, Intro::Identify, options.handshake_timeout)
            .await
            .map_err(OpenError::into_error)?;
        let (command_tx, command_rx) = mpsc::channel(16);
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let task = Task {
            url: url.to_owned(),
            token,
            options,
            events: event_tx,
            commands: command_rx,
            dedupe: Dedupe::default(),
            subscribed: BTreeSet::new(),
            waiting: VecDeque::new(),
        };
        tokio::spawn(task.run(conn));
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

    /// Closes the connection cleanly (1000); [`GatewayEvent::Closed`] follows the events
    /// already received.
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(Command::Close(reply)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// For tests: drops the current socket without a close frame, as a network failure would,
    /// and returns once it is gone. The gateway then reconnects and resumes as usual.
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
    DropConnection(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

/// An op 8 waiting for its op 9; `reply` is `None` for the renewals after a reconnect.
struct Waiting {
    request: ServiceChannel,
    reply: Option<oneshot::Sender<Result<ServiceChannelAck>>>,
}

/// How a connection starts.
#[derive(Debug, Clone, Copy)]
enum Intro {
    Identify,
    /// The last `s` of the previous connection up to which every frame arrived.
    Resume(u64),
}

/// Why a connection ended.
enum Ended {
    /// [`Gateway::close`], or the handle was dropped (`None`).
    ByApp(Option<oneshot::Sender<()>>),
    /// [`Gateway::drop_connection`]; the socket goes before the caller hears back.
    DropRequested(oneshot::Sender<()>, u64),
    /// Socket error, EOF, a resumable close code, a silent server or lost frames.
    Dropped {
        resume_from: u64,
        code: Option<u16>,
        reason: String,
    },
    /// 4010: the server will not resume this session.
    Unresumable { reason: String },
    /// A close code the client must not resume after, or reconnecting gave up.
    Final { code: Option<u16>, reason: String },
}

/// One open, identified (or resumed) connection.
struct Conn {
    ws: Ws,
    interval: Duration,
    seq: Sequence,
    /// Frames after Hello that arrived during the handshake, the ACK included.
    early: Vec<Envelope>,
    /// Events that wait for a lower sequence number to arrive, by `s`, with the size of `d`.
    held: BTreeMap<u64, (Envelope, usize)>,
    /// The sum of the sizes in `held`.
    held_bytes: usize,
    /// Heartbeats not yet acknowledged: when each was sent and what it asked for again.
    unacked: VecDeque<(Instant, Vec<u64>)>,
}

impl Conn {
    /// More is held back for a lower sequence number than a server may make us keep.
    fn holds_too_much(&self) -> bool {
        self.held.len().max(self.seq.above.len()) > MAX_HELD_FRAMES
            || self.held_bytes > MAX_HELD_BYTES
    }

    fn dropped(&self, code: Option<u16>, reason: impl Into<String>) -> Ended {
        Ended::Dropped {
            resume_from: self.seq.resume_point(),
            code,
            reason: reason.into(),
        }
    }

    async fn send(&mut self, frame: Envelope) -> Result<(), Ended> {
        let text = frame.render(Style::Numbers);
        match self.ws.send(Message::text(text)).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.dropped(None, format!("cannot send: {e}"))),
        }
    }

    /// Sends a close frame and waits briefly for the server's.
    async fn close(&mut self) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            if self.ws.close(Some(frame)).await.is_ok() {
                while let Some(Ok(_)) = self.ws.next().await {}
            }
        })
        .await;
    }
}

/// The background task: owns the socket and everything that outlives one connection.
struct Task {
    url: String,
    token: String,
    options: GatewayOptions,
    events: mpsc::UnboundedSender<GatewayEvent>,
    commands: mpsc::Receiver<Command>,
    dedupe: Dedupe,
    /// Services to renew after a reconnect (never `core`, which is always on).
    subscribed: BTreeSet<String>,
    waiting: VecDeque<Waiting>,
}

enum Step {
    Command(Option<Command>),
    Message(Option<Result<Message, tungstenite::Error>>),
    Tick,
}

impl Task {
    async fn run(mut self, first: Conn) {
        let mut conn = first;
        loop {
            let intro = match self.serve(conn).await {
                Ended::Dropped {
                    resume_from,
                    code,
                    reason,
                } => {
                    if !self.options.reconnect {
                        return self.finish(code, reason);
                    }
                    Intro::Resume(resume_from)
                }
                Ended::Unresumable { reason } => {
                    if !(self.options.reconnect && self.options.reidentify) {
                        return self.finish(Some(Close::Unresumeable.code()), reason);
                    }
                    Intro::Identify
                }
                other => return self.end(other),
            };
            conn = match self.reconnect(intro).await {
                Ok(conn) => conn,
                Err(ended) => return self.end(ended),
            };
        }
    }

    /// Ends the task for a final reason.
    fn end(self, ended: Ended) {
        match ended {
            Ended::ByApp(reply) => {
                self.finish(Some(1000), "closed by the client".into());
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            Ended::DropRequested(reply, _) => {
                let _ = reply.send(());
                self.finish(None, "the connection was dropped".into());
            }
            Ended::Dropped { code, reason, .. } | Ended::Final { code, reason } => {
                self.finish(code, reason)
            }
            Ended::Unresumable { reason } => self.finish(Some(Close::Unresumeable.code()), reason),
        }
    }

    fn finish(mut self, code: Option<u16>, reason: String) {
        for waiting in self.waiting.drain(..) {
            if let Some(reply) = waiting.reply {
                let _ = reply.send(Err(ended()));
            }
        }
        let _ = self.events.send(GatewayEvent::Closed { code, reason });
    }

    /// Runs one connection until it ends; the socket is gone when this returns.
    async fn serve(&mut self, mut conn: Conn) -> Ended {
        match self.drive(&mut conn).await {
            Ended::DropRequested(reply, resume_from) => {
                drop(conn);
                let _ = reply.send(());
                Ended::Dropped {
                    resume_from,
                    code: None,
                    reason: "dropped on request".into(),
                }
            }
            other => other,
        }
    }

    async fn drive(&mut self, conn: &mut Conn) -> Ended {
        // Phase is kept across op 11 answers (DIGEST §3.3): the timer is never reset.
        let mut timer = tokio::time::interval_at(Instant::now() + conn.interval, conn.interval);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        if let Err(ended) = self.start(conn).await {
            return ended;
        }
        loop {
            let step = tokio::select! {
                command = self.commands.recv() => Step::Command(command),
                message = conn.ws.next() => Step::Message(message),
                _ = timer.tick() => Step::Tick,
            };
            let result = match step {
                Step::Command(command) => self.command(conn, command).await,
                Step::Message(message) => self.message(conn, message).await,
                Step::Tick => self.tick(conn).await,
            };
            if let Err(ended) = result {
                return ended;
            }
        }
    }

    /// Takes the handshake's frames, then renews subscriptions and re-sends unanswered op 8s.
    async fn start(&mut self, conn: &mut Conn) -> Result<(), Ended> {
        for frame in std::mem::take(&mut conn.early) {
            self.frame(conn, frame).await?;
        }
        let mut waiting: VecDeque<Waiting> = self
            .subscribed
            .iter()
            .map(|service| Waiting {
                request: ServiceChannel {
                    action: ChannelAction::Subscribe,
                    service: service.clone(),
                },
                reply: None,
            })
            .collect();
        waiting.append(&mut self.waiting);
        self.waiting = waiting;
        let frames: Vec<Envelope> = self
            .waiting
            .iter()
            .map(|w| channel_frame(&w.request))
            .collect();
        for frame in frames {
            conn.send(frame).await?;
        }
        Ok(())
    }

    async fn command(&mut self, conn: &mut Conn, command: Option<Command>) -> Result<(), Ended> {
        match command {
            None => {
                conn.close().await;
                Err(Ended::ByApp(None))
            }
            Some(Command::Close(reply)) => {
                conn.close().await;
                Err(Ended::ByApp(Some(reply)))
            }
            Some(Command::DropConnection(reply)) => {
                Err(Ended::DropRequested(reply, conn.seq.resume_point()))
            }
            Some(Command::Channel { request, reply }) => {
                let frame = channel_frame(&request);
                self.waiting.push_back(Waiting {
                    request,
                    reply: Some(reply),
                });
                conn.send(frame).await
            }
        }
    }

    async fn message(
        &mut self,
        conn: &mut Conn,
        message: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<(), Ended> {
        match message {
            None => Err(conn.dropped(None, "the server closed the connection")),
            Some(Err(e)) => Err(conn.dropped(None, e.to_string())),
            Some(Ok(Message::Text(text))) => match Envelope::parse(&text) {
                Ok((frame, _)) => self.frame(conn, frame).await,
                // Without a readable `s` there is nothing to record or ask for again.
                Err(_) => Ok(()),
            },
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = match frame {
                    Some(f) => (Some(u16::from(f.code)), f.reason.as_str().to_owned()),
                    None => (None, String::new()),
                };
                Err(match code.and_then(Close::from_code) {
                    Some(Close::Unresumeable) => Ended::Unresumable { reason },
                    Some(c) if !c.resumable() => Ended::Final { code, reason },
                    _ => conn.dropped(code, reason),
                })
            }
            Some(Ok(_)) => Ok(()),
        }
    }

    async fn tick(&mut self, conn: &mut Conn) -> Result<(), Ended> {
        // The previous heartbeat had a whole interval for its ACK: the link is dead.
        if let Some((sent, _)) = conn.unacked.front()
            && sent.elapsed() >= conn.interval / 2
        {
            return Err(conn.dropped(None, "no heartbeat ACK within an interval"));
        }
        self.heartbeat(conn).await
    }

    async fn heartbeat(&mut self, conn: &mut Conn) -> Result<(), Ended> {
        if conn.seq.missing_count() > MAX_EXCEPT as u64 {
            return Err(conn.dropped(None, "too many frames missing to ask for them again"));
        }
        let list = conn.seq.heartbeat();
        conn.unacked
            .push_back((Instant::now(), list.except.clone()));
        conn.send(Envelope::new(CORE, op::HEARTBEAT, list.to_value()))
            .await
    }

    /// One frame from the socket.
    async fn frame(&mut self, conn: &mut Conn, frame: Envelope) -> Result<(), Ended> {
        let container = frame.n == CORE
            && matches!(
                frame.op,
                op::HEARTBEAT_ACK | op::RESUMED | op::HEARTBEAT_REQUEST
            );
        if !container {
            self.take(conn, frame);
            self.flush(conn);
            return held_in_bounds(conn);
        }
        if let Some(s) = frame.s
            && !conn.seq.record(s)
        {
            return Ok(());
        }
        match frame.op {
            op::HEARTBEAT_REQUEST => self.heartbeat(conn).await?,
            op::HEARTBEAT_ACK => {
                let asked = conn.unacked.pop_front().map(|(_, a)| a).unwrap_or_default();
                self.take_all(conn, frame.d);
                self.flush(conn);
                if asked.iter().any(|&s| !conn.seq.has(s)) {
                    // The server re-sends all it still keeps; what it did not send, a resume
                    // fetches from the event log.
                    return Err(conn.dropped(None, "the server did not re-send missing frames"));
                }
            }
            _ => self.take_all(conn, frame.d),
        }
        self.flush(conn);
        held_in_bounds(conn)
    }

    /// The frames inside an op 7 or op 10.
    fn take_all(&mut self, conn: &mut Conn, d: Value) {
        let Value::Array(frames) = d else { return };
        for value in frames {
            if conn.holds_too_much() {
                return;
            }
            if let Ok((frame, _)) = Envelope::from_value(value) {
                self.take(conn, frame);
            }
        }
    }

    /// Records a frame and acts on it, without writing to the socket: control frames at once,
    /// events once every lower sequence number has arrived.
    fn take(&mut self, conn: &mut Conn, frame: Envelope) {
        if let Some(s) = frame.s
            && !conn.seq.record(s)
        {
            return;
        }
        if frame.n == CORE {
            match frame.op {
                op::SERVICE_CHANNEL_ACK => return self.channel_ack(frame.d),
                op::SERVICE_CHANNEL => return self.channel_closed(frame.d),
                // Stale inside a container, or never sent by a server.
                op::HEARTBEAT
                | op::HELLO
                | op::IDENTIFY
                | op::RESUME
                | op::HEARTBEAT_ACK
                | op::RESUMED
                | op::HEARTBEAT_REQUEST
                | op::IDENTIFY_ACK => return,
                _ => {}
            }
        }
        match frame.s {
            Some(s) => {
                let size = frame.d.to_string().len();
                conn.held_bytes += size;
                conn.held.insert(s, (frame, size));
            }
            None => self.deliver(frame),
        }
    }

    /// Passes on every held event with no gap below it.
    fn flush(&mut self, conn: &mut Conn) {
        let Some(contiguous) = conn.seq.contiguous() else {
            return;
        };
        while let Some(entry) = conn.held.first_entry() {
            if *entry.key() > contiguous {
                break;
            }
            let (frame, size) = entry.remove();
            conn.held_bytes -= size;
            self.deliver(frame);
        }
    }

    fn deliver(&mut self, frame: Envelope) {
        if self.dedupe.admit(frame.id) {
            // A closed receiver means the handle is gone; the command channel says so next.
            let _ = self.events.send(classify(frame));
        }
    }

    fn channel_ack(&mut self, d: Value) {
        let Ok(ack) = serde_json::from_value::<ServiceChannelAck>(d) else {
            return;
        };
        let position = self
            .waiting
            .iter()
            .position(|w| w.request.action == ack.action && w.request.service == ack.service);
        let Some(waiting) = position.and_then(|i| self.waiting.remove(i)) else {
            return;
        };
        if ack.success && ack.service != CORE {
            match ack.action {
                ChannelAction::Subscribe => self.subscribed.insert(ack.service.clone()),
                ChannelAction::Unsubscribe => self.subscribed.remove(&ack.service),
            };
        }
        match waiting.reply {
            Some(reply) => {
                let _ = reply.send(Ok(ack));
            }
            None if !ack.success => {
                self.subscribed.remove(&ack.service);
                let _ = self.events.send(GatewayEvent::ChannelClosed {
                    service: ack.service,
                    error: ack.error,
                });
            }
            None => {}
        }
    }

    /// Op 8 from the server: it closed a channel.
    fn channel_closed(&mut self, d: Value) {
        let Ok(notice) = serde_json::from_value::<ServiceChannel>(d) else {
            return;
        };
        if notice.action == ChannelAction::Unsubscribe && self.subscribed.remove(&notice.service) {
            let _ = self.events.send(GatewayEvent::ChannelClosed {
                service: notice.service,
                error: None,
            });
        }
    }

    async fn reconnect(&mut self, mut intro: Intro) -> Result<Conn, Ended> {
        let token = self.token.clone();
        let timeout = self.options.handshake_timeout;
        let mut last_error = String::new();
        let mut attempt: u32 = 0;
        loop {
            if self.options.max_attempts.is_some_and(|max| attempt >= max) {
                return Err(Ended::Final {
                    code: None,
                    reason: format!("gave up reconnecting after {attempt} attempts: {last_error}"),
                });
            }
            let delay = backoff(&self.options, attempt, OsRng.next_u32());
            attempt = attempt.saturating_add(1);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                ended = self.idle() => return Err(ended),
            }
            let alternates = &self.options.alternates;
            let pick = OsRng.next_u32() as usize % (alternates.len() + 1);
            let url = alternates.get(pick).unwrap_or(&self.url).clone();
            let opened = tokio::select! {
                opened = open(&url, &token, intro, timeout) => opened,
                ended = self.idle() => return Err(ended),
            };
            match opened {
                Ok(conn) => {
                    let resumed = matches!(intro, Intro::Resume(_));
                    let _ = self.events.send(GatewayEvent::Reconnected { resumed });
                    return Ok(conn);
                }
                Err(OpenError::Closed { code, reason }) => match Close::from_code(code) {
                    Some(Close::Unresumeable) if self.options.reidentify => {
                        intro = Intro::Identify;
                        last_error = reason;
                    }
                    Some(c) if !c.resumable() => {
                        return Err(Ended::Final {
                            code: Some(code),
                            reason,
                        });
                    }
                    _ => last_error = format!("closed with {code}: {reason}"),
                },
                Err(OpenError::Http { status, .. }) if !retry_status(status) => {
                    return Err(Ended::Final {
                        code: None,
                        reason: format!("the server refused the gateway with HTTP {status}"),
                    });
                }
                Err(other) => last_error = other.into_error().to_string(),
            }
        }
    }

    /// Serves commands while there is no connection; returns when the application closes.
    async fn idle(&mut self) -> Ended {
        loop {
            match self.commands.recv().await {
                None => return Ended::ByApp(None),
                Some(Command::Close(reply)) => return Ended::ByApp(Some(reply)),
                Some(Command::DropConnection(reply)) => {
                    let _ = reply.send(());
                }
                Some(Command::Channel { request, reply }) => self.waiting.push_back(Waiting {
                    request,
                    reply: Some(reply),
                }),
            }
        }
    }
}

fn held_in_bounds(conn: &Conn) -> Result<(), Ended> {
    if conn.holds_too_much() {
        return Err(conn.dropped(None, "the server sent too many frames out of order"));
    }
    Ok(())
}

fn channel_frame(request: &ServiceChannel) -> Envelope {
    // Serialising an enum and a string cannot fail.
    let d = serde_json::to_value(request).unwrap_or_default();
    Envelope::new(CORE, op::SERVICE_CHANNEL, d)
}

/// 408 and 429 are worth another try, as is anything from a failing server; the rest of 4xx
/// will not change by retrying.
fn retry_status(status: u16) -> bool {
    !(400..500).contains(&status) || status == 408 || status == 429
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

/// Delay before reconnection attempt `attempt` (0-based), from `random` for jitter.
fn backoff(options: &GatewayOptions, attempt: u32, random: u32) -> Duration {
    let min = options.backoff_min.as_millis() as u64;
    let max = (options.backoff_max.as_millis() as u64).max(min);
    let ceiling = min.saturating_mul(1u64 << attempt.min(32)).min(max).max(1);
    // Between half the ceiling and the ceiling; the first attempt anywhere below it.
    let floor = if attempt == 0 { 0 } else { ceiling / 2 };
    Duration::from_millis(floor + u64::from(random) % (ceiling - floor + 1))
}

/// Why a connection attempt failed.
#[derive(Debug)]
enum OpenError {
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
    fn into_error(self) -> Error {
        match self {
            OpenError::Closed { code, reason } => Error::GatewayClosed {
                code: Some(code),
                reason,
            },
            OpenError::Http { status, body } => Error::Api {
                status,
                problem: body.and_then(|b| serde_json::from_slice(&b).ok()),
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
async fn open(url: &str, token: &str, intro: Intro, timeout: Duration) -> Result<Conn, OpenError> {
    tokio::time::timeout(timeout, handshake(url, token, intro))
        .await
        .unwrap_or_else(|_| {
            Err(OpenError::Transport(format!(
                "gateway handshake timed out after {timeout:?}"
            )))
        })
}

async fn handshake(url: &str, token: &str, intro: Intro) -> Result<Conn, OpenError> {
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
    Ok(Conn {
        ws,
        interval,
        seq,
        early,
        held: BTreeMap::new(),
        held_bytes: 0,
        unacked: VecDeque::new(),
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

/// The sequence numbers one connection received, and what its next heartbeat says.
#[derive(Debug, Default)]
struct Sequence {
    /// Every number up to and including this one arrived.
    contiguous: Option<u64>,
    /// Numbers that arrived above a gap.
    above: BTreeSet<u64>,
    /// Lowest and highest number received since the last heartbeat.
    window: Option<(u64, u64)>,
}

impl Sequence {
    /// Records `s`; false if it had arrived before.
    fn record(&mut self, s: u64) -> bool {
        let next = match self.contiguous {
            None => 0,
            Some(c) if s <= c => return false,
            Some(c) => c + 1,
        };
        if s == next {
            let mut top = s;
            while top < u64::MAX && self.above.remove(&(top + 1)) {
                top += 1;
            }
            self.contiguous = Some(top);
        } else if !self.above.insert(s) {
            return false;
        }
        self.window = Some(match self.window {
            None => (s, s),
            Some((lo, hi)) => (lo.min(s), hi.max(s)),
        });
        true
    }

    fn has(&self, s: u64) -> bool {
        self.contiguous.is_some_and(|c| s <= c) || self.above.contains(&s)
    }

    fn contiguous(&self) -> Option<u64> {
        self.contiguous
    }

    /// Where a resume continues: every frame up to here arrived. Hello (0) always did.
    fn resume_point(&self) -> u64 {
        self.contiguous.unwrap_or(0)
    }

    fn highest(&self) -> Option<u64> {
        self.above.last().copied().or(self.contiguous)
    }

    fn next_expected(&self) -> u64 {
        self.contiguous.map_or(0, |c| c.saturating_add(1))
    }

    /// How many numbers below the highest one received did not arrive.
    fn missing_count(&self) -> u64 {
        match self.above.last() {
            Some(&top) => top - self.next_expected() + 1 - self.above.len() as u64,
            None => 0,
        }
    }

    /// The missing numbers, ascending, at most [`MAX_EXCEPT`].
    fn missing(&self) -> Vec<u64> {
        let Some(&top) = self.above.last() else {
            return Vec::new();
        };
        (self.next_expected()..top)
            .filter(|s| !self.above.contains(s))
            .take(MAX_EXCEPT)
            .collect()
    }

    /// The next heartbeat's number list: the range received since the last heartbeat,
    /// widened to cover every number still missing, which go into `except`.
    fn heartbeat(&mut self) -> NumberList {
        let highest = self.highest().unwrap_or(0);
        let (mut from, mut to) = self.window.take().unwrap_or((highest, highest));
        let except = self.missing();
        if !except.is_empty() {
            // The number just below the first gap arrived (or the gap starts at 0).
            from = from.min(self.resume_point());
            to = highest;
        }
        NumberList { from, to, except }
    }
}

/// Passes each event on once: only an `id` above the last one passed on goes through.
/// Frames without `id` are not stream events and always go through.
#[derive(Debug, Default)]
struct Dedupe {
    last: Option<u64>,
}

impl Dedupe {
    fn admit(&mut self, id: Option<u64>) -> bool {
        match id {
            None => true,
            Some(id) if self.last.is_some_and(|last| id <= last) => false,
            Some(id) => {
                self.last = Some(id);
                true
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::net::TcpListener;

    fn list(from: u64, to: u64, except: &[u64]) -> NumberList {
        NumberList {
            from,
            to,
            except: except.to_vec(),
        }
    }

    #[test]
    fn in_order_numbers_make_a_plain_range_per_heartbeat() {
        let mut seq = Sequence::default();
        for s in 0..=4 {
            assert!(seq.record(s));
        }
        assert!(!seq.record(3), "a duplicate is reported");
        assert_eq!(seq.heartbeat(), list(0, 4, &[]));
        assert!(seq.record(5));
        assert!(seq.record(6));
        assert_eq!(seq.heartbeat(), list(5, 6, &[]));
        // Nothing new: the last number again, never an empty range.
        assert_eq!(seq.heartbeat(), list(6, 6, &[]));
        assert_eq!(seq.resume_point(), 6);
        assert_eq!(seq.missing_count(), 0);
    }

    #[test]
    fn gaps_are_asked_for_until_they_arrive() {
        let mut seq = Sequence::default();
        for s in [0, 1, 2, 5, 7] {
            assert!(seq.record(s));
        }
        assert_eq!(seq.missing_count(), 3);
        assert_eq!(seq.heartbeat(), list(0, 7, &[3, 4, 6]));
        assert_eq!(seq.resume_point(), 2);
        // Only 8 arrives: the range still reaches back to the gaps.
        assert!(seq.record(8));
        assert_eq!(seq.heartbeat(), list(2, 8, &[3, 4, 6]));
        // A re-send fills 3 and 4; 6 is still missing.
        assert!(seq.record(4));
        assert!(seq.record(3));
        assert!(!seq.record(5));
        assert_eq!(seq.contiguous(), Some(5));
        assert_eq!(seq.heartbeat(), list(3, 8, &[6]));
        assert!(seq.record(6));
        assert_eq!(seq.contiguous(), Some(8));
        assert!(seq.has(7) && !seq.has(9));
        assert_eq!(seq.heartbeat(), list(6, 6, &[]));
    }

    #[test]
    fn a_huge_jump_is_counted_without_listing_it() {
        let mut seq = Sequence::default();
        seq.record(0);
        seq.record(1_000_000);
        assert_eq!(seq.missing_count(), 999_999);
        assert_eq!(seq.missing().len(), MAX_EXCEPT);
    }

    #[test]
    fn heartbeat_lists_are_rendered_as_strings() {
        let mut seq = Sequence::default();
        for s in [0, 2] {
            seq.record(s);
        }
        let frame = Envelope::new(CORE, op::HEARTBEAT, seq.heartbeat().to_value());
        assert_eq!(
            frame.render(Style::Numbers),
            r#"{"d":{"except":["1"],"from":"0","to":"2"},"n":"core","op":0}"#
        );
    }

    #[test]
    fn dedupe_passes_each_id_once_and_control_frames_always() {
        let mut dedupe = Dedupe::default();
        let passed: Vec<Option<u64>> = [Some(3), Some(3), None, Some(2), Some(7), None, Some(7)]
            .into_iter()
            .filter(|&id| dedupe.admit(id))
            .collect();
        assert_eq!(passed, [Some(3), None, Some(7), None]);
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
}
