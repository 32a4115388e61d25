//! The chat side of data exports and imports (core §7.3): which messages are free of
//! context, and storing an imported one.
//!
//! Fugue's chat decides (docs/decisions.md, "Exports and imports"): a message is free of
//! context when it is the actor's own message in a DM — what it said to one other actor,
//! which it may keep wherever it lives. Guild and group messages are bound to their guild
//! or group and are re-signed in place instead (core §7.2). A signed message names the
//! server and conversation holding it, so an imported one is signed anew by the importer
//! for its DM with the same actor here. The whole archive is checked before any of it is
//! stored; then its messages are stored like sends — only while the importer may post in
//! the DM, under their nonces (importing twice stores them once) —, many to a transaction
//! and without an event each (an import brings history, not news), dated by the import: an
//! archive carries no time anyone could check.

use fugue_proto::api::BatchMessage;
use fugue_proto::certs::IdCert;
use fugue_proto::chat::{MessageBody, SignedPayload, channel_type};
use fugue_proto::{FederationId, Serial};
use fugue_store::MessageRow;

use super::{Chat, Error};
use crate::ids::{ActorId, to_store};
use crate::principal::Actor;

/// A message of an archive that may be imported: where it goes and what it says.
#[derive(Debug, Clone)]
pub struct Importable {
    pub id: u64,
    pub conversation: u64,
    pub nonce: String,
    pub body: MessageBody,
    payload: SignedPayload,
    signature: String,
}

impl Importable {
    /// Whether its signature verifies with `cert`.
    pub fn verify(&self, cert: &IdCert) -> Result<(), Error> {
        super::resign::check_signature(self.id, &self.payload, &self.signature, cert)
    }
}

impl Chat {
    /// The other member of DM `channel_id`, when it is a DM of `actor`'s (an export notes
    /// it beside each message of a DM).
    pub async fn dm_peer(
        &self,
        channel_id: i64,
        actor: ActorId,
    ) -> Result<Option<FederationId>, Error> {
        match self.store.conversation(channel_id).await? {
            Some(c) if c.kind == i64::from(channel_type::DM) => {}
            _ => return Ok(None),
        }
        let members = self.store.conversation_members(channel_id).await?;
        if !members.iter().any(|m| m.actor_id == actor.to_store()) {
            return Ok(None);
        }
        members
            .iter()
            .find(|m| m.actor_id != actor.to_store())
            .map(|m| self.fid_of(&m.local_name))
            .transpose()
    }

    /// Message `m` of an archive `actor` imports, when it is a new message of the actor's
    /// own signed for a conversation of this server, answering nothing and naming no
    /// attachment. Its signature is [`Importable::verify`]'s to check, and its conversation
    /// [`Chat::check_import_target`]'s.
    pub fn importable(&self, actor: &Actor, m: &BatchMessage) -> Result<Importable, Error> {
        let refuse = |why: &str| Error::Invalid(format!("message {}: {why}", m.id));
        let field = |name: &str| m.content.get(name).cloned().unwrap_or_default();
        let conversation: u64 = field("conversation")
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| refuse("its content is not a chat message signed for this server"))?;
        let nonce = field("nonce").as_str().unwrap_or_default().to_owned();
        let body: MessageBody = serde_json::from_value(field("body"))
            .map_err(|_| refuse("its content is not a chat message"))?;
        Self::check_nonce(&nonce)?;
        Self::check_body(&body)?;
        if body.reply_to.is_some() || !body.attachments.is_empty() {
            return Err(refuse(
                "an imported message answers no message and names no attachment",
            ));
        }
        let payload =
            SignedPayload::message(&self.domain, conversation, &actor.fid, &nonce, None, &body);
        let same = serde_json::to_value(&payload).map_err(|e| Error::Invalid(e.to_string()))?;
        if same != m.content {
            return Err(refuse(&format!(
                "it is not a new message by you signed for this server ({}); re-sign it for \
                 your DM here",
                self.domain
            )));
        }
        Ok(Importable {
            id: m.id,
            conversation,
            nonce,
            body,
            payload,
            signature: m.signature.to_ascii_lowercase(),
        })
    }

    /// Whether `actor` may import messages into `conversation`: one of its DMs here (free
    /// of context; a group or a guild channel is bound to it).
    pub async fn check_import_target(&self, actor: &Actor, conversation: u64) -> Result<(), Error> {
        if self
            .dm_peer(to_store(conversation), actor.id)
            .await?
            .is_some()
        {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "conversation {conversation}: only messages of your DMs on this server can be \
                 imported; guild and group messages stay where they are and are re-signed there"
            )))
        }
    }

    /// Stores checked imported messages of `actor`, each with the certificate (PEM and
    /// serial) it was signed with, in archive order, in one transaction; how many were new
    /// (one stored before under its nonce is not stored again).
    pub async fn store_imported(
        &self,
        actor: &Actor,
        messages: Vec<(Importable, String, Serial)>,
    ) -> Result<u64, Error> {
        let now = self.events.now();
        let rows = messages
            .iter()
            .map(|(m, pem, serial)| {
                let content =
                    serde_json::to_string(&m.body).map_err(|e| Error::Invalid(e.to_string()))?;
                Ok(MessageRow {
                    id: self.message_id(now),
                    guild_id: to_store(m.conversation),
                    channel_id: to_store(m.conversation),
                    author_id: actor.id.to_store(),
                    author_name: crate::principal::stored_name(&actor.fid, &self.domain),
                    nonce: m.nonce.clone(),
                    content,
                    signature: m.signature.clone(),
                    cert_pem: pem.clone(),
                    cert_serial: to_store(serial.0),
                    version_nonce: m.nonce.clone(),
                    reply_to: None,
                    created_at: now.to_store(),
                    edited_at: None,
                    deleted_at: None,
                    deleted_by: None,
                    version: 1,
                    resigned_at: None,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(self.store.import_messages(&rows).await?)
    }
}
