//! Red-team round two against the SQL validator and connectors. Every test here asserts what
//! *should* happen and FAILS today (checked at the working tree of this round): each is a
//! confirmed bypass, checked by hand against PostgreSQL 15.20, MariaDB 10.11.19 and SQLite
//! 3.40.1 (python3) on this machine, and the end-to-end ones through `CompanyDatabase::read` /
//! `preview` / `execute`.
//!
//! Policy used throughout: `customers(id, name, email, ssn, _secret)` restricted to
//! `id, name`; `orders` allowed whole. Known columns as the connectors load them.
//!
//! Tried and held (refused, or accepted but harmless on the real engine):
//! - Known columns: PG quoted/unquoted case (`"SSN"`, `SSN`), system columns (listed by
//!   `pg_attribute`), views (their columns are in `pg_attribute` / `table_xinfo` /
//!   `information_schema`), inheritance children (the parent's columns only are reachable
//!   through the parent), `search_path` (the model cannot change it; `to_regclass` and the
//!   query see the same path), MySQL tables differing only in case (information_schema
//!   matches them case-insensitively: a superset, stricter). Unrestricted tables never stop
//!   resolution (no known columns), so `(SELECT "ssn" FROM orders) d` correlated to
//!   `customers` is refused, as it must be (SQLite resolves that `"ssn"` to `customers.ssn`).
//! - Derived column lists: `AS t(a)` with fewer names than columns, `VALUES` (no known
//!   columns), `SELECT *` (none), UNION (the left's names), recursive CTEs: `known` is only
//!   ever a subset of the real names, so resolution only ever goes further out (stricter).
//! - ORDER BY aliases (PG, MariaDB, SQLite all prefer the output alias for a bare name);
//!   alias in SQLite's WHERE / MySQL's HAVING (the validator resolves it as a column: stricter).
//! - `_word 'x'` on PostgreSQL: parsed as a typed string and refused (`type_not_allowed`).
//! - Writes: `rand()`/`sysdate()`/`uuid()` are not on MySQL's allow-list; PG and SQLite
//!   compare the keys RETURNed by the write itself, so a non-deterministic WHERE is caught
//!   there; PG inheritance (`UPDATE parent` also changes children: the preview's SELECT sees
//!   the same child rows, so the binding holds).
//! - Validator: 64 KB of `OR` chains, `IN` lists, CTE chains, `CASE` arms, parentheses (the
//!   parser's recursion limit answers in ~17 ms). Not refused but slow in a debug build (over
//!   the ~50 ms budget, none super-linear): `… OR id=1` ×3000 (24 KB) 211 ms; `'a'||'a'…`
//!   ×9000 (45 KB) 310 ms; `1+1+…` ×10000 (20 KB) 367 ms and ×32000 (64 KB) 476 ms on an
//!   8 MiB stack (see section 5 for what it does on a 2 MiB one).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use warden_config::{DatabaseConfig, DatabaseLocation};
use warden_tools::sql::{
    CompanyDatabase, Expected, ReadError, ReadPolicy, SqlDialect, ValidatedWrite, validate,
};

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306";

fn set(xs: &[&str]) -> BTreeSet<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

/// `customers` restricted to `id, name`, with its columns known (as `policy_now` loads them);
/// `orders` whole.
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

fn assert_refused(sql: &str, dialect: SqlDialect, policy: &ReadPolicy) {
    if let Ok(v) = validate(sql, dialect, policy) {
        panic!("{dialect:?} accepted `{sql}`, runs as `{}`", v.sql);
    }
}

fn config(location: DatabaseLocation) -> DatabaseConfig {
    let mut tables = BTreeMap::new();
    tables.insert("customers".to_string(), Some(set(&["id", "name"])));
    tables.insert("orders".to_string(), None);
    DatabaseConfig {
        location,
        tables,
        max_rows: 10,
        statement_timeout: Duration::from_secs(5),
        denied_functions: Default::default(),
        allowed_functions: Default::default(),
        strict_roles: false,
        write_url_env: None,
        writable_tables: Default::default(),
        max_affected_rows: 10,
        allow_without_where: false,
    }
}

fn refused<T: std::fmt::Debug>(r: &Result<T, ReadError>) -> bool {
    matches!(r, Err(ReadError::Refused(_)))
}

const SQLITE_SCHEMA: &str =
    "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, ssn TEXT, _secret TEXT);
     CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, note TEXT);
     INSERT INTO customers VALUES (1, 'alice', 'a@x', 'SSN-111', 'pw-alice'), (2, 'bob', 'b@x', 'SSN-000', 'pw-bob');
     INSERT INTO orders VALUES (10, 1, 'n');";

async fn sqlite_db() -> (tempfile::TempDir, CompanyDatabase) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rt2.db");
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::raw_sql(SQLITE_SCHEMA).execute(&pool).await.unwrap();
    pool.close().await;
    let db = CompanyDatabase::open("rt2", &config(DatabaseLocation::Sqlite(path)), None)
        .await
        .unwrap();
    (dir, db)
}

async fn pg_db(schema: &str) -> (sqlx::PgPool, CompanyDatabase) {
    let admin = sqlx::PgPool::connect(PG_URL).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
         CREATE TABLE {schema}.customers (id INT PRIMARY KEY, name TEXT, email TEXT, ssn TEXT, _secret TEXT);
         CREATE TABLE {schema}.orders (id INT PRIMARY KEY, customer_id INT, note TEXT);
         INSERT INTO {schema}.customers VALUES (1, 'alice', 'a@x', 'SSN-111', 'pw-alice'), (2, 'bob', 'b@x', 'SSN-000', 'pw-bob');
         INSERT INTO {schema}.orders VALUES (10, 1, 'n');"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let url = format!("{PG_URL}?options=-c%20search_path%3D{schema}");
    let cfg = config(DatabaseLocation::Postgres {
        url_env: "RT2_PG_URL".into(),
    });
    let db = CompanyDatabase::open("rt2", &cfg, Some(&url))
        .await
        .unwrap();
    (admin, db)
}

async fn pg_drop(admin: &sqlx::PgPool, schema: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(admin)
    .await
    .unwrap();
}

async fn mariadb_db(db: &str, mut cfg: DatabaseConfig) -> (sqlx::MySqlPool, CompanyDatabase) {
    let admin = sqlx::MySqlPool::connect(MYSQL_URL).await.unwrap();
    for s in [
        format!("DROP DATABASE IF EXISTS {db}"),
        format!("CREATE DATABASE {db}"),
        format!(
            "CREATE TABLE {db}.customers (id INT PRIMARY KEY, name TEXT, email TEXT, ssn TEXT, _secret TEXT)"
        ),
        format!("CREATE TABLE {db}.orders (id INT PRIMARY KEY, customer_id INT, note TEXT)"),
        format!(
            "INSERT INTO {db}.customers VALUES (1, 'alice', 'a@x', 'SSN-111', 'pw-alice'), (2, 'bob', 'b@x', 'SSN-000', 'pw-bob')"
        ),
        format!("INSERT INTO {db}.orders VALUES (10, 1, 'n'), (11, 2, 'n')"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(s))
            .execute(&admin)
            .await
            .unwrap();
    }
    cfg.location = DatabaseLocation::Mysql {
        url_env: "RT2_MYSQL_URL".into(),
    };
    let d = CompanyDatabase::open("rt2", &cfg, Some(&format!("{MYSQL_URL}/{db}")))
        .await
        .unwrap();
    (admin, d)
}

async fn mariadb_drop(admin: &sqlx::MySqlPool, db: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}")))
        .execute(admin)
        .await
        .unwrap();
}

// ---- 1. PostgreSQL truncates identifiers to 63 bytes; the validator does not ---------------

/// PostgreSQL truncates every identifier longer than NAMEDATALEN-1 = 63 bytes (with only a
/// NOTICE). The validator compares names in full, so `<63 a>x` and `<63 a>` are different
/// names to it and the same name to PostgreSQL:
/// - `SELECT <63 a>x FROM customers AS <63 a>`: to the validator an unqualified column that
///   `customers` is *known* not to have (known columns are always loaded), so it is let
///   through; to PostgreSQL the whole-row reference to the alias: every column, `ssn`
///   included. Works on ANY restricted table, no special schema needed.
/// - `SELECT (SELECT <63 a>y.ssn FROM customers AS <63 a>z) FROM orders AS <63 a>y`: the
///   validator finds qualifier `<63 a>y` = `orders` (unrestricted); PostgreSQL truncates both
///   aliases to `<63 a>` and resolves the innermost: `customers.ssn`. Needs no known columns.
///
/// Confirmed with psql (`(1,alice,a@x,SSN-111)` / `SSN-111`) and through `CompanyDatabase::read`.
#[test]
fn postgres_identifiers_are_compared_as_truncated_to_63_bytes() {
    let p = policy();
    let a = "a".repeat(63);
    for sql in [
        format!("SELECT {a}x FROM customers AS {a}"),
        format!("SELECT to_jsonb({a}x) FROM customers AS {a}"),
        format!("SELECT id FROM customers AS {a} WHERE {a}x::text LIKE '%SSN-1%'"),
        format!("SELECT (SELECT {a}y.ssn FROM customers AS {a}z LIMIT 1) FROM orders AS {a}y"),
    ] {
        assert_refused(&sql, SqlDialect::Postgres, &p);
    }
    // Without known columns the second form still passes: it never consults them.
    let mut strict = policy();
    strict.known_columns.clear();
    assert_refused(
        &format!("SELECT (SELECT {a}y.ssn FROM customers AS {a}z LIMIT 1) FROM orders AS {a}y"),
        SqlDialect::Postgres,
        &strict,
    );
}

#[tokio::test]
async fn e2e_postgres_truncated_alias_reads_every_column() {
    let schema = "rt2_trunc";
    let (admin, db) = pg_db(schema).await;
    let a = "a".repeat(63);
    let whole = db
        .read(&format!("SELECT {a}x AS r FROM customers AS {a}"))
        .await;
    let qualified = db
        .read(&format!(
            "SELECT (SELECT {a}y.ssn FROM customers AS {a}z ORDER BY {a}z.id LIMIT 1) AS s FROM orders AS {a}y"
        ))
        .await;
    pg_drop(&admin, schema).await;
    // Today: `[{"r": "(1,alice,a@x,SSN-111,pw-alice)"}, …]`.
    assert!(refused(&whole), "every column reached the model: {whole:?}");
    // Today: `[{"s": "SSN-111"}]`.
    assert!(refused(&qualified), "ssn reached the model: {qualified:?}");
}

// ---- 2. Scopes wider than the database's stop resolution at the wrong relation -------------

/// `column` stops at the first scope where a relation is known to have the name. The
/// validator puts earlier FROM items in scope for later (non-LATERAL) derived tables and for
/// JOIN … ON ("wider, so only ever stricter"), but that is not stricter when a wider-scope
/// relation *has* the name: resolution stops there, while the database, which cannot see that
/// relation, resolves the name further out, in a query the validator never checks it against:
/// - `(SELECT 1 AS ssn) d, (SELECT ssn AS v) x` inside a correlated subquery: `d` is not
///   visible in `x` (not LATERAL), so `ssn` is the outer `customers.ssn`. PostgreSQL and
///   SQLite return it (psql, python3 sqlite3: `SSN-111`, `SSN-000`); MariaDB refuses outer
///   references in derived tables (`Unknown column`).
/// - `(SELECT 1 AS ssn) d, orders a JOIN orders b ON ssn = 'SSN-111'`: the ON clause sees
///   only `a` and `b`, so `ssn` is the outer `customers.ssn`: a one-bit oracle per row on
///   PostgreSQL and MariaDB (non-zero count for alice, 0 for bob); SQLite resolves it to
///   `d.ssn`.
///
/// Confirmed with psql, the mariadb CLI, python3 and through `CompanyDatabase::read` (PG, SQLite,
/// MariaDB).
#[test]
fn names_hidden_by_a_relation_the_database_cannot_see_are_checked_further_out() {
    let p = policy();
    for d in [SqlDialect::Postgres, SqlDialect::Mysql, SqlDialect::Sqlite] {
        for sql in [
            "SELECT id, (SELECT x.v FROM (SELECT 1 AS ssn) d, (SELECT ssn AS v) x) FROM customers",
            "SELECT id, (SELECT count(*) FROM (SELECT 1 AS ssn) d, orders a JOIN orders b ON ssn = 'SSN-111') FROM customers",
            "SELECT id FROM customers WHERE EXISTS (SELECT 1 FROM (SELECT 1 AS ssn) d, orders a JOIN orders b ON ssn LIKE 'SSN-1%')",
        ] {
            assert_refused(sql, d, &p);
        }
    }
}

#[tokio::test]
async fn e2e_postgres_and_sqlite_non_lateral_derived_table_leaks_outer_hidden_column() {
    let leak =
        "SELECT id, (SELECT x.v FROM (SELECT 1 AS ssn) d, (SELECT ssn AS v) x) AS v FROM customers";
    let oracle = "SELECT id, (SELECT count(*) FROM (SELECT 1 AS ssn) d, orders a JOIN orders b ON ssn = 'SSN-111') AS c FROM customers";
    let (_dir, lite) = sqlite_db().await;
    let sqlite = lite.read(leak).await;
    let schema = "rt2_scope";
    let (admin, pg) = pg_db(schema).await;
    let pg_leak = pg.read(leak).await;
    let pg_oracle = pg.read(oracle).await;
    pg_drop(&admin, schema).await;
    // Today: `[{"id": 1, "v": "SSN-111"}, {"id": 2, "v": "SSN-000"}]` on both, and the
    // oracle `[{"c": 1, "id": 1}, {"c": 0, "id": 2}]` on PostgreSQL.
    let ran: Vec<String> = [
        ("SQLite", &sqlite),
        ("PostgreSQL", &pg_leak),
        ("PostgreSQL oracle", &pg_oracle),
    ]
    .into_iter()
    .filter(|(_, r)| !refused(r))
    .map(|(e, r)| format!("{e}: {r:?}"))
    .collect();
    assert!(
        ran.is_empty(),
        "hidden ssn reached the model:\n{}",
        ran.join("\n")
    );
}

#[tokio::test]
async fn e2e_mariadb_join_on_resolves_a_hidden_column_of_the_outer_query() {
    let name = "rt2_scope_my";
    let (admin, db) = mariadb_db(name, config(DatabaseLocation::Sqlite("-".into()))).await;
    let oracle = db
        .read("SELECT id, (SELECT count(*) FROM (SELECT 1 AS ssn) d, orders a JOIN orders b ON ssn = 'SSN-111') AS c FROM customers ORDER BY id")
        .await;
    mariadb_drop(&admin, name).await;
    // Today: `[{"c": 4, "id": 1}, {"c": 0, "id": 2}]`: alice's ssn is SSN-111.
    assert!(refused(&oracle), "MariaDB: ssn oracle ran: {oracle:?}");
}

// ---- 3. `_word 'string'`: a column taken for a charset introducer --------------------------

/// sqlparser parses any word starting with `_` followed by a string as a charset introducer
/// (`Expr::Prefixed`), in every dialect, and the resolver checks only the string. MariaDB
/// (`_secret` is no charset name, so the lexer reads an identifier) and SQLite read it as the
/// column `_secret` with the string as its alias (`SELECT col 'alias'`; SQLite also
/// `col "alias"`). Any hidden column whose name starts with `_` leaks (`_password`,
/// `_internal_note` …), in reads and in write subqueries. PostgreSQL reads a typed literal and
/// the validator refuses it there. Confirmed with the mariadb CLI, python3 sqlite3 and through
/// `CompanyDatabase::read` (`[{"id": 1, "x": "pw-alice"}, …]`).
#[test]
fn underscore_word_before_a_string_is_resolved_as_a_column() {
    let p = policy();
    for d in [SqlDialect::Mysql, SqlDialect::Sqlite] {
        for sql in [
            "SELECT id, _secret 'x' FROM customers",
            "SELECT id FROM customers WHERE (SELECT _secret 'x') LIKE 'pw-a%'",
        ] {
            assert_refused(sql, d, &p);
        }
    }
    assert_refused(
        "SELECT id, _secret \"x\" FROM customers",
        SqlDialect::Mysql,
        &p,
    );
}

#[tokio::test]
async fn e2e_underscore_column_read_as_an_introducer_leaks() {
    let (_dir, lite) = sqlite_db().await;
    let sqlite = lite.read("SELECT id, _secret 'x' FROM customers").await;
    let name = "rt2_intro_my";
    let (admin, my) = mariadb_db(name, config(DatabaseLocation::Sqlite("-".into()))).await;
    let mariadb = my.read("SELECT id, _secret 'x' FROM customers").await;
    mariadb_drop(&admin, name).await;
    // Today: `[{"id": 1, "x": "pw-alice"}, {"id": 2, "x": "pw-bob"}]` on both.
    let ran: Vec<String> = [("SQLite", &sqlite), ("MariaDB", &mariadb)]
        .into_iter()
        .filter(|(_, r)| !refused(r))
        .map(|(e, r)| format!("{e}: {r:?}"))
        .collect();
    assert!(
        ran.is_empty(),
        "hidden _secret reached the model:\n{}",
        ran.join("\n")
    );
}

// ---- 4. MySQL: the lock SELECT and the UPDATE are two evaluations of the WHERE -------------

/// MySQL has no `UPDATE … RETURNING`, so `execute` locks `SELECT … WHERE w FOR UPDATE`,
/// compares those keys with the preview's, runs `UPDATE … WHERE w` and compares only the
/// *count*. A WHERE that evaluates differently in the second statement changes other rows
/// than the ones checked: `NOW(6)` (allowed) differs between the two statements, so
/// `WHERE id = IF(MICROSECOND(NOW(6)) % 2 = 0, 10, 11)` locks and checks order 10 and then
/// updates order 11 whenever the parity flips between the statements (about one approved
/// run in two; the model just proposes again after a `rows_changed_since_preview`).
/// The approver saw order 10 before/after; order 11 is what changed. Confirmed through
/// `CompanyDatabase::preview` and `execute` on MariaDB (loop below: a mismatching run within a few
/// attempts).
#[tokio::test]
async fn e2e_mariadb_execute_changes_rows_other_than_the_locked_ones() {
    let name = "rt2_lock_my";
    let mut cfg = config(DatabaseLocation::Sqlite("-".into()));
    cfg.writable_tables = set(&["orders"]);
    let (admin, db) = mariadb_db(name, cfg).await;
    let mut wrong = None;
    for attempt in 0..200 {
        // Refused outright now: a WHERE that depends on the clock cannot choose MySQL rows.
        let Ok(w) = db.validate_write(&format!(
            "UPDATE orders SET note = 'run{attempt}' WHERE id = IF(MICROSECOND(NOW(6)) % 2 = 0, 10, 11)"
        )) else {
            continue;
        };
        let Ok(p) = db.preview(&w).await else {
            continue;
        };
        let expected = Expected {
            rows_affected: p.rows_affected,
            row_ids_sha256: Some(p.row_ids_sha256.clone()),
        };
        if db
            .execute(&approve(w), &format!("rt2-{attempt}"), &expected)
            .await
            .is_err()
        {
            continue; // refused: rows differed at the lock; propose again
        }
        let changed: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM {name}.orders WHERE note = 'run{attempt}'"
        )))
        .fetch_one(&admin)
        .await
        .unwrap();
        let previewed = p.row_ids[0][0].as_i64().unwrap();
        if changed != previewed {
            wrong = Some((attempt, previewed, changed));
            break;
        }
    }
    mariadb_drop(&admin, name).await;
    // Today: e.g. `Some((1, 10, 11))`: previewed, approved and locked order 10; changed 11.
    assert_eq!(
        wrong, None,
        "an approved write changed another row than its preview (attempt, previewed, changed)"
    );
}

fn approve(write: ValidatedWrite) -> warden_tools::approval::Approved<ValidatedWrite> {
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
        approval_id: "apr_rt2".into(),
        agent_id: "a/b".into(),
        tool: "sql_execute".into(),
        arguments_sha256: "00".repeat(32),
        decision: Decision::Approve,
        expires_at_ms: i64::MAX,
    };
    let sig = message.sign(&key);
    verify_decision(&approvers, "alice", &message, &sig, 0, write).unwrap()
}

// ---- 5. Resources in Warden's own process --------------------------------------------------

/// Runs the test `name` of this binary alone in a child process with `RT2_CHILD=1` and
/// returns whether it succeeded (a stack overflow aborts the whole process; peak memory is
/// only measurable alone).
fn child_succeeds(name: &str) -> (bool, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("RT2_CHILD", "1")
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
    std::env::var_os("RT2_CHILD").is_some()
}

/// `SELECT 1+1+…+1 FROM orders` (32 000 terms, 64 KB) is a left-deep chain of 32 000
/// `BinaryOp`s. sqlparser builds it without recursing (and the resolver walks its spine in a
/// loop), but printing it (`statement.to_string()`, recursive `Display`) and dropping it
/// recurse once per level: on a 2 MiB stack (tokio's default worker stack, where
/// `CompanyDatabase::read` runs validation) the debug build overflows at about 28 000 terms and the
/// process ABORTS (`fatal runtime error: stack overflow`): one `sql_query` call from the model
/// kills Warden. (`… OR id=1 …` and `'a'||…` fit fewer levels in 64 KB and survived.)
/// Confirmed by running `validate` on a 2 MiB thread. DEBUG BUILDS ONLY as measured: the
/// release build (`cargo test --release`) survives the 64 KB chain on 2 MiB (smaller frames),
/// so this passes there; other node kinds with bigger `Display` frames were not tried.
#[test]
fn validating_a_64_kb_arithmetic_chain_does_not_abort_the_process() {
    let (ok, out) = child_succeeds("redteam2::child_validate_deep_chain_on_a_2_mib_stack");
    assert!(ok, "validation killed the process:\n{out}");
}

#[test]
fn child_validate_deep_chain_on_a_2_mib_stack() {
    if !in_child() {
        return;
    }
    let sql = format!("SELECT 1{} FROM orders", "+1".repeat(32_000));
    assert!(sql.len() <= warden_tools::sql::MAX_STATEMENT_BYTES);
    let p = policy();
    for d in [SqlDialect::Sqlite, SqlDialect::Postgres, SqlDialect::Mysql] {
        let sql = sql.clone();
        let p = p.clone();
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let _ = validate(&sql, d, &p);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}

/// SQLite runs inside Warden. `SQLITE_LIMIT_LENGTH` caps one value at 1 MiB and the
/// collector cuts results at 64 KB of JSON, but only after a whole row is built: one row of
/// N columns of 1 MiB each (`WITH t(x) AS (SELECT printf('%.*c', 1000000, 'x')) SELECT x a0,
/// x a1, … FROM t`, 9 bytes per column, up to SQLITE_LIMIT_COLUMN = 2000 columns in 18 KB of
/// SQL) is held by SQLite's result registers, copied into sqlx's row, copied again into JSON
/// strings and serialised once more to measure it: several bytes of Warden's memory per byte
/// of the row, within a single VM step of the timeout's progress handler. Measured here with
/// 200 columns (VmHWM of the child process): peak memory grew by 579 MiB for 200 MiB of
/// values, and the model got nothing back (`0 rows, truncated`); 2000 columns would be about
/// 6 GB (not run, to spare the machine). Confirmed through `CompanyDatabase::read`.
#[test]
fn a_wide_sqlite_row_does_not_take_hundreds_of_megabytes() {
    let (ok, out) = child_succeeds("redteam2::child_wide_sqlite_row");
    assert!(ok, "a single read grew Warden's memory by too much:\n{out}");
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn child_wide_sqlite_row() {
    if !in_child() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (_dir, db) = sqlite_db().await;
        let before = vm_hwm_kib();
        let columns: Vec<String> = (0..200).map(|i| format!("x a{i}")).collect();
        let sql = format!(
            "WITH t(x) AS (SELECT printf('%.*c', 1000000, 'x')) SELECT {} FROM t",
            columns.join(", ")
        );
        let r = db.read(&sql).await;
        let grown_mib = (vm_hwm_kib() - before) / 1024;
        println!(
            "peak memory grew by {grown_mib} MiB; result: {}",
            match &r {
                Ok(rows) => format!("{} rows, truncated {}", rows.rows.len(), rows.truncated),
                Err(e) => e.to_string(),
            }
        );
        assert!(
            grown_mib < 64,
            "one read of 200 × 1 MiB columns grew peak memory by {grown_mib} MiB"
        );
    });
}
