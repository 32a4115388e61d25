//! Accounts, sessions and sensitive actions (DIGEST §5.2, §5.5, §12; OP-24 to OP-26).
//!
//! Registration and password login (polyproto-auth style), session tokens (random, stored
//! only as SHA-256 hashes, one per ID-Cert), TOTP second factors and the sensitive-action
//! check. Certificates come from [`Identity`]; this module never signs anything itself.

mod accounts;
mod error;
mod keytrials;
mod known;
mod password;
pub mod routes;

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use fugue_proto::api::{list_sessions, login, register};
use fugue_proto::certs::ActorCsr;
use fugue_proto::{FederationId, LocalName, SessionId};
use fugue_store::{ActorRow, NewSession, SessionGuard, SessionRow, Store};

pub use accounts::{AccountState, AccountSummary, generate_password};
pub use error::Error;
pub use keytrials::{ExternOutcome, ProvenKey};

use crate::config::{Config, Registration};
use crate::events::{BusMsg, Events, Publish};
use crate::federation::Federation;
use crate::identity::Identity;
use crate::ids::{ActorId, SessionPk, from_store, to_store};
use crate::principal::{Actor, Session, stored_name};
use crate::ratelimit::FailureLimiter;
use crate::time::UnixTime;

/// Longest password we hash; longer ones are refused instead of burning CPU.
const MAX_PASSWORD: usize = 1024;

/// An authenticated request: the actor, its session and the token it used.
#[derive(Clone)]
pub struct Authed {
    pub actor: Actor,
    pub session: Session,
    pub token: String,
}

impl Authed {
    /// A session of another home server's actor (signed in with a key trial).
    pub fn is_foreign(&self) -> bool {
        self.actor.is_foreign()
    }
}

impl std::fmt::Debug for Authed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authed")
            .field("fid", &self.actor.fid)
            .field("session", &self.session.id)
            .finish_non_exhaustive()
    }
}

/// The second factor an answer is checked against.
enum Factor<'a> {
    /// The TOTP secret (base32).
    Totp(&'a str),
    Password,
}

/// What a successful login yields.
pub struct LoginOutcome {
    pub fid: FederationId,
    pub session_id: SessionId,
    pub token: String,
    pub cert_pem: Option<String>,
}

#[derive(Clone)]
pub struct Sessions {
    store: Store,
    identity: Identity,
    events: Events,
    federation: Federation,
    config: Arc<Config>,
    /// A hash verified when the local name is unknown, so timing does not reveal accounts.
    dummy_hash: Arc<str>,
    hasher: password::Hasher,
    /// Failed logins per (validated local name, client address block).
    login_failures: Arc<FailureLimiter<(String, IpAddr)>>,
    /// Sessions found active lately (for writes guarded by their session).
    known: Arc<known::Known>,
    /// Told of every certificate revoked (the MLS groups its device is in). Weak: the
    /// observers hold services that hold these sessions, and the server owns them.
    revocations: Arc<std::sync::RwLock<Vec<std::sync::Weak<dyn RevocationObserver>>>>,
}

/// Something that must know when an actor certificate is revoked (after its revocation is
/// stored and announced): a domain that binds other things to certificates.
pub trait RevocationObserver: Send + Sync {
    fn revoked<'a>(&'a self, serial: i64) -> futures_util::future::BoxFuture<'a, ()>;
}

/// SHA-256 of a secret, as stored.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// 256 random bits, base64url.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn random_id() -> i64 {
    i64::try_from(OsRng.next_u64() >> 1).unwrap_or(1)
}

fn totp(secret_b32: &str, account: &str) -> Option<totp_rs::Totp> {
    let secret = totp_rs::Secret::try_from_base32(secret_b32).ok()?;
    totp_rs::Builder::new()
        .with_secret(secret)
        .with_account_name(account)
        .with_issuer(Some("Fugue"))
        .build()
        .ok()
}

/// Creates an invite code for `max_uses` registrations; returns the code (stored hashed).
pub async fn create_invite(
    store: &Store,
    max_uses: u32,
    expires_at: Option<u64>,
    now: u64,
) -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    let code = hex::encode(bytes);
    let exp = expires_at.map(to_store);
    store
        .insert_invite(
            &hash_secret(&code),
            to_store(now),
            exp,
            i64::from(max_uses.max(1)),
        )
        .await?;
    Ok(code)
}

impl Sessions {
    pub fn new(
        store: Store,
        identity: Identity,
        events: Events,
        federation: Federation,
        config: Arc<Config>,
    ) -> Result<Self, Error> {
        let dummy = password::hash_blocking(&config.password_hashing, "fugue-dummy-password")?;
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let hasher = password::Hasher::start(&config.password_hashing, threads)?;
        let login_failures = Arc::new(FailureLimiter::per_minute(
            config.rate_limits.failed_logins_per_minute,
        ));
        Ok(Self {
            store,
            identity,
            events,
            federation,
            config,
            dummy_hash: dummy.into(),
            hasher,
            login_failures,
            known: Arc::default(),
            revocations: Arc::default(),
        })
    }

    async fn hash_password(&self, password: String) -> Result<String, Error> {
        self.hasher.hash(password).await
    }

    async fn verify_password(&self, password: &str, hash: &str) -> Result<bool, Error> {
        self.hasher
            .verify(password.to_owned(), hash.to_owned())
            .await
    }

    /// The principal of a stored actor. A stored name that does not parse is corrupt data
    /// (500), as in `list`, never the client's mistake.
    fn actor(&self, row: &ActorRow) -> Result<Actor, Error> {
        Actor::from_row(row, self.identity.domain())
            .map_err(|e| fugue_store::Error::Decode(format!("stored actor name: {e}")).into())
    }

    /// The live account behind a principal, read afresh for its secrets (password hash,
    /// TOTP): a deleted or suspended account answers as a token that stopped working.
    async fn account(&self, actor: &Actor) -> Result<ActorRow, Error> {
        self.store
            .actor_by_id(actor.id.to_store())
            .await?
            .filter(|a| a.suspended_at.is_none() && a.deleted_at.is_none())
            .ok_or(Error::InvalidToken)
    }

    /// A new password must be as strong as at registration.
    fn check_new_password(&self, pw: &str) -> Result<(), Error> {
        let min = self.config.limits.password_min;
        // The password doubles as the sensitive-action answer in an HTTP header, where leading
        // and trailing spaces are stripped and control characters are not allowed.
        let header_safe = pw.trim() == pw && !pw.chars().any(char::is_control);
        if pw.chars().count() < min || pw.len() > MAX_PASSWORD || !header_safe {
            return Err(Error::WeakPassword { min });
        }
        Ok(())
    }

    /// `POST /.p2/auth/v1/register`.
    pub async fn register(&self, req: register::Request, now: u64) -> Result<FederationId, Error> {
        let cfg = &self.config;
        if cfg.registration == Registration::Closed {
            return Err(Error::RegistrationClosed);
        }
        let local = LocalName::parse_with_max(&req.local_name, cfg.limits.local_name_max)
            .map_err(|e| Error::InvalidLocalName(e.to_string()))?;
        self.check_new_password(&req.password)?;
        if let Some(url) = &cfg.tos_url
            && req.tos_consent != Some(true)
        {
            return Err(Error::TosConsentRequired(url.clone()));
        }
        let invite_hash = match (cfg.registration, req.invite.as_deref()) {
            (Registration::Invite, None) => return Err(Error::InviteRequired),
            (Registration::Invite, Some(code)) => Some(hash_secret(code.trim())),
            _ => None,
        };
        if self.store.actor_by_name(local.as_str()).await?.is_some() {
            return Err(Error::LocalNameTaken);
        }
        // Check the invite before the costly hash; it is consumed atomically on insert.
        if let Some(hash) = &invite_hash
            && !self.store.invite_usable(hash, to_store(now)).await?
        {
            return Err(Error::InvalidInvite);
        }
        let actor = ActorRow {
            id: random_id(),
            local_name: local.to_string(),
            password_hash: self.hash_password(req.password).await?,
            totp_secret: None,
            totp_pending: None,
            is_admin: false,
            created_at: to_store(now),
            suspended_at: None,
            deleted_at: None,
        };
        match self
            .store
            .insert_actor(&actor, invite_hash.as_deref(), to_store(now))
            .await
        {
            Ok(()) => Ok(FederationId::new(local, self.identity.domain().clone())),
            Err(fugue_store::Error::Unique(_)) => Err(Error::LocalNameTaken),
            Err(fugue_store::Error::Conflict(fugue_store::Conflict::InviteUnusable)) => {
                Err(Error::InvalidInvite)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `POST /.p2/auth/v1/login` from `client`: password (+TOTP), then an ID-Cert for the
    /// CSR if given.
    ///
    /// Failed attempts are limited per validated local name and client address block, and
    /// only failures count: a stranger's wrong guesses from elsewhere never refuse the
    /// person's own login, and an invalid name (up to the whole body long) is never a key.
    pub async fn login(
        &self,
        req: login::Request,
        client: IpAddr,
        now: u64,
    ) -> Result<LoginOutcome, Error> {
        let local =
            LocalName::parse_with_max(&req.local_name, fugue_proto::ids::MAX_FOREIGN_LOCAL_NAME)
                .ok();
        let failure_key = local
            .as_ref()
            .map(|l| (l.as_str().to_owned(), crate::http::rate_key(client)));
        if let Some(key) = &failure_key {
            self.login_failures
                .begin(key.clone())
                .map_err(Error::TooManyFailedLogins)?;
        }
        let checked = self.check_credentials(local.as_ref(), &req, now).await;
        // Counted as a failure in advance; anything but wrong credentials takes it back.
        if let Some(key) = &failure_key
            && !matches!(checked, Err(Error::InvalidCredentials))
        {
            self.login_failures.forgive(key);
        }
        let actor = checked?;
        let fid = self.actor(&actor)?.fid;
        let actor_id = ActorId::from_store(actor.id);
        let requested: Option<SessionId> = req
            .session_id
            .as_deref()
            .map(|s| {
                s.parse()
                    .map_err(|e: fugue_proto::ids::IdError| Error::InvalidSessionId(e.to_string()))
            })
            .transpose()?;

        let (session_id, issued) = match req.csr.as_deref() {
            Some(pem) => {
                let csr = ActorCsr::parse(pem.as_bytes())?;
                let session_id = csr.check_claims(&fid)?;
                if requested.as_ref().is_some_and(|r| *r != session_id) {
                    return Err(Error::InvalidSessionId(
                        "sessionId differs from the CSR's session ID".into(),
                    ));
                }
                let issued =
                    self.identity
                        .issue_actor_cert(actor_id, &fid, &session_id, &csr.key, now)?;
                (session_id, Some(issued))
            }
            None => {
                let sid = match requested {
                    Some(s) => s,
                    None => hex::encode(OsRng.next_u64().to_be_bytes())
                        .parse()
                        .map_err(|e: fugue_proto::ids::IdError| {
                            Error::InvalidSessionId(e.to_string())
                        })?,
                };
                (sid, None)
            }
        };
        let token = new_token();
        let session = NewSession {
            id: random_id(),
            actor_id: actor.id,
            session_id: session_id.to_string(),
            token_hash: hash_secret(&token),
            created_at: to_store(now),
            cert: issued.as_ref().map(|i| i.row.clone()),
            max_live: i64::try_from(self.config.limits.max_sessions_per_actor).unwrap_or(i64::MAX),
        };
        match self.store.open_session(&session).await {
            Err(fugue_store::Error::Unique(_)) => {
                return Err(Error::SessionIdInUse(session_id.to_string()));
            }
            Err(fugue_store::Error::Conflict(fugue_store::Conflict::TooManySessions)) => {
                return Err(Error::TooManySessions(
                    self.config.limits.max_sessions_per_actor,
                ));
            }
            other => other?,
        }
        tracing::info!(%fid, session = %session_id, "session opened");
        if let Some(i) = &issued {
            self.announce_new_session(actor_id, SessionPk::from_store(session.id), &i.row.cert_pem)
                .await?;
        }
        Ok(LoginOutcome {
            fid,
            session_id,
            token,
            cert_pem: issued.map(|i| i.row.cert_pem),
        })
    }

    /// The actor whose password (and TOTP code, once enrolled) `req` carries. Unknown and
    /// deleted accounts cost the same hash as real ones, so timing does not reveal them.
    async fn check_credentials(
        &self,
        local: Option<&LocalName>,
        req: &login::Request,
        now: u64,
    ) -> Result<ActorRow, Error> {
        let actor = match local {
            Some(local) => self
                .store
                .actor_by_name(local.as_str())
                .await?
                .filter(|a| a.deleted_at.is_none()),
            None => None,
        };
        let hash = actor
            .as_ref()
            .map_or_else(|| self.dummy_hash.to_string(), |a| a.password_hash.clone());
        let password_ok = req.password.len() <= MAX_PASSWORD
            && self.verify_password(&req.password, &hash).await?;
        let actor = match actor {
            Some(a) if password_ok => a,
            _ => return Err(Error::InvalidCredentials),
        };
        if actor.suspended_at.is_some() {
            return Err(Error::AccountSuspended);
        }
        if let Some(secret) = &actor.totp_secret {
            let code = req.totp.as_deref().ok_or(Error::TotpRequired)?;
            // Under the same per-actor lockout as sensitive actions: the password alone must
            // not buy unlimited guesses at the code.
            if !self
                .second_factor(&actor, Factor::Totp(secret), code, now)
                .await?
            {
                return Err(Error::InvalidCredentials);
            }
        }
        Ok(actor)
    }

    /// Forgets failed-login records that have run out; called by the server's sweeper.
    pub fn sweep_login_failures(&self) {
        self.login_failures.shrink();
    }

    /// How many (name, address) pairs have failed logins on record.
    pub fn login_failure_keys(&self) -> usize {
        self.login_failures.len()
    }

    /// Resolves a bearer token to its session.
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Authed, Error> {
        let token = checked_token(token)?;
        self.authenticate_hashed(token, &hash_secret(token)).await
    }

    /// The session of a bearer token for a write that stores only while the session holds:
    /// as this node found it lately without reading it again, else as it is now; with the
    /// [`SessionGuard`] the write must be made under. A write refused under it asks
    /// [`Self::reread`], which forgets a session that ended.
    pub async fn presumed(&self, token: Option<&str>) -> Result<(Authed, SessionGuard), Error> {
        let token = checked_token(token)?;
        let hash = hash_secret(token);
        let now = self.config.clock.now();
        match self.known.get(&hash) {
            // A session past its end is read again (a foreign one is checked at home).
            Some(a) if session_ends(&a.session) >= now => {
                let guard = known::guard(&a, hash);
                Ok((a, guard))
            }
            _ => self.reread(token).await,
        }
    }

    /// The session of a bearer token read as it is now, with the guard for a write made as
    /// it, and remembered so: for a write refused under its guard, or a session not known.
    pub async fn reread(&self, token: &str) -> Result<(Authed, SessionGuard), Error> {
        let hash = hash_secret(token);
        match self.authenticate_hashed(token, &hash).await {
            Ok(authed) => {
                self.known.remember(hash.clone(), &authed);
                let guard = known::guard(&authed, hash);
                Ok((authed, guard))
            }
            Err(e) => {
                self.known.forget(&hash);
                Err(e)
            }
        }
    }

    async fn authenticate_hashed(&self, token: &str, hash: &[u8]) -> Result<Authed, Error> {
        let (session, row) = self
            .store
            .session_with_actor(hash)
            .await?
            .filter(|(_, a)| a.suspended_at.is_none() && a.deleted_at.is_none())
            .ok_or(Error::InvalidToken)?;
        let actor = self.actor(&row)?;
        let session = Session::from_row(&session);
        // A session's token lives as long as its certificate; a session that never got one
        // must get it within `CERTLESS_SESSION_S`. A foreign session lives as long as the
        // window its home server signed; then it is checked there again.
        let now = self.config.clock.now();
        let ends = session_ends(&session);
        if ends < now {
            if actor.is_local() {
                return Err(Error::InvalidToken);
            }
            // Boxed: the check asks another server, and its large future would otherwise be
            // part of every request's and every gateway connection's future.
            Box::pin(self.recheck_foreign(&actor, session.pk, ends, now)).await?;
        }
        Ok(Authed {
            actor,
            session,
            token: token.to_owned(),
        })
    }

    /// Checks the second factor of a sensitive action (OP-26): the TOTP code once the actor
    /// enrolled TOTP, the password before. Wrong answers are counted per actor; beyond the
    /// configured number within the window every attempt is refused with 429.
    pub async fn check_sensitive(
        &self,
        actor: &Actor,
        solution: Option<&str>,
        now: u64,
    ) -> Result<(), Error> {
        let account = self.account(actor).await?;
        self.check_sensitive_account(&account, solution, now).await
    }

    /// [`Sessions::check_sensitive`] for an account already read.
    async fn check_sensitive_account(
        &self,
        actor: &ActorRow,
        solution: Option<&str>,
        now: u64,
    ) -> Result<(), Error> {
        let Some(solution) = solution else {
            // Say "locked" rather than "answer needed" when an answer could not help anyway.
            self.ensure_not_locked(actor, now).await?;
            return Err(Error::SolutionRequired);
        };
        let factor = match &actor.totp_secret {
            Some(secret) => Factor::Totp(secret),
            None => Factor::Password,
        };
        if !self.second_factor(actor, factor, solution, now).await? {
            return Err(Error::SolutionInvalid);
        }
        Ok(())
    }

    /// `TooManyFailedSolutions` while the actor is locked out.
    async fn ensure_not_locked(&self, actor: &ActorRow, now: u64) -> Result<(), Error> {
        let rl = &self.config.rate_limits;
        let since = now.saturating_sub(rl.failure_window_s);
        let (failures, oldest) = self
            .store
            .sensitive_failures_since(actor.id, to_store(since))
            .await?;
        if failures >= i64::from(rl.max_failed_solutions) {
            let free_at = oldest.map_or(now, |o| from_store(o) + rl.failure_window_s);
            return Err(Error::TooManyFailedSolutions(
                free_at.saturating_sub(now).max(1),
            ));
        }
        Ok(())
    }

    /// Checks one answer to a second factor under the per-actor lockout: the attempt is
    /// recorded as a failure before it is checked (so parallel guesses cannot all slip under
    /// the limit) and taken back when it was right.
    async fn second_factor(
        &self,
        actor: &ActorRow,
        factor: Factor<'_>,
        answer: &str,
        now: u64,
    ) -> Result<bool, Error> {
        let rl = &self.config.rate_limits;
        let since = now.saturating_sub(rl.failure_window_s);
        let attempt = random_id();
        let max = i64::from(rl.max_failed_solutions);
        if !self
            .store
            .begin_sensitive_attempt(actor.id, attempt, to_store(now), to_store(since), max)
            .await?
        {
            self.ensure_not_locked(actor, now).await?;
            // The window moved on between the two queries: the caller may simply retry.
            return Err(Error::TooManyFailedSolutions(1));
        }
        let ok = match factor {
            Factor::Totp(secret) => {
                self.accept_totp(actor.id, secret, &actor.local_name, answer, now)
                    .await?
            }
            Factor::Password => {
                answer.len() <= MAX_PASSWORD
                    && self.verify_password(answer, &actor.password_hash).await?
            }
        };
        if ok {
            self.store
                .forgive_sensitive_attempt(actor.id, attempt)
                .await?;
        }
        Ok(ok)
    }

    /// `POST /.p2/core/v1/idcert`: a new ID-Cert for the current session. The first one of a
    /// session needs no second factor and keeps the token; later ones are sensitive, revoke
    /// the previous cert and rotate the token (OP-24, OP-25). Returns (PEM, token).
    pub async fn new_cert(
        &self,
        authed: &Authed,
        csr: &[u8],
        solution: Option<&str>,
        now: u64,
    ) -> Result<(String, String), Error> {
        // Input first: a bad CSR must not spend a TOTP code or count as a guess.
        let csr = ActorCsr::parse(csr)?;
        let session_id = csr.check_claims(&authed.actor.fid)?;
        if session_id.as_str() != authed.session.id {
            return Err(Error::InvalidSessionId(format!(
                "the CSR names session {session_id}, but this is session {}",
                authed.session.id
            )));
        }
        let first = authed.session.cert_serial.is_none();
        if !first {
            self.check_sensitive(&authed.actor, solution, now).await?;
        }
        let issued = self.identity.issue_actor_cert(
            authed.actor.id,
            &authed.actor.fid,
            &session_id,
            &csr.key,
            now,
        )?;
        let token = if first {
            authed.token.clone()
        } else {
            new_token()
        };
        let token_hash = (!first).then(|| hash_secret(&token));
        let old_serial = authed.session.cert_serial.map(|s| to_store(s.0));
        match self
            .store
            .replace_session_cert(
                authed.session.pk.to_store(),
                old_serial,
                &issued.row,
                token_hash.as_deref(),
                to_store(now),
            )
            .await
        {
            Err(fugue_store::Error::Conflict(fugue_store::Conflict::SessionChanged)) => {
                return Err(Error::ConcurrentChange);
            }
            other => other?,
        }
        match old_serial {
            None => {
                self.announce_new_session(authed.actor.id, authed.session.pk, &issued.row.cert_pem)
                    .await?;
            }
            Some(old) => self.announce_revocation(old, None).await?,
        }
        Ok((issued.row.cert_pem, token))
    }

    /// `DELETE /.p2/core/v1/session`: revokes a session (default: the current one) and its cert.
    pub async fn revoke(
        &self,
        authed: &Authed,
        session_id: Option<&str>,
        solution: Option<&str>,
        now: u64,
    ) -> Result<(), Error> {
        self.check_sensitive(&authed.actor, solution, now).await?;
        let target = session_id.unwrap_or(&authed.session.id);
        let row = self
            .store
            .sessions_of(authed.actor.id.to_store())
            .await?
            .into_iter()
            .find(|s| s.session_id == target)
            .ok_or_else(|| Error::SessionNotFound(target.to_owned()))?;
        if !self.end_session(&row, now, None).await? {
            return Err(Error::SessionNotFound(target.to_owned()));
        }
        tracing::info!(fid = %authed.actor.fid, session = %target, "session revoked");
        Ok(())
    }

    /// Ends an active session and revokes its certificate as of `at`: op 4 to the actor's
    /// sessions (with the actor's `signature` when the actor revoked it itself), then its
    /// gateway connections close. False when it had ended already.
    async fn end_session(
        &self,
        row: &SessionRow,
        at: u64,
        signature: Option<String>,
    ) -> Result<bool, Error> {
        if !self
            .store
            .revoke_session(row.actor_id, &row.session_id, to_store(at))
            .await?
        {
            return Ok(false);
        }
        if let Some(serial) = row.cert_serial {
            self.announce_revocation(serial, signature).await?;
        }
        self.events
            .announce(BusMsg::SessionEnded {
                actor_id: ActorId::from_store(row.actor_id),
                session_pk: SessionPk::from_store(row.id),
            })
            .await;
        Ok(true)
    }

    /// Op 4 from an actor (OP-10): it revokes one of its own active certificates, proving
    /// it with that certificate's key. The certificate's session ends with it.
    pub async fn revoke_signed(
        &self,
        authed: &Authed,
        serial: u64,
        invalid_since: u64,
        signature_hex: &str,
    ) -> Result<(), Error> {
        let now = self.config.clock.now();
        let not_found = || Error::CertNotFound(serial);
        let row = self
            .store
            .cert_by_serial(i64::try_from(serial).map_err(|_| not_found())?)
            .await?
            .filter(|c| c.actor_id == authed.actor.id.to_store() && c.revoked_at.is_none())
            .ok_or_else(not_found)?;
        let cert = fugue_proto::certs::IdCert::parse(row.cert_pem.as_bytes())?;
        let input = fugue_proto::gateway::CertInvalidation::signing_input(invalid_since, serial);
        let sig =
            hex::decode(signature_hex).map_err(|_| Error::RevocationSignatureInvalid(serial))?;
        fugue_proto::certs::verify_strict(&cert.key, input.as_bytes(), &sig)
            .map_err(|_| Error::RevocationSignatureInvalid(serial))?;
        let session = self
            .store
            .sessions_of(authed.actor.id.to_store())
            .await?
            .into_iter()
            .find(|s| s.cert_serial == Some(row.serial))
            .ok_or_else(not_found)?;
        if !self
            .end_session(
                &session,
                invalid_since.min(now),
                Some(signature_hex.to_owned()),
            )
            .await?
        {
            return Err(not_found());
        }
        tracing::info!(fid = %authed.actor.fid, serial, "certificate revoked by its actor");
        Ok(())
    }

    /// Whether the session is still live with the token it was authenticated with, and until
    /// when.
    /// A foreign session whose window ended is checked with its home server first.
    pub async fn session_still_valid(&self, authed: &Authed) -> Result<Option<u64>, Error> {
        let now = self.config.clock.now();
        // By the token it was authenticated with: a re-key rotates the token, so a connection
        // that authenticated before it is over.
        let Some(ends) = self
            .store
            .session_by_token(&hash_secret(&authed.token))
            .await?
            .map(|s| Session::from_row(&s))
            .filter(|s| s.pk == authed.session.pk)
            .map(|s| session_ends(&s))
        else {
            return Ok(None);
        };
        if ends >= now {
            return Ok(Some(ends));
        }
        if authed.actor.is_local() {
            return Ok(None);
        }
        // Boxed, as in `authenticate`: gateway connections await this.
        match Box::pin(self.recheck_foreign(&authed.actor, authed.session.pk, ends, now)).await {
            Ok(ends) => Ok(Some(ends)),
            Err(Error::InvalidToken) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Op 3 to the actor's other sessions.
    async fn announce_new_session(
        &self,
        actor_id: ActorId,
        session_pk: SessionPk,
        cert_pem: &str,
    ) -> Result<(), Error> {
        self.events
            .publish(
                Publish::to_actor(
                    actor_id,
                    fugue_proto::gateway::CORE,
                    fugue_proto::gateway::op::NEW_SESSION,
                    fugue_proto::gateway::payload(&fugue_proto::gateway::NewSession {
                        cert: cert_pem.to_owned(),
                    }),
                )
                .except(session_pk),
            )
            .await?;
        Ok(())
    }

    /// Op 4 to every session of the actor: the spec's fields and the revoked certificate's
    /// cache information signed by this server (SDK-COMPAT §7.3 item 6). `signature` is the
    /// actor's own when it revoked the cert itself.
    /// Registers a domain to be told of revoked certificates, for as long as the caller
    /// keeps `observer`.
    pub fn observe_revocations(&self, observer: &Arc<dyn RevocationObserver>) {
        self.revocations
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::downgrade(observer));
    }

    async fn announce_revocation(
        &self,
        serial: i64,
        signature: Option<String>,
    ) -> Result<(), Error> {
        let observers = self
            .revocations
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for o in observers.iter().filter_map(std::sync::Weak::upgrade) {
            o.revoked(serial).await;
        }
        let Some(row) = self.store.cert_by_serial(serial).await? else {
            return Ok(());
        };
        let now = self.config.clock.now();
        let cacheable = self.identity.cacheable_cert(&row, now);
        let inv = fugue_proto::gateway::CertInvalidation {
            serial: from_store(serial),
            invalid_since: cacheable.invalidated_at.unwrap_or(now),
            signature,
            cacheable: Some(cacheable),
        };
        let d = serde_json::to_value(&inv).unwrap_or_default();
        self.events
            .publish(Publish::to_actor(
                ActorId::from_store(row.actor_id),
                fugue_proto::gateway::CORE,
                fugue_proto::gateway::op::CERT_INVALIDATION,
                d,
            ))
            .await?;
        Ok(())
    }

    /// `GET /idcert/actor/{fid}` for an actor of another server that is known here (it signed
    /// in): its home server's entries, unchanged (core §6.4), filtered like our own actors'.
    pub async fn foreign_actor_certs(
        &self,
        fid: &FederationId,
        q: &fugue_proto::api::get_actor_idcerts::Query,
        now: u64,
    ) -> Result<Vec<fugue_proto::cache::CacheableIdCert>, Error> {
        self.ensure_known(fid).await?;
        Ok(self.federation.foreign_actor_certs(fid, q, now).await?)
    }

    /// `ActorNotFound` unless `fid` is an actor stored here (ours, or one that signed in).
    async fn ensure_known(&self, fid: &FederationId) -> Result<(), Error> {
        let stored = stored_name(fid, self.identity.domain());
        if self.store.actor_by_name(&stored).await?.is_none() {
            return Err(Error::ActorNotFound(fid.to_string()));
        }
        Ok(())
    }

    /// `GET /.p2/core/v1/sessions`.
    pub async fn list(&self, authed: &Authed) -> Result<Vec<list_sessions::Session>, Error> {
        let rows = self.store.sessions_of(authed.actor.id.to_store()).await?;
        // Session IDs were validated on the way in: one that does not parse is corrupt data,
        // answered as such (like a stored service that does not parse), not left out.
        rows.iter()
            .map(Session::from_row)
            .map(|s| {
                Ok(list_sessions::Session {
                    session_id: s.id.parse().map_err(|_| {
                        fugue_store::Error::Decode(format!("stored session ID {:?}", s.id))
                    })?,
                    serial: s.cert_serial,
                    created_at: s.created_at.secs(),
                    cert_not_after: s.cert_not_after.map(UnixTime::secs),
                    current: s.pk == authed.session.pk,
                })
            })
            .collect()
    }

    /// Checks a TOTP code and spends its time step: a code, or an older one, is accepted
    /// only once (RFC 6238 §5.2), so an observed code cannot be replayed.
    async fn accept_totp(
        &self,
        actor_id: i64,
        secret: &str,
        account: &str,
        code: &str,
        now: u64,
    ) -> Result<bool, Error> {
        match totp_step(secret, account, code, now) {
            Some(step) => Ok(self.store.spend_totp_step(actor_id, to_store(step)).await?),
            None => Ok(false),
        }
    }

    /// Starts TOTP enrolment; returns (base32 secret, otpauth URL).
    pub async fn totp_enroll(
        &self,
        authed: &Authed,
        solution: Option<&str>,
        now: u64,
    ) -> Result<(String, String), Error> {
        let account = self.account(&authed.actor).await?;
        self.check_sensitive_account(&account, solution, now)
            .await?;
        if account.totp_secret.is_some() {
            return Err(Error::TotpAlreadyEnrolled);
        }
        let mut bytes = [0u8; 20];
        OsRng.fill_bytes(&mut bytes);
        let secret = totp_rs::Secret::from(bytes.to_vec()).to_base32();
        let url = totp(&secret, &authed.actor.fid.to_string())
            .and_then(|t| t.to_url().ok())
            .unwrap_or_default();
        self.store.set_totp_pending(account.id, &secret).await?;
        Ok((secret, url))
    }

    /// Confirms TOTP enrolment with a first code; from then on TOTP is the second factor.
    pub async fn totp_confirm(&self, authed: &Authed, code: &str, now: u64) -> Result<(), Error> {
        let account = self.account(&authed.actor).await?;
        let pending = account
            .totp_pending
            .as_deref()
            .ok_or(Error::TotpNotPending)?;
        if !self
            .accept_totp(account.id, pending, &account.local_name, code, now)
            .await?
        {
            return Err(Error::SolutionInvalid);
        }
        if !self.store.activate_totp(account.id, pending).await? {
            return Err(Error::TotpNotPending);
        }
        Ok(())
    }
}

/// A bearer token of a plausible length.
fn checked_token(token: Option<&str>) -> Result<&str, Error> {
    let token = token.ok_or(Error::Unauthenticated)?;
    if token.is_empty() || token.len() > 512 {
        return Err(Error::InvalidToken);
    }
    Ok(token)
}

/// When the session's certificate (a foreign session's verified window, or the grace for
/// getting a first certificate) runs out.
fn session_ends(session: &Session) -> u64 {
    session
        .cert_not_after
        .unwrap_or(
            session
                .created_at
                .plus(from_store(fugue_store::CERTLESS_SESSION_S)),
        )
        .secs()
}

/// The time step (RFC 6238, 30 s) whose code `code` is, within ±1 step of `now`.
fn totp_step(secret: &str, account: &str, code: &str, now: u64) -> Option<u64> {
    let t = totp(secret, account)?;
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Compare against the codes of the adjacent steps in constant time.
    [now.saturating_sub(30), now, now + 30]
        .into_iter()
        .find(|&at| bool::from(t.generate(at).to_string().as_bytes().ct_eq(code.as_bytes())))
        .map(|at| at / 30)
}
