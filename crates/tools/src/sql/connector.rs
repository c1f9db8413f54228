//! Runs validated statements on the company's databases: reads read-only and bounded, writes
//! previewed and, once approved, run at most once and only if they change exactly the rows
//! their preview showed.
//!
//! - Reads: SQLite opened read-only (`mode=ro`, `query_only`) with per-value size limits;
//!   PostgreSQL in a `READ ONLY` transaction; MySQL/MariaDB in `START TRANSACTION READ ONLY`
//!   on a read-only session. Every backend has the statement timeout, and rows are streamed and
//!   cut at [`MAX_RESULT_BYTES`] while fetching (PostgreSQL and MySQL cut each row on the
//!   server), so no result can exhaust Warden's memory.
//! - Previews run the write in a transaction that is rolled back, with the timeout, after
//!   counting its target rows (at most `max_affected_rows`, or it is refused before it runs);
//!   they record the primary keys of the rows it would change.
//! - Approved writes check, inside their transaction, that they change exactly the previewed
//!   rows, and record their idempotency key (outcome `applied`, with the rows changed) in the
//!   same transaction.
//! - A dispatched write whose outcome a crash left unknown is settled for good by a fence
//!   ([`CompanyDatabase::settle`]): its key is recorded as `fenced` unless the write recorded it, in a
//!   short transaction that waits (boundedly) for a write still holding the key, so "not
//!   applied" means the write can never commit later.
//!
//! The one place dynamic SQL runs: only validated statements are passed in, and
//! `AssertSqlSafe` stands right beside each use.

mod mysql;
mod postgres;
mod sqlite;

use super::{ReadPolicy, Refusal, Rule, SqlDialect, ValidatedWrite, WriteKind, WritePolicy};
use crate::Settlement;
use crate::approval::Approved;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::time::Duration;
use warden_config::{DatabaseConfig, DatabaseLocation};

/// Result JSON returned to a model at most; rows past it are dropped and `truncated` set.
pub const MAX_RESULT_BYTES: usize = 64 * 1024;

/// The largest single value (string or blob) a SQLite statement may build, in bytes.
pub const SQLITE_MAX_VALUE_BYTES: i32 = 256 << 10;

/// The most columns a SQLite result may have: with [`SQLITE_MAX_VALUE_BYTES`], one row takes
/// at most 64 MiB of Warden's memory.
pub const SQLITE_MAX_COLUMNS: i32 = 256;

/// The table where approved writes record their idempotency key, in the same transaction, with
/// its outcome (`applied`, or `fenced` by [`CompanyDatabase::settle`]) and the rows the write changed.
///
/// Older versions made it with `key` and `applied_at` only. It keeps its name and is migrated
/// in place, before its first use by a write or a settlement: the missing columns of
/// [`ADDED_COLUMNS`] are added with `ALTER TABLE … ADD COLUMN` (only when the catalog shows them
/// missing; a concurrent migration that added them first is fine). `outcome` defaults to
/// `applied`, which is what every row an older version wrote means (it recorded keys only in
/// the committed transaction of an applied write), and also what an older node still running
/// beside a newer one keeps writing; `rows_affected` is NULL where unknown. No row is lost, so
/// a write applied before the upgrade is still found: a new table name would forget those rows
/// and let a settlement fence a write that had been applied. Adding a column with a constant
/// default rewrites no rows on SQLite, PostgreSQL (11+), MariaDB (10.3+) and MySQL (8.0).
const IDEMPOTENCY_TABLE: &str = "warden_idempotency";

/// The outcome recorded for a key whose write was applied.
pub(crate) const APPLIED: &str = "applied";

/// The outcome recorded by a settlement for a key whose write was not applied: the write finds
/// it and does not run.
pub(crate) const FENCED: &str = "fenced";

/// The columns of the idempotency table that older versions did not make: name, definition.
pub(crate) const ADDED_COLUMNS: [(&str, &str); 2] = [
    ("outcome", "outcome VARCHAR(16) NOT NULL DEFAULT 'applied'"),
    ("rows_affected", "rows_affected BIGINT"),
];

/// `CREATE TABLE IF NOT EXISTS` for the idempotency table, with `key` as `key_column`.
pub(crate) fn create_idempotency_table(key_column: &str) -> String {
    let added: Vec<&str> = ADDED_COLUMNS.iter().map(|(_, d)| *d).collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {IDEMPOTENCY_TABLE} ({key_column} PRIMARY KEY, applied_at BIGINT NOT NULL, {})",
        added.join(", ")
    )
}

/// The definitions of the columns of [`ADDED_COLUMNS`] that `present` (lower case) lacks.
pub(crate) fn missing_columns(present: &[String]) -> Vec<&'static str> {
    ADDED_COLUMNS
        .iter()
        .filter(|(name, _)| !present.iter().any(|p| p.eq_ignore_ascii_case(name)))
        .map(|(_, definition)| *definition)
        .collect()
}

/// What the idempotency table records for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// [`APPLIED`] or [`FENCED`].
    pub outcome: String,
    /// Rows the write changed (`None` for a fence, or a row an older version wrote).
    pub rows_affected: Option<i64>,
}

impl Recorded {
    /// Reads a row of the idempotency table; a row of a table not migrated yet (no `outcome`
    /// column) is an applied write whose count is unknown.
    pub(crate) fn of<R>(row: &R) -> Result<Self, sqlx::Error>
    where
        R: sqlx::Row,
        for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        &'static str: sqlx::ColumnIndex<R>,
    {
        let outcome = match row.try_get::<String, _>("outcome") {
            Ok(o) => o,
            Err(sqlx::Error::ColumnNotFound(_)) => APPLIED.to_owned(),
            Err(e) => return Err(e),
        };
        let rows_affected = match row.try_get::<Option<i64>, _>("rows_affected") {
            Ok(n) => n,
            Err(sqlx::Error::ColumnNotFound(_)) => None,
            Err(e) => return Err(e),
        };
        Ok(Self {
            outcome,
            rows_affected,
        })
    }

    /// Whether the write was applied.
    pub(crate) fn applied(&self) -> bool {
        self.outcome == APPLIED
    }

    /// The settlement this row records.
    fn settlement(&self) -> Result<Settlement, ReadError> {
        match self.outcome.as_str() {
            // A count older versions did not record reads as 0.
            APPLIED => Ok(Settlement::Applied {
                rows_affected: self.rows_affected.unwrap_or(0).max(0) as u64,
            }),
            FENCED => Ok(Settlement::NotApplied),
            other => Err(unknown_outcome(other)),
        }
    }

    /// What an approved write that finds its key recorded returns: the recorded result of an
    /// applied write (a retry runs nothing), or an error if the key was fenced.
    pub(crate) fn replay(&self, expected: &Expected) -> Result<Executed, ReadError> {
        match self.outcome.as_str() {
            APPLIED => Ok(Executed {
                rows_affected: self
                    .rows_affected
                    .map_or(expected.rows_affected, |n| n.max(0) as u64),
                already_applied: true,
            }),
            FENCED => Err(ReadError::SettledNotApplied),
            other => Err(unknown_outcome(other)),
        }
    }
}

fn unknown_outcome(outcome: &str) -> ReadError {
    ReadError::Database(format!(
        "the idempotency table records an unknown outcome `{outcome}` for this key"
    ))
}

/// A database the SQL tools use.
pub struct CompanyDatabase {
    /// Its configured name.
    pub name: String,
    dialect: SqlDialect,
    policy: ReadPolicy,
    timeout: Duration,
    pool: Pool,
    /// For databases with writable tables: the write policy and a read-write pool.
    write: Option<Writer>,
}

struct Writer {
    policy: WritePolicy,
    pool: Pool,
    max_affected_rows: u64,
}

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    Mysql(sqlx::MySqlPool),
}

/// What an approved write would change, computed in a transaction that is rolled back.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// The statement.
    pub sql: String,
    /// Rows it would change.
    pub rows_affected: u64,
    /// The rows it targets, before (for `UPDATE`/`DELETE`; at most `max_rows`; allowed columns
    /// only).
    pub before: Vec<Value>,
    /// The rows as they would be written (at most `max_rows`; allowed columns only).
    pub after: Vec<Value>,
    /// The primary-key columns that identify the rows.
    pub key_columns: Vec<String>,
    /// The primary keys of the rows an `UPDATE`/`DELETE` would change, sorted.
    pub row_ids: Vec<Value>,
    /// SHA-256 (hex) of `row_ids`: what the approved write must match.
    pub row_ids_sha256: String,
    /// Triggers on the written table (they may change other rows too).
    pub triggers: Vec<String>,
    /// Tables whose foreign keys cascade (or set null/default) from the written one: a write
    /// may change their rows too.
    pub cascades: Vec<String>,
}

/// What an approved write must match when it runs: what its preview recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Rows the preview counted.
    pub rows_affected: u64,
    /// [`Preview::row_ids_sha256`].
    pub row_ids_sha256: Option<String>,
}

/// The result of an approved write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// Rows changed.
    pub rows_affected: u64,
    /// The idempotency key was already recorded: the write had been applied before (a retry
    /// after a crash); nothing ran again.
    pub already_applied: bool,
}

/// The rows a read returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    /// The statement that ran (validated, with its LIMIT).
    pub sql: String,
    /// One JSON object per row.
    pub rows: Vec<Value>,
    /// True when rows were dropped to stay under [`MAX_RESULT_BYTES`].
    pub truncated: bool,
}

/// Why a statement did not run.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The statement broke the policy (the model can fix it).
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// It ran past the statement timeout and was cancelled.
    #[error("the statement ran longer than {0:?} and was cancelled")]
    Timeout(Duration),
    /// The database refused or failed (message safe to show: no URL, no row values; see
    /// [`safe_message`]).
    #[error("the database answered: {0}")]
    Database(String),
    /// A settlement waited this long for a transaction that holds the write's idempotency key
    /// and it did not end: the write may still be running. Nothing was decided; settle again
    /// later.
    #[error(
        "the write with this idempotency key is still in progress (its transaction held the key for more than {0:?}); nothing was decided: settle it again later"
    )]
    InProgress(Duration),
    /// The write's idempotency key was settled as not applied (fenced after its dispatch was
    /// interrupted): it never runs.
    #[error(
        "this write was settled as not applied after its dispatch was interrupted; it will never run: propose it again"
    )]
    SettledNotApplied,
}

/// Any failure of a database call as a [`ReadError::Database`] whose message carries no row
/// values: see [`safe_message`]. Callers that tell a timeout, a missing table or a write in
/// progress apart match on the raw error first.
pub(crate) fn db_error(e: sqlx::Error) -> ReadError {
    ReadError::Database(safe_message(&e))
}

/// The message shown for a failed database call (to the model, in an approval's result and in
/// the audit log). A database's own error text may quote row values (MariaDB's `Duplicate
/// entry 'Margaret Hamilton-2' for key 'uq'`, PostgreSQL's `invalid input syntax for type
/// integer: "…"`, a trigger's message), values of columns the read policy hides among them, so
/// it is never shown: the message is built only from the engine's error class (SQLSTATE, MySQL's
/// error number, SQLite's result code name), a fixed phrase for it, the constraint's name (a
/// column list for SQLite's unnamed unique keys) and the table's name. Errors that are not
/// the database's (a pool timeout, a broken connection) get a fixed phrase, never a URL.
pub(crate) fn safe_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => describe(d.as_ref()).to_string(),
        sqlx::Error::PoolTimedOut => {
            "no database connection became available in time (the connection pool timed out)".into()
        }
        sqlx::Error::PoolClosed => "the database connection pool is closed".into(),
        sqlx::Error::WorkerCrashed => "the database connection's worker stopped".into(),
        sqlx::Error::Io(_) => "the connection to the database failed (I/O error)".into(),
        sqlx::Error::Tls(_) => "the TLS connection to the database failed".into(),
        sqlx::Error::Configuration(_) => "the database connection is misconfigured".into(),
        // Warden's own texts pass; the driver's could quote what the server sent.
        sqlx::Error::Protocol(m) if WARDEN_PROTOCOL_ERRORS.contains(&m.as_str()) => m.clone(),
        sqlx::Error::Protocol(_) => {
            "the database answered something the driver did not expect (protocol error)".into()
        }
        sqlx::Error::RowNotFound => "the database returned no row".into(),
        sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. } => {
            "a value the database returned could not be decoded".into()
        }
        sqlx::Error::Encode(_) | sqlx::Error::InvalidArgument(_) => {
            "a value could not be sent to the database".into()
        }
        _ => "the database call failed".into(),
    }
}

/// The `sqlx::Error::Protocol` texts the backends make themselves (no values in them).
pub(crate) const WARDEN_PROTOCOL_ERRORS: [&str; 2] = [KEY_NOT_VISIBLE, KEY_ROW_MISSING];

/// A claim found its idempotency key taken but cannot see the row (PostgreSQL).
pub(crate) const KEY_NOT_VISIBLE: &str =
    "the idempotency key is recorded but not visible to this transaction";

/// A claim found its idempotency key taken but not its row (MySQL).
pub(crate) const KEY_ROW_MISSING: &str = "the idempotency key is taken but its row was not found";

/// What a database error was, by class, without its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Unique,
    ForeignKey,
    NotNull,
    Check,
    Exclusion,
    /// Another integrity constraint (SQLSTATE class 23).
    Integrity,
    /// A value out of its column's range, or too long for it.
    OutOfRange,
    /// A value not valid for its type (SQLSTATE class 22 otherwise).
    InvalidValue,
    DivisionByZero,
    /// A scalar subquery returned more than one row.
    Cardinality,
    Deadlock,
    Serialization,
    LockTimeout,
    StatementTimeout,
    PermissionDenied,
    Login,
    ReadOnly,
    Syntax,
    UndefinedTable,
    UndefinedColumn,
    UndefinedFunction,
    /// A trigger, function or procedure raised it, with a message of its own.
    Raised,
    TooBig,
    /// A limit or a resource of the server ran out.
    Limit,
    Other,
}

impl Class {
    /// The kind of constraint, for the integrity classes.
    fn constraint_kind(self) -> Option<&'static str> {
        Some(match self {
            Class::Unique => "unique",
            Class::ForeignKey => "foreign-key",
            Class::NotNull => "not-null",
            Class::Check => "check",
            Class::Exclusion => "exclusion",
            Class::Integrity => "integrity",
            _ => return None,
        })
    }

    /// The fixed phrase of the other classes.
    fn phrase(self) -> &'static str {
        match self {
            Class::OutOfRange => "a value is out of range or too long for its column",
            Class::InvalidValue => "a value is not valid for its type",
            Class::DivisionByZero => "division by zero",
            Class::Cardinality => "a subquery used as a value returned more than one row",
            Class::Deadlock => {
                "the transaction was rolled back after a deadlock with another one; try again"
            }
            Class::Serialization => {
                "the transaction conflicted with a concurrent one (serialization failure); try again"
            }
            Class::LockTimeout => {
                "a lock held by another transaction was not granted in time (lock timeout)"
            }
            Class::StatementTimeout => "the statement was cancelled (statement timeout)",
            Class::PermissionDenied => "permission denied",
            Class::Login => "the database refused the connection's login",
            Class::ReadOnly => "the statement tried to write in a read only transaction",
            Class::Syntax => "syntax error",
            Class::UndefinedTable => "a table the statement names does not exist",
            Class::UndefinedColumn => "a column the statement names does not exist",
            Class::UndefinedFunction => {
                "a function the statement calls does not exist (for these argument types)"
            }
            Class::Raised => {
                "a trigger or function raised an error (its message is not shown: it may carry row values)"
            }
            Class::TooBig => "a string or blob is too big (over the size limit)",
            Class::Limit => "a limit or resource of the database ran out",
            Class::Other
            | Class::Unique
            | Class::ForeignKey
            | Class::NotNull
            | Class::Check
            | Class::Exclusion
            | Class::Integrity => "the database refused or failed the statement",
        }
    }
}

/// A database error reduced to what may be shown: see [`safe_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Described {
    pub class: Class,
    /// The engine's code: `SQLSTATE 23505`, `SQLSTATE 23000, error 1062`,
    /// `SQLITE_CONSTRAINT_UNIQUE`.
    pub code: String,
    /// The constraint's name.
    pub constraint: Option<String>,
    /// The table's name.
    pub table: Option<String>,
    /// The columns of an unnamed unique key (SQLite names no constraint).
    pub columns: Vec<String>,
}

impl Described {
    pub fn new(class: Class, code: String) -> Self {
        Self {
            class,
            code,
            constraint: None,
            table: None,
            columns: Vec::new(),
        }
    }
}

/// A schema name as shown: printable, at most 128 characters, in backticks.
fn shown_name(name: &str) -> String {
    let clean: String = name.chars().filter(|c| !c.is_control()).take(128).collect();
    format!("`{}`", clean.replace('`', "``"))
}

impl std::fmt::Display for Described {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(kind) = self.class.constraint_kind() else {
            return write!(f, "{} ({})", self.class.phrase(), self.code);
        };
        match &self.constraint {
            Some(c) => write!(f, "the write breaks {kind} constraint {}", shown_name(c))?,
            None => {
                let article = if kind.starts_with(['e', 'i']) {
                    "an"
                } else {
                    "a"
                };
                write!(f, "the write breaks {article} {kind} constraint")?
            }
        }
        if !self.columns.is_empty() {
            let columns: Vec<String> = self.columns.iter().map(|c| shown_name(c)).collect();
            write!(f, " on columns {}", columns.join(", "))?;
            if let Some(t) = &self.table {
                write!(f, " of {}", shown_name(t))?;
            }
        } else if let Some(t) = &self.table {
            write!(f, " on {}", shown_name(t))?;
        }
        write!(f, " ({}); nothing was changed", self.code)
    }
}

/// The class of an error by its SQLSTATE (PostgreSQL's, or MySQL's where its error number
/// says no more).
pub(crate) fn sqlstate_class(state: &str) -> Class {
    match state {
        "23505" => Class::Unique,
        "23503" => Class::ForeignKey,
        "23502" => Class::NotNull,
        "23514" => Class::Check,
        "23P01" => Class::Exclusion,
        "22003" | "22001" | "22008" | "22015" => Class::OutOfRange,
        "22012" => Class::DivisionByZero,
        "21000" => Class::Cardinality,
        "40P01" => Class::Deadlock,
        "40001" => Class::Serialization,
        "55P03" => Class::LockTimeout,
        "57014" => Class::StatementTimeout,
        "42501" => Class::PermissionDenied,
        "25006" => Class::ReadOnly,
        "42601" => Class::Syntax,
        "42P01" | "42S02" => Class::UndefinedTable,
        "42703" | "42S22" => Class::UndefinedColumn,
        "42883" => Class::UndefinedFunction,
        "45000" => Class::Raised,
        s if s.starts_with("23") => Class::Integrity,
        s if s.starts_with("22") => Class::InvalidValue,
        s if s.starts_with("28") => Class::Login,
        s if s.starts_with("P0") => Class::Raised,
        s if s.starts_with("53") || s.starts_with("54") => Class::Limit,
        _ => Class::Other,
    }
}

/// Describes a database error by its engine's class, without its text.
fn describe(d: &(dyn sqlx::error::DatabaseError + 'static)) -> Described {
    if let Some(e) = d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return postgres::describe(e);
    }
    if let Some(e) = d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return mysql::describe(e);
    }
    if let Some(e) = d.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
        return sqlite::describe(e);
    }
    // No other driver is built in; by sqlx's kind if one were.
    let code = d.code().map(|c| c.into_owned()).unwrap_or_default();
    let class = match d.kind() {
        sqlx::error::ErrorKind::UniqueViolation => Class::Unique,
        sqlx::error::ErrorKind::ForeignKeyViolation => Class::ForeignKey,
        sqlx::error::ErrorKind::NotNullViolation => Class::NotNull,
        sqlx::error::ErrorKind::CheckViolation => Class::Check,
        sqlx::error::ErrorKind::ExclusionViolation => Class::Exclusion,
        _ => sqlstate_class(&code),
    };
    Described::new(class, format!("code {code}"))
}

/// Rows kept while fetching: at most `max_rows`, and at most `max_bytes` of JSON.
pub(crate) struct Collector {
    pub rows: Vec<Value>,
    bytes: usize,
    max_rows: usize,
    max_bytes: usize,
    /// Rows fetched, kept or not.
    pub seen: usize,
    /// Keep fetching (and counting) past the byte budget, up to `max_rows`.
    count_past_bytes: bool,
    pub truncated: bool,
}

impl Collector {
    /// For reads: stops at `max_rows` rows or [`MAX_RESULT_BYTES`].
    pub fn new(max_rows: usize) -> Self {
        Self {
            rows: Vec::new(),
            bytes: 0,
            max_rows,
            max_bytes: MAX_RESULT_BYTES,
            seen: 0,
            count_past_bytes: false,
            truncated: false,
        }
    }

    /// For preview rows shown to the approver: keeps [`MAX_RESULT_BYTES`] of them but counts
    /// every row up to `max_rows`.
    pub fn counting(max_rows: usize) -> Self {
        Self {
            count_past_bytes: true,
            ..Self::new(max_rows)
        }
    }

    /// For primary keys (small): up to `max_rows` of them, 16 MiB at most.
    pub fn keys(max_rows: usize) -> Self {
        Self {
            max_bytes: 16 << 20,
            ..Self::new(max_rows)
        }
    }

    /// Keeps `row` if it fits; false when fetching should stop.
    pub fn push(&mut self, row: Value) -> bool {
        self.seen += 1;
        if self.seen > self.max_rows {
            self.truncated = true;
            return false;
        }
        let size = row.to_string().len() + 1;
        if self.truncated || self.bytes + size > self.max_bytes {
            self.truncated = true;
            return self.count_past_bytes;
        }
        self.bytes += size;
        self.rows.push(row);
        true
    }

    /// Keeps a row the server sent as JSON text, cut at `MAX_RESULT_BYTES + 1` bytes.
    pub fn push_text(&mut self, text: &str) -> bool {
        // Binary values (MySQL `BIT`, blobs) may put raw control bytes in the server's JSON.
        let parsed = serde_json::from_str(text).or_else(|_| {
            let escaped: String = text
                .chars()
                .map(|c| match c {
                    '\u{0}'..='\u{1f}' => format!("\\u{:04x}", c as u32),
                    c => c.to_string(),
                })
                .collect();
            serde_json::from_str(&escaped)
        });
        match parsed {
            Ok(v) if text.len() <= MAX_RESULT_BYTES => self.push(v),
            // Not JSON (MariaDB writes `BIT` values unquoted): the row's text as it came.
            Err(_) if text.len() <= MAX_RESULT_BYTES => {
                let mut row = Map::new();
                row.insert("_row".into(), Value::String(text.to_owned()));
                self.push(Value::Object(row))
            }
            // Cut on the server: counted, not kept.
            _ => {
                self.seen += 1;
                self.truncated = true;
                self.count_past_bytes && self.seen <= self.max_rows
            }
        }
    }
}

pub(crate) fn duplicate_columns() -> ReadError {
    ReadError::Refused(Refusal {
        rule: Rule::Unsupported,
        message: "two result columns have the same name; give each a distinct alias (AS)".into(),
    })
}

/// Whether two of `names` are the same (ignoring ASCII case).
pub(crate) fn has_duplicates<'a>(names: impl Iterator<Item = &'a str>) -> bool {
    let mut seen = BTreeSet::new();
    names
        .into_iter()
        .any(|n| !seen.insert(n.to_ascii_lowercase()))
}

/// What a backend needs to preview or run a write.
pub(crate) struct WriteContext<'a> {
    pub write: &'a ValidatedWrite,
    pub timeout: Duration,
    pub max_affected_rows: u64,
}

/// What a backend's preview found, before the columns are narrowed to the allowed ones.
pub(crate) struct RawPreview {
    pub rows_affected: u64,
    /// Sorted primary keys of the rows an `UPDATE`/`DELETE` targets.
    pub row_ids: Vec<Value>,
    pub before: Vec<Value>,
    pub after: Vec<Value>,
    pub key_columns: Vec<String>,
    pub triggers: Vec<String>,
    pub cascades: Vec<String>,
}

pub(crate) fn too_many(rows: u64, cap: u64) -> ReadError {
    ReadError::Refused(Refusal {
        rule: Rule::TooManyRows,
        message: format!(
            "the write would change {rows} rows or more; at most {cap} may change in one approved write: narrow the WHERE clause"
        ),
    })
}

pub(crate) fn no_primary_key(table: &str) -> ReadError {
    ReadError::Refused(Refusal {
        rule: Rule::NoPrimaryKey,
        message: format!(
            "table `{table}` has no primary key, so the rows a preview shows cannot be bound to the approved write"
        ),
    })
}

pub(crate) fn key_assigned(ctx: &WriteContext<'_>, keys: &[String]) -> Result<(), ReadError> {
    if let Some(k) = ctx
        .write
        .assigned
        .iter()
        .find(|a| keys.iter().any(|k| k.eq_ignore_ascii_case(a)))
    {
        return Err(ReadError::Refused(Refusal {
            rule: Rule::Unsupported,
            message: format!("`{k}` is part of the primary key; sql_execute does not change keys"),
        }));
    }
    Ok(())
}

/// The columns a preview fetches: the keys and the allowed columns, or everything (and
/// SQLite's rowid when it is the key, which `*` leaves out).
pub(crate) fn preview_columns(write: &ValidatedWrite, keys: &[String]) -> Vec<String> {
    match &write.visible_columns {
        None if keys == ["rowid"] => vec!["rowid".into(), "*".into()],
        None => vec!["*".into()],
        Some(v) => {
            let mut c: Vec<String> = keys.to_vec();
            c.extend(v.iter().filter(|x| !keys.contains(x)).cloned());
            c
        }
    }
}

/// The primary-key tuples of `rows`, sorted (as canonical JSON text).
pub(crate) fn row_ids(rows: &[Value], keys: &[String]) -> Result<Vec<Value>, ReadError> {
    let mut ids: Vec<(String, Value)> = Vec::with_capacity(rows.len());
    for r in rows {
        let mut tuple = Vec::with_capacity(keys.len());
        for k in keys {
            let v = r
                .get(k)
                .or_else(|| {
                    r.as_object()
                        .and_then(|o| o.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)))
                        .map(|(_, v)| v)
                })
                .cloned()
                .ok_or_else(|| ReadError::Database(format!("the row has no key column `{k}`")))?;
            tuple.push(v);
        }
        let v = Value::Array(tuple);
        ids.push((v.to_string(), v));
    }
    ids.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(ids.into_iter().map(|(_, v)| v).collect())
}

/// SHA-256 (hex) of sorted row ids.
pub(crate) fn ids_digest(ids: &[Value]) -> String {
    let text = Value::Array(ids.to_vec()).to_string();
    hex::encode(Sha256::digest(text.as_bytes()))
}

pub(crate) fn changed_since_preview(detail: &str) -> ReadError {
    ReadError::Refused(Refusal {
        rule: Rule::RowsChangedSincePreview,
        message: format!(
            "the rows this write would change are not the ones its preview showed ({detail}); nothing was changed: propose it again"
        ),
    })
}

/// The rows an approved write changed, as its `RETURNING` keys (`changed`), against its
/// preview's; returns their count.
pub(crate) fn check_returned(
    ctx: &WriteContext<'_>,
    expected: &Expected,
    changed: &Collector,
    keys: &[String],
) -> Result<u64, ReadError> {
    let rows = changed.seen as u64;
    let ids = match ctx.write.kind {
        WriteKind::Insert => None,
        _ => Some(row_ids(&changed.rows, keys)?),
    };
    check_rows(ctx, expected, ids.as_deref(), rows)?;
    Ok(rows)
}

/// Compares the rows an approved write is about to change with its preview's.
pub(crate) fn check_rows(
    ctx: &WriteContext<'_>,
    expected: &Expected,
    ids: Option<&[Value]>,
    rows: u64,
) -> Result<(), ReadError> {
    if rows > ctx.max_affected_rows {
        return Err(too_many(rows, ctx.max_affected_rows));
    }
    match (ctx.write.kind, ids) {
        (WriteKind::Insert, _) | (_, None) => {
            if rows != expected.rows_affected {
                return Err(changed_since_preview(&format!(
                    "{rows} rows instead of {}",
                    expected.rows_affected
                )));
            }
        }
        (_, Some(ids)) => {
            let Some(want) = &expected.row_ids_sha256 else {
                return Err(changed_since_preview(
                    "the preview recorded no row identities",
                ));
            };
            if &ids_digest(ids) != want || rows != ids.len() as u64 {
                return Err(changed_since_preview(&format!(
                    "{} rows now match, {} were previewed, and their keys differ",
                    ids.len(),
                    expected.rows_affected
                )));
            }
        }
    }
    Ok(())
}

/// Keeps only the allowed columns of preview rows (a row that is not an object, which no
/// backend makes, is dropped rather than shown whole).
fn narrow(rows: Vec<Value>, visible: Option<&BTreeSet<String>>, cap: usize) -> Vec<Value> {
    rows.into_iter()
        .take(cap)
        .filter_map(|r| match (visible, r) {
            (Some(v), Value::Object(o)) => Some(Value::Object(
                o.into_iter()
                    .filter(|(k, _)| v.contains(&k.to_ascii_lowercase()))
                    .collect::<Map<String, Value>>(),
            )),
            (Some(_), _) => None,
            (None, r) => Some(r),
        })
        .collect()
}

/// An `UPDATE` of a column the read policy hides: its change could not be shown.
fn hidden_assignment(column: &str, table: &str, visible: &BTreeSet<String>) -> ReadError {
    let allowed: Vec<&str> = visible.iter().map(String::as_str).collect();
    ReadError::Refused(Refusal {
        rule: Rule::ColumnNotAllowed,
        message: format!(
            "column `{column}` of {table} is not visible to the tools, so its change cannot be previewed; allowed columns: {}",
            allowed.join(", ")
        ),
    })
}

impl CompanyDatabase {
    /// Opens pools for `config`; `url` is the server's URL (from its environment variable),
    /// used for writes too. Errors never repeat the URL.
    pub async fn open(
        name: &str,
        config: &DatabaseConfig,
        url: Option<&str>,
    ) -> Result<Self, String> {
        Self::open_with(name, config, url, None).await
    }

    /// Like [`CompanyDatabase::open`], with `write_url` (from `write_url_env`) for a separate write
    /// role.
    pub async fn open_with(
        name: &str,
        config: &DatabaseConfig,
        url: Option<&str>,
        write_url: Option<&str>,
    ) -> Result<Self, String> {
        if let Some(f) = config
            .allowed_functions
            .iter()
            .find(|f| super::never_allowed(f))
        {
            return Err(format!(
                "databases.{name}.allowed_functions: `{f}` reveals the server, reaches files or the network, sleeps, locks or moves sequences; it can never be allowed"
            ));
        }
        let policy = ReadPolicy {
            tables: config.tables.clone(),
            max_rows: config.max_rows,
            allowed_functions: config.allowed_functions.clone(),
            denied_functions: config.denied_functions.clone(),
            known_columns: Default::default(),
        };
        let writable = !config.writable_tables.is_empty();
        let opened = Opened {
            name,
            config,
            allowed: config.tables.keys().cloned().collect(),
            write_url,
        };
        let (dialect, pool, write_pool) = match &config.location {
            DatabaseLocation::Sqlite(path) => {
                let (read, write) = sqlite::open(&opened, path, writable).await?;
                (
                    SqlDialect::Sqlite,
                    Pool::Sqlite(read),
                    write.map(Pool::Sqlite),
                )
            }
            DatabaseLocation::Postgres { url_env } => {
                let url = url.ok_or_else(|| {
                    format!("databases.{name}: the environment variable {url_env} is not set")
                })?;
                let (read, write) = postgres::open(&opened, url, url_env, writable)?;
                (
                    SqlDialect::Postgres,
                    Pool::Postgres(read),
                    write.map(Pool::Postgres),
                )
            }
            DatabaseLocation::Mysql { url_env } => {
                let url = url.ok_or_else(|| {
                    format!("databases.{name}: the environment variable {url_env} is not set")
                })?;
                let (read, write) = mysql::open(&opened, url, url_env, writable)?;
                (SqlDialect::Mysql, Pool::Mysql(read), write.map(Pool::Mysql))
            }
        };
        let write = write_pool.map(|pool| Writer {
            policy: WritePolicy {
                read: policy.clone(),
                writable: config.writable_tables.clone(),
                allow_without_where: config.allow_without_where,
            },
            pool,
            max_affected_rows: config.max_affected_rows,
        });
        Ok(Self {
            name: name.to_owned(),
            dialect,
            policy,
            timeout: config.statement_timeout,
            pool,
            write,
        })
    }

    /// The tables a model may read, for the tool's description.
    pub fn tables(&self) -> Vec<String> {
        self.policy.tables.keys().cloned().collect()
    }

    /// The database's dialect.
    pub fn dialect(&self) -> SqlDialect {
        self.dialect
    }

    /// The read policy with the current columns of its column-restricted tables, read from
    /// the database, so unqualified names are resolved as the database will.
    async fn policy_now(&self) -> Result<std::borrow::Cow<'_, ReadPolicy>, ReadError> {
        let restricted: Vec<&String> = self
            .policy
            .tables
            .iter()
            .filter_map(|(k, c)| c.as_ref().map(|_| k))
            .collect();
        if restricted.is_empty() {
            return Ok(std::borrow::Cow::Borrowed(&self.policy));
        }
        let mut policy = self.policy.clone();
        for key in restricted {
            let columns = match &self.pool {
                Pool::Sqlite(p) => sqlite::columns_of(p, key).await,
                Pool::Postgres(p) => postgres::columns_of(p, key).await,
                Pool::Mysql(p) => mysql::columns_of(p, key).await,
            }
            .map_err(db_error)?;
            // A table the catalog does not show stays unknown: resolved the strict way.
            if !columns.is_empty() {
                policy.known_columns.insert(key.clone(), columns);
            }
        }
        Ok(std::borrow::Cow::Owned(policy))
    }

    /// Validates and runs one read.
    pub async fn read(&self, sql: &str) -> Result<Rows, ReadError> {
        let policy = self.policy_now().await?;
        let validated = super::validate(sql, self.dialect, &policy)?;
        let max_rows = self.policy.max_rows as usize;
        let collected = match &self.pool {
            Pool::Sqlite(p) => sqlite::read(p, &validated.sql, self.timeout, max_rows).await?,
            Pool::Postgres(p) => postgres::read(p, &validated.sql, self.timeout, max_rows).await?,
            Pool::Mysql(p) => mysql::read(p, &validated.sql, self.timeout, max_rows).await?,
        };
        Ok(Rows {
            sql: validated.sql,
            rows: collected.rows,
            truncated: collected.truncated,
        })
    }

    /// Whether writes may be proposed against this database.
    pub fn writable(&self) -> bool {
        self.write.is_some()
    }

    fn writer(&self) -> Result<&Writer, ReadError> {
        self.write.as_ref().ok_or_else(|| {
            ReadError::Refused(Refusal {
                rule: Rule::TableNotAllowed,
                message: format!("database `{}` has no writable tables", self.name),
            })
        })
    }

    /// Validates a proposed write against the write policy.
    pub fn validate_write(&self, sql: &str) -> Result<ValidatedWrite, ReadError> {
        let w = self.writer()?;
        Ok(super::validate_write(sql, self.dialect, &w.policy)?)
    }

    /// What the write would change: it runs in a transaction that is rolled back, with the
    /// statement timeout, after its target rows were counted. Its rows show only the columns
    /// the read policy allows on the written table, under whichever name the policy lists it
    /// (its keys only if they are allowed; the row-ids hash identifies the rows either way).
    pub async fn preview(&self, write: &ValidatedWrite) -> Result<Preview, ReadError> {
        let w = self.writer()?;
        if write.kind == WriteKind::Insert && write.insert_rows as u64 > w.max_affected_rows {
            return Err(too_many(write.insert_rows as u64, w.max_affected_rows));
        }
        let visible = self.visible_columns(w, write).await?;
        if let Some(v) = &visible
            && let Some(c) = write.assigned.iter().find(|c| !v.contains(*c))
        {
            return Err(hidden_assignment(c, &write.table, v));
        }
        // The columns the backends fetch are the write's visible ones.
        let mut shown = write.clone();
        shown.visible_columns = visible;
        let ctx = WriteContext {
            write: &shown,
            timeout: self.timeout,
            max_affected_rows: w.max_affected_rows,
        };
        let raw = match &w.pool {
            Pool::Sqlite(p) => sqlite::preview(p, &ctx).await?,
            Pool::Postgres(p) => postgres::preview(p, &ctx).await?,
            Pool::Mysql(p) => mysql::preview(p, &ctx).await?,
        };
        if raw.rows_affected > w.max_affected_rows {
            return Err(too_many(raw.rows_affected, w.max_affected_rows));
        }
        // Empty for an INSERT: its rows have no identity before they are written.
        let ids = raw.row_ids;
        let cap = self.policy.max_rows as usize;
        let visible = shown.visible_columns.as_ref();
        let keys_visible = visible.is_none_or(|v| {
            raw.key_columns
                .iter()
                .all(|k| v.contains(&k.to_ascii_lowercase()))
        });
        Ok(Preview {
            sql: write.sql.clone(),
            rows_affected: raw.rows_affected,
            before: narrow(raw.before, visible, cap),
            after: narrow(raw.after, visible, cap),
            row_ids_sha256: ids_digest(&ids),
            row_ids: if keys_visible { ids } else { Vec::new() },
            key_columns: raw.key_columns,
            triggers: raw.triggers,
            cascades: raw.cascades,
        })
    }

    /// The columns a preview of `write` may show: the intersection of the column lists of every
    /// read-policy entry that names the written table, as the database resolves names (SQLite's
    /// `main.t` is `t`; PostgreSQL's `public.t` may be `t`, by `search_path`; MySQL's `db.t` is
    /// `t` in the current database), and the write's own; `None` (every column) only when none
    /// of them has a list.
    async fn visible_columns(
        &self,
        w: &Writer,
        write: &ValidatedWrite,
    ) -> Result<Option<BTreeSet<String>>, ReadError> {
        let restricted: Vec<String> = self
            .policy
            .tables
            .iter()
            .filter(|(_, c)| c.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        if restricted.is_empty() {
            return Ok(write.visible_columns.clone());
        }
        let same = match &w.pool {
            Pool::Sqlite(_) => sqlite::same_table(write, &restricted),
            Pool::Postgres(p) => postgres::same_table(p, write, &restricted).await?,
            Pool::Mysql(p) => mysql::same_table(p, write, &restricted).await?,
        };
        let lists = same
            .iter()
            .filter_map(|k| self.policy.tables.get(k).cloned().flatten())
            .chain(write.visible_columns.clone());
        Ok(lists.reduce(|a, b| a.intersection(&b).cloned().collect()))
    }

    /// Runs an approved write once: only if it changes exactly the rows of its preview
    /// (checked inside its transaction, rolled back otherwise), with its idempotency key
    /// recorded in the same transaction, so a retry after a crash finds it and runs nothing.
    pub async fn execute(
        &self,
        write: &Approved<ValidatedWrite>,
        idempotency_key: &str,
        expected: &Expected,
    ) -> Result<Executed, ReadError> {
        let w = self.writer()?;
        let ctx = WriteContext {
            write: write.call(),
            timeout: self.timeout,
            max_affected_rows: w.max_affected_rows,
        };
        match &w.pool {
            Pool::Sqlite(p) => sqlite::execute(p, &ctx, idempotency_key, expected).await,
            Pool::Postgres(p) => postgres::execute(p, &ctx, idempotency_key, expected).await,
            Pool::Mysql(p) => mysql::execute(p, &ctx, idempotency_key, expected).await,
        }
    }

    /// Whether the write with this idempotency key was applied (resolving an outcome left
    /// unknown by a crash). Only a missing idempotency table means that nothing was applied;
    /// any other failure (a broken connection, a permission refused) is an error. A write still
    /// in progress reads as not applied: [`CompanyDatabase::settle`] decides for good.
    pub async fn was_applied(&self, idempotency_key: &str) -> Result<bool, ReadError> {
        let Some(w) = &self.write else {
            return Ok(false);
        };
        let (result, missing) = match &w.pool {
            Pool::Sqlite(p) => {
                let r = sqlite::lookup(p, idempotency_key).await;
                let missing = r.as_ref().is_err_and(sqlite::missing_table);
                (r, missing)
            }
            Pool::Postgres(p) => {
                let r = postgres::lookup(p, idempotency_key).await;
                let missing = r.as_ref().is_err_and(postgres::missing_table);
                (r, missing)
            }
            Pool::Mysql(p) => {
                let r = mysql::lookup(p, idempotency_key).await;
                let missing = r.as_ref().is_err_and(mysql::missing_table);
                (r, missing)
            }
        };
        match result {
            Ok(r) => Ok(r.is_some_and(|r| r.applied())),
            // No table yet: nothing was ever applied.
            Err(_) if missing => Ok(false),
            Err(e) => Err(db_error(e)),
        }
    }

    /// Settles for good whether the write with this idempotency key was applied, after its
    /// dispatch was interrupted (a crash left it `outcome_unknown`), without a human.
    ///
    /// A fence, in a short transaction of its own: the key is recorded as `fenced` unless a
    /// row holds it, waiting at most the statement timeout for a transaction that holds the key
    /// uncommitted (the write itself, still running) to end. The key's row then decides:
    /// `applied` is [`Settlement::Applied`] with the rows the write recorded; `fenced` is
    /// [`Settlement::NotApplied`], and final: the write, if it is still running or retried,
    /// finds the key taken and cannot commit. A wait that runs out is
    /// [`ReadError::InProgress`] (nothing decided; settle again later). Never
    /// [`Settlement::Unknown`].
    pub async fn settle(&self, idempotency_key: &str) -> Result<Settlement, ReadError> {
        let w = self.writer()?;
        let seen = match &w.pool {
            Pool::Sqlite(p) => sqlite::fence(p, idempotency_key, self.timeout).await?,
            Pool::Postgres(p) => postgres::fence(p, idempotency_key, self.timeout).await?,
            Pool::Mysql(p) => mysql::fence(p, idempotency_key, self.timeout).await?,
        };
        match seen {
            // Fenced now: the write had not recorded its key, and now never can.
            None => Ok(Settlement::NotApplied),
            Some(r) => r.settlement(),
        }
    }
}

/// What the backends' `open` need to know.
pub(crate) struct Opened<'a> {
    pub name: &'a str,
    pub config: &'a DatabaseConfig,
    /// The allow-listed tables (for the role checks).
    pub allowed: BTreeSet<String>,
    /// A separate write role's URL, if configured.
    pub write_url: Option<&'a str>,
}

impl Opened<'_> {
    /// Whether reads and writes share one role (writable tables, no separate write URL): the
    /// read connection can then write those tables, as expected.
    pub fn shared_role(&self) -> bool {
        !self.config.writable_tables.is_empty() && self.write_url.is_none()
    }
}

/// Logs what a tool connection may do beyond reading the allowed tables; with `strict`, refuses
/// the connection.
pub(crate) fn report_roles(
    name: &str,
    findings: &[super::roles::RoleFinding],
    strict: bool,
    shared_role: bool,
) -> Result<(), sqlx::Error> {
    let findings: Vec<&super::roles::RoleFinding> = findings
        .iter()
        .filter(|f| !(shared_role && f.what == super::roles::CAN_WRITE))
        .collect();
    if shared_role {
        tracing::info!(
            database = name,
            "reads and writes share one database role; set write_url_env for a separate write role"
        );
    }
    for f in &findings {
        tracing::warn!(
            database = name,
            finding = f.what,
            detail = %f.detail,
            "the SQL tools' database connection can do more than read the allowed tables; give it a read-only role (see the README)"
        );
    }
    if strict && !findings.is_empty() {
        let what: Vec<&str> = findings.iter().map(|f| f.what).collect();
        return Err(sqlx::Error::Configuration(
            format!(
                "databases.{name}: strict_roles is on and the connection's role can do more than read the allowed tables ({})",
                what.join(", ")
            )
            .into(),
        ));
    }
    Ok(())
}

pub(crate) fn now_millis() -> i64 {
    warden_core::time::unix_millis() as i64
}

pub(crate) fn idempotency_table() -> &'static str {
    IDEMPOTENCY_TABLE
}
