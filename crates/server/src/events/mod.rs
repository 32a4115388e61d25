//! Events: the per-actor event log and the bus that announces it (DIGEST §3.4–§3.5).
//!
//! Every event belongs to one actor's stream and gets the next position in it (1, 2, 3, …)
//! when it is written to the database; only then is it announced on the [`Bus`]. Services
//! publish here; the gateway and `GET /events` deliver. This module knows nothing of
//! WebSockets, and nothing here signs anything.

pub mod bus;

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use fugue_proto::gateway::{Envelope, Style, styled};
use fugue_store::{EventRow, NewEvent, Store};

pub use bus::{Bus, BusMsg, BusRx, HandoffRequest, Incoming};

use crate::Clock;
use crate::ids::{ActorId, SessionPk, from_store, to_store};
use crate::time::UnixTime;

/// One event of an actor's stream.
#[derive(Debug, Serialize, Deserialize)]
pub struct Event {
    pub actor_id: ActorId,
    /// Position in the actor's stream; the `id` clients see.
    pub seq: u64,
    pub n: String,
    pub op: u16,
    pub d: Value,
    /// `sessions.id` of the one session that must not receive it (op 3 of its own login).
    pub exclude_session: Option<SessionPk>,
    /// Events with the same key replace each other when replayed.
    pub collapse_key: Option<String>,
    pub created_at: UnixTime,
    /// `d` rendered once per style, shared by every connection that sends it.
    #[serde(skip)]
    rendered: [OnceLock<String>; 2],
}

impl Event {
    pub fn for_session(&self, session_pk: SessionPk) -> bool {
        self.exclude_session != Some(session_pk)
    }

    /// The frame for one connection.
    pub fn frame(&self, s: u64, style: Style) -> String {
        let slot = match style {
            Style::Numbers => 0,
            Style::Strings => 1,
        };
        let d = self.rendered[slot].get_or_init(|| styled(&self.d, style).to_string());
        fugue_proto::gateway::render_raw(&self.n, self.op, d, Some(s), Some(self.seq), style)
    }

    /// The event as a JSON envelope without `s` (events over HTTP).
    pub fn envelope(&self, s: Option<u64>) -> Envelope {
        Envelope {
            n: self.n.clone(),
            op: self.op,
            d: self.d.clone(),
            s,
            id: Some(self.seq),
        }
    }

    fn from_row(r: EventRow) -> Self {
        Self {
            actor_id: ActorId::from_store(r.actor_id),
            seq: from_store(r.seq),
            d: serde_json::from_str(&r.payload).unwrap_or(Value::Null),
            n: r.namespace,
            op: u16::try_from(r.op).unwrap_or(u16::MAX),
            exclude_session: r.exclude_session.map(SessionPk::from_store),
            collapse_key: r.collapse_key,
            created_at: UnixTime::from_store(r.created_at),
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
    pub actor_id: ActorId,
    pub n: String,
    pub op: u16,
    pub d: Value,
    pub exclude_session: Option<SessionPk>,
    pub collapse_key: Option<String>,
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

    /// Writes the event to its actor's stream, then announces it. Returns once it is durable.
    pub async fn publish(&self, p: Publish) -> Result<Arc<Event>, Error> {
        let now = UnixTime(self.clock.now());
        let seq = self
            .store
            .append_event(&NewEvent {
                actor_id: p.actor_id.to_store(),
                namespace: p.n.clone(),
                op: i64::from(p.op),
                payload: p.d.to_string(),
                exclude_session: p.exclude_session.map(SessionPk::to_store),
                collapse_key: p.collapse_key.clone(),
                created_at: now.to_store(),
            })
            .await?;
        let event = Event {
            actor_id: p.actor_id,
            seq: from_store(seq),
            n: p.n,
            op: p.op,
            d: p.d,
            exclude_session: p.exclude_session,
            collapse_key: p.collapse_key,
            created_at: now,
            rendered: Default::default(),
        };
        let shared = Arc::new(event);
        self.bus.announce(BusMsg::Event(shared.clone())).await;
        Ok(shared)
    }

    /// Announces something that is not part of a stream (session ended, root changed).
    pub async fn announce(&self, msg: BusMsg) {
        self.bus.announce(msg).await;
    }

    /// Up to `limit` events of `actor_id` after position `after`, oldest first.
    pub async fn after(
        &self,
        actor_id: ActorId,
        after: u64,
        limit: u64,
    ) -> Result<Vec<Event>, Error> {
        Ok(self
            .store
            .events_after(actor_id.to_store(), to_store(after), to_store(limit))
            .await?
            .into_iter()
            .map(Event::from_row)
            .collect())
    }

    /// The newest `limit` events after `after`, oldest first.
    pub async fn newest_after(
        &self,
        actor_id: ActorId,
        after: u64,
        limit: u64,
    ) -> Result<Vec<Event>, Error> {
        Ok(self
            .store
            .newest_events_after(actor_id.to_store(), to_store(after), to_store(limit))
            .await?
            .into_iter()
            .map(Event::from_row)
            .collect())
    }

    /// The position of the actor's newest event.
    pub async fn head(&self, actor_id: ActorId) -> Result<u64, Error> {
        Ok(from_store(self.store.event_seq(actor_id.to_store()).await?))
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
