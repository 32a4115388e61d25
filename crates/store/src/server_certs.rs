//! Persistence of the server's own certificates (the roots of its ID-Certs): each new one
//! supersedes the ones before it, and none is ever deleted.

use crate::engine::{Result, Row, Stmt};
use crate::{Store, params};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCertRow {
    pub serial: i64,
    pub cert_pem: String,
    pub not_before: i64,
    pub not_after: i64,
    pub created_at: i64,
    pub superseded_at: Option<i64>,
}

/// The columns [`server_cert`] decodes, in its order.
macro_rules! server_cert_columns {
    () => {
        "serial, cert_pem, not_before, not_after, created_at, superseded_at"
    };
}

fn server_cert(r: &Row) -> Result<ServerCertRow> {
    Ok(ServerCertRow {
        serial: r.i64(0)?,
        cert_pem: r.string(1)?,
        not_before: r.i64(2)?,
        not_after: r.i64(3)?,
        created_at: r.i64(4)?,
        superseded_at: r.opt_i64(5)?,
    })
}

impl Store {
    /// Adds a server certificate and marks every earlier one superseded at `now`.
    pub async fn insert_server_cert(&self, c: &ServerCertRow, now: i64) -> Result<()> {
        self.commit(vec![
            Stmt::new(
                "UPDATE server_certs SET superseded_at = $1 WHERE superseded_at IS NULL",
                params![now],
            ),
            Stmt::new(
                concat!(
                    "INSERT INTO server_certs (",
                    server_cert_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, NULL)"
                ),
                params![
                    c.serial,
                    c.cert_pem.clone(),
                    c.not_before,
                    c.not_after,
                    c.created_at
                ],
            ),
        ])
        .await
    }

    /// Every server certificate, oldest first.
    pub async fn server_certs(&self) -> Result<Vec<ServerCertRow>> {
        self.query(
            concat!(
                "SELECT ",
                server_cert_columns!(),
                " FROM server_certs ORDER BY not_before, serial"
            ),
            vec![],
        )
        .await?
        .iter()
        .map(server_cert)
        .collect()
    }
}
