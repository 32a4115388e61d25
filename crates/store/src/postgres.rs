//! PostgreSQL engine through sqlx (no macros: the same SQL strings serve both engines).
//!
//! Writes that queue behind one stream's row lock (chat messages) go through
//! [`Postgres::grouped`] and [`Postgres::bulk`]: one committer task takes everything queued
//! while it committed the previous group and commits it as one transaction, so one WAL
//! flush covers many writes instead of each waiting for its own. Round trips are what a
//! group costs here (each statement waits for the server), so rows of a bulk statement
//! queued together run as one statement.

use std::sync::{Arc, Mutex};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Column, Executor, PgPool, Row as _, TypeInfo};
use tokio::sync::{mpsc, oneshot};

use crate::engine::{Error, Guard, Result, Row, Stmt, Value};
use crate::schema::{BOOTSTRAP, CURRENT_VERSION};

/// Most writes committed together.
const GROUP_MAX: usize = 256;

type TxResult = Result<Vec<(u64, Vec<Row>)>>;

/// One row for a statement that takes its rows as arrays, one array per column
/// (`… FROM UNNEST($1::int8[], $2::text[], …) WITH ORDINALITY AS t(…, ord)`): rows queued
/// with the same statement run as one. The statement answers rows whose first column is the
/// ordinal (1-based) of the row they belong to; a row it answers nothing for was skipped
/// (refused by the statement's own conditions).
#[derive(Debug, Clone)]
pub struct BulkRow {
    pub sql: &'static str,
    /// One value per column, typed as the array it goes into.
    pub values: Vec<Value>,
}

#[derive(Clone)]
enum Work {
    Stmts(Vec<Stmt>),
    Bulk(BulkRow),
}

struct Queued {
    work: Work,
    reply: oneshot::Sender<TxResult>,
}

/// The queue of the committer task, started on first use (and again should the runtime it
/// ran on be gone).
#[derive(Default)]
struct Group {
    committer: Mutex<Option<mpsc::UnboundedSender<Queued>>>,
}

#[derive(Clone)]
pub struct Postgres {
    pool: PgPool,
    group: Arc<Group>,
}

fn map_err(e: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &e
        && db.code().as_deref() == Some("23505")
    {
        return Error::Unique(db.constraint().unwrap_or_default().to_owned());
    }
    Error::Backend(e.to_string())
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn bind(sql: &'static str, params: Vec<Value>) -> PgQuery<'static> {
    let mut q = sqlx::query(sql);
    for p in params {
        q = match p {
            Value::Int(v) => q.bind(v),
            Value::Text(v) => q.bind(v),
            Value::Blob(v) => q.bind(v),
        };
    }
    q
}

fn decode(row: &PgRow) -> Result<Row> {
    let mut cells = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let d = |e: sqlx::Error| Error::Decode(e.to_string());
        cells.push(match col.type_info().name() {
            "INT8" => Value::Int(row.try_get::<Option<i64>, _>(i).map_err(d)?),
            "INT4" => Value::Int(row.try_get::<Option<i32>, _>(i).map_err(d)?.map(i64::from)),
            "INT2" => Value::Int(row.try_get::<Option<i16>, _>(i).map_err(d)?.map(i64::from)),
            "BOOL" => Value::Int(row.try_get::<Option<bool>, _>(i).map_err(d)?.map(i64::from)),
            "BYTEA" => Value::Blob(row.try_get::<Option<Vec<u8>>, _>(i).map_err(d)?),
            _ => Value::Text(row.try_get::<Option<String>, _>(i).map_err(d)?),
        });
    }
    Ok(Row(cells))
}

impl Postgres {
    /// Connects to `url`; with `schema`, every connection works in that schema (created if
    /// missing), which gives tests a fresh database per run.
    pub async fn connect(url: &str, schema: Option<&str>, max_connections: u32) -> Result<Self> {
        let mut opts: PgConnectOptions = url.parse().map_err(map_err)?;
        if let Some(schema) = schema {
            if !schema
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(Error::Backend(
                    "schema names are limited to [A-Za-z0-9_]".into(),
                ));
            }
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(opts.clone())
                .await
                .map_err(map_err)?;
            let created = admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "CREATE SCHEMA IF NOT EXISTS {schema}"
                )))
                .await
                .map_err(map_err);
            // Two connections creating the same schema at once: one of them loses the race
            // on the catalog's unique index, and the schema exists either way.
            match created {
                Ok(_) | Err(Error::Unique(_)) => {}
                Err(e) => return Err(e),
            }
            admin.close().await;
            opts = opts.options([("search_path", schema)]);
        }
        // Every statement here is parameterized OLTP by key, written once for both engines:
        // generic plans fit them, and a custom plan per execution costs more than the
        // statement itself (the bulk send planned ~1 ms for every group).
        opts = opts.options([("plan_cache_mode", "force_generic_plan")]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .test_before_acquire(false)
            .connect_with(opts)
            .await
            .map_err(map_err)?;
        Ok(Self {
            pool,
            group: Arc::default(),
        })
    }

    pub async fn query(&self, sql: &'static str, params: Vec<Value>) -> Result<Vec<Row>> {
        let rows = bind(sql, params)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(decode).collect()
    }

    pub async fn transaction(&self, stmts: Vec<Stmt>) -> Result<Vec<(u64, Vec<Row>)>> {
        transaction(&self.pool, stmts).await
    }

    /// Reads that see one state of the database: one read-only, repeatable-read transaction.
    pub async fn read_together(
        &self,
        reads: Vec<(&'static str, Vec<Value>)>,
    ) -> Result<Vec<Vec<Row>>> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(map_err)?;
        let mut out = Vec::with_capacity(reads.len());
        for (sql, params) in reads {
            let rows = bind(sql, params)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?;
            out.push(rows.iter().map(decode).collect::<Result<Vec<Row>>>()?);
        }
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    /// A transaction committed together with the others queued at the same time. All of a
    /// group run in one transaction; if any of them is refused, the group is rolled back and
    /// each runs alone, so a refusal stays its own. Answered after the commit that holds it.
    pub async fn grouped(&self, stmts: Vec<Stmt>) -> TxResult {
        self.queue(Work::Stmts(stmts)).await
    }

    /// A row of a bulk statement, run with the rows queued at the same time (and committed
    /// with the [`Postgres::grouped`] transactions among them): the rows answered for it,
    /// without their ordinal; none when the statement skipped it.
    pub async fn bulk(&self, row: BulkRow) -> Result<Vec<Row>> {
        let mut out = self.queue(Work::Bulk(row)).await?;
        Ok(out.pop().map(|(_, rows)| rows).unwrap_or_default())
    }

    async fn queue(&self, work: Work) -> TxResult {
        let (reply, rx) = oneshot::channel();
        let job = Queued { work, reply };
        {
            let mut committer = self
                .group
                .committer
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let unsent = match committer.as_ref() {
                Some(tx) => tx.send(job).err().map(|mpsc::error::SendError(back)| back),
                None => Some(job),
            };
            if let Some(job) = unsent {
                let (tx, jobs) = mpsc::unbounded_channel();
                tokio::spawn(commit_queue(self.pool.clone(), jobs));
                // The receiver was just made and lives in the task: this send succeeds.
                let _ = tx.send(job);
                *committer = Some(tx);
            }
        }
        rx.await
            .unwrap_or_else(|_| Err(Error::Backend("the group commit failed".into())))
    }
}

/// Takes what queued while the previous group committed (at most [`GROUP_MAX`]) and commits
/// it as the next group, until every sender is gone. On a task of its own: a caller that goes
/// away must not take the others' writes with it. (Two groups in flight were measured
/// slower: smaller groups contending for the same stream row.)
async fn commit_queue(pool: PgPool, mut rx: mpsc::UnboundedReceiver<Queued>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        commit_group(pool.clone(), jobs).await;
    }
}

/// Commits `jobs` as one transaction, or each alone when one of them is refused.
async fn commit_group(pool: PgPool, jobs: Vec<Queued>) {
    if jobs.len() > 1 {
        let all: Vec<Work> = jobs.iter().map(|j| j.work.clone()).collect();
        if let Ok(results) = together(&pool, all).await {
            for (job, r) in jobs.into_iter().zip(results) {
                let _ = job.reply.send(Ok(r));
            }
            return;
        }
    }
    for job in jobs {
        let r = match job.work {
            Work::Stmts(stmts) => transaction(&pool, stmts).await,
            work @ Work::Bulk(_) => together(&pool, vec![work])
                .await
                .map(|mut r| r.pop().unwrap_or_default()),
        };
        let _ = job.reply.send(r);
    }
}

/// The rows of one bulk statement, each with the index of the job it belongs to.
type BulkJobs = Vec<(usize, Vec<Value>)>;

/// Several transactions' work in one transaction: the rows of each bulk statement first (one
/// statement per distinct statement), then the others' statements in order. Bulk rows alone
/// need no transaction block: one statement is one transaction.
async fn together(pool: &PgPool, all: Vec<Work>) -> Result<Vec<Vec<(u64, Vec<Row>)>>> {
    let mut out: Vec<Vec<(u64, Vec<Row>)>> = vec![Vec::new(); all.len()];
    let mut bulks: Vec<(&'static str, BulkJobs)> = Vec::new();
    let mut stmts = Vec::new();
    for (i, work) in all.into_iter().enumerate() {
        match work {
            Work::Stmts(s) => stmts.push((i, s)),
            Work::Bulk(row) => match bulks.iter_mut().find(|(sql, _)| *sql == row.sql) {
                Some((_, rows)) => rows.push((i, row.values)),
                None => bulks.push((row.sql, vec![(i, row.values)])),
            },
        }
    }
    let answer = |out: &mut Vec<Vec<(u64, Vec<Row>)>>, jobs: &BulkJobs, rows| {
        for (ord, row) in by_ordinal(rows, jobs.len())?.into_iter().enumerate() {
            out[jobs[ord].0] = vec![(row.len() as u64, row)];
        }
        Ok::<_, Error>(())
    };
    if stmts.is_empty() && bulks.len() == 1 {
        let (sql, jobs) = &bulks[0];
        let rows = bind_columns(sql, jobs)
            .fetch_all(pool)
            .await
            .map_err(map_err)?;
        answer(&mut out, jobs, rows)?;
        return Ok(out);
    }
    let mut tx = pool.begin().await.map_err(map_err)?;
    for (sql, jobs) in &bulks {
        let rows = bind_columns(sql, jobs)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        answer(&mut out, jobs, rows)?;
    }
    for (i, s) in stmts {
        out[i] = run_in(&mut tx, s).await?;
    }
    tx.commit().await.map_err(map_err)?;
    Ok(out)
}

/// A bulk statement bound with one array per column of `rows`.
fn bind_columns(sql: &'static str, rows: &[(usize, Vec<Value>)]) -> PgQuery<'static> {
    let mut q = sqlx::query(sql);
    let width = rows.first().map_or(0, |(_, r)| r.len());
    for i in 0..width {
        let column = rows.iter().map(|(_, r)| r.get(i));
        q = match rows[0].1[i] {
            Value::Int(_) => q.bind(
                column
                    .map(|v| match v {
                        Some(Value::Int(v)) => *v,
                        _ => None,
                    })
                    .collect::<Vec<Option<i64>>>(),
            ),
            Value::Text(_) => q.bind(
                column
                    .map(|v| match v {
                        Some(Value::Text(v)) => v.clone(),
                        _ => None,
                    })
                    .collect::<Vec<Option<String>>>(),
            ),
            Value::Blob(_) => q.bind(
                column
                    .map(|v| match v {
                        Some(Value::Blob(v)) => v.clone(),
                        _ => None,
                    })
                    .collect::<Vec<Option<Vec<u8>>>>(),
            ),
        };
    }
    q
}

/// A bulk statement's answer sorted to the rows it was given: their ordinal (first column,
/// 1-based) dropped.
fn by_ordinal(rows: Vec<PgRow>, n: usize) -> Result<Vec<Vec<Row>>> {
    let mut out = vec![Vec::new(); n];
    for r in &rows {
        let Row(mut cells) = decode(r)?;
        let ord = match cells.first() {
            Some(Value::Int(Some(o))) => usize::try_from(*o).ok().filter(|o| (1..=n).contains(o)),
            _ => None,
        }
        .ok_or_else(|| Error::Decode("a bulk statement answered an unknown ordinal".into()))?;
        cells.remove(0);
        out[ord - 1].push(Row(cells));
    }
    Ok(out)
}

async fn transaction(pool: &PgPool, stmts: Vec<Stmt>) -> TxResult {
    let mut tx = pool.begin().await.map_err(map_err)?;
    let counts = run_in(&mut tx, stmts).await?; // an error drops `tx`, which rolls back
    tx.commit().await.map_err(map_err)?;
    Ok(counts)
}

/// The statements of one transaction, each checked against its guard.
async fn run_in(tx: &mut sqlx::PgConnection, stmts: Vec<Stmt>) -> TxResult {
    let mut counts = Vec::with_capacity(stmts.len());
    for s in stmts {
        let (n, rows) = if s.sql.contains("RETURNING") {
            let rows = bind(s.sql, s.params)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?;
            let rows = rows.iter().map(decode).collect::<Result<Vec<Row>>>()?;
            (rows.len() as u64, rows)
        } else {
            let n = bind(s.sql, s.params)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
            (n, Vec::new())
        };
        Guard::check(s.guard.as_ref(), n)?;
        counts.push((n, rows));
    }
    Ok(counts)
}

impl Postgres {
    /// Applies the migrations newer than the recorded version in one transaction, holding an
    /// advisory lock: nodes starting together wait for each other, and the version is read
    /// under the lock, so no migration runs twice.
    pub async fn migrate(&self, migrations: &[(i64, String)]) -> Result<Vec<i64>> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        tx.execute("SELECT pg_advisory_xact_lock(4242)")
            .await
            .map_err(map_err)?;
        tx.execute(BOOTSTRAP).await.map_err(map_err)?;
        let current: i64 = sqlx::query_scalar(CURRENT_VERSION)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        let mut done = Vec::new();
        for (version, sql) in migrations.iter().filter(|(v, _)| *v > current) {
            tx.execute(sqlx::AssertSqlSafe(sql.clone()))
                .await
                .map_err(map_err)?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)")
                .bind(*version)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            done.push(*version);
        }
        tx.commit().await.map_err(map_err)?;
        Ok(done)
    }
}
