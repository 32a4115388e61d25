//! Events: the streams of events and the bus that announces them (DIGEST §3.4–§3.5,
//! docs/ARCHITECTURE.md "Delivery: streams").
//!
//! Every event belongs to one stream (an actor's, a guild's, a conversation's) and gets the
//! next position in it (1, 2, 3, …) when it is written to the database; only then is it
//! announced on the [`Bus`]. Each event names its [`Audience`] among the stream's followers.
//! Services publish here; the gateway and `GET /events` deliver. Ephemeral events (typing,
//! presence) are announced without being written. This module knows nothing of WebSockets,
//! and nothing here signs anything.

pub mod bus;

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use fugue_proto::gateway::{Envelope, Style, styled};
use fugue_store::{EventRow, NewEvent, Store};

pub use bus::{Bus, BusMsg, BusRx, HandoffRequest, Incoming};

use crate::Clock;
use crate::ids::{ActorId, SessionPk, StreamId, from_store, to_store};
use crate::time::UnixTime;

/// Who among a stream's followers may see an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Every follower of the stream.
    #[default]
    All,
    /// The followers whose view of the stream includes this channel.
    Channel(i64),
    /// One actor's sessions.
    Actor(ActorId),
    /// One session.
    Session(SessionPk),
}

impl Audience {
    /// As the store keeps it.
    pub fn encode(self) -> String {
        match self {
            Audience::All => String::new(),
            Audience::Channel(c) => format!("c:{c}"),
            Audience::Actor(a) => format!("a:{a}"),
            Audience::Session(s) => format!("s:{s}"),
        }
    }

    /// What the store keeps back; an unreadable value (never written) reaches no one.
    pub fn decode(text: &str) -> Self {
        let parse = |v: &str| v.parse::<i64>().ok();
        match text.split_once(':') {
            None if text.is_empty() => Audience::All,
            Some(("c", v)) => parse(v).map_or(
                Audience::Session(SessionPk::from_store(0)),
                Audience::Channel,
            ),
            Some(("a", v)) => parse(v).map_or(Audience::Session(SessionPk::from_store(0)), |v| {
                Audience::Actor(ActorId::from_store(v))
            }),
            Some(("s", v)) => Audience::Session(SessionPk::from_store(parse(v).unwrap_or(0))),
            _ => Audience::Session(SessionPk::from_store(0)),
        }
    }
}

/// One event of a stream.
#[derive(Debug, Serialize, Deserialize)]
pub struct Event {
    pub stream: StreamId,
    /// Position in the stream; the `id` clients see. 0 for an ephemeral event, which has none.
    pub seq: u64,
    pub n: String,
    pub op: u16,
    pub d: Value,
    /// `sessions.id` of the one session that must not receive it (op 3 of its own login).
    pub exclude_session: Option<SessionPk>,
    /// Events with the same key replace each other when replayed.
    pub collapse_key: Option<String>,
    pub created_at: UnixTime,
    #[serde(default)]
    pub audience: Audience,
    /// It changes who may see what in its stream: followers ask their service again.
    #[serde(default)]
    pub access: bool,
    /// The row it is about (a message).
    #[serde(default)]
    pub ref_id: Option<i64>,
    /// `d` rendered once per style, shared by every connection that sends it.
    #[serde(skip)]
    rendered: [OnceLock<String>; 2],
}

impl Event {
    /// Whether the session may receive it, as far as the event itself tells (a channel
    /// audience also needs the follower's view: `channel`).
    pub fn for_session(&self, actor: ActorId, session_pk: SessionPk) -> bool {
        self.exclude_session != Some(session_pk)
            && match self.audience {
                Audience::All | Audience::Channel(_) => true,
                Audience::Actor(a) => a == actor,
                Audience::Session(s) => s == session_pk,
            }
    }

    /// The channel whose readers alone may see it.
    pub fn channel(&self) -> Option<i64> {
        match self.audience {
            Audience::Channel(c) => Some(c),
            _ => None,
        }
    }

    pub fn is_ephemeral(&self) -> bool {
        self.seq == 0
    }

    /// The frame for one connection.
    pub fn frame(&self, s: u64, style: Style) -> String {
        let slot = match style {
            Style::Numbers => 0,
            Style::Strings => 1,
        };
        let d = self.rendered[slot].get_or_init(|| styled(&self.d, style).to_string());
        let id = (!self.is_ephemeral()).then_some(self.seq);
        fugue_proto::gateway::render_raw(&self.n, self.op, d, Some(s), id, style)
    }

    /// The event as a JSON envelope without `s` (events over HTTP).
    pub fn envelope(&self, s: Option<u64>) -> Envelope {
        Envelope {
            n: self.n.clone(),
            op: self.op,
            d: self.d.clone(),
            s,
            id: (!self.is_ephemeral()).then_some(self.seq),
        }
    }

    fn from_row(r: EventRow) -> Self {
        Self {
            stream: StreamId::from_store(r.stream_id),
            seq: from_store(r.seq),
            d: serde_json::from_str(&r.payload).unwrap_or(Value::Null),
            n: r.namespace,
            op: u16::try_from(r.op).unwrap_or(u16::MAX),
            exclude_session: r.exclude_session.map(SessionPk::from_store),
            collapse_key: r.collapse_key,
            created_at: UnixTime::from_store(r.created_at),
            audience: Audience::decode(&r.audience),
            access: r.access,
            ref_id: r.ref_id,
            rendered: Default::default(),
        }
    }
}

/// A change of the server root (op 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootChange {
    pub cert: String,
    /// When the previous root stopped being current.
    pub old_invalid_since: UnixTime,
    pub root_serial: i64,
}

/// What a service hands to [`Events::publish`].
#[derive(Debug, Clone)]
pub struct Publish {
    pub stream: StreamId,
    pub n: String,
    pub op: u16,
    pub d: Value,
    pub audience: Audience,
    pub exclude_session: Option<SessionPk>,
    pub collapse_key: Option<String>,
    pub access: bool,
    pub ref_id: Option<i64>,
}

impl Publish {
    /// An event for everyone following `stream`.
    pub fn new(stream: StreamId, n: impl Into<String>, op: u16, d: Value) -> Self {
        Self {
            stream,
            n: n.into(),
            op,
            d,
            audience: Audience::All,
            exclude_session: None,
            collapse_key: None,
            access: false,
            ref_id: None,
        }
    }

    /// An event on the actor's own stream.
    pub fn to_actor(actor: ActorId, n: impl Into<String>, op: u16, d: Value) -> Self {
        Self::new(StreamId::of_actor(actor), n, op, d)
    }

    pub fn audience(mut self, audience: Audience) -> Self {
        self.audience = audience;
        self
    }

    pub fn except(mut self, session: SessionPk) -> Self {
        self.exclude_session = Some(session);
        self
    }

    pub fn collapse(mut self, key: impl Into<String>) -> Self {
        self.collapse_key = Some(key.into());
        self
    }

    /// Marks the event as changing who may see what in its stream.
    pub fn changes_access(mut self) -> Self {
        self.access = true;
        self
    }

    pub fn about(mut self, ref_id: i64) -> Self {
        self.ref_id = Some(ref_id);
        self
    }

    /// The row to write, stamped `now`.
    pub fn to_new(&self, now: UnixTime) -> NewEvent {
        NewEvent {
            stream_id: self.stream.to_store(),
            namespace: self.n.clone(),
            op: i64::from(self.op),
            payload: self.d.to_string(),
            exclude_session: self.exclude_session.map(SessionPk::to_store),
            collapse_key: self.collapse_key.clone(),
            created_at: now.to_store(),
            audience: self.audience.encode(),
            access: self.access,
            ref_id: self.ref_id,
        }
    }

    fn into_event(self, seq: u64, created_at: UnixTime) -> Event {
        Event {
            stream: self.stream,
            seq,
            n: self.n,
            op: self.op,
            d: self.d,
            exclude_session: self.exclude_session,
            collapse_key: self.collapse_key,
            created_at,
            audience: self.audience,
            access: self.access,
            ref_id: self.ref_id,
            rendered: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] fugue_store::Error),
}

impl From<Error> for crate::http::ApiError {
    fn from(err: Error) -> Self {
        match &err {
            Error::Store(_) => crate::http::ApiError::internal(&err),
        }
    }
}

#[derive(Clone)]
pub struct Events {
    store: Store,
    bus: Bus,
    clock: Clock,
}

impl Events {
    pub fn new(store: Store, bus: Bus, clock: Clock) -> Self {
        Self { store, bus, clock }
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Writes the event to its stream, then announces it. Returns once it is durable.
    pub async fn publish(&self, p: Publish) -> Result<Arc<Event>, Error> {
        let now = self.now();
        let seq = self.store.append_event(&p.to_new(now)).await?;
        Ok(self.appended(p, seq, now).await)
    }

    /// The time an event written now is stamped with (for [`Publish::to_new`] in a domain's
    /// own transaction).
    pub fn now(&self) -> UnixTime {
        UnixTime(self.clock.now())
    }

    /// Announces an event a domain wrote in its own transaction (with
    /// [`Publish::to_new`]`(now)`), at position `seq`.
    pub async fn appended(&self, p: Publish, seq: i64, now: UnixTime) -> Arc<Event> {
        let shared = Arc::new(p.into_event(from_store(seq), now));
        self.bus.announce(BusMsg::Event(shared.clone())).await;
        shared
    }

    /// Announces an event that is not written anywhere (typing, presence): followers that
    /// are connected now see it, nobody later.
    pub async fn ephemeral(&self, p: Publish) {
        let shared = Arc::new(p.into_event(0, self.now()));
        self.bus.announce(BusMsg::Event(shared)).await;
    }

    /// Announces something that is not part of a stream (session ended, root changed).
    pub async fn announce(&self, msg: BusMsg) {
        self.bus.announce(msg).await;
    }

    /// Up to `limit` events of `stream` after position `after`, oldest first.
    pub async fn after(
        &self,
        stream: StreamId,
        after: u64,
        limit: u64,
    ) -> Result<Vec<Event>, Error> {
        Ok(self
            .store
            .events_after(stream.to_store(), to_store(after), to_store(limit))
            .await?
            .into_iter()
            .map(Event::from_row)
            .collect())
    }

    /// The newest `limit` events after `after`, oldest first.
    pub async fn newest_after(
        &self,
        stream: StreamId,
        after: u64,
        limit: u64,
    ) -> Result<Vec<Event>, Error> {
        Ok(self
            .store
            .newest_events_after(stream.to_store(), to_store(after), to_store(limit))
            .await?
            .into_iter()
            .map(Event::from_row)
            .collect())
    }

    /// The position of the stream's newest event.
    pub async fn head(&self, stream: StreamId) -> Result<u64, Error> {
        Ok(from_store(self.store.stream_head(stream.to_store()).await?))
    }

    /// Deletes events older than `retention_s`.
    pub async fn sweep(&self, retention_s: u64) -> Result<u64, Error> {
        let before = UnixTime(self.clock.now()).minus(retention_s);
        Ok(self.store.delete_events_before(before.to_store()).await?)
    }
}

/// The minimal set to replay (DIGEST §3.5): of events sharing a collapse key only the
/// newest is kept; events without a key (every certificate event) are all kept. Order is
/// preserved.
pub fn collapse<T>(events: Vec<T>, key: impl Fn(&T) -> Option<&str>) -> Vec<T> {
    use std::collections::HashSet;
    let mut seen = HashSet::new();
    let mut keep = vec![true; events.len()];
    for (i, e) in events.iter().enumerate().rev() {
        if let Some(k) = key(e)
            && !seen.insert(k.to_owned())
        {
            keep[i] = false;
        }
    }
    events
        .into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::collapse;

    #[test]
    fn collapse_keeps_the_newest_per_key_and_every_unkeyed_event() {
        let events = vec![
            (1, Some("typing")),
            (2, None),
            (3, Some("typing")),
            (4, Some("count")),
            (5, None),
            (6, Some("typing")),
        ];
        let kept: Vec<i32> = collapse(events, |e| e.1).into_iter().map(|e| e.0).collect();
        assert_eq!(kept, vec![2, 4, 5, 6]);
    }
}
