//! Fugue's storage: the only crate that speaks SQL.
//!
//! [`Store`] offers persistence verbs to the server's services. Each query is written once
//! (see [`engine`]); SQLite (embedded, the default) and PostgreSQL (for several nodes) only
//! execute them. Business rules live in the server; the store guards integrity with
//! constraints and reports their violations as [`Error::Unique`] / [`Error::Conflict`].

mod accounts;
mod certs;
pub mod engine;
mod federation;
mod postgres;
mod schema;
mod services;
mod sqlite;

use std::path::Path;

pub use accounts::AccountRow;
pub use engine::{Error, Result, Row, Stmt, Value};
pub use federation::{KeyTrialQuery, KeyTrialRow, TrialRef};
pub use services::ServiceRow;
pub use sqlite::Sync as SqliteSync;

/// Seconds a session may live without a certificate (the token-first flow of OP-24).
pub const CERTLESS_SESSION_S: i64 = 600;

#[derive(Clone)]
enum Engine {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    engine: Engine,
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCertRow {
    pub serial: i64,
    pub cert_pem: String,
    pub not_before: i64,
    pub not_after: i64,
    pub created_at: i64,
    pub superseded_at: Option<i64>,
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMaterialRow {
    pub serial: i64,
    pub key_data: String,
    /// JSON array of OID strings.
    pub algorithms: String,
    pub created_at: i64,
}

/// One event of an actor's event stream (the gateway's log, DIGEST §3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub actor_id: i64,
    /// Position in the actor's stream: 1, 2, 3, … without gaps.
    pub seq: i64,
    pub namespace: String,
    pub op: i64,
    /// The payload `d` as JSON text.
    pub payload: String,
    /// `sessions.id` of a session that must not receive it.
    pub exclude_session: Option<i64>,
    /// Events with the same key replace each other on replay.
    pub collapse_key: Option<String>,
    pub created_at: i64,
}

/// What an event is made of before it has a position.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub actor_id: i64,
    pub namespace: String,
    pub op: i64,
    pub payload: String,
    pub exclude_session: Option<i64>,
    pub collapse_key: Option<String>,
    pub created_at: i64,
}

/// Where a session stands in its actor's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionRow {
    pub session_pk: i64,
    /// The last event the session acknowledged.
    pub acked_seq: i64,
    /// The node holding (or last holding) the session's gateway connection.
    pub node: Option<String>,
    /// The server root serial the session last saw.
    pub root_serial: Option<i64>,
    /// Service channels the session was subscribed to, comma-separated.
    pub services: String,
    pub updated_at: i64,
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
    /// Live sessions the actor may have, this one included ([`Error::Conflict`] beyond).
    pub max_live: i64,
}

fn actor(r: &Row) -> Result<ActorRow> {
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

fn event(r: &Row) -> Result<EventRow> {
    Ok(EventRow {
        actor_id: r.i64(0)?,
        seq: r.i64(1)?,
        namespace: r.string(2)?,
        op: r.i64(3)?,
        payload: r.string(4)?,
        exclude_session: r.opt_i64(5)?,
        collapse_key: r.opt_string(6)?,
        created_at: r.i64(7)?,
    })
}

fn insert_cert_stmt(c: &CertRow) -> Stmt {
    Stmt::new(
        "INSERT INTO id_certs (serial, actor_id, session_id, cert_pem, not_before, not_after, issued_at, revoked_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        params![c.serial, c.actor_id, c.session_id.clone(), c.cert_pem.clone(), c.not_before, c.not_after, c.issued_at, c.revoked_at],
    )
}

impl Store {
    /// Opens the embedded SQLite database at `path` and applies pending migrations.
    pub async fn open_sqlite(path: &Path, sync: SqliteSync) -> Result<Self> {
        let store = Self {
            engine: Engine::Sqlite(sqlite::Sqlite::open(path, sync)?),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Connects to PostgreSQL and applies pending migrations. With `schema`, all tables live
    /// in that schema (created if missing).
    pub async fn open_postgres(
        url: &str,
        schema: Option<&str>,
        max_connections: u32,
    ) -> Result<Self> {
        let store = Self {
            engine: Engine::Postgres(
                postgres::Postgres::connect(url, schema, max_connections).await?,
            ),
        };
        store.migrate().await?;
        Ok(store)
    }

    pub fn engine_name(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite(_) => "sqlite",
            Engine::Postgres(_) => "postgres",
        }
    }

    async fn query(&self, sql: &'static str, params: Vec<Value>) -> Result<Vec<Row>> {
        match &self.engine {
            Engine::Sqlite(e) => e.query(sql, params).await,
            Engine::Postgres(e) => e.query(sql, params).await,
        }
    }

    async fn transaction(&self, stmts: Vec<Stmt>) -> Result<Vec<u64>> {
        Ok(self
            .transaction_rows(stmts)
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    /// A transaction that also returns the rows of statements with `RETURNING`.
    async fn transaction_rows(&self, stmts: Vec<Stmt>) -> Result<Vec<(u64, Vec<Row>)>> {
        match &self.engine {
            Engine::Sqlite(e) => e.transaction(stmts).await,
            // Boxed: the PostgreSQL future is ~15 KB, and every caller's future (a gateway
            // connection waiting on a write, say) would carry it, even on SQLite.
            Engine::Postgres(e) => Box::pin(e.transaction(stmts)).await,
        }
    }

    async fn execute(&self, sql: &'static str, params: Vec<Value>) -> Result<u64> {
        Ok(self
            .transaction(vec![Stmt::new(sql, params)])
            .await?
            .first()
            .copied()
            .unwrap_or(0))
    }

    async fn migrate(&self) -> Result<()> {
        let postgres = matches!(self.engine, Engine::Postgres(_));
        let migrations: Vec<(i64, String)> = schema::MIGRATIONS
            .iter()
            .map(|(v, sql)| (*v, schema::for_engine(sql, postgres)))
            .collect();
        let applied = match &self.engine {
            Engine::Sqlite(e) => e.migrate(&migrations).await?,
            Engine::Postgres(e) => e.migrate(&migrations).await?,
        };
        for version in applied {
            tracing::info!(version, "applied schema migration");
        }
        Ok(())
    }

    /// Round trip to the database, for health checks.
    pub async fn ping(&self) -> Result<()> {
        self.query("SELECT 1", vec![]).await.map(|_| ())
    }

    // ---- actors ----

    /// Inserts an actor; with `invite_hash`, atomically consumes one use of that invite.
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
                .expect(1),
            );
        }
        stmts.push(Stmt::new(
            "INSERT INTO actors (id, local_name, password_hash, totp_secret, totp_pending, is_admin, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            params![a.id, a.local_name.clone(), a.password_hash.clone(), a.totp_secret.clone(), a.totp_pending.clone(), a.is_admin, a.created_at],
        ));
        self.transaction(stmts).await.map(|_| ())
    }

    pub async fn actor_by_name(&self, local_name: &str) -> Result<Option<ActorRow>> {
        const SQL: &str = "SELECT id, local_name, password_hash, totp_secret, totp_pending, is_admin, created_at, suspended_at, deleted_at FROM actors WHERE local_name = $1";
        self.query(SQL, params![local_name])
            .await?
            .first()
            .map(actor)
            .transpose()
    }

    pub async fn actor_by_id(&self, id: i64) -> Result<Option<ActorRow>> {
        const SQL: &str = "SELECT id, local_name, password_hash, totp_secret, totp_pending, is_admin, created_at, suspended_at, deleted_at FROM actors WHERE id = $1";
        self.query(SQL, params![id])
            .await?
            .first()
            .map(actor)
            .transpose()
    }

    pub async fn set_totp_pending(&self, actor_id: i64, secret: &str) -> Result<()> {
        self.execute(
            "UPDATE actors SET totp_pending = $2 WHERE id = $1",
            params![actor_id, secret],
        )
        .await
        .map(|_| ())
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
        self.execute(
            "INSERT INTO invites (code_hash, created_at, expires_at, max_uses, uses) VALUES ($1, $2, $3, $4, 0)",
            params![code_hash, created_at, expires_at, max_uses],
        )
        .await
        .map(|_| ())
    }

    // ---- server certificates ----

    /// Adds a server certificate and marks every earlier one superseded at `now`.
    pub async fn insert_server_cert(&self, c: &ServerCertRow, now: i64) -> Result<()> {
        self.transaction(vec![
            Stmt::new("UPDATE server_certs SET superseded_at = $1 WHERE superseded_at IS NULL", params![now]),
            Stmt::new(
                "INSERT INTO server_certs (serial, cert_pem, not_before, not_after, created_at, superseded_at)
                 VALUES ($1, $2, $3, $4, $5, NULL)",
                params![c.serial, c.cert_pem.clone(), c.not_before, c.not_after, c.created_at],
            ),
        ])
        .await
        .map(|_| ())
    }

    /// Every server certificate, oldest first.
    pub async fn server_certs(&self) -> Result<Vec<ServerCertRow>> {
        self.query(
            "SELECT serial, cert_pem, not_before, not_after, created_at, superseded_at FROM server_certs ORDER BY not_before, serial",
            vec![],
        )
        .await?
        .iter()
        .map(server_cert)
        .collect()
    }

    // ---- ID-Certs and sessions ----

    /// Stores a new session, with its first certificate if there is one. Fails with
    /// [`Error::Unique`] if the actor already has an active session or certificate with this
    /// session ID, with [`Error::Conflict`] if it would have more than `max_live` live sessions.
    pub async fn open_session(&self, s: &NewSession) -> Result<()> {
        // A session whose certificate expired, or that never got one within
        // `CERTLESS_SESSION_S`, is over: its session ID is free again (DIGEST §4.5).
        let mut stmts = vec![Stmt::new(
            "UPDATE sessions SET revoked_at = $3
             WHERE actor_id = $1 AND session_id = $2 AND revoked_at IS NULL
               AND (COALESCE((SELECT c.not_after FROM id_certs c WHERE c.serial = sessions.cert_serial), created_at + $4) < $3)",
            params![s.actor_id, s.session_id.clone(), s.created_at, CERTLESS_SESSION_S],
        )];
        stmts.extend(s.cert.iter().map(insert_cert_stmt));
        stmts.push(Stmt::new(
            "INSERT INTO sessions (id, actor_id, session_id, token_hash, cert_serial, created_at, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
            params![s.id, s.actor_id, s.session_id.clone(), s.token_hash.clone(), s.cert.as_ref().map(|c| c.serial), s.created_at],
        ));
        // A new session has seen nothing yet: its gateway position starts at the actor's
        // current event, so it catches up on what is published from now on.
        stmts.push(Stmt::new(
            "INSERT INTO gateway_positions (session_pk, acked_seq, updated_at)
             SELECT $1, event_seq, $3 FROM actors WHERE id = $2",
            params![s.id, s.actor_id, s.created_at],
        ));
        // The cap on live sessions, counted with this one. Locking the actor row makes
        // concurrent logins of one actor count one after the other.
        stmts.push(
            Stmt::new(
                "UPDATE actors SET id = id WHERE id = $1 AND
                   (SELECT COUNT(*) FROM sessions s WHERE s.actor_id = $1 AND s.revoked_at IS NULL
                      AND COALESCE((SELECT c.not_after FROM id_certs c WHERE c.serial = s.cert_serial), s.created_at + $3) >= $2) <= $4",
                params![s.actor_id, s.created_at, CERTLESS_SESSION_S, s.max_live],
            )
            .expect(1),
        );
        self.transaction(stmts).await.map(|_| ())
    }

    /// Gives an active session a new certificate. A previous certificate is revoked at `now`
    /// (OP-25); with `token_hash` the session's token is replaced too. Fails with
    /// [`Error::Conflict`] if the session or its old certificate is no longer current.
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
                .expect(1),
            );
        }
        stmts.push(insert_cert_stmt(new));
        stmts.push(
            Stmt::new(
                "UPDATE sessions SET cert_serial = $2, token_hash = COALESCE($3, token_hash)
                 WHERE id = $1 AND revoked_at IS NULL AND COALESCE(cert_serial, -1) = COALESCE($4, -1)",
                params![session_pk, new.serial, Value::Blob(token_hash.map(<[u8]>::to_vec)), old_serial],
            )
            .expect(1),
        );
        self.transaction(stmts).await.map(|_| ())
    }

    /// The active session holding this token hash.
    pub async fn session_by_token(&self, token_hash: &[u8]) -> Result<Option<SessionRow>> {
        self.query(
            "SELECT s.id, s.actor_id, s.session_id, s.cert_serial, s.created_at, COALESCE(c.not_after, s.expires_at)
             FROM sessions s LEFT JOIN id_certs c ON c.serial = s.cert_serial
             WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND c.revoked_at IS NULL",
            params![token_hash],
        )
        .await?
        .first()
        .map(session)
        .transpose()
    }

    /// Active sessions of an actor, oldest first.
    pub async fn sessions_of(&self, actor_id: i64) -> Result<Vec<SessionRow>> {
        self.query(
            "SELECT s.id, s.actor_id, s.session_id, s.cert_serial, s.created_at, COALESCE(c.not_after, s.expires_at)
             FROM sessions s LEFT JOIN id_certs c ON c.serial = s.cert_serial
             WHERE s.actor_id = $1 AND s.revoked_at IS NULL ORDER BY s.created_at, s.id",
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
            "SELECT s.id, s.actor_id, s.session_id, s.cert_serial, s.created_at, COALESCE(c.not_after, s.expires_at)
             FROM sessions s LEFT JOIN id_certs c ON c.serial = s.cert_serial
             WHERE s.id = $1 AND s.revoked_at IS NULL",
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
            .transaction(vec![
                Stmt::new(
                    "UPDATE id_certs SET revoked_at = $3 WHERE revoked_at IS NULL AND serial =
                       (SELECT cert_serial FROM sessions WHERE actor_id = $1 AND session_id = $2 AND revoked_at IS NULL)",
                    params![actor_id, session_id, now],
                ),
                Stmt::new(
                    "UPDATE sessions SET revoked_at = $3 WHERE actor_id = $1 AND session_id = $2 AND revoked_at IS NULL",
                    params![actor_id, session_id, now],
                )
                .expect(1),
            ])
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(Error::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

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
            "SELECT serial, actor_id, session_id, cert_pem, not_before, not_after, issued_at, revoked_at FROM id_certs
             WHERE actor_id = $1 AND ($2 IS NULL OR not_after >= $2) AND ($3 IS NULL OR not_before <= $3)
               AND ($4 IS NULL OR session_id = $4)
             ORDER BY not_before, serial",
            params![actor_id, from, to, session_id.map(str::to_owned)],
        )
        .await?
        .iter()
        .map(cert)
        .collect()
    }

    pub async fn cert_by_serial(&self, serial: i64) -> Result<Option<CertRow>> {
        self.query(
            "SELECT serial, actor_id, session_id, cert_pem, not_before, not_after, issued_at, revoked_at FROM id_certs WHERE serial = $1",
            params![serial],
        )
        .await?
        .first()
        .map(cert)
        .transpose()
    }

    // ---- encrypted private key material ----

    /// Stores key material; all or nothing. [`Error::Unique`] if a serial already has some;
    /// [`Error::Conflict`] if the actor would hold more than `max_slots` elements. Uploads of
    /// one actor are serialised on its row, so parallel uploads cannot exceed the limit.
    pub async fn insert_key_material(
        &self,
        actor_id: i64,
        rows: &[KeyMaterialRow],
        max_slots: i64,
    ) -> Result<()> {
        let mut stmts = vec![
            Stmt::new(
                "UPDATE actors SET is_admin = is_admin WHERE id = $1",
                params![actor_id],
            )
            .expect(1),
        ];
        stmts.extend(rows.iter().map(|k| {
            Stmt::new(
                "INSERT INTO key_material (actor_id, serial, key_data, algorithms, created_at)
                 SELECT $1, $2, $3, $4, $5 WHERE (SELECT COUNT(*) FROM key_material WHERE actor_id = $1) < $6",
                params![actor_id, k.serial, k.key_data.clone(), k.algorithms.clone(), k.created_at, max_slots],
            )
            .expect(1)
        }));
        self.transaction(stmts).await.map(|_| ())
    }

    pub async fn key_material(&self, actor_id: i64) -> Result<Vec<KeyMaterialRow>> {
        self.query(
            "SELECT serial, key_data, algorithms, created_at FROM key_material WHERE actor_id = $1 ORDER BY serial",
            params![actor_id],
        )
        .await?
        .iter()
        .map(|r| Ok(KeyMaterialRow { serial: r.i64(0)?, key_data: r.string(1)?, algorithms: r.string(2)?, created_at: r.i64(3)? }))
        .collect()
    }

    /// Deletes the key material of these serials; returns how many existed.
    pub async fn delete_key_material(&self, actor_id: i64, serials: &[i64]) -> Result<u64> {
        let stmts = serials
            .iter()
            .map(|s| {
                Stmt::new(
                    "DELETE FROM key_material WHERE actor_id = $1 AND serial = $2",
                    params![actor_id, *s],
                )
            })
            .collect();
        Ok(self.transaction(stmts).await?.iter().sum())
    }

    // ---- failed sensitive-action solutions ----

    /// Starts a second-factor attempt: counts it as a failure until
    /// [`Store::forgive_sensitive_attempt`] takes it back. Returns false, recording nothing,
    /// when `max` attempts since `since` are on record already. Attempts of one actor are
    /// serialised on its row, so parallel guesses cannot all slip under the limit.
    pub async fn begin_sensitive_attempt(
        &self,
        actor_id: i64,
        attempt: i64,
        now: i64,
        since: i64,
        max: i64,
    ) -> Result<bool> {
        let res = self
            .transaction(vec![
                Stmt::new("UPDATE actors SET is_admin = is_admin WHERE id = $1", params![actor_id]).expect(1),
                Stmt::new("DELETE FROM sensitive_failures WHERE actor_id = $1 AND at < $2", params![actor_id, since]),
                Stmt::new(
                    "INSERT INTO sensitive_failures (actor_id, at, attempt)
                     SELECT $1, $2, $3 WHERE (SELECT COUNT(*) FROM sensitive_failures WHERE actor_id = $1) < $4",
                    params![actor_id, now, attempt, max],
                )
                .expect(1),
            ])
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(Error::Conflict(2)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Takes back an attempt that turned out right.
    pub async fn forgive_sensitive_attempt(&self, actor_id: i64, attempt: i64) -> Result<()> {
        self.execute(
            "DELETE FROM sensitive_failures WHERE actor_id = $1 AND attempt = $2",
            params![actor_id, attempt],
        )
        .await
        .map(|_| ())
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

    // ---- event streams and gateway positions ----

    /// Appends an event to its actor's stream and returns its position. Appends for one
    /// actor are serialised on the actor's row, so positions follow commit order without
    /// gaps: whoever sees position N committed can read every position below it.
    pub async fn append_event(&self, e: &NewEvent) -> Result<i64> {
        let out = self
            .transaction_rows(vec![
                Stmt::new(
                    "UPDATE actors SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq",
                    params![e.actor_id],
                )
                .expect(1),
                Stmt::new(
                    "INSERT INTO events (actor_id, seq, namespace, op, payload, exclude_session, collapse_key, created_at)
                     SELECT id, event_seq, $2, $3, $4, $5, $6, $7 FROM actors WHERE id = $1",
                    params![e.actor_id, e.namespace.clone(), e.op, e.payload.clone(), e.exclude_session, e.collapse_key.clone(), e.created_at],
                )
                .expect(1),
            ])
            .await?;
        out.first()
            .and_then(|(_, rows)| rows.first())
            .ok_or_else(|| Error::Decode("RETURNING gave no row".into()))?
            .i64(0)
    }

    /// Up to `limit` events of an actor after position `after`, oldest first.
    pub async fn events_after(
        &self,
        actor_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        self.query(
            "SELECT actor_id, seq, namespace, op, payload, exclude_session, collapse_key, created_at
             FROM events WHERE actor_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            params![actor_id, after, limit],
        )
        .await?
        .iter()
        .map(event)
        .collect()
    }

    /// The newest `limit` events of an actor after position `after`, oldest first.
    pub async fn newest_events_after(
        &self,
        actor_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        let mut rows = self
            .query(
                "SELECT actor_id, seq, namespace, op, payload, exclude_session, collapse_key, created_at
                 FROM events WHERE actor_id = $1 AND seq > $2 ORDER BY seq DESC LIMIT $3",
                params![actor_id, after, limit],
            )
            .await?
            .iter()
            .map(event)
            .collect::<Result<Vec<_>>>()?;
        rows.reverse();
        Ok(rows)
    }

    /// The position of an actor's newest event (0 when none was ever published).
    pub async fn event_seq(&self, actor_id: i64) -> Result<i64> {
        self.query(
            "SELECT event_seq FROM actors WHERE id = $1",
            params![actor_id],
        )
        .await?
        .first()
        .map_or(Ok(0), |r| r.i64(0))
    }

    /// Deletes events created before `before`; returns how many.
    pub async fn delete_events_before(&self, before: i64) -> Result<u64> {
        self.execute("DELETE FROM events WHERE created_at < $1", params![before])
            .await
    }

    pub async fn gateway_position(&self, session_pk: i64) -> Result<Option<PositionRow>> {
        self.query(
            "SELECT session_pk, acked_seq, node, root_serial, services, updated_at
             FROM gateway_positions WHERE session_pk = $1",
            params![session_pk],
        )
        .await?
        .first()
        .map(|r| {
            Ok(PositionRow {
                session_pk: r.i64(0)?,
                acked_seq: r.i64(1)?,
                node: r.opt_string(2)?,
                root_serial: r.opt_i64(3)?,
                services: r.string(4)?,
                updated_at: r.i64(5)?,
            })
        })
        .transpose()
    }

    /// Moves a session's acknowledged position forward (never back).
    pub async fn advance_position(&self, session_pk: i64, acked_seq: i64, now: i64) -> Result<()> {
        self.execute(
            "INSERT INTO gateway_positions (session_pk, acked_seq, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (session_pk) DO UPDATE SET acked_seq = excluded.acked_seq, updated_at = excluded.updated_at
             WHERE gateway_positions.acked_seq < excluded.acked_seq",
            params![session_pk, acked_seq, now],
        )
        .await
        .map(|_| ())
    }

    /// Records which node holds the session's connection, the root it saw and its service
    /// channels. A session without a position starts at `acked_if_new`.
    pub async fn record_connection(
        &self,
        session_pk: i64,
        node: &str,
        root_serial: i64,
        services: &str,
        acked_if_new: i64,
        now: i64,
    ) -> Result<()> {
        self.execute(
            "INSERT INTO gateway_positions (session_pk, acked_seq, node, root_serial, services, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (session_pk) DO UPDATE SET node = excluded.node, root_serial = excluded.root_serial,
               services = excluded.services, updated_at = excluded.updated_at",
            params![session_pk, acked_if_new, node, root_serial, services, now],
        )
        .await
        .map(|_| ())
    }
}
