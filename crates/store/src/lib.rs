//! Fugue's storage: the only crate that speaks SQL.
//!
//! [`Store`] offers persistence verbs to the server's services. Each query is written once
//! (see [`engine`]); SQLite (embedded, the default) and PostgreSQL (for several nodes) only
//! execute them. Business rules live in the server; the store guards integrity with
//! constraints and reports their violations as [`Error::Unique`] / [`Error::Conflict`], the
//! latter naming the precondition that failed ([`Conflict`]).
//!
//! The verbs live with their domain: `actors.rs` (actors, TOTP, invites, failed
//! sensitive-action solutions), `accounts.rs` (account management), `sessions.rs`,
//! `certs.rs` (actor ID-Certs), `chat/` (guilds, channels, members, roles, overwrites,
//! bans, guild invites; messages and their versions), `server_certs.rs`, `keymaterial.rs`, `events.rs` (event
//! streams and gateway positions), `services.rs` (discoverable services) and
//! `federation.rs` (key trials, foreign actors and their sessions). Each row decoder sits
//! next to the list of columns it decodes, so their order is written in one place.

// SQL macros first: those of actors, then those of sessions (which join actors), before
// the modules whose statements use them.
#[macro_use]
mod actors;
#[macro_use]
mod sessions;

mod accounts;
mod certs;
mod chat;
mod convert;
pub mod engine;
mod events;
mod exports;
mod federation;
mod keymaterial;
mod media;
mod migration;
mod mls;
mod postgres;
mod schema;
mod server_certs;
mod services;
mod sqlite;

use std::path::Path;

pub use accounts::AccountRow;
pub use actors::ActorRow;
pub use certs::CertRow;
pub use chat::{
    BanRow, ChannelRow, ConversationMemberRow, ConversationRow, GuildAccess, GuildInviteRow,
    GuildRow, MemberRow, MessageRow, MessageVersionRow, OverwriteRow, PinnedRow, Positions,
    ProfileRow, ReactionChange, ReactionRow, ReadRow, RoleRow, Sent, TargetKind,
};
pub use convert::tables;
pub use engine::{Conflict, Error, Result, Row, Stmt, Value};
pub use events::{EventRow, NewEvent, PositionRow};
pub use exports::{ExportRow, ImportRow};
pub use federation::{KeyTrialQuery, KeyTrialRow, NewForeignSession, PublicKeyTrial, TrialRef};
pub use keymaterial::KeyMaterialRow;
pub use media::{
    AttachmentMeta, AttachmentRow, NewResource, ResourceOrder, ResourceRow, Stored, Thumbnail,
};
pub use migration::{GrantRow, RedirectRow};
pub use mls::{
    Claim, ClaimedRow, JoinRequestRow, KeyPackageRow, MlsGroupRow, MlsMemberRow, MlsProposalRow,
};
pub use server_certs::ServerCertRow;
pub use services::ServiceRow;
pub use sessions::{NewSession, SessionGuard, SessionRow};
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

    /// A transaction that may be committed together with others queued at the same time
    /// (PostgreSQL; SQLite's writer groups every write): for writes that queue behind one
    /// row, such as appends to one busy stream.
    async fn grouped_rows(&self, stmts: Vec<Stmt>) -> Result<Vec<(u64, Vec<Row>)>> {
        match &self.engine {
            Engine::Sqlite(e) => e.transaction(stmts).await,
            Engine::Postgres(e) => Box::pin(e.grouped(stmts)).await,
        }
    }

    /// The PostgreSQL engine, for the few verbs that take a path of their own there.
    fn postgres(&self) -> Option<&postgres::Postgres> {
        match &self.engine {
            Engine::Postgres(e) => Some(e),
            Engine::Sqlite(_) => None,
        }
    }

    /// Several reads that see one committed state of the database (a read transaction):
    /// the rows of each, in order.
    async fn read_together(&self, reads: Vec<(&'static str, Vec<Value>)>) -> Result<Vec<Vec<Row>>> {
        match &self.engine {
            Engine::Sqlite(e) => e.read_together(reads).await,
            Engine::Postgres(e) => Box::pin(e.read_together(reads)).await,
        }
    }

    /// A transaction whose row counts nobody needs.
    async fn commit(&self, stmts: Vec<Stmt>) -> Result<()> {
        self.transaction_rows(stmts).await.map(|_| ())
    }

    /// A single statement whose row count nobody needs.
    async fn execute_unit(&self, sql: &'static str, params: Vec<Value>) -> Result<()> {
        self.execute(sql, params).await.map(|_| ())
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

    /// Writes a consistent copy of the database, as it is at one moment, to `path` (a file
    /// that must not exist) while the database is in use: SQLite's `VACUUM INTO`, which a
    /// server started on the copy opens as it would the original. PostgreSQL has its own
    /// tools for that (`pg_dump`), so there this is an error.
    pub async fn snapshot_to(&self, path: &Path) -> Result<()> {
        let Some(target) = path.to_str() else {
            return Err(Error::Backend(format!(
                "{} is not a UTF-8 path",
                path.display()
            )));
        };
        match &self.engine {
            Engine::Sqlite(e) => e.query("VACUUM INTO $1", params![target]).await.map(|_| ()),
            Engine::Postgres(_) => Err(Error::Backend(
                "a PostgreSQL database is backed up with pg_dump".into(),
            )),
        }
    }

    /// Round trip to the database, for health checks.
    pub async fn ping(&self) -> Result<()> {
        self.query("SELECT 1", vec![]).await.map(|_| ())
    }
}
