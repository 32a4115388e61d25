//! Account management (core §4.2): password changes, turning TOTP off, suspension and
//! deletion.
//!
//! A deleted account keeps its row as a tombstone: its certificates reference it and stay
//! published, and the unique local name stays taken, so the name can never be registered
//! again.

use crate::engine::{Conflict, Error, Result, Row, Stmt};
use crate::{CERTLESS_SESSION_S, Store, params};

/// One local account as administrators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub local_name: String,
    pub created_at: i64,
    pub is_admin: bool,
    pub suspended_at: Option<i64>,
    pub deleted_at: Option<i64>,
    pub totp: bool,
    /// Sessions neither revoked nor run out.
    pub sessions: i64,
}

fn account(r: &Row) -> Result<AccountRow> {
    Ok(AccountRow {
        local_name: r.string(0)?,
        created_at: r.i64(1)?,
        is_admin: r.bool(2)?,
        suspended_at: r.opt_i64(3)?,
        deleted_at: r.opt_i64(4)?,
        totp: r.bool(5)?,
        sessions: r.i64(6)?,
    })
}

impl Store {
    /// Replaces the password hash of a live (not deleted) account.
    pub async fn set_password(&self, actor_id: i64, password_hash: &str) -> Result<bool> {
        let n = self
            .execute(
                "UPDATE actors SET password_hash = $2 WHERE id = $1 AND deleted_at IS NULL",
                params![actor_id, password_hash],
            )
            .await?;
        Ok(n == 1)
    }

    /// Turns TOTP off (and drops a pending enrolment). False when it was not on.
    pub async fn disable_totp(&self, actor_id: i64) -> Result<bool> {
        let n = self
            .execute(
                "UPDATE actors SET totp_secret = NULL, totp_pending = NULL WHERE id = $1 AND totp_secret IS NOT NULL",
                params![actor_id],
            )
            .await?;
        Ok(n == 1)
    }

    /// Suspends (`Some(at)`) or reinstates (`None`) a live account. False when there is no
    /// such live account.
    pub async fn set_suspended(&self, actor_id: i64, at: Option<i64>) -> Result<bool> {
        let n = self
            .execute(
                "UPDATE actors SET suspended_at = $2 WHERE id = $1 AND deleted_at IS NULL",
                params![actor_id, at],
            )
            .await?;
        Ok(n == 1)
    }

    /// Turns an account into a tombstone at `now`: no password, no second factor, no admin
    /// right, every certificate revoked (they stay listed), key backups and discoverable
    /// services gone. The row and its name stay. False when it was deleted already (or never
    /// existed). Sessions are ended by the caller, one by one, so each end is announced.
    pub async fn delete_actor(&self, actor_id: i64, now: i64) -> Result<bool> {
        let res = self
            .commit(vec![
                Stmt::new(
                    "UPDATE actors SET deleted_at = $2, password_hash = '', totp_secret = NULL, totp_pending = NULL, is_admin = 0
                     WHERE id = $1 AND deleted_at IS NULL",
                    params![actor_id, now],
                )
                .affects(1)
                .or(Conflict::ActorMissing),
                Stmt::new(
                    "UPDATE id_certs SET revoked_at = $2 WHERE actor_id = $1 AND revoked_at IS NULL",
                    params![actor_id, now],
                ),
                Stmt::new(
                    "DELETE FROM key_material WHERE actor_id = $1",
                    params![actor_id],
                ),
                Stmt::new(
                    "DELETE FROM discoverable_services WHERE actor_id = $1",
                    params![actor_id],
                ),
            ])
            .await;
        match res {
            Ok(()) => Ok(true),
            Err(Error::Conflict(Conflict::ActorMissing)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every local account (actors of other servers, stored under their whole FID, are left
    /// out), by name, with the number of its sessions live at `now`.
    pub async fn accounts(&self, now: i64) -> Result<Vec<AccountRow>> {
        self.query(
            "SELECT a.local_name, a.created_at, a.is_admin, a.suspended_at, a.deleted_at,
                    CASE WHEN a.totp_secret IS NULL THEN 0 ELSE 1 END,
                    (SELECT COUNT(*) FROM sessions s LEFT JOIN id_certs c ON c.serial = s.cert_serial
                     WHERE s.actor_id = a.id AND s.revoked_at IS NULL
                       AND COALESCE(c.not_after, s.expires_at, s.created_at + $2) > $1)
             FROM actors a WHERE a.local_name NOT LIKE '%@%' ORDER BY a.local_name",
            params![now, CERTLESS_SESSION_S],
        )
        .await?
        .iter()
        .map(account)
        .collect()
    }
}
