//! The chat side of data exports and imports (core §7.3): which messages are free of
//! context, and storing an imported one.
//!
//! Fugue's chat decides (docs/decisions.md, "Exports and imports"): a message is free of
//! context when it is the actor's own message in a DM — what it said to one other actor,
//! which it may keep wherever it lives. Guild and group messages are bound to their guild
//! or group and are re-signed in place instead (core §7.2). A signed message names the
//! server and conversation holding it, so an imported one is signed anew by the importer
//! for its DM with the same actor here; it is then stored as a send of that message, with
//! every check a send makes, under its nonce (importing twice stores it once), dated by the
//! import: an archive carries no time anyone could check.

use fugue_proto::api::{BatchMessage, send_message};
use fugue_proto::certs::{self, IdCert};
use fugue_proto::chat::{MessageBody, SignedPayload, channel_type};
use fugue_proto::{FederationId, Serial};
use fugue_store::SessionGuard;

use super::messages::Outcome;
use super::{Chat, Error};
use crate::ids::{ActorId, to_store};
use crate::principal::Actor;
use crate::sessions::Authed;

/// A message of an archive that may be imported: where it goes and what it says.
#[derive(Debug, Clone)]
pub struct Importable {
    pub conversation: u64,
    pub nonce: String,
    pub body: MessageBody,
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

    /// Checks message `m` of an archive `actor` imports, signed with `cert` (one of the
    /// actor's, checked by the caller): it must be a message of the actor's own, signed for
    /// a DM of the actor on this server, answering nothing and naming no attachment.
    pub async fn check_import(
        &self,
        actor: &Actor,
        m: &BatchMessage,
        cert: &IdCert,
    ) -> Result<Importable, Error> {
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
        let expected =
            SignedPayload::message(&self.domain, conversation, &actor.fid, &nonce, None, &body);
        let same = serde_json::to_value(&expected).map_err(|e| Error::Invalid(e.to_string()))?;
        if same != m.content {
            return Err(refuse(&format!(
                "it is not a new message by you signed for this server ({}); re-sign it for \
                 your DM here",
                self.domain
            )));
        }
        let signature = hex::decode(&m.signature)
            .ok()
            .filter(|s| s.len() == 64)
            .ok_or_else(|| refuse("its signature is not 64 bytes of hex"))?;
        certs::verify_strict(&cert.key, &expected.signed_bytes(), &signature).map_err(|_| {
            Error::BadSignature(format!("message {} with certificate {}", m.id, cert.serial))
        })?;
        // Free of context: a DM of the actor's (a group or a guild channel is bound to it).
        let dm = self
            .store
            .conversation(to_store(conversation))
            .await?
            .filter(|c| c.kind == i64::from(channel_type::DM));
        let member = match dm {
            Some(_) => self
                .store
                .conversation_members(to_store(conversation))
                .await?
                .iter()
                .any(|c| c.actor_id == actor.id.to_store()),
            None => false,
        };
        if !member {
            return Err(refuse(
                "only messages of your DMs on this server can be imported; guild and group \
                 messages stay where they are and are re-signed there",
            ));
        }
        Ok(Importable {
            conversation,
            nonce,
            body,
        })
    }

    /// Stores an imported message `m` as a send by `authed` (with `guard`) of `checked`,
    /// signed with certificate `pem` (`serial`); whether it is new.
    pub async fn import_message(
        &self,
        (authed, guard): (&Authed, &SessionGuard),
        checked: Importable,
        signature: &str,
        (pem, serial): (&str, Serial),
    ) -> Result<bool, Error> {
        let req = send_message::Request {
            content: checked.body.content,
            signature: signature.to_owned(),
            nonce: checked.nonce,
            id_cert: Some(pem.to_owned()),
            serial: Some(serial),
            reply_to: None,
            attachments: Vec::new(),
        };
        match self
            .send_message(authed, guard, checked.conversation, req)
            .await?
        {
            Outcome::Created(_) => Ok(true),
            Outcome::Existing(_) => Ok(false),
        }
    }
}
