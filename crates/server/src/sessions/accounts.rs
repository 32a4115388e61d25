//! Account management: the actor's own sensitive actions (core §4.2) — a new password,
//! TOTP off, deleting the account — and what server administrators do to accounts.
//!
//! Every session that ends here ends through [`Sessions::end_session`], like a revocation
//! by the actor: its certificate is revoked, op 4 goes to the actor's sessions and gateway
//! connections close. A deleted account stays as a tombstone (see
//! [`fugue_store::Store::delete_actor`]): its certificates stay published, revoked, so old
//! messages stay verifiable, and its name can never be registered again.

use fugue_proto::LocalName;
use fugue_proto::api::change_password;
use fugue_proto::ids::MAX_FOREIGN_LOCAL_NAME;
use fugue_store::ActorRow;
use rand_core::{OsRng, RngCore};

use super::{Authed, Error, Sessions};
use crate::ids::{ActorId, SessionPk, from_store, to_store};

/// Where an account stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    Active,
    Suspended,
    Deleted,
}

/// One local account as administrators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    pub local_name: String,
    pub created_at: u64,
    pub is_admin: bool,
    pub state: AccountState,
    pub totp: bool,
    /// Sessions that are live now.
    pub sessions: u64,
}

/// 20 random characters (120 bits) for a password an administrator hands on.
pub fn generate_password() -> String {
    let mut bytes = [0u8; 15];
    OsRng.fill_bytes(&mut bytes);
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

impl Sessions {
    /// `PUT /.p2/auth/v1/password` (sensitive): the old password stops working at once.
    /// With `endSessions`, every other session of the actor ends; this one stays.
    pub async fn change_password(
        &self,
        authed: &Authed,
        req: change_password::Request,
        solution: Option<&str>,
        now: u64,
    ) -> Result<(), Error> {
        // Input first: a weak password must not spend a guess at the second factor.
        self.check_new_password(&req.password)?;
        self.check_sensitive(&authed.actor, solution, now).await?;
        let hash = self.hash_password(req.password).await?;
        if !self
            .store
            .set_password(authed.actor.id.to_store(), &hash)
            .await?
        {
            return Err(Error::InvalidToken);
        }
        let ended = if req.end_sessions {
            self.end_sessions(authed.actor.id, Some(authed.session.pk), now)
                .await?
        } else {
            0
        };
        tracing::info!(fid = %authed.actor.fid, ended, "password changed");
        Ok(())
    }

    /// `DELETE /.p2/auth/v1/totp` (sensitive): login needs the password only from now on.
    pub async fn disable_totp(
        &self,
        authed: &Authed,
        solution: Option<&str>,
        now: u64,
    ) -> Result<(), Error> {
        let account = self.account(&authed.actor).await?;
        // Nothing to turn off: say so before a guess at the second factor is spent.
        if account.totp_secret.is_none() {
            return Err(Error::TotpNotEnabled);
        }
        self.check_sensitive_account(&account, solution, now)
            .await?;
        if !self.store.disable_totp(account.id).await? {
            return Err(Error::TotpNotEnabled);
        }
        tracing::info!(fid = %authed.actor.fid, "TOTP turned off");
        Ok(())
    }

    /// `DELETE /.p2/auth/v1/account` (sensitive).
    pub async fn delete_account(
        &self,
        authed: &Authed,
        solution: Option<&str>,
        now: u64,
    ) -> Result<(), Error> {
        let account = self.account(&authed.actor).await?;
        self.check_sensitive_account(&account, solution, now)
            .await?;
        self.retire(&account, now).await
    }

    /// Tombstones the account first (no login, no token of it works any more), then ends
    /// its sessions one by one so each end is announced.
    async fn retire(&self, actor: &ActorRow, now: u64) -> Result<(), Error> {
        if !self.store.delete_actor(actor.id, to_store(now)).await? {
            return Err(Error::ActorNotFound(actor.local_name.clone()));
        }
        let ended = self
            .end_sessions(ActorId::from_store(actor.id), None, now)
            .await?;
        tracing::warn!(local_name = %actor.local_name, ended, "account deleted");
        Ok(())
    }

    /// Ends every active session of an actor but `keep`; returns how many ended.
    async fn end_sessions(
        &self,
        actor_id: ActorId,
        keep: Option<SessionPk>,
        now: u64,
    ) -> Result<u64, Error> {
        let mut ended = 0;
        for row in self.store.sessions_of(actor_id.to_store()).await? {
            if Some(SessionPk::from_store(row.id)) != keep
                && self.end_session(&row, now, None).await?
            {
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// A live (not deleted) local account by name, in any case.
    async fn local_account(&self, name: &str) -> Result<ActorRow, Error> {
        let local = LocalName::parse_with_max(name, MAX_FOREIGN_LOCAL_NAME)
            .map_err(|e| Error::InvalidLocalName(e.to_string()))?;
        self.store
            .actor_by_name(local.as_str())
            .await?
            .filter(|a| a.deleted_at.is_none())
            .ok_or_else(|| Error::ActorNotFound(local.to_string()))
    }

    /// Administration: every local account, deleted ones included, by name.
    pub async fn accounts(&self, now: u64) -> Result<Vec<AccountSummary>, Error> {
        let rows = self.store.accounts(to_store(now)).await?;
        Ok(rows
            .into_iter()
            .map(|r| AccountSummary {
                state: match (r.deleted_at, r.suspended_at) {
                    (Some(_), _) => AccountState::Deleted,
                    (None, Some(_)) => AccountState::Suspended,
                    (None, None) => AccountState::Active,
                },
                local_name: r.local_name,
                created_at: from_store(r.created_at),
                is_admin: r.is_admin,
                totp: r.totp,
                sessions: from_store(r.sessions),
            })
            .collect())
    }

    /// Administration: the account can no longer log in and its sessions end. Returns how
    /// many sessions ended.
    pub async fn suspend(&self, name: &str, now: u64) -> Result<u64, Error> {
        let actor = self.local_account(name).await?;
        if actor.suspended_at.is_none()
            && !self
                .store
                .set_suspended(actor.id, Some(to_store(now)))
                .await?
        {
            return Err(Error::ActorNotFound(actor.local_name));
        }
        let ended = self
            .end_sessions(ActorId::from_store(actor.id), None, now)
            .await?;
        tracing::warn!(local_name = %actor.local_name, ended, "account suspended");
        Ok(ended)
    }

    /// Administration: makes the account a server administrator, or takes that away.
    /// Returns the account's name as stored.
    pub async fn set_admin(&self, name: &str, admin: bool) -> Result<String, Error> {
        let actor = self.local_account(name).await?;
        if !self.store.set_admin(&actor.local_name, admin).await? {
            return Err(Error::ActorNotFound(actor.local_name));
        }
        tracing::warn!(local_name = %actor.local_name, admin, "administrator role changed");
        Ok(actor.local_name)
    }

    /// Administration: the account can log in again.
    pub async fn unsuspend(&self, name: &str) -> Result<(), Error> {
        let actor = self.local_account(name).await?;
        if !self.store.set_suspended(actor.id, None).await? {
            return Err(Error::ActorNotFound(actor.local_name));
        }
        tracing::warn!(local_name = %actor.local_name, "account reinstated");
        Ok(())
    }

    /// Administration: deletes the account as `DELETE /.p2/auth/v1/account` does.
    pub async fn delete_account_by_name(&self, name: &str, now: u64) -> Result<(), Error> {
        let actor = self.local_account(name).await?;
        self.retire(&actor, now).await
    }

    /// Administration: sets a new password (checked like one chosen at registration) and
    /// ends every session of the account. Returns how many sessions ended.
    pub async fn reset_password(
        &self,
        name: &str,
        password: String,
        now: u64,
    ) -> Result<u64, Error> {
        self.check_new_password(&password)?;
        let actor = self.local_account(name).await?;
        let hash = self.hash_password(password).await?;
        if !self.store.set_password(actor.id, &hash).await? {
            return Err(Error::ActorNotFound(actor.local_name));
        }
        let ended = self
            .end_sessions(ActorId::from_store(actor.id), None, now)
            .await?;
        tracing::warn!(local_name = %actor.local_name, ended, "password reset by an administrator");
        Ok(ended)
    }
}
