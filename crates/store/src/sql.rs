//! The one store implementation, [`SqlStore`], over either backend: SQLite (one file in WAL mode
//! with `synchronous = FULL`, so a commit is on disk when it returns: the embedded default) or
//! PostgreSQL (for several Warden nodes sharing one database).
//!
//! Each operation's SQL text, binds and row mapping are written once (`$N` placeholders, which
//! sqlx also accepts on SQLite) inside [`with_pool!`], which compiles the same body for each
//! backend's native driver. The few real differences between the two dialects are named and
//! kept in [`Dialect`]:
//! - the day of a unix-millisecond instant ([`Dialect::day_of_millis`]);
//! - the column that orders keys by insertion ([`Dialect::key_insertion_order`]);
//! - how creations for one owner take turns ([`Dialect::owner_lock`]);
//! - how journal steps are committed: SQLite has one writer, so its steps are group-committed
//!   by one task (`journal.rs`); PostgreSQL commits each in its own transaction.
//!
//! Both backends apply the same schema versions (`migrate.rs`) and run one shared test suite.

mod agents;
mod approvals;
mod journal;
mod keys;
mod rows;
mod usage;

use crate::{Error, Store, migrate};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Warden's store, on SQLite or PostgreSQL. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct SqlStore {
    pool: Pool,
    /// SQLite only: journal steps go through one writer that commits them in groups.
    journal: Option<journal::Handle>,
}

/// The connection pool of the backend in use.
#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the store's pool: the body (SQL text, binds and row
/// mapping) is written once and compiled for each backend's own driver, so every type is
/// encoded and decoded natively (SQLite's integers as booleans, PostgreSQL's `BOOLEAN`).
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            $crate::sql::Pool::Sqlite($pool) => $body,
            $crate::sql::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// What differs between the two SQL dialects, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The UTC day (`YYYY-MM-DD`) of the unix-millisecond column `column`.
    pub(crate) fn day_of_millis(self, column: &str) -> String {
        match self {
            Self::Sqlite => format!("strftime('%Y-%m-%d', {column} / 1000, 'unixepoch')"),
            Self::Postgres => {
                format!("to_char(to_timestamp({column} / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
            }
        }
    }

    /// The column that orders `virtual_keys` rows as they were inserted: SQLite's `rowid`,
    /// PostgreSQL's `inserted_seq` (migration 7).
    pub(crate) fn key_insertion_order(self) -> &'static str {
        match self {
            Self::Sqlite => "rowid",
            Self::Postgres => "inserted_seq",
        }
    }

    /// A statement (with the owner as `$1`) that makes creations for one owner take turns
    /// until the transaction ends, across nodes too; `None` where the database already runs
    /// one write at a time (SQLite), so a count and an insert cannot interleave.
    pub(crate) fn owner_lock(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"),
        }
    }
}

impl SqlStore {
    /// Opens (creating if needed) `dir/warden.db` and applies pending migrations.
    pub async fn open_sqlite_dir(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Unavailable(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        Self::open_sqlite_file(&dir.join("warden.db")).await
    }

    /// Opens (creating if needed) the SQLite database file and applies pending migrations.
    /// sqlx drives it from its own worker threads, so nothing blocks the async runtime.
    pub async fn open_sqlite_file(path: &Path) -> Result<Self, Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        migrate::sqlite(&pool).await?;
        let journal = journal::spawn(pool.clone());
        Ok(Self {
            pool: Pool::Sqlite(pool),
            journal: Some(journal),
        })
    }

    /// Connects to `url` (`postgres://user:password@host:port/db`), optionally inside a
    /// schema (created if missing; default `public`), and applies pending migrations. Errors
    /// never repeat the URL (it may hold a password).
    pub async fn connect_postgres(url: &str, schema: Option<&str>) -> Result<Self, Error> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|_| Error::Unavailable("the PostgreSQL URL is not valid".into()))?
            .application_name("warden");
        if let Some(schema) = schema {
            if schema.is_empty()
                || schema.len() > 63
                || !schema
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(Error::Unavailable(format!(
                    "`{schema}` is not a schema name (lower-case letters, digits, `_`)"
                )));
            }
            // Create the schema first, on a connection of its own.
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options.clone())
                .await
                .map_err(|e| Error::Unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}"
            )))
            .execute(&admin)
            .await?;
            admin.close().await;
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
        migrate::postgres(&pool).await?;
        Ok(Self {
            pool: Pool::Postgres(pool),
            journal: None,
        })
    }

    /// The dialect of the backend in use.
    pub(crate) fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), Error> {
        with_pool!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }
}

/// Whether a statement failed on a unique constraint.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// `$first, $first+1, …` for `count` values: the placeholders of an `IN (…)` list.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
