//! Persistence of guild messages, their signed versions and their tombstones.
//!
//! A message row holds its current version with its signature and certificate;
//! `message_versions` holds the versions edits replaced (a send writes one row, not two).
//! `(channel_id, author_id, nonce)` is unique, which makes a send idempotent: a repeat is
//! refused by the database, in the same transaction that would have appended its event.

use super::push_append;
use crate::engine::{Conflict, Error, Result, Row, Stmt, Value};
use crate::events::{NewEvent, taken};
use crate::postgres::BulkRow;
use crate::sessions::SessionGuard;
use crate::{Store, params};

/// A message as stored, with its author's stored name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub id: i64,
    pub guild_id: i64,
    pub channel_id: i64,
    pub author_id: i64,
    /// `actors.local_name` of the author (filled on reads).
    pub author_name: String,
    /// The nonce it was sent with (the idempotency key).
    pub nonce: String,
    /// The current version's signed body as JSON text; empty once deleted.
    pub content: String,
    pub signature: String,
    pub cert_pem: String,
    pub cert_serial: i64,
    /// The nonce the current version was signed with.
    pub version_nonce: String,
    pub reply_to: Option<i64>,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    pub deleted_at: Option<i64>,
    pub deleted_by: Option<i64>,
    pub version: i64,
    /// When the current version was re-signed (core §7.2), if it was.
    pub resigned_at: Option<i64>,
}

macro_rules! message_columns {
    () => {
        "m.id, m.guild_id, m.channel_id, m.author_id, a.local_name, m.nonce, m.content, m.signature, m.cert_pem, m.cert_serial, m.version_nonce, m.reply_to, m.created_at, m.edited_at, m.deleted_at, m.deleted_by, m.version, m.resigned_at"
    };
}

/// How many columns [`message`] decodes.
const MESSAGE_COLUMNS: usize = 18;

/// A pinned message with who pinned it (stored name, as `author_name`) and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedRow {
    pub message: MessageRow,
    pub pinned_by: String,
    pub pinned_at: i64,
}

fn message(r: &Row) -> Result<MessageRow> {
    Ok(MessageRow {
        id: r.i64(0)?,
        guild_id: r.i64(1)?,
        channel_id: r.i64(2)?,
        author_id: r.i64(3)?,
        author_name: r.string(4)?,
        nonce: r.string(5)?,
        content: r.string(6)?,
        signature: r.string(7)?,
        cert_pem: r.string(8)?,
        cert_serial: r.i64(9)?,
        version_nonce: r.string(10)?,
        reply_to: r.opt_i64(11)?,
        created_at: r.i64(12)?,
        edited_at: r.opt_i64(13)?,
        deleted_at: r.opt_i64(14)?,
        deleted_by: r.opt_i64(15)?,
        resigned_at: r.opt_i64(17)?,
        version: r.i64(16)?,
    })
}

/// One signed version of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageVersionRow {
    pub message_id: i64,
    pub version: i64,
    pub nonce: String,
    /// The signed body as JSON text.
    pub content: String,
    pub signature: String,
    pub cert_pem: String,
    pub cert_serial: i64,
    /// `None` for version 1; else the message's id (what the author signed as `edit_of`).
    pub edit_of: Option<i64>,
    pub created_at: i64,
}

macro_rules! version_columns {
    () => {
        "message_id, version, nonce, content, signature, cert_pem, cert_serial, edit_of, created_at"
    };
}

fn version(r: &Row) -> Result<MessageVersionRow> {
    Ok(MessageVersionRow {
        message_id: r.i64(0)?,
        version: r.i64(1)?,
        nonce: r.string(2)?,
        content: r.string(3)?,
        signature: r.string(4)?,
        cert_pem: r.string(5)?,
        cert_serial: r.i64(6)?,
        edit_of: r.opt_i64(7)?,
        created_at: r.i64(8)?,
    })
}

/// The current version of message `$1` as a version row (columns as `version_columns!`):
/// version 1 is no edit and dates from the send, a later one from its edit.
macro_rules! current_version {
    () => {
        "SELECT id, version, version_nonce, content, signature, cert_pem, cert_serial,
         CASE WHEN edited_at IS NULL THEN NULL ELSE id END,
         COALESCE(resigned_at, edited_at, created_at)
         FROM messages WHERE id = $1 AND deleted_at IS NULL"
    };
}

/// Whether the author may post to the channel: a member of the guild the channel is in, or
/// of the open conversation it is (a conversation is a channel of its own, `guild_id =
/// channel_id`), while the access rules are still at the version the caller checked them at
/// (NULL: not checked). Arguments: SQL expressions of the channel, the guild, the author and
/// that version.
macro_rules! may_send {
    ($channel:literal, $guild:literal, $author:literal, $version:literal) => {
        concat!(
            "((EXISTS (SELECT 1 FROM channels WHERE id = ",
            $channel,
            " AND guild_id = ",
            $guild,
            ")
             AND EXISTS (SELECT 1 FROM guild_members WHERE guild_id = ",
            $guild,
            " AND actor_id = ",
            $author,
            ")
             AND EXISTS (SELECT 1 FROM guilds WHERE id = ",
            $guild,
            " AND (",
            $version,
            " IS NULL OR access_version = ",
            $version,
            ")))
             OR (",
            $guild,
            " = ",
            $channel,
            " AND EXISTS (SELECT 1 FROM conversation_members cm
             JOIN conversations c ON c.id = cm.conversation_id WHERE cm.conversation_id = ",
            $channel,
            "
             AND cm.actor_id = ",
            $author,
            " AND c.closed_at IS NULL
             AND (",
            $version,
            " IS NULL OR c.access_version = ",
            $version,
            "))))"
        )
    };
}

/// A message's event is about the message (so that deleting it scrubs the event too).
fn about_message(m: &MessageRow, e: &NewEvent) -> NewEvent {
    NewEvent {
        ref_id: Some(m.id),
        ..e.clone()
    }
}

/// PostgreSQL's send of the messages queued together: one statement stores those their
/// authors may send, takes positions in their streams in queue order and
/// writes their events; it answers `(ordinal, position)` for each stored one. A repeated
/// nonce or a refused author is skipped. Same rules as the SQLite send above (`may_send`).
const BULK_SEND: &str = concat!(
    "WITH t AS (SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::text[],
       $6::text[], $7::text[], $8::text[], $9::int8[], $10::int8[], $11::int8[], $12::int8[],
       $13::text[], $14::int8[], $15::text[], $16::int8[], $17::text[], $18::int8[], $19::text[],
       $20::int8[], $21::int8[], $22::bytea[], $23::int8[])
       WITH ORDINALITY AS t(id, guild_id, channel_id, author_id, nonce, content, signature,
       cert_pem, cert_serial, reply_to, created_at, stream_id, namespace, op, payload,
       exclude_session, collapse_key, event_at, audience, access, access_version,
       token_hash, session_serial, ord)),
     m AS (INSERT INTO messages (id, guild_id, channel_id, author_id, nonce, content, signature,
       cert_pem, cert_serial, version_nonce, reply_to, created_at, version)
       SELECT id, guild_id, channel_id, author_id, nonce, content, signature, cert_pem,
       cert_serial, nonce, reply_to, created_at, 1 FROM t WHERE ",
    may_send!("t.channel_id", "t.guild_id", "t.author_id", "t.access_version"),
    " AND (t.token_hash IS NULL OR ",
    session_holds!("t.token_hash", "t.session_serial"),
    ") ORDER BY ord
       ON CONFLICT (channel_id, author_id, nonce) DO NOTHING RETURNING id),
     ok AS (SELECT t.* FROM t JOIN m ON m.id = t.id),
     n AS (SELECT stream_id, count(*) AS c FROM ok GROUP BY stream_id),
     h AS (INSERT INTO streams (id, head) SELECT stream_id, c FROM n ORDER BY stream_id
       ON CONFLICT (id) DO UPDATE SET head = streams.head + EXCLUDED.head RETURNING id, head),
     e AS (INSERT INTO events (stream_id, seq, namespace, op, payload, exclude_session,
       collapse_key, created_at, audience, access, ref_id)
       SELECT ok.stream_id, h.head - n.c + row_number() OVER (PARTITION BY ok.stream_id ORDER BY ok.ord),
       ok.namespace, ok.op, ok.payload, ok.exclude_session, ok.collapse_key, ok.event_at,
       ok.audience, ok.access, ok.id
       FROM ok JOIN n ON n.stream_id = ok.stream_id JOIN h ON h.id = ok.stream_id
       RETURNING seq, ref_id)
     SELECT t.ord, e.seq FROM e JOIN t ON t.id = e.ref_id"
);

fn bulk_send(
    m: &MessageRow,
    e: &NewEvent,
    access_version: Option<i64>,
    session: Option<&SessionGuard>,
) -> BulkRow {
    let mut values = send_values(m);
    values.extend(e.values());
    values.push(access_version.into());
    values.extend(guard_values(session));
    BulkRow {
        sql: BULK_SEND,
        values,
    }
}

/// The columns of a send, in the order both engines' statements take them.
fn send_values(m: &MessageRow) -> Vec<Value> {
    params![
        m.id,
        m.guild_id,
        m.channel_id,
        m.author_id,
        m.nonce.clone(),
        m.content.clone(),
        m.signature.clone(),
        m.cert_pem.clone(),
        m.cert_serial,
        m.reply_to,
        m.created_at
    ]
}

/// The columns of a send's [`SessionGuard`] (NULL without one).
fn guard_values(session: Option<&SessionGuard>) -> [Value; 2] {
    [
        Value::Blob(session.map(|g| g.token_hash.clone())),
        Value::Int(session.and_then(|g| g.cert_serial)),
    ]
}

/// Links message `id` to the attachments `rids` (after the statement that stored it: a
/// refused send links nothing).
fn link_attachments(id: i64, rids: &[String]) -> impl Iterator<Item = Stmt> + '_ {
    rids.iter().map(move |rid| {
        Stmt::new(
            "INSERT INTO message_attachments (rid, message_id) VALUES ($1, $2)
             ON CONFLICT (rid, message_id) DO NOTHING",
            params![rid.clone(), id],
        )
    })
}

/// What a send did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Stored; its event is at this position of the guild's stream.
    New(i64),
    /// The author sent this nonce in this channel before: the stored message, unchanged.
    Existing(Box<MessageRow>),
}

impl Store {
    /// Stores a message and its event, if its author is still a member of
    /// the guild and the channel still exists, and the access rules of its guild (or
    /// conversation) are still at `access_version` (when given: the version the caller
    /// checked the author's permissions at). A repeated `(channel, author, nonce)` stores
    /// nothing and answers the message stored before ([`Sent::Existing`]).
    /// [`Conflict::NotAMember`] when the author is no member, the channel is gone or the
    /// rules changed; [`Error::Unique`] when the id is taken (the caller draws another).
    /// With a `session` guard, also only while that session holds (refused like an author
    /// who is no member).
    pub async fn insert_message(
        &self,
        m: &MessageRow,
        e: &NewEvent,
        access_version: Option<i64>,
        session: Option<&SessionGuard>,
    ) -> Result<Sent> {
        self.insert_message_attaching(m, &[], e, access_version, session)
            .await
    }

    /// [`Store::insert_message`], linking the message to the attachments `rids` in the same
    /// transaction.
    pub async fn insert_message_attaching(
        &self,
        m: &MessageRow,
        rids: &[String],
        e: &NewEvent,
        access_version: Option<i64>,
        session: Option<&SessionGuard>,
    ) -> Result<Sent> {
        let stored = match self.postgres() {
            // Sends to one busy channel queue behind its stream's row: committed as a group,
            // on PostgreSQL as one statement per group (`BULK_SEND`).
            Some(pg) if rids.is_empty() => pg
                .bulk(bulk_send(m, e, access_version, session))
                .await?
                .first()
                .map(|r| r.i64(0))
                .transpose()?
                .ok_or(Error::Conflict(Conflict::MessageRefused)),
            _ => {
                let mut stmts = vec![
                    Stmt::new(
                        concat!(
                            "INSERT INTO messages (id, guild_id, channel_id, author_id, nonce, content, signature, cert_pem, cert_serial, version_nonce, reply_to, created_at, version)
                             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $5, $10, $11, 1
                             WHERE ",
                            may_send!("$3", "$2", "$4", "$12"),
                            " AND ($13 IS NULL OR ",
                            session_holds!("$13", "$14"),
                            ") ON CONFLICT (channel_id, author_id, nonce) DO NOTHING"
                        ),
                        {
                            let mut p = send_values(m);
                            p.push(access_version.into());
                            p.extend(guard_values(session));
                            p
                        },
                    )
                    .affects(1)
                    .or(Conflict::MessageRefused),
                ];
                stmts.extend(link_attachments(m.id, rids));
                let at = push_append(&mut stmts, &about_message(m, e));
                self.grouped_rows(stmts)
                    .await
                    .and_then(|out| taken(&out, at))
            }
        };
        match stored {
            Ok(seq) => Ok(Sent::New(seq)),
            Err(Error::Conflict(Conflict::MessageRefused)) => {
                // A repeated nonce is answered with the message stored first, but never to a
                // session that no longer holds.
                let existing = self
                    .message_by_nonce(m.channel_id, m.author_id, &m.nonce)
                    .await?;
                match (existing, session) {
                    (Some(_), Some(guard)) if !self.session_holds(guard).await? => {
                        Err(Error::Conflict(Conflict::NotAMember))
                    }
                    (Some(existing), _) => Ok(Sent::Existing(Box::new(existing))),
                    (None, _) => Err(Error::Conflict(Conflict::NotAMember)),
                }
            }
            Err(e) => Err(e),
        }
    }

    pub async fn message(&self, id: i64) -> Result<Option<MessageRow>> {
        self.query(
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages m JOIN actors a ON a.id = m.author_id WHERE m.id = $1"
            ),
            params![id],
        )
        .await?
        .first()
        .map(message)
        .transpose()
    }

    /// A channel's pinned messages that are not deleted, the latest pinned first, each with
    /// who pinned it and when: one read.
    pub async fn pinned_messages(&self, channel_id: i64) -> Result<Vec<PinnedRow>> {
        const SQL: &str = concat!(
            "SELECT ",
            message_columns!(),
            ", pa.local_name, p.pinned_at FROM channel_pins p
             JOIN messages m ON m.id = p.message_id
             JOIN actors a ON a.id = m.author_id
             JOIN actors pa ON pa.id = p.pinned_by
             WHERE p.channel_id = $1 AND m.deleted_at IS NULL
             ORDER BY p.pinned_at DESC, p.message_id DESC"
        );
        self.query(SQL, params![channel_id])
            .await?
            .into_iter()
            .map(|Row(mut cells)| {
                let pin = Row(cells.split_off(MESSAGE_COLUMNS));
                Ok(PinnedRow {
                    message: message(&Row(cells))?,
                    pinned_by: pin.string(0)?,
                    pinned_at: pin.i64(1)?,
                })
            })
            .collect()
    }

    pub async fn message_by_nonce(
        &self,
        channel_id: i64,
        author_id: i64,
        nonce: &str,
    ) -> Result<Option<MessageRow>> {
        self.query(
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages m JOIN actors a ON a.id = m.author_id
                 WHERE m.channel_id = $1 AND m.author_id = $2 AND m.nonce = $3"
            ),
            params![channel_id, author_id, nonce.to_owned()],
        )
        .await?
        .first()
        .map(message)
        .transpose()
    }

    /// Up to `limit` messages of a channel with ids below `before` (all without it), newest
    /// first. Tombstones included.
    pub async fn messages_before(
        &self,
        channel_id: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<MessageRow>> {
        self.query(
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages m JOIN actors a ON a.id = m.author_id
                 WHERE m.channel_id = $1 AND m.id < $2 ORDER BY m.id DESC LIMIT $3"
            ),
            params![channel_id, before.unwrap_or(i64::MAX), limit],
        )
        .await?
        .iter()
        .map(message)
        .collect()
    }

    /// Up to `limit` messages of a channel with ids above `after`, oldest first.
    pub async fn messages_after(
        &self,
        channel_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<MessageRow>> {
        self.query(
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages m JOIN actors a ON a.id = m.author_id
                 WHERE m.channel_id = $1 AND m.id > $2 ORDER BY m.id LIMIT $3"
            ),
            params![channel_id, after, limit],
        )
        .await?
        .iter()
        .map(message)
        .collect()
    }

    /// Makes `v` (version `v.version`, which must be the next one) the message's current
    /// version; the version it replaces goes to the message's history
    /// ([`Conflict::MessageChanged`] when it was deleted or edited meanwhile;
    /// [`Conflict::NonceUsed`] when the author signed a version of it with this nonce before).
    pub async fn edit_message(&self, v: &MessageVersionRow, e: &NewEvent) -> Result<i64> {
        self.edit_message_attaching(v, &[], e).await
    }

    /// [`Store::edit_message`], linking the message to the attachments `rids` (its earlier
    /// versions keep theirs: they stay readable in its history).
    pub async fn edit_message_attaching(
        &self,
        v: &MessageVersionRow,
        rids: &[String],
        e: &NewEvent,
    ) -> Result<i64> {
        let mut stmts = vec![
            Stmt::new(
                concat!(
                    "INSERT INTO message_versions (",
                    version_columns!(),
                    ") ",
                    current_version!(),
                    " AND version = $2 - 1"
                ),
                params![v.message_id, v.version],
            )
            .affects(1)
            .or(Conflict::MessageChanged),
            Stmt::new(
                "UPDATE messages SET content = $3, signature = $4, cert_pem = $5, cert_serial = $6,
                 version_nonce = $7, edited_at = $8, version = $2
                 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM message_versions
                 WHERE message_id = $1 AND nonce = $7)",
                params![
                    v.message_id,
                    v.version,
                    v.content.clone(),
                    v.signature.clone(),
                    v.cert_pem.clone(),
                    v.cert_serial,
                    v.nonce.clone(),
                    v.created_at
                ],
            )
            .affects(1)
            .or(Conflict::NonceUsed),
        ];
        stmts.extend(link_attachments(v.message_id, rids));
        match self.transaction_with_event(stmts, e).await {
            // Another edit of the same version won (PostgreSQL: the history's key).
            Err(Error::Unique(_)) => Err(Error::Conflict(Conflict::MessageChanged)),
            done => done,
        }
    }

    /// Deletes a message: the row stays as a tombstone (id, author, times, who deleted it),
    /// its content, signature, versions and pin go, and every event about it in its guild's
    /// stream gets `scrubbed` as payload; then `e` (the deletion) is appended
    /// ([`Conflict::MessageMissing`] when it is gone or deleted already).
    pub async fn delete_message(
        &self,
        id: i64,
        guild_id: i64,
        by: i64,
        now: i64,
        scrubbed: &str,
        e: &NewEvent,
    ) -> Result<i64> {
        let stmts = vec![
            Stmt::new(
                "UPDATE messages SET content = '', signature = '', cert_pem = '', deleted_at = $2, deleted_by = $3
                 WHERE id = $1 AND guild_id = $4 AND deleted_at IS NULL",
                params![id, now, by, guild_id],
            )
            .affects(1)
            .or(Conflict::MessageMissing),
            Stmt::new(
                "DELETE FROM message_versions WHERE message_id = $1",
                params![id],
            ),
            // A pin of a deleted message would hold one of the channel's places unseen.
            Stmt::new(
                "DELETE FROM channel_pins
                 WHERE channel_id = (SELECT channel_id FROM messages WHERE id = $1) AND message_id = $1",
                params![id],
            ),
            Stmt::new(
                "UPDATE events SET payload = $3 WHERE stream_id = $1 AND ref_id = $2",
                params![guild_id, id, scrubbed.to_owned()],
            ),
            // Who may read the message no longer reads its attachments through it.
            Stmt::new(
                "DELETE FROM message_attachments WHERE message_id = $1",
                params![id],
            ),
        ];
        self.transaction_with_event(stmts, e).await
    }

    /// Every version of a message, oldest first (none once deleted).
    pub async fn message_versions(&self, message_id: i64) -> Result<Vec<MessageVersionRow>> {
        self.query(
            concat!(
                "SELECT ",
                version_columns!(),
                " FROM message_versions WHERE message_id = $1 UNION ALL ",
                current_version!(),
                " ORDER BY 2"
            ),
            params![message_id],
        )
        .await?
        .iter()
        .map(version)
        .collect()
    }

    /// Stores imported messages (core §7.3) in one transaction, each only while its author
    /// may post in its channel, as a send checks, and not if the author stored one under its
    /// nonce there before (importing again stores nothing twice). No event is appended: an
    /// import brings history, not news. How many were new.
    pub async fn import_messages(&self, rows: &[MessageRow]) -> Result<u64> {
        let stmts = rows
            .iter()
            .map(|m| {
                Stmt::new(
                    concat!(
                        "INSERT INTO messages (id, guild_id, channel_id, author_id, nonce, content, signature, cert_pem, cert_serial, version_nonce, reply_to, created_at, version)
                         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $5, $10, $11, 1
                         WHERE ",
                        may_send!("$3", "$2", "$4", "$12"),
                        " ON CONFLICT DO NOTHING"
                    ),
                    {
                        let mut p = send_values(m);
                        p.push(Value::Int(None));
                        p
                    },
                )
            })
            .collect();
        Ok(self.transaction(stmts).await?.iter().sum())
    }

    /// Up to `limit` live messages of `author_id` whose current version was signed with
    /// certificate `serial`, with ids above `after`, by id (an export's pages).
    pub async fn messages_signed_with(
        &self,
        author_id: i64,
        serial: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<MessageRow>> {
        self.query(
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages m JOIN actors a ON a.id = m.author_id
                 WHERE m.author_id = $1 AND m.cert_serial = $2 AND m.id > $3 AND m.deleted_at IS NULL
                 ORDER BY m.id LIMIT $4"
            ),
            params![author_id, serial, after, limit],
        )
        .await?
        .iter()
        .map(message)
        .collect()
    }

    /// Up to `limit` messages (not deleted) that a grant lets `new_fid` re-sign: by its old
    /// actor, signed with a granted certificate (only `serial`, when given), oldest first.
    pub async fn messages_to_resign(
        &self,
        old_actor_id: i64,
        new_fid: &str,
        serial: Option<i64>,
        limit: i64,
    ) -> Result<Vec<MessageRow>> {
        self.query(
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages m JOIN actors a ON a.id = m.author_id
                 JOIN resign_grant_serials s ON s.old_actor_id = m.author_id AND s.serial = m.cert_serial
                 WHERE m.author_id = $1 AND s.new_fid = $2 AND m.deleted_at IS NULL
                   AND ($3 IS NULL OR m.cert_serial = $3)
                 ORDER BY m.id LIMIT $4"
            ),
            params![old_actor_id, new_fid, serial, limit],
        )
        .await?
        .iter()
        .map(message)
        .collect()
    }

    /// Stores `resigned` — message `resigned.id` of `old_author_id` (not deleted), now by
    /// `resigned.author_id` with its `signature`, `cert_pem` and `cert_serial` — as the
    /// message's next version; the one it replaces stays as an earlier variant with its
    /// signature (core §7.4). Appends `e`. [`Conflict::MessageChanged`] when the message is no
    /// longer the old author's (deleted, or re-signed meanwhile).
    pub async fn resign_message(
        &self,
        resigned: &MessageRow,
        old_author_id: i64,
        e: &NewEvent,
    ) -> Result<i64> {
        let (id, new_author_id) = (resigned.id, resigned.author_id);
        let (signature, cert_pem, cert_serial) = (
            resigned.signature.as_str(),
            resigned.cert_pem.as_str(),
            resigned.cert_serial,
        );
        let stmts = vec![
            Stmt::new(
                concat!(
                    "INSERT INTO message_versions (",
                    version_columns!(),
                    ") ",
                    current_version!(),
                    " AND author_id = $2"
                ),
                params![id, old_author_id],
            )
            .affects(1)
            .or(Conflict::MessageChanged),
            Stmt::new(
                "UPDATE messages SET author_id = $3, signature = $4, cert_pem = $5, cert_serial = $6,
                 version = version + 1, resigned_at = $7 WHERE id = $1 AND author_id = $2",
                params![
                    id,
                    old_author_id,
                    new_author_id,
                    signature.to_owned(),
                    cert_pem.to_owned(),
                    cert_serial,
                    resigned.resigned_at
                ],
            )
            .affects(1)
            .or(Conflict::MessageChanged),
        ];
        match self.transaction_with_event(stmts, e).await {
            // The new author used the message's nonce in its channel already.
            Err(crate::Error::Unique(_)) => Err(crate::Error::Conflict(Conflict::NonceUsed)),
            done => done,
        }
    }
}
