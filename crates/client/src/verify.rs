//! Verifying an actor's certificates against its home server (core §6.4).
//!
//! Owns the checks the client makes before trusting a certificate: the server root is
//! self-signed and names the actor's domain, each actor cert chains to the server key that was
//! valid when it was issued, and each cache window is signed by the current server key and
//! covers now. One failing certificate fails the whole answer: nothing is skipped silently.
//!
//! The certificates may come from the server where the conversation happens
//! ([`Client::verified_actor_certs_via`]), but roots only ever come from the actor's home
//! server: a relay can withhold or replay what the home server signed, never vouch for it.

use std::time::{SystemTime, UNIX_EPOCH};

use fugue_proto::cache::{CacheableIdCert, check_actor_entry, check_root};
use fugue_proto::certs::IdCert;
use fugue_proto::{DomainName, FederationId};

use crate::error::{Error, Result};
use crate::http::Client;

/// An actor certificate whose chain and cache signature checked out.
#[derive(Debug, Clone)]
pub struct VerifiedCert {
    pub cert: IdCert,
    pub cacheable: CacheableIdCert,
    /// When the home server revoked it, if it did.
    pub revoked_at: Option<u64>,
    /// Past its `notAfter`: the chain was valid when issued, but it is no longer in force.
    pub expired: bool,
}

/// An actor's verified certificates and which server's list they are.
#[derive(Debug)]
pub struct ActorCerts {
    pub certs: Vec<VerifiedCert>,
    pub source: CertSource,
}

/// Which list [`Client::verified_actor_certs_via`] returned.
#[derive(Debug)]
pub enum CertSource {
    /// The conversation server's, verified against the home server's roots.
    Conversation,
    /// The home server's own, because the conversation server's did not come, was empty or
    /// failed verification (the error says which): worth reporting, since a conversation
    /// server that serves entries which do not verify is misbehaving.
    HomeFallback(Error),
}

fn fail(why: String) -> Error {
    Error::Verification(why)
}

fn unix_now() -> Result<u64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| fail("the system clock is before 1970".into()))
}

/// The roots of one home server, fetched from it as needed during one verification.
struct Roots {
    current: IdCert,
    historical: Vec<IdCert>,
}

impl Client {
    /// The home server of `domain` at its default address, `https://<domain>`. Delegation
    /// through `.well-known/polyproto-core` (core §3.1) is not followed; pass the delegated
    /// host's URL to [`Client::new`] instead.
    pub fn home_server(domain: &DomainName) -> Result<Client> {
        Client::new(&format!("https://{domain}"))
    }

    /// The actor's certificates, each checked against its home server (this client's server).
    pub async fn verified_actor_certs(&self, fid: &FederationId) -> Result<Vec<VerifiedCert>> {
        let now = unix_now()?;
        let mut roots = self.roots(fid.domain()).await?;
        let listed = self.actor_certs(fid, Default::default()).await?;
        self.verify_listed(fid, &mut roots, listed, now).await
    }

    /// The actor's certificates as the server where the conversation happens relays them,
    /// checked against the roots of this client's server, the actor's home server (core
    /// §6.4: ask the conversation server first, the home server as fallback). When the
    /// conversation server does not answer, lists nothing, or any of its entries fails a
    /// check, the home server's own list is verified and returned instead. A relay may lag
    /// behind by up to one cache window, so a certificate issued since may be missing from
    /// its list: look a missing serial up with [`Client::verified_actor_certs`].
    pub async fn verified_actor_certs_via(
        &self,
        conversation: &Client,
        fid: &FederationId,
    ) -> Result<ActorCerts> {
        let now = unix_now()?;
        let mut roots = self.roots(fid.domain()).await?;
        let relayed = async {
            let listed = conversation.actor_certs(fid, Default::default()).await?;
            if listed.is_empty() {
                // An empty list proves nothing: a relay may simply not know the actor.
                return Err(fail(format!(
                    "the conversation server lists no certificate of {fid}"
                )));
            }
            self.verify_listed(fid, &mut roots, listed, now).await
        }
        .await;
        let why = match relayed {
            Ok(certs) => {
                return Ok(ActorCerts {
                    certs,
                    source: CertSource::Conversation,
                });
            }
            Err(why) => why,
        };
        let listed = self.actor_certs(fid, Default::default()).await?;
        Ok(ActorCerts {
            certs: self.verify_listed(fid, &mut roots, listed, now).await?,
            source: CertSource::HomeFallback(why),
        })
    }

    /// This server's current root, checked to be a root of `domain`.
    async fn roots(&self, domain: &DomainName) -> Result<Roots> {
        let current = self.server_cert(None).await?;
        let current = check_root(&current, domain, None)
            .map_err(|why| fail(format!("current server certificate {why}")))?;
        Ok(Roots {
            current,
            historical: Vec::new(),
        })
    }

    /// Verifies every entry of `listed` (from whichever server) against `roots`, which come
    /// from this client's server.
    async fn verify_listed(
        &self,
        fid: &FederationId,
        roots: &mut Roots,
        listed: Vec<CacheableIdCert>,
        now: u64,
    ) -> Result<Vec<VerifiedCert>> {
        let mut verified = Vec::with_capacity(listed.len());
        for cacheable in listed {
            verified.push(self.verify_actor_cert(fid, roots, cacheable, now).await?);
        }
        Ok(verified)
    }

    async fn verify_actor_cert(
        &self,
        fid: &FederationId,
        roots: &mut Roots,
        cacheable: CacheableIdCert,
        now: u64,
    ) -> Result<VerifiedCert> {
        let parsed = IdCert::parse(cacheable.id_cert_pem.as_bytes())
            .map_err(|e| fail(format!("an actor certificate of {fid} does not parse: {e}")))?;
        let root = self.issuer_of(&parsed, roots, fid.domain()).await?;
        let cert = check_actor_entry(&cacheable, fid, &root, &roots.current.key).map_err(fail)?;
        let serial = cert.serial;
        if !cacheable.window_contains(now) {
            return Err(fail(format!(
                "certificate {serial}: cache window {}..{} does not include now ({now})",
                cacheable.not_valid_before, cacheable.not_valid_after
            )));
        }
        Ok(VerifiedCert {
            expired: now > cert.not_after,
            revoked_at: cacheable.invalidated_at,
            cert,
            cacheable,
        })
    }

    /// The server root that signed `cert`: the current one, or the one valid at its issuance.
    async fn issuer_of(
        &self,
        cert: &IdCert,
        roots: &mut Roots,
        domain: &DomainName,
    ) -> Result<IdCert> {
        let signed_by = |root: &&IdCert| cert.verify_signature(&root.key).is_ok();
        if let Some(root) = std::iter::once(&roots.current)
            .chain(roots.historical.iter())
            .find(signed_by)
        {
            return Ok(root.clone());
        }
        let at = cert.not_before;
        let old = self.server_cert(Some(at)).await?;
        let root = check_root(&old, domain, Some(&roots.current.key))
            .map_err(|why| fail(format!("server certificate valid at {at} {why}")))?;
        if !signed_by(&&root) {
            return Err(fail(format!(
                "certificate {}: signed by neither the current server key nor the one valid at {at}",
                cert.serial
            )));
        }
        roots.historical.push(root.clone());
        Ok(root)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::IdentityKey;
    use fugue_proto::cache::signing_input;
    use fugue_proto::certs::issue::{Window, actor_tbs, cert_pem, finish_cert, server_tbs};
    use fugue_proto::{Serial, SessionId};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn cacheable(pem: String, serial: u64, signer: &IdentityKey, now: u64) -> CacheableIdCert {
        let (nb, na) = (now - 60, now + 60);
        let input = signing_input(Serial(serial), nb, na, None);
        let signature = signer
            .sign(input.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        CacheableIdCert {
            id_cert_pem: pem,
            not_valid_before: nb,
            not_valid_after: na,
            signature,
            invalidated_at: None,
        }
    }

    fn root(key: &IdentityKey, serial: u64, window: Window) -> String {
        let domain = "example.com".parse().unwrap();
        let tbs = server_tbs(Serial(serial), &domain, &key.verifying_key(), window).unwrap();
        cert_pem(&finish_cert(tbs, |b| key.sign(b)).unwrap()).unwrap()
    }

    fn actor(issuer: &IdentityKey, serial: u64, session: &str, window: Window) -> String {
        let fid = "alice@example.com".parse().unwrap();
        let session: SessionId = session.parse().unwrap();
        let key = IdentityKey::generate().verifying_key();
        let tbs = actor_tbs(Serial(serial), &fid, &session, &key, window).unwrap();
        cert_pem(&finish_cert(tbs, |b| issuer.sign(b)).unwrap()).unwrap()
    }

    /// Answers each request with the body of the first route whose prefix matches.
    async fn serve(routes: Vec<(&'static str, String)>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = vec![0; 8192];
                let n = stream.read(&mut buf).await.unwrap();
                let head = String::from_utf8_lossy(&buf[..n]);
                let target = head.split(' ').nth(1).unwrap_or_default();
                let body = routes
                    .iter()
                    .find(|(p, _)| target.starts_with(p))
                    .map(|r| &r.1);
                let body = body.cloned().unwrap_or_default();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn certs_chain_to_current_and_historical_roots_and_forged_caches_fail() {
        let now = unix_now().unwrap();
        let (old_key, new_key) = (IdentityKey::generate(), IdentityKey::generate());
        let old_window = Window {
            not_before: now - 1000,
            not_after: now + 1000,
        };
        let new_window = Window {
            not_before: now - 500,
            not_after: now + 5000,
        };
        let old_root = cacheable(root(&old_key, 10, old_window), 10, &old_key, now);
        let new_root = cacheable(root(&new_key, 11, new_window), 11, &new_key, now);
        let expired = Window {
            not_before: now - 900,
            not_after: now - 800,
        };
        let by_old = cacheable(actor(&old_key, 20, "old", expired), 20, &new_key, now);
        let by_new = actor(
            &new_key,
            21,
            "new",
            Window {
                not_before: now - 10,
                not_after: now + 10,
            },
        );

        let routes = |actor_list: Vec<CacheableIdCert>| {
            vec![
                (
                    "/.p2/core/v1/idcert/server?timestamp=",
                    serde_json::to_string(&old_root).unwrap(),
                ),
                (
                    "/.p2/core/v1/idcert/server",
                    serde_json::to_string(&new_root).unwrap(),
                ),
                (
                    "/.p2/core/v1/idcert/actor/",
                    serde_json::to_string(&actor_list).unwrap(),
                ),
            ]
        };
        let fid: FederationId = "alice@example.com".parse().unwrap();

        let good = cacheable(by_new.clone(), 21, &new_key, now);
        let client = Client::new(&serve(routes(vec![by_old.clone(), good])).await).unwrap();
        let verified = client.verified_actor_certs(&fid).await.unwrap();
        assert_eq!(verified.len(), 2);
        assert!(verified[0].expired && !verified[1].expired);
        assert_eq!(verified[1].cert.serial, Serial(21));

        let forged = cacheable(by_new, 21, &old_key, now);
        let client = Client::new(&serve(routes(vec![by_old, forged])).await).unwrap();
        let err = client.verified_actor_certs(&fid).await.unwrap_err();
        assert!(
            err.to_string().contains("certificate 21: cache signature"),
            "{err}"
        );
    }
}
