//! Copying a whole store into another one — SQLite to PostgreSQL and back
//! (`fugue admin convert-db`).
//!
//! Both stores are at the same schema version (opening one migrates it), so they have the
//! same tables and columns. Tables are copied in the order the schema creates them (a row's
//! references are there before it), each in pages of [`PAGE`] rows ordered by its primary key
//! (one transaction per page), the values converted to the column types of the destination
//! (a NULL has a type in PostgreSQL). The statements name tables and columns the catalog
//! lists, so they are made at run time — once per distinct text, kept for the process (the
//! engines cache statements by their `'static` text).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::engine::{Error, Result, Row, Stmt, Value};
use crate::schema::MIGRATIONS;
use crate::{Store, params};

/// Rows copied per transaction.
const PAGE: usize = 1000;

/// The bookkeeping table: the destination has its own.
const SKIPPED: &str = "schema_migrations";

/// One column of a table: its name and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    name: String,
    kind: Kind,
}

/// The three kinds of column Fugue's schema uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Blob,
}

/// The tables of the schema, in the order its migrations create them.
pub fn tables() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, sql) in MIGRATIONS {
        for part in sql.split("CREATE TABLE ").skip(1) {
            let name: String = part
                .trim_start_matches("IF NOT EXISTS ")
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != SKIPPED && !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// `sql` as a `'static` statement text: the same text is made once per process.
fn interned(sql: String) -> &'static str {
    static TEXTS: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let mut texts = TEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(text) = texts.get(&sql) {
        return text;
    }
    let text: &'static str = Box::leak(sql.clone().into_boxed_str());
    texts.insert(sql, text);
    text
}

impl Store {
    /// The columns of `table` and its primary key (in key order).
    async fn columns(&self, table: &str) -> Result<(Vec<Column>, Vec<String>)> {
        let rows = match self.postgres() {
            Some(_) => {
                self.query(
                    "SELECT CAST(c.column_name AS TEXT), CAST(c.data_type AS TEXT),
                            CAST(COALESCE((SELECT k.ordinal_position FROM information_schema.key_column_usage k
                              JOIN information_schema.table_constraints t
                                ON t.constraint_name = k.constraint_name AND t.table_schema = k.table_schema
                              WHERE t.constraint_type = 'PRIMARY KEY' AND k.table_schema = c.table_schema
                                AND k.table_name = c.table_name AND k.column_name = c.column_name), 0) AS BIGINT)
                     FROM information_schema.columns c
                     WHERE c.table_schema = current_schema() AND c.table_name = $1
                     ORDER BY c.ordinal_position",
                    params![table],
                )
                .await?
            }
            None => {
                self.query(
                    "SELECT name, type, pk FROM pragma_table_info($1) ORDER BY cid",
                    params![table],
                )
                .await?
            }
        };
        let mut columns = Vec::new();
        let mut key: Vec<(i64, String)> = Vec::new();
        for r in &rows {
            let name = r.string(0)?;
            let kind = match r.string(1)?.to_ascii_uppercase().as_str() {
                "BIGINT" | "INTEGER" | "INT" => Kind::Int,
                "TEXT" => Kind::Text,
                "BLOB" | "BYTEA" => Kind::Blob,
                other => return Err(Error::Decode(format!("{table}.{name}: type {other}"))),
            };
            let pk = r.i64(2)?;
            if pk > 0 {
                key.push((pk, name.clone()));
            }
            columns.push(Column { name, kind });
        }
        if columns.is_empty() {
            return Err(Error::Decode(format!("no table {table}")));
        }
        key.sort();
        Ok((columns, key.into_iter().map(|(_, n)| n).collect()))
    }

    /// Up to [`PAGE`] rows of `table` after `after` (the primary key of the last row of the
    /// previous page), ordered by the key; every row when the table has no key.
    async fn page(
        &self,
        table: &str,
        columns: &[Column],
        key: &[String],
        after: Option<&[Value]>,
    ) -> Result<Vec<Row>> {
        let list = columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if key.is_empty() {
            return self
                .query(interned(format!("SELECT {list} FROM {table}")), Vec::new())
                .await;
        }
        let order = key.join(", ");
        match after {
            None => {
                self.query(
                    interned(format!(
                        "SELECT {list} FROM {table} ORDER BY {order} LIMIT {PAGE}"
                    )),
                    Vec::new(),
                )
                .await
            }
            Some(last) => {
                let marks = (1..=key.len())
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.query(
                    interned(format!(
                        "SELECT {list} FROM {table} WHERE ({order}) > ({marks}) ORDER BY {order} LIMIT {PAGE}"
                    )),
                    last.to_vec(),
                )
                .await
            }
        }
    }

    /// Whether every table of the schema is empty.
    pub async fn is_empty(&self) -> Result<bool> {
        for table in tables() {
            let rows = self
                .query(
                    interned(format!("SELECT 1 FROM {table} LIMIT 1")),
                    Vec::new(),
                )
                .await?;
            if !rows.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Every row of `table`, ordered by its primary key (a comparison of two stores).
    pub async fn rows_of(&self, table: &str) -> Result<Vec<Row>> {
        let (columns, key) = self.columns(table).await?;
        let mut out: Vec<Row> = Vec::new();
        loop {
            let last = out.last().map(|r| key_of(r, &columns, &key));
            let page = self.page(table, &columns, &key, last.as_deref()).await?;
            let done = key.is_empty() || page.len() < PAGE;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// Copies every row of this store into `dest`, which must be empty; `progress` hears of
    /// each table with the rows copied. The tables and their row counts.
    pub async fn copy_into(
        &self,
        dest: &Store,
        mut progress: impl FnMut(&str, u64),
    ) -> Result<Vec<(String, u64)>> {
        if !dest.is_empty().await? {
            return Err(Error::Backend(
                "the destination database is not empty: convert into a new one".into(),
            ));
        }
        let mut counts = Vec::new();
        for table in tables() {
            let (columns, key) = self.columns(&table).await?;
            let (dest_columns, _) = dest.columns(&table).await?;
            if dest_columns
                .iter()
                .map(|c| &c.name)
                .ne(columns.iter().map(|c| &c.name))
            {
                return Err(Error::Decode(format!(
                    "{table}: the two databases' columns differ"
                )));
            }
            let insert = interned(format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                (1..=columns.len())
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let mut copied = 0u64;
            let mut last: Option<Vec<Value>> = None;
            loop {
                let page = self.page(&table, &columns, &key, last.as_deref()).await?;
                let done = key.is_empty() || page.len() < PAGE;
                last = page.last().map(|r| key_of(r, &columns, &key));
                let stmts = page
                    .iter()
                    .map(|r| {
                        let values =
                            r.0.iter()
                                .zip(&dest_columns)
                                .map(|(v, c)| typed(v, c.kind))
                                .collect::<Result<Vec<_>>>()?;
                        Ok(Stmt::new(insert, values))
                    })
                    .collect::<Result<Vec<_>>>()?;
                copied += stmts.len() as u64;
                if !stmts.is_empty() {
                    dest.transaction(stmts).await?;
                }
                if done {
                    break;
                }
            }
            progress(&table, copied);
            counts.push((table, copied));
        }
        Ok(counts)
    }
}

/// The primary key values of `row`.
fn key_of(row: &Row, columns: &[Column], key: &[String]) -> Vec<Value> {
    key.iter()
        .filter_map(|k| columns.iter().position(|c| &c.name == k))
        .filter_map(|i| row.0.get(i).cloned())
        .collect()
}

/// `v` as a value of a `kind` column (a NULL read from SQLite has no type of its own).
fn typed(v: &Value, kind: Kind) -> Result<Value> {
    Ok(match (v, kind) {
        (Value::Int(v), Kind::Int) => Value::Int(*v),
        (Value::Text(v), Kind::Text) => Value::Text(v.clone()),
        (Value::Blob(v), Kind::Blob) => Value::Blob(v.clone()),
        (Value::Text(None) | Value::Blob(None), Kind::Int) => Value::Int(None),
        (Value::Int(None) | Value::Blob(None), Kind::Text) => Value::Text(None),
        (Value::Int(None) | Value::Text(None), Kind::Blob) => Value::Blob(None),
        (other, kind) => {
            return Err(Error::Decode(format!("{other:?} in a {kind:?} column")));
        }
    })
}
