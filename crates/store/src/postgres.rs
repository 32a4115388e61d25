//! PostgreSQL engine through sqlx (no macros: the same SQL strings serve both engines).

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Column, Executor, PgPool, Row as _, TypeInfo};

use crate::engine::{Error, Guard, Result, Row, Stmt, Value};
use crate::schema::{BOOTSTRAP, CURRENT_VERSION};

#[derive(Clone)]
pub struct Postgres {
    pool: PgPool,
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
        Ok(Self { pool })
    }

    pub async fn query(&self, sql: &'static str, params: Vec<Value>) -> Result<Vec<Row>> {
        let rows = bind(sql, params)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(decode).collect()
    }

    pub async fn transaction(&self, stmts: Vec<Stmt>) -> Result<Vec<(u64, Vec<Row>)>> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
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
            Guard::check(s.guard.as_ref(), n)?; // an error drops `tx`, which rolls back
            counts.push((n, rows));
        }
        tx.commit().await.map_err(map_err)?;
        Ok(counts)
    }

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
