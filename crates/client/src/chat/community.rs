//! What surrounds messages (`fugue-chat`, docs/decisions.md "Reactions, pins, read states,
//! presence and profiles"): signed reactions, pins, read states with unread and mention
//! counts, presence and profiles — typed calls on one [`Chat`].
//!
//! A reaction is signed like a message ([`SignedPayload::reaction`], the channel as the
//! conversation): [`Chat::prepare_reaction`] signs once with a fresh nonce, and the same
//! request may be posted again ([`Chat::post_reaction`]), since adding or removing a reaction
//! twice changes nothing the second time. Nothing here decides access: the server does.

use fugue_proto::FederationId;
use fugue_proto::api::{
    ReactionRequest, add_reaction, get_own_profile, get_presences, get_profile, list_pins,
    list_reactions, pin_message, read_states, remove_reaction, set_presence, set_read_state,
    unpin_message, update_profile,
};
use fugue_proto::chat::SignedPayload;
use fugue_proto::community::{Actor, Pinned, Presence, ReactionBody, ReadState, SignedReaction};

use super::{Chat, new_nonce, retried};
use crate::error::Result;

/// A signed addition or removal of a reaction, ready to post as many times as needed.
#[derive(Debug, Clone)]
pub struct PreparedReaction {
    pub channel_id: u64,
    pub message_id: u64,
    pub emoji: String,
    /// `true` adds, `false` takes one's own reaction back.
    pub add: bool,
    pub request: ReactionRequest,
}

impl Chat {
    // ---- reactions ----

    /// Adding (`add`) or removing `emoji` on message `message_id` of `channel_id`, signed
    /// with a fresh nonce and carrying the session's ID-Cert.
    pub fn prepare_reaction(
        &self,
        channel_id: u64,
        message_id: u64,
        emoji: &str,
        add: bool,
    ) -> PreparedReaction {
        let nonce = new_nonce();
        let body = ReactionBody {
            message: message_id,
            emoji: emoji.to_owned(),
            add,
        };
        let payload =
            SignedPayload::reaction(&self.domain, channel_id, self.signer.fid(), &nonce, &body);
        PreparedReaction {
            channel_id,
            message_id,
            emoji: body.emoji,
            add,
            request: ReactionRequest {
                signature: self.sign_payload(&payload),
                nonce,
                id_cert: Some(self.signer.cert_pem().to_owned()),
                serial: None,
            },
        }
    }

    /// Posts a prepared reaction once (`PUT` to add, `DELETE` to remove).
    pub async fn post_reaction(&self, prepared: &PreparedReaction) -> Result<()> {
        let (c, m, emoji) = (prepared.channel_id, prepared.message_id, &prepared.emoji);
        let target = if prepared.add {
            add_reaction::target(c, m, emoji)
        } else {
            remove_reaction::target(c, m, emoji)
        };
        self.empty(self.authed(target)?.json(&prepared.request))
            .await
    }

    /// Adds this actor's signed reaction `emoji` to a message (again: nothing changes).
    pub async fn react(&self, channel_id: u64, message_id: u64, emoji: &str) -> Result<()> {
        let prepared = self.prepare_reaction(channel_id, message_id, emoji, true);
        retried(|| self.post_reaction(&prepared)).await
    }

    /// Takes this actor's reaction `emoji` back, signed too.
    pub async fn unreact(&self, channel_id: u64, message_id: u64, emoji: &str) -> Result<()> {
        let prepared = self.prepare_reaction(channel_id, message_id, emoji, false);
        retried(|| self.post_reaction(&prepared)).await
    }

    /// Who reacted to a message with `emoji`, in the order they did, each with the reaction
    /// they signed ([`Chat::verify_reaction`] checks one).
    pub async fn reactors(
        &self,
        channel_id: u64,
        message_id: u64,
        emoji: &str,
    ) -> Result<Vec<SignedReaction>> {
        let target = list_reactions::target(channel_id, message_id, emoji);
        self.json(self.authed(target)?).await
    }

    // ---- pins ----

    /// Pins a message (MANAGE_MESSAGES; at most 50 per channel); pinning twice changes
    /// nothing.
    pub async fn pin(&self, channel_id: u64, message_id: u64) -> Result<()> {
        self.empty(self.authed(pin_message::target(channel_id, message_id))?)
            .await
    }

    pub async fn unpin(&self, channel_id: u64, message_id: u64) -> Result<()> {
        self.empty(self.authed(unpin_message::target(channel_id, message_id))?)
            .await
    }

    /// The channel's pinned messages, the latest pinned first, with who pinned each and
    /// when (unverified).
    pub async fn pins(&self, channel_id: u64) -> Result<Vec<Pinned>> {
        self.json(self.authed(list_pins::target(channel_id))?).await
    }

    // ---- read states ----

    /// Moves this actor's read marker of `channel_id` to `last_read` (also backwards); its
    /// other sessions hear of it over the gateway.
    pub async fn set_read_state(&self, channel_id: u64, last_read: u64) -> Result<ReadState> {
        let body = set_read_state::Request { last_read };
        self.json(self.authed(set_read_state::target(channel_id))?.json(&body))
            .await
    }

    /// Marks `channel_id` read up to its newest message; `None` when it has none.
    pub async fn mark_read(&self, channel_id: u64) -> Result<Option<ReadState>> {
        let query = fugue_proto::api::message_history::Query {
            limit: Some(1),
            ..Default::default()
        };
        let newest = self.message_history(channel_id, &query).await?;
        match newest.iter().map(|m| m.id).max() {
            Some(id) => self.set_read_state(channel_id, id).await.map(Some),
            None => Ok(None),
        }
    }

    /// The read state of every guild channel this actor may read, with unread and mention
    /// counts (each at most [`fugue_proto::community::MAX_UNREAD`]).
    pub async fn read_states(&self) -> Result<Vec<ReadState>> {
        self.json(self.authed(read_states::target())?).await
    }

    // ---- presence and profiles ----

    /// Sets this actor's availability (`community::availability`) and custom status
    /// (`None` clears it); answers the presence others see now, which is offline while the
    /// actor has no gateway connection subscribed to `chat`.
    pub async fn set_presence(&self, availability: u8, status: Option<String>) -> Result<Presence> {
        let body = set_presence::Request {
            availability,
            status,
        };
        self.json(self.authed(set_presence::target())?.json(&body))
            .await
    }

    /// The presence of `fids` (at most 100) as this actor may see it: those sharing no guild
    /// with it show offline.
    pub async fn presences(&self, fids: &[FederationId]) -> Result<Vec<Presence>> {
        let query = get_presences::Query {
            fids: fids
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        };
        self.json(self.authed_query(get_presences::target(), &query)?)
            .await
    }

    pub async fn own_profile(&self) -> Result<Actor> {
        self.json(self.authed(get_own_profile::target())?).await
    }

    /// Changes this actor's profile: a field `None` stays, an empty string clears it.
    pub async fn update_profile(&self, request: &update_profile::Request) -> Result<Actor> {
        self.json(self.authed(update_profile::target())?.json(request))
            .await
    }

    /// The profile of an actor the server knows.
    pub async fn profile(&self, fid: &FederationId) -> Result<Actor> {
        self.json(self.authed(get_profile::target(fid))?).await
    }
}
