//! One gateway connection: a single task that reads the client, writes numbered frames and
//! keeps the heartbeat clock. Its state is plain data owned by the task — no locks.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::time::{Instant, sleep_until, timeout};

use fugue_proto::gateway::{
    self as gw, CORE, ChannelAction, ClientOp, ClientOpError, Close, Envelope, NumberList,
    ServiceChannel, ServiceChannelAck, Style, op,
};

use super::{
    ConnHandle, Ctl, Follow, Gateway, OpRefused, Positions, Registration, Resumable, View,
};
use crate::ids::{SessionPk, StreamId, to_store};
use window::{Sent, SentLog};

mod handshake;
mod window;
use crate::events::Event;
use crate::sessions::Authed;

/// Why the connection loop ended.
enum End {
    /// We close with this code; `retain` = keep the state for a resume.
    Close(Close, String),
    /// The client went away (close frame, EOF, socket error).
    Gone,
    /// A newer connection took the state over.
    TakenOver,
}

fn close(code: Close, reason: impl Into<String>) -> End {
    End::Close(code, reason.into())
}

/// Longest close reason: a close frame's payload is at most 125 bytes, two of them the code
/// (RFC 6455 §5.5); a longer one makes the peer fail the connection instead of reading the code.
const MAX_REASON: usize = 123;
/// How long we keep reading (and discarding) after our close frame, waiting for the client's
/// (RFC 6455 §7.1.1): closing the socket under a client that is still sending makes its
/// kernel answer with a reset, and the client never reads the close code.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// `reason` cut to [`MAX_REASON`] bytes on a character boundary.
fn fit_reason(mut reason: String) -> String {
    reason.truncate(reason.floor_char_boundary(MAX_REASON));
    reason
}

/// A core payload that is not one: 4001 for an opcode clients may not send, else 4002.
fn client_op_error(e: ClientOpError) -> End {
    match e {
        ClientOpError::NotForClients(_) => close(Close::UnknownOpcode, e.to_string()),
        ClientOpError::Malformed(why) => close(Close::InvalidPayload, why),
    }
}

/// A refusal from a service: client mistakes close with 4002 and the problem's detail;
/// server failures are logged and shown as "internal error" (4000), never their text.
fn refused(e: impl Into<crate::http::ApiError>) -> End {
    let problem = e.into().problem;
    if problem.status >= 500 {
        close(Close::UnknownError, "internal error")
    } else {
        close(
            Close::InvalidPayload,
            problem.detail.unwrap_or(problem.title),
        )
    }
}

/// A frame the socket could not read: the connection failed (I/O), or the frame is not one
/// we accept (too large, not UTF-8, broken framing), which closes with 4002.
fn unreadable(e: &(dyn std::error::Error + 'static)) -> End {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<std::io::Error>() {
            return End::Gone;
        }
        cause = c.source();
    }
    close(Close::InvalidPayload, format!("unreadable frame: {e}"))
}

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

struct Conn {
    gw: Gateway,
    sink: Sink,
    stream: Stream,
    style: Style,
    /// The frames sent, numbered and kept for re-sends and resumes.
    log: SentLog,
    /// The streams followed, each with the next position expected and what may be seen.
    follows: HashMap<StreamId, Followed>,
    /// The positions last recorded as acknowledged.
    acked: Positions,
    services: BTreeSet<String>,
    root_serial: i64,
    /// `(s, root serial before it)` of every op 6 this connection sent.
    root_changes: Vec<(u64, i64)>,
    rate: VecDeque<Instant>,
    last_heartbeat: Instant,
    heartbeat_requested: Option<Instant>,
    /// When the session is checked next: when its certificate (or certless grace) runs out,
    /// at most one heartbeat interval away.
    session_ends: Option<Instant>,
    /// Events that arrived ahead of a missing one, by stream and position.
    pending: BTreeMap<(StreamId, u64), Arc<Event>>,
    /// Serial of the certificate the session had when this connection authenticated.
    own_serial: Option<u64>,
    /// Since when a gap is open.
    gap_since: Option<Instant>,
    /// This connection's place in the hub, once identified.
    handle: Option<Arc<ConnHandle>>,
}

/// A stream the connection follows.
struct Followed {
    /// The next position expected.
    next: u64,
    view: Arc<dyn View>,
    /// The service channel that named it (`None`: the actor's own stream).
    by: Option<String>,
}

/// What a timer of the connection is for.
#[derive(Clone, Copy)]
enum Due {
    Heartbeat,
    HeartbeatOverdue,
    SessionEnd,
    Gap,
}

/// How long an out-of-order announcement may wait for the one it overtook before the
/// connection reads the log instead.
const GAP_WAIT: Duration = Duration::from_millis(100);
/// Most events held back behind a gap.
const PENDING_MAX: usize = 256;

/// A connection beyond the node's cap: closed at once with 4000, which clients treat as
/// "reconnect (elsewhere) later".
pub(super) async fn refuse(socket: WebSocket) {
    let (sink, stream) = socket.split();
    let mut c = Closing { sink, stream };
    c.finish(close(
        Close::UnknownError,
        "server at capacity; retry later",
    ))
    .await;
}

/// The two halves of a socket on its way out.
struct Closing {
    sink: Sink,
    stream: Stream,
}

impl Closing {
    /// Sends the close frame (for `End::Close`), then completes the closing handshake.
    async fn finish(&mut self, end: End) {
        if let End::Close(code, reason) = end {
            tracing::debug!(code = code.code(), %reason, "closing gateway connection");
            let sent = self
                .sink
                .send(Message::Close(Some(CloseFrame {
                    code: code.code(),
                    reason: fit_reason(reason).into(),
                })))
                .await;
            if sent.is_ok() {
                let stream = &mut self.stream;
                let _ = timeout(CLOSE_WAIT, async {
                    while let Some(Ok(m)) = stream.next().await {
                        if matches!(m, Message::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
            }
        }
        let _ = self.sink.close().await;
    }
}

pub(super) async fn serve(gw: Gateway, socket: WebSocket) {
    let (sink, stream) = socket.split();
    let mut c = Conn {
        gw,
        sink,
        stream,
        style: Style::Numbers,
        log: SentLog::default(),
        follows: HashMap::new(),
        acked: Positions::new(),
        services: BTreeSet::from([CORE.to_owned()]),
        root_serial: 0,
        root_changes: Vec::new(),
        rate: VecDeque::new(),
        last_heartbeat: Instant::now(),
        heartbeat_requested: None,
        session_ends: None,
        pending: BTreeMap::new(),
        own_serial: None,
        gap_since: None,
        handle: None,
    };
    let interval = c.interval();
    if c.send_control(
        op::HELLO,
        gw::hello(c.gw.0.config.gateway.heartbeat_interval_ms),
        true,
    )
    .await
    .is_err()
    {
        return;
    }
    // Boxed: the handshake (authentication, resume hand-over between nodes) needs large
    // futures once; inline they would stay in every connection's task for its whole life.
    let (authed, mut reg) = match Box::pin(c.handshake(interval)).await {
        Ok(x) => x,
        Err(end) => {
            c.into_closing().finish(end).await;
            return;
        }
    };
    for service in &c.services {
        c.gw.note_subscription(&authed.actor, service, true);
    }
    let end = c.run(&authed, &mut reg).await;
    for service in &c.services {
        c.gw.note_subscription(&authed.actor, service, false);
    }
    let state = c.state(authed.session.pk);
    let retain = match &end {
        End::Gone => true,
        End::Close(code, _) => code.resumable(),
        End::TakenOver => false,
    };
    // Retained before leaving the hub: a resume racing with this close finds one or the other.
    if retain {
        c.gw.retain(state);
    }
    drop(reg);
    c.into_closing().finish(end).await;
}

impl Conn {
    fn interval(&self) -> Duration {
        Duration::from_millis(self.gw.0.config.gateway.heartbeat_interval_ms.max(1))
    }

    /// The socket halves, the rest dropped: not an `async fn` taking `self`, whose future
    /// would keep a second copy of the whole connection in every connection's future.
    fn into_closing(self) -> Closing {
        let Conn { sink, stream, .. } = self;
        Closing { sink, stream }
    }

    fn state(&self, session_pk: SessionPk) -> Resumable {
        Resumable {
            session_pk,
            base: self.log.base.iter().map(|(k, v)| (*k, *v)).collect(),
            sent: self.log.events().collect(),
            evicted_s: self.log.evicted_s,
            evicted: self.log.evicted.iter().map(|(k, v)| (*k, *v)).collect(),
            last_s: self.log.last_s(),
            services: self.services.iter().cloned().collect(),
            root_serial: self.root_serial,
            root_changes: self.root_changes.clone(),
        }
    }

    // ---- writing ----

    async fn write(&mut self, text: String, flush: bool) -> Result<(), End> {
        let msg = Message::Text(text.into());
        let res = if flush {
            self.sink.send(msg).await
        } else {
            self.sink.feed(msg).await
        };
        res.map_err(|_| End::Gone)
    }

    /// Frames that answer a request (op 10 after a resume, op 7 after a heartbeat): inside
    /// the answer's array for number-style clients; as ordinary frames followed by an empty
    /// answer for string-style ones, which cannot parse events inside it (SDK-COMPAT §7.3
    /// item 5).
    async fn write_batch(&mut self, answer: u16, frames: Vec<String>) -> Result<(), End> {
        match self.style {
            Style::Strings => {
                for text in frames {
                    self.write(text, false).await?;
                }
                self.send_control(answer, Value::Array(Vec::new()), false)
                    .await?;
            }
            Style::Numbers => {
                let s = self.log.take_s();
                let text = gw::render_raw(
                    CORE,
                    answer,
                    &format!("[{}]", frames.join(",")),
                    Some(s),
                    None,
                    self.style,
                );
                self.write(text, false).await?;
            }
        }
        Ok(())
    }

    /// A control frame with the next `s`; kept for re-sends unless it is an ACK or Resumed.
    async fn send_control(&mut self, op: u16, d: Value, flush: bool) -> Result<u64, End> {
        let s = self.log.next_s;
        let text = self.control_frame(op, d);
        self.write(text, flush).await?;
        Ok(s)
    }

    /// Numbers a control frame and keeps it for re-sends (unless it is an ACK or Resumed).
    fn control_frame(&mut self, op: u16, d: Value) -> String {
        let s = self.log.take_s();
        let mut env = Envelope::new(CORE, op, d);
        env.s = Some(s);
        let text = env.render(self.style);
        if op != op::HEARTBEAT_ACK && op != op::RESUMED {
            let Envelope { d, .. } = env;
            self.log.keep(s, Sent::Control(op, Box::new(d)));
        }
        text
    }

    /// Numbers an event frame and keeps it. Also tells whether it revokes the certificate
    /// this connection authenticated with.
    fn event_frame(&mut self, e: Arc<Event>) -> (String, bool) {
        let s = self.log.take_s();
        let text = e.frame(s, self.style);
        let revokes_own = e.n == CORE
            && e.op == op::CERT_INVALIDATION
            && self.own_serial.is_some()
            && e.d.get("serial").and_then(gw::uint) == self.own_serial;
        self.log.keep(s, Sent::Event(e));
        (text, revokes_own)
    }

    /// An event as the next frame (no flush: the loop flushes when the queue is empty).
    /// The revocation of the certificate this connection authenticated with ends it: the op 4
    /// is in the log, so this holds even if the bus lost the session's end.
    async fn send_event(&mut self, e: Arc<Event>) -> Result<(), End> {
        let (text, revokes_own) = self.event_frame(e);
        self.write(text, false).await?;
        if revokes_own {
            return Err(self.own_cert_revoked().await);
        }
        Ok(())
    }

    async fn own_cert_revoked(&mut self) -> End {
        let _ = self.flush().await;
        close(
            Close::NotAuthenticated,
            "this session's certificate was revoked",
        )
    }

    /// Whether the session may see `e` now: its channel is subscribed, the event is for it,
    /// and a channel-scoped event's channel is in the stream's view.
    fn wants(&self, e: &Event, authed: &Authed) -> bool {
        self.services.contains(&e.n)
            && e.for_session(authed.actor.id, authed.session.pk)
            && match e.channel() {
                None => true,
                Some(c) => self.follows.get(&e.stream).is_some_and(|f| f.view.sees(c)),
            }
    }

    /// Delivers an event from the queue exactly once and in the order of its stream: older
    /// positions were delivered already; a gap means announcements were missed, so the log
    /// fills it. Ephemeral events go out as they come, to followers that may see them.
    async fn deliver(&mut self, e: Arc<Event>, authed: &Authed) -> Result<(), End> {
        let Some(next) = self.follows.get(&e.stream).map(|f| f.next) else {
            return Ok(()); // no longer followed (the hub is updated right after)
        };
        if e.is_ephemeral() {
            if self.wants(&e, authed) {
                let s = self.log.take_s();
                let text = e.frame(s, self.style);
                self.write(text, false).await?;
            }
            return Ok(());
        }
        if e.seq < next {
            return Ok(());
        }
        if e.seq > next {
            // Announcements of concurrent publishers can overtake each other; the missing one
            // is usually right behind. Wait a moment before reading the log.
            self.pending.insert((e.stream, e.seq), e);
            if self.pending.len() > PENDING_MAX {
                return Box::pin(self.fill_gap(authed)).await;
            }
            self.gap_since.get_or_insert_with(Instant::now);
            return Ok(());
        }
        self.emit(e, authed).await?;
        self.drain_pending(authed).await
    }

    /// The next event of its stream: sent if the session may see it; an access-changing one
    /// makes the connection ask again what it may see, before the stream's next event, and
    /// is sent if the session may see it before or after the change.
    async fn emit(&mut self, e: Arc<Event>, authed: &Authed) -> Result<(), End> {
        let Some(f) = self.follows.get_mut(&e.stream) else {
            return Ok(());
        };
        f.next = e.seq + 1;
        let (stream, access) = (e.stream, e.access);
        if self.wants(&e, authed) {
            self.send_event(e).await?;
            if access {
                Box::pin(self.on_access(stream, authed)).await?;
            }
        } else if access {
            // Not seen before the change, but perhaps after it: a channel created where
            // only some may see it reaches those who see it now.
            Box::pin(self.on_access(stream, authed)).await?;
            if self.wants(&e, authed) {
                self.send_event(e).await?;
            }
        }
        Ok(())
    }

    /// Sends held-back events that are next in line; drops those already delivered or of
    /// streams no longer followed.
    async fn drain_pending(&mut self, authed: &Authed) -> Result<(), End> {
        loop {
            let ready = self
                .pending
                .keys()
                .copied()
                .find(|(stream, seq)| self.follows.get(stream).is_none_or(|f| *seq <= f.next));
            let Some(key) = ready else { break };
            let Some(e) = self.pending.remove(&key) else {
                break;
            };
            if self.follows.get(&key.0).is_some_and(|f| f.next == key.1) {
                self.emit(e, authed).await?;
            }
        }
        if self.pending.is_empty() {
            self.gap_since = None;
        }
        Ok(())
    }

    /// The missing announcements did not come: the log has the events.
    async fn fill_gap(&mut self, authed: &Authed) -> Result<(), End> {
        let mut streams: Vec<StreamId> = self.pending.keys().map(|(s, _)| *s).collect();
        streams.dedup();
        for stream in streams {
            self.catch_up(stream, authed).await?;
        }
        self.drain_pending(authed).await
    }

    /// Reads every followed stream's log after its last delivered position.
    async fn catch_up_all(&mut self, authed: &Authed) -> Result<(), End> {
        let streams: Vec<StreamId> = self.follows.keys().copied().collect();
        for stream in streams {
            self.catch_up(stream, authed).await?;
        }
        self.drain_pending(authed).await
    }

    /// Sends what the log of `stream` holds after the last delivered position.
    async fn catch_up(&mut self, stream: StreamId, authed: &Authed) -> Result<(), End> {
        loop {
            let Some(next) = self.follows.get(&stream).map(|f| f.next) else {
                return Ok(());
            };
            let rows = self
                .gw
                .0
                .events
                .after(stream, next - 1, 500)
                .await
                .map_err(Self::internal)?;
            let full = rows.len() == 500;
            for e in rows {
                match self.follows.get_mut(&stream) {
                    None => return Ok(()),
                    // A gap in the log itself: those events are past retention.
                    Some(f) => f.next = f.next.max(e.seq),
                }
                if self.follows.get(&stream).is_some_and(|f| f.next == e.seq) {
                    self.emit(Arc::new(e), authed).await?;
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    // ---- following streams ----

    /// Starts following a stream after position `from`, and sends what its log holds after
    /// `from` (at most the newest `gateway.max_replay_events`).
    async fn start_follow(
        &mut self,
        f: Follow,
        by: Option<String>,
        from: u64,
        authed: &Authed,
    ) -> Result<(), End> {
        let head = self
            .gw
            .0
            .events
            .head(f.stream)
            .await
            .map_err(Self::internal)?;
        let max = self.gw.0.config.gateway.max_replay_events;
        let from = from.max(head.saturating_sub(max)).min(head);
        self.log.base.entry(f.stream).or_insert(from);
        self.acked.entry(f.stream).or_insert(from);
        self.follows.insert(
            f.stream,
            Followed {
                next: from + 1,
                view: f.view,
                by,
            },
        );
        if let Some(h) = &self.handle {
            self.gw.follow(h, f.stream);
        }
        // After joining the hub: what was announced before is in the log.
        self.catch_up(f.stream, authed).await
    }

    fn stop_follow(&mut self, stream: StreamId) {
        self.follows.remove(&stream);
        self.pending.retain(|(s, _), _| *s != stream);
        if let Some(h) = &self.handle {
            self.gw.unfollow(h, stream);
        }
    }

    /// An access-changing event was delivered in `stream`: ask again what may be seen. On the
    /// actor's own stream (a join, a new conversation) that is the whole list of streams.
    async fn on_access(&mut self, stream: StreamId, authed: &Authed) -> Result<(), End> {
        if stream == StreamId::of_actor(authed.actor.id) {
            return self.refollow(authed, None).await;
        }
        let Some(by) = self.follows.get(&stream).and_then(|f| f.by.clone()) else {
            return Ok(());
        };
        let Some(service) = self.gw.service(&by) else {
            self.stop_follow(stream);
            return Ok(());
        };
        match service.view(&authed.actor, stream).await {
            Ok(Some(f)) => {
                if let Some(followed) = self.follows.get_mut(&stream) {
                    followed.view = f.view;
                }
                Ok(())
            }
            Ok(None) => {
                self.stop_follow(stream);
                Ok(())
            }
            Err(e) => Err(refused(e)),
        }
    }

    /// Brings the followed streams in line with what the subscribed services name now: new
    /// ones are followed from `stored` positions (a subscription) or from where the
    /// membership began (a join), gone ones are left, views are renewed.
    async fn refollow(&mut self, authed: &Authed, stored: Option<&Positions>) -> Result<(), End> {
        let services: Vec<String> = self
            .services
            .iter()
            .filter(|s| *s != CORE)
            .cloned()
            .collect();
        let now = self
            .gw
            .follows_on(&authed.actor, services.iter().map(String::as_str))
            .await
            .map_err(refused)?;
        let listed: std::collections::HashSet<StreamId> =
            now.iter().map(|(f, _)| f.stream).collect();
        let gone: Vec<StreamId> = self
            .follows
            .keys()
            .filter(|s| !listed.contains(s))
            .copied()
            .collect();
        for stream in gone {
            self.stop_follow(stream);
        }
        for (f, by) in now {
            if let Some(followed) = self.follows.get_mut(&f.stream) {
                followed.view = f.view;
                continue;
            }
            let from = match stored {
                Some(p) => match p.get(&f.stream) {
                    Some(at) => *at,
                    None => self
                        .gw
                        .0
                        .events
                        .head(f.stream)
                        .await
                        .map_err(Self::internal)?,
                },
                None => 0,
            }
            .max(f.since.saturating_sub(1));
            self.start_follow(f, by, from, authed).await?;
        }
        Ok(())
    }

    /// The session's stored positions.
    async fn stored_positions(&self, authed: &Authed) -> Result<Positions, End> {
        self.gw
            .stored_positions(authed.session.pk)
            .await
            .map_err(Self::internal)
    }

    /// The session's end is in the database, and the bus only announces it: the connection
    /// looks again when the session would end anyway, at least once per heartbeat interval,
    /// and after lost announcements, so a lost announcement delays the close, never skips it.
    async fn check_session(&mut self, authed: &Authed) -> Result<(), End> {
        match self.gw.0.sessions.session_still_valid(authed).await {
            Ok(Some(ends)) => {
                self.schedule_session_check(ends);
                Ok(())
            }
            Ok(None) => Err(close(Close::NotAuthenticated, "the session has ended")),
            Err(e) => Err(Self::internal(e)),
        }
    }

    /// Next check: when the session ends (`ends`, Unix time), or one interval from now.
    fn schedule_session_check(&mut self, ends: u64) {
        let left = Duration::from_secs(ends.saturating_sub(self.gw.0.config.clock.now()).max(1));
        self.session_ends = Some(Instant::now() + left.min(self.interval()));
    }

    fn internal(e: impl std::fmt::Display) -> End {
        tracing::error!(error = %e, "gateway");
        close(Close::UnknownError, "internal error")
    }

    async fn flush(&mut self) -> Result<(), End> {
        self.sink.flush().await.map_err(|_| End::Gone)
    }

    // ---- the main loop ----

    fn next_deadline(&self) -> (Instant, Due) {
        let i = self.interval();
        let mut next = match self.heartbeat_requested {
            Some(at) => (at + i / 2, Due::HeartbeatOverdue),
            None => (self.last_heartbeat + i * 5 / 4, Due::Heartbeat),
        };
        if let Some(end) = self.session_ends
            && end < next.0
        {
            next = (end, Due::SessionEnd);
        }
        if let Some(since) = self.gap_since
            && since + GAP_WAIT < next.0
        {
            next = (since + GAP_WAIT, Due::Gap);
        }
        next
    }

    /// The main loop. What it awaits on the hot paths (frames from the queue, heartbeats) stays
    /// inline; the rare and heavy paths (control messages, timers, revocations, service
    /// channels, reading the log) are boxed, so each connection's task keeps a small future:
    /// 2.7 KB instead of 4.7 KB per connection, measured with the gateway benchmark.
    async fn run(&mut self, authed: &Authed, reg: &mut Registration) -> End {
        // Joined the hub after `shut_down` told everyone in it.
        if self.gw.closing() {
            return close(Close::UnknownError, "server shutting down");
        }
        loop {
            let (deadline, due) = self.next_deadline();
            let step = tokio::select! {
                biased;
                ctl = reg.ctl.recv() => match ctl {
                    Some(ctl) => Box::pin(self.on_ctl(ctl, authed, reg)).await,
                    None => Err(close(Close::UnknownError, "server shutting down")),
                },
                frame = self.stream.next() => match frame {
                    Some(Ok(m)) => self.on_frame(m, authed).await,
                    Some(Err(e)) => Err(unreadable(&e)),
                    None => Err(End::Gone),
                },
                e = reg.queue.recv() => match e {
                    Some(e) => self.deliver(e, authed).await,
                    None => Err(close(Close::UnknownError, "server shutting down")),
                },
                () = sleep_until(deadline) => Box::pin(self.on_timer(due, authed)).await,
            };
            if let Err(end) = step {
                return end;
            }
            // Write out everything queued before flushing once.
            while let Ok(e) = reg.queue.try_recv() {
                if let Err(end) = self.deliver(e, authed).await {
                    return end;
                }
            }
            if let Err(end) = self.flush().await {
                return end;
            }
        }
    }

    async fn on_timer(&mut self, due: Due, authed: &Authed) -> Result<(), End> {
        match due {
            Due::Gap => self.fill_gap(authed).await,
            Due::SessionEnd => self.check_session(authed).await,
            Due::HeartbeatOverdue => {
                Err(close(Close::Timeout, "heartbeat request went unanswered"))
            }
            Due::Heartbeat => {
                self.heartbeat_requested = Some(Instant::now());
                self.send_control(
                    op::HEARTBEAT_REQUEST,
                    Value::Object(Default::default()),
                    false,
                )
                .await
                .map(|_| ())
            }
        }
    }

    async fn on_ctl(
        &mut self,
        ctl: Ctl,
        authed: &Authed,
        reg: &mut Registration,
    ) -> Result<(), End> {
        match ctl {
            Ctl::Overflow => Err(close(Close::UnknownError, "client reads too slowly")),
            Ctl::SessionEnded => {
                // What was published before the end (its op 4) still goes out first.
                while let Ok(e) = reg.queue.try_recv() {
                    self.deliver(e, authed).await?;
                }
                self.catch_up(StreamId::of_actor(authed.actor.id), authed)
                    .await?;
                Err(close(Close::NotAuthenticated, "the session was revoked"))
            }
            Ctl::ServerCertChange(c) => {
                if c.root_serial != self.root_serial {
                    self.send_root_change(&c, self.root_serial).await?;
                    // A later Identify of this session must not send it again.
                    self.record_connection(authed).await?;
                }
                Ok(())
            }
            Ctl::Resync => {
                // Announcements were lost: a session end among them too, perhaps.
                self.check_session(authed).await?;
                self.catch_up_all(authed).await
            }
            Ctl::Shutdown => Err(close(Close::UnknownError, "server shutting down")),
            Ctl::TakeOver(tx) => {
                let _ = tx.send(self.state(authed.session.pk));
                Err(End::TakenOver)
            }
        }
    }

    /// Counts a client payload against the rate limit (DIGEST §3.7, 4008).
    fn note_payload(&mut self) -> Result<(), End> {
        let cfg = &self.gw.0.config.gateway;
        let now = Instant::now();
        let window = Duration::from_secs(cfg.rate_window_s);
        while self.rate.front().is_some_and(|t| now - *t >= window) {
            self.rate.pop_front();
        }
        self.rate.push_back(now);
        if self.rate.len() > cfg.client_payloads_per_window as usize {
            return Err(close(Close::RateLimited, "too many payloads"));
        }
        Ok(())
    }

    async fn on_frame(&mut self, m: Message, authed: &Authed) -> Result<(), End> {
        let text = match m {
            Message::Text(t) => t,
            Message::Close(_) => return Err(End::Gone),
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
            Message::Binary(_) => {
                self.note_payload()?;
                return Err(close(
                    Close::InvalidPayload,
                    "payloads are JSON text frames",
                ));
            }
        };
        self.note_payload()?;
        let (env, _) = Envelope::parse(text.as_str())
            .map_err(|e| close(Close::InvalidPayload, e.to_string()))?;
        if env.n != CORE {
            if !self.services.contains(&env.n) {
                return Err(close(
                    Close::InvalidPayload,
                    format!("not subscribed to {}", env.n),
                ));
            }
            return Box::pin(self.on_service_op(env, authed)).await;
        }
        match ClientOp::parse(env.op, &env.d).map_err(client_op_error)? {
            ClientOp::Heartbeat(list) => self.on_heartbeat(list, authed).await,
            ClientOp::Identify(_) | ClientOp::Resume(_) => {
                Err(close(Close::AlreadyAuthenticated, "already identified"))
            }
            ClientOp::CertInvalidation(inv) => Box::pin(self.on_revocation(inv, authed)).await,
            ClientOp::ServiceChannel(req) => Box::pin(self.on_channel(req, authed)).await,
        }
    }

    /// Op 0: re-send what `except` names, ahead of everything else (DIGEST §3.4).
    async fn on_heartbeat(&mut self, list: NumberList, authed: &Authed) -> Result<(), End> {
        let last = self.log.next_s.saturating_sub(1);
        if list.to > last || list.except.iter().any(|e| *e > last) {
            return Err(close(
                Close::InvalidSequence,
                "numbers that were never sent",
            ));
        }
        let oldest = self.log.frames.front().map_or(self.log.next_s, |(s, _)| *s);
        let mut wanted = list.except.clone();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted
            .first()
            .is_some_and(|w| *w < oldest && self.log.evicted_s.is_some())
        {
            return Err(close(
                Close::InvalidSequence,
                "numbers no longer kept; resume",
            ));
        }
        let mut resend = Vec::with_capacity(wanted.len());
        for w in wanted {
            let Ok(i) = self.log.frames.binary_search_by_key(&w, |(s, _)| *s) else {
                continue; // an op 7 or op 10: never re-sent
            };
            let (s, f) = &self.log.frames[i];
            resend.push(match f {
                Sent::Event(e) => e.frame(*s, self.style),
                Sent::Control(op, d) => {
                    let mut env = Envelope::new(CORE, *op, Value::clone(d));
                    env.s = Some(*s);
                    env.render(self.style)
                }
            });
        }
        self.last_heartbeat = Instant::now();
        self.heartbeat_requested = None;
        self.write_batch(op::HEARTBEAT_ACK, resend).await?;
        self.acknowledge(&list, authed);
        Ok(())
    }

    /// Records the positions the client confirmed, so that a later Identify or poll starts
    /// after them. Written in the background; positions only move forward.
    fn acknowledge(&mut self, list: &NumberList, authed: &Authed) {
        let upto = match list.except.iter().min() {
            Some(first_missing) => first_missing.saturating_sub(1),
            None => list.to,
        };
        let Some(at) = self.log.positions_at(upto) else {
            return;
        };
        let mut changed = Vec::new();
        for (stream, pos) in at {
            let acked = self.acked.entry(stream).or_default();
            if pos > *acked {
                *acked = pos;
                changed.push((stream.to_store(), to_store(pos)));
            }
        }
        if changed.is_empty() {
            return;
        }
        let store = self.gw.0.store.clone();
        let pk = authed.session.pk.to_store();
        self.gw.0.tasks.spawn_to_end(async move {
            if let Err(e) = store.advance_positions(pk, &changed).await {
                tracing::warn!(error = %e, "recording gateway positions failed");
            }
        });
    }

    /// Op 4 from the client: it revokes one of its actor's certificates (OP-10).
    async fn on_revocation(
        &mut self,
        inv: gw::CertInvalidation,
        authed: &Authed,
    ) -> Result<(), End> {
        let signature = inv
            .signature
            .as_deref()
            .ok_or_else(|| close(Close::InvalidPayload, "op 4 needs a signature"))?;
        self.gw
            .0
            .sessions
            .revoke_signed(authed, inv.serial, inv.invalid_since, signature)
            .await
            .map_err(refused)
    }

    /// Op 8 → op 9.
    async fn on_channel(&mut self, req: ServiceChannel, authed: &Authed) -> Result<(), End> {
        let refuse = |why: String| (false, Some(why));
        let (success, error) = match (req.action, req.service.as_str()) {
            (ChannelAction::Subscribe, CORE) => (true, None),
            (ChannelAction::Unsubscribe, CORE) => refuse("core cannot be unsubscribed".into()),
            (_, s) if !self.gw.offers(s) => {
                refuse(format!("service {s} is not offered by this server"))
            }
            (ChannelAction::Subscribe, s) => {
                if self.services.insert(s.to_owned()) {
                    self.gw.note_subscription(&authed.actor, s, true);
                }
                (true, None)
            }
            (ChannelAction::Unsubscribe, s) => {
                if self.services.remove(s) {
                    self.gw.note_subscription(&authed.actor, s, false);
                }
                (true, None)
            }
        };
        let changed = success && req.service != CORE;
        let ack = ServiceChannelAck {
            action: req.action,
            service: req.service,
            success,
            error,
        };
        let d = gw::payload(&ack);
        self.send_control(op::SERVICE_CHANNEL_ACK, d, false).await?;
        if success {
            self.record_connection(authed).await?;
        }
        if changed {
            let stored = self.stored_positions(authed).await?;
            self.refollow(authed, Some(&stored)).await?;
        }
        Ok(())
    }

    /// A payload in a subscribed service's namespace: the service takes it or refuses.
    async fn on_service_op(&mut self, env: Envelope, authed: &Authed) -> Result<(), End> {
        let Some(service) = self.gw.service(&env.n) else {
            return Err(close(
                Close::InvalidPayload,
                format!("not subscribed to {}", env.n),
            ));
        };
        match service.client_op(authed, env.op, &env.d).await {
            Ok(()) => Ok(()),
            Err(OpRefused::Unknown(op)) => Err(close(
                Close::UnknownOpcode,
                format!("{} defines no client opcode {op}", env.n),
            )),
            Err(OpRefused::Refused(e)) => Err(refused(e)),
        }
    }
}
