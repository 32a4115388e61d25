//! Encrypted channels, DMs and group conversations (polyproto-chat §6, polyproto-mls): which
//! MLS group encrypts a channel — part of its access rules, so every node agrees on it at
//! once — and what a message there must be: an MLS application message of that group, at
//! its current epoch, by an author with a device in it, signed like every message
//! (docs/decisions.md, "End-to-end encryption"). The server never reads what it carries.

use fugue_proto::chat::{MAX_CONTENT, MessageBody, Permissions, channel_type};
use fugue_proto::mls::{
    ChannelGroup, ENCRYPTED_PREFIX, FUGUE_MLS, MAX_ENCRYPTED_CONTENT, fugue_op, valid_group_id,
};
use fugue_proto::mls_wire;
use openmls::prelude::{ContentType, MlsMessageBodyIn, ProtocolMessage};

use super::permissions::Snapshot;
use super::{ChannelRef, Chat, Error, json};
use crate::events::{Audience, Publish};
use crate::ids::{ActorId, StreamId, from_store};
use crate::principal::Actor;
use crate::sessions::Authed;

/// What the MLS domain needs to know of a channel a device asks about.
#[derive(Debug, Clone)]
pub struct ChannelAccess {
    pub channel_id: i64,
    /// Its guild's or conversation's stream.
    pub stream: StreamId,
    pub kind: i64,
    /// The caller's permissions there.
    pub permissions: Permissions,
    /// The group that encrypts it.
    pub group: Option<String>,
    /// The guild's or group conversation's owner.
    pub owner: ActorId,
    snapshot: std::sync::Arc<Snapshot>,
}

impl ChannelAccess {
    pub fn is_dm(&self) -> bool {
        self.kind == i64::from(channel_type::DM)
    }

    pub fn is_group(&self) -> bool {
        self.kind == i64::from(channel_type::GROUP)
    }

    pub fn is_conversation(&self) -> bool {
        self.is_dm() || self.is_group()
    }

    /// Whether `actor` may read the channel now.
    pub fn readable_by(&self, actor: ActorId) -> bool {
        self.snapshot
            .in_channel(actor, self.channel_id)
            .is_some_and(|p| p.contains(Permissions::VIEW_CHANNEL))
    }

    /// The caller's permissions include `need`.
    pub fn has(&self, need: Permissions) -> bool {
        self.permissions.contains(need)
    }
}

impl Chat {
    /// A channel the actor may read, as the MLS domain sees it.
    pub async fn channel_for_mls(
        &self,
        actor: &Actor,
        channel_id: u64,
    ) -> Result<ChannelAccess, Error> {
        let (c, s, p) = self.channel_access(actor, channel_id).await?;
        Ok(ChannelAccess {
            channel_id: c.id,
            stream: Self::guild_stream(c.guild_id),
            kind: c.kind,
            permissions: p,
            group: s.encryption(c.id).map(str::to_owned),
            owner: s.owner,
            snapshot: s,
        })
    }

    /// `PUT /fugue-mls/v1/channels/{id}/group`: the channel is encrypted with `group_id`
    /// from now on — a guild channel by a member with MANAGE_CHANNELS, a group conversation
    /// by its owner, a DM by either member — with a group the caller has a device in.
    pub async fn encrypt_channel(
        &self,
        authed: &Authed,
        channel_id: u64,
        group_id: &str,
    ) -> Result<ChannelGroup, Error> {
        let actor = &authed.actor;
        let a = self.channel_for_mls(actor, channel_id).await?;
        if let Some(g) = &a.group {
            return Err(Error::AlreadyEncrypted(g.clone()));
        }
        if a.kind == i64::from(channel_type::CATEGORY) {
            return Err(Error::Invalid("a category holds no messages".into()));
        }
        if a.is_group() {
            if a.owner != actor.id {
                return Err(Error::NotGroupOwner);
            }
        } else if !a.is_dm() {
            Self::require(a.permissions, Permissions::MANAGE_CHANNELS)?;
        }
        if !valid_group_id(group_id) {
            return Err(Error::Invalid(format!("{group_id} is no MLS group id")));
        }
        match self
            .store
            .mls_posting(group_id, actor.id.to_store())
            .await?
        {
            Some((_, true)) => {}
            _ => {
                return Err(Error::NotInGroup(format!(
                    "you have no device in an MLS group {group_id} here"
                )));
            }
        }
        let out = ChannelGroup {
            channel_id,
            group_id: group_id.to_owned(),
        };
        let now = self.events.now();
        let e = Publish::new(a.stream, FUGUE_MLS, fugue_op::CHANNEL_ENCRYPTED, json(&out))
            .audience(Audience::Channel(a.channel_id));
        let seq = match self
            .store
            .bind_mls_group(
                a.stream.to_store(),
                a.is_conversation(),
                a.channel_id,
                group_id,
                actor.id.to_store(),
                now.to_store(),
                &e.to_new(now),
            )
            .await
        {
            Err(fugue_store::Error::Conflict(fugue_store::Conflict::AlreadyEncrypted)) => {
                let g = self
                    .store
                    .mls_group_of_channel(a.channel_id)
                    .await?
                    .unwrap_or_default();
                return Err(Error::AlreadyEncrypted(g));
            }
            other => other?,
        };
        self.events.appended(e, seq, now).await;
        Ok(out)
    }

    /// `GET /fugue-mls/v1/channels/{id}/group`.
    pub async fn channel_group(
        &self,
        actor: &Actor,
        channel_id: u64,
    ) -> Result<ChannelGroup, Error> {
        let a = self.channel_for_mls(actor, channel_id).await?;
        let group_id = a.group.ok_or_else(|| {
            Error::EncryptionRequired(format!("channel {channel_id} is not encrypted"))
        })?;
        Ok(ChannelGroup {
            channel_id,
            group_id,
        })
    }

    /// What a message's body must be in channel `c` under the rules `s`: in an encrypted
    /// channel an MLS application message of its group at the group's epoch, by an author
    /// with a device in the group, without attachments; elsewhere at most `MAX_CONTENT`
    /// characters.
    pub(super) async fn check_encryption(
        &self,
        s: &Snapshot,
        c: &ChannelRef,
        actor: &Actor,
        body: &MessageBody,
    ) -> Result<(), Error> {
        let Some(group) = s.encryption(c.id) else {
            // `check_body` bounded other content by MAX_CONTENT already; only the longer
            // bound it grants an `mls:` message is not a plain channel's.
            if body.content.starts_with(ENCRYPTED_PREFIX)
                && body.content.chars().count() > MAX_CONTENT
            {
                return Err(Error::Invalid(format!(
                    "content is longer than {MAX_CONTENT} characters"
                )));
            }
            return Ok(());
        };
        let refuse = |why: &str| {
            Err(Error::EncryptionRequired(format!(
                "channel {} is encrypted: {why}",
                from_store(c.id)
            )))
        };
        if !body.attachments.is_empty() {
            return refuse("attachments would be readable by the server");
        }
        let Some(text) = body.content.strip_prefix(ENCRYPTED_PREFIX) else {
            return refuse("a message is `mls:` and an MLS message of its group");
        };
        let Ok(bytes) = mls_wire::bytes("content", text, MAX_ENCRYPTED_CONTENT) else {
            return refuse("the content after `mls:` is not base64");
        };
        let Ok(MlsMessageBodyIn::PrivateMessage(m)) = mls_wire::message("content", &bytes) else {
            return refuse("the content is no MLS PrivateMessage");
        };
        let m = ProtocolMessage::from(m);
        if hex::encode(m.group_id().as_slice()) != group {
            return refuse("the MLS message is for another group");
        }
        if m.content_type() != ContentType::Application {
            return refuse("only application messages are posted; commits go to the group");
        }
        match self.store.mls_posting(group, actor.id.to_store()).await? {
            Some((_, false)) | None => Err(Error::NotInGroup(format!(
                "{} has no device in the channel's group; ask to join it",
                actor.fid
            ))),
            Some((epoch, true)) if u64::try_from(epoch).ok() != Some(m.epoch().as_u64()) => {
                Err(Error::StaleEpoch(u32::try_from(epoch).unwrap_or(u32::MAX)))
            }
            Some(_) => Ok(()),
        }
    }

    /// Whether channel `c` is encrypted, by its rules as they are now.
    pub(super) async fn encrypted(&self, c: &ChannelRef) -> Result<bool, Error> {
        Ok(self
            .stream_snapshot(c.guild_id)
            .await?
            .is_some_and(|s| s.encryption(c.id).is_some()))
    }

    /// [`Chat::check_encryption`] for channel `c` under its rules as they are now.
    pub(super) async fn check_encryption_now(
        &self,
        c: &ChannelRef,
        actor: &Actor,
        body: &MessageBody,
    ) -> Result<(), Error> {
        let s = self
            .stream_snapshot(c.guild_id)
            .await?
            .ok_or(Error::ChannelNotFound(from_store(c.id)))?;
        self.check_encryption(&s, c, actor, body).await
    }
}
