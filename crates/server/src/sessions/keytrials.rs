//! Key trials (DIGEST §5.4, OP-20 to OP-22) and sessions of actors of other home servers:
//! signing in with a completed trial (core §4.1.1), certificate updates (OP-39), and the
//! public record of completed trials.

use rand_core::{OsRng, RngCore};

use fugue_proto::FederationId;
use fugue_proto::api::{TrialCompletion, key_trial, keytrials, sign_in};
use fugue_proto::cache::MAX_WINDOW_S;
use fugue_proto::certs::{IdCert, verify_strict};
use fugue_store::{KeyTrialQuery, KeyTrialRow, NewForeignSession, TrialRef};

use super::{Authed, Error, Sessions, hash_secret, new_token, random_id};
use crate::events::BusMsg;
use crate::ids::{ActorId, SessionPk, from_store, to_store};
use crate::principal::{Actor, stored_name};

/// Most keys one `X-P2-core-keytrial` header proves.
const MAX_PROOFS: usize = 64;

/// A key the caller proved with a completed key trial.
#[derive(Debug, Clone)]
pub struct ProvenKey {
    pub serial: u64,
    pub cert: IdCert,
}

/// Random characters of a key trial (32–256 characters allowed, ≥ 64 recommended).
const TRIAL_RANDOM: usize = 64;
const MIN_TRIAL_RANDOM: usize = 32;
const MAX_TRIAL: usize = 256;
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `<domain>.<random>`: the trial names the server that issued it, so a client can refuse to
/// sign another server's trial that a server it signs in to relays (see `docs/decisions.md`).
/// The random part is 64 mixed alphanumerics (fewer for very long domains, never under 32)
/// with at least one lower, one upper case letter and one digit.
fn trial_text(domain: &str) -> String {
    let len = MAX_TRIAL
        .saturating_sub(domain.len() + 1)
        .clamp(MIN_TRIAL_RANDOM, TRIAL_RANDOM);
    loop {
        let t: String = (0..len)
            .map(|_| ALNUM[(OsRng.next_u32() % ALNUM.len() as u32) as usize] as char)
            .collect();
        if t.bytes().any(|b| b.is_ascii_lowercase())
            && t.bytes().any(|b| b.is_ascii_uppercase())
            && t.bytes().any(|b| b.is_ascii_digit())
        {
            return format!("{domain}.{t}");
        }
    }
}

/// What `PUT /session/idcert/extern` did.
#[derive(Debug, PartialEq, Eq)]
pub enum ExternOutcome {
    /// The session now uses this certificate.
    Updated,
    /// The home server says the certificate is revoked: the session is over.
    Ended,
}

impl Sessions {
    /// `GET /session/auth?fid=`: a single-use key trial for an actor of another server.
    pub async fn key_trial(&self, fid: &str, now: u64) -> Result<key_trial::KeyTrial, Error> {
        let fid = self.federation.foreign_fid(fid)?;
        self.issue_trial(fid.to_string(), None, now).await
    }

    /// A new trial for `fid`: a sign-in trial, or the proof trial of the signed-in
    /// `actor_id`.
    async fn issue_trial(
        &self,
        fid: String,
        actor_id: Option<i64>,
        now: u64,
    ) -> Result<key_trial::KeyTrial, Error> {
        let mut id = [0u8; 16];
        OsRng.fill_bytes(&mut id);
        let row = KeyTrialRow {
            id: hex::encode(id),
            fid,
            trial: trial_text(self.identity.domain().as_str()),
            expires_at: to_store(now + self.config.federation.key_trial_lifetime_s),
            created_at: to_store(now),
            completed_at: None,
            completion: None,
            actor_id,
        };
        self.store.insert_key_trial(&row).await?;
        Ok(key_trial::KeyTrial {
            trial: row.trial,
            expires: from_store(row.expires_at),
            id: Some(row.id),
        })
    }

    /// `GET /session/auth?fid=` by a signed-in actor (local or foreign): a trial for the
    /// actor itself, which it answers with one completion per key it proves on the
    /// migration routes (`X-P2-core-keytrial`), as often as it likes until it expires.
    pub async fn proof_trial(
        &self,
        authed: &Authed,
        fid: &str,
        now: u64,
    ) -> Result<key_trial::KeyTrial, Error> {
        if fid != authed.actor.fid.to_string() {
            return Err(Error::KeyTrialHeader(format!(
                "signed in as {}, you get key trials for yourself only (not {fid})",
                authed.actor.fid
            )));
        }
        self.issue_trial(fid.to_owned(), Some(authed.actor.id.to_store()), now)
            .await
    }

    /// The keys the completions of `header` (`X-P2-core-keytrial`) prove for the caller's
    /// actor: each names a certificate of the actor — in any state, expired and revoked ones
    /// included (migration proves old keys; no cache information is needed, core §6.4.1) —
    /// whose key signed the trial text of the caller's open proof trial. Every completion
    /// must verify; the verified ones become part of the trial's public record.
    pub async fn proven_keys(
        &self,
        authed: &Authed,
        header: Option<&str>,
        now: u64,
    ) -> Result<Vec<ProvenKey>, Error> {
        let header = header.ok_or_else(|| {
            Error::KeyTrialRequired(
                "this route needs completed key trials in X-P2-core-keytrial: get a trial at \
                 GET /session/auth?fid=<you> and sign it with each key"
                    .into(),
            )
        })?;
        let completions: Vec<TrialCompletion> = serde_json::from_str(header).map_err(|e| {
            Error::KeyTrialHeader(format!(
                "X-P2-core-keytrial is a JSON array of {{signature, serialNumber}}: {e}"
            ))
        })?;
        if completions.is_empty() || completions.len() > MAX_PROOFS {
            return Err(Error::KeyTrialHeader(format!(
                "X-P2-core-keytrial holds 1 to {MAX_PROOFS} completions"
            )));
        }
        let named = completions.iter().find_map(|c| c.id.as_deref());
        if completions
            .iter()
            .any(|c| c.id.is_some() && c.id.as_deref() != named)
        {
            return Err(Error::KeyTrialHeader(
                "the completions answer different trials".into(),
            ));
        }
        let actor = &authed.actor;
        let trial = self
            .store
            .proof_trial(actor.id.to_store(), named, to_store(now))
            .await?
            .ok_or(Error::KeyTrialInvalid)?;
        let mut proven: Vec<ProvenKey> = Vec::with_capacity(completions.len());
        for c in &completions {
            let signature =
                hex::decode(&c.signature).map_err(|_| Error::KeyTrialSignature(c.serial_number))?;
            let cert = self.any_cert_of(actor, c.serial_number, now).await?;
            verify_strict(&cert.key, trial.trial.as_bytes(), &signature)
                .map_err(|_| Error::KeyTrialSignature(c.serial_number))?;
            if !proven.iter().any(|p| p.serial == c.serial_number) {
                proven.push(ProvenKey {
                    serial: c.serial_number,
                    cert,
                });
            }
        }
        let record: Vec<(i64, String)> = completions
            .iter()
            .map(|c| (to_store(c.serial_number), c.signature.to_ascii_lowercase()))
            .collect();
        self.store
            .record_proof_completions(&trial.id, &record, to_store(now))
            .await?;
        Ok(proven)
    }

    /// Certificate `serial` of `actor`, whatever its state: ours for a local actor; for a
    /// foreign one the certificate it signed messages here with (checked when they
    /// arrived), or else one its home server lists.
    async fn any_cert_of(&self, actor: &Actor, serial: u64, now: u64) -> Result<IdCert, Error> {
        let not_its = || Error::KeyTrialSignature(serial);
        let pem = if actor.is_local() {
            self.store
                .cert_by_serial(to_store(serial))
                .await?
                .filter(|c| c.actor_id == actor.id.to_store())
                .map(|c| c.cert_pem)
        } else {
            self.store
                .signing_cert(actor.id.to_store(), to_store(serial))
                .await?
        };
        let cert = match pem {
            Some(pem) => IdCert::parse(pem.as_bytes()).map_err(|_| not_its())?,
            None if actor.is_local() => return Err(not_its()),
            None => self
                .federation
                .fetch_certs(&actor.fid, now)
                .await?
                .into_iter()
                .find(|c| c.cert.serial.0 == serial)
                .map(|c| c.cert)
                .ok_or_else(not_its)?,
        };
        if cert.fid().as_ref() != Some(&actor.fid) {
            return Err(not_its());
        }
        Ok(cert)
    }

    /// `POST /session/auth`: spends the trial, fetches and checks the certificate at the
    /// actor's home server, verifies the trial signature, and opens a session for the
    /// foreign actor. Returns its token.
    pub async fn sign_in(&self, c: sign_in::KeyTrialCompleted, now: u64) -> Result<String, Error> {
        let fid = self.federation.foreign_fid(&c.fid)?;
        let signature =
            hex::decode(&c.signature).map_err(|_| Error::KeyTrialSignature(c.serial_number))?;
        let completion = serde_json::to_string(&keytrials::Completion {
            signature: c.signature.clone(),
            serial_number: c.serial_number,
        })
        .unwrap_or_default();
        // The completion names its trial: otherwise anyone could spend an actor's open trial
        // with a bogus answer before the actor's own arrives.
        let which = match (c.id.as_deref(), c.trial.as_deref()) {
            (Some(id), trial) => TrialRef::Id { id, trial },
            (None, Some(trial)) => TrialRef::Text(trial),
            (None, None) => return Err(Error::KeyTrialUnnamed),
        };
        // Spent before anything else happens: a trial is answered once, right or wrong. Only
        // trials minted here are found.
        let trial = self
            .store
            .claim_key_trial(&fid.to_string(), which, to_store(now))
            .await?
            .ok_or(Error::KeyTrialInvalid)?;
        let foreign = self
            .federation
            .verified_cert(&fid, c.serial_number, now, false)
            .await?;
        verify_strict(&foreign.cert.key, trial.trial.as_bytes(), &signature)
            .map_err(|_| Error::KeyTrialSignature(c.serial_number))?;
        // Only an answer that verified becomes part of the public record (§5.3).
        self.store
            .record_key_trial_completion(&trial.id, &completion)
            .await?;
        let session_id = foreign
            .cert
            .session_id()
            .ok_or_else(|| Error::InvalidSessionId("the certificate names no session".into()))?;
        let actor = self
            .store
            .foreign_actor(
                &stored_name(&fid, self.identity.domain()),
                random_id(),
                to_store(now),
            )
            .await?;
        let actor_id = ActorId::from_store(actor.id);
        let token = new_token();
        let replaced = self
            .store
            .open_foreign_session(&NewForeignSession {
                id: random_id(),
                actor_id: actor.id,
                session_id: session_id.as_str().to_owned(),
                token_hash: hash_secret(&token),
                serial: to_store(foreign.cert.serial.0),
                // Until the signed window ends: then the home server is asked again.
                expires_at: to_store(foreign.until),
                created_at: to_store(now),
            })
            .await?;
        for session_pk in replaced {
            self.events
                .announce(BusMsg::SessionEnded {
                    actor_id,
                    session_pk: SessionPk::from_store(session_pk),
                })
                .await;
        }
        tracing::info!(%fid, session = %session_id, "foreign actor signed in");
        Ok(token)
    }

    /// `PUT /session/idcert/extern`: the foreign session's certificate changed or was revoked.
    /// Its status is fetched from the home server, never taken from the caller.
    pub async fn update_foreign_cert(
        &self,
        authed: &Authed,
        body: &[u8],
        now: u64,
    ) -> Result<ExternOutcome, Error> {
        if !authed.is_foreign() {
            return Err(Error::NotForeign);
        }
        // The reference SDK sends the PEM as a JSON string literal (SDK-COMPAT §2.1).
        let pem: Vec<u8> = match serde_json::from_slice::<String>(body) {
            Ok(s) => s.into_bytes(),
            Err(_) => body.to_vec(),
        };
        let cert = IdCert::parse(&pem).map_err(|e| Error::NotACert(e.to_string()))?;
        let serial = cert.serial;
        if cert.fid().as_ref() != Some(&authed.actor.fid)
            || cert.session_id().map(|s| s.to_string()) != Some(authed.session.id.clone())
        {
            return Err(Error::ForeignCertMismatch(serial.0));
        }
        match self
            .federation
            .verified_cert(&authed.actor.fid, serial.0, now, true)
            .await
        {
            Ok(home) if home.cert.der == cert.der => {
                self.store
                    .update_foreign_session(
                        authed.session.pk.to_store(),
                        to_store(serial.0),
                        to_store(home.until),
                    )
                    .await?;
                Ok(ExternOutcome::Updated)
            }
            Ok(_) => Err(Error::ForeignCertMismatch(serial.0)),
            Err(crate::federation::Error::Revoked { .. }) => {
                // Only the revocation of the certificate the session uses ends it; an old,
                // long revoked one of the same session changes nothing.
                let current = self
                    .store
                    .foreign_serial(authed.session.pk.to_store())
                    .await?;
                if current != Some(to_store(serial.0)) {
                    return Err(Error::ForeignCertMismatch(serial.0));
                }
                self.end_foreign_session(authed.actor.id, authed.session.pk, now)
                    .await?;
                tracing::info!(fid = %authed.actor.fid, serial = serial.0, "foreign session ended: certificate revoked");
                Ok(ExternOutcome::Ended)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A foreign session whose verified window ended at `ends` (`now` is past it): its home
    /// server is asked again about the session's certificate, so a revocation at home ends
    /// the session here within one window, without the foreign client's help. Returns the
    /// session's new end, or ends it:
    /// - still valid → the session lives until the end of the new window;
    /// - revoked, gone or no longer checking out → the session ends now (announced, so its
    ///   gateway connections close) and the caller gets `InvalidToken`;
    /// - the home server fails to answer → this request fails as that server's failure and
    ///   the session does nothing until a check succeeds; one more window after `ends`
    ///   without a successful check, it ends. An unreachable or hostile home server cannot
    ///   keep a session alive.
    pub(super) async fn recheck_foreign(
        &self,
        actor: &Actor,
        session_pk: SessionPk,
        ends: u64,
        now: u64,
    ) -> Result<u64, Error> {
        use crate::federation::Error as Fed;
        let fid = &actor.fid;
        let Some(serial) = self.store.foreign_serial(session_pk.to_store()).await? else {
            return Err(Error::InvalidToken);
        };
        match self
            .federation
            .verified_cert(fid, from_store(serial), now, true)
            .await
        {
            Ok(home) => {
                let extended = self
                    .store
                    .extend_foreign_session(session_pk.to_store(), serial, to_store(home.until))
                    .await?;
                // Not extended: the session ended, or moved to a newer certificate meanwhile
                // (`PUT /session/idcert/extern`), whose window stands.
                if !extended
                    && self
                        .store
                        .active_session(session_pk.to_store())
                        .await?
                        .is_none()
                {
                    return Err(Error::InvalidToken);
                }
                Ok(home.until)
            }
            Err(e @ (Fed::HomeServer { .. } | Fed::NotAHomeServer { .. })) => {
                if now < ends.saturating_add(MAX_WINDOW_S) {
                    return Err(e.into());
                }
                self.end_foreign_session(actor.id, session_pk, now).await?;
                tracing::info!(%fid, "foreign session ended: its home server could not confirm it");
                Err(Error::InvalidToken)
            }
            Err(e) => {
                self.end_foreign_session(actor.id, session_pk, now).await?;
                tracing::info!(%fid, serial, reason = %e, "foreign session ended at its recheck");
                Err(Error::InvalidToken)
            }
        }
    }

    /// Ends a foreign session and says so, so its gateway connections close.
    async fn end_foreign_session(
        &self,
        actor_id: ActorId,
        session_pk: SessionPk,
        now: u64,
    ) -> Result<(), Error> {
        self.store
            .end_session(session_pk.to_store(), to_store(now))
            .await?;
        self.events
            .announce(BusMsg::SessionEnded {
                actor_id,
                session_pk,
            })
            .await;
        Ok(())
    }

    /// Deletes key trials that expired unanswered (the periodic sweep); completed ones stay
    /// public (core §4.3). Returns how many went.
    pub async fn sweep_key_trials(&self) -> Result<u64, Error> {
        let now = self.config.clock.now();
        Ok(self
            .store
            .delete_unanswered_key_trials(to_store(now))
            .await?)
    }

    /// `GET /keytrial/{fid}`: completed trials of an actor known here, once expired.
    pub async fn public_key_trials(
        &self,
        fid: &str,
        q: &keytrials::Query,
        now: u64,
    ) -> Result<Vec<keytrials::Entry>, Error> {
        let fid: FederationId = fid.parse().map_err(|e: fugue_proto::ids::IdError| {
            crate::federation::Error::InvalidFid(e.to_string())
        })?;
        self.ensure_known(&fid).await?;
        let rows = self
            .store
            .public_key_trials(
                &fid.to_string(),
                &KeyTrialQuery {
                    id: q.id.clone(),
                    not_before: q.not_before.map(to_store),
                    not_after: q.not_after.map(to_store),
                    limit: i64::from(q.limit.unwrap_or(0)),
                },
                to_store(now),
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|p| {
                // A sign-in's single answer, or every key a proof trial proved.
                let completions = match p.trial.completion.as_deref() {
                    Some(one) => vec![serde_json::from_str(one).ok()?],
                    None => p
                        .completions
                        .into_iter()
                        .map(|(serial, signature)| keytrials::Completion {
                            signature,
                            serial_number: from_store(serial),
                        })
                        .collect(),
                };
                Some(keytrials::Entry {
                    key_trial: key_trial::KeyTrial {
                        trial: p.trial.trial,
                        expires: from_store(p.trial.expires_at),
                        id: Some(p.trial.id),
                    },
                    key_trial_completion: completions,
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::trial_text;

    #[test]
    fn trials_name_their_server_and_carry_64_mixed_alphanumerics() {
        let a = trial_text("beta.example");
        let random = a.strip_prefix("beta.example.").unwrap();
        assert_eq!(random.len(), 64);
        assert!(random.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, trial_text("beta.example"));
        // A long domain shortens the random part to stay within 256 characters...
        let long = format!("{}.example", "a".repeat(200));
        assert_eq!(trial_text(&long).len(), 256);
        // ...but never below 32 random characters.
        let longer = format!("{}.example", "a".repeat(240));
        assert_eq!(trial_text(&longer).len(), longer.len() + 33);
    }
}
