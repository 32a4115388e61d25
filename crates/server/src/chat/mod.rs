//! Chat (polyproto-chat and Fugue's `fugue-chat` additions, DIGEST §11): guilds, channels,
//! members, invites, roles and overwrites, bans, and signed messages (`messages.rs`);
//! reactions and pins (`reactions.rs`), mentions and read states (`reads.rs`), presence and
//! profiles (`presence.rs`), attachments, avatars and icons (`attachments.rs`).
//!
//! Rules: everything inside a guild that the caller may not see answers 404 as if it did not
//! exist (a private guild for a non-member, a channel without VIEW_CHANNEL); a member lacking
//! a permission gets 403 naming it. Permissions come from one function
//! (`permissions::effective`) over a per-guild [`Snapshot`] cached by the guild's access
//! version. Every change is written together with its event in the guild's stream (and, for
//! memberships, the actor's own stream) in one transaction, then announced (`Events`);
//! the gateway follows guild streams through the [`gateway::Service`] this domain offers
//! (`follow.rs`). Foreign actors signed in by key trial are members like local ones.
//! HTTP lives in `routes.rs`; the store holds no rule.

mod attachments;
mod community_routes;
mod conversation_routes;
mod conversations;
mod encryption;
pub use encryption::ChannelAccess;
mod error;
mod follow;
mod imports;
mod messages;
pub mod permissions;
mod presence;
mod reactions;
mod reads;
mod resign;
pub mod routes;

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use serde::Serialize;
use serde_json::Value;

use fugue_proto::api::{
    create_channel, create_guild, create_invite, create_role, list_members, set_overwrite,
    update_channel, update_guild, update_role,
};
use fugue_proto::chat::{
    self, Ban, CHAT, Channel, FUGUE_CHAT, Guild, GuildRef, Invite, Member, MemberRef, Overwrite,
    OverwriteTarget, OverwriteUpdate, Permissions, Role, RoleDelete, channel_type, fugue_op, op,
};
use fugue_proto::{DomainName, FederationId, LocalName};
use fugue_store::{
    ChannelRow, Conflict, GuildInviteRow, GuildRow, MemberRow, OverwriteRow, RoleRow, Store,
    TargetKind,
};

pub use error::Error;
pub use follow::FugueChatChannel;
pub use imports::Importable;
pub use permissions::Snapshot;

use crate::config::RateLimits;
use crate::events::{Audience, Events, Publish};
use crate::federation::Federation;
use crate::ids::{ActorId, StreamId, from_store, to_store};
use crate::media::Media;
use crate::principal::{Actor, stored_name};
use crate::ratelimit::Window;
use crate::sessions::{Authed, Sessions};

/// Most entries of each cache (guild snapshots, channels, certificates) before it is emptied.
const MAX_CACHED: usize = 10_000;
/// Characters of an invite code (62 possibilities each: about 119 bits).
const INVITE_CODE_LEN: usize = 20;

/// The chat limits of chat.md, per actor.
pub struct ChatLimits {
    /// Messages per (actor, channel) per 5 s.
    pub messages: Window<(ActorId, i64)>,
    /// Channel creations per (actor, guild) per 5 min.
    pub channels: Window<(ActorId, i64)>,
    /// Guild operations per actor per minute.
    pub guild_ops: Window<ActorId>,
}

impl ChatLimits {
    pub fn new(rl: &RateLimits) -> Self {
        Self {
            messages: Window::new(rl.chat_messages_per_5s, Duration::from_secs(5)),
            channels: Window::new(rl.chat_channels_per_5min, Duration::from_secs(300)),
            guild_ops: Window::new(rl.chat_guild_ops_per_minute, Duration::from_secs(60)),
        }
    }
}

/// What never changes about a channel: its guild and its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelRef {
    pub id: i64,
    pub guild_id: i64,
    pub kind: i64,
}

impl ChannelRef {
    /// A DM or group: a channel of its own stream, without a guild.
    pub fn is_conversation(&self) -> bool {
        matches!(
            u8::try_from(self.kind),
            Ok(channel_type::DM | channel_type::GROUP)
        )
    }
}

/// A local actor's certificate as stored, parsed once.
pub struct LocalCert {
    pub actor_id: i64,
    pub cert: fugue_proto::certs::IdCert,
    pub pem: String,
}

/// Inserts into a cache map, emptying it first when it is full.
fn cache_insert<K: std::hash::Hash + Eq, V>(map: &Mutex<HashMap<K, V>>, key: K, value: V) {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= MAX_CACHED {
        map.clear();
    }
    map.insert(key, value);
}

fn cache_get<K: std::hash::Hash + Eq, V: Clone>(map: &Mutex<HashMap<K, V>>, key: &K) -> Option<V> {
    map.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(key)
        .cloned()
}

/// The chat domain; cheap to clone.
#[derive(Clone)]
pub struct Chat(Arc<Inner>);

pub struct Inner {
    store: Store,
    events: Events,
    federation: Federation,
    sessions: Sessions,
    /// Attachments, avatars and icons are resources.
    media: Media,
    domain: DomainName,
    /// Owns the writes started off a request (presence).
    tasks: crate::tasks::Tasks,
    /// Guild → its access rules at the version they were read.
    snapshots: Mutex<HashMap<i64, Arc<Snapshot>>>,
    /// Channel → its guild and type, which never change (whether it still exists is the
    /// snapshot's to say).
    channel_refs: Mutex<HashMap<i64, ChannelRef>>,
    /// Serial → a local actor's certificate, parsed (a certificate never changes; whether it
    /// is revoked is asked each time it is used).
    local_certs: Mutex<HashMap<u64, Arc<LocalCert>>>,
    /// The last message id this node gave out (ids only grow on one node).
    last_message_id: AtomicI64,
    /// The actors with a `chat` connection on this node (presence).
    presence: presence::Local,
    pub limits: ChatLimits,
}

impl std::ops::Deref for Chat {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// A payload as JSON. Our payload types are plain structs of strings and numbers, which
/// always serialise.
pub(crate) fn json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// A random positive 63-bit id.
pub(crate) fn random_id() -> i64 {
    i64::try_from(OsRng.next_u64() >> 1).unwrap_or(1).max(1)
}

/// An unguessable invite code.
fn invite_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut code = String::with_capacity(INVITE_CODE_LEN);
    while code.len() < INVITE_CODE_LEN {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        // Bytes below 248 = 4 × 62 map evenly onto the alphabet.
        for b in bytes.into_iter().filter(|b| *b < 248) {
            if code.len() < INVITE_CODE_LEN {
                code.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    code
}

/// A stored invite's hash from what a caller names it by: its code, or the hex of its hash
/// (the `id` listings show).
fn invite_hash(code_or_id: &str) -> Vec<u8> {
    if code_or_id.len() == 64
        && let Ok(hash) = hex::decode(code_or_id)
    {
        return hash;
    }
    crate::sessions::hash_secret(code_or_id)
}

fn text(field: &str, value: &str, max: usize, may_be_empty: bool) -> Result<(), Error> {
    let n = value.chars().count();
    if (!may_be_empty && value.trim().is_empty()) || n > max {
        return Err(Error::Invalid(format!(
            "{field} must be {} to {max} characters",
            u8::from(!may_be_empty)
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

fn optional_text(field: &str, value: Option<&str>, max: usize) -> Result<(), Error> {
    value.map_or(Ok(()), |v| text(field, v, max, true))
}

/// What the chat domain works with: the other domains it calls.
pub struct Deps {
    pub store: Store,
    pub events: Events,
    pub federation: Federation,
    pub sessions: Sessions,
    /// Attachments, avatars and icons are resources.
    pub media: Media,
    /// Owns the writes started off a request (presence).
    pub tasks: crate::tasks::Tasks,
}

impl Chat {
    pub fn new(deps: Deps, domain: DomainName, limits: &RateLimits) -> Self {
        let Deps {
            store,
            events,
            federation,
            sessions,
            media,
            tasks,
        } = deps;
        Self(Arc::new(Inner {
            store,
            events,
            federation,
            sessions,
            media,
            domain,
            tasks,
            snapshots: Mutex::new(HashMap::new()),
            channel_refs: Mutex::new(HashMap::new()),
            local_certs: Mutex::new(HashMap::new()),
            last_message_id: AtomicI64::new(0),
            presence: presence::Local::default(),
            limits: ChatLimits::new(limits),
        }))
    }

    // ---- who is who ----

    /// The FID of a stored actor name.
    fn fid_of(&self, stored: &str) -> Result<FederationId, Error> {
        if let Ok(fid) = stored.parse::<FederationId>() {
            return Ok(fid);
        }
        let local: LocalName = stored.parse().map_err(|_| {
            Error::Store(fugue_store::Error::Decode(format!(
                "stored actor name {stored:?} does not parse"
            )))
        })?;
        Ok(FederationId::new(local, self.domain.clone()))
    }

    async fn fid_by_id(&self, actor_id: i64) -> Result<FederationId, Error> {
        let row = self.store.actor_by_id(actor_id).await?.ok_or_else(|| {
            Error::Store(fugue_store::Error::Decode(format!(
                "actor {actor_id} vanished"
            )))
        })?;
        self.fid_of(&row.local_name)
    }

    /// The stored actor of a FID, if this server knows it.
    async fn actor_id(&self, fid: &FederationId) -> Result<Option<ActorId>, Error> {
        Ok(self
            .store
            .actor_by_name(&stored_name(fid, &self.domain))
            .await?
            .map(|r| ActorId::from_store(r.id)))
    }

    // ---- permissions ----

    /// The guild's access rules now (`None` when it does not exist): one read of the
    /// guild's row, and a full read only after an access change.
    pub async fn snapshot(&self, guild_id: i64) -> Result<Option<Arc<Snapshot>>, Error> {
        let Some(guild) = self.store.guild(guild_id).await? else {
            return Ok(None);
        };
        if let Some(s) = self.cached(guild_id)
            && s.version == guild.access_version
        {
            return Ok(Some(s));
        }
        let Some(access) = self.store.guild_access(guild_id).await? else {
            return Ok(None);
        };
        let snapshot = Arc::new(Snapshot::new(access));
        cache_insert(&self.snapshots, guild_id, snapshot.clone());
        Ok(Some(snapshot))
    }

    fn cached(&self, guild_id: i64) -> Option<Arc<Snapshot>> {
        cache_get(&self.snapshots, &guild_id)
    }

    /// A guild the actor may see: a member's, or a public one.
    async fn visible_guild(&self, actor: &Actor, guild_id: u64) -> Result<Arc<Snapshot>, Error> {
        match self.snapshot(to_store(guild_id)).await? {
            Some(s) if !s.private || s.is_member(actor.id) => Ok(s),
            _ => Err(Error::GuildNotFound(guild_id)),
        }
    }

    /// A guild the actor is a member of, and its permissions there.
    async fn member_guild(
        &self,
        actor: &Actor,
        guild_id: u64,
    ) -> Result<(Arc<Snapshot>, Permissions), Error> {
        let s = self
            .snapshot(to_store(guild_id))
            .await?
            .ok_or(Error::GuildNotFound(guild_id))?;
        let p = s.in_guild(actor.id).ok_or(Error::GuildNotFound(guild_id))?;
        Ok((s, p))
    }

    /// A channel the actor may view, its guild's rules and the actor's permissions there.
    async fn visible_channel(
        &self,
        actor: &Actor,
        channel_id: u64,
    ) -> Result<(ChannelRow, Arc<Snapshot>, Permissions), Error> {
        let not_found = || Error::ChannelNotFound(channel_id);
        let row = self
            .store
            .channel(to_store(channel_id))
            .await?
            .ok_or_else(not_found)?;
        let s = self.snapshot(row.guild_id).await?.ok_or_else(not_found)?;
        let p = s.in_channel(actor.id, row.id).ok_or_else(not_found)?;
        if !p.contains(Permissions::VIEW_CHANNEL) {
            return Err(not_found());
        }
        Ok((row, s, p))
    }

    /// [`Chat::visible_channel`] for the hot paths (messages, typing): the channel's guild
    /// and type from memory, its existence and the actor's view from the snapshot.
    async fn channel_access(
        &self,
        actor: &Actor,
        channel_id: u64,
    ) -> Result<(ChannelRef, Arc<Snapshot>, Permissions), Error> {
        let not_found = || Error::ChannelNotFound(channel_id);
        let id = to_store(channel_id);
        let c = match cache_get(&self.channel_refs, &id) {
            Some(c) => c,
            None => {
                let c = match self.store.channel(id).await? {
                    Some(row) => ChannelRef {
                        id: row.id,
                        guild_id: row.guild_id,
                        kind: row.kind,
                    },
                    // A conversation is a channel of its own stream.
                    None => self.conversation_ref(id).await?.ok_or_else(not_found)?,
                };
                cache_insert(&self.channel_refs, id, c);
                c
            }
        };
        let s = if c.is_conversation() {
            self.conversation_snapshot(c.id).await?
        } else {
            self.snapshot(c.guild_id).await?
        }
        .ok_or_else(not_found)?;
        let p = s.in_channel(actor.id, c.id).ok_or_else(not_found)?;
        if !p.contains(Permissions::VIEW_CHANNEL) {
            return Err(not_found());
        }
        Ok((c, s, p))
    }

    /// The actor's permissions in a channel by the access rules cached on this node, without
    /// asking whether they are still current: for a write that checks the rules' version
    /// itself. `None` when nothing is cached or the cached rules do not let the actor view
    /// the channel with `need` (the caller asks again with [`Chat::channel_access`]).
    fn cached_channel_access(
        &self,
        actor: &Actor,
        channel_id: u64,
        need: Permissions,
    ) -> Option<(ChannelRef, Arc<Snapshot>, Permissions)> {
        let c = cache_get(&self.channel_refs, &to_store(channel_id))?;
        // A conversation's rules are cached under its own id, which is its `guild_id`.
        let s = cache_get(&self.snapshots, &c.guild_id)?;
        let p = s.in_channel(actor.id, c.id)?;
        p.contains(Permissions::VIEW_CHANNEL | need)
            .then_some((c, s, p))
    }

    fn require(have: Permissions, need: Permissions) -> Result<(), Error> {
        if have.contains(need) {
            Ok(())
        } else {
            Err(Error::MissingPermission(need))
        }
    }

    // ---- conversions ----

    async fn guild_view(&self, g: &GuildRow) -> Result<Guild, Error> {
        Ok(Guild {
            id: from_store(g.id),
            name: g.name.clone(),
            display_name: g.name.clone(),
            description: g.description.clone(),
            icon: g.icon.clone(),
            owner_id: self.fid_by_id(g.owner_id).await?,
            private: g.private,
            created_at: from_store(g.created_at),
            member_count: from_store(self.store.member_count(g.id).await?),
            features: Vec::new(),
        })
    }

    fn channel_view(c: &ChannelRow, permissions: Option<Permissions>) -> Channel {
        Channel {
            id: from_store(c.id),
            guild_id: from_store(c.guild_id),
            name: c.name.clone(),
            kind: u8::try_from(c.kind).unwrap_or(channel_type::TEXT),
            position: u32::try_from(c.position).unwrap_or(0),
            topic: c.topic.clone(),
            description: c.topic.clone(),
            parent_id: c.parent_id.map(from_store),
            created_at: from_store(c.created_at),
            permissions,
        }
    }

    fn member_view(&self, m: &MemberRow, roles: Vec<i64>) -> Result<Member, Error> {
        Ok(Member {
            guild_id: from_store(m.guild_id),
            fid: self.fid_of(&m.local_name)?,
            joined_at: from_store(m.joined_at),
            roles: roles
                .into_iter()
                .map(|r| chat::IdString(from_store(r)))
                .collect(),
        })
    }

    fn role_view(r: &RoleRow) -> Role {
        Role {
            id: from_store(r.id),
            guild_id: from_store(r.guild_id),
            name: r.name.clone(),
            permissions: Permissions::from_bits(r.permissions.cast_unsigned()),
            position: u32::try_from(r.position).unwrap_or(0),
            color: r.color.and_then(|c| u32::try_from(c).ok()),
        }
    }

    async fn overwrite_view(&self, o: &OverwriteRow) -> Result<Overwrite, Error> {
        let (kind, target) = match o.kind {
            TargetKind::Role => ("role", o.target_id.to_string()),
            TargetKind::Member => ("member", self.fid_by_id(o.target_id).await?.to_string()),
        };
        Ok(Overwrite {
            channel_id: from_store(o.channel_id),
            kind: kind.to_owned(),
            target,
            allow: Permissions::from_bits(o.allow.cast_unsigned()),
            deny: Permissions::from_bits(o.deny.cast_unsigned()),
        })
    }

    fn invite_view(&self, i: &GuildInviteRow, code: Option<String>) -> Result<Invite, Error> {
        Ok(Invite {
            code,
            id: hex::encode(&i.code_hash),
            guild_id: from_store(i.guild_id),
            channel_id: from_store(i.channel_id),
            creator: self.fid_of(&i.creator_name)?,
            max_uses: from_store(i.max_uses),
            uses: from_store(i.uses),
            expires_at: i.expires_at.map(from_store),
            created_at: from_store(i.created_at),
        })
    }

    /// The time now, by the server's clock.
    pub fn now(&self) -> crate::time::UnixTime {
        self.events.now()
    }

    fn guild_stream(guild_id: i64) -> StreamId {
        StreamId::from_store(guild_id)
    }

    // ---- guilds ----

    /// `POST /guilds`: a guild owned by the caller, with `@everyone`, a `general` channel
    /// and the owner as its first member.
    pub async fn create_guild(
        &self,
        authed: &Authed,
        req: create_guild::Request,
    ) -> Result<Guild, Error> {
        text("name", &req.name, chat::MAX_GUILD_NAME, false)?;
        optional_text(
            "description",
            req.description.as_deref(),
            chat::MAX_DESCRIPTION,
        )?;
        let actor = &authed.actor;
        let icon = self.picture(actor, req.icon).await?.flatten();
        let now = self.events.now();
        let g = GuildRow {
            id: random_id(),
            name: req.name.trim().to_owned(),
            description: req.description,
            icon,
            owner_id: actor.id.to_store(),
            private: req.private.unwrap_or(true),
            created_at: now.to_store(),
            access_version: 0,
        };
        let first = ChannelRow {
            id: random_id(),
            guild_id: g.id,
            name: "general".into(),
            kind: i64::from(channel_type::TEXT),
            topic: None,
            parent_id: None,
            position: 0,
            created_at: now.to_store(),
        };
        let member = Member {
            guild_id: from_store(g.id),
            fid: actor.fid.clone(),
            joined_at: now.secs(),
            roles: Vec::new(),
        };
        let added = Publish::new(
            Self::guild_stream(g.id),
            CHAT,
            op::MEMBER_ADD,
            json(&member),
        )
        .changes_access();
        let joined = self.joined(actor.id, g.id);
        let pos = self
            .store
            .create_guild(
                &g,
                Permissions::DEFAULT_EVERYONE.bits().cast_signed(),
                &first,
                &added.to_new(now),
                &joined.to_new(now),
            )
            .await?;
        self.events.appended(added, pos.guild, now).await;
        self.events.appended(joined, pos.actor, now).await;
        self.guild_view(&g).await
    }

    fn joined(&self, actor: ActorId, guild_id: i64) -> Publish {
        Publish::to_actor(
            actor,
            FUGUE_CHAT,
            fugue_op::GUILD_JOINED,
            json(&GuildRef {
                guild_id: from_store(guild_id),
            }),
        )
        .changes_access()
    }

    fn left(&self, actor: ActorId, guild_id: i64) -> Publish {
        Publish::to_actor(
            actor,
            FUGUE_CHAT,
            fugue_op::GUILD_LEFT,
            json(&GuildRef {
                guild_id: from_store(guild_id),
            }),
        )
        .changes_access()
    }

    /// `GET /guilds/{id}` and `GET /guilds?guild_id=`.
    pub async fn guild(&self, authed: &Authed, guild_id: u64) -> Result<Guild, Error> {
        self.visible_guild(&authed.actor, guild_id).await?;
        let g = self
            .store
            .guild(to_store(guild_id))
            .await?
            .ok_or(Error::GuildNotFound(guild_id))?;
        self.guild_view(&g).await
    }

    /// `PATCH /guilds/{id}` (MANAGE_GUILD).
    pub async fn update_guild(
        &self,
        authed: &Authed,
        guild_id: u64,
        req: update_guild::Request,
    ) -> Result<Guild, Error> {
        let (_, p) = self.member_guild(&authed.actor, guild_id).await?;
        Self::require(p, Permissions::MANAGE_GUILD)?;
        if let Some(name) = &req.name {
            text("name", name, chat::MAX_GUILD_NAME, false)?;
        }
        optional_text(
            "description",
            req.description.as_deref(),
            chat::MAX_DESCRIPTION,
        )?;
        let icon = self.picture(&authed.actor, req.icon).await?;
        let mut g = self
            .store
            .guild(to_store(guild_id))
            .await?
            .ok_or(Error::GuildNotFound(guild_id))?;
        if let Some(name) = req.name {
            g.name = name.trim().to_owned();
        }
        if req.description.is_some() {
            g.description = req.description.filter(|d| !d.is_empty());
        }
        if let Some(icon) = icon {
            g.icon = icon;
        }
        if let Some(private) = req.private {
            g.private = private;
        }
        let view = self.guild_view(&g).await?;
        self.publish_guild_update(&g, &view, |store, e| {
            let g = g.clone();
            async move { store.update_guild(&g, &e).await }
        })
        .await?;
        Ok(view)
    }

    async fn publish_guild_update<F, Fut>(
        &self,
        g: &GuildRow,
        view: &Guild,
        write: F,
    ) -> Result<(), Error>
    where
        F: FnOnce(Store, fugue_store::NewEvent) -> Fut,
        Fut: std::future::Future<Output = fugue_store::Result<i64>>,
    {
        let now = self.events.now();
        // Privacy decides who may see the guild at all: an access change.
        let p = Publish::new(Self::guild_stream(g.id), CHAT, op::GUILD_UPDATE, json(view))
            .collapse(format!("guild:{}", g.id))
            .changes_access();
        let seq = write(self.store.clone(), p.to_new(now))
            .await
            .map_err(|e| guild_conflict(e, view.id))?;
        self.events.appended(p, seq, now).await;
        Ok(())
    }

    /// `DELETE /guilds/{id}`: the owner, with the second factor. A foreign owner has none
    /// this server can check, so it hands the guild to a local member first.
    pub async fn delete_guild(
        &self,
        authed: &Authed,
        guild_id: u64,
        solution: Option<&str>,
    ) -> Result<(), Error> {
        let (s, _) = self.member_guild(&authed.actor, guild_id).await?;
        if s.owner != authed.actor.id {
            return Err(Error::NotOwner);
        }
        if authed.actor.is_foreign() {
            return Err(Error::Forbidden(
                "deleting a guild needs a second factor, which this server cannot check for an actor of another server; transfer the guild to a local member first".into(),
            ));
        }
        let now = self.events.now();
        self.sessions
            .check_sensitive(&authed.actor, solution, now.secs())
            .await?;
        let p = Publish::new(
            Self::guild_stream(s.guild_id),
            FUGUE_CHAT,
            fugue_op::GUILD_DELETE,
            json(&GuildRef { guild_id }),
        )
        .changes_access();
        let seq = self
            .store
            .delete_guild(s.guild_id, now.to_store(), &p.to_new(now))
            .await
            .map_err(|e| guild_conflict(e, guild_id))?;
        self.events.appended(p, seq, now).await;
        Ok(())
    }

    /// `PUT /guilds/{id}/owner` (fugue-chat): the owner hands the guild to a member.
    pub async fn transfer_guild(
        &self,
        authed: &Authed,
        guild_id: u64,
        to: &FederationId,
    ) -> Result<Guild, Error> {
        let (s, _) = self.member_guild(&authed.actor, guild_id).await?;
        if s.owner != authed.actor.id {
            return Err(Error::NotOwner);
        }
        let not_member = || Error::MemberNotFound(to.to_string());
        let target = self.actor_id(to).await?.ok_or_else(not_member)?;
        if !s.is_member(target) {
            return Err(not_member());
        }
        let mut g = self
            .store
            .guild(s.guild_id)
            .await?
            .ok_or(Error::GuildNotFound(guild_id))?;
        g.owner_id = target.to_store();
        let view = self.guild_view(&g).await?;
        let (from, to_id) = (authed.actor.id.to_store(), target.to_store());
        self.publish_guild_update(&g, &view, |store, e| async move {
            store.transfer_guild(g.id, from, to_id, &e).await
        })
        .await?;
        Ok(view)
    }

    // ---- channels ----

    /// `GET /guilds/{id}/channels`: the ones the caller may view, with its permissions.
    pub async fn channels(&self, authed: &Authed, guild_id: u64) -> Result<Vec<Channel>, Error> {
        let (s, _) = self.member_guild(&authed.actor, guild_id).await?;
        let rows = self.store.channels(s.guild_id).await?;
        Ok(rows
            .iter()
            .filter_map(|c| {
                let p = s.in_channel(authed.actor.id, c.id)?;
                p.contains(Permissions::VIEW_CHANNEL)
                    .then(|| Self::channel_view(c, Some(p)))
            })
            .collect())
    }

    /// A category of the guild for `parent_id`.
    async fn category(&self, guild_id: i64, parent: Option<u64>) -> Result<Option<i64>, Error> {
        let Some(parent) = parent.filter(|p| *p != 0) else {
            return Ok(None);
        };
        match self.store.channel(to_store(parent)).await? {
            Some(c) if c.guild_id == guild_id && c.kind == i64::from(channel_type::CATEGORY) => {
                Ok(Some(c.id))
            }
            _ => Err(Error::Invalid(format!(
                "parent_id {parent} is not a category of this guild"
            ))),
        }
    }

    /// `POST /guilds/{id}/channels` (MANAGE_CHANNELS).
    pub async fn create_channel(
        &self,
        authed: &Authed,
        guild_id: u64,
        req: create_channel::Request,
    ) -> Result<Channel, Error> {
        let (s, p) = self.member_guild(&authed.actor, guild_id).await?;
        Self::require(p, Permissions::MANAGE_CHANNELS)?;
        text("name", &req.name, chat::MAX_NAME, false)?;
        optional_text("topic", req.topic.as_deref(), chat::MAX_DESCRIPTION)?;
        let kind = req.kind.unwrap_or(channel_type::TEXT);
        if !channel_type::known(kind) {
            return Err(Error::Invalid(format!("unknown channel type {kind}")));
        }
        let parent_id = self.category(s.guild_id, req.parent_id).await?;
        if kind == channel_type::CATEGORY && parent_id.is_some() {
            return Err(Error::Invalid("a category cannot be in a category".into()));
        }
        let now = self.events.now();
        let position = match req.position {
            Some(p) => i64::from(p),
            None => self
                .store
                .channels(s.guild_id)
                .await?
                .iter()
                .map(|c| c.position + 1)
                .max()
                .unwrap_or(0),
        };
        let c = ChannelRow {
            id: random_id(),
            guild_id: s.guild_id,
            name: req.name.trim().to_owned(),
            kind: i64::from(kind),
            topic: req.topic.filter(|t| !t.is_empty()),
            parent_id,
            position,
            created_at: now.to_store(),
        };
        let view = Self::channel_view(&c, None);
        // To those who may see the channel: one made in a category starts with the
        // category's overwrites (copied in the same transaction), so a channel of a private
        // category is announced only inside it. Followers renew their views at this
        // access-changing event before a channel they did not see yet is decided on.
        let p = Publish::new(
            Self::guild_stream(c.guild_id),
            CHAT,
            op::CHANNEL_CREATE,
            json(&view),
        )
        .audience(Audience::Channel(c.id))
        .changes_access();
        let seq = self
            .store
            .insert_channel(&c, &p.to_new(now))
            .await
            .map_err(|e| guild_conflict(e, guild_id))?;
        self.events.appended(p, seq, now).await;
        Ok(view)
    }

    /// `PATCH /channels/{id}` (MANAGE_CHANNELS there).
    pub async fn update_channel(
        &self,
        authed: &Authed,
        channel_id: u64,
        req: update_channel::Request,
    ) -> Result<Channel, Error> {
        let (mut c, _, p) = self.visible_channel(&authed.actor, channel_id).await?;
        Self::require(p, Permissions::MANAGE_CHANNELS)?;
        if let Some(name) = req.name {
            text("name", &name, chat::MAX_NAME, false)?;
            c.name = name.trim().to_owned();
        }
        if let Some(topic) = req.topic {
            text("topic", &topic, chat::MAX_DESCRIPTION, true)?;
            c.topic = Some(topic).filter(|t| !t.is_empty());
        }
        if let Some(position) = req.position {
            c.position = i64::from(position);
        }
        if req.parent_id.is_some() {
            if c.kind == i64::from(channel_type::CATEGORY) && req.parent_id != Some(0) {
                return Err(Error::Invalid("a category cannot be in a category".into()));
            }
            c.parent_id = self.category(c.guild_id, req.parent_id).await?;
        }
        let view = Self::channel_view(&c, None);
        let now = self.events.now();
        let p = Publish::new(
            Self::guild_stream(c.guild_id),
            CHAT,
            op::CHANNEL_UPDATE,
            json(&view),
        )
        .audience(Audience::Channel(c.id))
        .collapse(format!("channel:{}", c.id));
        let seq = self
            .store
            .update_channel(&c, &p.to_new(now))
            .await
            .map_err(|e| channel_conflict(e, channel_id))?;
        self.events.appended(p, seq, now).await;
        Ok(Self::channel_view(&c, None))
    }

    /// `DELETE /channels/{id}` (MANAGE_CHANNELS there): with its messages.
    pub async fn delete_channel(&self, authed: &Authed, channel_id: u64) -> Result<(), Error> {
        let (c, _, p) = self.visible_channel(&authed.actor, channel_id).await?;
        Self::require(p, Permissions::MANAGE_CHANNELS)?;
        let d = chat::ChannelDelete {
            id: channel_id,
            guild_id: from_store(c.guild_id),
        };
        let now = self.events.now();
        // To every member: a resume or `GET /events` decides on missed events with the views
        // of now, which hold no deleted channel, so a channel-scoped delete would never reach
        // a client that was away when it happened. It names only ids (as overwrite events do).
        let p = Publish::new(
            Self::guild_stream(c.guild_id),
            CHAT,
            op::CHANNEL_DELETE,
            json(&d),
        )
        .changes_access();
        let seq = self
            .store
            .delete_channel(c.guild_id, c.id, &p.to_new(now))
            .await
            .map_err(|e| channel_conflict(e, channel_id))?;
        self.events.appended(p, seq, now).await;
        Ok(())
    }

    // ---- members ----

    /// `GET /guilds/{id}/members`: ordered by stored name, `after` a FID.
    pub async fn members(
        &self,
        authed: &Authed,
        guild_id: u64,
        q: list_members::Query,
    ) -> Result<Vec<Member>, Error> {
        let (s, _) = self.member_guild(&authed.actor, guild_id).await?;
        let limit = q.limit.unwrap_or(chat::DEFAULT_MEMBER_PAGE);
        if limit == 0 || limit > chat::MAX_MEMBER_PAGE {
            return Err(Error::Invalid(format!(
                "limit must be 1 to {}",
                chat::MAX_MEMBER_PAGE
            )));
        }
        let after = q.after.map(|fid| stored_name(&fid, &self.domain));
        let rows = self
            .store
            .members(s.guild_id, after.as_deref(), to_store(limit))
            .await?;
        let mut roles: HashMap<i64, Vec<i64>> = HashMap::new();
        for (actor, role) in self.store.member_roles(s.guild_id).await? {
            roles.entry(actor).or_default().push(role);
        }
        rows.iter()
            .map(|m| self.member_view(m, roles.remove(&m.actor_id).unwrap_or_default()))
            .collect()
    }

    /// `POST /guilds/{id}/members`: with an invite of this guild, or without one into a
    /// public guild. Banned actors stay out, with any invite.
    pub async fn join(
        &self,
        authed: &Authed,
        guild_id: u64,
        invite_code: Option<&str>,
    ) -> Result<Member, Error> {
        let actor = &authed.actor;
        let hash = invite_code.map(invite_hash);
        let s = match self.snapshot(to_store(guild_id)).await? {
            // A private guild exists for whoever holds one of its invites.
            Some(s) if !s.private || hash.is_some() || s.is_member(actor.id) => s,
            _ => return Err(Error::GuildNotFound(guild_id)),
        };
        if let Some(hash) = &hash {
            match self.store.guild_invite(hash).await? {
                Some(i) if i.guild_id == s.guild_id => {}
                _ => return Err(Error::InvalidInvite),
            }
        } else if s.private {
            return Err(Error::InviteRequired);
        }
        let now = self.events.now();
        let member = Member {
            guild_id,
            fid: actor.fid.clone(),
            joined_at: now.secs(),
            roles: Vec::new(),
        };
        let added = Publish::new(
            Self::guild_stream(s.guild_id),
            CHAT,
            op::MEMBER_ADD,
            json(&member),
        )
        .changes_access();
        let joined = self.joined(actor.id, s.guild_id);
        let pos = self
            .store
            .join_guild(
                s.guild_id,
                actor.id.to_store(),
                hash.as_deref(),
                now.to_store(),
                &added.to_new(now),
                &joined.to_new(now),
            )
            .await
            .map_err(|e| match e {
                fugue_store::Error::Conflict(Conflict::Banned) => Error::Banned,
                fugue_store::Error::Conflict(Conflict::AlreadyMember) => Error::AlreadyMember,
                fugue_store::Error::Conflict(Conflict::InviteUnusable) => Error::InvalidInvite,
                e => guild_conflict(e, guild_id),
            })?;
        self.events.appended(added, pos.guild, now).await;
        self.events.appended(joined, pos.actor, now).await;
        Ok(member)
    }

    /// `DELETE /guilds/{id}/members/@me`.
    pub async fn leave(&self, authed: &Authed, guild_id: u64) -> Result<(), Error> {
        let (s, _) = self.member_guild(&authed.actor, guild_id).await?;
        if s.owner == authed.actor.id {
            return Err(Error::OwnerCannotLeave);
        }
        self.remove(&s, authed.actor.id, &authed.actor.fid).await
    }

    /// `DELETE /guilds/{id}/members/{fid}` (KICK_MEMBERS).
    pub async fn kick(
        &self,
        authed: &Authed,
        guild_id: u64,
        fid: &FederationId,
    ) -> Result<(), Error> {
        let (s, p) = self.member_guild(&authed.actor, guild_id).await?;
        Self::require(p, Permissions::KICK_MEMBERS)?;
        let not_member = || Error::MemberNotFound(fid.to_string());
        let target = self.actor_id(fid).await?.ok_or_else(not_member)?;
        if !s.is_member(target) {
            return Err(not_member());
        }
        if target == s.owner {
            return Err(Error::OwnerCannotLeave);
        }
        self.remove(&s, target, fid).await
    }

    async fn remove(&self, s: &Snapshot, actor: ActorId, fid: &FederationId) -> Result<(), Error> {
        let now = self.events.now();
        let d = MemberRef {
            guild_id: from_store(s.guild_id),
            fid: fid.clone(),
        };
        let removed = Publish::new(
            Self::guild_stream(s.guild_id),
            CHAT,
            op::MEMBER_REMOVE,
            json(&d),
        )
        .changes_access();
        let left = self.left(actor, s.guild_id);
        let pos = self
            .store
            .remove_member(
                s.guild_id,
                actor.to_store(),
                &removed.to_new(now),
                &left.to_new(now),
            )
            .await
            .map_err(|e| match e {
                fugue_store::Error::Conflict(Conflict::NotAMember) => {
                    Error::MemberNotFound(fid.to_string())
                }
                e => guild_conflict(e, from_store(s.guild_id)),
            })?;
        self.events.appended(removed, pos.guild, now).await;
        self.events.appended(left, pos.actor, now).await;
        Ok(())
    }

    // ---- invites ----

    /// `POST /channels/{id}/invites` (CREATE_INVITES there).
    pub async fn create_invite(
        &self,
        authed: &Authed,
        channel_id: u64,
        req: create_invite::Request,
    ) -> Result<Invite, Error> {
        let (c, _, p) = self.visible_channel(&authed.actor, channel_id).await?;
        Self::require(p, Permissions::CREATE_INVITES)?;
        let now = self.events.now();
        let code = invite_code();
        let row = GuildInviteRow {
            code_hash: crate::sessions::hash_secret(&code),
            guild_id: c.guild_id,
            channel_id: c.id,
            creator_id: authed.actor.id.to_store(),
            creator_name: stored_name(&authed.actor.fid, &self.domain),
            max_uses: to_store(req.max_uses.unwrap_or(0)),
            uses: 0,
            expires_at: req
                .max_age
                .filter(|a| *a > 0)
                .map(|a| now.plus(a).to_store()),
            created_at: now.to_store(),
        };
        self.store
            .insert_guild_invite(&row)
            .await
            .map_err(|e| guild_conflict(e, from_store(c.guild_id)))?;
        self.invite_view(&row, Some(code))
    }

    /// `GET /guilds/{id}/invites` (MANAGE_GUILD): usable ones, without codes.
    pub async fn invites(&self, authed: &Authed, guild_id: u64) -> Result<Vec<Invite>, Error> {
        let (s, p) = self.member_guild(&authed.actor, guild_id).await?;
        Self::require(p, Permissions::MANAGE_GUILD)?;
        let now = self.events.now();
        self.store
            .guild_invites(s.guild_id, now.to_store())
            .await?
            .iter()
            .map(|i| self.invite_view(i, None))
            .collect()
    }

    /// `DELETE /invites/{code}`: its creator, or MANAGE_GUILD in its guild.
    pub async fn delete_invite(&self, authed: &Authed, code_or_id: &str) -> Result<(), Error> {
        let hash = invite_hash(code_or_id);
        let invite = self
            .store
            .guild_invite(&hash)
            .await?
            .ok_or(Error::InviteNotFound)?;
        let (_, p) = self
            .member_guild(&authed.actor, from_store(invite.guild_id))
            .await
            .map_err(|_| Error::InviteNotFound)?;
        if invite.creator_id != authed.actor.id.to_store() {
            Self::require(p, Permissions::MANAGE_GUILD)?;
        }
        if !self.store.delete_guild_invite(&hash).await? {
            return Err(Error::InviteNotFound);
        }
        Ok(())
    }

    // ---- roles ----

    /// `GET /guilds/{id}/roles` (fugue-chat): to members.
    pub async fn roles(&self, authed: &Authed, guild_id: u64) -> Result<Vec<Role>, Error> {
        let (s, _) = self.member_guild(&authed.actor, guild_id).await?;
        Ok(self
            .store
            .roles(s.guild_id)
            .await?
            .iter()
            .map(Self::role_view)
            .collect())
    }

    /// Role changes need MANAGE_ROLES, and only grant bits the caller has.
    fn may_grant(p: Permissions, bits: Permissions) -> Result<(), Error> {
        Self::require(p, Permissions::MANAGE_ROLES)?;
        Self::require(p, bits)
    }

    async fn publish_role(
        &self,
        guild_id: i64,
        p: Publish,
        write: impl std::future::Future<Output = fugue_store::Result<i64>>,
        now: crate::time::UnixTime,
    ) -> Result<(), Error> {
        let seq = write.await.map_err(|e| match e {
            fugue_store::Error::Conflict(Conflict::RoleMissing) => Error::RoleNotFound(0),
            e => guild_conflict(e, from_store(guild_id)),
        })?;
        self.events.appended(p, seq, now).await;
        Ok(())
    }

    /// `POST /guilds/{id}/roles` (fugue-chat).
    pub async fn create_role(
        &self,
        authed: &Authed,
        guild_id: u64,
        req: create_role::Request,
    ) -> Result<Role, Error> {
        let (s, p) = self.member_guild(&authed.actor, guild_id).await?;
        Self::may_grant(p, req.permissions)?;
        text("name", &req.name, chat::MAX_NAME, false)?;
        let r = RoleRow {
            id: random_id(),
            guild_id: s.guild_id,
            name: req.name.trim().to_owned(),
            permissions: req.permissions.bits().cast_signed(),
            position: i64::from(req.position.unwrap_or(1).max(1)),
            color: req.color.map(i64::from),
        };
        let view = Self::role_view(&r);
        let now = self.events.now();
        let e = Publish::new(
            Self::guild_stream(s.guild_id),
            FUGUE_CHAT,
            fugue_op::ROLE_UPDATE,
            json(&view),
        )
        .changes_access();
        let new = e.to_new(now);
        self.publish_role(s.guild_id, e, self.store.insert_role(&r, &new), now)
            .await?;
        Ok(view)
    }

    /// `PATCH /guilds/{id}/roles/{role}` (fugue-chat).
    pub async fn update_role(
        &self,
        authed: &Authed,
        guild_id: u64,
        role_id: u64,
        req: update_role::Request,
    ) -> Result<Role, Error> {
        let (s, p) = self.member_guild(&authed.actor, guild_id).await?;
        let mut r = self.guild_role(s.guild_id, role_id).await?;
        Self::may_grant(p, req.permissions.unwrap_or(Permissions::NONE))?;
        if let Some(name) = req.name {
            text("name", &name, chat::MAX_NAME, false)?;
            if r.id == r.guild_id {
                return Err(Error::Invalid("@everyone keeps its name".into()));
            }
            r.name = name.trim().to_owned();
        }
        if let Some(bits) = req.permissions {
            r.permissions = bits.bits().cast_signed();
        }
        if let Some(position) = req.position
            && r.id != r.guild_id
        {
            r.position = i64::from(position.max(1));
        }
        if req.color.is_some() {
            r.color = req.color.map(i64::from);
        }
        let view = Self::role_view(&r);
        let now = self.events.now();
        let e = Publish::new(
            Self::guild_stream(s.guild_id),
            FUGUE_CHAT,
            fugue_op::ROLE_UPDATE,
            json(&view),
        )
        .collapse(format!("role:{}", r.id))
        .changes_access();
        let new = e.to_new(now);
        self.publish_role(s.guild_id, e, self.store.update_role(&r, &new), now)
            .await
            .map_err(|e| role_missing(e, role_id))?;
        Ok(view)
    }

    async fn guild_role(&self, guild_id: i64, role_id: u64) -> Result<RoleRow, Error> {
        match self.store.role(to_store(role_id)).await? {
            Some(r) if r.guild_id == guild_id => Ok(r),
            _ => Err(Error::RoleNotFound(role_id)),
        }
    }

    /// `DELETE /guilds/{id}/roles/{role}` (fugue-chat).
    pub async fn delete_role(
        &self,
        authed: &Authed,
        guild_id: u64,
        role_id: u64,
    ) -> Result<(), Error> {
        let (s, p) = self.member_guild(&authed.actor, guild_id).await?;
        Self::require(p, Permissions::MANAGE_ROLES)?;
        let r = self.guild_role(s.guild_id, role_id).await?;
        if r.id == r.guild_id {
            return Err(Error::Invalid("@everyone cannot be deleted".into()));
        }
        let now = self.events.now();
        let e = Publish::new(
            Self::guild_stream(s.guild_id),
            FUGUE_CHAT,
            fugue_op::ROLE_DELETE,
            json(&RoleDelete {
                id: role_id,
                guild_id,
            }),
        )
        .changes_access();
        let new = e.to_new(now);
        self.publish_role(
            s.guild_id,
            e,
            self.store.delete_role(s.guild_id, r.id, &new),
            now,
        )
        .await
        .map_err(|e| role_missing(e, role_id))
    }

    /// `PUT` / `DELETE /guilds/{id}/members/{fid}/roles/{role}` (fugue-chat).
    pub async fn set_member_role(
        &self,
        authed: &Authed,
        guild_id: u64,
        fid: &FederationId,
        role_id: u64,
        give: bool,
    ) -> Result<Member, Error> {
        let (s, p) = self.member_guild(&authed.actor, guild_id).await?;
        let r = self.guild_role(s.guild_id, role_id).await?;
        Self::may_grant(p, Permissions::from_bits(r.permissions.cast_unsigned()))?;
        if r.id == r.guild_id {
            return Err(Error::Invalid("everyone has @everyone".into()));
        }
        let not_member = || Error::MemberNotFound(fid.to_string());
        let target = self.actor_id(fid).await?.ok_or_else(not_member)?;
        let row = self
            .store
            .member(s.guild_id, target.to_store())
            .await?
            .ok_or_else(not_member)?;
        let mut roles = self.store.roles_of(s.guild_id, target.to_store()).await?;
        roles.retain(|x| *x != r.id);
        if give {
            roles.push(r.id);
            roles.sort_unstable();
        }
        let member = self.member_view(&row, roles)?;
        let now = self.events.now();
        let e = Publish::new(
            Self::guild_stream(s.guild_id),
            FUGUE_CHAT,
            fugue_op::MEMBER_UPDATE,
            json(&member),
        )
        .changes_access();
        let new = e.to_new(now);
        let write = async {
            if give {
                self.store
                    .add_member_role(s.guild_id, target.to_store(), r.id, &new)
                    .await
            } else {
                self.store
                    .remove_member_role(s.guild_id, target.to_store(), r.id, &new)
                    .await
            }
        };
        self.publish_role(s.guild_id, e, write, now)
            .await
            .map_err(|e| role_missing(e, role_id))?;
        Ok(member)
    }

    // ---- overwrites ----

    async fn overwrite_target(
        &self,
        target: &OverwriteTarget,
        guild_id: i64,
    ) -> Result<(TargetKind, i64), Error> {
        match target {
            OverwriteTarget::Role(id) => {
                let r = self.guild_role(guild_id, *id).await?;
                Ok((TargetKind::Role, r.id))
            }
            OverwriteTarget::Member(fid) => {
                let id = self
                    .actor_id(fid)
                    .await?
                    .ok_or_else(|| Error::MemberNotFound(fid.to_string()))?;
                Ok((TargetKind::Member, id.to_store()))
            }
        }
    }

    /// `GET /channels/{id}/overwrites` (fugue-chat; MANAGE_ROLES there).
    pub async fn overwrites(
        &self,
        authed: &Authed,
        channel_id: u64,
    ) -> Result<Vec<Overwrite>, Error> {
        let (c, _, p) = self.visible_channel(&authed.actor, channel_id).await?;
        Self::require(p, Permissions::MANAGE_ROLES)?;
        let mut out = Vec::new();
        for o in self.store.overwrites(c.id).await? {
            out.push(self.overwrite_view(&o).await?);
        }
        Ok(out)
    }

    /// `PUT` / `DELETE /channels/{id}/overwrites/{target}` (fugue-chat; MANAGE_ROLES there,
    /// granting only bits the caller has).
    pub async fn set_overwrite(
        &self,
        authed: &Authed,
        channel_id: u64,
        target: &OverwriteTarget,
        bits: Option<set_overwrite::Request>,
    ) -> Result<Option<Overwrite>, Error> {
        let (c, _, p) = self.visible_channel(&authed.actor, channel_id).await?;
        let (allow, deny) = bits
            .as_ref()
            .map_or((Permissions::NONE, Permissions::NONE), |b| {
                (b.allow, b.deny)
            });
        Self::may_grant(p, allow.union(deny))?;
        let (kind, target_id) = self.overwrite_target(target, c.guild_id).await?;
        let row = OverwriteRow {
            channel_id: c.id,
            kind,
            target_id,
            allow: allow.bits().cast_signed(),
            deny: deny.bits().cast_signed(),
        };
        let view = match bits {
            Some(_) => Some(self.overwrite_view(&row).await?),
            None => None,
        };
        let d = OverwriteUpdate {
            channel_id,
            target: target.to_string(),
            overwrite: view.clone(),
        };
        let now = self.events.now();
        let e = Publish::new(
            Self::guild_stream(c.guild_id),
            FUGUE_CHAT,
            fugue_op::OVERWRITE_UPDATE,
            json(&d),
        )
        .changes_access();
        let new = e.to_new(now);
        let result = if view.is_some() {
            self.store.set_overwrite(c.guild_id, &row, &new).await
        } else {
            self.store
                .delete_overwrite(c.guild_id, c.id, kind, target_id, &new)
                .await
        };
        let seq = result.map_err(|e| match e {
            fugue_store::Error::Conflict(Conflict::OverwriteMissing) => Error::Invalid(format!(
                "channel {channel_id} has no overwrite for {target}"
            )),
            e => channel_conflict(e, channel_id),
        })?;
        self.events.appended(e, seq, now).await;
        Ok(view)
    }

    // ---- bans ----

    /// `GET /guilds/{id}/bans` (fugue-chat; BAN_MEMBERS).
    pub async fn bans(&self, authed: &Authed, guild_id: u64) -> Result<Vec<Ban>, Error> {
        let (s, p) = self.member_guild(&authed.actor, guild_id).await?;
        Self::require(p, Permissions::BAN_MEMBERS)?;
        self.store
            .bans(s.guild_id)
            .await?
            .iter()
            .map(|b| {
                Ok(Ban {
                    guild_id,
                    fid: self.fid_of(&b.local_name)?,
                    reason: b.reason.clone(),
                    banned_by: self.fid_of(&b.banned_by_name)?,
                    created_at: from_store(b.created_at),
                })
            })
            .collect()
    }

    /// `PUT /guilds/{id}/bans/{fid}` (fugue-chat; BAN_MEMBERS): also an actor this server
    /// has not seen yet (of another server), who then can never join.
    pub async fn ban(
        &self,
        authed: &Authed,
        guild_id: u64,
        fid: &FederationId,
        reason: Option<String>,
    ) -> Result<Ban, Error> {
        let (s, p) = self.member_guild(&authed.actor, guild_id).await?;
        Self::require(p, Permissions::BAN_MEMBERS)?;
        optional_text("reason", reason.as_deref(), chat::MAX_DESCRIPTION)?;
        let now = self.events.now();
        let target = match self.actor_id(fid).await? {
            Some(id) => id,
            None if fid.domain() != &self.domain => ActorId::from_store(
                self.store
                    .foreign_actor(&fid.to_string(), random_id(), now.to_store())
                    .await?
                    .id,
            ),
            None => return Err(Error::MemberNotFound(fid.to_string())),
        };
        if target == s.owner || target == authed.actor.id {
            return Err(Error::Forbidden(
                "the owner and yourself cannot be banned".into(),
            ));
        }
        let ban = Ban {
            guild_id,
            fid: fid.clone(),
            reason,
            banned_by: authed.actor.fid.clone(),
            created_at: now.secs(),
        };
        let banned = Publish::new(
            Self::guild_stream(s.guild_id),
            FUGUE_CHAT,
            fugue_op::BAN_ADD,
            json(&ban),
        )
        .changes_access();
        let left = self.left(target, s.guild_id);
        let pos = self
            .store
            .ban(
                s.guild_id,
                target.to_store(),
                authed.actor.id.to_store(),
                ban.reason.as_deref(),
                now.to_store(),
                &banned.to_new(now),
                &left.to_new(now),
            )
            .await
            .map_err(|e| guild_conflict(e, guild_id))?;
        self.events.appended(banned, pos.guild, now).await;
        self.events.appended(left, pos.actor, now).await;
        Ok(ban)
    }

    /// `DELETE /guilds/{id}/bans/{fid}` (fugue-chat; BAN_MEMBERS).
    pub async fn unban(
        &self,
        authed: &Authed,
        guild_id: u64,
        fid: &FederationId,
    ) -> Result<(), Error> {
        let (s, p) = self.member_guild(&authed.actor, guild_id).await?;
        Self::require(p, Permissions::BAN_MEMBERS)?;
        let not_banned = || Error::MemberNotFound(fid.to_string());
        let target = self.actor_id(fid).await?.ok_or_else(not_banned)?;
        let now = self.events.now();
        let e = Publish::new(
            Self::guild_stream(s.guild_id),
            FUGUE_CHAT,
            fugue_op::BAN_REMOVE,
            json(&MemberRef {
                guild_id,
                fid: fid.clone(),
            }),
        )
        .changes_access();
        let seq = self
            .store
            .unban(s.guild_id, target.to_store(), &e.to_new(now))
            .await
            .map_err(|e| match e {
                fugue_store::Error::Conflict(Conflict::NotBanned) => not_banned(),
                e => guild_conflict(e, guild_id),
            })?;
        self.events.appended(e, seq, now).await;
        Ok(())
    }
}

/// A store refusal about a guild: gone means not found; the rest is a storage error.
fn guild_conflict(e: fugue_store::Error, guild_id: u64) -> Error {
    match e {
        fugue_store::Error::Conflict(Conflict::GuildMissing | Conflict::StreamMissing) => {
            Error::GuildNotFound(guild_id)
        }
        fugue_store::Error::Conflict(Conflict::NotAMember) => {
            Error::MemberNotFound("the new owner".into())
        }
        fugue_store::Error::Conflict(Conflict::NotOwner) => Error::NotOwner,
        e => Error::Store(e),
    }
}

fn channel_conflict(e: fugue_store::Error, channel_id: u64) -> Error {
    match e {
        fugue_store::Error::Conflict(
            Conflict::ChannelMissing | Conflict::GuildMissing | Conflict::StreamMissing,
        ) => Error::ChannelNotFound(channel_id),
        e => Error::Store(e),
    }
}

fn role_missing(e: Error, role_id: u64) -> Error {
    match e {
        Error::RoleNotFound(_) => Error::RoleNotFound(role_id),
        e => e,
    }
}
