//! SQLite engine: rusqlite on dedicated threads (one writer, a few readers), in WAL mode.
//! The writer commits what queued up during its previous commit as one group.
//!
//! rusqlite on its own threads was 3–10× faster here than an async SQLite driver, and a single
//! writer is what SQLite wants anyway. Tokio talks to the threads over channels.

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};
use tokio::sync::oneshot;

use crate::engine::{Error, Guard, Result, Row, Stmt, Value};
use crate::schema::{BOOTSTRAP, CURRENT_VERSION};

/// Number of read-only connections.
const READERS: usize = 2;

type Reply<T> = oneshot::Sender<Result<T>>;

/// Several reads that must see one state of the database.
pub(crate) type Reads = Vec<(&'static str, Vec<Value>)>;

enum Job {
    Query(&'static str, Vec<Value>, Reply<Vec<Row>>),
    /// Reads in one read transaction (one WAL snapshot).
    Read(Reads, Reply<Vec<Vec<Row>>>),
    Tx(Vec<Stmt>, Reply<Vec<(u64, Vec<Row>)>>),
    Batch(String, Reply<()>),
}

#[derive(Clone)]
pub struct Sqlite {
    writer: mpsc::Sender<Job>,
    readers: mpsc::Sender<Job>,
}

/// Durability of acknowledged writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// fsync on every commit: survives power loss.
    Full,
    /// fsync at checkpoints: survives a crash of the process, not of the machine.
    Normal,
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Int(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Value::Blob(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            Value::Int(None) | Value::Text(None) | Value::Blob(None) => {
                ToSqlOutput::Borrowed(ValueRef::Null)
            }
        })
    }
}

fn map_err(e: rusqlite::Error) -> Error {
    if let rusqlite::Error::SqliteFailure(f, msg) = &e
        && f.code == rusqlite::ErrorCode::ConstraintViolation
        && matches!(f.extended_code, 1555 | 2067)
    {
        return Error::Unique(msg.clone().unwrap_or_default());
    }
    Error::Backend(e.to_string())
}

/// `$1` → `?1`: SQLite numbers `$name` parameters by first appearance, `?N` by N.
fn translate(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

thread_local! {
    /// Statements as SQLite spells them, by the address of their text: every statement is a
    /// `&'static str`, so each is translated once per thread, not at every run.
    static TRANSLATED: std::cell::RefCell<std::collections::HashMap<(usize, usize), String>> =
        Default::default();
}

fn run(conn: &Connection, sql: &'static str, params: &[Value]) -> Result<(Vec<Row>, u64)> {
    let mut stmt = TRANSLATED
        .with_borrow_mut(|t| {
            let sql = t
                .entry((sql.as_ptr() as usize, sql.len()))
                .or_insert_with(|| translate(sql));
            conn.prepare_cached(sql)
        })
        .map_err(map_err)?;
    if stmt.column_count() == 0 {
        let n = stmt
            .execute(rusqlite::params_from_iter(params))
            .map_err(map_err)?;
        return Ok((Vec::new(), n as u64));
    }
    let columns = stmt.column_count();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(map_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(map_err)? {
        let mut cells = Vec::with_capacity(columns);
        for i in 0..columns {
            cells.push(match row.get_ref(i).map_err(map_err)? {
                ValueRef::Null => Value::Int(None),
                ValueRef::Integer(v) => Value::Int(Some(v)),
                ValueRef::Real(v) => Value::Int(Some(v as i64)),
                ValueRef::Text(t) => Value::Text(Some(String::from_utf8_lossy(t).into_owned())),
                ValueRef::Blob(b) => Value::Blob(Some(b.to_vec())),
            });
        }
        out.push(Row(cells));
    }
    let n = out.len() as u64;
    Ok((out, n))
}

fn transaction(conn: &mut Connection, stmts: &[Stmt]) -> Result<Vec<(u64, Vec<Row>)>> {
    let tx = conn.transaction().map_err(map_err)?;
    let counts = statements(&tx, stmts)?; // an error drops `tx`, which rolls back
    tx.commit().map_err(map_err)?;
    Ok(counts)
}

/// The statements of one transaction, each checked against its guard.
fn statements(conn: &Connection, stmts: &[Stmt]) -> Result<Vec<(u64, Vec<Row>)>> {
    let mut counts = Vec::with_capacity(stmts.len());
    for s in stmts {
        let (rows, n) = run(conn, s.sql, &s.params)?;
        Guard::check(s.guard.as_ref(), n)?;
        counts.push((n, rows));
    }
    Ok(counts)
}

fn serve(mut conn: Connection, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        match job {
            Job::Query(sql, params, reply) => {
                let _ = reply.send(run(&conn, sql, &params).map(|(rows, _)| rows));
            }
            Job::Read(reads, reply) => {
                let _ = reply.send(read_together(&mut conn, &reads));
            }
            Job::Tx(stmts, reply) => {
                let _ = reply.send(transaction(&mut conn, &stmts));
            }
            Job::Batch(sql, reply) => {
                let _ = reply.send(conn.execute_batch(&sql).map_err(map_err));
            }
        }
    }
}

/// Most writes committed together.
const GROUP_MAX: usize = 256;

/// A job of a group, done in its savepoint, waiting for the group's commit to be answered:
/// with its own refusal if it was refused (answered after the commit too, so that what the
/// caller reads next sees the group's writes), else with its result once committed.
enum Done {
    Query(Reply<Vec<Row>>, Result<Vec<Row>>),
    Tx(Reply<Vec<(u64, Vec<Row>)>>, Result<Vec<(u64, Vec<Row>)>>),
    Read(Reply<Vec<Vec<Row>>>, Result<Vec<Vec<Row>>>),
    Batch(Reply<()>, Result<()>),
}

fn answer<T>(reply: Reply<T>, done: Result<T>, commit: &Result<()>) {
    let _ = reply.send(match (done, commit) {
        (Err(refused), _) => Err(refused),
        (Ok(out), Ok(())) => Ok(out),
        (Ok(_), Err(e)) => Err(Error::Backend(e.to_string())),
    });
}

impl Done {
    fn answer(self, commit: &Result<()>) {
        match self {
            Done::Query(reply, r) => answer(reply, r, commit),
            Done::Tx(reply, r) => answer(reply, r, commit),
            Done::Read(reply, r) => answer(reply, r, commit),
            Done::Batch(reply, r) => answer(reply, r, commit),
        }
    }
}

/// The writer: what queued up while the previous commit ran is committed together, each
/// write in its own savepoint (a refused one rolls back alone), with one fsync for all. A
/// write is answered only after the commit that holds it: acknowledged means durable.
fn serve_writer(mut conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match jobs.try_recv() {
                Ok(Job::Batch(sql, reply)) => {
                    // Schema changes run alone, after the group before them.
                    write_group(&mut conn, std::mem::take(&mut group));
                    let _ = reply.send(conn.execute_batch(&sql).map_err(map_err));
                }
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        write_group(&mut conn, group);
    }
}

fn write_group(conn: &mut Connection, group: Vec<Job>) {
    match group.len() {
        0 => return,
        1 => {
            // Alone: its own transaction, no savepoint needed.
            if let Some(job) = group.into_iter().next() {
                run_job(conn, job);
            }
            return;
        }
        _ => {}
    }
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let e = map_err(e);
        for job in group {
            fail(job, Error::Backend(e.to_string()));
        }
        return;
    }
    let done: Vec<Done> = group
        .into_iter()
        .map(|job| match job {
            Job::Query(sql, params, reply) => Done::Query(
                reply,
                in_savepoint(conn, |c| run(c, sql, &params)).map(|(rows, _)| rows),
            ),
            Job::Tx(stmts, reply) => Done::Tx(reply, in_savepoint(conn, |c| statements(c, &stmts))),
            Job::Batch(sql, reply) => Done::Batch(
                reply,
                in_savepoint(conn, |c| c.execute_batch(&sql).map_err(map_err)),
            ),
            Job::Read(reads, reply) => Done::Read(
                reply,
                in_savepoint(conn, |c| {
                    reads
                        .iter()
                        .map(|(sql, p)| run(c, sql, p).map(|(rows, _)| rows))
                        .collect()
                }),
            ),
        })
        .collect();
    let outcome = conn.execute_batch("COMMIT").map_err(map_err);
    if outcome.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for d in done {
        d.answer(&outcome);
    }
}

/// Reads in one transaction: every one of them sees the same committed state.
fn read_together(conn: &mut Connection, reads: &Reads) -> Result<Vec<Vec<Row>>> {
    let tx = conn.transaction().map_err(map_err)?;
    let out = reads
        .iter()
        .map(|(sql, params)| run(&tx, sql, params).map(|(rows, _)| rows))
        .collect::<Result<Vec<_>>>()?;
    tx.commit().map_err(map_err)?;
    Ok(out)
}

/// `f` inside a savepoint of the open transaction: kept on success, undone on failure.
fn in_savepoint<T>(conn: &mut Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let sp = conn.savepoint().map_err(map_err)?;
    let out = f(&sp)?; // an error drops `sp`, which rolls back to it
    sp.commit().map_err(map_err)?;
    Ok(out)
}

fn run_job(conn: &mut Connection, job: Job) {
    match job {
        Job::Query(sql, params, reply) => {
            let _ = reply.send(run(conn, sql, &params).map(|(rows, _)| rows));
        }
        Job::Read(reads, reply) => {
            let _ = reply.send(read_together(conn, &reads));
        }
        Job::Tx(stmts, reply) => {
            let _ = reply.send(transaction(conn, &stmts));
        }
        Job::Batch(sql, reply) => {
            let _ = reply.send(conn.execute_batch(&sql).map_err(map_err));
        }
    }
}

fn fail(job: Job, e: Error) {
    match job {
        Job::Query(_, _, reply) => drop(reply.send(Err(e))),
        Job::Read(_, reply) => drop(reply.send(Err(e))),
        Job::Tx(_, reply) => drop(reply.send(Err(e))),
        Job::Batch(_, reply) => drop(reply.send(Err(e))),
    }
}

fn spawn(conn: Connection, rx: Arc<Mutex<mpsc::Receiver<Job>>>, name: String) -> Result<()> {
    thread::Builder::new()
        .name(name)
        .spawn(move || serve(conn, rx))
        .map(|_| ())
        .map_err(|e| Error::Backend(e.to_string()))
}

/// Creates an empty `path` readable by its owner only, whatever the umask; an existing file
/// is left as it is.
fn create_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Backend(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

impl Sqlite {
    /// Opens (creating if needed) the database file at `path`. A new file is created 0600:
    /// it holds password hashes and TOTP secrets, and SQLite gives `-wal` and `-shm` the
    /// database's own mode.
    pub fn open(path: &Path, sync: Sync) -> Result<Self> {
        create_private(path)?;
        let writer = Connection::open(path).map_err(map_err)?;
        let sync = match sync {
            Sync::Full => "FULL",
            Sync::Normal => "NORMAL",
        };
        // `temp_store = MEMORY`: the savepoints' journals of a large group stay in memory,
        // rather than spilling to a file created and unlinked at every group commit.
        writer
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;
                 PRAGMA busy_timeout = 5000; PRAGMA cache_size = -16000; PRAGMA temp_store = MEMORY;"
            ))
            .map_err(map_err)?;
        let (wtx, wrx) = mpsc::channel();
        thread::Builder::new()
            .name("fugue-sqlite-w".into())
            .spawn(move || serve_writer(writer, wrx))
            .map_err(|e| Error::Backend(e.to_string()))?;

        let (rtx, rrx) = mpsc::channel();
        let rrx = Arc::new(Mutex::new(rrx));
        for i in 0..READERS {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let reader = Connection::open_with_flags(path, flags).map_err(map_err)?;
            reader
                .execute_batch("PRAGMA busy_timeout = 5000;")
                .map_err(map_err)?;
            spawn(reader, rrx.clone(), format!("fugue-sqlite-r{i}"))?;
        }
        Ok(Self {
            writer: wtx,
            readers: rtx,
        })
    }

    async fn ask<T>(tx: &mpsc::Sender<Job>, make: impl FnOnce(Reply<T>) -> Job) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        tx.send(make(reply))
            .map_err(|_| Error::Backend("sqlite worker stopped".into()))?;
        rx.await
            .map_err(|_| Error::Backend("sqlite worker stopped".into()))?
    }

    /// Runs one statement. Plain `SELECT`s go to a reader, everything else to the writer.
    pub async fn query(&self, sql: &'static str, params: Vec<Value>) -> Result<Vec<Row>> {
        let to = if sql.trim_start().starts_with("SELECT") {
            &self.readers
        } else {
            &self.writer
        };
        Self::ask(to, |r| Job::Query(sql, params, r)).await
    }

    pub async fn transaction(&self, stmts: Vec<Stmt>) -> Result<Vec<(u64, Vec<Row>)>> {
        Self::ask(&self.writer, |r| Job::Tx(stmts, r)).await
    }

    /// Reads that see one state of the database, on a reader.
    pub async fn read_together(&self, reads: Reads) -> Result<Vec<Vec<Row>>> {
        Self::ask(&self.readers, |r| Job::Read(reads, r)).await
    }

    /// Applies the migrations newer than the recorded version, each in one transaction with
    /// its bookkeeping row, on the writer thread (the only writer of the file).
    pub async fn migrate(&self, migrations: &[(i64, String)]) -> Result<Vec<i64>> {
        let mut done = Vec::new();
        Self::ask(&self.writer, |r| Job::Batch(BOOTSTRAP.to_owned(), r)).await?;
        let current = Self::ask(&self.writer, |r| Job::Query(CURRENT_VERSION, vec![], r)).await?;
        let current = current
            .first()
            .map(|row| row.i64(0))
            .transpose()?
            .unwrap_or(0);
        for (version, sql) in migrations.iter().filter(|(v, _)| *v > current) {
            let batch = format!(
                "BEGIN;\n{sql};\nINSERT INTO schema_migrations (version, applied_at) VALUES ({version}, 0);\nCOMMIT;"
            );
            Self::ask(&self.writer, |r| Job::Batch(batch, r)).await?;
            done.push(*version);
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dollar_parameters_become_numbered_question_marks() {
        assert_eq!(
            super::translate("a = $1 AND b = $12 OR c = '$'"),
            "a = ?1 AND b = ?12 OR c = '$'"
        );
    }
}
