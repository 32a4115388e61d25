//! Migrations (core §7): redirects from an actor of this server to its new identity
//! (§7.1.1). Re-signing, export and import follow.
//!
//! Rules: a redirect is confirmed by both sides, in either order — the old actor (the
//! source, registered here) proving with key trials every key it signed messages here with,
//! the new actor (the target, signed in here from any server) with its session. The target
//! must be an actor whose home server answers for it when the redirect is set up. Once both
//! confirmed, lookups of the source (service discovery, profiles) answer 307 to the same
//! lookup of the target on its home server — 308 once the source's account is deleted.
//! Certificates and key trials of the source are never redirected: its old messages must
//! stay verifiable. HTTP lives in `routes.rs`.

mod error;
pub mod routes;

use fugue_proto::{DomainName, FederationId};
use fugue_store::{Conflict, Store};

pub use error::Error;

use crate::federation::Federation;
use crate::ids::to_store;
use crate::sessions::{Authed, Sessions};

/// The migration domain.
#[derive(Clone)]
pub struct Migration {
    store: Store,
    sessions: Sessions,
    federation: Federation,
    domain: DomainName,
    public_url: String,
}

/// Where lookups of a redirected actor go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirected {
    pub target: FederationId,
    /// The source's account is deleted: the redirect is permanent (308).
    pub permanent: bool,
}

impl Migration {
    pub fn new(
        store: Store,
        sessions: Sessions,
        federation: Federation,
        domain: DomainName,
        public_url: &str,
    ) -> Self {
        Self {
            store,
            sessions,
            federation,
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
        let Some(actor) = self.store.actor_by_name(fid.local_name().as_str()).await? else {
            return Ok(None);
        };
        let Some(row) = self.store.redirect(actor.id).await? else {
            return Ok(None);
        };
        if !row.confirmed() {
            return Ok(None);
        }
        let Ok(target) = row.target_fid.parse() else {
            return Ok(None);
        };
        Ok(Some(Redirected {
            target,
            permanent: actor.deleted_at.is_some(),
        }))
    }

    /// The base URL of `target`'s home server.
    pub async fn home_of(&self, target: &FederationId, now: u64) -> Result<String, Error> {
        if target.domain() == &self.domain {
            return Ok(self.public_url.clone());
        }
        Ok(self.federation.home_base(target.domain(), now).await?)
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
