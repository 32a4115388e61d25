//! Signed messages: send, edit, delete, history and edit histories.
//!
//! Nothing is stored before the message is checked (docs/decisions.md, "Signed bytes of a
//! message" and "Which certificate"): the hex signature verifies strictly over
//! [`SignedPayload::signed_bytes`] — which names this server, this channel, the author and
//! the nonce — with the ID-Cert the message carries or names; that certificate is the
//! author's, valid now and not revoked, by our own records for local authors and by the
//! author's home server (with cache and revocation information, core §6.4.1) for foreign
//! ones. The certificate is stored beside the signature so that anyone can check again.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fugue_proto::api::{edit_message, message_history, send_message};
use fugue_proto::certs::{self, IdCert};
use fugue_proto::chat::{
    self, CHAT, Message, MessageBody, MessageDelete, MessageVersion, Permissions, SignedPayload,
    channel_type, op,
};
use fugue_proto::{FederationId, Serial};
use fugue_store::{Conflict, MessageRow, MessageVersionRow, Sent, SessionGuard};

use super::{ChannelRef, Chat, Error, LocalCert, Snapshot, cache_get, cache_insert, json};
use crate::events::{Audience, Publish};
use crate::ids::{ActorId, from_store, to_store};
use crate::principal::Actor;
use crate::sessions::Authed;
use crate::time::UnixTime;

/// How often a send draws a new id when the one drawn is taken.
const ID_ATTEMPTS: usize = 4;

/// What a send did: stored now (201), or found stored before under its nonce (200).
pub enum Outcome {
    Created(Message),
    Existing(Message),
}

/// A checked signature: the certificate it verifies with.
pub(super) struct Checked {
    pub(super) pem: String,
    pub(super) serial: Serial,
}

/// Message ids count milliseconds from 2026-01-01T00:00:00Z: 41 bits of them last until
/// 2095.
pub(super) const MESSAGE_EPOCH: u64 = 1_767_225_600;

impl Chat {
    /// A new time-ordered message id: `(ms since MESSAGE_EPOCH << 22) | 22 random bits`,
    /// positive, and above every id this node gave out before.
    pub(super) fn message_id(&self, now: UnixTime) -> i64 {
        let sub_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_millis()));
        let ms = now
            .secs()
            .saturating_sub(MESSAGE_EPOCH)
            .saturating_mul(1000)
            .saturating_add(sub_ms);
        let random = i64::from(rand_core::RngCore::next_u32(&mut rand_core::OsRng) & 0x3f_ffff);
        let drawn = (to_store(ms) << 22 | random) & i64::MAX;
        let mut last = self.last_message_id.load(Ordering::Relaxed);
        loop {
            let id = drawn.max(last.saturating_add(1)).max(1);
            match self.last_message_id.compare_exchange_weak(
                last,
                id,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return id,
                Err(now_last) => last = now_last,
            }
        }
    }

    /// The message as the wire shows it.
    pub(super) fn message_view(&self, m: &MessageRow) -> Result<Message, Error> {
        let author = self.fid_of(&m.author_name)?;
        let body = if m.deleted_at.is_some() || m.content.is_empty() {
            MessageBody {
                content: String::new(),
                reply_to: m.reply_to.map(from_store),
                attachments: Vec::new(),
            }
        } else {
            serde_json::from_str(&m.content).map_err(|e| {
                Error::Store(fugue_store::Error::Decode(format!(
                    "message {} body: {e}",
                    m.id
                )))
            })?
        };
        Ok(Message {
            id: from_store(m.id),
            uid: m.id.to_string(),
            version: from_store(m.version),
            channel_id: from_store(m.channel_id),
            guild_id: from_store(m.guild_id),
            author,
            content: body.content,
            reply_to: body.reply_to,
            timestamp: from_store(m.created_at),
            edited_timestamp: m.edited_at.map(from_store),
            deleted_timestamp: m.deleted_at.map(from_store),
            resigned_timestamp: m.resigned_at.map(from_store),
            nonce: m.version_nonce.clone(),
            signature: m.signature.clone(),
            id_cert: m.cert_pem.clone(),
            serial: Serial(from_store(m.cert_serial)),
            attachments: body.attachments,
            attachment_details: Vec::new(),
            embeds: Vec::new(),
            reactions: Vec::new(),
        })
    }

    /// The bounds of every message; a channel's own rules follow in
    /// [`Chat::check_encryption`] (an encrypted message may be longer).
    pub(super) fn check_body(body: &MessageBody) -> Result<(), Error> {
        let limit = if body.content.starts_with(fugue_proto::mls::ENCRYPTED_PREFIX) {
            fugue_proto::mls::MAX_ENCRYPTED_CONTENT
        } else {
            chat::MAX_CONTENT
        };
        if body.content.chars().count() > limit {
            return Err(Error::Invalid(format!(
                "content is longer than {limit} characters"
            )));
        }
        if body.content.trim().is_empty() && body.attachments.is_empty() {
            return Err(Error::Invalid(
                "a message needs content or an attachment".into(),
            ));
        }
        if body.attachments.len() > chat::MAX_ATTACHMENTS
            || body
                .attachments
                .iter()
                .any(|a| a.is_empty() || a.len() > 2048)
        {
            return Err(Error::Invalid(format!(
                "at most {} attachments, each a URI of at most 2048 bytes",
                chat::MAX_ATTACHMENTS
            )));
        }
        Ok(())
    }

    pub(super) fn check_nonce(nonce: &str) -> Result<(), Error> {
        if chat::valid_nonce(nonce) {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "nonce must be 1 to {} printable characters without spaces",
                chat::MAX_NONCE
            )))
        }
    }

    /// Verifies `signature` over `payload` with the certificate the request carries
    /// (`id_cert`) or names (`serial`), which must be the author's, valid now and not
    /// revoked.
    pub(super) async fn verify(
        &self,
        authed: &Authed,
        payload: &SignedPayload,
        signature: &str,
        id_cert: Option<&str>,
        serial: Option<Serial>,
        now: UnixTime,
    ) -> Result<Checked, Error> {
        let sig = hex::decode(signature)
            .ok()
            .filter(|s| s.len() == 64)
            .ok_or_else(|| Error::BadSignature("not 64 bytes of hex".into()))?;
        let carried = match id_cert {
            Some(pem) => Some(
                IdCert::parse(pem.as_bytes())
                    .map_err(|e| Error::BadCert(format!("id_cert does not parse: {e}")))?,
            ),
            None => None,
        };
        let serial = match (&carried, serial) {
            (Some(c), Some(s)) if c.serial != s => {
                return Err(Error::BadCert("id_cert and serial disagree".into()));
            }
            (Some(c), _) => c.serial,
            (None, Some(s)) => s,
            (None, None) => {
                return Err(Error::BadCert(
                    "the message carries neither id_cert nor serial".into(),
                ));
            }
        };
        let author = &authed.actor;
        let (local, foreign);
        let (cert, pem) = if author.is_local() {
            // The calling session's own certificate is live: authentication found the
            // session active, its certificate unrevoked and not past its end.
            let own = authed.session.cert_serial == Some(serial);
            local = self.local_cert(author, serial, now, own).await?;
            (&local.cert, local.pem.as_str())
        } else {
            foreign = self
                .federation
                .verified_cert(&author.fid, serial.0, now.secs(), false)
                .await?;
            (&foreign.cert, foreign.cacheable.id_cert_pem.as_str())
        };
        if cert.fid().as_ref() != Some(&author.fid) {
            return Err(Error::BadCert(format!(
                "certificate {serial} is not {}'s",
                author.fid
            )));
        }
        if let Some(c) = carried
            && c.der != cert.der
        {
            return Err(Error::BadCert(format!(
                "id_cert is not the certificate {serial} of {}",
                author.fid
            )));
        }
        certs::verify_strict(&cert.key, &payload.signed_bytes(), &sig)
            .map_err(|_| Error::BadSignature(format!("with certificate {serial}")))?;
        Ok(Checked {
            pem: pem.to_owned(),
            serial,
        })
    }

    /// A local author's certificate by our own records: its, unrevoked (asked unless
    /// `live` says so already) and valid now.
    async fn local_cert(
        &self,
        author: &Actor,
        serial: Serial,
        now: UnixTime,
        live: bool,
    ) -> Result<std::sync::Arc<LocalCert>, Error> {
        let not_its = || Error::BadCert(format!("{} has no certificate {serial}", author.fid));
        let cached = cache_get(&self.local_certs, &serial.0);
        let c = match cached {
            Some(c) if live => c,
            _ => {
                let row = self
                    .store
                    .cert_by_serial(to_store(serial.0))
                    .await?
                    .filter(|r| r.actor_id == author.id.to_store())
                    .ok_or_else(not_its)?;
                if row.revoked_at.is_some() {
                    return Err(Error::BadCert(format!("certificate {serial} is revoked")));
                }
                let cert = IdCert::parse(row.cert_pem.as_bytes()).map_err(|e| {
                    Error::Store(fugue_store::Error::Decode(format!("stored cert: {e}")))
                })?;
                let c = std::sync::Arc::new(LocalCert {
                    actor_id: row.actor_id,
                    cert,
                    pem: row.cert_pem,
                });
                cache_insert(&self.local_certs, serial.0, c.clone());
                c
            }
        };
        if c.actor_id != author.id.to_store() {
            return Err(not_its());
        }
        c.cert
            .valid_at(now.secs())
            .map_err(|e| Error::BadCert(format!("certificate {serial} is not valid now: {e}")))?;
        Ok(c)
    }

    /// `POST /channels/{id}/messages` (SEND_MESSAGES): stores a signed message once per
    /// `(channel, author, nonce)`.
    ///
    /// The author's session and permissions are first taken as this node knows them,
    /// without a read: the write itself stores the message only while the session holds
    /// (`guard`) and the access rules are still at the version the permissions were taken
    /// from. When that refuses, the session and the rules are read as they are now and the
    /// send is checked again.
    pub async fn send_message(
        &self,
        authed: &Authed,
        guard: &SessionGuard,
        channel_id: u64,
        req: send_message::Request,
    ) -> Result<Outcome, Error> {
        Self::check_nonce(&req.nonce)?;
        let body = MessageBody {
            content: req.content.clone(),
            reply_to: req.reply_to,
            attachments: req.attachments.clone(),
        };
        Self::check_body(&body)?;
        let need = Permissions::SEND_MESSAGES;
        let send =
            |authed, guard, access| self.send_as(authed, guard, channel_id, &req, &body, access);
        if let Some(cached) = self.cached_channel_access(&authed.actor, channel_id, need) {
            match send(authed, guard, cached).await {
                Err(Error::ChannelNotFound(_) | Error::MissingPermission(_)) => {}
                done => return done,
            }
        }
        let (authed, guard) = &self.sessions.reread(&authed.token).await?;
        let (c, s, p) = self.channel_access(&authed.actor, channel_id).await?;
        Self::require(p, need)?;
        send(authed, guard, (c, s, p)).await
    }

    /// A send by an author whose access to the channel is `access`.
    async fn send_as(
        &self,
        authed: &Authed,
        guard: &SessionGuard,
        channel_id: u64,
        req: &send_message::Request,
        body: &MessageBody,
        (c, s, p): (ChannelRef, Arc<Snapshot>, Permissions),
    ) -> Result<Outcome, Error> {
        let actor = &authed.actor;
        Self::check_mentions(p, &body.content)?;
        if c.kind == i64::from(channel_type::CATEGORY) {
            return Err(Error::Invalid("a category holds no messages".into()));
        }
        self.check_encryption(&s, &c, actor, body).await?;
        if let Some(reply) = body.reply_to {
            match self.store.message(to_store(reply)).await? {
                Some(m) if m.channel_id == c.id => {}
                _ => return Err(Error::MessageNotFound(reply)),
            }
        }
        let now = self.events.now();
        let payload =
            SignedPayload::message(&self.domain, channel_id, &actor.fid, &req.nonce, None, body);
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
        let (rids, details) = self.attached(actor, &body.attachments).await?;
        let content = serde_json::to_string(body).map_err(|e| Error::Invalid(e.to_string()))?;
        for _ in 0..ID_ATTEMPTS {
            let row = MessageRow {
                id: self.message_id(now),
                guild_id: c.guild_id,
                channel_id: c.id,
                author_id: actor.id.to_store(),
                author_name: crate::principal::stored_name(&actor.fid, &self.domain),
                nonce: req.nonce.clone(),
                content: content.clone(),
                signature: req.signature.to_ascii_lowercase(),
                cert_pem: checked.pem.clone(),
                cert_serial: to_store(checked.serial.0),
                version_nonce: req.nonce.clone(),
                reply_to: body.reply_to.map(to_store),
                created_at: now.to_store(),
                edited_at: None,
                deleted_at: None,
                deleted_by: None,
                version: 1,
                resigned_at: None,
            };
            let mut message = self.message_view(&row)?;
            message.attachment_details.clone_from(&details);
            let e = Publish::new(
                Self::guild_stream(c.guild_id),
                CHAT,
                op::MESSAGE_CREATE,
                json(&message),
            )
            .audience(Audience::Channel(c.id))
            .about(row.id);
            match self
                .store
                .insert_message_attaching(&row, &rids, &e.to_new(now), Some(s.version), Some(guard))
                .await
            {
                Ok(Sent::New(seq)) => {
                    self.events.appended(e, seq, now).await;
                    return Ok(Outcome::Created(message));
                }
                Ok(Sent::Existing(stored)) => {
                    // The same signed message again is answered as it is now (edited or a
                    // tombstone); another one under a used nonce is refused.
                    let first = match stored.version {
                        _ if stored.deleted_at.is_some() => None,
                        1 => Some(stored.signature.clone()),
                        _ => self
                            .store
                            .message_versions(stored.id)
                            .await?
                            .into_iter()
                            .next()
                            .map(|v| v.signature),
                    };
                    let same = first.is_none_or(|s| s.eq_ignore_ascii_case(&req.signature));
                    if same {
                        return Ok(Outcome::Existing(self.message_view(&stored)?));
                    }
                    return Err(Error::NonceReused(req.nonce.clone()));
                }
                Err(fugue_store::Error::Unique(_)) => {}
                Err(fugue_store::Error::Conflict(Conflict::NotAMember)) => {
                    return Err(Error::ChannelNotFound(channel_id));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Store(fugue_store::Error::Backend(
            "no free message id after several attempts".into(),
        )))
    }

    /// A message of a channel the actor may view.
    pub(super) async fn channel_message(
        &self,
        actor: &Actor,
        channel_id: u64,
        message_id: u64,
    ) -> Result<(ChannelRef, Permissions, MessageRow), Error> {
        let (c, _, p) = self.channel_access(actor, channel_id).await?;
        match self.store.message(to_store(message_id)).await? {
            Some(m) if m.channel_id == c.id => Ok((c, p, m)),
            _ => Err(Error::MessageNotFound(message_id)),
        }
    }

    /// `PATCH /channels/{id}/messages/{mid}`: a new signed version by the author.
    pub async fn edit_message(
        &self,
        authed: &Authed,
        channel_id: u64,
        message_id: u64,
        req: edit_message::Request,
    ) -> Result<Message, Error> {
        let actor = &authed.actor;
        let (c, p, m) = self.channel_message(actor, channel_id, message_id).await?;
        if m.deleted_at.is_some() {
            return Err(Error::MessageNotFound(message_id));
        }
        if m.author_id != actor.id.to_store() {
            return Err(Error::NotAuthor);
        }
        Self::check_mentions(p, &req.content)?;
        Self::check_nonce(&req.nonce)?;
        let body = MessageBody {
            content: req.content,
            reply_to: m.reply_to.map(from_store),
            attachments: req.attachments,
        };
        Self::check_body(&body)?;
        self.check_encryption_now(&c, actor, &body).await?;
        let content = serde_json::to_string(&body).map_err(|e| Error::Invalid(e.to_string()))?;
        // The same edit again (a retry) is answered with the message as it is.
        if m.version_nonce == req.nonce && m.signature.eq_ignore_ascii_case(&req.signature) {
            return self.message_view(&m);
        }
        let now = self.events.now();
        let payload = SignedPayload::message(
            &self.domain,
            channel_id,
            &actor.fid,
            &req.nonce,
            Some(message_id),
            &body,
        );
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
        let (rids, details) = self.attached(actor, &body.attachments).await?;
        let v = MessageVersionRow {
            message_id: m.id,
            version: m.version + 1,
            nonce: req.nonce.clone(),
            content: content.clone(),
            signature: req.signature.to_ascii_lowercase(),
            cert_pem: checked.pem,
            cert_serial: to_store(checked.serial.0),
            edit_of: Some(m.id),
            created_at: now.to_store(),
        };
        let edited = MessageRow {
            content,
            signature: v.signature.clone(),
            cert_pem: v.cert_pem.clone(),
            cert_serial: v.cert_serial,
            version_nonce: v.nonce.clone(),
            edited_at: Some(now.to_store()),
            version: v.version,
            ..m
        };
        let mut message = self.message_view(&edited)?;
        message.attachment_details = details;
        let e = Publish::new(
            Self::guild_stream(c.guild_id),
            CHAT,
            op::MESSAGE_UPDATE,
            json(&message),
        )
        .audience(Audience::Channel(c.id))
        .about(edited.id);
        let seq = self
            .store
            .edit_message_attaching(&v, &rids, &e.to_new(now))
            .await
            .map_err(|e| match e {
                fugue_store::Error::Conflict(Conflict::MessageChanged) => Error::Changed,
                fugue_store::Error::Conflict(Conflict::NonceUsed) => {
                    Error::NonceReused(req.nonce.clone())
                }
                e => Error::Store(e),
            })?;
        self.events.appended(e, seq, now).await;
        Ok(message)
    }

    /// `DELETE /channels/{id}/messages/{mid}`: its author, or MANAGE_MESSAGES there. A
    /// tombstone stays; the content goes everywhere, also from the events about it.
    pub async fn delete_message(
        &self,
        authed: &Authed,
        channel_id: u64,
        message_id: u64,
    ) -> Result<(), Error> {
        let actor = &authed.actor;
        let (c, p, m) = self.channel_message(actor, channel_id, message_id).await?;
        if m.deleted_at.is_some() {
            return Err(Error::MessageNotFound(message_id));
        }
        if m.author_id != actor.id.to_store() {
            Self::require(p, Permissions::MANAGE_MESSAGES)?;
        }
        debug_assert_eq!(m.channel_id, c.id);
        self.tombstone(m, (actor.id, &actor.fid)).await
    }

    /// Deletes `m` (not deleted yet) as `by` did: its content, signature and versions go,
    /// events about it are scrubbed, and the channel hears of the deletion.
    pub(crate) async fn tombstone(
        &self,
        m: MessageRow,
        by: (ActorId, &FederationId),
    ) -> Result<(), Error> {
        let message_id = from_store(m.id);
        let now = self.events.now();
        let tomb = MessageRow {
            content: String::new(),
            signature: String::new(),
            cert_pem: String::new(),
            deleted_at: Some(now.to_store()),
            deleted_by: Some(by.0.to_store()),
            ..m
        };
        let scrubbed = serde_json::to_string(&self.message_view(&tomb)?)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let d = MessageDelete {
            id: message_id,
            channel_id: from_store(tomb.channel_id),
            guild_id: from_store(tomb.guild_id),
            deleted_by: by.1.clone(),
        };
        let e = Publish::new(
            Self::guild_stream(tomb.guild_id),
            CHAT,
            op::MESSAGE_DELETE,
            json(&d),
        )
        .audience(Audience::Channel(tomb.channel_id))
        .about(tomb.id);
        let seq = self
            .store
            .delete_message(
                tomb.id,
                tomb.guild_id,
                by.0.to_store(),
                now.to_store(),
                &scrubbed,
                &e.to_new(now),
            )
            .await
            .map_err(|e| match e {
                fugue_store::Error::Conflict(Conflict::MessageMissing) => {
                    Error::MessageNotFound(message_id)
                }
                e => Error::Store(e),
            })?;
        self.events.appended(e, seq, now).await;
        Ok(())
    }

    /// History, newest first: before, after or around a message (one of them), at most
    /// [`chat::MAX_PAGE`]. Tombstones stay in place, without content.
    pub async fn history(
        &self,
        authed: &Authed,
        channel_id: u64,
        q: message_history::Query,
    ) -> Result<Vec<Message>, Error> {
        let (c, _, _) = self.channel_access(&authed.actor, channel_id).await?;
        let limit = q.limit.unwrap_or(chat::DEFAULT_PAGE);
        if limit == 0 || limit > chat::MAX_PAGE {
            return Err(Error::Invalid(format!(
                "limit must be 1 to {}",
                chat::MAX_PAGE
            )));
        }
        let anchors = [q.before, q.after, q.around].iter().flatten().count();
        if anchors > 1 {
            return Err(Error::Invalid(
                "give at most one of before, after and around".into(),
            ));
        }
        let limit = to_store(limit);
        let rows = match (q.before, q.after, q.around) {
            (_, Some(after), _) => {
                let mut rows = self
                    .store
                    .messages_after(c.id, to_store(after), limit)
                    .await?;
                rows.reverse();
                rows
            }
            (_, _, Some(around)) => {
                let around = to_store(around);
                // The message itself and the older half, then the newer half.
                let older = self
                    .store
                    .messages_before(c.id, Some(around.saturating_add(1)), (limit + 1) / 2)
                    .await?;
                let mut newer = self
                    .store
                    .messages_after(c.id, around, limit - to_store(older.len() as u64))
                    .await?;
                newer.reverse();
                newer.extend(older);
                newer
            }
            (before, _, _) => {
                self.store
                    .messages_before(c.id, before.map(to_store), limit)
                    .await?
            }
        };
        let page = rows
            .iter()
            .map(|m| self.message_view(m))
            .collect::<Result<Vec<_>, _>>()?;
        let page = self.with_reactions(c.id, page).await?;
        self.with_attachments(c.id, page).await
    }

    /// Every version of a message, oldest first (none once deleted).
    pub async fn versions(
        &self,
        authed: &Authed,
        channel_id: u64,
        message_id: u64,
    ) -> Result<Vec<MessageVersion>, Error> {
        let (_, _, m) = self
            .channel_message(&authed.actor, channel_id, message_id)
            .await?;
        self.store
            .message_versions(m.id)
            .await?
            .iter()
            .map(|v| {
                let body: MessageBody = serde_json::from_str(&v.content).map_err(|e| {
                    Error::Store(fugue_store::Error::Decode(format!("version body: {e}")))
                })?;
                Ok(MessageVersion {
                    message_id,
                    version: from_store(v.version),
                    content: body.content,
                    attachments: body.attachments,
                    reply_to: body.reply_to,
                    nonce: v.nonce.clone(),
                    edit_of: v.edit_of.map(from_store),
                    signature: v.signature.clone(),
                    id_cert: v.cert_pem.clone(),
                    serial: Serial(from_store(v.cert_serial)),
                    author: IdCert::parse(v.cert_pem.as_bytes())
                        .ok()
                        .and_then(|c| c.fid()),
                    created_at: from_store(v.created_at),
                })
            })
            .collect()
    }
}
