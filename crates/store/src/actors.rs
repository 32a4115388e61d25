//! Persistence of actors (local accounts and, under their whole FID, actors of other
//! servers), their second factor, invites, and failed sensitive-action solutions.

use crate::engine::{Conflict, Error, Result, Row, Stmt};
use crate::{Store, params};

#[derive(Clone, PartialEq, Eq)]
pub struct ActorRow {
    pub id: i64,
    pub local_name: String,
    pub password_hash: String,
    pub totp_secret: Option<String>,
    pub totp_pending: Option<String>,
    pub is_admin: bool,
    pub created_at: i64,
    /// Set while an administrator has suspended the account.
    pub suspended_at: Option<i64>,
    /// Set once the account is deleted; the row stays as a tombstone (see `delete_actor`).
    pub deleted_at: Option<i64>,
}

/// Secrets stay out of logs and panics.
impl std::fmt::Debug for ActorRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorRow")
            .field("id", &self.id)
            .field("local_name", &self.local_name)
            .field("totp", &self.totp_secret.is_some())
            .field("is_admin", &self.is_admin)
            .field("suspended_at", &self.suspended_at)
            .field("deleted_at", &self.deleted_at)
            .finish_non_exhaustive()
    }
}

/// The columns [`actor`] decodes, in its order (each after `$table.` when given).
macro_rules! actor_columns {
    () => {
        actor_columns!("")
    };
    ($table:literal) => {
        concat!(
            $table,
            "id, ",
            $table,
            "local_name, ",
            $table,
            "password_hash, ",
            $table,
            "totp_secret, ",
            $table,
            "totp_pending, ",
            $table,
            "is_admin, ",
            $table,
            "created_at, ",
            $table,
            "suspended_at, ",
            $table,
            "deleted_at"
        )
    };
}

pub(crate) fn actor(r: &Row) -> Result<ActorRow> {
    Ok(ActorRow {
        id: r.i64(0)?,
        local_name: r.string(1)?,
        password_hash: r.string(2)?,
        totp_secret: r.opt_string(3)?,
        totp_pending: r.opt_string(4)?,
        is_admin: r.bool(5)?,
        created_at: r.i64(6)?,
        suspended_at: r.opt_i64(7)?,
        deleted_at: r.opt_i64(8)?,
    })
}

/// Serialises a transaction's writes for one actor on the actor's row, so counting and
/// writing see a stable picture; [`Conflict::ActorMissing`] when the actor does not exist.
pub(crate) fn lock_actor(actor_id: i64) -> Stmt {
    Stmt::new(
        "UPDATE actors SET is_admin = is_admin WHERE id = $1",
        params![actor_id],
    )
    .affects(1)
    .or(Conflict::ActorMissing)
}

impl Store {
    /// Inserts an actor; with `invite_hash`, atomically consumes one use of that invite
    /// ([`Conflict::InviteUnusable`] when it is unknown, used up or expired).
    pub async fn insert_actor(
        &self,
        a: &ActorRow,
        invite_hash: Option<&[u8]>,
        now: i64,
    ) -> Result<()> {
        let mut stmts = Vec::new();
        if let Some(hash) = invite_hash {
            stmts.push(
                Stmt::new(
                    "UPDATE invites SET uses = uses + 1
                     WHERE code_hash = $1 AND uses < max_uses AND (expires_at IS NULL OR expires_at > $2)",
                    params![hash, now],
                )
                .affects(1)
                .or(Conflict::InviteUnusable),
            );
        }
        stmts.push(Stmt::new(
            "INSERT INTO actors (id, local_name, password_hash, totp_secret, totp_pending, is_admin, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            params![a.id, a.local_name.clone(), a.password_hash.clone(), a.totp_secret.clone(), a.totp_pending.clone(), a.is_admin, a.created_at],
        ));
        self.commit(stmts).await
    }

    pub async fn actor_by_name(&self, local_name: &str) -> Result<Option<ActorRow>> {
        const SQL: &str = concat!(
            "SELECT ",
            actor_columns!(),
            " FROM actors WHERE local_name = $1"
        );
        self.query(SQL, params![local_name])
            .await?
            .first()
            .map(actor)
            .transpose()
    }

    pub async fn actor_by_id(&self, id: i64) -> Result<Option<ActorRow>> {
        const SQL: &str = concat!("SELECT ", actor_columns!(), " FROM actors WHERE id = $1");
        self.query(SQL, params![id])
            .await?
            .first()
            .map(actor)
            .transpose()
    }

    pub async fn set_totp_pending(&self, actor_id: i64, secret: &str) -> Result<()> {
        self.execute_unit(
            "UPDATE actors SET totp_pending = $2 WHERE id = $1",
            params![actor_id, secret],
        )
        .await
    }

    /// Moves the pending TOTP secret into place if it is still `pending`.
    pub async fn activate_totp(&self, actor_id: i64, pending: &str) -> Result<bool> {
        let n = self
            .execute(
                "UPDATE actors SET totp_secret = totp_pending, totp_pending = NULL WHERE id = $1 AND totp_pending = $2",
                params![actor_id, pending],
            )
            .await?;
        Ok(n == 1)
    }

    /// Records that the TOTP code of time step `step` was used. False when this step or a
    /// later one was used already (a replay).
    pub async fn spend_totp_step(&self, actor_id: i64, step: i64) -> Result<bool> {
        let n = self
            .execute(
                "UPDATE actors SET totp_last_step = $2 WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
                params![actor_id, step],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn set_admin(&self, local_name: &str, admin: bool) -> Result<bool> {
        let n = self
            .execute(
                "UPDATE actors SET is_admin = $2 WHERE local_name = $1",
                params![local_name, admin],
            )
            .await?;
        Ok(n == 1)
    }

    // ---- invites ----

    /// True when the invite exists, has uses left and has not expired (checked again,
    /// atomically, when it is consumed).
    pub async fn invite_usable(&self, code_hash: &[u8], now: i64) -> Result<bool> {
        let rows = self
            .query(
                "SELECT 1 FROM invites WHERE code_hash = $1 AND uses < max_uses AND (expires_at IS NULL OR expires_at > $2)",
                params![code_hash, now],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    pub async fn insert_invite(
        &self,
        code_hash: &[u8],
        created_at: i64,
        expires_at: Option<i64>,
        max_uses: i64,
    ) -> Result<()> {
        self.execute_unit(
            "INSERT INTO invites (code_hash, created_at, expires_at, max_uses, uses) VALUES ($1, $2, $3, $4, 0)",
            params![code_hash, created_at, expires_at, max_uses],
        )
        .await
    }

    // ---- failed sensitive-action solutions ----

    /// Starts a second-factor attempt: counts it as a failure until
    /// [`Store::forgive_sensitive_attempt`] takes it back. Returns false, recording nothing,
    /// when `max` attempts since `since` are on record already. Attempts of one actor are
    /// serialised on its row, so parallel guesses cannot all slip under the limit.
    /// [`Conflict::ActorMissing`] for an unknown actor.
    pub async fn begin_sensitive_attempt(
        &self,
        actor_id: i64,
        attempt: i64,
        now: i64,
        since: i64,
        max: i64,
    ) -> Result<bool> {
        let res = self
            .commit(vec![
                lock_actor(actor_id),
                Stmt::new("DELETE FROM sensitive_failures WHERE actor_id = $1 AND at < $2", params![actor_id, since]),
                Stmt::new(
                    "INSERT INTO sensitive_failures (actor_id, at, attempt)
                     SELECT $1, $2, $3 WHERE (SELECT COUNT(*) FROM sensitive_failures WHERE actor_id = $1) < $4",
                    params![actor_id, now, attempt, max],
                )
                .affects(1)
                .or(Conflict::TooManyAttempts),
            ])
            .await;
        match res {
            Ok(()) => Ok(true),
            Err(Error::Conflict(Conflict::TooManyAttempts)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Takes back an attempt that turned out right.
    pub async fn forgive_sensitive_attempt(&self, actor_id: i64, attempt: i64) -> Result<()> {
        self.execute_unit(
            "DELETE FROM sensitive_failures WHERE actor_id = $1 AND attempt = $2",
            params![actor_id, attempt],
        )
        .await
    }

    /// Wrong solutions since `since`, and the oldest of them.
    pub async fn sensitive_failures_since(
        &self,
        actor_id: i64,
        since: i64,
    ) -> Result<(i64, Option<i64>)> {
        let rows = self
            .query(
                "SELECT COUNT(*), MIN(at) FROM sensitive_failures WHERE actor_id = $1 AND at >= $2",
                params![actor_id, since],
            )
            .await?;
        let r = rows
            .first()
            .ok_or_else(|| Error::Decode("COUNT returned no row".into()))?;
        Ok((r.i64(0)?, r.opt_i64(1)?))
    }
}
