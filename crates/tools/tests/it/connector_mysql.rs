//! The SQL connector on this machine's MariaDB/MySQL (`WARDEN_TEST_MYSQL_URL`, by default
//! `mysql://root@127.0.0.1:3306/test` outside CI; in CI a missing variable or an unreachable
//! server fails), and on PostgreSQL (`WARDEN_TEST_POSTGRES_URL`, skipped loudly without it,
//! failing in CI) the writes whose rows changed since their preview and the proposals cut at
//! their timeout. Every test makes its own database (MariaDB: `wtest_<pid>_<millis>_<n>`) or
//! schema (PostgreSQL) and drops only that, also when it fails.

use serde_json::{Value, json};
use sqlx::Connection;
use sqlx::mysql::{MySqlConnection, MySqlPool, MySqlPoolOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use warden_config::{DatabaseConfig, DatabaseLocation};
use warden_tools::Settlement;
use warden_tools::sql::{
    CompanyDatabase, Expected, MAX_RESULT_BYTES, Preview, ReadError, Rule, ValidatedWrite,
};

const TIMEOUT: Duration = Duration::from_millis(300);

/// A name no other run (or test of this run) uses: `wtest_<pid>_<millis>_<n>`.
pub(crate) fn unique_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 1_000_000_000_000;
    format!(
        "wtest_{}_{millis}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// `url` with its path (the database) replaced by `/db`, its query kept.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Runs `body` as its own task so that a failed assertion still reaches `cleanup`, then
/// fails with the assertion's own panic.
pub(crate) async fn with_cleanup<B, C>(body: B, cleanup: C)
where
    B: std::future::Future<Output = ()> + Send + 'static,
    C: std::future::Future<Output = ()>,
{
    let outcome = tokio::spawn(body).await;
    cleanup.await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A database of its own on the MariaDB/MySQL server.
struct My {
    /// The URL with `/<db>` as its path.
    url: String,
    /// A pool on it, for setup and checks (the server's default session settings).
    admin: MySqlPool,
}

impl My {
    /// The database's name.
    fn name(&self) -> String {
        let path = self.url.rsplit('/').next().unwrap_or_default();
        path.split('?').next().unwrap_or_default().to_owned()
    }

    async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&self.admin)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.admin)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    async fn orders(&self) -> Vec<(i64, i64, String, String)> {
        sqlx::query_as(
            "SELECT id, customer_id, CAST(total AS CHAR), status FROM orders ORDER BY id",
        )
        .fetch_all(&self.admin)
        .await
        .unwrap()
    }
}

const MY_SCHEMA: &[&str] = &[
    "CREATE TABLE customers (id BIGINT PRIMARY KEY, name VARCHAR(50), email VARCHAR(100), \
     city VARCHAR(50), score DECIMAL(4,1) NULL, joined DATE NULL, note TEXT NULL)",
    "INSERT INTO customers VALUES \
     (1, 'Ada', 'ada@example.com', 'London', 9.5, '2020-01-31', NULL), \
     (2, 'Bo', 'bo@example.org', 'Oslo', NULL, '2021-02-28', NULL), \
     (3, 'Cy', 'cy@example.net', 'Oslo', 7.0, NULL, NULL), \
     (4, 'Di', 'di@example.com', 'Rome', 1.0, NULL, NULL), \
     (5, 'Ed', 'ed@example.com', 'Oslo', 2.0, NULL, NULL)",
    "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT, total DECIMAL(10,2), \
     status VARCHAR(20))",
    "INSERT INTO orders VALUES (1, 1, 10.00, 'pending'), (2, 1, 20.50, 'pending'), \
     (3, 3, 5.00, 'shipped'), (4, 5, 7.25, 'shipped')",
    "CREATE TABLE secrets (id BIGINT PRIMARY KEY, value TEXT)",
    "INSERT INTO secrets VALUES (1, 'hunter2')",
    "CREATE TABLE logs (msg VARCHAR(50), n INT)",
    "INSERT INTO logs VALUES ('a', 1), ('b', 2)",
    "CREATE TABLE audit (id BIGINT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(50))",
    "CREATE TRIGGER orders_audit AFTER UPDATE ON orders FOR EACH ROW \
     INSERT INTO audit (note) VALUES (CONCAT('order ', NEW.id))",
];

/// Quotes, backslashes and a backslash before a quote: read back byte for byte.
const TRICKY: &str = r#"it's "quoted" \ back\slash \' \\ end"#;

/// Makes a database of its own, with [`MY_SCHEMA`]; `None` (skipped loudly) only outside CI.
async fn mysql_db() -> Option<(My, String)> {
    let server = match std::env::var("WARDEN_TEST_MYSQL_URL") {
        Ok(u) => u,
        Err(_) => {
            assert!(!in_ci(), "WARDEN_TEST_MYSQL_URL must be set in CI");
            "mysql://root@127.0.0.1:3306/test".to_owned()
        }
    };
    let mut root = match MySqlConnection::connect(&server).await {
        Ok(c) => c,
        Err(e) => {
            assert!(
                !in_ci(),
                "MariaDB/MySQL must be reachable in CI (WARDEN_TEST_MYSQL_URL): {e}"
            );
            eprintln!("\n*** SKIPPED the MariaDB connector test: no server ({e}) ***\n");
            return None;
        }
    };
    let db = unique_name();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{db}`")))
        .execute(&mut root)
        .await
        .unwrap();
    root.close().await.unwrap();
    let url = with_database(&server, &db);
    let admin = MySqlPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .unwrap();
    let my = My { url, admin };
    for s in MY_SCHEMA {
        my.exec(s).await;
    }
    sqlx::query("UPDATE customers SET note = ? WHERE id = 1")
        .bind(TRICKY)
        .execute(&my.admin)
        .await
        .unwrap();
    Some((my, server))
}

/// Runs `body` on a fresh database and drops it afterwards, whatever happened.
async fn on_mysql<F, Fut>(body: F)
where
    F: FnOnce(My) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some((my, server)) = mysql_db().await else {
        return;
    };
    let db = my
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    with_cleanup(body(my), async move {
        let mut root = MySqlConnection::connect(&server).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS `{db}`"
        )))
        .execute(&mut root)
        .await
        .unwrap();
        let _ = root.close().await;
    })
    .await;
}

fn set(xs: &[&str]) -> BTreeSet<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

fn config(location: DatabaseLocation) -> DatabaseConfig {
    let mut tables = BTreeMap::new();
    tables.insert(
        "customers".to_string(),
        Some(set(&["id", "name", "city", "score", "joined", "note"])),
    );
    tables.insert("orders".to_string(), None);
    tables.insert("logs".to_string(), None);
    tables.insert("audit".to_string(), None);
    DatabaseConfig {
        location,
        tables,
        max_rows: 3,
        statement_timeout: TIMEOUT,
        denied_functions: Default::default(),
        allowed_functions: Default::default(),
        strict_roles: false,
        write_url_env: None,
        writable_tables: set(&["orders", "logs"]),
        max_affected_rows: 10,
        allow_without_where: false,
    }
}

fn mysql_config() -> DatabaseConfig {
    config(DatabaseLocation::Mysql {
        url_env: "WARDEN_TEST_MYSQL_URL".into(),
    })
}

async fn open(my: &My, c: &DatabaseConfig) -> CompanyDatabase {
    CompanyDatabase::open("shop", c, Some(&my.url))
        .await
        .unwrap()
}

/// What an approved write must match: its preview's.
fn expected(p: &Preview) -> Expected {
    Expected {
        rows_affected: p.rows_affected,
        row_ids_sha256: Some(p.row_ids_sha256.clone()),
    }
}

fn approve(write: ValidatedWrite) -> warden_tools::approval::Approved<ValidatedWrite> {
    use warden_tools::approval::{Approver, Decision, DecisionMessage, verify_decision};
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let approvers = [(
        "alice".to_string(),
        Approver {
            key: key.verifying_key(),
            tools: vec!["sql_execute".into()],
        },
    )]
    .into();
    let message = DecisionMessage {
        approval_id: "apr_my".into(),
        agent_id: "a/b".into(),
        tool: "sql_execute".into(),
        arguments_sha256: "00".repeat(32),
        decision: Decision::Approve,
        expires_at_ms: i64::MAX,
    };
    let sig = message.sign(&key);
    verify_decision(&approvers, "alice", &message, &sig, 0, write).unwrap()
}

/// The rule of a refusal, or a panic naming what came instead.
fn refused<T: std::fmt::Debug>(what: &str, r: Result<T, ReadError>) -> Rule {
    match r {
        Err(ReadError::Refused(r)) => r.rule,
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

fn json_bytes(rows: &[Value]) -> usize {
    rows.iter().map(|r| r.to_string().len() + 1).sum()
}

#[tokio::test]
async fn mysql_reads_return_json_rows_capped_by_the_limit_and_64_kb() {
    on_mysql(|my| async move {
        let db = open(&my, &mysql_config()).await;
        // Integers, decimals, dates and NULL.
        let rows = db
            .read("SELECT id, name, score, joined FROM customers WHERE city = 'Oslo' ORDER BY id")
            .await
            .unwrap();
        assert_eq!(
            rows.rows,
            vec![
                json!({"id": 2, "name": "Bo", "score": null, "joined": "2021-02-28"}),
                json!({"id": 3, "name": "Cy", "score": 7.0, "joined": null}),
                json!({"id": 5, "name": "Ed", "score": 2.0, "joined": null}),
            ]
        );
        assert!(!rows.truncated);
        let ada = db
            .read("SELECT score, joined, note FROM customers WHERE id = 1")
            .await
            .unwrap();
        assert_eq!(ada.rows[0]["score"].as_f64(), Some(9.5));
        assert_eq!(ada.rows[0]["joined"], "2020-01-31");
        // Quotes and backslashes come back byte for byte …
        assert_eq!(ada.rows[0]["note"], TRICKY, "{:?}", ada.rows);
        // … and quotes in a literal mean what they say.
        let found = db
            .read(r#"SELECT id FROM customers WHERE note LIKE 'it''s "quoted"%'"#)
            .await
            .unwrap();
        assert_eq!(found.rows, vec![json!({"id": 1})], "{}", found.sql);
        let sums = db
            .read("SELECT customer_id, SUM(total) AS spent, COUNT(*) AS n FROM orders GROUP BY customer_id ORDER BY spent DESC")
            .await
            .unwrap();
        assert_eq!(sums.rows[0]["customer_id"], 1);
        assert_eq!(sums.rows[0]["spent"].as_f64(), Some(30.5));
        assert_eq!(sums.rows[0]["n"], 2);
        // The LIMIT caps the rows, and the order survives the JSON wrapping.
        let all = db.read("SELECT * FROM orders").await.unwrap();
        assert_eq!(all.rows.len(), 3, "max_rows caps it");
        assert!(all.sql.ends_with("LIMIT 3"), "{}", all.sql);
        let desc = db
            .read("SELECT id FROM orders ORDER BY id DESC")
            .await
            .unwrap();
        assert_eq!(
            desc.rows,
            vec![json!({"id": 4}), json!({"id": 3}), json!({"id": 2})]
        );
        let smaller = db
            .read("SELECT id FROM orders ORDER BY id LIMIT 2")
            .await
            .unwrap();
        assert_eq!(smaller.rows.len(), 2);
        // 64 KB of JSON at most: two 30 KB rows fit, the third does not.
        let big = db
            .read("SELECT id, REPEAT('x', 30000) AS pad FROM orders ORDER BY id")
            .await
            .unwrap();
        assert!(big.truncated);
        assert_eq!(big.rows.len(), 2);
        assert!(json_bytes(&big.rows) <= MAX_RESULT_BYTES);
        // One row over 64 KB is dropped whole (cut on the server).
        let huge = db
            .read("SELECT REPEAT('y', 70000) AS pad FROM orders")
            .await
            .unwrap();
        assert!(huge.truncated);
        assert!(huge.rows.is_empty(), "{}", json_bytes(&huge.rows));
        // Two result columns of one name would collide in JSON: refused, not merged.
        let dup = db
            .read("SELECT o.id, c.id FROM orders o JOIN customers c ON c.id = o.customer_id")
            .await;
        assert_eq!(refused("duplicate names", dup), Rule::Unsupported);
    })
    .await;
}

#[tokio::test]
async fn mysql_backslashes_never_hide_sql_from_the_validator() {
    on_mysql(|my| async move {
        let db = open(&my, &mysql_config()).await;
        // Under NO_BACKSLASH_ESCAPES, 'x\' is a whole string: what follows is SQL. The
        // validator must see it as the server will, or refuse it; never run it unchecked.
        for sql in [
            r"SELECT name FROM customers WHERE name = 'x\' UNION SELECT value FROM secrets -- '",
            r"SELECT name FROM customers WHERE name = 'x\' UNION SELECT value FROM secrets WHERE 'a' = 'a'",
            r"SELECT name FROM customers WHERE name = 'x\' OR email LIKE '%' OR 'a' = 'b'",
        ] {
            match db.read(sql).await {
                Ok(rows) => {
                    let text = json!(rows.rows).to_string();
                    assert!(
                        !text.contains("hunter2") && !text.contains("example"),
                        "{sql} ran as {}: {text}",
                        rows.sql
                    );
                }
                Err(ReadError::Refused(_)) => {}
                Err(e) => panic!("{sql}: {e}"),
            }
        }
        // A backslash the validator reads as an escape is printed without it: what runs is
        // what was checked (or the statement is refused).
        match db
            .read(r"SELECT 'a\'b' AS v FROM customers WHERE id = 2")
            .await
        {
            Ok(rows) => {
                assert_eq!(rows.rows, vec![json!({"v": "a'b"})]);
                assert!(rows.sql.contains("'a''b'"), "{}", rows.sql);
            }
            Err(ReadError::Refused(_)) => {}
            Err(e) => panic!("{e}"),
        }
    })
    .await;
}

#[tokio::test]
async fn mysql_a_read_cannot_write_and_refusals_name_their_rule() {
    on_mysql(|my| async move {
        let db = open(&my, &mysql_config()).await;
        for (sql, rule) in [
            ("SELECT * FROM orders FOR UPDATE", Rule::Locking),
            ("SELECT * FROM secrets", Rule::TableNotAllowed),
            (
                "SELECT id FROM customers c JOIN secrets s ON s.id = c.id",
                Rule::TableNotAllowed,
            ),
            ("SELECT email FROM customers", Rule::ColumnNotAllowed),
            ("SELECT * FROM customers", Rule::ColumnNotAllowed),
            (
                "SELECT name FROM customers WHERE email LIKE '%example%'",
                Rule::ColumnNotAllowed,
            ),
            ("SELECT SLEEP(1) AS s FROM orders", Rule::FunctionNotAllowed),
            (
                "SELECT id FROM orders WHERE SLEEP(1) = 0",
                Rule::FunctionNotAllowed,
            ),
            (
                "SELECT LOAD_FILE('/etc/passwd') AS f",
                Rule::FunctionNotAllowed,
            ),
            (
                "SELECT BENCHMARK(100000000, MD5('x')) AS b",
                Rule::FunctionNotAllowed,
            ),
            ("SELECT @@version AS v", Rule::VariableNotAllowed),
            (
                "SELECT id FROM orders WHERE @@version LIKE '10%'",
                Rule::VariableNotAllowed,
            ),
            (
                "SELECT /*! SLEEP(1), */ id FROM orders",
                Rule::ExecutableComment,
            ),
            (
                "SELECT id FROM orders /*!50000 UNION SELECT value FROM secrets */",
                Rule::ExecutableComment,
            ),
            ("SELECT * FROM mysql.user", Rule::SystemCatalog),
            (
                "SELECT * FROM information_schema.tables",
                Rule::SystemCatalog,
            ),
            ("UPDATE orders SET total = 0 WHERE id = 1", Rule::SelectOnly),
        ] {
            assert_eq!(refused(sql, db.read(sql).await), rule, "{sql}");
        }
        // Refused by their rule, or not parsed at all.
        for (sql, rule) in [
            ("SELECT id FROM orders LOCK IN SHARE MODE", Rule::Locking),
            (
                "SELECT id FROM orders INTO OUTFILE '/tmp/x'",
                Rule::SelectInto,
            ),
            (
                "SELECT id INTO OUTFILE '/tmp/x' FROM orders",
                Rule::SelectInto,
            ),
            (
                "SELECT id FROM orders INTO DUMPFILE '/tmp/y'",
                Rule::SelectInto,
            ),
            ("SELECT id INTO @v FROM orders", Rule::SelectInto),
        ] {
            let got = refused(sql, db.read(sql).await);
            assert!(got == rule || got == Rule::Syntax, "{sql}: {got:?}");
        }
        // Nothing reached the tables.
        assert_eq!(my.count("SELECT COUNT(*) FROM audit").await, 0);
        assert_eq!(
            my.count("SELECT COUNT(*) FROM orders WHERE total = 0")
                .await,
            0
        );

        // A function that writes, even when configuration allows it by name, cannot write
        // from a read: the session and its transaction are READ ONLY.
        my.exec(
            "CREATE FUNCTION touch() RETURNS INT NOT DETERMINISTIC MODIFIES SQL DATA \
             BEGIN INSERT INTO audit (note) VALUES ('ran'); RETURN 1; END",
        )
        .await;
        let plain = db.read("SELECT touch() AS t FROM orders").await;
        assert_eq!(refused("touch()", plain), Rule::FunctionNotAllowed);
        let mut allowing = mysql_config();
        allowing.allowed_functions = set(&["touch"]);
        let lenient = open(&my, &allowing).await;
        match lenient
            .read("SELECT touch() AS t FROM orders WHERE id = 1")
            .await
        {
            Err(ReadError::Database(m)) => {
                assert!(m.to_ascii_lowercase().contains("read only"), "{m}")
            }
            Err(ReadError::Refused(r)) => {
                eprintln!("touch() refused even when allowed: {r}")
            }
            other => panic!("a read wrote: {other:?}"),
        }
        assert_eq!(
            my.count("SELECT COUNT(*) FROM audit").await,
            0,
            "the read wrote nothing"
        );
        // Usable afterwards.
        assert_eq!(
            db.read("SELECT COUNT(*) AS n FROM orders")
                .await
                .unwrap()
                .rows,
            vec![json!({"n": 4})]
        );
    })
    .await;
}

#[tokio::test]
async fn mysql_long_reads_are_cut_at_the_statement_timeout_and_values_stay_bounded() {
    on_mysql(|my| async move {
        let db = open(&my, &mysql_config()).await;
        // 5^12 rows to count: far past 300 ms.
        let joins: Vec<String> = (0..12).map(|i| format!("customers c{i}")).collect();
        let cross = format!("SELECT COUNT(*) AS n FROM {}", joins.join(", "));
        let started = Instant::now();
        match db.read(&cross).await {
            Err(ReadError::Timeout(t)) => assert_eq!(t, TIMEOUT),
            other => panic!("{other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "cut at the timeout: {:?}",
            started.elapsed()
        );
        // A recursive CTE stops at the server's iteration cap or at the timeout.
        let endless = "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT COUNT(*) AS n FROM r";
        let started = Instant::now();
        match db.read(endless).await {
            Ok(_) | Err(ReadError::Timeout(_)) | Err(ReadError::Database(_)) => {}
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(3));
        // A recursive CTE that multiplies rows each step is cut too.
        let growing = "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT r.x + 1 FROM r, customers WHERE r.x < 40) SELECT COUNT(*) AS n FROM r";
        match db.read(growing).await {
            Err(ReadError::Timeout(_)) => {}
            other => panic!("{other:?}"),
        }
        // Usable after a timeout.
        assert_eq!(
            db.read("SELECT COUNT(*) AS n FROM orders").await.unwrap().rows,
            vec![json!({"n": 4})]
        );
        // Huge values are refused or cut on the server; Warden never receives them.
        for sql in [
            "SELECT REPEAT('x', 100000000) AS v FROM orders WHERE id = 1",
            "SELECT LENGTH(REPEAT('x', 100000000)) AS n FROM orders WHERE id = 1",
            "SELECT REPEAT('x', 10000000) AS v FROM orders WHERE id = 1",
            "SELECT LPAD('x', 100000000, 'y') AS v FROM orders WHERE id = 1",
            "SELECT GROUP_CONCAT(REPEAT('x', 100000)) AS v FROM customers a, customers b",
        ] {
            match db.read(sql).await {
                Ok(rows) => assert!(
                    json_bytes(&rows.rows) <= MAX_RESULT_BYTES,
                    "{sql}: {} bytes",
                    json_bytes(&rows.rows)
                ),
                Err(ReadError::Refused(_) | ReadError::Timeout(_) | ReadError::Database(_)) => {}
                Err(e) => panic!("{sql}: a read is no settlement: {e}"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn mysql_previews_change_nothing_and_approved_writes_run_once() {
    on_mysql(|my| async move {
        let db = open(&my, &mysql_config()).await;
        let before = my.orders().await;
        let w = db
            .validate_write(
                "UPDATE orders SET status = 'held', total = total + 1 WHERE customer_id = 1",
            )
            .unwrap();
        let p = db.preview(&w).await.unwrap();
        assert_eq!(p.rows_affected, 2);
        assert_eq!(p.key_columns, vec!["id".to_string()]);
        assert_eq!(p.row_ids, vec![json!([1]), json!([2])]);
        assert_eq!(p.before.len(), 2);
        assert_eq!(p.before[0]["status"], "pending");
        assert_eq!(p.before[0]["total"].as_f64(), Some(10.0));
        assert_eq!(p.after.len(), 2);
        assert_eq!(p.after[0]["status"], "held");
        assert_eq!(p.after[1]["total"].as_f64(), Some(21.5));
        assert_eq!(p.triggers, vec!["orders_audit".to_string()]);
        assert_eq!(my.orders().await, before, "the preview was rolled back");
        assert_eq!(
            my.count("SELECT COUNT(*) FROM audit").await,
            0,
            "the trigger's rows too"
        );
        let approved = approve(w);
        let done = db.execute(&approved, "my-1", &expected(&p)).await.unwrap();
        assert_eq!((done.rows_affected, done.already_applied), (2, false));
        assert!(db.was_applied("my-1").await.unwrap());
        assert!(!db.was_applied("my-2").await.unwrap());
        let again = db.execute(&approved, "my-1", &expected(&p)).await.unwrap();
        assert!(again.already_applied, "a retry runs nothing");
        assert_eq!(
            my.count("SELECT COUNT(*) FROM orders WHERE status = 'held' AND total IN (11, 21.5)")
                .await,
            2,
            "ran once"
        );
        assert_eq!(my.count("SELECT COUNT(*) FROM audit").await, 2);

        // An UPDATE that sets what is already there still counts its rows (found rows).
        let same = db
            .validate_write("UPDATE orders SET status = 'shipped' WHERE id = 3")
            .unwrap();
        let p = db.preview(&same).await.unwrap();
        assert_eq!(p.rows_affected, 1);
        let done = db
            .execute(&approve(same), "my-same", &expected(&p))
            .await
            .unwrap();
        assert_eq!(done.rows_affected, 1);

        // An INSERT: previewed with the row it writes, then run once.
        let ins = db
            .validate_write(
                "INSERT INTO orders (id, customer_id, total, status) VALUES (9, 2, 3.50, 'new')",
            )
            .unwrap();
        let p = db.preview(&ins).await.unwrap();
        assert_eq!(p.rows_affected, 1);
        assert_eq!(
            my.count("SELECT COUNT(*) FROM orders WHERE id = 9").await,
            0
        );
        let approved = approve(ins);
        db.execute(&approved, "my-ins", &expected(&p))
            .await
            .unwrap();
        assert!(
            db.execute(&approved, "my-ins", &expected(&p))
                .await
                .unwrap()
                .already_applied
        );
        assert_eq!(
            my.count("SELECT COUNT(*) FROM orders WHERE id = 9").await,
            1
        );

        // A DELETE: previewed with the rows it removes.
        let del = db
            .validate_write("DELETE FROM orders WHERE id = 9")
            .unwrap();
        let p = db.preview(&del).await.unwrap();
        assert_eq!((p.rows_affected, p.row_ids.clone()), (1, vec![json!([9])]));
        assert_eq!(p.before[0]["status"], "new");
        assert_eq!(
            my.count("SELECT COUNT(*) FROM orders WHERE id = 9").await,
            1
        );
        db.execute(&approve(del), "my-del", &expected(&p))
            .await
            .unwrap();
        assert_eq!(
            my.count("SELECT COUNT(*) FROM orders WHERE id = 9").await,
            0
        );
        // Writes elsewhere are refused.
        assert!(
            db.validate_write("DELETE FROM customers WHERE id = 1")
                .is_err()
        );
        assert!(
            db.validate_write("DELETE FROM secrets WHERE id = 1")
                .is_err()
        );
    })
    .await;
}

#[tokio::test]
async fn mysql_an_insert_preview_shows_the_rows_it_writes() {
    on_mysql(|my| async move {
        let db = open(&my, &mysql_config()).await;
        let ins = db
            .validate_write(
                "INSERT INTO orders (id, customer_id, total, status) VALUES (8, 2, 3.50, 'new')",
            )
            .unwrap();
        let p = db.preview(&ins).await.unwrap();
        assert_eq!(p.rows_affected, 1);
        assert_eq!(
            p.after.len(),
            1,
            "the approver sees what would be written: {p:?}"
        );
        assert_eq!(p.after[0]["status"], "new");
        assert_eq!(
            my.count("SELECT COUNT(*) FROM orders WHERE id = 8").await,
            0
        );
    })
    .await;
}

#[tokio::test]
async fn mysql_binary_values_are_read_and_previewed_too() {
    on_mysql(|my| async move {
        my.exec(
            "CREATE TABLE files (id BIGINT PRIMARY KEY, name VARCHAR(20), data BLOB, flags BIT(3))",
        )
        .await;
        my.exec("INSERT INTO files VALUES (1, 'a.bin', x'00ff10', b'101')")
            .await;
        let mut c = mysql_config();
        c.tables.insert("files".into(), None);
        c.writable_tables.insert("files".into());
        let db = open(&my, &c).await;
        assert_eq!(
            db.read("SELECT name FROM files").await.unwrap().rows,
            vec![json!({"name": "a.bin"})]
        );
        // A BLOB, a BIT and a binary expression: some JSON each, as SQLite gives
        // `<N bytes>`; never a decoding error for the whole read.
        for sql in [
            "SELECT id, data FROM files",
            "SELECT flags FROM files",
            "SELECT UNHEX('41') AS v FROM files",
            "SELECT * FROM files",
        ] {
            let rows = db.read(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(rows.rows.len(), 1, "{sql}");
        }
        // A table with a binary column can be written after approval like any other.
        let w = db
            .validate_write("UPDATE files SET name = 'b.bin' WHERE id = 1")
            .unwrap();
        let p = db
            .preview(&w)
            .await
            .unwrap_or_else(|e| panic!("preview: {e}"));
        assert_eq!(p.rows_affected, 1);
    })
    .await;
}

#[tokio::test]
async fn mysql_a_write_on_rows_of_more_than_64_kb_previews_every_row_and_runs() {
    on_mysql(|my| async move {
        my.exec("CREATE TABLE docs (id BIGINT PRIMARY KEY, body MEDIUMTEXT, flag INT)")
            .await;
        my.exec(
            "INSERT INTO docs VALUES (1, REPEAT('a', 40000), 0), (2, REPEAT('b', 40000), 0), \
             (3, REPEAT('c', 70000), 0)",
        )
        .await;
        let mut c = mysql_config();
        c.tables.insert("docs".into(), None);
        c.writable_tables.insert("docs".into());
        let db = open(&my, &c).await;
        let w = db
            .validate_write("UPDATE docs SET flag = 1 WHERE flag = 0")
            .unwrap();
        let p = db.preview(&w).await.unwrap();
        assert_eq!(p.rows_affected, 3);
        assert_eq!(
            p.row_ids,
            vec![json!([1]), json!([2]), json!([3])],
            "every row the write changes is bound to it, however large"
        );
        let done = db
            .execute(&approve(w), "my-big", &expected(&p))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(done.rows_affected, 3);
        assert_eq!(
            my.count("SELECT COUNT(*) FROM docs WHERE flag = 1").await,
            3
        );
    })
    .await;
}

#[tokio::test]
async fn mysql_a_write_whose_rows_changed_since_its_preview_does_not_run() {
    on_mysql(|my| async move {
        let db = open(&my, &mysql_config()).await;
        // Previewed on orders 1 and 2 (customer 1) …
        let w = db
            .validate_write("UPDATE orders SET total = 1 WHERE customer_id = 1")
            .unwrap();
        let p = db.preview(&w).await.unwrap();
        assert_eq!(p.row_ids, vec![json!([1]), json!([2])]);
        // … then order 2 moves to customer 3 and order 3 to customer 1: still two rows,
        // not the same ones.
        my.exec("UPDATE orders SET customer_id = 3 WHERE id = 2")
            .await;
        my.exec("UPDATE orders SET customer_id = 1 WHERE id = 3")
            .await;
        let before = my.orders().await;
        let audit = my.count("SELECT COUNT(*) FROM audit").await;
        let err = db
            .execute(&approve(w.clone()), "my-x", &expected(&p))
            .await
            .unwrap_err();
        assert_eq!(
            refused("swapped rows", Err::<(), _>(err)),
            Rule::RowsChangedSincePreview
        );
        assert_eq!(my.orders().await, before, "nothing changed");
        assert_eq!(
            my.count("SELECT COUNT(*) FROM audit").await,
            audit,
            "no trigger ran"
        );
        assert!(!db.was_applied("my-x").await.unwrap());
        // A third row that now matches: refused too.
        let w = db
            .validate_write("UPDATE orders SET total = 2 WHERE status = 'shipped'")
            .unwrap();
        let p = db.preview(&w).await.unwrap();
        assert_eq!(p.rows_affected, 2);
        my.exec("UPDATE orders SET status = 'shipped' WHERE id = 1")
            .await;
        let before = my.orders().await;
        let err = db
            .execute(&approve(w), "my-y", &expected(&p))
            .await
            .unwrap_err();
        assert_eq!(
            refused("one more row", Err::<(), _>(err)),
            Rule::RowsChangedSincePreview
        );
        assert_eq!(my.orders().await, before, "nothing changed");
        // A DELETE whose row went away.
        let w = db
            .validate_write("DELETE FROM orders WHERE id = 4")
            .unwrap();
        let p = db.preview(&w).await.unwrap();
        my.exec("UPDATE orders SET id = 14 WHERE id = 4").await;
        let err = db
            .execute(&approve(w), "my-z", &expected(&p))
            .await
            .unwrap_err();
        assert_eq!(
            refused("gone", Err::<(), _>(err)),
            Rule::RowsChangedSincePreview
        );
        assert_eq!(
            my.count("SELECT COUNT(*) FROM orders WHERE id = 14").await,
            1
        );
    })
    .await;
}

#[tokio::test]
async fn mysql_max_affected_rows_caps_previews_and_tables_need_a_primary_key() {
    on_mysql(|my| async move {
        let mut c = mysql_config();
        c.max_affected_rows = 1;
        let db = open(&my, &c).await;
        let w = db
            .validate_write("UPDATE orders SET total = 1 WHERE customer_id = 1")
            .unwrap();
        assert_eq!(refused("two rows", db.preview(&w).await), Rule::TooManyRows);
        let w2 = db
            .validate_write("INSERT INTO orders (id, customer_id, total, status) VALUES (20, 1, 1, 'a'), (21, 1, 1, 'b')")
            .unwrap();
        assert_eq!(refused("two inserts", db.preview(&w2).await), Rule::TooManyRows);
        // A forged preview claiming two rows does not lift the cap at execution.
        let forged = Expected {
            rows_affected: 2,
            row_ids_sha256: None,
        };
        let err = db.execute(&approve(w), "my-cap", &forged).await.unwrap_err();
        assert_eq!(refused("forged", Err::<(), _>(err)), Rule::TooManyRows);
        assert_eq!(
            my.count("SELECT COUNT(*) FROM orders WHERE total = 1").await,
            0
        );
        // `logs` has no primary key: UPDATE and DELETE cannot be bound to their preview.
        for sql in [
            "UPDATE logs SET n = 9 WHERE msg = 'a'",
            "DELETE FROM logs WHERE msg = 'a'",
        ] {
            let w = db.validate_write(sql).unwrap();
            assert_eq!(refused(sql, db.preview(&w).await), Rule::NoPrimaryKey, "{sql}");
            let forged = Expected {
                rows_affected: 1,
                row_ids_sha256: None,
            };
            let err = db.execute(&approve(w), "my-nopk", &forged).await.unwrap_err();
            assert_eq!(refused(sql, Err::<(), _>(err)), Rule::NoPrimaryKey, "{sql}");
        }
        assert_eq!(my.count("SELECT COUNT(*) FROM logs WHERE n = 9").await, 0);
        assert_eq!(my.count("SELECT COUNT(*) FROM logs").await, 2);
    })
    .await;
}

#[tokio::test]
async fn mysql_a_long_proposal_is_cut_at_its_timeout_and_releases_its_locks() {
    on_mysql(|my| async move {
        let db = open(&my, &mysql_config()).await;
        let joins: Vec<String> = (0..12).map(|i| format!("customers c{i}")).collect();
        let slow = format!(
            "UPDATE orders SET total = (SELECT COUNT(*) FROM {}) WHERE id = 1",
            joins.join(", ")
        );
        let w = db.validate_write(&slow).unwrap();
        let started = Instant::now();
        match db.preview(&w).await {
            Err(ReadError::Timeout(t)) => assert_eq!(t, TIMEOUT),
            other => panic!("{other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        // Row 1 is free again: a write on it right after previews and runs at once.
        let started = Instant::now();
        let w = db
            .validate_write("UPDATE orders SET total = 2 WHERE id = 1")
            .unwrap();
        let p = db.preview(&w).await.unwrap();
        db.execute(&approve(w), "my-after", &expected(&p))
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            my.count("SELECT COUNT(*) FROM orders WHERE id = 1 AND total = 2")
                .await,
            1
        );
        // And an approved write that runs long is cut the same way, changing nothing.
        let w = db.validate_write(&slow).unwrap();
        let forged = Expected {
            rows_affected: 1,
            row_ids_sha256: Some(p.row_ids_sha256.clone()),
        };
        let started = Instant::now();
        match db.execute(&approve(w), "my-slow", &forged).await {
            Err(ReadError::Timeout(_)) => {}
            other => panic!("{other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert!(!db.was_applied("my-slow").await.unwrap());
        assert_eq!(
            my.count("SELECT COUNT(*) FROM orders WHERE id = 1 AND total = 2")
                .await,
            1
        );
    })
    .await;
}

// PostgreSQL: the same guarantees for writes.

/// A schema of its own on PostgreSQL; `None` (skipped loudly) only outside CI.
async fn pg_db() -> Option<(sqlx::PgPool, String, String)> {
    let Ok(url) = std::env::var("WARDEN_TEST_POSTGRES_URL") else {
        assert!(!in_ci(), "WARDEN_TEST_POSTGRES_URL must be set in CI");
        eprintln!("\n*** SKIPPED the PostgreSQL write test: set WARDEN_TEST_POSTGRES_URL ***\n");
        return None;
    };
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .unwrap();
    let schema = unique_name();
    let setup = format!(
        "CREATE SCHEMA {schema}; SET search_path = {schema};
         CREATE TABLE customers (id BIGINT PRIMARY KEY, name TEXT, email TEXT, city TEXT, score NUMERIC, joined DATE, note TEXT);
         INSERT INTO customers VALUES (1, 'Ada', 'a@x', 'London', 9.5, NULL, NULL), (2, 'Bo', 'b@x', 'Oslo', NULL, NULL, NULL),
           (3, 'Cy', 'c@x', 'Oslo', 7, NULL, NULL), (4, 'Di', 'd@x', 'Rome', 1, NULL, NULL), (5, 'Ed', 'e@x', 'Oslo', 2, NULL, NULL);
         CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT, total NUMERIC, status TEXT);
         INSERT INTO orders VALUES (1, 1, 10, 'pending'), (2, 1, 20.5, 'pending'), (3, 3, 5, 'shipped'), (4, 5, 7.25, 'shipped');
         CREATE TABLE logs (msg TEXT, n INT);
         CREATE TABLE audit (id BIGSERIAL PRIMARY KEY, note TEXT);"
    );
    let mut conn = admin.acquire().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let sep = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    Some((admin, schema, scoped))
}

pub(crate) async fn on_postgres<F, Fut>(body: F)
where
    F: FnOnce(sqlx::PgPool, String, String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some((admin, schema, scoped)) = pg_db().await else {
        return;
    };
    let drop_sql = format!("DROP SCHEMA {schema} CASCADE");
    with_cleanup(body(admin.clone(), schema, scoped), async move {
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop_sql))
            .execute(&admin)
            .await
            .unwrap();
    })
    .await;
}

async fn pg_orders(admin: &sqlx::PgPool, schema: &str) -> Vec<(i64, i64, String, String)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, customer_id, total::text, status FROM {schema}.orders ORDER BY id"
    )))
    .fetch_all(admin)
    .await
    .unwrap()
}

pub(crate) async fn pg_exec(admin: &sqlx::PgPool, sql: String) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(admin)
        .await
        .unwrap();
}

pub(crate) fn pg_config() -> DatabaseConfig {
    config(DatabaseLocation::Postgres {
        url_env: "WARDEN_TEST_POSTGRES_URL".into(),
    })
}

#[tokio::test]
async fn postgres_a_write_whose_rows_changed_since_its_preview_does_not_run() {
    on_postgres(|admin, schema, url| async move {
        let db = CompanyDatabase::open("shop", &pg_config(), Some(&url)).await.unwrap();
        let w = db
            .validate_write("UPDATE orders SET total = 1 WHERE customer_id = 1")
            .unwrap();
        let p = db.preview(&w).await.unwrap();
        assert_eq!(p.row_ids, vec![json!([1]), json!([2])]);
        pg_exec(&admin, format!("UPDATE {schema}.orders SET customer_id = 3 WHERE id = 2; UPDATE {schema}.orders SET customer_id = 1 WHERE id = 3")).await;
        let before = pg_orders(&admin, &schema).await;
        let err = db
            .execute(&approve(w), "pg-x", &expected(&p))
            .await
            .unwrap_err();
        assert_eq!(refused("swapped rows", Err::<(), _>(err)), Rule::RowsChangedSincePreview);
        assert_eq!(pg_orders(&admin, &schema).await, before, "nothing changed");
        assert!(!db.was_applied("pg-x").await.unwrap());
        // One more matching row: refused too.
        let w = db
            .validate_write("UPDATE orders SET total = 2 WHERE status = 'shipped'")
            .unwrap();
        let p = db.preview(&w).await.unwrap();
        assert_eq!(p.rows_affected, 2);
        pg_exec(&admin, format!("UPDATE {schema}.orders SET status = 'shipped' WHERE id = 1")).await;
        let before = pg_orders(&admin, &schema).await;
        let err = db
            .execute(&approve(w), "pg-y", &expected(&p))
            .await
            .unwrap_err();
        assert_eq!(refused("one more row", Err::<(), _>(err)), Rule::RowsChangedSincePreview);
        assert_eq!(pg_orders(&admin, &schema).await, before, "nothing changed");
        // No primary key: refused for UPDATE and DELETE.
        let w = db.validate_write("UPDATE logs SET n = 1 WHERE msg = 'a'").unwrap();
        assert_eq!(refused("no key", db.preview(&w).await), Rule::NoPrimaryKey);
        // The unchanged case still runs, once.
        let w = db.validate_write("UPDATE orders SET total = 3 WHERE id = 4").unwrap();
        let p = db.preview(&w).await.unwrap();
        let done = db.execute(&approve(w), "pg-ok", &expected(&p)).await.unwrap();
        assert_eq!((done.rows_affected, done.already_applied), (1, false));
        assert!(db.was_applied("pg-ok").await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn postgres_a_long_proposal_is_cut_at_its_timeout_and_releases_its_locks() {
    on_postgres(|admin, schema, url| async move {
        let db = CompanyDatabase::open("shop", &pg_config(), Some(&url))
            .await
            .unwrap();
        let joins: Vec<String> = (0..12).map(|i| format!("orders o{i}")).collect();
        let slow = format!(
            "UPDATE orders SET total = (SELECT count(*) FROM {}) WHERE id = 1",
            joins.join(", ")
        );
        let w = db.validate_write(&slow).unwrap();
        let started = Instant::now();
        match db.preview(&w).await {
            Err(ReadError::Timeout(t)) => assert_eq!(t, TIMEOUT),
            other => panic!("{other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        // Its row lock is gone: a write on the same row right after runs at once.
        let started = Instant::now();
        let w = db
            .validate_write("UPDATE orders SET total = 2 WHERE id = 1")
            .unwrap();
        let p = db.preview(&w).await.unwrap();
        assert_eq!(p.rows_affected, 1);
        db.execute(&approve(w), "pg-after", &expected(&p))
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(pg_orders(&admin, &schema).await[0].2, "2");
        // An approved write that runs long is cut the same way and changes nothing.
        let w = db.validate_write(&slow).unwrap();
        let forged = Expected {
            rows_affected: 1,
            row_ids_sha256: Some(p.row_ids_sha256.clone()),
        };
        match db.execute(&approve(w), "pg-slow", &forged).await {
            Err(ReadError::Timeout(_)) => {}
            other => panic!("{other:?}"),
        }
        assert!(!db.was_applied("pg-slow").await.unwrap());
        assert_eq!(pg_orders(&admin, &schema).await[0].2, "2");
    })
    .await;
}

#[tokio::test]
async fn postgres_a_write_on_rows_of_more_than_64_kb_previews_every_row_and_runs() {
    on_postgres(|admin, schema, url| async move {
        pg_exec(
            &admin,
            format!(
                "CREATE TABLE {schema}.docs (id BIGINT PRIMARY KEY, body TEXT, flag INT); \
                 INSERT INTO {schema}.docs VALUES (1, repeat('a', 40000), 0), \
                 (2, repeat('b', 40000), 0), (3, repeat('c', 70000), 0)"
            ),
        )
        .await;
        let mut c = pg_config();
        c.tables.insert("docs".into(), None);
        c.writable_tables.insert("docs".into());
        let db = CompanyDatabase::open("shop", &c, Some(&url)).await.unwrap();
        let w = db
            .validate_write("UPDATE docs SET flag = 1 WHERE flag = 0")
            .unwrap();
        let p = db.preview(&w).await.unwrap();
        assert_eq!(p.rows_affected, 3, "the preview counts every row");
        assert_eq!(p.row_ids, vec![json!([1]), json!([2]), json!([3])]);
        let done = db
            .execute(&approve(w), "pg-big", &expected(&p))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(done.rows_affected, 3);
    })
    .await;
}

#[tokio::test]
async fn postgres_two_result_columns_of_one_name_are_not_merged() {
    on_postgres(|_admin, _schema, url| async move {
        let db = CompanyDatabase::open("shop", &pg_config(), Some(&url)).await.unwrap();
        // As on MariaDB: refused, so the model never sees one column under the other's name.
        let sql = "SELECT o.id, c.id FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = 4";
        match db.read(sql).await {
            Err(ReadError::Refused(r)) => assert_eq!(r.rule, Rule::Unsupported),
            other => panic!("order 4 (id 4, customer 5) came back as {other:?}"),
        }
    })
    .await;
}

// Settlements of dispatched writes, on MariaDB/MySQL.

/// The write database with `timeout` as its statement timeout (and a settlement's wait).
async fn open_waiting(my: &My, timeout: Duration) -> CompanyDatabase {
    let mut c = mysql_config();
    c.statement_timeout = timeout;
    open(my, &c).await
}

/// Previews and approves `sql`.
async fn approved(
    db: &CompanyDatabase,
    sql: &str,
) -> (warden_tools::approval::Approved<ValidatedWrite>, Expected) {
    let w = db.validate_write(sql).unwrap();
    let p = db.preview(&w).await.unwrap();
    (approve(w), expected(&p))
}

/// Holds a transaction that changed order 2 and recorded `key` as applied (a write still
/// running), ending it after `hold`.
async fn my_hold(my: &My, key: &str, hold: Duration, commit: bool) -> tokio::task::JoinHandle<()> {
    let mut tx = my.admin.begin().await.unwrap();
    sqlx::query("UPDATE orders SET total = 42 WHERE id = 2")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO warden_idempotency (`key`, applied_at, outcome, rows_affected) VALUES (?, 0, 'applied', 1)",
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
    })
}

#[tokio::test]
async fn mysql_settle_finds_applied_writes_and_fences_the_others_for_good() {
    on_mysql(|my| async move {
        let db = open(&my, &mysql_config()).await;
        let (w, e) = approved(&db, "UPDATE orders SET total = 0 WHERE customer_id = 1").await;
        db.execute(&w, "my-s-1", &e).await.unwrap();
        assert_eq!(
            db.settle("my-s-1").await.unwrap(),
            Settlement::Applied { rows_affected: 2 }
        );
        let again = db.execute(&w, "my-s-1", &e).await.unwrap();
        assert_eq!((again.rows_affected, again.already_applied), (2, true));
        let (w, e) = approved(&db, "UPDATE orders SET total = 99 WHERE id = 3").await;
        assert_eq!(db.settle("my-s-2").await.unwrap(), Settlement::NotApplied);
        assert_eq!(db.settle("my-s-2").await.unwrap(), Settlement::NotApplied);
        let audit = my.count("SELECT COUNT(*) FROM audit").await;
        match db.execute(&w, "my-s-2", &e).await {
            Err(ReadError::SettledNotApplied) => {}
            other => panic!("a fenced write ran: {other:?}"),
        }
        assert_eq!(
            my.count("SELECT COUNT(*) FROM orders WHERE total = 99")
                .await,
            0
        );
        assert_eq!(
            my.count("SELECT COUNT(*) FROM audit").await,
            audit,
            "no trigger ran"
        );
        assert!(!db.was_applied("my-s-2").await.unwrap());
        assert!(db.was_applied("my-s-1").await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn mysql_settle_waits_for_a_write_in_progress() {
    on_mysql(|my| async move {
        let short = open(&my, &mysql_config()).await;
        let patient = open_waiting(&my, Duration::from_secs(10)).await;
        assert_eq!(short.settle("my-0").await.unwrap(), Settlement::NotApplied);
        let holder = my_hold(&my, "my-commit", Duration::from_millis(600), true).await;
        let started = Instant::now();
        assert_eq!(
            patient.settle("my-commit").await.unwrap(),
            Settlement::Applied { rows_affected: 1 }
        );
        assert!(started.elapsed() >= Duration::from_millis(400), "it waited");
        holder.await.unwrap();
        assert_eq!(
            my.count("SELECT COUNT(*) FROM orders WHERE id = 2 AND total = 42")
                .await,
            1
        );
        let holder = my_hold(&my, "my-rollback", Duration::from_millis(600), false).await;
        assert_eq!(
            patient.settle("my-rollback").await.unwrap(),
            Settlement::NotApplied
        );
        holder.await.unwrap();
        // Held past the wait (300 ms): still in progress, nothing decided.
        let holder = my_hold(&my, "my-long", Duration::from_secs(3), false).await;
        match short.settle("my-long").await {
            Err(ReadError::InProgress(t)) => assert_eq!(t, TIMEOUT),
            other => panic!("{other:?}"),
        }
        holder.await.unwrap();
        assert_eq!(
            short.settle("my-long").await.unwrap(),
            Settlement::NotApplied
        );
        let (w, e) = approved(&short, "UPDATE orders SET total = 7 WHERE id = 2").await;
        assert!(matches!(
            short.execute(&w, "my-long", &e).await,
            Err(ReadError::SettledNotApplied)
        ));
        assert_eq!(
            my.count("SELECT COUNT(*) FROM orders WHERE total = 7")
                .await,
            0
        );
    })
    .await;
}

#[tokio::test]
async fn mysql_was_applied_and_settle_fail_on_a_permission_error() {
    on_mysql(|my| async move {
        let db = open(&my, &mysql_config()).await;
        let (w, e) = approved(&db, "UPDATE orders SET total = 0 WHERE id = 1").await;
        db.execute(&w, "my-p-1", &e).await.unwrap();
        // A user who may use the tables but not the idempotency table.
        let user = unique_name();
        let name = my.name();
        my.exec(&format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'"))
            .await;
        let admin = my.admin.clone();
        let drop_user = format!("DROP USER '{user}'@'%'");
        let url = super::connector::with_user(&my.url, &format!("{user}:pw"));
        with_cleanup(
            async move {
                for t in ["orders", "customers", "logs", "audit"] {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "GRANT SELECT, UPDATE ON `{name}`.`{t}` TO '{user}'@'%'"
                    )))
                    .execute(&admin)
                    .await
                    .unwrap();
                }
                let limited = CompanyDatabase::open("shop", &mysql_config(), Some(&url))
                    .await
                    .unwrap();
                match limited.was_applied("my-p-1").await {
                    Err(ReadError::Database(m)) => assert!(m.contains("denied"), "{m}"),
                    other => panic!("{other:?}"),
                }
                assert!(limited.settle("my-p-1").await.is_err());
                assert!(limited.settle("my-p-2").await.is_err());
            },
            async {
                sqlx::raw_sql(sqlx::AssertSqlSafe(drop_user))
                    .execute(&my.admin)
                    .await
                    .unwrap();
            },
        )
        .await;
        assert!(db.was_applied("my-p-1").await.unwrap());
        assert!(!db.was_applied("my-p-2").await.unwrap(), "never fenced");
    })
    .await;
}

#[tokio::test]
async fn mysql_an_idempotency_table_of_an_older_version_is_migrated_in_place() {
    on_mysql(|my| async move {
        my.exec("CREATE TABLE warden_idempotency (`key` VARCHAR(191) PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .await;
        my.exec("INSERT INTO warden_idempotency VALUES ('old-1', 1)").await;
        let db = open(&my, &mysql_config()).await;
        assert!(db.was_applied("old-1").await.unwrap());
        assert!(!db.was_applied("old-2").await.unwrap());
        assert_eq!(
            db.settle("old-1").await.unwrap(),
            Settlement::Applied { rows_affected: 0 }
        );
        assert_eq!(db.settle("old-2").await.unwrap(), Settlement::NotApplied);
        let (w, e) = approved(&db, "UPDATE orders SET total = 0 WHERE id = 1").await;
        assert!(db.execute(&w, "old-1", &e).await.unwrap().already_applied);
        assert_eq!(my.count("SELECT COUNT(*) FROM orders WHERE total = 0").await, 0);
        let done = db.execute(&w, "new-1", &e).await.unwrap();
        assert!(!done.already_applied);
        assert_eq!(
            db.settle("new-1").await.unwrap(),
            Settlement::Applied { rows_affected: 1 }
        );
        assert_eq!(
            my.count("SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'warden_idempotency'")
                .await,
            4
        );
    })
    .await;
}

#[tokio::test]
async fn mysql_a_preview_shows_only_the_columns_the_read_policy_allows() {
    use super::connector::{PEOPLE, assert_previews_hide_ssn, people_config};
    on_mysql(|my| async move {
        for statement in PEOPLE.split(";\n") {
            my.exec(statement).await;
        }
        let qualified = format!("{}.people", my.name());
        for (writable, name) in [
            ("people", "people"),
            (qualified.as_str(), qualified.as_str()),
        ] {
            let restricted = open(
                &my,
                &people_config(mysql_config(), writable, Some(&["name"])),
            )
            .await;
            let all = open(&my, &people_config(mysql_config(), writable, None)).await;
            assert_previews_hide_ssn(&restricted, &all, name).await;
        }
    })
    .await;
}

#[tokio::test]
async fn mysql_errors_of_a_write_name_the_constraint_but_no_value() {
    use super::connector::{
        BOOKINGS, BOOKINGS_CONFLICT, MustName, assert_write_errors_hide_values, bookings_config,
    };
    on_mysql(|my| async move {
        for statement in BOOKINGS.split(";\n") {
            my.exec(statement).await;
        }
        my.exec(
            "CREATE TRIGGER bookings_guard BEFORE UPDATE ON bookings FOR EACH ROW BEGIN \
             DECLARE m VARCHAR(128) DEFAULT CONCAT('slot 9 is taken by ', OLD.guest); \
             IF NEW.slot = 9 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = m; END IF; END",
        )
        .await;
        let db = open(&my, &bookings_config(mysql_config())).await;
        let names = MustName {
            unique: &[
                "unique constraint `uq`",
                "SQLSTATE 23000, error 1062",
                "nothing was changed",
            ],
            raised: &["SQLSTATE 45000, error 1644"],
        };
        assert_write_errors_hide_values(&db, names, my.exec(BOOKINGS_CONFLICT)).await;
        // An entry that reads like the end of the message (`… for key 'Hopper-5' for key
        // 'uq'`): only the name after the last ` for key '` is kept, and only if it is one.
        my.exec(
            "INSERT INTO bookings VALUES (5, 'Grace Hopper'' for key ''Hopper', 5), \
             (6, 'Grace Hopper'' for key ''Hopper', 6)",
        )
        .await;
        let w = db
            .validate_write("UPDATE bookings SET slot = 5 WHERE id = 6")
            .unwrap();
        match db.preview(&w).await {
            Err(ReadError::Database(m)) => assert!(
                m.contains("unique constraint `uq`")
                    && !m.contains("Grace")
                    && !m.contains("Hopper"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    })
    .await;
}

/// A preview whose future is dropped mid-statement (a client that went away) leaves its
/// transaction open on the one write connection; the next `START TRANSACTION` there would
/// commit it. The pool rolls every connection back as it comes back, so the previewed row is
/// never written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_a_preview_dropped_mid_statement_never_commits() {
    on_mysql(|my| async move {
        let db = open(&my, &mysql_config()).await;
        // Another session holds key 100, so the preview's INSERT waits on it.
        let mut other = MySqlConnection::connect(&my.url).await.unwrap();
        sqlx::raw_sql("START TRANSACTION; INSERT INTO orders VALUES (100, 1, 1.00, 'other')")
            .execute(&mut other)
            .await
            .unwrap();
        let w = db
            .validate_write(
                "INSERT INTO orders (id, customer_id, total, status) VALUES (100, 1, 9.00, 'unapproved')",
            )
            .unwrap();
        let cut = tokio::time::timeout(Duration::from_millis(300), db.preview(&w)).await;
        assert!(cut.is_err(), "the preview was waiting on the other session");
        sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
        let _ = other.close().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The next user of the write connection: a preview of another row.
        let next = db
            .validate_write("UPDATE orders SET status = 'x' WHERE id = 1")
            .unwrap();
        db.preview(&next).await.unwrap();
        assert_eq!(
            my.count("SELECT COUNT(*) FROM orders WHERE id = 100").await,
            0,
            "the abandoned preview's row was committed"
        );
    })
    .await;
}
