//! Conversations: direct messages and group conversations (docs/decisions.md, "Direct
//! messages live on the recipient's server" and "Group conversations").
//!
//! A conversation is a guild-less channel (type DM or GROUP) whose stream is its own id.
//! Its access is a [`Snapshot`] like a guild's — one channel (the conversation itself), an
//! `@everyone` that views, sends and reacts, the group's owner with everything (so it may
//! delete others' messages), no roles — so the message routes, the gateway's views and
//! resume treat it like any channel. A DM has no owner: only authors delete there.
//!
//! Every membership change is written with its events in one transaction: on the
//! conversation's stream (access-changing) and on the actor's own stream (access-changing,
//! so its connections follow or leave the conversation).

use std::sync::Arc;

use fugue_proto::FederationId;
use fugue_proto::api::create_group;
use fugue_proto::chat::{FUGUE_CHAT, Permissions, channel_type, fugue_op};
use fugue_proto::conversation::{
    Conversation, ConversationMember, ConversationRef, MAX_GROUP_MEMBERS, MAX_GROUP_NAME,
    MIN_GROUP_MEMBERS, OwnerChange,
};
use fugue_store::{
    ChannelRow, Conflict, ConversationMemberRow, ConversationRow, GuildAccess, GuildRow, RoleRow,
};

use super::{ChannelRef, Chat, Error, Snapshot, cache_get, cache_insert, json, random_id, text};
use crate::events::Publish;
use crate::ids::{ActorId, StreamId, from_store, to_store};
use crate::sessions::Authed;
use crate::time::UnixTime;

/// What every member of a conversation may do.
const MEMBER: Permissions = Permissions::VIEW_CHANNEL
    .union(Permissions::SEND_MESSAGES)
    .union(Permissions::ADD_REACTIONS);

/// A conversation as one read sees it.
struct Loaded {
    row: ConversationRow,
    members: Vec<ConversationMemberRow>,
}

impl Loaded {
    fn is_member(&self, actor: ActorId) -> bool {
        self.members.iter().any(|m| m.actor_id == actor.to_store())
    }

    fn is_group(&self) -> bool {
        self.row.kind == i64::from(channel_type::GROUP)
    }
}

/// A conversation's access rules in the shape of a guild's: one channel, no roles.
fn access(
    c: &ConversationRow,
    members: &[ConversationMemberRow],
    encrypted: Vec<(i64, String)>,
) -> GuildAccess {
    GuildAccess {
        guild: GuildRow {
            id: c.id,
            name: c.name.clone().unwrap_or_default(),
            description: None,
            icon: None,
            owner_id: c.owner_id.unwrap_or(0),
            private: true,
            created_at: c.created_at,
            access_version: c.access_version,
        },
        roles: vec![RoleRow {
            id: c.id,
            guild_id: c.id,
            name: "@everyone".into(),
            permissions: MEMBER.bits().cast_signed(),
            position: 0,
            color: None,
        }],
        members: members.iter().map(|m| (m.actor_id, m.since)).collect(),
        member_roles: Vec::new(),
        channels: vec![ChannelRow {
            id: c.id,
            guild_id: c.id,
            name: String::new(),
            kind: c.kind,
            topic: None,
            parent_id: None,
            position: 0,
            created_at: c.created_at,
        }],
        overwrites: Vec::new(),
        encrypted,
    }
}

/// A DM's key: the two actor ids, lower first.
fn pair_key(a: ActorId, b: ActorId) -> String {
    let (a, b) = (a.to_store(), b.to_store());
    format!("{}:{}", a.min(b), a.max(b))
}

fn stream(id: i64) -> StreamId {
    StreamId::from_store(id)
}

impl Chat {
    // ---- access ----

    /// The access rules of a conversation now (`None` when it does not exist), cached by
    /// its access version beside the guilds' (ids never collide: both are random 63-bit).
    pub(super) async fn conversation_snapshot(
        &self,
        id: i64,
    ) -> Result<Option<Arc<Snapshot>>, Error> {
        let Some(row) = self.store.conversation(id).await? else {
            return Ok(None);
        };
        if let Some(s) = cache_get(&self.snapshots, &id)
            && s.version == row.access_version
        {
            return Ok(Some(s));
        }
        let Some((row, members, encrypted)) = self.store.conversation_access(id).await? else {
            return Ok(None);
        };
        let s = Arc::new(Snapshot::new(access(&row, &members, encrypted)));
        cache_insert(&self.snapshots, id, s.clone());
        Ok(Some(s))
    }

    /// The channel reference of a conversation, for the message routes.
    pub(super) async fn conversation_ref(&self, id: i64) -> Result<Option<ChannelRef>, Error> {
        Ok(self.store.conversation(id).await?.map(|c| ChannelRef {
            id: c.id,
            guild_id: c.id,
            kind: c.kind,
        }))
    }

    /// The access rules of a guild's or a conversation's stream.
    pub(super) async fn stream_snapshot(&self, id: i64) -> Result<Option<Arc<Snapshot>>, Error> {
        match self.snapshot(id).await? {
            Some(s) => Ok(Some(s)),
            None => self.conversation_snapshot(id).await,
        }
    }

    /// One follow per conversation the actor is a member of.
    pub(super) async fn conversation_follows(
        &self,
        actor: ActorId,
    ) -> Result<Vec<Arc<Snapshot>>, Error> {
        let mut out = Vec::new();
        for (id, _) in self.store.conversations_of(actor.to_store()).await? {
            if let Some(s) = self.conversation_snapshot(id).await? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// A conversation the actor is a member of (404 otherwise, as if it did not exist).
    async fn member_conversation(&self, actor: ActorId, id: u64) -> Result<Loaded, Error> {
        let not_found = || Error::ChannelNotFound(id);
        let row = self
            .store
            .conversation(to_store(id))
            .await?
            .ok_or_else(not_found)?;
        let members = self.store.conversation_members(row.id).await?;
        let c = Loaded { row, members };
        if !c.is_member(actor) {
            return Err(not_found());
        }
        Ok(c)
    }

    /// A group the actor is a member of (400 for a DM).
    async fn member_group(&self, actor: ActorId, id: u64) -> Result<Loaded, Error> {
        let c = self.member_conversation(actor, id).await?;
        if !c.is_group() {
            return Err(Error::Invalid(
                "a direct-message conversation has no owner and fixed members".into(),
            ));
        }
        Ok(c)
    }

    fn require_owner(c: &Loaded, actor: ActorId) -> Result<(), Error> {
        if c.row.owner_id == Some(actor.to_store()) {
            Ok(())
        } else {
            Err(Error::NotGroupOwner)
        }
    }

    // ---- conversions ----

    async fn conversation_view(&self, c: &Loaded) -> Result<Conversation, Error> {
        let owner_id = match c.row.owner_id {
            Some(o) => Some(self.fid_by_id(o).await?),
            None => None,
        };
        Ok(Conversation {
            id: from_store(c.row.id),
            kind: u8::try_from(c.row.kind).unwrap_or(channel_type::GROUP),
            name: c.row.name.clone(),
            owner_id,
            recipients: c
                .members
                .iter()
                .map(|m| self.fid_of(&m.local_name))
                .collect::<Result<_, _>>()?,
            created_at: from_store(c.row.created_at),
            closed: c.row.closed_at.is_some(),
        })
    }

    fn conversation_member_view(
        &self,
        m: &ConversationMemberRow,
    ) -> Result<ConversationMember, Error> {
        Ok(ConversationMember {
            conversation_id: from_store(m.conversation_id),
            fid: self.fid_of(&m.local_name)?,
            joined_at: from_store(m.joined_at),
        })
    }

    /// The actor of a FID who may be a member: registered here, or of another server whose
    /// home server answers for it with its certificates (recorded here when unseen).
    async fn member_actor(&self, fid: &FederationId, now: UnixTime) -> Result<ActorId, Error> {
        if fid.domain() == &self.domain {
            return self
                .actor_id(fid)
                .await?
                .ok_or_else(|| Error::UserNotFound(fid.to_string()));
        }
        match self.federation.fetch_certs(fid, now.secs()).await {
            Ok(certs) if !certs.is_empty() => {}
            Ok(_) => return Err(Error::UserNotFound(fid.to_string())),
            Err(
                e @ (crate::federation::Error::HomeServer { .. }
                | crate::federation::Error::NotAHomeServer { .. }),
            ) => return Err(e.into()),
            Err(_) => return Err(Error::UserNotFound(fid.to_string())),
        }
        Ok(match self.actor_id(fid).await? {
            Some(id) => id,
            None => ActorId::from_store(
                self.store
                    .foreign_actor(&fid.to_string(), random_id(), now.to_store())
                    .await?
                    .id,
            ),
        })
    }

    fn joined_conversation(actor: ActorId, view: &Conversation) -> Publish {
        Publish::to_actor(actor, FUGUE_CHAT, fugue_op::CONVERSATION_JOINED, json(view))
            .changes_access()
    }

    fn left_conversation(actor: ActorId, id: u64) -> Publish {
        Publish::to_actor(
            actor,
            FUGUE_CHAT,
            fugue_op::CONVERSATION_LEFT,
            json(&ConversationRef {
                conversation_id: id,
            }),
        )
        .changes_access()
    }

    // ---- creating ----

    /// Writes a new conversation with its first event and each member's `joined`.
    async fn create_conversation(
        &self,
        row: ConversationRow,
        members: Vec<(ActorId, FederationId)>,
        now: UnixTime,
    ) -> Result<Conversation, Error> {
        let view = Conversation {
            id: from_store(row.id),
            kind: u8::try_from(row.kind).unwrap_or(channel_type::GROUP),
            name: row.name.clone(),
            owner_id: match row.owner_id {
                Some(o) => Some(self.fid_by_id(o).await?),
                None => None,
            },
            recipients: members.iter().map(|(_, f)| f.clone()).collect(),
            created_at: now.secs(),
            closed: false,
        };
        let created = Publish::new(
            stream(row.id),
            FUGUE_CHAT,
            fugue_op::CONVERSATION_UPDATE,
            json(&view),
        )
        .collapse(format!("conversation:{}", row.id));
        let joined: Vec<Publish> = members
            .iter()
            .map(|(a, _)| Self::joined_conversation(*a, &view))
            .collect();
        let ids: Vec<i64> = members.iter().map(|(a, _)| a.to_store()).collect();
        let (at, positions) = self
            .store
            .create_conversation(
                &row,
                &ids,
                &created.to_new(now),
                &joined.iter().map(|j| j.to_new(now)).collect::<Vec<_>>(),
            )
            .await?;
        self.events.appended(created, at, now).await;
        for (j, pos) in joined.into_iter().zip(positions) {
            self.events.appended(j, pos, now).await;
        }
        Ok(view)
    }

    /// `POST /users/@me/channels`: the caller's DM with an actor registered here — or, for
    /// a caller registered here, with an actor of another server whose home server answers
    /// for it: the DM where that actor's messages to the caller arrive (and where the
    /// caller's own DMs with it are imported, core §7.3). The one the pair has (`false`), or
    /// a new one (`true`).
    pub async fn create_dm(
        &self,
        authed: &Authed,
        recipient: &FederationId,
    ) -> Result<(Conversation, bool), Error> {
        let me = &authed.actor;
        let not_found = || Error::UserNotFound(recipient.to_string());
        let other = if recipient.domain() == &self.domain {
            self.actor_id(recipient).await?.ok_or_else(not_found)?
        } else if me.is_local() {
            self.member_actor(recipient, self.events.now()).await?
        } else {
            return Err(not_found());
        };
        if other == me.id {
            return Err(Error::Invalid(
                "a direct message needs another recipient than yourself".into(),
            ));
        }
        let key = pair_key(me.id, other);
        if let Some(row) = self.store.dm_of_pair(&key).await? {
            return Ok((self.loaded_view(row).await?, false));
        }
        let now = self.events.now();
        let row = ConversationRow {
            id: random_id(),
            kind: i64::from(channel_type::DM),
            name: None,
            owner_id: None,
            pair_key: Some(key.clone()),
            created_at: now.to_store(),
            closed_at: None,
            access_version: 0,
        };
        let members = vec![(me.id, me.fid.clone()), (other, recipient.clone())];
        match self.create_conversation(row, members, now).await {
            Ok(view) => Ok((view, true)),
            // Both asked at once: the other request made it.
            Err(Error::Store(fugue_store::Error::Conflict(Conflict::AlreadyMember))) => {
                let row = self.store.dm_of_pair(&key).await?.ok_or_else(not_found)?;
                Ok((self.loaded_view(row).await?, false))
            }
            Err(e) => Err(e),
        }
    }

    async fn loaded_view(&self, row: ConversationRow) -> Result<Conversation, Error> {
        let members = self.store.conversation_members(row.id).await?;
        self.conversation_view(&Loaded { row, members }).await
    }

    /// `GET /users/@me/channels`: the caller's DMs and groups here.
    pub async fn conversations(&self, authed: &Authed) -> Result<Vec<Conversation>, Error> {
        let mut out = Vec::new();
        for (id, _) in self
            .store
            .conversations_of(authed.actor.id.to_store())
            .await?
        {
            if let Some(row) = self.store.conversation(id).await? {
                out.push(self.loaded_view(row).await?);
            }
        }
        Ok(out)
    }

    /// `POST /fugue-chat/v1/conversations`: a group of the caller (its owner) and 1–14
    /// others.
    pub async fn create_group(
        &self,
        authed: &Authed,
        req: create_group::Request,
    ) -> Result<Conversation, Error> {
        let me = &authed.actor;
        if let Some(name) = &req.name {
            text("name", name, MAX_GROUP_NAME, true)?;
        }
        let mut fids: Vec<FederationId> = Vec::new();
        for f in req.members {
            if f != me.fid && !fids.contains(&f) {
                fids.push(f);
            }
        }
        let total = fids.len() + 1;
        if !(MIN_GROUP_MEMBERS..=MAX_GROUP_MEMBERS).contains(&total) {
            return Err(Error::Invalid(format!(
                "a group has {MIN_GROUP_MEMBERS} to {MAX_GROUP_MEMBERS} members, its creator included"
            )));
        }
        let now = self.events.now();
        let mut members = vec![(me.id, me.fid.clone())];
        for f in fids {
            members.push((self.member_actor(&f, now).await?, f));
        }
        let row = ConversationRow {
            id: random_id(),
            kind: i64::from(channel_type::GROUP),
            name: req
                .name
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty()),
            owner_id: Some(me.id.to_store()),
            pair_key: None,
            created_at: now.to_store(),
            closed_at: None,
            access_version: 0,
        };
        self.create_conversation(row, members, now).await
    }

    // ---- reading ----

    /// `GET /fugue-chat/v1/conversations/{id}`.
    pub async fn conversation(&self, authed: &Authed, id: u64) -> Result<Conversation, Error> {
        let c = self.member_conversation(authed.actor.id, id).await?;
        self.conversation_view(&c).await
    }

    /// `GET /fugue-chat/v1/conversations/{id}/members`.
    pub async fn conversation_members(
        &self,
        authed: &Authed,
        id: u64,
    ) -> Result<Vec<ConversationMember>, Error> {
        let c = self.member_conversation(authed.actor.id, id).await?;
        c.members
            .iter()
            .map(|m| self.conversation_member_view(m))
            .collect()
    }

    // ---- changing ----

    /// Publishes the conversation as it is now on its stream (a rename or a close).
    fn updated(id: i64, view: &Conversation) -> Publish {
        Publish::new(
            stream(id),
            FUGUE_CHAT,
            fugue_op::CONVERSATION_UPDATE,
            json(view),
        )
        .collapse(format!("conversation:{id}"))
    }

    /// `PATCH /fugue-chat/v1/conversations/{id}`: any member renames a group.
    pub async fn rename_group(
        &self,
        authed: &Authed,
        id: u64,
        name: Option<String>,
    ) -> Result<Conversation, Error> {
        let mut c = self.member_group(authed.actor.id, id).await?;
        if let Some(n) = &name {
            text("name", n, MAX_GROUP_NAME, true)?;
        }
        c.row.name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        let view = self.conversation_view(&c).await?;
        let now = self.events.now();
        let e = Self::updated(c.row.id, &view);
        let seq = self
            .store
            .rename_conversation(c.row.id, c.row.name.as_deref(), &e.to_new(now))
            .await
            .map_err(|e| conversation_conflict(e, id))?;
        self.events.appended(e, seq, now).await;
        Ok(view)
    }

    /// `PUT /fugue-chat/v1/conversations/{id}/members/{fid}`: the owner adds a member
    /// (at most [`MAX_GROUP_MEMBERS`]).
    pub async fn add_conversation_member(
        &self,
        authed: &Authed,
        id: u64,
        fid: &FederationId,
    ) -> Result<ConversationMember, Error> {
        let c = self.member_group(authed.actor.id, id).await?;
        Self::require_owner(&c, authed.actor.id)?;
        if c.members.len() >= MAX_GROUP_MEMBERS {
            return Err(full());
        }
        let now = self.events.now();
        let target = self.member_actor(fid, now).await?;
        if c.is_member(target) {
            return Err(Error::AlreadyMember);
        }
        let member = ConversationMember {
            conversation_id: id,
            fid: fid.clone(),
            joined_at: now.secs(),
        };
        let added = Publish::new(
            stream(c.row.id),
            FUGUE_CHAT,
            fugue_op::CONVERSATION_MEMBER_ADD,
            json(&member),
        )
        .changes_access();
        let mut after = c;
        after.members.push(ConversationMemberRow {
            conversation_id: after.row.id,
            actor_id: target.to_store(),
            local_name: crate::principal::stored_name(fid, &self.domain),
            joined_at: now.to_store(),
            since: i64::MAX,
        });
        let joined = Self::joined_conversation(target, &self.conversation_view(&after).await?);
        let (at, pos) = self
            .store
            .add_conversation_member(
                after.row.id,
                target.to_store(),
                to_store(MAX_GROUP_MEMBERS as u64),
                now.to_store(),
                &added.to_new(now),
                &joined.to_new(now),
            )
            .await
            .map_err(|e| conversation_conflict(e, id))?;
        self.events.appended(added, at, now).await;
        self.events.appended(joined, pos, now).await;
        Ok(member)
    }

    /// `DELETE /fugue-chat/v1/conversations/{id}/members/{fid}` and `.../members/@me`: the
    /// owner removes a member; anyone removes itself (leaves). An owner who leaves hands the
    /// group to the longest-standing remaining member; the last one closes it.
    pub async fn remove_conversation_member(
        &self,
        authed: &Authed,
        id: u64,
        fid: Option<&FederationId>,
    ) -> Result<(), Error> {
        let me = authed.actor.id;
        let c = self.member_group(me, id).await?;
        let target = match fid {
            None => me,
            Some(f) if *f == authed.actor.fid => me,
            Some(f) => self
                .actor_id(f)
                .await?
                .filter(|a| c.is_member(*a))
                .ok_or_else(|| Error::MemberNotFound(f.to_string()))?,
        };
        if target != me {
            Self::require_owner(&c, me)?;
        }
        let gone = c
            .members
            .iter()
            .find(|m| m.actor_id == target.to_store())
            .ok_or(Error::ChannelNotFound(id))?;
        let now = self.events.now();
        let removed = Publish::new(
            stream(c.row.id),
            FUGUE_CHAT,
            fugue_op::CONVERSATION_MEMBER_REMOVE,
            json(&self.conversation_member_view(gone)?),
        )
        .changes_access();
        let left = Self::left_conversation(target, id);
        let remaining: Vec<&ConversationMemberRow> = c
            .members
            .iter()
            .filter(|m| m.actor_id != target.to_store())
            .collect();
        let mut events = Vec::new();
        let mut owner = None;
        let mut closed_at = None;
        if let Some(next) = remaining
            .first()
            .filter(|_| c.row.owner_id == Some(target.to_store()))
        {
            // The longest-standing member (the first by `since`) takes over.
            owner = Some((target.to_store(), Some(next.actor_id)));
            events.push(
                Publish::new(
                    stream(c.row.id),
                    FUGUE_CHAT,
                    fugue_op::CONVERSATION_OWNER,
                    json(&OwnerChange {
                        conversation_id: id,
                        owner_id: self.fid_of(&next.local_name)?,
                        previous: Some(self.fid_of(&gone.local_name)?),
                    }),
                )
                .changes_access(),
            );
        }
        if remaining.is_empty() {
            closed_at = Some(now.to_store());
            if c.row.owner_id == Some(target.to_store()) {
                owner = Some((target.to_store(), None));
            }
            let closed = Loaded {
                row: ConversationRow {
                    owner_id: None,
                    closed_at,
                    ..c.row.clone()
                },
                members: Vec::new(),
            };
            // Announced before the departure, while the last member still follows.
            events.push(Self::updated(
                c.row.id,
                &self.conversation_view(&closed).await?,
            ));
        }
        // The departure first, then a new owner: followers learn them in that order.
        let at = usize::from(closed_at.is_some());
        events.insert(at, removed);
        events.push(left);
        let positions = self
            .store
            .remove_conversation_member(
                c.row.id,
                target.to_store(),
                owner,
                closed_at,
                &events.iter().map(|e| e.to_new(now)).collect::<Vec<_>>(),
            )
            .await
            .map_err(|e| conversation_conflict(e, id))?;
        for (e, pos) in events.into_iter().zip(positions) {
            self.events.appended(e, pos, now).await;
        }
        Ok(())
    }

    /// `PUT /fugue-chat/v1/conversations/{id}/owner`: the owner hands the group to a member.
    pub async fn transfer_conversation(
        &self,
        authed: &Authed,
        id: u64,
        to: &FederationId,
    ) -> Result<Conversation, Error> {
        let me = authed.actor.id;
        let mut c = self.member_group(me, id).await?;
        Self::require_owner(&c, me)?;
        let not_member = || Error::MemberNotFound(to.to_string());
        let target = self
            .actor_id(to)
            .await?
            .filter(|a| c.is_member(*a))
            .ok_or_else(not_member)?;
        let now = self.events.now();
        let e = Publish::new(
            stream(c.row.id),
            FUGUE_CHAT,
            fugue_op::CONVERSATION_OWNER,
            json(&OwnerChange {
                conversation_id: id,
                owner_id: to.clone(),
                previous: Some(authed.actor.fid.clone()),
            }),
        )
        .changes_access();
        let seq = self
            .store
            .transfer_conversation(c.row.id, me.to_store(), target.to_store(), &e.to_new(now))
            .await
            .map_err(|e| conversation_conflict(e, id))?;
        self.events.appended(e, seq, now).await;
        c.row.owner_id = Some(target.to_store());
        self.conversation_view(&c).await
    }
}

fn full() -> Error {
    Error::Invalid(format!("a group has at most {MAX_GROUP_MEMBERS} members"))
}

/// A conversation write the store refused: someone changed it meanwhile.
fn conversation_conflict(e: fugue_store::Error, id: u64) -> Error {
    match e {
        fugue_store::Error::Conflict(Conflict::ConversationMissing) => Error::ChannelNotFound(id),
        fugue_store::Error::Conflict(Conflict::ConversationFull) => full(),
        fugue_store::Error::Conflict(Conflict::AlreadyMember) => Error::AlreadyMember,
        fugue_store::Error::Conflict(Conflict::NotOwner | Conflict::NotAMember) => Error::Changed,
        e => Error::Store(e),
    }
}
