//! Red-team round three against the SQL validator. Tests marked FAILS assert the safe
//! behaviour and fail at the working tree of this round (confirmed bypasses); the others pass
//! and record what held.
//!
//! Policy: `customers(id, name, email, ssn, _secret)` restricted to `id, name` (columns
//! known); `orders` allowed whole.
//!
//! Findings (debug build, 2 MiB stack = tokio's worker / the blocking pool's default, where
//! `CompanyDatabase::read` validates):
//! 1. `prints_back` compares the reparsed tree with derived `PartialEq`, which recurses once
//!    per nesting level with no stack protection (sqlparser protects `Display` and the parser
//!    with `recursive`/stacker, not `eq`, `clone` or `drop`). `Expr::eq` takes ~2.2 KB of
//!    stack per level in a debug build: the left-deep `BinaryOp` spine (which the resolver
//!    walks in a loop, so it is accepted at any length) overflows at ~930 levels, BELOW the
//!    1,024-operator cap. `SELECT 1+1+…+1 FROM orders` with 1,000 terms (2,003 bytes: under
//!    the 2 KB threshold, so not even counted) aborts the process. FAILS.
//! 2. The operator count skips every `Token::Word` but AND/OR/NOT, so word operators that
//!    build the same `BinaryOp` spine are never counted: `XOR` (all three dialects parse it),
//!    `DIV` (MySQL), `GLOB` / `REGEXP` (SQLite). `SELECT ''XOR''XOR''…` (5 bytes a level)
//!    reaches ~13,000 levels in 64 KB. FAILS (not refused as too complex).
//! 3. MySQL `a DIV b`: sqlparser's MySQL `parse_infix` for DIV CLONES the left operand, i.e.
//!    the whole chain so far, recursively (`Expr::clone`, unprotected): `SELECT 1 DIV 1 DIV …`
//!    overflows a 2 MiB stack at ~500 levels (~3 KB) *inside `Parser::parse_statements`*,
//!    before any check can run: no counting after parsing can stop it. FAILS.
//!
//! 4. MySQL writes: `time_dependent_call` compares `f.name.to_string()`, quotes included, so
//!    `` `unix_timestamp`() `` is not seen as the clock while the resolver (folding the quoted
//!    name) allows it, and MariaDB runs it (a native function, callable quoted). End to end:
//!    `UPDATE orders SET note = … WHERE id = IF(`unix_timestamp`() % 2 = 0, 11, 10)`,
//!    previewed and locked at an odd second (order 10), executed ~1 ms later at the even
//!    second: order 11 changed, the count check (1 = 1) passes. FAILS.
//!
//! Release build (`cargo test --release`): 1 and 2 do not overflow (smaller `eq` frames; 10,800
//! `XOR` levels pass in 73 ms), 3 and 4 fail there too.
//!
//! Held: the `PartialEq` round trip itself: spans and `AttachedToken`s are the only fields it
//! ignores, and no `Display` used by a SELECT prints an `AttachedToken`, so the printed text
//! cannot differ from the checked tree in a compared-away field. Recursive CTE self/forward
//! references on SQLite (circular reference errors; forward refs only make the validator
//! stricter). Quoted `now`/`sysdate`/`curtime`/`utc_timestamp` are keywords that MariaDB
//! refuses quoted; `row_count`/`found_rows`/`connection_id` are never allowed. Postfix/word chains the resolver recurses into (`IS NULL`, `COLLATE`, `LIKE`) are
//! refused at depth 64 and their trees (8,000 levels) drop without overflowing on 2 MiB.
//! `Display` of `Expr`/`SetExpr` is stacker-protected.

use std::collections::{BTreeMap, BTreeSet};
use warden_tools::sql::{ReadPolicy, SqlDialect, validate};

fn set(xs: &[&str]) -> BTreeSet<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

fn policy() -> ReadPolicy {
    let mut tables = BTreeMap::new();
    tables.insert("customers".to_string(), Some(set(&["id", "name"])));
    tables.insert("orders".to_string(), None);
    let mut p = ReadPolicy::new(tables, 100);
    p.known_columns.insert(
        "customers".into(),
        set(&["id", "name", "email", "ssn", "_secret"]),
    );
    p
}

const DIALECTS: [SqlDialect; 3] = [SqlDialect::Sqlite, SqlDialect::Postgres, SqlDialect::Mysql];

/// Runs the test `name` of this binary alone in a child process (a stack overflow aborts the
/// whole process) and returns whether it succeeded.
fn child_succeeds(name: &str) -> (bool, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("RT3_CHILD", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn in_child() -> bool {
    std::env::var_os("RT3_CHILD").is_some()
}

/// Validates on a thread with `stack` bytes of stack, as `CompanyDatabase::read` would on a worker.
fn validate_on(
    stack: usize,
    sql: String,
    d: SqlDialect,
) -> Result<String, warden_tools::sql::Refusal> {
    let p = policy();
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || validate(&sql, d, &p).map(|v| v.sql))
        .unwrap()
        .join()
        .unwrap()
}

// ---- 1. PartialEq in prints_back overflows below the operator cap -------------------------

/// FAILS: 1,000 `+ 1` (2,003 bytes, 1,000 operators: within every limit) aborts the process
/// in `<Expr as PartialEq>::eq` called from `prints_back`, on a 2 MiB stack.
#[test]
fn a_1000_term_sum_does_not_abort_the_process() {
    let (ok, out) = child_succeeds("redteam3::child_1000_term_sum_on_a_2_mib_stack");
    assert!(
        ok,
        "validation killed the process:\n{}",
        &out[out.len().saturating_sub(600)..]
    );
}

#[test]
fn child_1000_term_sum_on_a_2_mib_stack() {
    if !in_child() {
        return;
    }
    let sql = format!("SELECT 1{} FROM orders", "+1".repeat(1000));
    assert!(sql.len() <= 2048);
    for d in DIALECTS {
        let _ = validate_on(2 << 20, sql.clone(), d);
    }
}

// ---- 2. Word operators are not counted --------------------------------------------------

/// FAILS: 2,000 `XOR` (10 KB) are 2,000 operators nesting 2,000 levels; the count sees none.
/// (On a big stack so that the answer, not an overflow, is what is checked.)
#[test]
fn xor_chains_are_counted_as_operators() {
    let sql = format!("SELECT ''{} FROM orders", "XOR''".repeat(2000));
    for d in DIALECTS {
        let r = validate_on(512 << 20, sql.clone(), d);
        assert!(
            r.as_ref()
                .is_err_and(|e| e.rule == warden_tools::sql::Rule::TooComplex),
            "{d:?}: {:?}",
            r.map(|s| s.len())
        );
    }
}

/// FAILS: the same with MySQL `DIV` and SQLite `GLOB` / `REGEXP` (all accepted today).
#[test]
fn div_glob_regexp_chains_are_counted_as_operators() {
    let mut accepted = Vec::new();
    for (d, op) in [
        (SqlDialect::Mysql, "DIV"),
        (SqlDialect::Sqlite, "GLOB"),
        (SqlDialect::Sqlite, "REGEXP"),
    ] {
        let sql = format!("SELECT 1{} FROM orders", format!(" {op} 1").repeat(2000));
        let r = validate_on(512 << 20, sql, d);
        if !r
            .as_ref()
            .is_err_and(|e| e.rule == warden_tools::sql::Rule::TooComplex)
        {
            accepted.push(format!("{d:?} {op}: {:?}", r.map(|s| s.len())));
        }
    }
    assert!(
        accepted.is_empty(),
        "not refused as too complex: {accepted:?}"
    );
}

/// FAILS: 450 `XOR` (2,271 bytes) on a 2 MiB stack survive, 1,000 (5 KB) abort the process.
#[test]
fn an_xor_chain_does_not_abort_the_process() {
    let (ok, out) = child_succeeds("redteam3::child_xor_chain_on_a_2_mib_stack");
    assert!(
        ok,
        "validation killed the process:\n{}",
        &out[out.len().saturating_sub(600)..]
    );
}

#[test]
fn child_xor_chain_on_a_2_mib_stack() {
    if !in_child() {
        return;
    }
    let sql = format!("SELECT ''{} FROM orders", "XOR''".repeat(1000));
    for d in DIALECTS {
        let _ = validate_on(2 << 20, sql.clone(), d);
    }
}

// ---- 3. The parser itself clones the chain (MySQL DIV, SQLite GLOB/REGEXP/MATCH) ----------

/// sqlparser's `MySqlDialect::parse_infix` (`parse_div_infix`) and `SQLiteDialect::parse_infix`
/// (REGEXP, MATCH, GLOB) build `Box::new(expr.clone())`: every such operator deep-clones the
/// whole chain to its left, with unprotected recursion. Inside `Parser::parse_statements`,
/// before any Warden check: quadratic time and a stack overflow, in RELEASE builds too.
/// Measured on a 2 MiB stack: SQLite `1 GLOB 1 GLOB …` 1,500 levels (10.5 KB) 1.0 s release /
/// aborts at 2,000 (14 KB) release, ~500 debug; MySQL `1 DIV 1 DIV …` 2,000 levels 2.6 s
/// release, aborts at 4,000 (24 KB) release, ~500 debug. `MATCH` is refused by the operator
/// allow-list, but only after the parse that already crashed.
fn clone_chains() -> Vec<(SqlDialect, String)> {
    vec![
        (
            SqlDialect::Mysql,
            format!("SELECT 1{} FROM orders", " DIV 1".repeat(4000)),
        ),
        (
            SqlDialect::Sqlite,
            format!("SELECT 1{} FROM orders", " GLOB 1".repeat(2000)),
        ),
        (
            SqlDialect::Sqlite,
            format!("SELECT 1{} FROM orders", " MATCH 1".repeat(2000)),
        ),
    ]
}

/// FAILS (debug and release): each of `clone_chains` aborts the process.
#[test]
fn a_div_or_glob_chain_does_not_abort_the_process() {
    for i in 0..clone_chains().len() {
        let (ok, out) = child_succeeds_with("redteam3::child_clone_chain_on_a_2_mib_stack", i);
        assert!(
            ok,
            "chain {i} killed the process:\n{}",
            &out[out.len().saturating_sub(600)..]
        );
    }
}

#[test]
fn child_clone_chain_on_a_2_mib_stack() {
    if !in_child() {
        return;
    }
    let i: usize = std::env::var("RT3_CASE").unwrap().parse().unwrap();
    let (d, sql) = clone_chains().swap_remove(i);
    let _ = validate_on(2 << 20, sql, d);
}

fn child_succeeds_with(name: &str, case: usize) -> (bool, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("RT3_CHILD", "1")
        .env("RT3_CASE", case.to_string())
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// FAILS: quadratic parse time on Warden's async worker (no statement timeout covers it):
/// 1,500 SQLite `GLOB` (10.5 KB) take ~1 s in release, ~3 s in debug; 2,000 MySQL `DIV`
/// (12 KB) 2.6 s release, 5.5 s debug. A read should be answered (or refused) in well under
/// 250 ms.
#[test]
fn a_glob_or_div_chain_is_answered_quickly() {
    for (d, sql) in [
        (
            SqlDialect::Sqlite,
            format!("SELECT 1{} FROM orders", " GLOB 1".repeat(1500)),
        ),
        (
            SqlDialect::Mysql,
            format!("SELECT 1{} FROM orders", " DIV 1".repeat(2000)),
        ),
    ] {
        let t = std::time::Instant::now();
        let _ = validate_on(1 << 30, sql, d);
        let took = t.elapsed();
        assert!(
            took < std::time::Duration::from_millis(250),
            "{d:?}: {took:?}"
        );
    }
}

// ---- What held --------------------------------------------------------------------------

/// Postfix and word chains the resolver recurses into are refused at depth 64, and their
/// 8,000-level trees drop without overflowing a 2 MiB stack.
#[test]
fn deep_postfix_chains_are_refused_and_dropped() {
    let (ok, out) = child_succeeds("redteam3::child_postfix_chains_on_a_2_mib_stack");
    assert!(
        ok,
        "validation killed the process:\n{}",
        &out[out.len().saturating_sub(600)..]
    );
}

#[test]
fn child_postfix_chains_on_a_2_mib_stack() {
    if !in_child() {
        return;
    }
    for (d, sql) in [
        (
            SqlDialect::Sqlite,
            format!("SELECT 1{} FROM orders", " IS NULL".repeat(8000)),
        ),
        (
            SqlDialect::Postgres,
            format!("SELECT 1{} FROM orders", " COLLATE c".repeat(6000)),
        ),
        (
            SqlDialect::Sqlite,
            format!("SELECT 1{} FROM orders", " LIKE''".repeat(9000)),
        ),
    ] {
        let r = validate_on(2 << 20, sql, d);
        assert!(r.is_err_and(|e| e.rule == warden_tools::sql::Rule::TooComplex));
    }
}

// ---- End to end: CompanyDatabase::read on the runtime Warden itself builds ---------------------

/// FAILS: Warden's runtime (`new_multi_thread()`, default 2 MiB worker stacks) running
/// `CompanyDatabase::read("SELECT 1+1+…+1 FROM orders")` (1,000 terms) on SQLite: the process
/// aborts with `fatal runtime error: stack overflow`.
#[test]
fn e2e_read_of_a_1000_term_sum_does_not_abort_the_process() {
    let (ok, out) = child_succeeds("redteam3::child_e2e_read_1000_term_sum");
    assert!(
        ok,
        "CompanyDatabase::read killed the process:\n{}",
        &out[out.len().saturating_sub(600)..]
    );
}

#[test]
fn child_e2e_read_1000_term_sum() {
    if !in_child() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::spawn(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("rt3.db");
            let pool = sqlx::SqlitePool::connect_with(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true),
            )
            .await
            .unwrap();
            sqlx::raw_sql(
                "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, ssn TEXT, _secret TEXT);
                 CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, note TEXT);
                 INSERT INTO orders VALUES (10, 1, 'n');",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
            let mut tables = BTreeMap::new();
            tables.insert("customers".to_string(), Some(set(&["id", "name"])));
            tables.insert("orders".to_string(), None);
            let cfg = warden_config::DatabaseConfig {
                location: warden_config::DatabaseLocation::Sqlite(path),
                tables,
                max_rows: 10,
                statement_timeout: std::time::Duration::from_secs(5),
                denied_functions: Default::default(),
                allowed_functions: Default::default(),
                strict_roles: false,
                write_url_env: None,
                writable_tables: Default::default(),
                max_affected_rows: 10,
                allow_without_where: false,
            };
            let db = warden_tools::sql::CompanyDatabase::open("rt3", &cfg, None).await.unwrap();
            let n = std::env::var("RT3_TERMS").map_or(1000, |v| v.parse().unwrap());
            let sql = format!("SELECT 1{} FROM orders", "+1".repeat(n));
            let r = db.read(&sql).await;
            eprintln!("READ {n}: {:?}", r.map(|r| r.rows));
            drop(dir);
        })
        .await
        .unwrap();
    });
}

/// Manual probe: `RT3_SQL`, `RT3_D` (sq/pg/my), `RT3_STACK` (bytes).
#[test]
fn probe() {
    let Ok(sql) = std::env::var("RT3_SQL") else {
        return;
    };
    let d = match std::env::var("RT3_D").as_deref() {
        Ok("pg") => SqlDialect::Postgres,
        Ok("my") => SqlDialect::Mysql,
        _ => SqlDialect::Sqlite,
    };
    let stack = std::env::var("RT3_STACK").map_or(2 << 20, |v| v.parse().unwrap());
    let t = std::time::Instant::now();
    let r = validate_on(stack, sql.clone(), d);
    eprintln!(
        "RESULT len={} {:?} {:?}",
        sql.len(),
        t.elapsed(),
        r.map(|s| s.len())
    );
}

// ---- 4. MySQL writes: a quoted clock function escapes the check -------------------------

/// `time_dependent_call` matches `f.name.to_string()`, which keeps the quotes: `` `now` `` ≠
/// `now`. The resolver folds the quoted name and allows it; MariaDB runs `` `unix_timestamp`() ``
/// (a native function, callable quoted; `` `now`() `` is a keyword and fails).
#[test]
fn mysql_write_refuses_a_quoted_clock_function_in_where() {
    let mut tables = BTreeMap::new();
    tables.insert("orders".to_string(), None);
    let p = warden_tools::sql::WritePolicy::new(
        ReadPolicy::new(tables, 100),
        ["orders".to_string()].into(),
    );
    let mut accepted = Vec::new();
    for sql in [
        "UPDATE orders SET note = 'x' WHERE id = 10 OR (id > 0 AND unix_timestamp() % 2 = 0)",
        "UPDATE orders SET note = 'x' WHERE id = 10 OR (id > 0 AND `unix_timestamp`() % 2 = 0)",
        "UPDATE orders SET note = 'x' WHERE id = 10 OR (id > 0 AND `UNIX_TIMESTAMP`() % 2 = 0)",
    ] {
        match warden_tools::sql::validate_write(sql, SqlDialect::Mysql, &p) {
            Ok(w) => accepted.push(w.sql),
            Err(e) => eprintln!("refused {sql}: {e}"),
        }
    }
    assert!(accepted.is_empty(), "accepted: {accepted:#?}");
}

/// FAILS: end to end on MariaDB (`rt3_clock_my`, created and dropped here): preview and lock
/// at an odd second show order 10 only; the UPDATE, a few ms later at the next (even) second,
/// changes 10 and 11. The approved write changed a row nobody saw.
#[tokio::test]
async fn e2e_mariadb_quoted_clock_function_changes_unpreviewed_rows() {
    use warden_tools::sql::{CompanyDatabase, Expected};
    const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306";
    let name = "rt3_clock_my";
    let admin = sqlx::MySqlPool::connect(MYSQL_URL).await.unwrap();
    for s in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
        format!("CREATE TABLE {name}.orders (id INT PRIMARY KEY, customer_id INT, note TEXT)"),
        format!("INSERT INTO {name}.orders VALUES (10, 1, 'n'), (11, 2, 'n')"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(s))
            .execute(&admin)
            .await
            .unwrap();
    }
    let mut tables = BTreeMap::new();
    tables.insert("orders".to_string(), None);
    let cfg = warden_config::DatabaseConfig {
        location: warden_config::DatabaseLocation::Mysql {
            url_env: "RT3_MYSQL_URL".into(),
        },
        tables,
        max_rows: 10,
        statement_timeout: std::time::Duration::from_secs(5),
        denied_functions: Default::default(),
        allowed_functions: Default::default(),
        strict_roles: false,
        write_url_env: None,
        writable_tables: set(&["orders"]),
        max_affected_rows: 10,
        allow_without_where: false,
    };
    let db = CompanyDatabase::open("rt3", &cfg, Some(&format!("{MYSQL_URL}/{name}")))
        .await
        .unwrap();
    let mut wrong = None;
    for attempt in 0..12 {
        let sql = format!(
            "UPDATE orders SET note = 'run{attempt}' WHERE id = IF(`unix_timestamp`() % 2 = 0, 11, 10)"
        );
        let Ok(w) = db.validate_write(&sql) else {
            break; // refused: what should happen
        };
        // Wait for an odd second, preview in it, then execute just before it ends.
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
        };
        while now().as_secs() % 2 == 0 || now().subsec_millis() > 500 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let Ok(p) = db.preview(&w).await else {
            continue;
        };
        let expected = Expected {
            rows_affected: p.rows_affected,
            row_ids_sha256: Some(p.row_ids_sha256.clone()),
        };
        let lead = [15, 15, 14, 14, 16, 16, 13, 13, 17, 17, 15, 14][attempt]; // ms before the boundary
        let boundary = std::time::Duration::from_secs(now().as_secs() + 1);
        let wait = boundary
            .saturating_sub(now())
            .saturating_sub(std::time::Duration::from_millis(lead));
        tokio::time::sleep(wait).await;
        let t0 = now();
        let r = db
            .execute(&approve(w), &format!("rt3-{attempt}"), &expected)
            .await;
        eprintln!(
            "attempt {attempt} lead {lead} ms, start {:?}, took {:?}: {:?}",
            t0.subsec_millis(),
            now() - t0,
            r.as_ref().map(|_| ()).map_err(|e| e.to_string())
        );
        if r.is_err() {
            continue;
        }
        let changed: Vec<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM {name}.orders WHERE note = 'run{attempt}' ORDER BY id"
        )))
        .fetch_all(&admin)
        .await
        .unwrap();
        if changed != [10] {
            wrong = Some((attempt, p.rows_affected, changed));
            break;
        }
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&admin)
    .await
    .unwrap();
    assert_eq!(
        wrong, None,
        "(attempt, rows previewed, ids changed; previewed and locked: [10])"
    );
}

fn approve(
    write: warden_tools::sql::ValidatedWrite,
) -> warden_tools::approval::Approved<warden_tools::sql::ValidatedWrite> {
    use warden_tools::approval::{Approver, Decision, DecisionMessage, verify_decision};
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let approvers = [(
        "alice".to_string(),
        Approver {
            key: key.verifying_key(),
            tools: vec!["sql_execute".into()],
        },
    )]
    .into();
    let message = DecisionMessage {
        approval_id: "apr_rt3".into(),
        agent_id: "a/b".into(),
        tool: "sql_execute".into(),
        arguments_sha256: "00".repeat(32),
        decision: Decision::Approve,
        expires_at_ms: i64::MAX,
    };
    let sig = message.sign(&key);
    verify_decision(&approvers, "alice", &message, &sig, 0, write).unwrap()
}
