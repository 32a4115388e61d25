//! PostgreSQL engine through sqlx (no macros: the same SQL strings serve both engines).
//!
//! Writes that queue behind one stream's row lock (chat messages) go through
//! [`Postgres::grouped`]: whoever finds no group running commits everything queued as one
//! transaction, so one WAL flush covers many writes instead of each waiting for its own.

use std::sync::{Arc, Mutex};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Column, Executor, PgPool, Row as _, TypeInfo};
use tokio::sync::oneshot;

use crate::engine::{Error, Guard, Result, Row, Stmt, Value};
use crate::schema::{BOOTSTRAP, CURRENT_VERSION};

/// Most writes committed together.
const GROUP_MAX: usize = 256;

type TxResult = Result<Vec<(u64, Vec<Row>)>>;

struct Queued {
    stmts: Vec<Stmt>,
    reply: oneshot::Sender<TxResult>,
}

#[derive(Default)]
struct Group {
    queue: Mutex<Vec<Queued>>,
    /// Held by whoever commits a group; the next one takes what queued meanwhile.
    leader: tokio::sync::Mutex<()>,
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
        let (reply, rx) = oneshot::channel();
        self.group
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Queued { stmts, reply });
        let lead = self.group.leader.lock().await;
        let jobs = {
            let mut q = self.group.queue.lock().unwrap_or_else(|e| e.into_inner());
            let n = q.len().min(GROUP_MAX);
            q.drain(..n).collect::<Vec<_>>()
        };
        if !jobs.is_empty() {
            // On a task of its own: a caller that goes away must not take the others' writes
            // with it.
            let pool = self.pool.clone();
            let _ = tokio::spawn(commit_group(pool, jobs)).await;
        }
        drop(lead);
        // Every caller leads once after queueing, so its write was in this group or in one
        // before; the answer is there (unless that group's task died).
        rx.await
            .unwrap_or_else(|_| Err(Error::Backend("the group commit failed".into())))
    }
}

/// Commits `jobs` as one transaction, or each alone when one of them is refused.
async fn commit_group(pool: PgPool, jobs: Vec<Queued>) {
    if jobs.len() > 1 {
        let all: Vec<Vec<Stmt>> = jobs.iter().map(|j| j.stmts.clone()).collect();
        if let Ok(results) = together(&pool, all).await {
            for (job, r) in jobs.into_iter().zip(results) {
                let _ = job.reply.send(Ok(r));
            }
            return;
        }
    }
    for job in jobs {
        let r = transaction(&pool, job.stmts).await;
        let _ = job.reply.send(r);
    }
}

/// Several transactions' statements in one transaction.
async fn together(pool: &PgPool, all: Vec<Vec<Stmt>>) -> Result<Vec<Vec<(u64, Vec<Row>)>>> {
    let mut tx = pool.begin().await.map_err(map_err)?;
    let mut out = Vec::with_capacity(all.len());
    for stmts in all {
        out.push(run_in(&mut tx, stmts).await?);
    }
    tx.commit().await.map_err(map_err)?;
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
