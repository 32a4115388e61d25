//! Persistence of local sessions: opening one (with its first ID-Cert), moving it to a new
//! certificate, finding it by token, and revoking it. Sessions of other servers' actors are
//! in `federation.rs`.

use crate::actors::{actor, lock_actor};
use crate::certs::insert_cert_stmt;
use crate::engine::{Conflict, Error, Result, Row, Stmt, Value};
use crate::{ActorRow, CERTLESS_SESSION_S, CertRow, Store, params};

/// An active session found by its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: i64,
    pub actor_id: i64,
    pub session_id: String,
    /// None until the session's first certificate is issued.
    pub cert_serial: Option<i64>,
    pub created_at: i64,
    pub cert_not_after: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: i64,
    pub actor_id: i64,
    pub session_id: String,
    pub token_hash: Vec<u8>,
    pub created_at: i64,
    /// The session's first certificate, if it was issued at login.
    pub cert: Option<CertRow>,
    /// Live sessions the actor may have, this one included ([`Conflict::TooManySessions`]
    /// beyond).
    pub max_live: i64,
}

/// What [`session`] decodes, in its order: a session with the end of its certificate (or,
/// for a session of another server's actor, of its stay here).
macro_rules! session_select {
    () => {
        concat!("SELECT ", session_columns!(), session_from!())
    };
}

macro_rules! session_columns {
    () => {
        "s.id, s.actor_id, s.session_id, s.cert_serial, s.created_at, COALESCE(c.not_after, s.expires_at)"
    };
}

macro_rules! session_from {
    () => {
        " FROM sessions s LEFT JOIN id_certs c ON c.serial = s.cert_serial"
    };
}

/// The active session holding token hash `$hash` (after `session_from!` and its joins).
macro_rules! active_by_token {
    ($hash:literal) => {
        concat!(
            " WHERE s.token_hash = ",
            $hash,
            " AND s.revoked_at IS NULL AND c.revoked_at IS NULL"
        )
    };
}

/// True while the session holding token hash `$hash` is active with certificate `$serial`
/// (NULL: none) and its actor is neither suspended nor deleted: what a [`SessionGuard`]
/// asks of a write.
macro_rules! session_holds {
    ($hash:literal, $serial:literal) => {
        concat!(
            "EXISTS (SELECT 1",
            session_from!(),
            " JOIN actors a ON a.id = s.actor_id",
            active_by_token!($hash),
            " AND s.cert_serial IS NOT DISTINCT FROM ",
            $serial,
            " AND a.suspended_at IS NULL AND a.deleted_at IS NULL)"
        )
    };
}

/// A write's condition that the session making it is still as its caller last saw it:
/// active, holding this token and this certificate, its actor neither suspended nor
/// deleted. A caller that trusts what it remembers of a session, rather than reading it
/// again, makes its write conditional on this in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionGuard {
    pub token_hash: Vec<u8>,
    pub cert_serial: Option<i64>,
}

/// How many columns [`session`] decodes.
const SESSION_COLUMNS: usize = 6;

fn session(r: &Row) -> Result<SessionRow> {
    Ok(SessionRow {
        id: r.i64(0)?,
        actor_id: r.i64(1)?,
        session_id: r.string(2)?,
        cert_serial: r.opt_i64(3)?,
        created_at: r.i64(4)?,
        cert_not_after: r.opt_i64(5)?,
    })
}

impl Store {
    /// Stores a new session, with its first certificate if there is one. Fails with
    /// [`Error::Unique`] if the actor already has an active session or certificate with this
    /// session ID, with [`Conflict::TooManySessions`] if it would have more than `max_live`
    /// live sessions.
    pub async fn open_session(&self, s: &NewSession) -> Result<()> {
        // A session whose certificate expired, or that never got one within
        // `CERTLESS_SESSION_S`, is over: its session ID is free again (DIGEST §4.5).
        // First the actor's row lock: a concurrent login of the same actor waits here, and
        // the count below (a statement of its own, so a fresh snapshot on PostgreSQL) sees
        // its session.
        let mut stmts = vec![lock_actor(s.actor_id)];
        stmts.push(Stmt::new(
            "UPDATE sessions SET revoked_at = $3
             WHERE actor_id = $1 AND session_id = $2 AND revoked_at IS NULL
               AND (COALESCE((SELECT c.not_after FROM id_certs c WHERE c.serial = sessions.cert_serial), created_at + $4) < $3)",
            params![s.actor_id, s.session_id.clone(), s.created_at, CERTLESS_SESSION_S],
        ));
        stmts.push(crate::mls::drop_packages_of_ended_sessions(s.actor_id));
        stmts.extend(s.cert.iter().map(insert_cert_stmt));
        stmts.push(Stmt::new(
            "INSERT INTO sessions (id, actor_id, session_id, token_hash, cert_serial, created_at, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
            params![s.id, s.actor_id, s.session_id.clone(), s.token_hash.clone(), s.cert.as_ref().map(|c| c.serial), s.created_at],
        ));
        // A new session has seen nothing yet: its position in the actor's stream starts at
        // the current head, so it catches up on what is published from now on.
        stmts.push(Stmt::new(
            "INSERT INTO stream_positions (session_pk, stream_id, acked_seq)
             SELECT $1, $2, COALESCE((SELECT head FROM streams WHERE id = $2), 0)",
            params![s.id, s.actor_id],
        ));
        // The cap on live sessions, counted with this one.
        stmts.push(
            Stmt::new(
                "UPDATE actors SET id = id WHERE id = $1 AND
                   (SELECT COUNT(*) FROM sessions s WHERE s.actor_id = $1 AND s.revoked_at IS NULL
                      AND COALESCE((SELECT c.not_after FROM id_certs c WHERE c.serial = s.cert_serial), s.created_at + $3) >= $2) <= $4",
                params![s.actor_id, s.created_at, CERTLESS_SESSION_S, s.max_live],
            )
            .affects(1)
            .or(Conflict::TooManySessions),
        );
        self.commit(stmts).await
    }

    /// Gives an active session a new certificate. A previous certificate is revoked at `now`
    /// (OP-25); with `token_hash` the session's token is replaced too. Fails with
    /// [`Conflict::SessionChanged`] if the session or its old certificate is no longer
    /// current.
    pub async fn replace_session_cert(
        &self,
        session_pk: i64,
        old_serial: Option<i64>,
        new: &CertRow,
        token_hash: Option<&[u8]>,
        now: i64,
    ) -> Result<()> {
        let mut stmts = Vec::new();
        if let Some(old) = old_serial {
            stmts.push(
                Stmt::new(
                    "UPDATE id_certs SET revoked_at = $2 WHERE serial = $1 AND revoked_at IS NULL",
                    params![old, now],
                )
                .affects(1)
                .or(Conflict::SessionChanged),
            );
        }
        stmts.push(insert_cert_stmt(new));
        stmts.push(
            Stmt::new(
                "UPDATE sessions SET cert_serial = $2, token_hash = COALESCE($3, token_hash)
                 WHERE id = $1 AND revoked_at IS NULL AND COALESCE(cert_serial, -1) = COALESCE($4, -1)",
                params![session_pk, new.serial, Value::Blob(token_hash.map(<[u8]>::to_vec)), old_serial],
            )
            .affects(1)
            .or(Conflict::SessionChanged),
        );
        stmts.push(crate::mls::drop_packages_of_other_certs(
            session_pk, new.serial,
        ));
        self.commit(stmts).await
    }

    /// Whether the session of a [`SessionGuard`] still holds.
    pub async fn session_holds(&self, guard: &SessionGuard) -> Result<bool> {
        let rows = self
            .query(
                concat!("SELECT 1 WHERE ", session_holds!("$1", "$2")),
                params![guard.token_hash.clone(), guard.cert_serial],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// The active session holding this token hash.
    pub async fn session_by_token(&self, token_hash: &[u8]) -> Result<Option<SessionRow>> {
        self.query(
            concat!(session_select!(), active_by_token!("$1")),
            params![token_hash],
        )
        .await?
        .first()
        .map(session)
        .transpose()
    }

    /// [`Store::session_by_token`] with the session's actor: one read, for every
    /// authenticated request.
    pub async fn session_with_actor(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<(SessionRow, ActorRow)>> {
        const SQL: &str = concat!(
            "SELECT ",
            session_columns!(),
            ", ",
            actor_columns!("a."),
            session_from!(),
            " JOIN actors a ON a.id = s.actor_id",
            active_by_token!("$1")
        );
        let Some(Row(mut cells)) = self.query(SQL, params![token_hash]).await?.pop() else {
            return Ok(None);
        };
        let actor_cells = cells.split_off(SESSION_COLUMNS);
        Ok(Some((session(&Row(cells))?, actor(&Row(actor_cells))?)))
    }

    /// Active sessions of an actor, oldest first.
    pub async fn sessions_of(&self, actor_id: i64) -> Result<Vec<SessionRow>> {
        self.query(
            concat!(
                session_select!(),
                " WHERE s.actor_id = $1 AND s.revoked_at IS NULL ORDER BY s.created_at, s.id"
            ),
            params![actor_id],
        )
        .await?
        .iter()
        .map(session)
        .collect()
    }

    /// The active session with this primary key.
    pub async fn active_session(&self, session_pk: i64) -> Result<Option<SessionRow>> {
        self.query(
            concat!(
                session_select!(),
                " WHERE s.id = $1 AND s.revoked_at IS NULL"
            ),
            params![session_pk],
        )
        .await?
        .first()
        .map(session)
        .transpose()
    }

    /// Revokes the active session `session_id` of an actor and its certificate at `now`.
    /// Returns false if there was no such active session.
    pub async fn revoke_session(&self, actor_id: i64, session_id: &str, now: i64) -> Result<bool> {
        let res = self
            .commit(vec![
                Stmt::new(
                    "UPDATE id_certs SET revoked_at = $3 WHERE revoked_at IS NULL AND serial =
                       (SELECT cert_serial FROM sessions WHERE actor_id = $1 AND session_id = $2 AND revoked_at IS NULL)",
                    params![actor_id, session_id, now],
                ),
                Stmt::new(
                    "UPDATE sessions SET revoked_at = $3 WHERE actor_id = $1 AND session_id = $2 AND revoked_at IS NULL",
                    params![actor_id, session_id, now],
                )
                .affects(1)
                .or(Conflict::SessionChanged),
                crate::mls::drop_packages_of_ended_sessions(actor_id),
            ])
            .await;
        match res {
            Ok(()) => Ok(true),
            Err(Error::Conflict(Conflict::SessionChanged)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
