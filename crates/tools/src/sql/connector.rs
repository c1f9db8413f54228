//! Runs validated reads. SQLite files are opened read-only (`mode=ro`, `query_only`), and a
//! progress handler interrupts a statement past its timeout. PostgreSQL reads run in a
//! `READ ONLY` transaction with a local `statement_timeout`, rolled back afterwards. Rows come
//! back as JSON objects; at most `max_rows`, and at most [`MAX_RESULT_BYTES`] of them.
//!
//! The one place dynamic SQL runs: only a [`ValidatedRead`] can be passed in, and
//! `AssertSqlSafe` stands right beside it.

use super::{ReadPolicy, SqlDialect, ValidatedRead, validate};
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
}

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
                (SqlDialect::Postgres, Pool::Postgres(pool))
            }
        };
        Ok(Self {
            name: name.to_owned(),
            dialect,
            policy,
            timeout: config.statement_timeout,
            pool,
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
