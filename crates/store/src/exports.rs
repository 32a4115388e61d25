//! Persistence for data exports and imports (core §7.3): the archives built for an actor
//! and the keys it proved, and the outcome of each import.

use crate::engine::{Result, Row};
use crate::{Store, params};

/// An export being built, built, or failed: the archive of `actor_id`'s data tied to the
/// certificates `serials` (ascending, comma-separated), stored as object `object_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    pub id: String,
    pub actor_id: i64,
    pub serials: String,
    /// `building`, `ready` or `failed`.
    pub state: String,
    pub object_key: Option<String>,
    pub size: Option<i64>,
    pub file_name: String,
    pub error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// An import of `actor_id` and what came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    pub id: String,
    pub actor_id: i64,
    /// `running`, `done` or `failed`.
    pub state: String,
    pub messages: i64,
    pub resources: i64,
    /// What the import reports (JSON: a list of notes).
    pub report: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

macro_rules! export_columns {
    () => {
        "id, actor_id, serials, state, object_key, size, file_name, error, created_at, finished_at"
    };
}

fn export(r: &Row) -> Result<ExportRow> {
    Ok(ExportRow {
        id: r.string(0)?,
        actor_id: r.i64(1)?,
        serials: r.string(2)?,
        state: r.string(3)?,
        object_key: r.opt_string(4)?,
        size: r.opt_i64(5)?,
        file_name: r.string(6)?,
        error: r.opt_string(7)?,
        created_at: r.i64(8)?,
        finished_at: r.opt_i64(9)?,
    })
}

macro_rules! import_columns {
    () => {
        "id, actor_id, state, messages, resources, report, created_at, finished_at"
    };
}

fn import(r: &Row) -> Result<ImportRow> {
    Ok(ImportRow {
        id: r.string(0)?,
        actor_id: r.i64(1)?,
        state: r.string(2)?,
        messages: r.i64(3)?,
        resources: r.i64(4)?,
        report: r.string(5)?,
        created_at: r.i64(6)?,
        finished_at: r.opt_i64(7)?,
    })
}

impl Store {
    /// Records an export that starts being built.
    pub async fn insert_export(&self, e: &ExportRow) -> Result<()> {
        self.execute_unit(
            concat!(
                "INSERT INTO data_exports (",
                export_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ),
            params![
                e.id.clone(),
                e.actor_id,
                e.serials.clone(),
                e.state.clone(),
                e.object_key.clone(),
                e.size,
                e.file_name.clone(),
                e.error.clone(),
                e.created_at,
                e.finished_at
            ],
        )
        .await
    }

    /// The newest export of `actor_id` for `serials` started at `since` or later.
    pub async fn latest_export(
        &self,
        actor_id: i64,
        serials: &str,
        since: i64,
    ) -> Result<Option<ExportRow>> {
        self.query(
            concat!(
                "SELECT ",
                export_columns!(),
                " FROM data_exports WHERE actor_id = $1 AND serials = $2 AND created_at >= $3
                 ORDER BY created_at DESC, id LIMIT 1"
            ),
            params![actor_id, serials, since],
        )
        .await?
        .first()
        .map(export)
        .transpose()
    }

    /// The export `id` is built: its archive is object `object_key` of `size` bytes.
    /// `false` when the export is gone meanwhile (its data deleted).
    pub async fn finish_export(
        &self,
        id: &str,
        object_key: &str,
        size: i64,
        now: i64,
    ) -> Result<bool> {
        self.execute(
            "UPDATE data_exports SET state = 'ready', object_key = $2, size = $3, finished_at = $4
             WHERE id = $1",
            params![id, object_key, size, now],
        )
        .await
        .map(|n| n > 0)
    }

    /// The export `id` failed, for `error`.
    pub async fn fail_export(&self, id: &str, error: &str, now: i64) -> Result<()> {
        self.execute_unit(
            "UPDATE data_exports SET state = 'failed', error = $2, finished_at = $3 WHERE id = $1",
            params![id, error, now],
        )
        .await
    }

    /// Exports started before `before` (to delete), or every export of `actor_id`.
    pub async fn exports_to_drop(
        &self,
        before: i64,
        actor_id: Option<i64>,
    ) -> Result<Vec<ExportRow>> {
        self.query(
            concat!(
                "SELECT ",
                export_columns!(),
                " FROM data_exports WHERE created_at < $1 OR actor_id = $2 ORDER BY created_at"
            ),
            params![before, actor_id],
        )
        .await?
        .iter()
        .map(export)
        .collect()
    }

    /// Forgets export `id` (its object is the caller's to delete).
    pub async fn delete_export(&self, id: &str) -> Result<()> {
        self.execute_unit("DELETE FROM data_exports WHERE id = $1", params![id])
            .await
    }

    /// Records an import that starts.
    pub async fn insert_import(&self, i: &ImportRow) -> Result<()> {
        self.execute_unit(
            concat!(
                "INSERT INTO data_imports (",
                import_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            params![
                i.id.clone(),
                i.actor_id,
                i.state.clone(),
                i.messages,
                i.resources,
                i.report.clone(),
                i.created_at,
                i.finished_at
            ],
        )
        .await
    }

    /// What came of import `i.id` (its state, counts, report and end).
    pub async fn finish_import(&self, i: &ImportRow) -> Result<()> {
        self.execute_unit(
            "UPDATE data_imports SET state = $2, messages = $3, resources = $4, report = $5,
                 finished_at = $6
             WHERE id = $1",
            params![
                i.id.clone(),
                i.state.clone(),
                i.messages,
                i.resources,
                i.report.clone(),
                i.finished_at
            ],
        )
        .await
    }

    /// Imports started before `before` and still running — their node stopped — end as
    /// failed with `note`, at `now`. How many.
    pub async fn fail_stale_imports(&self, before: i64, now: i64, note: &str) -> Result<u64> {
        self.execute(
            "UPDATE data_imports SET state = 'failed', report = $3, finished_at = $2
             WHERE state = 'running' AND created_at < $1",
            params![before, now, note],
        )
        .await
    }

    /// The newest `limit` imports of `actor_id`, newest first.
    pub async fn imports_of(&self, actor_id: i64, limit: i64) -> Result<Vec<ImportRow>> {
        self.query(
            concat!(
                "SELECT ",
                import_columns!(),
                " FROM data_imports WHERE actor_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
            ),
            params![actor_id, limit],
        )
        .await?
        .iter()
        .map(import)
        .collect()
    }
}
