//! Persistence of what surrounds messages: signed reactions, pins, read markers, the
//! presence of gateway connections per node, and actor profiles.
//!
//! Reactions and pins are written with their event in one transaction, and only when they
//! change something ([`Conflict::Unchanged`] otherwise, with nothing appended). Unread and
//! mention counts walk the `messages_channel` index from the marker on and stop at a cap.

use super::push_append;
use crate::engine::{Conflict, Error, Result, Row, Stmt};
use crate::events::{NewEvent, taken};
use crate::{Store, params};

/// A signed change of an actor's reaction to a message: what its nonce is remembered with.
#[derive(Debug, Clone, Copy)]
pub struct ReactionChange<'a> {
    pub message_id: i64,
    pub channel_id: i64,
    pub actor_id: i64,
    pub emoji: &'a str,
    pub nonce: &'a str,
}

/// Records that the actor signed a change of its reaction to the message with `nonce`
/// (refused with [`Conflict::NonceUsed`] when it did so before).
fn use_reaction_nonce(c: &ReactionChange<'_>, added: bool) -> Stmt {
    Stmt::new(
        "INSERT INTO reaction_nonces (message_id, actor_id, nonce, channel_id, emoji, added)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        params![
            c.message_id,
            c.actor_id,
            c.nonce.to_owned(),
            c.channel_id,
            c.emoji.to_owned(),
            i64::from(added)
        ],
    )
    .affects(1)
    .or(Conflict::NonceUsed)
}

/// A signed reaction as stored, with its author's stored name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionRow {
    pub message_id: i64,
    pub emoji: String,
    pub actor_id: i64,
    /// `actors.local_name` of the author (filled on reads).
    pub actor_name: String,
    pub channel_id: i64,
    pub nonce: String,
    pub signature: String,
    pub cert_pem: String,
    pub cert_serial: i64,
    pub created_at: i64,
}

impl ReactionRow {
    /// The change that added this reaction.
    fn change(&self) -> ReactionChange<'_> {
        ReactionChange {
            message_id: self.message_id,
            channel_id: self.channel_id,
            actor_id: self.actor_id,
            emoji: &self.emoji,
            nonce: &self.nonce,
        }
    }
}

fn reaction(r: &Row) -> Result<ReactionRow> {
    Ok(ReactionRow {
        message_id: r.i64(0)?,
        emoji: r.string(1)?,
        actor_id: r.i64(2)?,
        actor_name: r.string(3)?,
        channel_id: r.i64(4)?,
        nonce: r.string(5)?,
        signature: r.string(6)?,
        cert_pem: r.string(7)?,
        cert_serial: r.i64(8)?,
        created_at: r.i64(9)?,
    })
}

macro_rules! reaction_columns {
    () => {
        "r.message_id, r.emoji, r.actor_id, a.local_name, r.channel_id, r.nonce, r.signature, r.cert_pem, r.cert_serial, r.created_at"
    };
}

/// A read marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRow {
    pub channel_id: i64,
    pub last_read: i64,
}

/// An actor's profile and presence settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfileRow {
    pub actor_id: i64,
    pub display_name: Option<String>,
    pub pronouns: Option<String>,
    pub about: Option<String>,
    pub timezone: Option<String>,
    /// The availability the actor set (0 = invisible).
    pub availability: i64,
    pub status: Option<String>,
    pub updated_at: i64,
    /// The URL of a public image resource of the actor's.
    pub avatar: Option<String>,
}

fn profile(r: &Row) -> Result<ProfileRow> {
    Ok(ProfileRow {
        actor_id: r.i64(0)?,
        display_name: r.opt_string(1)?,
        pronouns: r.opt_string(2)?,
        about: r.opt_string(3)?,
        timezone: r.opt_string(4)?,
        availability: r.i64(5)?,
        status: r.opt_string(6)?,
        updated_at: r.i64(7)?,
        avatar: r.opt_string(8)?,
    })
}

impl Store {
    // ---- reactions ----

    /// Stores a reaction and appends its event, if the message is there and not deleted
    /// and the actor has not reacted so before ([`Conflict::Unchanged`]) nor signed a
    /// reaction change to the message with this nonce ([`Conflict::NonceUsed`]).
    pub async fn add_reaction(&self, r: &ReactionRow, e: &NewEvent) -> Result<i64> {
        let stmts = vec![
            use_reaction_nonce(&r.change(), true),
            Stmt::new(
                "INSERT INTO message_reactions (message_id, emoji, actor_id, channel_id, nonce, signature, cert_pem, cert_serial, created_at)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
                 WHERE EXISTS (SELECT 1 FROM messages WHERE id = $1 AND channel_id = $4 AND deleted_at IS NULL)
                 ON CONFLICT (message_id, emoji, actor_id) DO NOTHING",
                params![
                    r.message_id,
                    r.emoji.clone(),
                    r.actor_id,
                    r.channel_id,
                    r.nonce.clone(),
                    r.signature.clone(),
                    r.cert_pem.clone(),
                    r.cert_serial,
                    r.created_at
                ],
            )
            .affects(1)
            .or(Conflict::Unchanged),
        ];
        self.transaction_with_event(stmts, e).await
    }

    /// Removes an actor's reaction and appends its event ([`Conflict::Unchanged`] when it
    /// had none, [`Conflict::NonceUsed`] when it signed a reaction change to the message with
    /// this nonce before).
    pub async fn remove_reaction(&self, r: &ReactionChange<'_>, e: &NewEvent) -> Result<i64> {
        let stmts = vec![
            use_reaction_nonce(r, false),
            Stmt::new(
                "DELETE FROM message_reactions WHERE message_id = $1 AND emoji = $2 AND actor_id = $3",
                params![r.message_id, r.emoji.to_owned(), r.actor_id],
            )
            .affects(1)
            .or(Conflict::Unchanged),
        ];
        self.transaction_with_event(stmts, e).await
    }

    /// What the actor signed with `nonce` about the message, if anything: the reaction it
    /// changed, whether it added it, and whether the actor has that reaction now.
    pub async fn reaction_nonce(
        &self,
        message_id: i64,
        actor_id: i64,
        nonce: &str,
    ) -> Result<Option<(String, bool, bool)>> {
        self.query(
            "SELECT n.emoji, n.added, EXISTS (SELECT 1 FROM message_reactions r
             WHERE r.message_id = $1 AND r.actor_id = $2 AND r.emoji = n.emoji)
             FROM reaction_nonces n WHERE n.message_id = $1 AND n.actor_id = $2 AND n.nonce = $3",
            params![message_id, actor_id, nonce.to_owned()],
        )
        .await?
        .first()
        .map(|r| Ok((r.string(0)?, r.i64(1)? != 0, r.i64(2)? != 0)))
        .transpose()
    }

    /// Who reacted to a message with `emoji`, first first (at most `limit`).
    pub async fn reactions_with(
        &self,
        message_id: i64,
        emoji: &str,
        limit: i64,
    ) -> Result<Vec<ReactionRow>> {
        self.query(
            concat!(
                "SELECT ",
                reaction_columns!(),
                " FROM message_reactions r JOIN actors a ON a.id = r.actor_id
                 WHERE r.message_id = $1 AND r.emoji = $2 ORDER BY r.created_at, r.actor_id LIMIT $3"
            ),
            params![message_id, emoji.to_owned(), limit],
        )
        .await?
        .iter()
        .map(reaction)
        .collect()
    }

    /// The reactions to the messages of a channel with ids from `low` to `high` (a page of
    /// history), by message and then in the order they came.
    pub async fn reactions_between(
        &self,
        channel_id: i64,
        low: i64,
        high: i64,
    ) -> Result<Vec<ReactionRow>> {
        self.query(
            concat!(
                "SELECT ",
                reaction_columns!(),
                " FROM message_reactions r JOIN actors a ON a.id = r.actor_id
                 WHERE r.channel_id = $1 AND r.message_id >= $2 AND r.message_id <= $3
                 ORDER BY r.message_id, r.created_at, r.actor_id"
            ),
            params![channel_id, low, high],
        )
        .await?
        .iter()
        .map(reaction)
        .collect()
    }

    // ---- pins ----

    /// Pins a message that is there and not deleted, and appends its event
    /// ([`Conflict::Unchanged`] when it is pinned already or gone, [`Conflict::PinsFull`]
    /// when the channel has `max` pins).
    pub async fn pin(
        &self,
        channel_id: i64,
        message_id: i64,
        by: i64,
        now: i64,
        max: i64,
        e: &NewEvent,
    ) -> Result<i64> {
        let mut stmts = vec![
            Stmt::new(
                "INSERT INTO channel_pins (channel_id, message_id, pinned_by, pinned_at)
                 SELECT $1, $2, $3, $4
                 WHERE EXISTS (SELECT 1 FROM messages WHERE id = $2 AND channel_id = $1 AND deleted_at IS NULL)
                 AND (SELECT COUNT(*) FROM channel_pins WHERE channel_id = $1) < $5
                 ON CONFLICT (channel_id, message_id) DO NOTHING",
                params![channel_id, message_id, by, now, max],
            )
            .affects(1)
            .or(Conflict::Unchanged),
        ];
        let at = push_append(&mut stmts, e);
        match self.transaction_rows(stmts).await {
            Ok(out) => taken(&out, at),
            Err(Error::Conflict(Conflict::Unchanged)) => {
                let pinned = self.pins(channel_id).await?;
                if !pinned.contains(&message_id) && pinned.len() as i64 >= max {
                    Err(Error::Conflict(Conflict::PinsFull))
                } else {
                    Err(Error::Conflict(Conflict::Unchanged))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Unpins a message and appends its event ([`Conflict::Unchanged`] when it was not
    /// pinned).
    pub async fn unpin(&self, channel_id: i64, message_id: i64, e: &NewEvent) -> Result<i64> {
        let stmts = vec![
            Stmt::new(
                "DELETE FROM channel_pins WHERE channel_id = $1 AND message_id = $2",
                params![channel_id, message_id],
            )
            .affects(1)
            .or(Conflict::Unchanged),
        ];
        self.transaction_with_event(stmts, e).await
    }

    /// The ids of a channel's pinned messages that are not deleted, the latest pinned first
    /// (of [`Store::pinned_messages`]).
    pub async fn pins(&self, channel_id: i64) -> Result<Vec<i64>> {
        Ok(self
            .pinned_messages(channel_id)
            .await?
            .into_iter()
            .map(|p| p.message.id)
            .collect())
    }

    // ---- read states ----

    /// Sets an actor's read marker of a channel and appends `e` (to the actor's stream).
    pub async fn set_read_state(
        &self,
        actor_id: i64,
        channel_id: i64,
        last_read: i64,
        now: i64,
        e: &NewEvent,
    ) -> Result<i64> {
        let stmts = vec![Stmt::new(
            "INSERT INTO read_states (actor_id, channel_id, last_read, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (actor_id, channel_id) DO UPDATE SET last_read = excluded.last_read, updated_at = excluded.updated_at",
            params![actor_id, channel_id, last_read, now],
        )];
        self.transaction_with_event(stmts, e).await
    }

    /// An actor's read markers.
    pub async fn read_states(&self, actor_id: i64) -> Result<Vec<ReadRow>> {
        self.query(
            "SELECT channel_id, last_read FROM read_states WHERE actor_id = $1",
            params![actor_id],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(ReadRow {
                channel_id: r.i64(0)?,
                last_read: r.i64(1)?,
            })
        })
        .collect()
    }

    /// Of the first `cap` messages of a channel after `after` that are not deleted and not
    /// the actor's: how many there are, and how many of them mention it (`mention` is a
    /// LIKE pattern with `\` as escape) or everyone.
    pub async fn unread_counts(
        &self,
        channel_id: i64,
        after: i64,
        actor_id: i64,
        mention: &str,
        cap: i64,
    ) -> Result<(i64, i64)> {
        let rows = self
            .query(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN t.content LIKE $4 ESCAPE '\\' OR t.content LIKE '%@everyone%' THEN 1 ELSE 0 END), 0)
                 FROM (SELECT content FROM messages
                       WHERE channel_id = $1 AND id > $2 AND author_id <> $3 AND deleted_at IS NULL
                       ORDER BY id LIMIT $5) t",
                params![channel_id, after, actor_id, mention.to_owned(), cap],
            )
            .await?;
        match rows.first() {
            Some(r) => Ok((r.i64(0)?, r.i64(1)?)),
            None => Ok((0, 0)),
        }
    }

    // ---- presence ----

    /// Records that `node` holds a chat connection of the actor (or refreshes it).
    pub async fn presence_up(&self, actor_id: i64, node: &str, now: i64) -> Result<()> {
        self.execute_unit(
            "INSERT INTO presence_connections (actor_id, node, seen_at) VALUES ($1, $2, $3)
             ON CONFLICT (actor_id, node) DO UPDATE SET seen_at = excluded.seen_at",
            params![actor_id, node.to_owned(), now],
        )
        .await
    }

    /// `node` holds no chat connection of the actor any more.
    pub async fn presence_down(&self, actor_id: i64, node: &str) -> Result<()> {
        self.execute_unit(
            "DELETE FROM presence_connections WHERE actor_id = $1 AND node = $2",
            params![actor_id, node.to_owned()],
        )
        .await
    }

    /// Marks every connection row of `node` as seen at `now` (the node is alive).
    pub async fn presence_refresh(&self, node: &str, now: i64) -> Result<u64> {
        self.execute(
            "UPDATE presence_connections SET seen_at = $2 WHERE node = $1",
            params![node.to_owned(), now],
        )
        .await
    }

    /// Forgets every connection row of `node` (it stops), and rows no node refreshed since
    /// `stale_before`.
    pub async fn presence_drop_node(&self, node: &str, stale_before: i64) -> Result<u64> {
        self.execute(
            "DELETE FROM presence_connections WHERE node = $1 OR seen_at < $2",
            params![node.to_owned(), stale_before],
        )
        .await
    }

    /// Whether any node refreshed a connection row of the actor since `fresh_since`.
    pub async fn presence_connected(&self, actor_id: i64, fresh_since: i64) -> Result<bool> {
        Ok(!self
            .query(
                "SELECT 1 FROM presence_connections WHERE actor_id = $1 AND seen_at >= $2 LIMIT 1",
                params![actor_id, fresh_since],
            )
            .await?
            .is_empty())
    }

    /// Whether two actors are members of one guild.
    pub async fn share_a_guild(&self, a: i64, b: i64) -> Result<bool> {
        Ok(!self
            .query(
                "SELECT 1 FROM guild_members x JOIN guild_members y ON y.guild_id = x.guild_id
                 WHERE x.actor_id = $1 AND y.actor_id = $2 LIMIT 1",
                params![a, b],
            )
            .await?
            .is_empty())
    }

    // ---- profiles ----

    /// An actor's profile, if it ever set one.
    pub async fn profile(&self, actor_id: i64) -> Result<Option<ProfileRow>> {
        self.query(
            "SELECT actor_id, display_name, pronouns, about, timezone, availability, status, updated_at,
                 avatar
             FROM actor_profiles WHERE actor_id = $1",
            params![actor_id],
        )
        .await?
        .first()
        .map(profile)
        .transpose()
    }

    /// Writes an actor's profile and appends `events` (its own stream's and its guilds')
    /// in one transaction; their positions, in order.
    pub async fn set_profile(&self, p: &ProfileRow, events: &[NewEvent]) -> Result<Vec<i64>> {
        let mut stmts = vec![Stmt::new(
            "INSERT INTO actor_profiles (actor_id, display_name, pronouns, about, timezone, availability, status, updated_at, avatar)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (actor_id) DO UPDATE SET display_name = excluded.display_name,
             pronouns = excluded.pronouns, about = excluded.about, timezone = excluded.timezone,
             availability = excluded.availability, status = excluded.status, updated_at = excluded.updated_at,
             avatar = excluded.avatar",
            params![
                p.actor_id,
                p.display_name.clone(),
                p.pronouns.clone(),
                p.about.clone(),
                p.timezone.clone(),
                p.availability,
                p.status.clone(),
                p.updated_at,
                p.avatar.clone()
            ],
        )];
        let ats: Vec<usize> = events.iter().map(|e| push_append(&mut stmts, e)).collect();
        let out = self.transaction_rows(stmts).await?;
        ats.into_iter().map(|at| taken(&out, at)).collect()
    }
}
