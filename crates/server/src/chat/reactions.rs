//! Reactions and pins.
//!
//! A reaction counts as a message: its author signs
//! [`SignedPayload::reaction`] (`kind` `chat.reaction`, body `{message, emoji, add}`) and the
//! server checks it as it checks messages (`messages.rs`, [`Chat::verify`]) before anything
//! is stored; the stored reaction keeps its signature and certificate. Adding needs
//! ADD_REACTIONS, removing one's own reaction only that one may view the channel. Pinning
//! and unpinning need MANAGE_MESSAGES; a channel holds at most [`MAX_PINS`] pins.
//!
//! Their events (`fugue-chat` ops 30–32) go to the channel's viewers. They are not marked
//! `about` the message: a delete rewrites every event about a message into its tombstone,
//! and a reaction's payload holds no content to scrub.

use std::collections::HashMap;

use fugue_proto::api::ReactionRequest;
use fugue_proto::chat::{FUGUE_CHAT, Message, Permissions, Reaction, SignedPayload};
use fugue_proto::community::{
    self, MAX_PINS, PinUpdate, Pinned, ReactionBody, ReactionEvent, SignedReaction, valid_emoji,
};
use fugue_proto::ids::Serial;
use fugue_store::{Conflict, ReactionChange, ReactionRow};

use super::{Chat, Error, json};
use crate::events::{Audience, Publish};
use crate::ids::{from_store, to_store};
use crate::sessions::Authed;

/// Most actors one listing of a reaction names.
const MAX_REACTORS: i64 = 1000;

fn check_emoji(emoji: &str) -> Result<(), Error> {
    if valid_emoji(emoji) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "an emoji is `:name:` (1 to {} of A-Z a-z 0-9 _ + -) or at most {} characters of \
             Unicode emoji",
            community::MAX_EMOJI_NAME,
            community::MAX_EMOJI_CHARS
        )))
    }
}

impl Chat {
    /// `PUT …/reactions/{emoji}` (ADD_REACTIONS) or `DELETE` (one's own): checks the signed
    /// reaction, stores or removes it and tells the channel's viewers. Doing it twice
    /// changes nothing the second time; a nonce signs one change, so an older change sent
    /// again (a removal after the reaction was added anew) is refused.
    pub async fn react(
        &self,
        authed: &Authed,
        channel_id: u64,
        message_id: u64,
        emoji: &str,
        add: bool,
        req: ReactionRequest,
    ) -> Result<(), Error> {
        let actor = &authed.actor;
        let (c, p, m) = self.channel_message(actor, channel_id, message_id).await?;
        if m.deleted_at.is_some() {
            return Err(Error::MessageNotFound(message_id));
        }
        if add {
            Self::require(p, Permissions::ADD_REACTIONS)?;
            // An emoji is content: the server would read it (docs/decisions.md,
            // "End-to-end encryption"). Taking one back stays possible.
            if self.encrypted(&c).await? {
                return Err(Error::EncryptionRequired(format!(
                    "channel {channel_id} is encrypted: a reaction would be readable by the server"
                )));
            }
        }
        check_emoji(emoji)?;
        Self::check_nonce(&req.nonce)?;
        let now = self.events.now();
        let body = ReactionBody {
            message: message_id,
            emoji: emoji.to_owned(),
            add,
        };
        let payload =
            SignedPayload::reaction(&self.domain, channel_id, &actor.fid, &req.nonce, &body);
        let checked = self
            .verify(
                authed,
                &payload,
                &req.signature,
                req.id_cert.as_deref(),
                req.serial,
                now,
            )
            .await?;
        let d = ReactionEvent {
            guild_id: from_store(c.guild_id),
            channel_id,
            message_id,
            emoji: emoji.to_owned(),
            fid: actor.fid.clone(),
        };
        let e = Publish::new(
            Self::guild_stream(c.guild_id),
            FUGUE_CHAT,
            if add {
                community::op::REACTION_ADD
            } else {
                community::op::REACTION_REMOVE
            },
            json(&d),
        )
        .audience(Audience::Channel(c.id));
        let written = if add {
            let row = ReactionRow {
                message_id: m.id,
                emoji: emoji.to_owned(),
                actor_id: actor.id.to_store(),
                actor_name: String::new(),
                channel_id: c.id,
                nonce: req.nonce.clone(),
                signature: req.signature.to_ascii_lowercase(),
                cert_pem: checked.pem,
                cert_serial: to_store(checked.serial.0),
                created_at: now.to_store(),
            };
            self.store.add_reaction(&row, &e.to_new(now)).await
        } else {
            let change = ReactionChange {
                message_id: m.id,
                channel_id: c.id,
                actor_id: actor.id.to_store(),
                emoji,
                nonce: &req.nonce,
            };
            self.store.remove_reaction(&change, &e.to_new(now)).await
        };
        match written {
            Ok(seq) => {
                self.events.appended(e, seq, now).await;
                Ok(())
            }
            Err(fugue_store::Error::Conflict(Conflict::Unchanged)) => Ok(()),
            Err(fugue_store::Error::Conflict(Conflict::NonceUsed)) => {
                // The same change again (a retry) while it still holds changes nothing; any
                // other use of a nonce signed before is a replay.
                let signed = self
                    .store
                    .reaction_nonce(m.id, actor.id.to_store(), &req.nonce)
                    .await?;
                if signed == Some((emoji.to_owned(), add, add)) {
                    Ok(())
                } else {
                    Err(Error::NonceReused(req.nonce.clone()))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `GET …/reactions/{emoji}`: who reacted so, in the order they did, each with the
    /// reaction they signed (kept so that anyone can check it again).
    pub async fn reactors(
        &self,
        authed: &Authed,
        channel_id: u64,
        message_id: u64,
        emoji: &str,
    ) -> Result<Vec<SignedReaction>, Error> {
        let (_, _, m) = self
            .channel_message(&authed.actor, channel_id, message_id)
            .await?;
        check_emoji(emoji)?;
        if m.deleted_at.is_some() {
            return Ok(Vec::new());
        }
        self.store
            .reactions_with(m.id, emoji, MAX_REACTORS)
            .await?
            .iter()
            .map(|r| {
                Ok(SignedReaction {
                    emoji: r.emoji.clone(),
                    fid: self.fid_of(&r.actor_name)?,
                    nonce: r.nonce.clone(),
                    signature: r.signature.clone(),
                    id_cert: r.cert_pem.clone(),
                    serial: Serial(from_store(r.cert_serial)),
                    timestamp: from_store(r.created_at),
                })
            })
            .collect()
    }

    /// Fills the `reactions` of a page of one channel's messages (tombstones keep none).
    pub(super) async fn with_reactions(
        &self,
        channel_id: i64,
        mut page: Vec<Message>,
    ) -> Result<Vec<Message>, Error> {
        let (Some(low), Some(high)) = (
            page.iter().map(|m| m.id).min(),
            page.iter().map(|m| m.id).max(),
        ) else {
            return Ok(page);
        };
        let mut by_message: HashMap<u64, Vec<Reaction>> = HashMap::new();
        for r in self
            .store
            .reactions_between(channel_id, to_store(low), to_store(high))
            .await?
        {
            by_message
                .entry(from_store(r.message_id))
                .or_default()
                .push(Reaction {
                    emoji: r.emoji,
                    fid: self.fid_of(&r.actor_name)?,
                });
        }
        for m in &mut page {
            if m.deleted_timestamp.is_none()
                && let Some(rs) = by_message.remove(&m.id)
            {
                m.reactions = rs;
            }
        }
        Ok(page)
    }

    /// `PUT /channels/{id}/pins/{mid}` (`pin`) or `DELETE` (MANAGE_MESSAGES).
    pub async fn set_pin(
        &self,
        authed: &Authed,
        channel_id: u64,
        message_id: u64,
        pin: bool,
    ) -> Result<(), Error> {
        let actor = &authed.actor;
        let (c, p, m) = self.channel_message(actor, channel_id, message_id).await?;
        Self::require(p, Permissions::MANAGE_MESSAGES)?;
        if pin && m.deleted_at.is_some() {
            return Err(Error::MessageNotFound(message_id));
        }
        let now = self.events.now();
        let d = PinUpdate {
            guild_id: from_store(c.guild_id),
            channel_id,
            message_id,
            pinned: pin,
            by: actor.fid.clone(),
        };
        let e = Publish::new(
            Self::guild_stream(c.guild_id),
            FUGUE_CHAT,
            community::op::PIN_UPDATE,
            json(&d),
        )
        .audience(Audience::Channel(c.id));
        let written = if pin {
            self.store
                .pin(
                    c.id,
                    m.id,
                    actor.id.to_store(),
                    now.to_store(),
                    MAX_PINS as i64,
                    &e.to_new(now),
                )
                .await
        } else {
            self.store.unpin(c.id, m.id, &e.to_new(now)).await
        };
        match written {
            Ok(seq) => {
                self.events.appended(e, seq, now).await;
                Ok(())
            }
            Err(fugue_store::Error::Conflict(Conflict::Unchanged)) => Ok(()),
            Err(fugue_store::Error::Conflict(Conflict::PinsFull)) => Err(Error::Invalid(format!(
                "a channel holds at most {MAX_PINS} pinned messages"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// `GET /channels/{id}/pins`: the pinned messages, the latest pinned first.
    pub async fn pins(&self, authed: &Authed, channel_id: u64) -> Result<Vec<Pinned>, Error> {
        let (c, _, _) = self.channel_access(&authed.actor, channel_id).await?;
        let mut out = Vec::new();
        for p in self.store.pinned_messages(c.id).await? {
            let view = self.message_view(&p.message)?;
            // Reactions and attachments per message: pins may lie far apart, a range read
            // could be long.
            let viewed = self.with_reactions(c.id, vec![view]).await?;
            for message in self.with_attachments(c.id, viewed).await? {
                out.push(Pinned {
                    message,
                    pinned_by: self.fid_of(&p.pinned_by)?,
                    pinned_at: from_store(p.pinned_at),
                });
            }
        }
        Ok(out)
    }
}
