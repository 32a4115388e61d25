//! The narrow waist between the store's queries and the two database engines.
//!
//! Queries are written once in the SQL both engines share (`$1` parameters, `RETURNING`,
//! `ON CONFLICT`, partial indexes). An engine only executes them: SQLite through rusqlite on
//! dedicated threads, PostgreSQL through sqlx. Values are typed so PostgreSQL sees typed
//! NULLs.

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}
impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(Some(i64::from(v)))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(Some(v.to_owned()))
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(Some(v))
    }
}
impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        Value::Text(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(Some(v))
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Blob(Some(v.to_vec()))
    }
}

/// Builds a parameter list: `params![a, b, c]`.
#[macro_export]
macro_rules! params {
    ($($v:expr),* $(,)?) => { vec![$($crate::engine::Value::from($v)),*] };
}

/// Storage errors. Domain services map `Unique` and `Conflict` to their own errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A unique constraint or primary key was violated.
    #[error("unique constraint violated: {0}")]
    Unique(String),
    /// A guarded statement in a transaction did not affect the expected number of rows; the
    /// whole transaction was rolled back.
    #[error("the data changed concurrently or a precondition failed (statement {0})")]
    Conflict(usize),
    /// A row did not have the shape the query promised.
    #[error("unexpected row shape: {0}")]
    Decode(String),
    #[error("database error: {0}")]
    Backend(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Value> {
        self.0
            .get(i)
            .ok_or_else(|| Error::Decode(format!("no column {i}")))
    }

    pub fn opt_i64(&self, i: usize) -> Result<Option<i64>> {
        match self.cell(i)? {
            Value::Int(v) => Ok(*v),
            Value::Text(None) | Value::Blob(None) => Ok(None),
            other => Err(Error::Decode(format!(
                "column {i}: expected integer, got {other:?}"
            ))),
        }
    }

    pub fn i64(&self, i: usize) -> Result<i64> {
        self.opt_i64(i)?
            .ok_or_else(|| Error::Decode(format!("column {i} is NULL")))
    }

    pub fn bool(&self, i: usize) -> Result<bool> {
        Ok(self.i64(i)? != 0)
    }

    pub fn opt_string(&self, i: usize) -> Result<Option<String>> {
        match self.cell(i)? {
            Value::Text(v) => Ok(v.clone()),
            Value::Int(None) | Value::Blob(None) => Ok(None),
            other => Err(Error::Decode(format!(
                "column {i}: expected text, got {other:?}"
            ))),
        }
    }

    pub fn string(&self, i: usize) -> Result<String> {
        self.opt_string(i)?
            .ok_or_else(|| Error::Decode(format!("column {i} is NULL")))
    }

    pub fn bytes(&self, i: usize) -> Result<Vec<u8>> {
        match self.cell(i)? {
            Value::Blob(Some(v)) => Ok(v.clone()),
            other => Err(Error::Decode(format!(
                "column {i}: expected blob, got {other:?}"
            ))),
        }
    }
}

/// A statement of a transaction, optionally guarded by the number of rows it must affect.
#[derive(Debug, Clone)]
pub struct Stmt {
    pub sql: &'static str,
    pub params: Vec<Value>,
    pub expect_rows: Option<u64>,
}

impl Stmt {
    pub fn new(sql: &'static str, params: Vec<Value>) -> Self {
        Self {
            sql,
            params,
            expect_rows: None,
        }
    }

    /// Roll the transaction back with [`Error::Conflict`] unless exactly `n` rows change.
    pub fn expect(mut self, n: u64) -> Self {
        self.expect_rows = Some(n);
        self
    }
}
