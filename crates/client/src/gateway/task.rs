//! The background task of a gateway: it owns the socket, heartbeats, takes frames in order of
//! their sequence numbers, passes each event on once, answers the handle's commands, and after
//! a drop reconnects with backoff and resumes (or identifies afresh after 4010).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand_core::{OsRng, RngCore};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use fugue_proto::gateway::{
    CORE, ChannelAction, Close, Envelope, MAX_EXCEPT, ServiceChannel, ServiceChannelAck, Style, op,
};

use super::open::{Intro, OpenError, Opened, Ws, open};
use super::sequence::{Dedupe, Sequence};
use super::{
    Command, GatewayEvent, GatewayOptions, MAX_HELD_BYTES, MAX_HELD_FRAMES, classify, ended,
};
use crate::error::{Error, Result};

/// How long a clean close waits for the server's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// An op 8 waiting for its op 9; `reply` is `None` for the renewals after a reconnect.
struct Waiting {
    request: ServiceChannel,
    reply: Option<oneshot::Sender<Result<ServiceChannelAck>>>,
}

/// Why a connection ended.
enum Ended {
    /// [`Gateway::close`](super::Gateway::close), or the handle was dropped (`None`).
    ByApp(Option<oneshot::Sender<()>>),
    /// [`Gateway::drop_connection`](super::Gateway::drop_connection); the socket goes before
    /// the caller hears back.
    #[cfg(any(test, feature = "test-util"))]
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
    fn new(opened: Opened) -> Conn {
        Conn {
            ws: opened.ws,
            interval: opened.interval,
            seq: opened.seq,
            early: opened.early,
            held: BTreeMap::new(),
            held_bytes: 0,
            unacked: VecDeque::new(),
        }
    }

    /// More is held back for a lower sequence number than a server may make us keep.
    fn holds_too_much(&self) -> bool {
        self.held.len().max(self.seq.above_gap()) > MAX_HELD_FRAMES
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
pub(super) struct Task {
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
    pub(super) fn new(
        url: String,
        token: String,
        options: GatewayOptions,
        events: mpsc::UnboundedSender<GatewayEvent>,
        commands: mpsc::Receiver<Command>,
    ) -> Task {
        Task {
            url,
            token,
            options,
            events,
            commands,
            dedupe: Dedupe::default(),
            subscribed: BTreeSet::new(),
            waiting: VecDeque::new(),
        }
    }

    /// Serves `first`, then every connection after it, until the gateway ends.
    pub(super) async fn run(mut self, first: Opened) {
        let mut conn = Conn::new(first);
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
            #[cfg(any(test, feature = "test-util"))]
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
            #[cfg(any(test, feature = "test-util"))]
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
            #[cfg(any(test, feature = "test-util"))]
            Some(Command::DropConnection(reply)) => {
                Err(Ended::DropRequested(reply, conn.seq.resume_point()))
            }
            Some(Command::Send { frame, reply }) => {
                let sent = conn.send(frame).await;
                let answer = match &sent {
                    Ok(()) => Ok(()),
                    Err(_) => Err(Error::Gateway(
                        "the connection dropped while sending".into(),
                    )),
                };
                let _ = reply.send(answer);
                sent
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
        if self.dedupe.admit(&frame) {
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
                Ok(opened) => {
                    let resumed = matches!(intro, Intro::Resume(_));
                    let _ = self.events.send(GatewayEvent::Reconnected { resumed });
                    return Ok(Conn::new(opened));
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
                #[cfg(any(test, feature = "test-util"))]
                Some(Command::DropConnection(reply)) => {
                    let _ = reply.send(());
                }
                Some(Command::Channel { request, reply }) => self.waiting.push_back(Waiting {
                    request,
                    reply: Some(reply),
                }),
                Some(Command::Send { reply, .. }) => {
                    let _ = reply.send(Err(Error::Gateway(
                        "not connected (reconnecting); nothing sent".into(),
                    )));
                }
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

/// Delay before reconnection attempt `attempt` (0-based), from `random` for jitter.
pub(super) fn backoff(options: &GatewayOptions, attempt: u32, random: u32) -> Duration {
    let min = options.backoff_min.as_millis() as u64;
    let max = (options.backoff_max.as_millis() as u64).max(min);
    let ceiling = min.saturating_mul(1u64 << attempt.min(32)).min(max).max(1);
    // Between half the ceiling and the ceiling; the first attempt anywhere below it.
    let floor = if attempt == 0 { 0 } else { ceiling / 2 };
    Duration::from_millis(floor + u64::from(random) % (ceiling - floor + 1))
}
