//! Persistence of the per-actor event streams (the gateway's log, DIGEST §3.5) and of where
//! each session stands in its actor's stream (gateway positions).

use crate::engine::{Conflict, Error, Result, Row, Stmt};
use crate::{Store, params};

/// One event of an actor's event stream (the gateway's log, DIGEST §3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub actor_id: i64,
    /// Position in the actor's stream: 1, 2, 3, … without gaps.
    pub seq: i64,
    pub namespace: String,
    pub op: i64,
    /// The payload `d` as JSON text.
    pub payload: String,
    /// `sessions.id` of a session that must not receive it.
    pub exclude_session: Option<i64>,
    /// Events with the same key replace each other on replay.
    pub collapse_key: Option<String>,
    pub created_at: i64,
}

/// What an event is made of before it has a position.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub actor_id: i64,
    pub namespace: String,
    pub op: i64,
    pub payload: String,
    pub exclude_session: Option<i64>,
    pub collapse_key: Option<String>,
    pub created_at: i64,
}

/// Where a session stands in its actor's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionRow {
    pub session_pk: i64,
    /// The last event the session acknowledged.
    pub acked_seq: i64,
    /// The node holding (or last holding) the session's gateway connection.
    pub node: Option<String>,
    /// The server root serial the session last saw.
    pub root_serial: Option<i64>,
    /// Service channels the session was subscribed to.
    pub services: Vec<String>,
    pub updated_at: i64,
}

/// The columns [`event`] decodes (and `append_event` writes), in its order.
macro_rules! event_columns {
    () => {
        "actor_id, seq, namespace, op, payload, exclude_session, collapse_key, created_at"
    };
}

fn event(r: &Row) -> Result<EventRow> {
    Ok(EventRow {
        actor_id: r.i64(0)?,
        seq: r.i64(1)?,
        namespace: r.string(2)?,
        op: r.i64(3)?,
        payload: r.string(4)?,
        exclude_session: r.opt_i64(5)?,
        collapse_key: r.opt_string(6)?,
        created_at: r.i64(7)?,
    })
}

/// The columns [`position`] decodes, in its order.
macro_rules! position_columns {
    () => {
        "session_pk, acked_seq, node, root_serial, services, updated_at"
    };
}

fn position(r: &Row) -> Result<PositionRow> {
    Ok(PositionRow {
        session_pk: r.i64(0)?,
        acked_seq: r.i64(1)?,
        node: r.opt_string(2)?,
        root_serial: r.opt_i64(3)?,
        services: decode_services(&r.string(4)?),
        updated_at: r.i64(5)?,
    })
}

/// Service channels are kept comma-separated: channel names are tokens the server
/// offers, which never contain a comma.
fn encode_services(services: &[String]) -> String {
    services.join(",")
}

fn decode_services(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Store {
    /// Appends an event to its actor's stream and returns its position. Appends for one
    /// actor are serialised on the actor's row, so positions follow commit order without
    /// gaps: whoever sees position N committed can read every position below it.
    /// [`Conflict::ActorMissing`] for an unknown actor.
    pub async fn append_event(&self, e: &NewEvent) -> Result<i64> {
        let out = self
            .transaction_rows(vec![
                Stmt::new(
                    "UPDATE actors SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq",
                    params![e.actor_id],
                )
                .affects(1)
                .or(Conflict::ActorMissing),
                Stmt::new(
                    concat!(
                        "INSERT INTO events (",
                        event_columns!(),
                        ") SELECT id, event_seq, $2, $3, $4, $5, $6, $7 FROM actors WHERE id = $1"
                    ),
                    params![
                        e.actor_id,
                        e.namespace.clone(),
                        e.op,
                        e.payload.clone(),
                        e.exclude_session,
                        e.collapse_key.clone(),
                        e.created_at
                    ],
                )
                .affects(1)
                .or(Conflict::ActorMissing),
            ])
            .await?;
        out.first()
            .and_then(|(_, rows)| rows.first())
            .ok_or_else(|| Error::Decode("RETURNING gave no row".into()))?
            .i64(0)
    }

    /// Up to `limit` events of an actor after position `after`, oldest first.
    pub async fn events_after(
        &self,
        actor_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        self.query(
            concat!(
                "SELECT ",
                event_columns!(),
                " FROM events WHERE actor_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ),
            params![actor_id, after, limit],
        )
        .await?
        .iter()
        .map(event)
        .collect()
    }

    /// The newest `limit` events of an actor after position `after`, oldest first.
    pub async fn newest_events_after(
        &self,
        actor_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        let mut rows = self
            .query(
                concat!(
                    "SELECT ",
                    event_columns!(),
                    " FROM events WHERE actor_id = $1 AND seq > $2 ORDER BY seq DESC LIMIT $3"
                ),
                params![actor_id, after, limit],
            )
            .await?
            .iter()
            .map(event)
            .collect::<Result<Vec<_>>>()?;
        rows.reverse();
        Ok(rows)
    }

    /// The position of an actor's newest event (0 when none was ever published).
    pub async fn event_seq(&self, actor_id: i64) -> Result<i64> {
        self.query(
            "SELECT event_seq FROM actors WHERE id = $1",
            params![actor_id],
        )
        .await?
        .first()
        .map_or(Ok(0), |r| r.i64(0))
    }

    /// Deletes events created before `before`; returns how many.
    pub async fn delete_events_before(&self, before: i64) -> Result<u64> {
        self.execute("DELETE FROM events WHERE created_at < $1", params![before])
            .await
    }

    // ---- gateway positions ----

    pub async fn gateway_position(&self, session_pk: i64) -> Result<Option<PositionRow>> {
        self.query(
            concat!(
                "SELECT ",
                position_columns!(),
                " FROM gateway_positions WHERE session_pk = $1"
            ),
            params![session_pk],
        )
        .await?
        .first()
        .map(position)
        .transpose()
    }

    /// Moves a session's acknowledged position forward (never back).
    pub async fn advance_position(&self, session_pk: i64, acked_seq: i64, now: i64) -> Result<()> {
        self.execute_unit(
            "INSERT INTO gateway_positions (session_pk, acked_seq, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (session_pk) DO UPDATE SET acked_seq = excluded.acked_seq, updated_at = excluded.updated_at
             WHERE gateway_positions.acked_seq < excluded.acked_seq",
            params![session_pk, acked_seq, now],
        )
        .await
    }

    /// Records which node holds the session's connection, the root it saw and its service
    /// channels. A session without a position starts at `acked_if_new`.
    pub async fn record_connection(
        &self,
        session_pk: i64,
        node: &str,
        root_serial: i64,
        services: &[String],
        acked_if_new: i64,
        now: i64,
    ) -> Result<()> {
        self.execute_unit(
            concat!(
                "INSERT INTO gateway_positions (",
                position_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (session_pk) DO UPDATE SET node = excluded.node, root_serial = excluded.root_serial,
                   services = excluded.services, updated_at = excluded.updated_at"
            ),
            params![session_pk, acked_if_new, node, root_serial, encode_services(services), now],
        )
        .await
    }
}
