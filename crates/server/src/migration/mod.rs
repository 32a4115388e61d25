//! Migrations (core §7): redirects from an actor of this server to its new identity
//! (§7.1.1), re-signing the messages an actor signed here (§7.2), and exporting and
//! deleting its data (§7.3).
//!
//! Rules: a redirect is confirmed by both sides, in either order — the old actor (the
//! source, registered here) proving with key trials every key it signed messages here with,
//! the new actor (the target, signed in here from any server) with its session. The target
//! must be an actor whose home server answers for it when the redirect is set up. Once both
//! confirmed, lookups of the source (service discovery, profiles) answer 307 to the same
//! lookup of the target on its home server — 308 once the source's account is deleted.
//! Certificates and key trials of the source are never redirected: its old messages must
//! stay verifiable.
//!
//! Re-signing: the old actor (any session here) grants a new actor the messages it signed
//! with the keys it proves, naming the keys the new actor may sign with; the grant lasts
//! [`GRANT_LIFETIME_S`]. The new actor fetches them in batches by certificate and commits
//! them re-signed; each commit is checked — content unchanged but for the author, signer's
//! certificate the new actor's and issued by its home server, key allowed, grant not
//! expired — and stored as the message's next version (chat's `resign.rs`). A message
//! already re-signed is not offered again, and committing it again changes nothing.
//!
//! Exports and deletion of an actor's data (core §7.3, §7.3.2) are in `export.rs`.
//! HTTP lives in `routes.rs`.

mod error;
pub mod export;
mod import;
pub mod routes;

use fugue_proto::api::{BatchMessage, MessageBatch, request_resigning};
use fugue_proto::certs::IdCert;
use fugue_proto::{DomainName, FederationId};
use fugue_store::{Conflict, GrantRow, MessageRow, Store};

pub use error::Error;

use crate::chat::Chat;
use crate::federation::Federation;
use crate::identity::Identity;
use crate::ids::{from_store, to_store};
use crate::media::Media;
use crate::sessions::{Authed, Sessions};

/// How long a grant of re-signing lasts: re-signed messages are accepted until then.
pub const GRANT_LIFETIME_S: u64 = 24 * 3600;
/// Messages offered for re-signing at once by default, and at most.
pub const RESIGN_PAGE: u64 = 300;
pub const RESIGN_PAGE_MAX: u64 = 1000;
/// Seconds a client waits between commits of re-signed batches (core §7.2.2.2): none — a
/// batch is checked and stored within its request, so the server needs no pause.
pub const RESIGN_INTERVAL_S: u16 = 0;
/// Most keys a grant allows the new actor to sign with.
const MAX_ALLOWED_KEYS: usize = 16;

/// The migration domain.
#[derive(Clone)]
pub struct Migration {
    store: Store,
    sessions: Sessions,
    federation: Federation,
    chat: Chat,
    media: Media,
    identity: Identity,
    /// How long `GET /data` waits for an archive being built.
    export_wait: std::time::Duration,
    domain: DomainName,
    public_url: String,
}

/// The services the migration domain works with.
pub struct Deps {
    pub store: Store,
    pub sessions: Sessions,
    pub federation: Federation,
    pub chat: Chat,
    pub media: Media,
    pub identity: Identity,
    pub export_wait: std::time::Duration,
}

/// Where lookups of a redirected actor go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirected {
    pub target: FederationId,
    /// The source's account is deleted: the redirect is permanent (308).
    pub permanent: bool,
}

impl Migration {
    pub fn new(deps: Deps, domain: DomainName, public_url: &str) -> Self {
        let Deps {
            store,
            sessions,
            federation,
            chat,
            media,
            identity,
            export_wait,
        } = deps;
        Self {
            store,
            sessions,
            federation,
            chat,
            media,
            identity,
            export_wait,
            domain,
            public_url: public_url.trim_end_matches('/').to_owned(),
        }
    }

    /// `POST /migration/redirect`: the source names its target (body: the FID, as text or
    /// a JSON string) and proves its keys. Whether the redirect is now confirmed by both.
    pub async fn set_up_redirect(
        &self,
        authed: &Authed,
        keytrial: Option<&str>,
        body: &[u8],
        now: u64,
    ) -> Result<bool, Error> {
        let target = parse_fid_body(body)?;
        if target == authed.actor.fid {
            return Err(Error::Invalid("an actor cannot redirect to itself".into()));
        }
        let proven = self.sessions.proven_keys(authed, keytrial, now).await?;
        let actor = authed.actor.id.to_store();
        let missing: Vec<String> = self
            .store
            .signing_serials(actor)
            .await?
            .into_iter()
            .filter(|s| !proven.iter().any(|p| to_store(p.serial) == *s))
            .map(|s| s.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(Error::KeysUnproven(missing.join(", ")));
        }
        self.check_target(&target, now).await?;
        let row = self
            .store
            .confirm_redirect_source(actor, &target.to_string(), to_store(now))
            .await?;
        tracing::info!(source = %authed.actor.fid, %target, confirmed = row.confirmed(), "redirect requested");
        Ok(row.confirmed())
    }

    /// The target must be an actor: registered here (not deleted), or one whose home server
    /// lists certificates for it now.
    async fn check_target(&self, target: &FederationId, now: u64) -> Result<(), Error> {
        if target.domain() == &self.domain {
            return match self
                .store
                .actor_by_name(target.local_name().as_str())
                .await?
            {
                Some(a) if a.deleted_at.is_none() => Ok(()),
                _ => Err(Error::TargetInvalid(format!(
                    "{target} is no actor of this server"
                ))),
            };
        }
        let fid = self.federation.foreign_fid(&target.to_string())?;
        let certs = self.federation.fetch_certs(&fid, now).await?;
        if certs.is_empty() {
            return Err(Error::TargetInvalid(format!(
                "the home server of {target} lists no certificate for it"
            )));
        }
        Ok(())
    }

    /// `DELETE /migration/redirect?removeActorFid=`.
    pub async fn remove_redirect(&self, authed: &Authed, target: &str) -> Result<(), Error> {
        let removed = self
            .store
            .remove_redirect(authed.actor.id.to_store(), target)
            .await?;
        if removed {
            Ok(())
        } else {
            Err(Error::Invalid(format!("you have no redirect to {target}")))
        }
    }

    /// `POST /redirect/extern?redirectSourceFid=`: the caller confirms being the target of
    /// `source`'s redirect. Whether the redirect is now confirmed by both.
    pub async fn confirm_as_target(
        &self,
        authed: &Authed,
        source: &str,
        now: u64,
    ) -> Result<bool, Error> {
        let source_id = self.local_actor(source).await?;
        if source_id == authed.actor.id.to_store() {
            return Err(Error::Invalid("an actor cannot redirect to itself".into()));
        }
        let row = self
            .store
            .confirm_redirect_target(source_id, &authed.actor.fid.to_string(), to_store(now))
            .await
            .map_err(|e| match e {
                fugue_store::Error::Conflict(Conflict::RedirectElsewhere) => {
                    Error::Elsewhere(source.to_owned())
                }
                e => e.into(),
            })?;
        Ok(row.confirmed())
    }

    /// `DELETE /redirect/extern?redirectSourceFid=`.
    pub async fn withdraw_as_target(&self, authed: &Authed, source: &str) -> Result<(), Error> {
        let source_id = self.local_actor(source).await?;
        if self
            .store
            .withdraw_redirect_target(source_id, &authed.actor.fid.to_string())
            .await?
        {
            Ok(())
        } else {
            Err(Error::NoRedirect(source.to_owned()))
        }
    }

    /// The id of `fid`, an actor registered here (deleted ones too: their redirect stays).
    async fn local_actor(&self, fid: &str) -> Result<i64, Error> {
        let not_here = || Error::NoRedirect(fid.to_owned());
        let fid: FederationId = fid.parse().map_err(|_| not_here())?;
        if fid.domain() != &self.domain {
            return Err(not_here());
        }
        self.store
            .actor_by_name(fid.local_name().as_str())
            .await?
            .map(|a| a.id)
            .ok_or_else(not_here)
    }

    /// Where lookups of `fid` go, when it is an actor of this server with a redirect both
    /// sides confirmed.
    pub async fn redirect_of(&self, fid: &str) -> Result<Option<Redirected>, Error> {
        let Ok(fid) = fid.parse::<FederationId>() else {
            return Ok(None);
        };
        if fid.domain() != &self.domain {
            return Ok(None);
        }
        let Some((row, deleted_at)) = self
            .store
            .redirect_of_name(fid.local_name().as_str())
            .await?
        else {
            return Ok(None);
        };
        match row.target_fid.parse() {
            Ok(target) if row.confirmed() => Ok(Some(Redirected {
                target,
                permanent: deleted_at.is_some(),
            })),
            _ => Ok(None),
        }
    }

    /// The base URL of `target`'s home server.
    pub async fn home_of(&self, target: &FederationId, now: u64) -> Result<String, Error> {
        if target.domain() == &self.domain {
            return Ok(self.public_url.clone());
        }
        Ok(self.federation.home_base(target.domain(), now).await?)
    }
}

impl Migration {
    /// `POST /messages`: the caller lets `new_actor_fid` re-sign the messages it signed here
    /// with the keys it proves, signing with `allowed_resigning_keys`. Until when.
    pub async fn grant_resigning(
        &self,
        authed: &Authed,
        keytrial: Option<&str>,
        req: request_resigning::Request,
        now: u64,
    ) -> Result<u64, Error> {
        let new: FederationId = req
            .new_actor_fid
            .parse()
            .map_err(|e: fugue_proto::ids::IdError| Error::Invalid(format!("newActorFid: {e}")))?;
        if new == authed.actor.fid {
            return Err(Error::Invalid("an actor cannot re-sign to itself".into()));
        }
        if req.allowed_resigning_keys.is_empty()
            || req.allowed_resigning_keys.len() > MAX_ALLOWED_KEYS
        {
            return Err(Error::Invalid(format!(
                "allowedResigningKeys holds 1 to {MAX_ALLOWED_KEYS} public keys"
            )));
        }
        let allowed = req
            .allowed_resigning_keys
            .iter()
            .map(|pem| {
                use ed25519_dalek::pkcs8::DecodePublicKey;
                ed25519_dalek::VerifyingKey::from_public_key_pem(pem.trim())
                    .map(|k| hex::encode(k.as_bytes()))
                    .map_err(|e| {
                        Error::Invalid(format!(
                            "allowedResigningKeys: not an Ed25519 public key (PEM): {e}"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let proven = self.sessions.proven_keys(authed, keytrial, now).await?;
        let expires = now + GRANT_LIFETIME_S;
        self.store
            .insert_resign_grant(&GrantRow {
                old_actor_id: authed.actor.id.to_store(),
                new_fid: new.to_string(),
                serials: proven.iter().map(|p| to_store(p.serial)).collect(),
                allowed_keys: allowed,
                expires_at: to_store(expires),
                created_at: to_store(now),
            })
            .await?;
        tracing::info!(old = %authed.actor.fid, %new, keys = proven.len(), "re-signing granted");
        Ok(expires)
    }

    /// `DELETE /messages?removeActorFid=`.
    pub async fn abort_resigning(&self, authed: &Authed, new: &str) -> Result<(), Error> {
        if self
            .store
            .delete_resign_grant(authed.actor.id.to_store(), new)
            .await?
        {
            Ok(())
        } else {
            Err(Error::NoGrant(format!(
                "you have not granted re-signing to {new}"
            )))
        }
    }

    /// The grants to the caller that are still open.
    async fn grants(&self, authed: &Authed, now: u64) -> Result<Vec<GrantRow>, Error> {
        let grants = self
            .store
            .resign_grants_to(&authed.actor.fid.to_string(), to_store(now))
            .await?;
        if grants.is_empty() {
            return Err(Error::NoGrant(
                "nobody lets you re-sign messages here (or the grant expired)".into(),
            ));
        }
        Ok(grants)
    }

    /// `GET /messages?limit=&serialNumber=`: messages the caller may re-sign, by certificate.
    pub async fn to_resign(
        &self,
        authed: &Authed,
        limit: Option<u64>,
        serial: Option<u64>,
        now: u64,
    ) -> Result<Vec<MessageBatch>, Error> {
        let limit = limit.unwrap_or(RESIGN_PAGE);
        if !(1..=RESIGN_PAGE_MAX).contains(&limit) {
            return Err(Error::Invalid(format!(
                "limit must be 1 to {RESIGN_PAGE_MAX}"
            )));
        }
        let grants = self.grants(authed, now).await?;
        self.batches(authed, &grants, limit, serial).await
    }

    async fn batches(
        &self,
        authed: &Authed,
        grants: &[GrantRow],
        limit: u64,
        serial: Option<u64>,
    ) -> Result<Vec<MessageBatch>, Error> {
        let mut rows: Vec<MessageRow> = Vec::new();
        for g in grants {
            let left = limit.saturating_sub(rows.len() as u64);
            if left == 0 {
                break;
            }
            rows.extend(
                self.store
                    .messages_to_resign(
                        g.old_actor_id,
                        &authed.actor.fid.to_string(),
                        serial.map(to_store),
                        to_store(left),
                    )
                    .await?,
            );
        }
        let mut batches: Vec<(i64, MessageBatch)> = Vec::new();
        for m in rows {
            let message = BatchMessage {
                id: from_store(m.id),
                signature: m.signature.clone(),
                content: self.chat.resign_content(&m)?,
                peer: None,
            };
            match batches.iter_mut().find(|(s, _)| *s == m.cert_serial) {
                Some((_, batch)) => batch.messages.push(message),
                None => batches.push((
                    m.cert_serial,
                    MessageBatch {
                        id_cert: m.cert_pem.clone(),
                        messages: vec![message],
                    },
                )),
            }
        }
        Ok(batches.into_iter().map(|(_, b)| b).collect())
    }

    /// `POST /messages/commit`: stores re-signed messages after the four checks of core
    /// §7.2; answers the next batch.
    pub async fn commit(
        &self,
        authed: &Authed,
        batches: Vec<MessageBatch>,
        now: u64,
    ) -> Result<Vec<MessageBatch>, Error> {
        let grants = self.grants(authed, now).await?;
        let me = &authed.actor;
        // Every message is checked before any is stored: a batch is taken whole or not.
        let mut due = Vec::new();
        for batch in &batches {
            let cert = self.signer_cert(authed, &batch.id_cert, now).await?;
            let key = hex::encode(cert.key.as_bytes());
            for msg in &batch.messages {
                let Some(row) = self.store.message(to_store(msg.id)).await? else {
                    return Err(Error::NotYours(msg.id));
                };
                // Committed before (a retry): nothing to do.
                if row.author_id == me.id.to_store()
                    && row.signature.eq_ignore_ascii_case(&msg.signature)
                {
                    continue;
                }
                let grant = grants
                    .iter()
                    .find(|g| {
                        g.old_actor_id == row.author_id && g.serials.contains(&row.cert_serial)
                    })
                    .filter(|_| row.deleted_at.is_none())
                    .ok_or(Error::NotYours(msg.id))?;
                if !grant.allowed_keys.contains(&key) {
                    return Err(Error::KeyNotAllowed(cert.serial.0));
                }
                self.chat
                    .check_resigned(&row, &me.fid, &msg.content, &msg.signature, &cert)?;
                due.push((row, msg, cert.clone(), &batch.id_cert));
            }
        }
        for (row, msg, cert, pem) in due {
            self.chat
                .store_resigned(
                    &row,
                    (me.id, &me.fid),
                    &msg.content,
                    &msg.signature,
                    &cert,
                    pem,
                )
                .await?;
        }
        self.batches(authed, &grants, RESIGN_PAGE, None).await
    }

    /// The caller's certificate `pem`, valid now and issued by its home server: ours for a
    /// local actor, its home server's for a foreign one.
    async fn signer_cert(&self, authed: &Authed, pem: &str, now: u64) -> Result<IdCert, Error> {
        let cert = IdCert::parse(pem.as_bytes())
            .map_err(|e| Error::Invalid(format!("idCert does not parse: {e}")))?;
        let me = &authed.actor;
        if cert.fid().as_ref() != Some(&me.fid) {
            return Err(Error::CertNotYours(cert.serial.0));
        }
        let home_der = if me.is_local() {
            self.store
                .cert_by_serial(to_store(cert.serial.0))
                .await?
                .filter(|c| c.actor_id == me.id.to_store() && c.revoked_at.is_none())
                .and_then(|c| IdCert::parse(c.cert_pem.as_bytes()).ok())
                .map(|c| c.der)
        } else {
            self.federation
                .verified_cert(&me.fid, cert.serial.0, now, false)
                .await
                .ok()
                .map(|c| c.cert.der)
        };
        if home_der.as_ref() != Some(&cert.der) || cert.valid_at(now).is_err() {
            return Err(Error::CertNotYours(cert.serial.0));
        }
        Ok(cert)
    }
}

/// The FID a redirect request names: plain text, or a JSON string (the reference SDK).
fn parse_fid_body(body: &[u8]) -> Result<FederationId, Error> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Error::Invalid("the body is the new actor's FID, as text".into()))?
        .trim();
    let text = if text.starts_with('"') {
        serde_json::from_str::<String>(text)
            .map_err(|e| Error::Invalid(format!("the body is not a JSON string: {e}")))?
    } else {
        text.to_owned()
    };
    text.parse()
        .map_err(|e: fugue_proto::ids::IdError| Error::Invalid(format!("{text:?}: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_target_comes_as_text_or_as_a_json_string() {
        for body in [
            &b"alice@b.example"[..],
            b"  alice@b.example\n",
            b"\"alice@b.example\"",
        ] {
            assert_eq!(parse_fid_body(body).unwrap().to_string(), "alice@b.example");
        }
        for bad in [&b""[..], b"\"alice", b"no fid", b"\xff"] {
            assert!(parse_fid_body(bad).is_err(), "{bad:?}");
        }
    }
}
