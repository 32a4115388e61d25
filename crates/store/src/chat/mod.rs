//! Persistence of chat guilds: guilds, channels, members, roles, channel overwrites, bans and
//! guild invites (messages in `messages.rs`).
//!
//! Every write that changes what a guild's followers see records its event in the same
//! transaction ([`Append`]): the guild's stream has the guild's id and is created with it.
//! Writes that change who may see what also bump `guilds.access_version`, which the server's
//! permission snapshots are cached by. Rules (who may do what) live in the server; these
//! verbs guard only integrity, and name each refusal with a [`Conflict`].

mod community;
mod conversations;
mod messages;

pub(crate) use conversations::touch as touch_conversation;

pub use community::{ProfileRow, ReactionChange, ReactionRow, ReadRow};
pub use conversations::{ConversationMemberRow, ConversationRow};
pub use messages::{MessageRow, MessageVersionRow, PinnedRow, Sent};

use crate::engine::{Conflict, Result, Row, Stmt};
use crate::events::{Append, NewEvent, taken};
use crate::{Store, params};

/// A guild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuildRow {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub icon: Option<String>,
    pub owner_id: i64,
    pub private: bool,
    pub created_at: i64,
    /// Bumped by every change of members, roles, overwrites, channels or bans.
    pub access_version: i64,
}

macro_rules! guild_columns {
    () => {
        "id, name, description, icon, owner_id, private, created_at, access_version"
    };
}

fn guild(r: &Row) -> Result<GuildRow> {
    Ok(GuildRow {
        id: r.i64(0)?,
        name: r.string(1)?,
        description: r.opt_string(2)?,
        icon: r.opt_string(3)?,
        owner_id: r.i64(4)?,
        private: r.bool(5)?,
        created_at: r.i64(6)?,
        access_version: r.i64(7)?,
    })
}

/// A channel or category of a guild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRow {
    pub id: i64,
    pub guild_id: i64,
    pub name: String,
    pub kind: i64,
    pub topic: Option<String>,
    pub parent_id: Option<i64>,
    pub position: i64,
    pub created_at: i64,
}

macro_rules! channel_columns {
    () => {
        "id, guild_id, name, kind, topic, parent_id, position, created_at"
    };
}

fn channel(r: &Row) -> Result<ChannelRow> {
    Ok(ChannelRow {
        id: r.i64(0)?,
        guild_id: r.i64(1)?,
        name: r.string(2)?,
        kind: r.i64(3)?,
        topic: r.opt_string(4)?,
        parent_id: r.opt_i64(5)?,
        position: r.i64(6)?,
        created_at: r.i64(7)?,
    })
}

/// A member of a guild, with the stored name of its actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub guild_id: i64,
    pub actor_id: i64,
    /// `actors.local_name`: a local name, or a foreign actor's whole FID.
    pub local_name: String,
    pub joined_at: i64,
    /// The position of the guild's stream where the membership began (its join event).
    pub since: i64,
}

macro_rules! member_columns {
    () => {
        "m.guild_id, m.actor_id, a.local_name, m.joined_at, m.since"
    };
}

fn member(r: &Row) -> Result<MemberRow> {
    Ok(MemberRow {
        guild_id: r.i64(0)?,
        actor_id: r.i64(1)?,
        local_name: r.string(2)?,
        joined_at: r.i64(3)?,
        since: r.i64(4)?,
    })
}

/// A role; `@everyone` has the guild's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRow {
    pub id: i64,
    pub guild_id: i64,
    pub name: String,
    /// The permission bits (as the server's `Permissions`, reinterpreted).
    pub permissions: i64,
    pub position: i64,
    pub color: Option<i64>,
}

macro_rules! role_columns {
    () => {
        "id, guild_id, name, permissions, position, color"
    };
}

fn role(r: &Row) -> Result<RoleRow> {
    Ok(RoleRow {
        id: r.i64(0)?,
        guild_id: r.i64(1)?,
        name: r.string(2)?,
        permissions: r.i64(3)?,
        position: r.i64(4)?,
        color: r.opt_i64(5)?,
    })
}

/// Whom an overwrite is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Role,
    Member,
}

impl TargetKind {
    fn code(self) -> &'static str {
        match self {
            TargetKind::Role => "r",
            TargetKind::Member => "m",
        }
    }

    fn decode(s: &str) -> Result<Self> {
        match s {
            "r" => Ok(TargetKind::Role),
            "m" => Ok(TargetKind::Member),
            other => Err(crate::Error::Decode(format!("overwrite kind {other:?}"))),
        }
    }
}

/// A channel's permission overwrite for a role or a member (an actor id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverwriteRow {
    pub channel_id: i64,
    pub kind: TargetKind,
    pub target_id: i64,
    pub allow: i64,
    pub deny: i64,
}

macro_rules! overwrite_columns {
    () => {
        "o.channel_id, o.target_kind, o.target_id, o.allow_bits, o.deny_bits"
    };
}

fn overwrite(r: &Row) -> Result<OverwriteRow> {
    Ok(OverwriteRow {
        channel_id: r.i64(0)?,
        kind: TargetKind::decode(&r.string(1)?)?,
        target_id: r.i64(2)?,
        allow: r.i64(3)?,
        deny: r.i64(4)?,
    })
}

/// A ban, with the stored names of the banned actor and of who banned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanRow {
    pub guild_id: i64,
    pub actor_id: i64,
    pub local_name: String,
    pub reason: Option<String>,
    pub banned_by: i64,
    pub banned_by_name: String,
    pub created_at: i64,
}

/// A guild invite; only the SHA-256 hash of its code is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuildInviteRow {
    pub code_hash: Vec<u8>,
    pub guild_id: i64,
    pub channel_id: i64,
    pub creator_id: i64,
    /// Stored name of the creator (filled on reads).
    pub creator_name: String,
    /// 0 = unlimited.
    pub max_uses: i64,
    pub uses: i64,
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

macro_rules! invite_columns {
    () => {
        "i.code_hash, i.guild_id, i.channel_id, i.creator_id, a.local_name, i.max_uses, i.uses, i.expires_at, i.created_at"
    };
}

fn invite(r: &Row) -> Result<GuildInviteRow> {
    Ok(GuildInviteRow {
        code_hash: r.bytes(0)?,
        guild_id: r.i64(1)?,
        channel_id: r.i64(2)?,
        creator_id: r.i64(3)?,
        creator_name: r.string(4)?,
        max_uses: r.i64(5)?,
        uses: r.i64(6)?,
        expires_at: r.opt_i64(7)?,
        created_at: r.i64(8)?,
    })
}

/// What the server needs to evaluate permissions in a guild: everything access depends on,
/// read at one `access_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuildAccess {
    pub guild: GuildRow,
    pub roles: Vec<RoleRow>,
    /// `(actor_id, since)` of every member.
    pub members: Vec<(i64, i64)>,
    /// `(actor_id, role_id)`.
    pub member_roles: Vec<(i64, i64)>,
    pub channels: Vec<ChannelRow>,
    pub overwrites: Vec<OverwriteRow>,
    /// `(channel_id, MLS group id)` of the encrypted channels.
    pub encrypted: Vec<(i64, String)>,
}

/// The encrypted channels of a guild's or a conversation's stream.
pub(crate) const ENCRYPTED_CHANNELS: &str =
    "SELECT channel_id, group_id FROM mls_channels WHERE stream_id = $1";

pub(crate) fn encrypted_channels(rows: &[Row]) -> Result<Vec<(i64, String)>> {
    rows.iter().map(|r| Ok((r.i64(0)?, r.string(1)?))).collect()
}

/// Locks a live guild's row for the transaction and marks a change of access
/// ([`Conflict::GuildMissing`] when it is gone).
pub(crate) fn touch_guild(guild_id: i64) -> Stmt {
    Stmt::new(
        "UPDATE guilds SET access_version = access_version + 1 WHERE id = $1 AND deleted_at IS NULL",
        params![guild_id],
    )
    .affects(1)
    .or(Conflict::GuildMissing)
}

/// Appends `e` as statements `stmts[i]` (take) and `stmts[i + 1]` (write) and returns `i`.
fn push_append(stmts: &mut Vec<Stmt>, e: &NewEvent) -> usize {
    let Append { take, write } = Append::new(e);
    let at = stmts.len();
    stmts.push(take);
    stmts.push(write);
    at
}

/// The insert of a member whose membership starts at the guild stream's head: between the
/// take and the write of the member-add event, that is the event's position.
fn insert_member(guild_id: i64, actor_id: i64, now: i64) -> Stmt {
    Stmt::new(
        "INSERT INTO guild_members (guild_id, actor_id, joined_at, since)
         SELECT $1, $2, $3, head FROM streams WHERE id = $1
         ON CONFLICT (guild_id, actor_id) DO NOTHING",
        params![guild_id, actor_id, now],
    )
    .affects(1)
    .or(Conflict::AlreadyMember)
}

/// Positions of a membership change: of the event in the guild's stream (where a join's
/// membership begins) and of the one in the actor's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Positions {
    pub guild: i64,
    pub actor: i64,
}

impl Store {
    /// Runs `stmts` with `e` appended in one transaction; returns the event's position.
    async fn transaction_with_event(&self, mut stmts: Vec<Stmt>, e: &NewEvent) -> Result<i64> {
        let at = push_append(&mut stmts, e);
        taken(&self.transaction_rows(stmts).await?, at)
    }

    // ---- guilds ----

    /// Creates a guild with its `@everyone` role (id = the guild's id, `everyone` bits),
    /// its first channel, its stream and its owner as first member. `member_added` goes to
    /// the guild's stream, `joined` to the owner's.
    pub async fn create_guild(
        &self,
        g: &GuildRow,
        everyone: i64,
        first: &ChannelRow,
        member_added: &NewEvent,
        joined: &NewEvent,
    ) -> Result<Positions> {
        let mut stmts = vec![
            Stmt::new(
                concat!(
                    "INSERT INTO guilds (",
                    guild_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, 0)"
                ),
                params![
                    g.id,
                    g.name.clone(),
                    g.description.clone(),
                    g.icon.clone(),
                    g.owner_id,
                    g.private,
                    g.created_at
                ],
            ),
            Stmt::new(
                concat!(
                    "INSERT INTO roles (",
                    role_columns!(),
                    ") VALUES ($1, $1, '@everyone', $2, 0, NULL)"
                ),
                params![g.id, everyone],
            ),
            insert_channel_stmt(first),
        ];
        let take = stmts.len();
        let Append { take: t, write: w } = Append::new(member_added);
        stmts.push(t);
        stmts.push(insert_member(g.id, g.owner_id, g.created_at));
        stmts.push(w);
        let actor = push_append(&mut stmts, joined);
        let out = self.transaction_rows(stmts).await?;
        Ok(Positions {
            guild: taken(&out, take)?,
            actor: taken(&out, actor)?,
        })
    }

    /// A guild that is not deleted.
    pub async fn guild(&self, id: i64) -> Result<Option<GuildRow>> {
        self.query(
            concat!(
                "SELECT ",
                guild_columns!(),
                " FROM guilds WHERE id = $1 AND deleted_at IS NULL"
            ),
            params![id],
        )
        .await?
        .first()
        .map(guild)
        .transpose()
    }

    pub async fn member_count(&self, guild_id: i64) -> Result<i64> {
        self.query(
            "SELECT COUNT(*) FROM guild_members WHERE guild_id = $1",
            params![guild_id],
        )
        .await?
        .first()
        .map_or(Ok(0), |r| r.i64(0))
    }

    /// The guilds an actor is a member of, with where each membership began.
    pub async fn guilds_of(&self, actor_id: i64) -> Result<Vec<(i64, i64)>> {
        self.query(
            "SELECT m.guild_id, m.since FROM guild_members m JOIN guilds g ON g.id = m.guild_id
             WHERE m.actor_id = $1 AND g.deleted_at IS NULL ORDER BY m.guild_id",
            params![actor_id],
        )
        .await?
        .iter()
        .map(|r| Ok((r.i64(0)?, r.i64(1)?)))
        .collect()
    }

    /// Writes a guild's name, description, icon and privacy ([`Conflict::GuildMissing`]).
    pub async fn update_guild(&self, g: &GuildRow, e: &NewEvent) -> Result<i64> {
        let stmts = vec![
            Stmt::new(
                "UPDATE guilds SET name = $2, description = $3, icon = $4, private = $5
                 WHERE id = $1 AND deleted_at IS NULL",
                params![
                    g.id,
                    g.name.clone(),
                    g.description.clone(),
                    g.icon.clone(),
                    g.private
                ],
            )
            .affects(1)
            .or(Conflict::GuildMissing),
        ];
        self.transaction_with_event(stmts, e).await
    }

    /// Hands a guild from `from` to `to`, who must be a member ([`Conflict::NotOwner`] when
    /// `from` no longer owns it, [`Conflict::NotAMember`]).
    pub async fn transfer_guild(&self, id: i64, from: i64, to: i64, e: &NewEvent) -> Result<i64> {
        let stmts = vec![
            Stmt::new(
                "UPDATE guild_members SET since = since WHERE guild_id = $1 AND actor_id = $2",
                params![id, to],
            )
            .affects(1)
            .or(Conflict::NotAMember),
            Stmt::new(
                "UPDATE guilds SET owner_id = $3, access_version = access_version + 1
                 WHERE id = $1 AND owner_id = $2 AND deleted_at IS NULL",
                params![id, from, to],
            )
            .affects(1)
            .or(Conflict::NotOwner),
        ];
        self.transaction_with_event(stmts, e).await
    }

    /// Deletes a guild: the row stays as a tombstone, everything in it goes — channels,
    /// messages and their versions, roles, members, overwrites, bans, invites and the events
    /// of its stream — and `e` (its deletion) is the stream's last event.
    pub async fn delete_guild(&self, id: i64, now: i64, e: &NewEvent) -> Result<i64> {
        let stmts = vec![
            Stmt::new(
                "UPDATE guilds SET deleted_at = $2, access_version = access_version + 1
                 WHERE id = $1 AND deleted_at IS NULL",
                params![id, now],
            )
            .affects(1)
            .or(Conflict::GuildMissing),
            Stmt::new(
                "DELETE FROM message_versions WHERE message_id IN (SELECT id FROM messages WHERE guild_id = $1)",
                params![id],
            ),
            Stmt::new("DELETE FROM messages WHERE guild_id = $1", params![id]),
            Stmt::new(
                "DELETE FROM message_reactions WHERE channel_id IN (SELECT id FROM channels WHERE guild_id = $1)",
                params![id],
            ),
            Stmt::new(
                "DELETE FROM reaction_nonces WHERE channel_id IN (SELECT id FROM channels WHERE guild_id = $1)",
                params![id],
            ),
            Stmt::new(
                "DELETE FROM channel_pins WHERE channel_id IN (SELECT id FROM channels WHERE guild_id = $1)",
                params![id],
            ),
            Stmt::new(
                "DELETE FROM read_states WHERE channel_id IN (SELECT id FROM channels WHERE guild_id = $1)",
                params![id],
            ),
            Stmt::new(
                "DELETE FROM channel_overwrites WHERE channel_id IN (SELECT id FROM channels WHERE guild_id = $1)",
                params![id],
            ),
            Stmt::new("DELETE FROM channels WHERE guild_id = $1", params![id]),
            Stmt::new("DELETE FROM member_roles WHERE guild_id = $1", params![id]),
            Stmt::new("DELETE FROM roles WHERE guild_id = $1", params![id]),
            Stmt::new("DELETE FROM guild_members WHERE guild_id = $1", params![id]),
            Stmt::new("DELETE FROM guild_bans WHERE guild_id = $1", params![id]),
            Stmt::new("DELETE FROM guild_invites WHERE guild_id = $1", params![id]),
            Stmt::new("DELETE FROM events WHERE stream_id = $1", params![id]),
        ];
        self.transaction_with_event(stmts, e).await
    }

    /// Everything permissions in a guild depend on, as one consistent picture.
    pub async fn guild_access(&self, guild_id: i64) -> Result<Option<GuildAccess>> {
        // One read transaction: every part of the answer belongs to the same version.
        let p = || params![guild_id];
        let mut parts = self
            .read_together(vec![
                (
                    concat!(
                        "SELECT ",
                        guild_columns!(),
                        " FROM guilds WHERE id = $1 AND deleted_at IS NULL"
                    ),
                    p(),
                ),
                (
                    concat!(
                        "SELECT ",
                        role_columns!(),
                        " FROM roles WHERE guild_id = $1 ORDER BY position, id"
                    ),
                    p(),
                ),
                (
                    "SELECT actor_id, since FROM guild_members WHERE guild_id = $1",
                    p(),
                ),
                (
                    "SELECT actor_id, role_id FROM member_roles WHERE guild_id = $1",
                    p(),
                ),
                (
                    concat!(
                        "SELECT ",
                        channel_columns!(),
                        " FROM channels WHERE guild_id = $1 ORDER BY position, id"
                    ),
                    p(),
                ),
                (
                    concat!(
                        "SELECT ",
                        overwrite_columns!(),
                        " FROM channel_overwrites o JOIN channels c ON c.id = o.channel_id WHERE c.guild_id = $1"
                    ),
                    p(),
                ),
                (ENCRYPTED_CHANNELS, p()),
            ])
            .await?
            .into_iter();
        let mut next = || parts.next().unwrap_or_default();
        let Some(g) = next().first().map(guild).transpose()? else {
            return Ok(None);
        };
        let pairs = |rows: Vec<Row>| {
            rows.iter()
                .map(|r| Ok((r.i64(0)?, r.i64(1)?)))
                .collect::<Result<Vec<_>>>()
        };
        let roles = next().iter().map(role).collect::<Result<Vec<_>>>()?;
        let members = pairs(next())?;
        let member_roles = pairs(next())?;
        let channels = next().iter().map(channel).collect::<Result<Vec<_>>>()?;
        let overwrites = next().iter().map(overwrite).collect::<Result<Vec<_>>>()?;
        let encrypted = encrypted_channels(&next())?;
        Ok(Some(GuildAccess {
            guild: g,
            roles,
            members,
            member_roles,
            channels,
            overwrites,
            encrypted,
        }))
    }

    // ---- channels ----

    /// Adds a channel to a live guild ([`Conflict::GuildMissing`]) with its event; one made in
    /// a category starts with a copy of the category's overwrites (as they are at this
    /// commit).
    pub async fn insert_channel(&self, c: &ChannelRow, e: &NewEvent) -> Result<i64> {
        let mut stmts = vec![touch_guild(c.guild_id), insert_channel_stmt(c)];
        if let Some(category) = c.parent_id {
            stmts.push(Stmt::new(
                "INSERT INTO channel_overwrites (channel_id, target_kind, target_id, allow_bits, deny_bits)
                 SELECT $1, target_kind, target_id, allow_bits, deny_bits
                 FROM channel_overwrites WHERE channel_id = $2",
                params![c.id, category],
            ));
        }
        self.transaction_with_event(stmts, e).await
    }

    pub async fn channel(&self, id: i64) -> Result<Option<ChannelRow>> {
        self.query(
            concat!(
                "SELECT ",
                channel_columns!(),
                " FROM channels WHERE id = $1"
            ),
            params![id],
        )
        .await?
        .first()
        .map(channel)
        .transpose()
    }

    /// A guild's channels by position.
    pub async fn channels(&self, guild_id: i64) -> Result<Vec<ChannelRow>> {
        self.query(
            concat!(
                "SELECT ",
                channel_columns!(),
                " FROM channels WHERE guild_id = $1 ORDER BY position, id"
            ),
            params![guild_id],
        )
        .await?
        .iter()
        .map(channel)
        .collect()
    }

    /// Writes a channel's name, topic, category and position ([`Conflict::ChannelMissing`]).
    pub async fn update_channel(&self, c: &ChannelRow, e: &NewEvent) -> Result<i64> {
        let stmts = vec![
            touch_guild(c.guild_id),
            Stmt::new(
                "UPDATE channels SET name = $3, topic = $4, parent_id = $5, position = $6
                 WHERE id = $1 AND guild_id = $2",
                params![
                    c.id,
                    c.guild_id,
                    c.name.clone(),
                    c.topic.clone(),
                    c.parent_id,
                    c.position
                ],
            )
            .affects(1)
            .or(Conflict::ChannelMissing),
        ];
        self.transaction_with_event(stmts, e).await
    }

    /// Deletes a channel with its messages, overwrites and invites; channels in it (a
    /// category) leave it ([`Conflict::ChannelMissing`]).
    pub async fn delete_channel(&self, guild_id: i64, id: i64, e: &NewEvent) -> Result<i64> {
        let stmts = vec![
            touch_guild(guild_id),
            Stmt::new(
                "DELETE FROM message_versions WHERE message_id IN
                 (SELECT id FROM messages WHERE channel_id = $1 AND guild_id = $2)",
                params![id, guild_id],
            ),
            Stmt::new(
                "DELETE FROM messages WHERE channel_id = $1 AND guild_id = $2",
                params![id, guild_id],
            ),
            Stmt::new(
                "DELETE FROM message_reactions WHERE channel_id IN
                 (SELECT id FROM channels WHERE id = $1 AND guild_id = $2)",
                params![id, guild_id],
            ),
            Stmt::new(
                "DELETE FROM reaction_nonces WHERE channel_id IN
                 (SELECT id FROM channels WHERE id = $1 AND guild_id = $2)",
                params![id, guild_id],
            ),
            Stmt::new(
                "DELETE FROM channel_pins WHERE channel_id IN
                 (SELECT id FROM channels WHERE id = $1 AND guild_id = $2)",
                params![id, guild_id],
            ),
            Stmt::new(
                "DELETE FROM read_states WHERE channel_id IN
                 (SELECT id FROM channels WHERE id = $1 AND guild_id = $2)",
                params![id, guild_id],
            ),
            Stmt::new(
                "DELETE FROM channel_overwrites WHERE channel_id IN
                 (SELECT id FROM channels WHERE id = $1 AND guild_id = $2)",
                params![id, guild_id],
            ),
            Stmt::new(
                "DELETE FROM guild_invites WHERE channel_id = $1 AND guild_id = $2",
                params![id, guild_id],
            ),
            Stmt::new(
                "UPDATE channels SET parent_id = NULL WHERE parent_id = $1 AND guild_id = $2",
                params![id, guild_id],
            ),
            Stmt::new(
                "DELETE FROM channels WHERE id = $1 AND guild_id = $2",
                params![id, guild_id],
            )
            .affects(1)
            .or(Conflict::ChannelMissing),
        ];
        self.transaction_with_event(stmts, e).await
    }

    // ---- members ----

    /// Makes `actor_id` a member from `now` on. With `invite_hash`, one use of that invite of
    /// this guild is spent ([`Conflict::InviteUnusable`] when unknown, used up or expired).
    /// [`Conflict::Banned`], [`Conflict::AlreadyMember`], [`Conflict::GuildMissing`].
    /// `added` goes to the guild's stream (its position is where the membership begins),
    /// `joined` to the actor's.
    pub async fn join_guild(
        &self,
        guild_id: i64,
        actor_id: i64,
        invite_hash: Option<&[u8]>,
        now: i64,
        added: &NewEvent,
        joined: &NewEvent,
    ) -> Result<Positions> {
        let mut stmts = vec![
            touch_guild(guild_id),
            Stmt::new(
                "UPDATE guilds SET access_version = access_version WHERE id = $1
                 AND NOT EXISTS (SELECT 1 FROM guild_bans WHERE guild_id = $1 AND actor_id = $2)",
                params![guild_id, actor_id],
            )
            .affects(1)
            .or(Conflict::Banned),
        ];
        if let Some(hash) = invite_hash {
            stmts.push(
                Stmt::new(
                    "UPDATE guild_invites SET uses = uses + 1
                     WHERE code_hash = $1 AND guild_id = $2 AND (max_uses = 0 OR uses < max_uses)
                     AND (expires_at IS NULL OR expires_at > $3)",
                    params![hash, guild_id, now],
                )
                .affects(1)
                .or(Conflict::InviteUnusable),
            );
        }
        let take = stmts.len();
        let Append { take: t, write: w } = Append::new(added);
        stmts.push(t);
        stmts.push(insert_member(guild_id, actor_id, now));
        stmts.push(w);
        let actor = push_append(&mut stmts, joined);
        let out = self.transaction_rows(stmts).await?;
        Ok(Positions {
            guild: taken(&out, take)?,
            actor: taken(&out, actor)?,
        })
    }

    /// Ends a membership (leave or kick) with its roles ([`Conflict::NotAMember`]).
    pub async fn remove_member(
        &self,
        guild_id: i64,
        actor_id: i64,
        removed: &NewEvent,
        left: &NewEvent,
    ) -> Result<Positions> {
        let mut stmts = vec![
            touch_guild(guild_id),
            Stmt::new(
                "DELETE FROM guild_members WHERE guild_id = $1 AND actor_id = $2",
                params![guild_id, actor_id],
            )
            .affects(1)
            .or(Conflict::NotAMember),
            Stmt::new(
                "DELETE FROM member_roles WHERE guild_id = $1 AND actor_id = $2",
                params![guild_id, actor_id],
            ),
        ];
        let g = push_append(&mut stmts, removed);
        let a = push_append(&mut stmts, left);
        let out = self.transaction_rows(stmts).await?;
        Ok(Positions {
            guild: taken(&out, g)?,
            actor: taken(&out, a)?,
        })
    }

    pub async fn member(&self, guild_id: i64, actor_id: i64) -> Result<Option<MemberRow>> {
        self.query(
            concat!(
                "SELECT ",
                member_columns!(),
                " FROM guild_members m JOIN actors a ON a.id = m.actor_id
                 WHERE m.guild_id = $1 AND m.actor_id = $2"
            ),
            params![guild_id, actor_id],
        )
        .await?
        .first()
        .map(member)
        .transpose()
    }

    /// Up to `limit` members ordered by stored name, after the name `after`.
    pub async fn members(
        &self,
        guild_id: i64,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<MemberRow>> {
        self.query(
            concat!(
                "SELECT ",
                member_columns!(),
                " FROM guild_members m JOIN actors a ON a.id = m.actor_id
                 WHERE m.guild_id = $1 AND a.local_name > $2 ORDER BY a.local_name LIMIT $3"
            ),
            params![guild_id, after.unwrap_or(""), limit],
        )
        .await?
        .iter()
        .map(member)
        .collect()
    }

    /// The role ids of the members of a guild: `(actor_id, role_id)`.
    pub async fn member_roles(&self, guild_id: i64) -> Result<Vec<(i64, i64)>> {
        self.query(
            "SELECT actor_id, role_id FROM member_roles WHERE guild_id = $1 ORDER BY actor_id, role_id",
            params![guild_id],
        )
        .await?
        .iter()
        .map(|r| Ok((r.i64(0)?, r.i64(1)?)))
        .collect()
    }

    /// The role ids of one member.
    pub async fn roles_of(&self, guild_id: i64, actor_id: i64) -> Result<Vec<i64>> {
        self.query(
            "SELECT role_id FROM member_roles WHERE guild_id = $1 AND actor_id = $2 ORDER BY role_id",
            params![guild_id, actor_id],
        )
        .await?
        .iter()
        .map(|r| r.i64(0))
        .collect()
    }

    // ---- roles ----

    /// Adds a role to a live guild ([`Conflict::GuildMissing`]).
    pub async fn insert_role(&self, r: &RoleRow, e: &NewEvent) -> Result<i64> {
        let stmts = vec![
            touch_guild(r.guild_id),
            Stmt::new(
                concat!(
                    "INSERT INTO roles (",
                    role_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6)"
                ),
                params![
                    r.id,
                    r.guild_id,
                    r.name.clone(),
                    r.permissions,
                    r.position,
                    r.color
                ],
            ),
        ];
        self.transaction_with_event(stmts, e).await
    }

    /// Writes a role's name, bits, position and color ([`Conflict::RoleMissing`]).
    pub async fn update_role(&self, r: &RoleRow, e: &NewEvent) -> Result<i64> {
        let stmts = vec![
            touch_guild(r.guild_id),
            Stmt::new(
                "UPDATE roles SET name = $3, permissions = $4, position = $5, color = $6
                 WHERE id = $1 AND guild_id = $2",
                params![
                    r.id,
                    r.guild_id,
                    r.name.clone(),
                    r.permissions,
                    r.position,
                    r.color
                ],
            )
            .affects(1)
            .or(Conflict::RoleMissing),
        ];
        self.transaction_with_event(stmts, e).await
    }

    /// Deletes a role with its assignments and overwrites ([`Conflict::RoleMissing`]).
    pub async fn delete_role(&self, guild_id: i64, id: i64, e: &NewEvent) -> Result<i64> {
        let stmts = vec![
            touch_guild(guild_id),
            Stmt::new(
                "DELETE FROM member_roles WHERE guild_id = $1 AND role_id = $2",
                params![guild_id, id],
            ),
            Stmt::new(
                "DELETE FROM channel_overwrites WHERE target_kind = 'r' AND target_id = $1
                 AND channel_id IN (SELECT id FROM channels WHERE guild_id = $2)",
                params![id, guild_id],
            ),
            Stmt::new(
                "DELETE FROM roles WHERE id = $1 AND guild_id = $2 AND id <> guild_id",
                params![id, guild_id],
            )
            .affects(1)
            .or(Conflict::RoleMissing),
        ];
        self.transaction_with_event(stmts, e).await
    }

    pub async fn role(&self, id: i64) -> Result<Option<RoleRow>> {
        self.query(
            concat!("SELECT ", role_columns!(), " FROM roles WHERE id = $1"),
            params![id],
        )
        .await?
        .first()
        .map(role)
        .transpose()
    }

    /// A guild's roles, `@everyone` first, then by position.
    pub async fn roles(&self, guild_id: i64) -> Result<Vec<RoleRow>> {
        self.query(
            concat!(
                "SELECT ",
                role_columns!(),
                " FROM roles WHERE guild_id = $1 ORDER BY position, id"
            ),
            params![guild_id],
        )
        .await?
        .iter()
        .map(role)
        .collect()
    }

    /// Gives a member a role of its guild; giving it again changes nothing but still records
    /// `e` ([`Conflict::NotAMember`], [`Conflict::RoleMissing`]).
    pub async fn add_member_role(
        &self,
        guild_id: i64,
        actor_id: i64,
        role_id: i64,
        e: &NewEvent,
    ) -> Result<i64> {
        let stmts = vec![
            touch_guild(guild_id),
            Stmt::new(
                "UPDATE guild_members SET since = since WHERE guild_id = $1 AND actor_id = $2",
                params![guild_id, actor_id],
            )
            .affects(1)
            .or(Conflict::NotAMember),
            Stmt::new(
                "UPDATE roles SET position = position WHERE id = $1 AND guild_id = $2 AND id <> guild_id",
                params![role_id, guild_id],
            )
            .affects(1)
            .or(Conflict::RoleMissing),
            Stmt::new(
                "INSERT INTO member_roles (guild_id, actor_id, role_id) VALUES ($1, $2, $3)
                 ON CONFLICT (guild_id, actor_id, role_id) DO NOTHING",
                params![guild_id, actor_id, role_id],
            ),
        ];
        self.transaction_with_event(stmts, e).await
    }

    /// Takes a role from a member ([`Conflict::RoleMissing`] when it did not have it).
    pub async fn remove_member_role(
        &self,
        guild_id: i64,
        actor_id: i64,
        role_id: i64,
        e: &NewEvent,
    ) -> Result<i64> {
        let stmts = vec![
            touch_guild(guild_id),
            Stmt::new(
                "DELETE FROM member_roles WHERE guild_id = $1 AND actor_id = $2 AND role_id = $3",
                params![guild_id, actor_id, role_id],
            )
            .affects(1)
            .or(Conflict::RoleMissing),
        ];
        self.transaction_with_event(stmts, e).await
    }

    // ---- overwrites ----

    /// Sets (creates or replaces) a channel's overwrite ([`Conflict::ChannelMissing`]).
    pub async fn set_overwrite(
        &self,
        guild_id: i64,
        o: &OverwriteRow,
        e: &NewEvent,
    ) -> Result<i64> {
        let stmts = vec![
            touch_guild(guild_id),
            Stmt::new(
                "INSERT INTO channel_overwrites (channel_id, target_kind, target_id, allow_bits, deny_bits)
                 SELECT $1, $2, $3, $4, $5 FROM channels WHERE id = $1 AND guild_id = $6
                 ON CONFLICT (channel_id, target_kind, target_id)
                 DO UPDATE SET allow_bits = excluded.allow_bits, deny_bits = excluded.deny_bits",
                params![
                    o.channel_id,
                    o.kind.code(),
                    o.target_id,
                    o.allow,
                    o.deny,
                    guild_id
                ],
            )
            .affects(1)
            .or(Conflict::ChannelMissing),
        ];
        self.transaction_with_event(stmts, e).await
    }

    /// Removes a channel's overwrite ([`Conflict::OverwriteMissing`]).
    pub async fn delete_overwrite(
        &self,
        guild_id: i64,
        channel_id: i64,
        kind: TargetKind,
        target_id: i64,
        e: &NewEvent,
    ) -> Result<i64> {
        let stmts = vec![
            touch_guild(guild_id),
            Stmt::new(
                "DELETE FROM channel_overwrites WHERE channel_id = $1 AND target_kind = $2 AND target_id = $3",
                params![channel_id, kind.code(), target_id],
            )
            .affects(1)
            .or(Conflict::OverwriteMissing),
        ];
        self.transaction_with_event(stmts, e).await
    }

    /// A channel's overwrites.
    pub async fn overwrites(&self, channel_id: i64) -> Result<Vec<OverwriteRow>> {
        self.query(
            concat!(
                "SELECT ",
                overwrite_columns!(),
                " FROM channel_overwrites o WHERE o.channel_id = $1 ORDER BY o.target_kind DESC, o.target_id"
            ),
            params![channel_id],
        )
        .await?
        .iter()
        .map(overwrite)
        .collect()
    }

    /// The overwrites of every channel of a guild.
    pub async fn guild_overwrites(&self, guild_id: i64) -> Result<Vec<OverwriteRow>> {
        self.query(
            concat!(
                "SELECT ",
                overwrite_columns!(),
                " FROM channel_overwrites o JOIN channels c ON c.id = o.channel_id WHERE c.guild_id = $1"
            ),
            params![guild_id],
        )
        .await?
        .iter()
        .map(overwrite)
        .collect()
    }

    // ---- bans ----

    /// Bans an actor (again: the reason is replaced) and ends its membership if it has one.
    /// `banned` goes to the guild's stream, `left` to the actor's.
    #[allow(clippy::too_many_arguments)]
    pub async fn ban(
        &self,
        guild_id: i64,
        actor_id: i64,
        by: i64,
        reason: Option<&str>,
        now: i64,
        banned: &NewEvent,
        left: &NewEvent,
    ) -> Result<Positions> {
        let mut stmts = vec![
            touch_guild(guild_id),
            Stmt::new(
                "INSERT INTO guild_bans (guild_id, actor_id, reason, banned_by, created_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (guild_id, actor_id) DO UPDATE SET reason = excluded.reason",
                params![guild_id, actor_id, reason.map(str::to_owned), by, now],
            ),
            Stmt::new(
                "DELETE FROM guild_members WHERE guild_id = $1 AND actor_id = $2",
                params![guild_id, actor_id],
            ),
            Stmt::new(
                "DELETE FROM member_roles WHERE guild_id = $1 AND actor_id = $2",
                params![guild_id, actor_id],
            ),
        ];
        let g = push_append(&mut stmts, banned);
        let a = push_append(&mut stmts, left);
        let out = self.transaction_rows(stmts).await?;
        Ok(Positions {
            guild: taken(&out, g)?,
            actor: taken(&out, a)?,
        })
    }

    /// Lifts a ban ([`Conflict::NotBanned`]).
    pub async fn unban(&self, guild_id: i64, actor_id: i64, e: &NewEvent) -> Result<i64> {
        let stmts = vec![
            touch_guild(guild_id),
            Stmt::new(
                "DELETE FROM guild_bans WHERE guild_id = $1 AND actor_id = $2",
                params![guild_id, actor_id],
            )
            .affects(1)
            .or(Conflict::NotBanned),
        ];
        self.transaction_with_event(stmts, e).await
    }

    pub async fn is_banned(&self, guild_id: i64, actor_id: i64) -> Result<bool> {
        Ok(!self
            .query(
                "SELECT 1 FROM guild_bans WHERE guild_id = $1 AND actor_id = $2",
                params![guild_id, actor_id],
            )
            .await?
            .is_empty())
    }

    pub async fn bans(&self, guild_id: i64) -> Result<Vec<BanRow>> {
        self.query(
            "SELECT b.guild_id, b.actor_id, a.local_name, b.reason, b.banned_by, w.local_name, b.created_at
             FROM guild_bans b JOIN actors a ON a.id = b.actor_id JOIN actors w ON w.id = b.banned_by
             WHERE b.guild_id = $1 ORDER BY b.created_at, b.actor_id",
            params![guild_id],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(BanRow {
                guild_id: r.i64(0)?,
                actor_id: r.i64(1)?,
                local_name: r.string(2)?,
                reason: r.opt_string(3)?,
                banned_by: r.i64(4)?,
                banned_by_name: r.string(5)?,
                created_at: r.i64(6)?,
            })
        })
        .collect()
    }

    // ---- invites ----

    /// Stores an invite of a live guild ([`Conflict::GuildMissing`]). No event: invites
    /// are seen by those who manage them, through listings.
    pub async fn insert_guild_invite(&self, i: &GuildInviteRow) -> Result<()> {
        self.commit(vec![
            Stmt::new(
                "INSERT INTO guild_invites (code_hash, guild_id, channel_id, creator_id, max_uses, uses, expires_at, created_at)
                 SELECT $1, $2, $3, $4, $5, 0, $6, $7 FROM guilds WHERE id = $2 AND deleted_at IS NULL",
                params![
                    i.code_hash.clone(),
                    i.guild_id,
                    i.channel_id,
                    i.creator_id,
                    i.max_uses,
                    i.expires_at,
                    i.created_at
                ],
            )
            .affects(1)
            .or(Conflict::GuildMissing),
        ])
        .await
    }

    pub async fn guild_invite(&self, code_hash: &[u8]) -> Result<Option<GuildInviteRow>> {
        self.query(
            concat!(
                "SELECT ",
                invite_columns!(),
                " FROM guild_invites i JOIN actors a ON a.id = i.creator_id WHERE i.code_hash = $1"
            ),
            params![code_hash],
        )
        .await?
        .first()
        .map(invite)
        .transpose()
    }

    /// A guild's invites that can still be used at `now`.
    pub async fn guild_invites(&self, guild_id: i64, now: i64) -> Result<Vec<GuildInviteRow>> {
        self.query(
            concat!(
                "SELECT ",
                invite_columns!(),
                " FROM guild_invites i JOIN actors a ON a.id = i.creator_id
                 WHERE i.guild_id = $1 AND (i.max_uses = 0 OR i.uses < i.max_uses)
                 AND (i.expires_at IS NULL OR i.expires_at > $2) ORDER BY i.created_at"
            ),
            params![guild_id, now],
        )
        .await?
        .iter()
        .map(invite)
        .collect()
    }

    /// Revokes an invite; whether there was one.
    pub async fn delete_guild_invite(&self, code_hash: &[u8]) -> Result<bool> {
        Ok(self
            .execute(
                "DELETE FROM guild_invites WHERE code_hash = $1",
                params![code_hash],
            )
            .await?
            == 1)
    }
}

fn insert_channel_stmt(c: &ChannelRow) -> Stmt {
    Stmt::new(
        concat!(
            "INSERT INTO channels (",
            channel_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ),
        params![
            c.id,
            c.guild_id,
            c.name.clone(),
            c.kind,
            c.topic.clone(),
            c.parent_id,
            c.position,
            c.created_at
        ],
    )
}
