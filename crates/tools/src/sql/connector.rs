//! Runs validated reads. SQLite files are opened read-only (`mode=ro`, `query_only`), and a
//! progress handler interrupts a statement past its timeout. PostgreSQL reads run in a
//! `READ ONLY` transaction with a local `statement_timeout`, rolled back afterwards. Rows come
//! back as JSON objects; at most `max_rows`, and at most [`MAX_RESULT_BYTES`] of them.
//!
//! The one place dynamic SQL runs: only a [`ValidatedRead`] can be passed in, and
//! `AssertSqlSafe` stands right beside it.

use super::{ReadPolicy, SqlDialect, ValidatedRead, ValidatedWrite, WritePolicy, validate};
use crate::approval::Approved;
use serde_json::{Map, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Column, Row, TypeInfo, ValueRef};
use std::str::FromStr;
use std::time::{Duration, Instant};
use warden_config::{DatabaseConfig, DatabaseLocation};

/// Result JSON returned to a model at most; rows past it are dropped and `truncated` set.
pub const MAX_RESULT_BYTES: usize = 64 * 1024;

/// A database the `sql_query` tool reads.
pub struct Database {
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

/// What an approved write would change, computed in a transaction that is rolled back.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// The statement.
    pub sql: String,
    /// Rows it would change.
    pub rows_affected: u64,
    /// The rows it targets, before (for `UPDATE`/`DELETE`; at most `max_rows`).
    pub before: Vec<Value>,
    /// The rows as they would be written (inserted, updated, or deleted; at most `max_rows`).
    pub after: Vec<Value>,
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

/// The table where approved writes record their idempotency key, in the same transaction.
const IDEMPOTENCY_TABLE: &str = "warden_idempotency";

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
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

/// Why a read did not return rows.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The statement broke the read policy (the model can fix it).
    #[error("{0}")]
    Refused(#[from] super::Refusal),
    /// It ran past the statement timeout and was cancelled.
    #[error("the statement ran longer than {0:?} and was cancelled")]
    Timeout(Duration),
    /// The database refused or failed (message safe to show: no URL).
    #[error("the database answered: {0}")]
    Database(String),
}

impl Database {
    /// Opens a pool for `config`; `url` is the PostgreSQL URL (from its environment variable).
    /// Errors never repeat the URL.
    pub async fn open(
        name: &str,
        config: &DatabaseConfig,
        url: Option<&str>,
    ) -> Result<Self, String> {
        let policy = ReadPolicy {
            tables: config.tables.clone(),
            max_rows: config.max_rows,
            denied_functions: config.denied_functions.clone(),
        };
        let writable = !config.writable_tables.is_empty();
        let mut write_pool = None;
        let (dialect, pool) = match &config.location {
            DatabaseLocation::Sqlite(path) => {
                if !path.exists() {
                    return Err(format!(
                        "databases.{name}: {} does not exist",
                        path.display()
                    ));
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(true)
                    .pragma("query_only", "ON");
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await
                    .map_err(|e| {
                        format!("databases.{name}: cannot open {}: {e}", path.display())
                    })?;
                if writable {
                    let rw = SqliteConnectOptions::new()
                        .filename(path)
                        .busy_timeout(Duration::from_secs(5));
                    let rw = SqlitePoolOptions::new()
                        .max_connections(1)
                        .connect_with(rw)
                        .await
                        .map_err(|e| {
                            format!(
                                "databases.{name}: cannot open {} for writes: {e}",
                                path.display()
                            )
                        })?;
                    write_pool = Some(Pool::Sqlite(rw));
                }
                (SqlDialect::Sqlite, Pool::Sqlite(pool))
            }
            DatabaseLocation::Postgres { url_env } => {
                let url = url.ok_or_else(|| {
                    format!("databases.{name}: the environment variable {url_env} is not set")
                })?;
                let options = sqlx::postgres::PgConnectOptions::from_str(url)
                    .map_err(|_| format!("databases.{name}: the URL in {url_env} is not valid"))?
                    .application_name("warden-sql-query");
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_lazy_with(options);
                if writable {
                    write_pool = Some(Pool::Postgres(pool.clone()));
                }
                (SqlDialect::Postgres, Pool::Postgres(pool))
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

    /// Validates and runs one read.
    pub async fn read(&self, sql: &str) -> Result<Rows, ReadError> {
        let validated = validate(sql, self.dialect, &self.policy)?;
        match &self.pool {
            Pool::Sqlite(pool) => self.read_sqlite(pool, &validated).await,
            Pool::Postgres(pool) => self.read_postgres(pool, &validated).await,
        }
    }

    async fn read_sqlite(
        &self,
        pool: &sqlx::SqlitePool,
        read: &ValidatedRead,
    ) -> Result<Rows, ReadError> {
        let db = |e: sqlx::Error| ReadError::Database(e.to_string());
        let mut conn = pool.acquire().await.map_err(db)?;
        let deadline = Instant::now() + self.timeout;
        conn.lock_handle()
            .await
            .map_err(db)?
            .set_progress_handler(1000, move || Instant::now() < deadline);
        // Validated just above: the statement printed from the checked syntax tree.
        let result = sqlx::query(sqlx::AssertSqlSafe(read.sql.clone()))
            .fetch_all(&mut *conn)
            .await;
        if let Ok(mut h) = conn.lock_handle().await {
            h.remove_progress_handler();
        }
        let rows = match result {
            Ok(rows) => rows,
            Err(_) if Instant::now() >= deadline => return Err(ReadError::Timeout(self.timeout)),
            Err(e) => return Err(db(e)),
        };
        let json = rows.iter().map(sqlite_row).collect();
        Ok(cap(read.sql.clone(), json))
    }

    async fn read_postgres(
        &self,
        pool: &sqlx::PgPool,
        read: &ValidatedRead,
    ) -> Result<Rows, ReadError> {
        let db = |e: sqlx::Error| ReadError::Database(e.to_string());
        let mut tx = pool.begin().await.map_err(db)?;
        sqlx::query("SET TRANSACTION READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let ms = self.timeout.as_millis().max(1);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET LOCAL statement_timeout = {ms}"
        )))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        // Validated just above; wrapped so each row comes back as one JSON object.
        let wrapped = format!("SELECT to_jsonb(q)::text FROM ({}) AS q", read.sql);
        let result: Result<Vec<String>, sqlx::Error> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(wrapped))
                .fetch_all(&mut *tx)
                .await;
        let _ = tx.rollback().await;
        let texts = match result {
            Ok(t) => t,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("57014") => {
                return Err(ReadError::Timeout(self.timeout));
            }
            Err(e) => return Err(db(e)),
        };
        let json = texts
            .iter()
            .map(|t| serde_json::from_str(t).unwrap_or(Value::Null))
            .collect();
        Ok(cap(read.sql.clone(), json))
    }
}

impl Database {
    /// Whether writes may be proposed against this database.
    pub fn writable(&self) -> bool {
        self.write.is_some()
    }

    /// Validates a proposed write against the write policy.
    pub fn validate_write(&self, sql: &str) -> Result<ValidatedWrite, ReadError> {
        let Some(w) = &self.write else {
            return Err(ReadError::Refused(super::Refusal {
                rule: super::Rule::TableNotAllowed,
                message: format!("database `{}` has no writable tables", self.name),
            }));
        };
        Ok(super::validate_write(sql, self.dialect, &w.policy)?)
    }

    /// What the write would change: it runs in a transaction that is rolled back.
    pub async fn preview(&self, write: &ValidatedWrite) -> Result<Preview, ReadError> {
        let Some(w) = &self.write else {
            return Err(ReadError::Database("not writable".into()));
        };
        let cap = self.policy.max_rows as usize;
        let db = |e: sqlx::Error| ReadError::Database(e.to_string());
        let (before, after) = match &w.pool {
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin().await.map_err(db)?;
                let before = match &write.select_before {
                    // Printed from the validated statement's own table and WHERE clause.
                    Some(q) => sqlx::query(sqlx::AssertSqlSafe(q.clone()))
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db)?
                        .iter()
                        .map(sqlite_row)
                        .collect(),
                    None => Vec::new(),
                };
                let after: Vec<Value> =
                    sqlx::query(sqlx::AssertSqlSafe(write.sql_returning.clone()))
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db)?
                        .iter()
                        .map(sqlite_row)
                        .collect();
                tx.rollback().await.map_err(db)?;
                (before, after)
            }
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(db)?;
                let ms = self.timeout.as_millis().max(1);
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SET LOCAL statement_timeout = {ms}"
                )))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                let json = |sql: &str| format!("SELECT to_jsonb(q)::text FROM ({sql}) AS q");
                let before: Vec<String> = match &write.select_before {
                    Some(q) => sqlx::query_scalar(sqlx::AssertSqlSafe(json(q)))
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db)?,
                    None => Vec::new(),
                };
                // A data-modifying statement cannot be a subquery: use a CTE.
                let after: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "WITH q AS ({}) SELECT to_jsonb(q)::text FROM q",
                    write.sql_returning
                )))
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
                tx.rollback().await.map_err(db)?;
                let parse = |v: Vec<String>| -> Vec<Value> {
                    v.iter()
                        .map(|t| serde_json::from_str(t).unwrap_or(Value::Null))
                        .collect()
                };
                (parse(before), parse(after))
            }
        };
        let rows_affected = after.len() as u64;
        Ok(Preview {
            sql: write.sql.clone(),
            rows_affected,
            before: before.into_iter().take(cap).collect(),
            after: after.into_iter().take(cap).collect(),
        })
    }

    /// Runs an approved write once: its idempotency key is recorded in the same transaction,
    /// so a retry after a crash finds it and runs nothing. The rows changed must equal the
    /// preview's count, or stay within `max_affected_rows`; otherwise it rolls back.
    pub async fn execute(
        &self,
        write: &Approved<ValidatedWrite>,
        idempotency_key: &str,
        previewed_rows: u64,
    ) -> Result<Executed, ReadError> {
        let Some(w) = &self.write else {
            return Err(ReadError::Database("not writable".into()));
        };
        let db = |e: sqlx::Error| ReadError::Database(e.to_string());
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {IDEMPOTENCY_TABLE} (key TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)"
        );
        let now = warden_core_millis();
        let check = |rows: u64| {
            if rows != previewed_rows && rows > w.max_affected_rows {
                Err(ReadError::Database(format!(
                    "the write changed {rows} rows, not the {previewed_rows} of its preview (and more than the cap of {}); rolled back",
                    w.max_affected_rows
                )))
            } else {
                Ok(())
            }
        };
        // The same steps on both backends; only the placeholders differ.
        macro_rules! once {
            ($tx:expr, $p1:literal, $p2:literal) => {{
                let mut tx = $tx;
                sqlx::query(sqlx::AssertSqlSafe(create))
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                let seen: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT applied_at FROM {IDEMPOTENCY_TABLE} WHERE key = {}",
                    $p1
                )))
                .bind(idempotency_key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
                if seen.is_some() {
                    return Ok(Executed {
                        rows_affected: previewed_rows,
                        already_applied: true,
                    });
                }
                // Validated, and approved by a verified signature over exactly these arguments.
                let done = sqlx::query(sqlx::AssertSqlSafe(write.call().sql.clone()))
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                check(done.rows_affected())?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {IDEMPOTENCY_TABLE} (key, applied_at) VALUES ({}, {})",
                    $p1, $p2
                )))
                .bind(idempotency_key)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                tx.commit().await.map_err(db)?;
                Ok(Executed {
                    rows_affected: done.rows_affected(),
                    already_applied: false,
                })
            }};
        }
        match &w.pool {
            Pool::Sqlite(pool) => once!(pool.begin().await.map_err(db)?, "?1", "?2"),
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(db)?;
                let ms = self.timeout.as_millis().max(1);
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SET LOCAL statement_timeout = {ms}"
                )))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                once!(tx, "$1", "$2")
            }
        }
    }

    /// Whether the write with this idempotency key was applied (resolving an outcome left
    /// unknown by a crash).
    pub async fn was_applied(&self, idempotency_key: &str) -> Result<bool, ReadError> {
        let Some(w) = &self.write else {
            return Ok(false);
        };
        let db = |e: sqlx::Error| ReadError::Database(e.to_string());
        let sql = |p: &str| format!("SELECT COUNT(*) FROM {IDEMPOTENCY_TABLE} WHERE key = {p}");
        let n: Result<i64, sqlx::Error> = match &w.pool {
            Pool::Sqlite(pool) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql("?1")))
                    .bind(idempotency_key)
                    .fetch_one(pool)
                    .await
            }
            Pool::Postgres(pool) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql("$1")))
                    .bind(idempotency_key)
                    .fetch_one(pool)
                    .await
            }
        };
        match n {
            Ok(n) => Ok(n > 0),
            // No table yet: nothing was ever applied.
            Err(sqlx::Error::Database(_)) => Ok(false),
            Err(e) => Err(db(e)),
        }
    }
}

fn warden_core_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Keeps rows while their JSON stays under [`MAX_RESULT_BYTES`].
fn cap(sql: String, rows: Vec<Value>) -> Rows {
    let mut size = 0;
    let mut kept = Vec::new();
    let total = rows.len();
    for r in rows {
        size += r.to_string().len() + 1;
        if size > MAX_RESULT_BYTES {
            break;
        }
        kept.push(r);
    }
    Rows {
        sql,
        truncated: kept.len() < total,
        rows: kept,
    }
}

/// A SQLite row as a JSON object, by each value's storage class.
fn sqlite_row(row: &sqlx::sqlite::SqliteRow) -> Value {
    let mut out = Map::new();
    for (i, col) in row.columns().iter().enumerate() {
        let class = row
            .try_get_raw(i)
            .map(|v| {
                if v.is_null() {
                    "NULL".to_owned()
                } else {
                    v.type_info().name().to_owned()
                }
            })
            .unwrap_or_else(|_| "NULL".into());
        let value = match class.as_str() {
            "NULL" => Value::Null,
            "INTEGER" | "BOOLEAN" => row
                .try_get::<i64, _>(i)
                .map(Value::from)
                .unwrap_or(Value::Null),
            "REAL" => row
                .try_get::<f64, _>(i)
                .map(Value::from)
                .unwrap_or(Value::Null),
            "BLOB" => row
                .try_get::<Vec<u8>, _>(i)
                .map(|b| Value::from(format!("<{} bytes>", b.len())))
                .unwrap_or(Value::Null),
            _ => row
                .try_get::<String, _>(i)
                .map(Value::from)
                .unwrap_or(Value::Null),
        };
        out.insert(col.name().to_owned(), value);
    }
    Value::Object(out)
}
