//! Persistence of actor ID-Certs: how they are stored and looked up. They are issued with
//! their sessions (see `sessions.rs`), never deleted, and revoked at most once.

use crate::engine::{Result, Row, Stmt};
use crate::{Store, params};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    pub serial: i64,
    pub actor_id: i64,
    pub session_id: String,
    pub cert_pem: String,
    pub not_before: i64,
    pub not_after: i64,
    pub issued_at: i64,
    pub revoked_at: Option<i64>,
}

/// The columns [`cert`] decodes (and [`insert_cert_stmt`] writes), in its order.
macro_rules! cert_columns {
    () => {
        "serial, actor_id, session_id, cert_pem, not_before, not_after, issued_at, revoked_at"
    };
}

fn cert(r: &Row) -> Result<CertRow> {
    Ok(CertRow {
        serial: r.i64(0)?,
        actor_id: r.i64(1)?,
        session_id: r.string(2)?,
        cert_pem: r.string(3)?,
        not_before: r.i64(4)?,
        not_after: r.i64(5)?,
        issued_at: r.i64(6)?,
        revoked_at: r.opt_i64(7)?,
    })
}

pub(crate) fn insert_cert_stmt(c: &CertRow) -> Stmt {
    Stmt::new(
        concat!(
            "INSERT INTO id_certs (",
            cert_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ),
        params![
            c.serial,
            c.actor_id,
            c.session_id.clone(),
            c.cert_pem.clone(),
            c.not_before,
            c.not_after,
            c.issued_at,
            c.revoked_at
        ],
    )
}

impl Store {
    /// Certificates of an actor whose validity overlaps `[from, to]`, optionally of one
    /// session, oldest first.
    pub async fn certs_of(
        &self,
        actor_id: i64,
        from: Option<i64>,
        to: Option<i64>,
        session_id: Option<&str>,
    ) -> Result<Vec<CertRow>> {
        self.query(
            concat!(
                "SELECT ",
                cert_columns!(),
                " FROM id_certs
                 WHERE actor_id = $1 AND ($2 IS NULL OR not_after >= $2) AND ($3 IS NULL OR not_before <= $3)
                   AND ($4 IS NULL OR session_id = $4)
                 ORDER BY not_before, serial"
            ),
            params![actor_id, from, to, session_id.map(str::to_owned)],
        )
        .await?
        .iter()
        .map(cert)
        .collect()
    }

    pub async fn cert_by_serial(&self, serial: i64) -> Result<Option<CertRow>> {
        self.query(
            concat!(
                "SELECT ",
                cert_columns!(),
                " FROM id_certs WHERE serial = $1"
            ),
            params![serial],
        )
        .await?
        .first()
        .map(cert)
        .transpose()
    }

    /// `(certificates, revoked ones)` of an actor. Certificates are never deleted and are
    /// revoked at most once, so the pair changes whenever the actor's list changes: a cheap
    /// version of the list for caches.
    pub async fn cert_counts(&self, actor_id: i64) -> Result<(i64, i64)> {
        let rows = self
            .query(
                "SELECT COUNT(*), COUNT(revoked_at) FROM id_certs WHERE actor_id = $1",
                params![actor_id],
            )
            .await?;
        match rows.first() {
            Some(r) => Ok((r.i64(0)?, r.i64(1)?)),
            None => Ok((0, 0)),
        }
    }
}
