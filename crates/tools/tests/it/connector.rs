//! The `sql_query` connectors against real databases: a SQLite file, and this machine's
//! PostgreSQL (skipped loudly without `WARDEN_TEST_POSTGRES_URL`, failing in CI).

use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use warden_config::{DatabaseConfig, DatabaseLocation};
use warden_tools::sql::{Database, ReadError, Rule};

fn config(location: DatabaseLocation) -> DatabaseConfig {
    let mut tables = BTreeMap::new();
    tables.insert("customers".to_string(), None);
    tables.insert("orders".to_string(), None);
    DatabaseConfig {
        location,
        tables,
        max_rows: 3,
        statement_timeout: Duration::from_millis(300),
        denied_functions: Default::default(),
        allowed_functions: Default::default(),
        strict_roles: false,
        write_url_env: None,
        writable_tables: Default::default(),
        max_affected_rows: 10,
        allow_without_where: false,
    }
}

const SCHEMA: &str = "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT, score REAL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total REAL);
CREATE TABLE secrets (id INTEGER, value TEXT);
INSERT INTO customers VALUES (1, 'Ada', 'London', 9.5), (2, 'Bo', 'Oslo', NULL), (3, 'Cy', 'Oslo', 7.0), (4, 'Di', 'Rome', 1.0), (5, 'Ed', 'Oslo', 2.0);
INSERT INTO orders VALUES (1, 1, 10.0), (2, 1, 20.5), (3, 3, 5.0);
INSERT INTO secrets VALUES (1, 'hunter2');";

async fn sqlite_db() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.db");
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::raw_sql(SCHEMA).execute(&pool).await.unwrap();
    pool.close().await;
    let db = Database::open("shop", &config(DatabaseLocation::Sqlite(path)), None)
        .await
        .unwrap();
    (dir, db)
}

#[tokio::test]
async fn sqlite_reads_return_json_rows_capped_by_the_limit() {
    let (_dir, db) = sqlite_db().await;
    let rows = db
        .read("SELECT name, score FROM customers WHERE city = 'Oslo' ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        rows.rows,
        vec![
            json!({"name": "Bo", "score": null}),
            json!({"name": "Cy", "score": 7.0}),
            json!({"name": "Ed", "score": 2.0})
        ]
    );
    let all = db.read("SELECT * FROM customers").await.unwrap();
    assert_eq!(all.rows.len(), 3, "max_rows caps it");
    assert!(all.sql.ends_with("LIMIT 3"));
    let joined = db
        .read("SELECT c.name, SUM(o.total) AS spent FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.name ORDER BY spent DESC")
        .await
        .unwrap();
    assert_eq!(joined.rows[0], json!({"name": "Ada", "spent": 30.5}));
}

#[tokio::test]
async fn sqlite_refusals_timeouts_and_read_only() {
    let (_dir, db) = sqlite_db().await;
    match db.read("SELECT * FROM secrets").await {
        Err(ReadError::Refused(r)) => assert_eq!(r.rule, Rule::TableNotAllowed),
        other => panic!("{other:?}"),
    }
    // An endless recursive CTE is cut off by the statement timeout.
    let endless =
        "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT count(*) FROM r";
    match db.read(endless).await {
        Err(ReadError::Timeout(t)) => assert_eq!(t, Duration::from_millis(300)),
        other => panic!("{other:?}"),
    }
    // The connection itself cannot write, whatever reached it.
    assert!(
        db.read("SELECT name FROM customers").await.is_ok(),
        "usable after a timeout"
    );
}

#[tokio::test]
async fn postgres_reads_run_read_only_with_a_timeout_and_approved_writes_once() {
    let Ok(url) = std::env::var("WARDEN_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "WARDEN_TEST_POSTGRES_URL must be set in CI"
        );
        eprintln!(
            "\n*** SKIPPED the PostgreSQL sql_query test: set WARDEN_TEST_POSTGRES_URL ***\n"
        );
        return;
    };
    let schema = format!("wtool_{}_{}", std::process::id(), warden_core_millis());
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let setup = format!(
        "CREATE SCHEMA {schema}; SET search_path = {schema}; {}",
        SCHEMA
            .replace("INTEGER PRIMARY KEY", "BIGINT PRIMARY KEY")
            .replace(" REAL", " DOUBLE PRECISION")
    );
    let mut conn = admin.acquire().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let sep = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    let mut pg_config = config(DatabaseLocation::Postgres {
        url_env: "X".into(),
    });
    pg_config.writable_tables = ["orders".to_string()].into();
    let db = Database::open("shop", &pg_config, Some(&scoped))
        .await
        .unwrap();
    let rows = db
        .read("SELECT name, score FROM customers WHERE city = 'Oslo' ORDER BY id")
        .await
        .unwrap();
    assert_eq!(rows.rows[1]["name"], "Cy");
    assert_eq!(rows.rows[1]["score"].as_f64(), Some(7.0));
    assert_eq!(rows.rows.len(), 3);
    match db.read("SELECT * FROM pg_catalog.pg_user").await {
        Err(ReadError::Refused(r)) => assert_eq!(r.rule, Rule::SystemCatalog),
        other => panic!("{other:?}"),
    }
    let endless =
        "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT count(*) FROM r";
    match db.read(endless).await {
        Err(ReadError::Timeout(_)) => {}
        other => panic!("{other:?}"),
    }
    // Writes: previewed in a rolled-back transaction, then run once with their key.
    let w = db
        .validate_write("UPDATE orders SET total = 0 WHERE id = 1")
        .unwrap();
    let p = db.preview(&w).await.unwrap();
    assert_eq!(p.rows_affected, 1);
    assert_eq!(p.before[0]["total"].as_f64(), Some(10.0));
    assert_eq!(p.after[0]["total"].as_f64(), Some(0.0));
    let unchanged = db
        .read("SELECT total FROM orders WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(unchanged.rows[0]["total"].as_f64(), Some(10.0));
    let approved = approve(w);
    let done = db.execute(&approved, "pg-1", &expected(&p)).await.unwrap();
    assert!(!done.already_applied);
    assert!(
        db.execute(&approved, "pg-1", &expected(&p))
            .await
            .unwrap()
            .already_applied
    );
    let changed = db
        .read("SELECT total FROM orders WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(changed.rows[0]["total"].as_f64(), Some(0.0));
    let drop_sql = format!("DROP SCHEMA {schema} CASCADE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop_sql))
        .execute(&admin)
        .await
        .unwrap();
}

/// What an approved write must match: its preview's.
pub fn expected(p: &warden_tools::sql::Preview) -> warden_tools::sql::Expected {
    warden_tools::sql::Expected {
        rows_affected: p.rows_affected,
        row_ids_sha256: Some(p.row_ids_sha256.clone()),
    }
}

fn warden_core_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 1_000_000_000
}

async fn writable_db(max_affected_rows: u64) -> (tempfile::TempDir, Database, std::path::PathBuf) {
    let (dir, _) = sqlite_db().await;
    let path = dir.path().join("shop.db");
    let mut c = config(DatabaseLocation::Sqlite(path.clone()));
    c.writable_tables = ["orders".to_string()].into();
    c.max_affected_rows = max_affected_rows;
    let db = Database::open("shop", &c, None).await.unwrap();
    (dir, db, path)
}

fn approve(
    write: warden_tools::sql::ValidatedWrite,
) -> warden_tools::approval::Approved<warden_tools::sql::ValidatedWrite> {
    use warden_tools::approval::{Approver, Decision, DecisionMessage, verify_decision};
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let approvers = [(
        "alice".to_string(),
        Approver {
            key: key.verifying_key(),
            tools: vec!["sql_execute".into()],
        },
    )]
    .into();
    let message = DecisionMessage {
        approval_id: "apr_t".into(),
        agent_id: "a/b".into(),
        tool: "sql_execute".into(),
        arguments_sha256: "00".repeat(32),
        decision: Decision::Approve,
        expires_at_ms: i64::MAX,
    };
    let sig = message.sign(&key);
    verify_decision(&approvers, "alice", &message, &sig, 0, write).unwrap()
}

async fn total(path: &std::path::Path, id: i64) -> f64 {
    let pool =
        sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(path))
            .await
            .unwrap();
    let t: f64 = sqlx::query_scalar("SELECT total FROM orders WHERE id = ?")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    t
}

#[tokio::test]
async fn previews_change_nothing_and_approved_writes_run_once() {
    let (_dir, db, path) = writable_db(10).await;
    let w = db
        .validate_write("UPDATE orders SET total = 0 WHERE id = 1")
        .unwrap();
    let p = db.preview(&w).await.unwrap();
    assert_eq!(p.rows_affected, 1);
    assert_eq!(p.before[0]["total"], 10.0);
    assert_eq!(p.after[0]["total"], 0.0);
    assert_eq!(total(&path, 1).await, 10.0, "the preview was rolled back");
    let approved = approve(w);
    let first = db
        .execute(&approved, "idem-1", &expected(&p))
        .await
        .unwrap();
    assert_eq!((first.rows_affected, first.already_applied), (1, false));
    assert_eq!(total(&path, 1).await, 0.0);
    assert!(db.was_applied("idem-1").await.unwrap());
    assert!(!db.was_applied("idem-2").await.unwrap());
    // The same key again (a retry after a crash): nothing runs twice.
    let again = db
        .execute(&approved, "idem-1", &expected(&p))
        .await
        .unwrap();
    assert!(again.already_applied);
    // Reads never see the idempotency table, and writes elsewhere are refused.
    assert!(
        db.validate_write("DELETE FROM customers WHERE id = 1")
            .is_err()
    );
}

#[tokio::test]
async fn a_write_whose_rows_changed_since_its_preview_does_not_run() {
    let (_dir, db, path) = writable_db(10).await;
    // Previewed on orders 1 and 2 (customer 1) …
    let w = db
        .validate_write("UPDATE orders SET total = 1 WHERE customer_id = 1")
        .unwrap();
    let p = db.preview(&w).await.unwrap();
    assert_eq!(p.rows_affected, 2);
    assert_eq!(p.row_ids, vec![json!([1]), json!([2])]);
    // … then order 2 moves to customer 3 and order 3 to customer 1: still two rows match,
    // but not the same ones.
    let pool =
        sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&path))
            .await
            .unwrap();
    sqlx::raw_sql("UPDATE orders SET customer_id = 3 WHERE id = 2; UPDATE orders SET customer_id = 1 WHERE id = 3")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let err = db
        .execute(&approve(w), "idem-x", &expected(&p))
        .await
        .unwrap_err();
    match &err {
        ReadError::Refused(r) => assert_eq!(r.rule, Rule::RowsChangedSincePreview, "{err}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(total(&path, 1).await, 10.0, "rolled back");
    assert_eq!(total(&path, 3).await, 5.0, "rolled back");
    assert!(!db.was_applied("idem-x").await.unwrap());
}

#[tokio::test]
async fn max_affected_rows_caps_previews_and_writes() {
    let (_dir, db, path) = writable_db(1).await;
    let w = db
        .validate_write("UPDATE orders SET total = 1 WHERE customer_id = 1")
        .unwrap();
    match db.preview(&w).await {
        Err(ReadError::Refused(r)) => assert_eq!(r.rule, Rule::TooManyRows),
        other => panic!("{other:?}"),
    }
    // Even with a forged preview that claims two rows, the cap holds at execution.
    let forged = warden_tools::sql::Expected {
        rows_affected: 2,
        row_ids_sha256: None,
    };
    let err = db
        .execute(&approve(w), "idem-y", &forged)
        .await
        .unwrap_err();
    match &err {
        ReadError::Refused(r) => assert_eq!(r.rule, Rule::TooManyRows, "{err}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(total(&path, 1).await, 10.0);
}

#[tokio::test]
async fn a_long_sqlite_proposal_is_cut_at_its_timeout_and_releases_the_write_lock() {
    let (_dir, db, path) = writable_db(10).await;
    let joins: Vec<String> = (0..20).map(|i| format!("orders o{i}")).collect();
    let w = db
        .validate_write(&format!(
            "UPDATE orders SET total = (SELECT count(*) FROM {}) WHERE id = 1",
            joins.join(", ")
        ))
        .unwrap();
    let started = std::time::Instant::now();
    match db.preview(&w).await {
        Err(ReadError::Timeout(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut at its 300 ms timeout, not after {:?}",
        started.elapsed()
    );
    // The write lock is free again: another writer gets it at once.
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(Duration::from_millis(0)),
    )
    .await
    .unwrap();
    sqlx::query("UPDATE orders SET total = 11 WHERE id = 1")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(total(&path, 1).await, 11.0);
}

#[tokio::test]
async fn one_sqlite_value_cannot_take_more_than_its_limit() {
    let (_dir, db) = sqlite_db().await;
    // 900 MB asked for: SQLite's per-value limit (1 MiB) stops it.
    match db
        .read("SELECT length(printf('%.*c', 900000000, 'x')) AS n FROM orders")
        .await
    {
        Ok(rows) => assert!(rows.rows.iter().all(|r| r["n"].is_null()), "{rows:?}"),
        Err(ReadError::Database(m)) => assert!(m.contains("too big"), "{m}"),
        Err(other) => panic!("{other:?}"),
    }
    let big = warden_tools::sql::SQLITE_MAX_VALUE_BYTES;
    match db
        .read(&format!(
            "SELECT length(replace(printf('%.*c', {}, 'x'), 'x', 'yy')) AS n FROM orders",
            big / 2 + 1
        ))
        .await
    {
        Ok(rows) => assert!(rows.rows.iter().all(|r| r["n"].is_null()), "{rows:?}"),
        Err(ReadError::Database(m)) => assert!(m.contains("too big"), "{m}"),
        Err(other) => panic!("{other:?}"),
    }
}
