//! Persistence of the per-actor event streams (the gateway's log, DIGEST §3.5) and of where
//! each session stands in its actor's stream (gateway positions).

use crate::engine::{Conflict, Error, Result, Row, Stmt};
use crate::{Store, params};

/// The columns [`event`] decodes (and `append_event` writes), in its order.
macro_rules! event_columns {
    () => {
        "stream_id, seq, namespace, op, payload, exclude_session, collapse_key, created_at, audience, access, ref_id"
    };
}

/// One event of a stream (an actor's, a guild's, a conversation's; the gateway's log, DIGEST
/// §3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub stream_id: i64,
    /// Position in the stream: 1, 2, 3, … without gaps.
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
    /// Who among the stream's followers may see it, encoded by the server ("" = all).
    pub audience: String,
    /// Whether it changes who may see what in the stream.
    pub access: bool,
    /// The row it is about (a message), so that its payload can be scrubbed with it.
    pub ref_id: Option<i64>,
}

/// What an event is made of before it has a position.
#[derive(Debug, Clone, Default)]
pub struct NewEvent {
    pub stream_id: i64,
    pub namespace: String,
    pub op: i64,
    pub payload: String,
    pub exclude_session: Option<i64>,
    pub collapse_key: Option<String>,
    pub created_at: i64,
    pub audience: String,
    pub access: bool,
    pub ref_id: Option<i64>,
}

impl NewEvent {
    /// Its stream, namespace, op, payload, excluded session, collapse key, time, audience and
    /// access flag, in this order (the columns of `events` before `ref_id`).
    pub(crate) fn values(&self) -> Vec<crate::engine::Value> {
        params![
            self.stream_id,
            self.namespace.clone(),
            self.op,
            self.payload.clone(),
            self.exclude_session,
            self.collapse_key.clone(),
            self.created_at,
            self.audience.clone(),
            i64::from(self.access)
        ]
    }
}

/// The two statements that append an event, for a domain transaction that changes rows and
/// records the event of that change atomically. Between them, `(SELECT head FROM streams
/// WHERE id = <stream>)` is the new event's position (a membership can start there).
pub struct Append {
    /// Takes the next position (locking the stream's row until commit); returns it.
    pub take: Stmt,
    /// Writes the event at that position.
    pub write: Stmt,
}

impl Append {
    pub fn new(e: &NewEvent) -> Self {
        Self {
            take: Stmt::new(
                "INSERT INTO streams (id, head) VALUES ($1, 1)
                 ON CONFLICT (id) DO UPDATE SET head = streams.head + 1 RETURNING head",
                params![e.stream_id],
            ),
            write: Stmt::new(
                concat!(
                    "INSERT INTO events (",
                    event_columns!(),
                    ") SELECT id, head, $2, $3, $4, $5, $6, $7, $8, $9, $10 FROM streams WHERE id = $1"
                ),
                {
                    let mut p = e.values();
                    p.push(e.ref_id.into());
                    p
                },
            )
            .affects(1)
            .or(Conflict::StreamMissing),
        }
    }
}

/// What a session's gateway connection left behind: where it was and what it followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionRow {
    pub session_pk: i64,
    /// The node holding (or last holding) the session's gateway connection.
    pub node: Option<String>,
    /// The server root serial the session last saw.
    pub root_serial: Option<i64>,
    /// Service channels the session was subscribed to.
    pub services: Vec<String>,
    pub updated_at: i64,
}

/// The position [`Append::take`] returned, at index `i` of a transaction's results.
pub(crate) fn taken(out: &[(u64, Vec<Row>)], i: usize) -> Result<i64> {
    out.get(i)
        .and_then(|(_, rows)| rows.first())
        .ok_or_else(|| Error::Decode("RETURNING gave no row".into()))?
        .i64(0)
}

fn event(r: &Row) -> Result<EventRow> {
    Ok(EventRow {
        stream_id: r.i64(0)?,
        seq: r.i64(1)?,
        namespace: r.string(2)?,
        op: r.i64(3)?,
        payload: r.string(4)?,
        exclude_session: r.opt_i64(5)?,
        collapse_key: r.opt_string(6)?,
        created_at: r.i64(7)?,
        audience: r.string(8)?,
        access: r.i64(9)? != 0,
        ref_id: r.opt_i64(10)?,
    })
}

/// The columns [`position`] decodes, in its order.
macro_rules! position_columns {
    () => {
        "session_pk, node, root_serial, services, updated_at"
    };
}

fn position(r: &Row) -> Result<PositionRow> {
    Ok(PositionRow {
        session_pk: r.i64(0)?,
        node: r.opt_string(1)?,
        root_serial: r.opt_i64(2)?,
        services: decode_services(&r.string(3)?),
        updated_at: r.i64(4)?,
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
    /// Appends an event to its stream and returns its position. Appends to one stream are
    /// serialised on the stream's row, so positions follow commit order without gaps:
    /// whoever sees position N committed can read every position below it.
    pub async fn append_event(&self, e: &NewEvent) -> Result<i64> {
        let Append { take, write } = Append::new(e);
        let out = self.grouped_rows(vec![take, write]).await?;
        taken(&out, 0)
    }

    /// Up to `limit` events of a stream after position `after`, oldest first.
    pub async fn events_after(
        &self,
        stream_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        self.query(
            concat!(
                "SELECT ",
                event_columns!(),
                " FROM events WHERE stream_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ),
            params![stream_id, after, limit],
        )
        .await?
        .iter()
        .map(event)
        .collect()
    }

    /// The newest `limit` events of a stream after position `after`, oldest first.
    pub async fn newest_events_after(
        &self,
        stream_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        let mut rows = self
            .query(
                concat!(
                    "SELECT ",
                    event_columns!(),
                    " FROM events WHERE stream_id = $1 AND seq > $2 ORDER BY seq DESC LIMIT $3"
                ),
                params![stream_id, after, limit],
            )
            .await?
            .iter()
            .map(event)
            .collect::<Result<Vec<_>>>()?;
        rows.reverse();
        Ok(rows)
    }

    /// The position of a stream's newest event (0 when none was ever appended).
    pub async fn stream_head(&self, stream_id: i64) -> Result<i64> {
        self.query("SELECT head FROM streams WHERE id = $1", params![stream_id])
            .await?
            .first()
            .map_or(Ok(0), |r| r.i64(0))
    }

    /// Replaces the payload of every event about `ref_id` in a stream (a deleted message's
    /// create and edit events keep their place but lose their content).
    pub async fn scrub_events(&self, stream_id: i64, ref_id: i64, payload: &str) -> Result<u64> {
        self.execute(
            "UPDATE events SET payload = $3 WHERE stream_id = $1 AND ref_id = $2",
            params![stream_id, ref_id, payload.to_owned()],
        )
        .await
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

    /// Where a session stands in each stream it followed: `(stream, acknowledged position)`.
    pub async fn stream_positions(&self, session_pk: i64) -> Result<Vec<(i64, i64)>> {
        self.query(
            "SELECT stream_id, acked_seq FROM stream_positions WHERE session_pk = $1",
            params![session_pk],
        )
        .await?
        .iter()
        .map(|r| Ok((r.i64(0)?, r.i64(1)?)))
        .collect()
    }

    /// Moves a session's acknowledged positions forward (never back), one per stream.
    pub async fn advance_positions(&self, session_pk: i64, positions: &[(i64, i64)]) -> Result<()> {
        if positions.is_empty() {
            return Ok(());
        }
        self.commit(
            positions
                .iter()
                .map(|(stream, seq)| {
                    Stmt::new(
                        "INSERT INTO stream_positions (session_pk, stream_id, acked_seq) VALUES ($1, $2, $3)
                         ON CONFLICT (session_pk, stream_id) DO UPDATE SET acked_seq = excluded.acked_seq
                         WHERE stream_positions.acked_seq < excluded.acked_seq",
                        params![session_pk, *stream, *seq],
                    )
                })
                .collect(),
        )
        .await
    }

    /// Records which node holds the session's connection, the root it saw and its service
    /// channels.
    pub async fn record_connection(
        &self,
        session_pk: i64,
        node: &str,
        root_serial: i64,
        services: &[String],
        now: i64,
    ) -> Result<()> {
        self.execute_unit(
            concat!(
                "INSERT INTO gateway_positions (session_pk, acked_seq, ",
                "node, root_serial, services, updated_at",
                ") VALUES ($1, 0, $2, $3, $4, $5)
                 ON CONFLICT (session_pk) DO UPDATE SET node = excluded.node, root_serial = excluded.root_serial,
                   services = excluded.services, updated_at = excluded.updated_at"
            ),
            params![session_pk, node, root_serial, encode_services(services), now],
        )
        .await
    }
}
