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
    /// A guarded statement of a transaction did not affect the number of rows it must; the
    /// whole transaction was rolled back. The statement names what that means, so the
    /// order of statements inside the store never changes what a caller sees.
    #[error("the data changed concurrently or a precondition failed: {0}")]
    Conflict(Conflict),
    /// A row did not have the shape the query promised.
    #[error("unexpected row shape: {0}")]
    Decode(String),
    #[error("database error: {0}")]
    Backend(String),
}

/// Why a guarded write was refused: the precondition its guarded statement stands for.
/// Each store verb documents which of these it can return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// The actor the write is about does not exist, or no longer in the state the write
    /// needs (a deleted account cannot be deleted again).
    #[error("no such actor")]
    ActorMissing,
    /// The invite is unknown, used up or expired.
    #[error("the invite is not usable")]
    InviteUnusable,
    /// The actor would have more live sessions than allowed.
    #[error("too many live sessions")]
    TooManySessions,
    /// The session is no longer active, or no longer holds the certificate the change was
    /// based on.
    #[error("the session changed")]
    SessionChanged,
    /// The actor's key-material slots are all taken.
    #[error("no key-material slot left")]
    KeyMaterialSlotsFull,
    /// The actor has as many failed second-factor attempts on record as allowed.
    #[error("too many failed attempts")]
    TooManyAttempts,
    /// The actor lists as many service providers as allowed.
    #[error("too many service providers")]
    TooManyServices,
    /// A service provider is not listed (or no longer with the primary flag the change was
    /// based on).
    #[error("the service provider is not listed")]
    ServiceNotListed,
    /// The stream an event was to be written to has no row (its guild or conversation is
    /// gone).
    #[error("no such stream")]
    StreamMissing,
    /// The guild does not exist or was deleted.
    #[error("no such guild")]
    GuildMissing,
    /// The channel does not exist in that guild.
    #[error("no such channel")]
    ChannelMissing,
    /// The actor is not a member of the guild (or the channel it writes to is gone).
    #[error("not a member of the guild")]
    NotAMember,
    /// The actor is a member of the guild already.
    #[error("already a member of the guild")]
    AlreadyMember,
    /// The actor is banned from the guild.
    #[error("banned from the guild")]
    Banned,
    /// The actor is not banned from the guild.
    #[error("not banned from the guild")]
    NotBanned,
    /// The actor no longer owns the guild.
    #[error("not the guild's owner")]
    NotOwner,
    /// The role does not exist in that guild (or the member does not have it).
    #[error("no such role")]
    RoleMissing,
    /// The channel has no overwrite for that target.
    #[error("no such overwrite")]
    OverwriteMissing,
    /// A message was not stored: a repeated nonce, or its author or channel is gone (the
    /// store tells which before it returns).
    #[error("the message was not stored")]
    MessageRefused,
    /// The message does not exist or was deleted.
    #[error("no such message")]
    MessageMissing,
    /// The message was edited or deleted since it was read.
    #[error("the message changed")]
    MessageChanged,
    /// The author signed something about this message with this nonce before (an earlier
    /// version, a change of its reaction).
    #[error("the nonce was used for this message")]
    NonceUsed,
    /// The conversation does not exist or is closed.
    #[error("no such conversation")]
    ConversationMissing,
    /// The conversation has as many members as allowed.
    #[error("the conversation is full")]
    ConversationFull,
    /// The reaction or pin is there already (an addition) or not there (a removal).
    #[error("nothing changed")]
    Unchanged,
    /// The channel has as many pinned messages as allowed.
    #[error("too many pinned messages")]
    PinsFull,
    /// The actor's resources would take more storage than its quota.
    #[error("storage quota exceeded")]
    QuotaExceeded,
    /// The resource does not exist (or is not the actor's).
    #[error("no such resource")]
    ResourceMissing,
    /// The redirect of this source names another target.
    #[error("the redirect names another actor")]
    RedirectElsewhere,
    /// A KeyPackage with this id or reference is stored already.
    #[error("the KeyPackage is stored already")]
    KeyPackageTaken,
    /// The device would keep more KeyPackages than allowed.
    #[error("too many KeyPackages")]
    KeyPackagesFull,
    /// Too many claims in the current window.
    #[error("too many claims")]
    Throttled,
    /// The MLS group id is in use.
    #[error("the group exists already")]
    GroupTaken,
    /// The MLS group is no longer at the epoch the write was made for.
    #[error("the group moved to another epoch")]
    StaleEpoch,
    /// A proposal with this id is pending already.
    #[error("the proposal exists already")]
    ProposalTaken,
    /// The channel is encrypted already.
    #[error("the channel is encrypted already")]
    AlreadyEncrypted,
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
    pub guard: Option<Guard>,
}

/// The row count a statement must affect, and what it means when it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    pub rows: u64,
    pub conflict: Conflict,
}

impl Guard {
    /// [`Error::Conflict`] when a guarded statement changed `n` rows where it had to
    /// change `rows`: the transaction stops and rolls back.
    pub(crate) fn check(guard: Option<&Guard>, n: u64) -> Result<()> {
        match guard {
            Some(g) if g.rows != n => Err(Error::Conflict(g.conflict)),
            _ => Ok(()),
        }
    }
}

impl Stmt {
    pub fn new(sql: &'static str, params: Vec<Value>) -> Self {
        Self {
            sql,
            params,
            guard: None,
        }
    }

    /// The statement must change exactly `n` rows; say what it means when it does not with
    /// [`Affects::or`]: `Stmt::new(..).affects(1).or(Conflict::ActorMissing)`.
    pub fn affects(self, n: u64) -> Affects {
        Affects {
            stmt: self,
            rows: n,
        }
    }
}

/// A statement waiting for the [`Conflict`] its guard stands for. It is not a [`Stmt`] until
/// it has one, so no guard can go unnamed.
#[must_use = "a guarded statement needs `.or(Conflict::..)`"]
#[derive(Debug)]
pub struct Affects {
    stmt: Stmt,
    rows: u64,
}

impl Affects {
    /// Rolls the transaction back with [`Error::Conflict`]`(conflict)` unless the statement
    /// changed the required number of rows.
    pub fn or(mut self, conflict: Conflict) -> Stmt {
        self.stmt.guard = Some(Guard {
            rows: self.rows,
            conflict,
        });
        self.stmt
    }
}
