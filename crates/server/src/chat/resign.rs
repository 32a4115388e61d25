//! Re-signing chat messages (core §7.2): what a message's re-signing shows as its content,
//! and storing a re-signed one. Who may re-sign what is the migration domain's to say.
//!
//! The content of a message is what its current version signed ([`SignedPayload`]). A
//! re-signed message must show the same content but for `author`, now the new actor; its
//! signature must verify over that content with the new actor's key. It becomes the
//! message's next version, by the new author; the version it replaces stays in the
//! message's history with its old signature and certificate (core §7.4).

use fugue_proto::FederationId;
use fugue_proto::certs::{self, IdCert};
use fugue_proto::chat::{CHAT, MessageBody, SignedPayload, op};
use fugue_store::{Conflict, MessageRow};

use super::{Chat, Error, json};
use crate::events::{Audience, Publish};
use crate::ids::{ActorId, from_store, to_store};

impl Chat {
    /// What the current version of `m` signed, as by `author`.
    pub fn signed_content(
        &self,
        m: &MessageRow,
        author: &FederationId,
    ) -> Result<SignedPayload, Error> {
        let body: MessageBody = serde_json::from_str(&m.content).map_err(|e| {
            Error::Store(fugue_store::Error::Decode(format!(
                "message {} body: {e}",
                m.id
            )))
        })?;
        // An edit signs the message it edits; a re-signed first version stays a first one.
        let edit_of = m.edited_at.is_some().then_some(from_store(m.id));
        Ok(SignedPayload::message(
            &self.domain,
            from_store(m.channel_id),
            author,
            &m.version_nonce,
            edit_of,
            &body,
        ))
    }

    /// The content a re-signing shows of `m`: what its current version signed, as JSON.
    pub fn resign_content(&self, m: &MessageRow) -> Result<serde_json::Value, Error> {
        let author = self.fid_of(&m.author_name)?;
        serde_json::to_value(self.signed_content(m, &author)?)
            .map_err(|e| Error::Invalid(e.to_string()))
    }

    /// Checks `m` re-signed by `new_fid` with `signature` by `cert`: `content` must be what
    /// `m` signed with only the author changed, and the signature must verify over it.
    pub fn check_resigned(
        &self,
        m: &MessageRow,
        new_fid: &FederationId,
        content: &serde_json::Value,
        signature: &str,
        cert: &IdCert,
    ) -> Result<(), Error> {
        let expected = self.signed_content(m, new_fid)?;
        let unchanged =
            serde_json::to_value(&expected).map_err(|e| Error::Invalid(e.to_string()))? == *content;
        if !unchanged {
            return Err(Error::Forbidden(format!(
                "message {}: only the author may change in a re-signed message",
                m.id
            )));
        }
        check_signature(m.id, &expected, signature, cert)
    }

    /// Stores `m` re-signed by `new` (its id here and FID) with `signature` by `cert`
    /// (`pem`), once [`Chat::check_resigned`] passes. Announced to the channel like an edit.
    pub async fn store_resigned(
        &self,
        m: &MessageRow,
        new: (ActorId, &FederationId),
        content: &serde_json::Value,
        signature: &str,
        cert: &IdCert,
        pem: &str,
    ) -> Result<(), Error> {
        let (new_id, new_fid) = new;
        self.check_resigned(m, new_fid, content, signature, cert)?;
        let now = self.events.now();
        let resigned = MessageRow {
            author_id: new_id.to_store(),
            author_name: crate::principal::stored_name(new_fid, &self.domain),
            signature: signature.to_ascii_lowercase(),
            cert_pem: pem.to_owned(),
            cert_serial: to_store(cert.serial.0),
            version: m.version + 1,
            resigned_at: Some(now.to_store()),
            ..m.clone()
        };
        let message = self.message_view(&resigned)?;
        let e = Publish::new(
            Self::guild_stream(m.guild_id),
            CHAT,
            op::MESSAGE_UPDATE,
            json(&message),
        )
        .audience(Audience::Channel(m.channel_id))
        .about(m.id);
        let seq = self
            .store
            .resign_message(&resigned, m.author_id, &e.to_new(now))
            .await
            .map_err(|err| match err {
                fugue_store::Error::Conflict(Conflict::MessageChanged) => Error::Changed,
                fugue_store::Error::Conflict(Conflict::NonceUsed) => {
                    Error::NonceReused(m.version_nonce.clone())
                }
                err => Error::Store(err),
            })?;
        self.events.appended(e, seq, now).await;
        Ok(())
    }
}

/// Checks that `signature` (hex) over `payload` — message `id`, re-signed or imported —
/// verifies strictly with the key of `cert`.
pub(super) fn check_signature(
    id: impl std::fmt::Display,
    payload: &SignedPayload,
    signature: &str,
    cert: &IdCert,
) -> Result<(), Error> {
    let sig = hex::decode(signature)
        .ok()
        .filter(|s| s.len() == 64)
        .ok_or_else(|| Error::BadSignature(format!("message {id}: not 64 bytes of hex")))?;
    certs::verify_strict(&cert.key, &payload.signed_bytes(), &sig)
        .map_err(|_| Error::BadSignature(format!("message {id} with certificate {}", cert.serial)))
}
