//! Red-team findings against the SQL validator (`validate`, `validate_write`) and the
//! connectors. Every test here asserts what *should* happen and FAILS today: each is a
//! confirmed bypass (sections 2 and 3 were fixed in 1c2d53d while this ran and now pass as
//! regression tests), checked by hand against PostgreSQL 15, MariaDB 10.11 and SQLite 3.40 on
//! this machine (and, for the end-to-end ones, through `CompanyDatabase::read` / `preview`).
//!
//! Policy used throughout: `customers(id, name, email, ssn)` restricted to `id, name`;
//! `orders` allowed whole; `payroll` forbidden.
//!
//! Tried and held (refused, or accepted but harmless on the real engine):
//! - Whole-row refs: `c`, `(c).ssn`, `c::text`, `to_jsonb(customers)`, `row_to_json(c.*)`,
//!   `ROW(c.*)`, `(SELECT c FROM orders) FROM customers c`, `ssn(c)` (functional notation),
//!   `U&"c"` (sqlparser reads `U & "c"`, which PostgreSQL rejects), `c.row_to_json`
//!   (attribute-notation call: qualified names are always checked against the allow-list).
//! - Quoting / case: PG `"SSN"`/`"ssn"`, SQLite `[t]`, `'t'` as a table name, `AS 'x'`, DQS
//!   fallback (`"nosuchcol"` is only ever a string), MySQL backticks; MariaDB does NOT fold
//!   `ſ`, `ı`, fullwidth letters or accents (`émail` ≠ `email`), only real case pairs (below).
//! - Scoping: UNION/INTERSECT `ORDER BY hidden` (all three engines reject it), CTEs in
//!   LIMIT/OFFSET/ORDER BY subqueries (SQLite sees them too), MariaDB CTE barrier,
//!   `IN cte`/`IN table` (SQLite), NATURAL JOIN on restricted tables, `USING (ssn)`,
//!   schema-qualified qualifiers (`main.customers.ssn` refused, stricter than SQLite).
//! - System info: `current_user`, `system_user`, `CURRENT_SCHEMA`, `user`, `@@version`,
//!   `` `@@version` ``, `@'x'`, `@`x``, casts to `regclass`/`oid`, PG system columns
//!   (`xmin`, `ctid`, `tableoid`: listed by the connector's pg_attribute query, so refused on
//!   restricted tables), SQLite `rowid` (added by the connector).
//! - MySQL: `PROCEDURE ANALYSE`, `INTO @x`, `INTO OUTFILE`, `LOCK IN SHARE MODE`,
//!   `FOR UPDATE SKIP LOCKED`, `/*! */`, `MATCH … AGAINST`; backslash-escape desync: the
//!   printer doubles only quotes and the second validation must print identically, so no
//!   string the server lexes differently survives (only `\%`/`\_`, same on both sides).
//! - Printer: `- -1` prints `--1` (a comment for PG/SQLite) but the re-validation then
//!   differs and refuses; `E'…'`, `U&'…'`, `$$…$$` round-trip consistently.
//! - Writes: `SET name = ssn`, `WHERE ssn = …`, `WHERE customers.ssn`, EXISTS on `payroll`,
//!   UPDATE with alias, `id = id`, `LIKE '%'`, `coalesce(id,1) = coalesce(id,1)`, `… OR 1=1`.
//!   Not caught by `always_true` (ranked low: row-key binding and `max_affected_rows` still
//!   hold): `id IS NOT NULL`, `id > 0 OR name IS NULL`, `NOT (id = -1)`, `id = id + 0`,
//!   `id IN (id)`.
//! - Resources: SQLite `printf('%.*c', 1e9, 'x')` is capped by SQLITE_LIMIT_LENGTH; LIKE with
//!   many `%` stays linear (NOWILDCARDMATCH). Not tested to exhaustion: PostgreSQL
//!   `repeat('x', 500000000)` allocates up to 1 GB per value in the server backend within
//!   the timeout (the cut to MAX_RESULT_BYTES happens after `to_jsonb(q)::text`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use warden_config::{DatabaseConfig, DatabaseLocation};
use warden_tools::sql::{
    CompanyDatabase, ReadError, ReadPolicy, SqlDialect, WritePolicy, validate, validate_write,
};

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306";

fn set(xs: &[&str]) -> BTreeSet<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

/// `customers` restricted to `id, name`; `orders` whole; `payroll` not allowed.
fn policy() -> ReadPolicy {
    let mut tables = BTreeMap::new();
    tables.insert("customers".to_string(), Some(set(&["id", "name"])));
    tables.insert("orders".to_string(), None);
    ReadPolicy::new(tables, 100)
}

fn assert_refused(sql: &str, dialect: SqlDialect, policy: &ReadPolicy) {
    if let Ok(v) = validate(sql, dialect, policy) {
        panic!("{dialect:?} accepted `{sql}`, runs as `{}`", v.sql);
    }
}

// ---- 1. Parenthesised query + ORDER BY: the ORDER BY is resolved outside the inner FROM --

/// `(SELECT … FROM customers) ORDER BY <expr>`: `outer_order_by` resolves `<expr>` in the
/// outer query's scope, which has no relations, so a hidden column there is unchecked. But
/// PostgreSQL (the grammar folds the ORDER BY into the inner SELECT) and MariaDB resolve it
/// against `customers`. Leaks hidden columns:
/// - PostgreSQL, by error message: `ORDER BY CAST(ssn AS INT)` answers
///   `invalid input syntax for type integer: "SSN-111"` (the connector returns database
///   errors to the model verbatim). Confirmed with psql and through `CompanyDatabase::read`.
/// - PostgreSQL and MariaDB, as an ordering oracle: `ORDER BY ssn = 'SSN-111' DESC` puts the
///   matching row first; with `LIMIT 1` in a derived table, one bit or one row per query.
///   Confirmed with psql and the mariadb CLI (rows came back in ssn order, not id order).
///
/// SQLite rejects a top-level parenthesised SELECT, so it is not affected.
#[test]
fn parenthesised_query_order_by_is_checked_against_the_inner_from() {
    let p = policy();
    for d in [SqlDialect::Postgres, SqlDialect::Mysql] {
        for sql in [
            "(SELECT id, name FROM customers) ORDER BY ssn",
            "((SELECT id, name FROM customers)) ORDER BY ssn",
            "(SELECT id, name FROM customers) ORDER BY CAST(ssn AS INT)",
            "(SELECT id, name FROM customers) ORDER BY ssn = 'SSN-111' DESC",
            "SELECT d.id FROM ((SELECT id, name FROM customers) ORDER BY ssn DESC LIMIT 1) d",
            "WITH x AS ((SELECT id, name FROM customers) ORDER BY CAST(ssn AS INT)) SELECT id FROM x",
        ] {
            assert_refused(sql, d, &p);
        }
    }
}

/// The same hole on the write side: the hidden column steers which allowed value is copied
/// into `orders.note` (PG/MariaDB), or leaks through the preview's error (PG).
#[test]
fn parenthesised_query_order_by_in_write_subqueries() {
    let w = WritePolicy::new(policy(), set(&["orders"]));
    for d in [SqlDialect::Postgres, SqlDialect::Mysql] {
        for sql in [
            "UPDATE orders SET note = (SELECT d.name FROM ((SELECT name FROM customers) ORDER BY ssn DESC LIMIT 1) d) WHERE id = 10",
            "DELETE FROM orders WHERE id = 10 AND EXISTS (SELECT 1 FROM ((SELECT id FROM customers) ORDER BY CAST(ssn AS INT) LIMIT 1) d)",
        ] {
            if let Ok(v) = validate_write(sql, d, &w) {
                panic!("{d:?} accepted `{sql}`, runs as `{}`", v.sql);
            }
        }
    }
}

#[tokio::test]
async fn e2e_postgres_parenthesised_order_by_leaks_ssn() {
    let admin = sqlx::PgPool::connect(PG_URL).await.unwrap();
    sqlx::raw_sql(
        "DROP SCHEMA IF EXISTS rt_redteam_e2e CASCADE; CREATE SCHEMA rt_redteam_e2e;
         CREATE TABLE rt_redteam_e2e.customers (id INT PRIMARY KEY, name TEXT, email TEXT, ssn TEXT);
         CREATE TABLE rt_redteam_e2e.orders (id INT PRIMARY KEY, customer_id INT, note TEXT);
         INSERT INTO rt_redteam_e2e.customers VALUES (1, 'alice', 'a@x', 'SSN-111'), (2, 'bob', 'b@x', 'SSN-000');",
    )
    .execute(&admin)
    .await
    .unwrap();
    let url = format!("{PG_URL}?options=-c%20search_path%3Drt_redteam_e2e");
    let db = CompanyDatabase::open("rt", &config(pg_location()), Some(&url))
        .await
        .unwrap();
    let error_leak = db
        .read("(SELECT id, name FROM customers) ORDER BY CAST(ssn AS INT)")
        .await;
    let oracle = db
        .read("SELECT d.id FROM ((SELECT id, name FROM customers) ORDER BY ssn LIMIT 1) d")
        .await;
    sqlx::raw_sql("DROP SCHEMA rt_redteam_e2e CASCADE")
        .execute(&admin)
        .await
        .unwrap();
    // Today: `the database answered: … invalid input syntax for type integer: "SSN-111"`.
    assert!(
        matches!(error_leak, Err(ReadError::Refused(_))),
        "hidden ssn reached the model: {error_leak:?}"
    );
    // Today: `[{"id": 2}]`, bob, whose ssn sorts first (ids sort the other way).
    assert!(
        matches!(oracle, Err(ReadError::Refused(_))),
        "ordering by hidden ssn ran: {oracle:?}"
    );
}

#[tokio::test]
async fn e2e_mariadb_parenthesised_order_by_is_an_oracle_on_ssn() {
    let admin = sqlx::MySqlPool::connect(MYSQL_URL).await.unwrap();
    for s in [
        "DROP DATABASE IF EXISTS rt_redteam_e2e_order",
        "CREATE DATABASE rt_redteam_e2e_order",
        "CREATE TABLE rt_redteam_e2e_order.customers (id INT PRIMARY KEY, name TEXT, email TEXT, ssn TEXT)",
        "CREATE TABLE rt_redteam_e2e_order.orders (id INT PRIMARY KEY, customer_id INT, note TEXT)",
        "INSERT INTO rt_redteam_e2e_order.customers VALUES (1, 'alice', 'a@x', 'SSN-111'), (2, 'bob', 'b@x', 'SSN-000')",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(s))
            .execute(&admin)
            .await
            .unwrap();
    }
    let cfg = config(DatabaseLocation::Mysql {
        url_env: "RT_MYSQL_URL".into(),
    });
    let db = CompanyDatabase::open(
        "rt",
        &cfg,
        Some(&format!("{MYSQL_URL}/rt_redteam_e2e_order")),
    )
    .await
    .unwrap();
    let first = db
        .read("SELECT d.id FROM ((SELECT id, name FROM customers) ORDER BY ssn LIMIT 1) d")
        .await;
    let bit = db
        .read("SELECT d.id FROM ((SELECT id, name FROM customers) ORDER BY ssn LIKE 'SSN-1%' DESC LIMIT 1) d")
        .await;
    sqlx::query("DROP DATABASE rt_redteam_e2e_order")
        .execute(&admin)
        .await
        .unwrap();
    // Today: `[{"id": 2}]` (bob: smallest ssn) and `[{"id": 1}]` (alice: ssn LIKE 'SSN-1%').
    assert!(matches!(first, Err(ReadError::Refused(_))), "{first:?}");
    assert!(matches!(bit, Err(ReadError::Refused(_))), "{bit:?}");
}

// ---- 2. MySQL/MariaDB: non-ASCII case folding vs. known columns --------------------------

/// With `known_columns` (the connector reads them before every read: `columns_of`, names
/// lower-cased with `to_ascii_lowercase`), an unqualified name that is "known not to be" a
/// column of the restricted table is let through. `norm` folds ASCII only, but MariaDB
/// compares column names case-insensitively in full Unicode: `NUMÉRO_SÉCU` is normalised to
/// `numÉro_sÉcu` (not in the known set, so skipped), and MariaDB reads `numéro_sécu`.
/// Any hidden column with a non-ASCII letter that has a case pair (French/German/… schemas)
/// leaks. Confirmed at 6a3d32d with the mariadb CLI and through `CompanyDatabase::read`
/// (`[{"id": 1, "NUMÉRO_SÉCU": "1850275123456"}]`); fixed meanwhile in 1c2d53d (non-ASCII
/// names never skipped for MySQL): these two tests pass now and stay as regression tests.
#[test]
fn mysql_unicode_case_variant_of_a_hidden_column() {
    let mut tables = BTreeMap::new();
    tables.insert("clients".to_string(), Some(set(&["id", "nom"])));
    let mut p = ReadPolicy::new(tables, 100);
    p.known_columns
        .insert("clients".into(), set(&["id", "nom", "numéro_sécu"]));
    assert_refused("SELECT NUMÉRO_SÉCU FROM clients", SqlDialect::Mysql, &p);
    assert_refused(
        "SELECT id FROM clients WHERE NUMÉRO_SÉCU LIKE '1%'",
        SqlDialect::Mysql,
        &p,
    );
}

#[tokio::test]
async fn e2e_mariadb_unicode_case_variant_leaks_hidden_column() {
    let admin = sqlx::MySqlPool::connect(MYSQL_URL).await.unwrap();
    for s in [
        "DROP DATABASE IF EXISTS rt_redteam_e2e",
        "CREATE DATABASE rt_redteam_e2e CHARACTER SET utf8mb4",
        "CREATE TABLE rt_redteam_e2e.clients (id INT PRIMARY KEY, nom TEXT, `numéro_sécu` TEXT)",
        "INSERT INTO rt_redteam_e2e.clients VALUES (1, 'alice', '1850275123456')",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(s))
            .execute(&admin)
            .await
            .unwrap();
    }
    let mut cfg = config(DatabaseLocation::Mysql {
        url_env: "RT_MYSQL_URL".into(),
    });
    cfg.tables = BTreeMap::from([("clients".to_string(), Some(set(&["id", "nom"])))]);
    let db = CompanyDatabase::open("rt", &cfg, Some(&format!("{MYSQL_URL}/rt_redteam_e2e")))
        .await
        .unwrap();
    let plain = db.read("SELECT numéro_sécu FROM clients").await;
    let folded = db.read("SELECT id, NUMÉRO_SÉCU FROM clients").await;
    sqlx::query("DROP DATABASE rt_redteam_e2e")
        .execute(&admin)
        .await
        .unwrap();
    assert!(matches!(plain, Err(ReadError::Refused(_))), "{plain:?}");
    // Today: rows `[{"id": 1, "NUMÉRO_SÉCU": "1850275123456"}]`.
    assert!(
        matches!(folded, Err(ReadError::Refused(_))),
        "hidden column reached the model: {folded:?}"
    );
}

// ---- 3. SQLite: generated columns are missing from `pragma_table_info` -------------------

/// `sqlite::columns_of` listed columns with `pragma_table_info`, which omits generated
/// columns (`pragma_table_xinfo` has them). A generated column of a restricted table was then
/// "known not to exist" and an unqualified reference to it accepted — and generated columns
/// are typically derived from the very data hidden (`substr(ssn, -4)`, a STORED copy, a
/// hash …). Confirmed at 6a3d32d with python3's sqlite3 and through `CompanyDatabase::read`
/// (`[{"id": 1, "ssn_copy": "SSN-111", "ssn_last4": "-111"}]`); fixed meanwhile in 1c2d53d
/// (`table_xinfo`): this test passes now and stays as a regression test.
#[tokio::test]
async fn e2e_sqlite_generated_column_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rt.db");
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, ssn TEXT,
             ssn_last4 TEXT GENERATED ALWAYS AS (substr(ssn, -4)) VIRTUAL,
             ssn_copy TEXT AS (ssn) STORED);
         INSERT INTO customers (id, name, ssn) VALUES (1, 'alice', 'SSN-111');",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let mut cfg = config(DatabaseLocation::Sqlite(path));
    cfg.tables = BTreeMap::from([("customers".to_string(), Some(set(&["id", "name"])))]);
    let db = CompanyDatabase::open("rt", &cfg, None).await.unwrap();
    assert!(matches!(
        db.read("SELECT ssn FROM customers").await,
        Err(ReadError::Refused(_))
    ));
    let r = db
        .read("SELECT id, ssn_copy, ssn_last4 FROM customers")
        .await;
    // Today: `[{"id": 1, "ssn_copy": "SSN-111", "ssn_last4": "-111"}]`.
    assert!(
        matches!(r, Err(ReadError::Refused(_))),
        "generated columns of hidden data reached the model: {r:?}"
    );
}

// ---- 4. Writes: assigning a hidden column, invisible in the preview -----------------------

/// `UPDATE customers SET ssn = … WHERE id = 1` is accepted (SET targets are not held to the
/// read policy), and the preview narrows `before`/`after` to the allowed columns: the
/// approver sees an update that changes nothing, and approves an overwrite of the hidden
/// column. (`SET ssn = name` copies visible data over it.) Confirmed through
/// `CompanyDatabase::preview` on SQLite: before == after. Ranked below the read leaks: the table is
/// writable by configuration, but the human cannot see what they approve.
#[test]
fn update_of_a_hidden_column_is_refused() {
    let w = WritePolicy::new(policy(), set(&["customers"]));
    for d in [SqlDialect::Sqlite, SqlDialect::Postgres, SqlDialect::Mysql] {
        for sql in [
            "UPDATE customers SET ssn = 'x' WHERE id = 1",
            "UPDATE customers SET ssn = name WHERE id = 1",
        ] {
            if let Ok(v) = validate_write(sql, d, &w) {
                panic!("{d:?} accepted `{sql}` ({:?} assigned)", v.assigned);
            }
        }
    }
}

#[tokio::test]
async fn e2e_sqlite_preview_hides_the_hidden_column_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rt.db");
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, ssn TEXT);
         INSERT INTO customers VALUES (1, 'alice', 'SSN-111');",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let mut cfg = config(DatabaseLocation::Sqlite(path));
    cfg.tables = BTreeMap::from([("customers".to_string(), Some(set(&["id", "name"])))]);
    cfg.writable_tables = set(&["customers"]);
    let db = CompanyDatabase::open("rt", &cfg, None).await.unwrap();
    let w = match db.validate_write("UPDATE customers SET ssn = 'overwritten' WHERE id = 1") {
        Ok(w) => w,
        Err(_) => return, // refused: fixed
    };
    let p = db.preview(&w).await.unwrap();
    // Today: both `[{"id": 1, "name": "alice"}]`.
    assert_ne!(
        p.before, p.after,
        "the approver is shown no change for a write that changes a hidden column"
    );
}

// ---- helpers ---------------------------------------------------------------------------

fn pg_location() -> DatabaseLocation {
    DatabaseLocation::Postgres {
        url_env: "RT_PG_URL".into(),
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
