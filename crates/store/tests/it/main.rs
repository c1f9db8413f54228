//! The store's test suite, run against both backends: SQLite (a real database file) and
//! PostgreSQL (this machine's server, from `WARDEN_TEST_POSTGRES_URL`; each test in a schema
//! of its own). Without that variable the PostgreSQL half skips loudly, and fails in CI.

#![allow(clippy::unwrap_used)] // test helpers fail by panicking

mod agents;
mod keys;
mod usage;

use std::sync::Arc;
use warden_store::{NewKeyRecord, SqlStore, Store};

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// Keeps a test's database alive and can open it again.
pub(crate) enum Db {
    Sqlite(tempfile::TempDir),
    Postgres { url: String, schema: String },
}

impl Db {
    /// A fresh, empty database; `None` when PostgreSQL is not available here (skipped).
    pub(crate) async fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self::Sqlite(tempfile::tempdir().unwrap())),
            Backend::Postgres => {
                let Ok(url) = std::env::var("WARDEN_TEST_POSTGRES_URL") else {
                    assert!(
                        std::env::var_os("CI").is_none(),
                        "WARDEN_TEST_POSTGRES_URL must be set in CI (see .ci/run)"
                    );
                    eprintln!(
                        "\n*** SKIPPED a PostgreSQL store test: set WARDEN_TEST_POSTGRES_URL \
                         (e.g. postgres://postgres@127.0.0.1:5432/test) ***\n"
                    );
                    return None;
                };
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let schema = format!(
                    "wt_{}_{}_{}",
                    std::process::id(),
                    warden_core::time::unix_millis() % 1_000_000_000,
                    N.fetch_add(1, Ordering::Relaxed)
                );
                Some(Self::Postgres { url, schema })
            }
        }
    }

    /// Opens (or opens again) the store.
    pub(crate) async fn open(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(dir) => Arc::new(SqlStore::open_sqlite_dir(dir.path()).await.unwrap()),
            Self::Postgres { url, schema } => {
                Arc::new(SqlStore::connect_postgres(url, Some(schema)).await.unwrap())
            }
        }
    }

    /// Drops a PostgreSQL test schema (SQLite's folder goes with the `TempDir`).
    pub(crate) async fn drop_schema(&self) {
        if let Self::Postgres { url, schema } = self {
            let pool = sqlx_pool(url).await;
            let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
        }
    }
}

async fn sqlx_pool(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap()
}

/// Runs `$test(store, db)` once on each backend, as two tests: `$test::sqlite` and
/// `$test::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($test:ident) => {
        mod $test {
            use $crate::{Backend, Db};
            async fn run(backend: Backend) {
                let Some(db) = Db::new(backend).await else {
                    return;
                };
                let store = db.open().await;
                super::$test(store, &db).await;
                db.drop_schema().await;
            }
            #[tokio::test]
            async fn sqlite() {
                run(Backend::Sqlite).await;
            }
            #[tokio::test]
            async fn postgres() {
                run(Backend::Postgres).await;
            }
        }
    };
}

fn key(id: &str, name: &str, hash_byte: u8) -> NewKeyRecord {
    NewKeyRecord {
        id: id.into(),
        name: name.into(),
        hash: [hash_byte; 32],
        prefix: "wdn_00000000".into(),
        models: None,
        created_at: 1_000,
        expires_at: None,
        admin: false,
        agents: Vec::new(),
        max_agents: None,
        lineage_id: id.into(),
    }
}
