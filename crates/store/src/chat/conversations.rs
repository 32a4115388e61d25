//! Persistence of conversations: direct messages and groups, guild-less channels whose
//! stream has the conversation's id (docs/decisions.md, "Group conversations").
//!
//! A DM has a `pair_key` (the two actor ids, lower first), unique, so two actors have one DM
//! on a server whoever asks first. Every write of members or owner appends its events in the
//! same transaction and bumps `access_version`, which the server's snapshots are cached by;
//! a membership begins at the position of the event that announced it (`since`). Rules (who
//! may do what, how many members) live in the server; these verbs guard integrity only.

use super::push_append;
use crate::engine::{Conflict, Result, Row, Stmt};
use crate::events::{Append, NewEvent, taken};
use crate::{Store, params};

/// A conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRow {
    pub id: i64,
    /// The channel type: 10 = DM, 11 = group.
    pub kind: i64,
    pub name: Option<String>,
    /// A group's owner; `None` for DMs and closed groups.
    pub owner_id: Option<i64>,
    /// A DM's `"low:high"` actor ids; `None` for groups.
    pub pair_key: Option<String>,
    pub created_at: i64,
    /// When the last member left (a closed group takes no more posts).
    pub closed_at: Option<i64>,
    pub access_version: i64,
}

macro_rules! conversation_columns {
    () => {
        "id, kind, name, owner_id, pair_key, created_at, closed_at, access_version"
    };
}

fn conversation(r: &Row) -> Result<ConversationRow> {
    Ok(ConversationRow {
        id: r.i64(0)?,
        kind: r.i64(1)?,
        name: r.opt_string(2)?,
        owner_id: r.opt_i64(3)?,
        pair_key: r.opt_string(4)?,
        created_at: r.i64(5)?,
        closed_at: r.opt_i64(6)?,
        access_version: r.i64(7)?,
    })
}

/// A member of a conversation, with its actor's stored name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationMemberRow {
    pub conversation_id: i64,
    pub actor_id: i64,
    /// `actors.local_name`: a local name, or a foreign actor's whole FID.
    pub local_name: String,
    pub joined_at: i64,
    /// The position of the conversation's stream where the membership began.
    pub since: i64,
}

/// The statement that marks a change of access of a conversation that is still open
/// ([`Conflict::ConversationMissing`] when it is gone or closed).
pub(crate) fn touch(id: i64) -> Stmt {
    Stmt::new(
        "UPDATE conversations SET access_version = access_version + 1 WHERE id = $1 AND closed_at IS NULL",
        params![id],
    )
    .affects(1)
    .or(Conflict::ConversationMissing)
}

/// The insert of a member whose membership begins at the stream's head (between the take
/// and the write of the event that announces it). `rank` orders those who joined at once
/// (at creation: the creator, then the others as named).
fn insert_member(id: i64, actor_id: i64, now: i64, rank: i64) -> Stmt {
    Stmt::new(
        "INSERT INTO conversation_members (conversation_id, actor_id, joined_at, since, rank)
         SELECT $1, $2, $3, head, $4 FROM streams WHERE id = $1
         ON CONFLICT (conversation_id, actor_id) DO NOTHING",
        params![id, actor_id, now, rank],
    )
    .affects(1)
    .or(Conflict::AlreadyMember)
}

impl Store {
    /// Creates a conversation with its members, all from its first event `created` (in its
    /// own stream); `joined[i]` goes to the stream of `members[i]`. Returns the positions of
    /// `created` and of each `joined`. A DM whose pair has one already:
    /// [`Conflict::AlreadyMember`] (read it with [`Store::dm_of_pair`]).
    pub async fn create_conversation(
        &self,
        c: &ConversationRow,
        members: &[i64],
        created: &NewEvent,
        joined: &[NewEvent],
    ) -> Result<(i64, Vec<i64>)> {
        let mut stmts = vec![
            Stmt::new(
                concat!(
                    "INSERT INTO conversations (",
                    conversation_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, NULL, 0) ON CONFLICT (pair_key) DO NOTHING"
                ),
                params![
                    c.id,
                    c.kind,
                    c.name.clone(),
                    c.owner_id,
                    c.pair_key.clone(),
                    c.created_at
                ],
            )
            .affects(1)
            .or(Conflict::AlreadyMember),
        ];
        let at = stmts.len();
        let Append { take, write } = Append::new(created);
        stmts.push(take);
        for (rank, m) in (0..).zip(members) {
            stmts.push(insert_member(c.id, *m, c.created_at, rank));
        }
        stmts.push(write);
        let actors: Vec<usize> = joined.iter().map(|e| push_append(&mut stmts, e)).collect();
        let out = self.transaction_rows(stmts).await?;
        let positions = actors
            .into_iter()
            .map(|i| taken(&out, i))
            .collect::<Result<Vec<_>>>()?;
        Ok((taken(&out, at)?, positions))
    }

    pub async fn conversation(&self, id: i64) -> Result<Option<ConversationRow>> {
        self.query(
            concat!(
                "SELECT ",
                conversation_columns!(),
                " FROM conversations WHERE id = $1"
            ),
            params![id],
        )
        .await?
        .first()
        .map(conversation)
        .transpose()
    }

    /// The DM of a pair (`"low:high"` actor ids).
    pub async fn dm_of_pair(&self, pair_key: &str) -> Result<Option<ConversationRow>> {
        self.query(
            concat!(
                "SELECT ",
                conversation_columns!(),
                " FROM conversations WHERE pair_key = $1"
            ),
            params![pair_key.to_owned()],
        )
        .await?
        .first()
        .map(conversation)
        .transpose()
    }

    /// The members, longest-standing first (at creation: the creator, then as named).
    pub async fn conversation_members(&self, id: i64) -> Result<Vec<ConversationMemberRow>> {
        self.query(MEMBERS_OF, params![id])
            .await?
            .iter()
            .map(member)
            .collect()
    }

    /// A conversation, its members and whether it is encrypted, as of one moment (one read
    /// transaction).
    pub async fn conversation_access(
        &self,
        id: i64,
    ) -> Result<
        Option<(
            ConversationRow,
            Vec<ConversationMemberRow>,
            Vec<(i64, String)>,
        )>,
    > {
        let mut parts = self
            .read_together(vec![
                (
                    concat!(
                        "SELECT ",
                        conversation_columns!(),
                        " FROM conversations WHERE id = $1"
                    ),
                    params![id],
                ),
                (MEMBERS_OF, params![id]),
                (super::ENCRYPTED_CHANNELS, params![id]),
            ])
            .await?
            .into_iter();
        let mut next = || parts.next().unwrap_or_default();
        let Some(row) = next().first().map(conversation).transpose()? else {
            return Ok(None);
        };
        let members = next().iter().map(member).collect::<Result<Vec<_>>>()?;
        let encrypted = super::encrypted_channels(&next())?;
        Ok(Some((row, members, encrypted)))
    }

    /// The conversations an actor is a member of, with where each membership began.
    pub async fn conversations_of(&self, actor_id: i64) -> Result<Vec<(i64, i64)>> {
        self.query(
            "SELECT conversation_id, since FROM conversation_members WHERE actor_id = $1
             ORDER BY conversation_id",
            params![actor_id],
        )
        .await?
        .iter()
        .map(|r| Ok((r.i64(0)?, r.i64(1)?)))
        .collect()
    }

    /// Adds a member to an open conversation that has fewer than `max` members: `added`
    /// (its stream; the membership begins there) and `joined` (the actor's). Returns both
    /// positions. [`Conflict::ConversationMissing`], [`Conflict::ConversationFull`],
    /// [`Conflict::AlreadyMember`].
    pub async fn add_conversation_member(
        &self,
        id: i64,
        actor_id: i64,
        max: i64,
        now: i64,
        added: &NewEvent,
        joined: &NewEvent,
    ) -> Result<(i64, i64)> {
        let mut stmts = vec![
            touch(id),
            Stmt::new(
                "UPDATE conversations SET access_version = access_version WHERE id = $1
                 AND (SELECT COUNT(*) FROM conversation_members WHERE conversation_id = $1) < $2",
                params![id, max],
            )
            .affects(1)
            .or(Conflict::ConversationFull),
        ];
        let at = stmts.len();
        let Append { take, write } = Append::new(added);
        stmts.push(take);
        stmts.push(insert_member(id, actor_id, now, 0));
        stmts.push(write);
        let actor = push_append(&mut stmts, joined);
        let out = self.transaction_rows(stmts).await?;
        Ok((taken(&out, at)?, taken(&out, actor)?))
    }

    /// Ends a membership of an open conversation and appends `events` in order (each to its
    /// own stream); with `owner`, the owner becomes `owner.1` if it still is `owner.0`
    /// ([`Conflict::NotOwner`]); with `closed_at`, the conversation closes (its last member
    /// left). Returns the events' positions. [`Conflict::ConversationMissing`],
    /// [`Conflict::NotAMember`].
    pub async fn remove_conversation_member(
        &self,
        id: i64,
        actor_id: i64,
        owner: Option<(i64, Option<i64>)>,
        closed_at: Option<i64>,
        events: &[NewEvent],
    ) -> Result<Vec<i64>> {
        let mut stmts = vec![
            touch(id),
            Stmt::new(
                "DELETE FROM conversation_members WHERE conversation_id = $1 AND actor_id = $2",
                params![id, actor_id],
            )
            .affects(1)
            .or(Conflict::NotAMember),
        ];
        if let Some((from, to)) = owner {
            stmts.push(
                Stmt::new(
                    "UPDATE conversations SET owner_id = $3 WHERE id = $1 AND owner_id = $2",
                    params![id, from, to],
                )
                .affects(1)
                .or(Conflict::NotOwner),
            );
        }
        if let Some(at) = closed_at {
            stmts.push(Stmt::new(
                "UPDATE conversations SET closed_at = $2 WHERE id = $1",
                params![id, at],
            ));
        }
        let at: Vec<usize> = events.iter().map(|e| push_append(&mut stmts, e)).collect();
        let out = self.transaction_rows(stmts).await?;
        at.into_iter().map(|i| taken(&out, i)).collect()
    }

    /// Hands an open group from `from` to `to`, who must be a member ([`Conflict::NotOwner`],
    /// [`Conflict::NotAMember`]).
    pub async fn transfer_conversation(
        &self,
        id: i64,
        from: i64,
        to: i64,
        e: &NewEvent,
    ) -> Result<i64> {
        let stmts = vec![
            touch(id),
            Stmt::new(
                "UPDATE conversation_members SET since = since WHERE conversation_id = $1 AND actor_id = $2",
                params![id, to],
            )
            .affects(1)
            .or(Conflict::NotAMember),
            Stmt::new(
                "UPDATE conversations SET owner_id = $3 WHERE id = $1 AND owner_id = $2",
                params![id, from, to],
            )
            .affects(1)
            .or(Conflict::NotOwner),
        ];
        self.transaction_with_event(stmts, e).await
    }

    /// Renames an open conversation ([`Conflict::ConversationMissing`]).
    pub async fn rename_conversation(
        &self,
        id: i64,
        name: Option<&str>,
        e: &NewEvent,
    ) -> Result<i64> {
        let stmts = vec![
            Stmt::new(
                "UPDATE conversations SET name = $2 WHERE id = $1 AND closed_at IS NULL",
                params![id, name.map(str::to_owned)],
            )
            .affects(1)
            .or(Conflict::ConversationMissing),
        ];
        self.transaction_with_event(stmts, e).await
    }
}

/// A conversation's members, longest-standing first ([`member`] decodes them).
const MEMBERS_OF: &str = "SELECT m.conversation_id, m.actor_id, a.local_name, m.joined_at, m.since
     FROM conversation_members m JOIN actors a ON a.id = m.actor_id
     WHERE m.conversation_id = $1 ORDER BY m.since, m.rank";

fn member(r: &Row) -> Result<ConversationMemberRow> {
    Ok(ConversationMemberRow {
        conversation_id: r.i64(0)?,
        actor_id: r.i64(1)?,
        local_name: r.string(2)?,
        joined_at: r.i64(3)?,
        since: r.i64(4)?,
    })
}
