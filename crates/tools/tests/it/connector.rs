//! The `sql_query` connectors against real databases: a SQLite file, and this machine's
//! PostgreSQL (skipped loudly without `WARDEN_TEST_POSTGRES_URL`, failing in CI).

use super::connector_mysql::{on_postgres, pg_config, pg_exec, unique_name, with_cleanup};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use warden_config::{DatabaseConfig, DatabaseLocation};
use warden_tools::Settlement;
use warden_tools::sql::{CompanyDatabase, ReadError, Rule};

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

async fn sqlite_db() -> (tempfile::TempDir, CompanyDatabase) {
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
    let db = CompanyDatabase::open("shop", &config(DatabaseLocation::Sqlite(path)), None)
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
    let db = CompanyDatabase::open("shop", &pg_config, Some(&scoped))
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

async fn writable_db(
    max_affected_rows: u64,
) -> (tempfile::TempDir, CompanyDatabase, std::path::PathBuf) {
    let (dir, _) = sqlite_db().await;
    let path = dir.path().join("shop.db");
    let db = CompanyDatabase::open("shop", &writable_config(&path, max_affected_rows), None)
        .await
        .unwrap();
    (dir, db, path)
}

fn writable_config(path: &std::path::Path, max_affected_rows: u64) -> DatabaseConfig {
    let mut c = config(DatabaseLocation::Sqlite(path.to_owned()));
    c.writable_tables = ["orders".to_string()].into();
    c.max_affected_rows = max_affected_rows;
    c
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

/// A plain connection pool on the SQLite file, as another process would open it.
async fn sqlite_pool(path: &std::path::Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(path))
        .await
        .unwrap()
}

/// Previews and approves `sql`.
async fn approved(
    db: &CompanyDatabase,
    sql: &str,
) -> (
    warden_tools::approval::Approved<warden_tools::sql::ValidatedWrite>,
    warden_tools::sql::Expected,
) {
    let w = db.validate_write(sql).unwrap();
    let p = db.preview(&w).await.unwrap();
    (approve(w), expected(&p))
}

#[tokio::test]
async fn sqlite_settle_finds_applied_writes_and_fences_the_others_for_good() {
    let (_dir, db, path) = writable_db(10).await;
    let (w, e) = approved(&db, "UPDATE orders SET total = 0 WHERE customer_id = 1").await;
    db.execute(&w, "s-1", &e).await.unwrap();
    assert_eq!(
        db.settle("s-1").await.unwrap(),
        Settlement::Applied { rows_affected: 2 }
    );
    // A retry of the applied write runs nothing and reports its recorded count.
    let again = db.execute(&w, "s-1", &e).await.unwrap();
    assert_eq!((again.rows_affected, again.already_applied), (2, true));
    // Never dispatched (or interrupted before it committed): fenced, for good.
    let (w, e) = approved(&db, "UPDATE orders SET total = 99 WHERE id = 3").await;
    assert_eq!(db.settle("s-2").await.unwrap(), Settlement::NotApplied);
    assert_eq!(db.settle("s-2").await.unwrap(), Settlement::NotApplied);
    match db.execute(&w, "s-2", &e).await {
        Err(ReadError::SettledNotApplied) => {}
        other => panic!("a fenced write ran: {other:?}"),
    }
    assert_eq!(total(&path, 3).await, 5.0, "nothing changed");
    assert!(!db.was_applied("s-2").await.unwrap());
    assert!(db.was_applied("s-1").await.unwrap());
}

/// Holds the write lock with `key` recorded as applied (a write still running, as the
/// connector's own transaction would), ending it after `hold` with a commit or a rollback.
async fn sqlite_hold(
    path: &std::path::Path,
    key: &str,
    hold: Duration,
    commit: bool,
) -> tokio::task::JoinHandle<()> {
    let pool = sqlite_pool(path).await;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query("UPDATE orders SET total = 42 WHERE id = 2")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO warden_idempotency (key, applied_at, outcome, rows_affected) VALUES (?1, 0, 'applied', 1)",
    )
    .bind(key)
    .execute(&mut *tx)
    .await
    .unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
        pool.close().await;
    })
}

#[tokio::test]
async fn sqlite_settle_waits_for_a_write_in_progress() {
    let (_dir, short, path) = writable_db(10).await;
    // The table exists once anything was settled or written.
    assert_eq!(short.settle("s-0").await.unwrap(), Settlement::NotApplied);
    let mut c = writable_config(&path, 10);
    c.statement_timeout = Duration::from_secs(10);
    let patient = CompanyDatabase::open("shop", &c, None).await.unwrap();
    // Committed while the settlement waits: applied.
    let holder = sqlite_hold(&path, "s-commit", Duration::from_millis(600), true).await;
    let started = std::time::Instant::now();
    assert_eq!(
        patient.settle("s-commit").await.unwrap(),
        Settlement::Applied { rows_affected: 1 }
    );
    assert!(started.elapsed() >= Duration::from_millis(400), "it waited");
    holder.await.unwrap();
    assert_eq!(total(&path, 2).await, 42.0);
    // Rolled back while it waits: not applied, and fenced.
    let holder = sqlite_hold(&path, "s-rollback", Duration::from_millis(600), false).await;
    assert_eq!(
        patient.settle("s-rollback").await.unwrap(),
        Settlement::NotApplied
    );
    holder.await.unwrap();
    // Held past the wait (the statement timeout, 300 ms here): still in progress, nothing
    // decided; once it ends, the settlement decides.
    let holder = sqlite_hold(&path, "s-long", Duration::from_secs(3), false).await;
    match short.settle("s-long").await {
        Err(ReadError::InProgress(t)) => assert_eq!(t, Duration::from_millis(300)),
        other => panic!("{other:?}"),
    }
    holder.await.unwrap();
    assert_eq!(
        short.settle("s-long").await.unwrap(),
        Settlement::NotApplied
    );
}

#[tokio::test]
async fn sqlite_was_applied_and_settle_fail_on_a_broken_idempotency_table() {
    let (_dir, db, path) = writable_db(10).await;
    // No table yet: nothing was applied.
    assert!(!db.was_applied("b-1").await.unwrap());
    // A table that cannot be read as the idempotency table is an error, never "not applied".
    let pool = sqlite_pool(&path).await;
    sqlx::raw_sql("CREATE TABLE warden_idempotency (other TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    match db.was_applied("b-1").await {
        Err(ReadError::Database(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(db.settle("b-1").await.is_err());
    // A file that is no database at all: an error too.
    std::fs::write(&path, vec![7u8; 8192]).unwrap();
    match db.was_applied("b-1").await {
        Err(ReadError::Database(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(db.settle("b-1").await.is_err());
}

#[tokio::test]
async fn sqlite_an_idempotency_table_of_an_older_version_is_migrated_in_place() {
    let (_dir, db, path) = writable_db(10).await;
    let pool = sqlite_pool(&path).await;
    sqlx::raw_sql(
        "CREATE TABLE warden_idempotency (key TEXT PRIMARY KEY, applied_at BIGINT NOT NULL);
         INSERT INTO warden_idempotency VALUES ('old-1', 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Read as it is, before any migration.
    assert!(db.was_applied("old-1").await.unwrap());
    assert!(!db.was_applied("old-2").await.unwrap());
    // Migrated on first use; the old row is an applied write whose count was not recorded.
    assert_eq!(
        db.settle("old-1").await.unwrap(),
        Settlement::Applied { rows_affected: 0 }
    );
    assert_eq!(db.settle("old-2").await.unwrap(), Settlement::NotApplied);
    let (w, e) = approved(&db, "UPDATE orders SET total = 0 WHERE id = 1").await;
    assert!(db.execute(&w, "old-1", &e).await.unwrap().already_applied);
    assert_eq!(total(&path, 1).await, 10.0);
    let columns: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info('warden_idempotency')")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        columns,
        ["key", "applied_at", "outcome", "rows_affected"].map(String::from)
    );
    pool.close().await;
}

const SSNS: [&str; 3] = ["078-05-1120", "219-09-9999", "457-55-5462"];

/// A preview on `table` (written as `name` in the statements) shows no `ssn` value, only the
/// `name` column its read policy allows, and the same count and row-ids hash as the unrestricted
/// preview of the same write on `all`.
pub(crate) async fn assert_previews_hide_ssn(
    restricted: &CompanyDatabase,
    all: &CompanyDatabase,
    name: &str,
) {
    for sql in [
        format!("UPDATE {name} SET name = 'Al' WHERE name = 'Ada'"),
        format!("UPDATE {name} SET name = 'X' WHERE name IN ('Ada', 'Bo')"),
        format!("DELETE FROM {name} WHERE name = 'Bo'"),
        format!("INSERT INTO {name} (id, name) VALUES (7, 'Cy')"),
    ] {
        let w = restricted
            .validate_write(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let p = restricted
            .preview(&w)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let text = serde_json::to_string(&json!({
            "before": p.before, "after": p.after, "row_ids": p.row_ids, "sql": p.sql,
            "key_columns": p.key_columns, "triggers": p.triggers, "cascades": p.cascades,
        }))
        .unwrap();
        assert!(
            SSNS.iter().all(|s| !text.contains(s)) && !text.contains("\"ssn\""),
            "{sql}: {text}"
        );
        for row in p.before.iter().chain(&p.after) {
            let keys: Vec<&String> = row.as_object().unwrap().keys().collect();
            assert_eq!(keys, vec!["name"], "{sql}: {row}");
        }
        assert!(p.row_ids.is_empty(), "the key `id` is not allowed: {sql}");
        assert!(!p.before.is_empty() || !p.after.is_empty(), "{sql}: {p:?}");
        // The count and the row identities are the unrestricted preview's.
        let full = all
            .preview(&all.validate_write(&sql).unwrap())
            .await
            .unwrap();
        assert_eq!(
            (p.rows_affected, &p.row_ids_sha256),
            (full.rows_affected, &full.row_ids_sha256),
            "{sql}"
        );
        assert!(
            full.before
                .iter()
                .chain(&full.after)
                .any(|r| r.get("ssn").is_some()),
            "without a column list the preview shows ssn: {sql}"
        );
    }
    // A write to a hidden column is refused, however the table is named.
    let w = restricted.validate_write(&format!("UPDATE {name} SET ssn = 'x' WHERE name = 'Ada'"));
    let refused = match w {
        Ok(w) => restricted.preview(&w).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match refused {
        Err(ReadError::Refused(r)) => assert_eq!(r.rule, Rule::ColumnNotAllowed),
        other => panic!("{other:?}"),
    }
}

/// The read policy of `people` (`name` only) and `writable` for writes; `columns` `None`: every
/// column.
pub(crate) fn people_config(
    mut c: DatabaseConfig,
    writable: &str,
    columns: Option<&[&str]>,
) -> DatabaseConfig {
    c.tables.insert(
        "people".into(),
        columns.map(|cs| cs.iter().map(|s| s.to_string()).collect()),
    );
    c.writable_tables = [writable.to_string()].into();
    c
}

pub(crate) const PEOPLE: &str = "CREATE TABLE people (id BIGINT PRIMARY KEY, name TEXT, ssn TEXT);
INSERT INTO people VALUES (1, 'Ada', '078-05-1120'), (2, 'Bo', '219-09-9999'), (3, 'Ed', '457-55-5462')";

#[tokio::test]
async fn sqlite_a_preview_shows_only_the_columns_the_read_policy_allows() {
    let (dir, _) = sqlite_db().await;
    let path = dir.path().join("shop.db");
    let pool = sqlite_pool(&path).await;
    sqlx::raw_sql(PEOPLE).execute(&pool).await.unwrap();
    pool.close().await;
    let base = || config(DatabaseLocation::Sqlite(path.clone()));
    // The writable table named as the read policy names it, and as `main.people`.
    for (writable, name) in [("people", "people"), ("main.people", "main.people")] {
        let restricted = CompanyDatabase::open(
            "shop",
            &people_config(base(), writable, Some(&["name"])),
            None,
        )
        .await
        .unwrap();
        let all = CompanyDatabase::open("shop", &people_config(base(), writable, None), None)
            .await
            .unwrap();
        assert_previews_hide_ssn(&restricted, &all, name).await;
    }
}

// PostgreSQL.

/// `url` with `userinfo` (`user` or `user:password`) before its host.
pub(crate) fn with_user(url: &str, userinfo: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let host = match rest.find('@') {
        Some(at) if !rest[..at].contains('/') => &rest[at + 1..],
        _ => rest,
    };
    format!("{}{userinfo}@{host}", &url[..start])
}

/// A PostgreSQL database for settlements, its wait `timeout`.
async fn pg_writes(url: &str, timeout: Duration) -> CompanyDatabase {
    let mut c = pg_config();
    c.statement_timeout = timeout;
    CompanyDatabase::open("shop", &c, Some(url)).await.unwrap()
}

async fn pg_total(admin: &sqlx::PgPool, schema: &str, id: i64) -> String {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT total::text FROM {schema}.orders WHERE id = $1"
    )))
    .bind(id)
    .fetch_one(admin)
    .await
    .unwrap()
}

/// Holds a transaction that changed order 2 and recorded `key` as applied (a write still
/// running), ending it after `hold`.
async fn pg_hold(
    admin: &sqlx::PgPool,
    schema: &str,
    key: &str,
    hold: Duration,
    commit: bool,
) -> tokio::task::JoinHandle<()> {
    let mut tx = admin.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {schema}.orders SET total = 42 WHERE id = 2"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {schema}.warden_idempotency (key, applied_at, outcome, rows_affected) VALUES ($1, 0, 'applied', 1)"
    )))
    .bind(key)
    .execute(&mut *tx)
    .await
    .unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
    })
}

#[tokio::test]
async fn postgres_settle_finds_applied_writes_and_fences_the_others_for_good() {
    on_postgres(|admin, schema, url| async move {
        let db = pg_writes(&url, Duration::from_millis(300)).await;
        let (w, e) = approved(&db, "UPDATE orders SET total = 0 WHERE customer_id = 1").await;
        db.execute(&w, "pg-s-1", &e).await.unwrap();
        assert_eq!(
            db.settle("pg-s-1").await.unwrap(),
            Settlement::Applied { rows_affected: 2 }
        );
        let again = db.execute(&w, "pg-s-1", &e).await.unwrap();
        assert_eq!((again.rows_affected, again.already_applied), (2, true));
        let (w, e) = approved(&db, "UPDATE orders SET total = 99 WHERE id = 3").await;
        assert_eq!(db.settle("pg-s-2").await.unwrap(), Settlement::NotApplied);
        assert_eq!(db.settle("pg-s-2").await.unwrap(), Settlement::NotApplied);
        match db.execute(&w, "pg-s-2", &e).await {
            Err(ReadError::SettledNotApplied) => {}
            other => panic!("a fenced write ran: {other:?}"),
        }
        assert_eq!(pg_total(&admin, &schema, 3).await, "5", "nothing changed");
        assert!(!db.was_applied("pg-s-2").await.unwrap());
        // Through the tool, as the agents call it.
        let tool =
            warden_tools::SqlExecute::new([("shop".to_string(), std::sync::Arc::new(db))].into());
        let args = json!({"database": "shop", "sql": "UPDATE orders SET total = 99 WHERE id = 3"});
        assert_eq!(
            tool.settle(&args, "pg-s-1").await.unwrap(),
            Settlement::Applied { rows_affected: 2 }
        );
        assert_eq!(
            tool.settle(&args, "pg-s-3").await.unwrap(),
            Settlement::NotApplied
        );
    })
    .await;
}

#[tokio::test]
async fn postgres_settle_waits_for_a_write_in_progress() {
    on_postgres(|admin, schema, url| async move {
        let short = pg_writes(&url, Duration::from_millis(300)).await;
        let patient = pg_writes(&url, Duration::from_secs(10)).await;
        assert_eq!(short.settle("pg-0").await.unwrap(), Settlement::NotApplied);
        let holder = pg_hold(
            &admin,
            &schema,
            "pg-commit",
            Duration::from_millis(600),
            true,
        )
        .await;
        let started = std::time::Instant::now();
        assert_eq!(
            patient.settle("pg-commit").await.unwrap(),
            Settlement::Applied { rows_affected: 1 }
        );
        assert!(started.elapsed() >= Duration::from_millis(400), "it waited");
        holder.await.unwrap();
        assert_eq!(pg_total(&admin, &schema, 2).await, "42");
        let holder = pg_hold(
            &admin,
            &schema,
            "pg-rollback",
            Duration::from_millis(600),
            false,
        )
        .await;
        assert_eq!(
            patient.settle("pg-rollback").await.unwrap(),
            Settlement::NotApplied
        );
        holder.await.unwrap();
        let holder = pg_hold(&admin, &schema, "pg-long", Duration::from_secs(3), false).await;
        match short.settle("pg-long").await {
            Err(ReadError::InProgress(t)) => assert_eq!(t, Duration::from_millis(300)),
            other => panic!("{other:?}"),
        }
        holder.await.unwrap();
        assert_eq!(
            short.settle("pg-long").await.unwrap(),
            Settlement::NotApplied
        );
        // A real write that finds its key fenced while it was waiting to start never runs.
        let (w, e) = approved(&short, "UPDATE orders SET total = 7 WHERE id = 2").await;
        assert!(matches!(
            short.execute(&w, "pg-long", &e).await,
            Err(ReadError::SettledNotApplied)
        ));
        assert_eq!(pg_total(&admin, &schema, 2).await, "42");
    })
    .await;
}

#[tokio::test]
async fn postgres_was_applied_and_settle_fail_on_a_permission_error() {
    on_postgres(|admin, schema, url| async move {
        let db = pg_writes(&url, Duration::from_millis(300)).await;
        let (w, e) = approved(&db, "UPDATE orders SET total = 0 WHERE id = 1").await;
        db.execute(&w, "pg-p-1", &e).await.unwrap();
        // A role that may use the tables but not the idempotency table.
        let role = unique_name();
        pg_exec(
            &admin,
            format!(
                "CREATE ROLE {role} LOGIN PASSWORD 'pw'; GRANT USAGE ON SCHEMA {schema} TO {role}; \
                 GRANT SELECT, UPDATE ON {schema}.orders, {schema}.customers TO {role}"
            ),
        )
        .await;
        let role_url = with_user(&url, &format!("{role}:pw"));
        let cleanup_admin = admin.clone();
        let drop_role = format!("DROP OWNED BY {role}; DROP ROLE {role}");
        with_cleanup(
            async move {
                let limited = pg_writes(&role_url, Duration::from_millis(300)).await;
                match limited.was_applied("pg-p-1").await {
                    Err(ReadError::Database(m)) => assert!(m.contains("permission"), "{m}"),
                    other => panic!("{other:?}"),
                }
                assert!(limited.settle("pg-p-1").await.is_err());
                assert!(limited.settle("pg-p-2").await.is_err());
            },
            async move { pg_exec(&cleanup_admin, drop_role).await },
        )
        .await;
        assert!(db.was_applied("pg-p-1").await.unwrap());
        assert!(!db.was_applied("pg-p-2").await.unwrap(), "never fenced");
    })
    .await;
}

#[tokio::test]
async fn postgres_an_idempotency_table_of_an_older_version_is_migrated_in_place() {
    on_postgres(|admin, schema, url| async move {
        pg_exec(
            &admin,
            format!(
                "CREATE TABLE {schema}.warden_idempotency (key TEXT PRIMARY KEY, applied_at BIGINT NOT NULL); \
                 INSERT INTO {schema}.warden_idempotency VALUES ('old-1', 1)"
            ),
        )
        .await;
        let db = pg_writes(&url, Duration::from_millis(300)).await;
        assert!(db.was_applied("old-1").await.unwrap());
        assert!(!db.was_applied("old-2").await.unwrap());
        assert_eq!(
            db.settle("old-1").await.unwrap(),
            Settlement::Applied { rows_affected: 0 }
        );
        assert_eq!(db.settle("old-2").await.unwrap(), Settlement::NotApplied);
        let (w, e) = approved(&db, "UPDATE orders SET total = 0 WHERE id = 1").await;
        assert!(db.execute(&w, "old-1", &e).await.unwrap().already_applied);
        assert_eq!(pg_total(&admin, &schema, 1).await, "10");
        let done = db.execute(&w, "new-1", &e).await.unwrap();
        assert!(!done.already_applied);
        assert_eq!(
            db.settle("new-1").await.unwrap(),
            Settlement::Applied { rows_affected: 1 }
        );
    })
    .await;
}

#[tokio::test]
async fn postgres_a_preview_shows_only_the_columns_the_read_policy_allows() {
    on_postgres(|admin, schema, url| async move {
        pg_exec(
            &admin,
            PEOPLE.replace(" people", &format!(" {schema}.people")),
        )
        .await;
        let qualified = format!("{schema}.people");
        for (writable, name) in [
            ("people", "people"),
            (qualified.as_str(), qualified.as_str()),
        ] {
            let restricted = CompanyDatabase::open(
                "shop",
                &people_config(pg_config(), writable, Some(&["name"])),
                Some(&url),
            )
            .await
            .unwrap();
            let all = CompanyDatabase::open(
                "shop",
                &people_config(pg_config(), writable, None),
                Some(&url),
            )
            .await
            .unwrap();
            assert_previews_hide_ssn(&restricted, &all, name).await;
        }
    })
    .await;
}

// Database errors never carry row values.

/// `bookings`, whose read policy hides `guest`, a column of the unique key `uq`.
pub(crate) const BOOKINGS: &str = "CREATE TABLE bookings (id BIGINT PRIMARY KEY, guest VARCHAR(64) NOT NULL, slot INT NOT NULL, CONSTRAINT uq UNIQUE (guest, slot));
INSERT INTO bookings VALUES (1, 'Margaret Hamilton', 1), (2, 'Margaret Hamilton', 2), (3, 'Grace Hopper', 3)";

/// The row taken between the approved write's preview and its run.
pub(crate) const BOOKINGS_CONFLICT: &str =
    "INSERT INTO bookings VALUES (4, 'Margaret Hamilton', 4)";

/// Every part of the hidden values; none may appear in an error.
const HIDDEN: [&str; 4] = ["Margaret", "Hamilton", "Grace", "Hopper"];

/// `c` with `bookings` readable as `id` and `slot` only, and writable.
pub(crate) fn bookings_config(mut c: DatabaseConfig) -> DatabaseConfig {
    c.tables.insert(
        "bookings".into(),
        Some(["id".to_string(), "slot".to_string()].into()),
    );
    c.writable_tables = ["bookings".to_string()].into();
    c
}

/// What the errors of [`assert_write_errors_hide_values`] must name.
pub(crate) struct MustName<'a> {
    /// The unique violation: its class, its constraint.
    pub unique: &'a [&'a str],
    /// The error the table's trigger raises (its message quotes `OLD.guest`): its class.
    pub raised: &'a [&'a str],
}

/// `out` is a database error naming every one of `names` and none of the rows' values, as
/// the database error and as the tool's message.
fn assert_hides_values<T: std::fmt::Debug>(what: &str, out: Result<T, ReadError>, names: &[&str]) {
    let message = match out {
        Err(ReadError::Database(m)) => m,
        other => panic!("{what}: expected a database error, got {other:?}"),
    };
    let shown = ReadError::Database(message.clone()).to_string();
    for text in [&message, &shown] {
        for value in HIDDEN {
            assert!(!text.contains(value), "{what}: `{value}` shown in: {text}");
        }
        for name in names {
            assert!(text.contains(name), "{what}: `{name}` missing from: {text}");
        }
    }
}

/// On `db` ([`BOOKINGS`] and a trigger raising `slot 9 is taken by <OLD.guest>` on an update
/// to slot 9): a preview and an approved write that break `uq` fail with errors that name
/// the constraint and the class but carry no value, and so does the trigger's; `conflict`
/// (awaited between the approved write's preview and its run) takes its slot.
pub(crate) async fn assert_write_errors_hide_values(
    db: &CompanyDatabase,
    names: MustName<'_>,
    conflict: impl std::future::Future<Output = ()>,
) {
    // The preview of a write that breaks the key.
    let w = db
        .validate_write("UPDATE bookings SET slot = 2 WHERE id = 1")
        .unwrap();
    assert_hides_values("preview", db.preview(&w).await, names.unique);
    // An approved write whose slot was taken after its preview: it fails, changes nothing and
    // records nothing.
    let (w, e) = approved(db, "UPDATE bookings SET slot = 4 WHERE id = 1").await;
    conflict.await;
    let out = db.execute(&w, "uq-1", &e).await;
    assert_hides_values("approved write", out, names.unique);
    assert!(!db.was_applied("uq-1").await.unwrap());
    let slot = db
        .read("SELECT slot FROM bookings WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(slot.rows, vec![json!({"slot": 1})]);
    // A trigger's own message is not shown either: it may quote any column.
    let w = db
        .validate_write("UPDATE bookings SET slot = 9 WHERE id = 3")
        .unwrap();
    let mut raised = vec!["trigger"];
    raised.extend(names.raised);
    assert_hides_values("trigger", db.preview(&w).await, &raised);
}

#[tokio::test]
async fn sqlite_errors_of_a_write_name_the_constraint_but_no_value() {
    let (dir, _) = sqlite_db().await;
    let path = dir.path().join("shop.db");
    let pool = sqlite_pool(&path).await;
    sqlx::raw_sql(BOOKINGS).execute(&pool).await.unwrap();
    sqlx::raw_sql(
        "CREATE TRIGGER bookings_guard BEFORE UPDATE OF slot ON bookings WHEN NEW.slot = 9 \
         BEGIN SELECT RAISE(ABORT, 'slot 9 is taken by ' || OLD.guest); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    let db = CompanyDatabase::open(
        "shop",
        &bookings_config(config(DatabaseLocation::Sqlite(path))),
        None,
    )
    .await
    .unwrap();
    let conflict = async {
        sqlx::raw_sql(BOOKINGS_CONFLICT)
            .execute(&pool)
            .await
            .unwrap();
    };
    // SQLite names no constraint: its columns stand for it.
    let names = MustName {
        unique: &[
            "unique constraint",
            "`guest`, `slot`",
            "`bookings`",
            "SQLITE_CONSTRAINT_UNIQUE",
        ],
        raised: &["SQLITE_CONSTRAINT_TRIGGER"],
    };
    assert_write_errors_hide_values(&db, names, conflict).await;
    pool.close().await;
}

#[tokio::test]
async fn postgres_errors_of_a_write_name_the_constraint_but_no_value() {
    on_postgres(|admin, schema, url| async move {
        pg_exec(
            &admin,
            format!(
                "SET search_path = {schema}; {BOOKINGS};
                 CREATE FUNCTION bookings_guard() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                   IF NEW.slot = 9 THEN RAISE EXCEPTION 'slot 9 is taken by %', OLD.guest; END IF;
                   RETURN NEW;
                 END $$;
                 CREATE TRIGGER bookings_guard BEFORE UPDATE ON bookings
                   FOR EACH ROW EXECUTE FUNCTION bookings_guard();"
            ),
        )
        .await;
        let db = CompanyDatabase::open("shop", &bookings_config(pg_config()), Some(&url))
            .await
            .unwrap();
        let conflict = pg_exec(
            &admin,
            BOOKINGS_CONFLICT.replace("bookings", &format!("{schema}.bookings")),
        );
        let names = MustName {
            unique: &[
                "unique constraint `uq`",
                "`bookings`",
                "SQLSTATE 23505",
                "nothing was changed",
            ],
            raised: &["SQLSTATE P0001"],
        };
        assert_write_errors_hide_values(&db, names, conflict).await;
    })
    .await;
}
