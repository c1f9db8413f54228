//! The SQL firewall end to end: `warden serve`, an agent with `sql_query` and `sql_execute`,
//! the scripted mock model, and a company database on SQLite, PostgreSQL
//! (`WARDEN_TEST_POSTGRES_URL`) and MariaDB/MySQL (`WARDEN_TEST_MYSQL_URL`, by default
//! `mysql://root@127.0.0.1:3306/test` outside CI). In CI a missing variable or an unreachable
//! server fails the test; elsewhere it is skipped loudly. Each run makes its own schema or
//! database and drops only that, also when the test fails.
//!
//! The model: (a) reads allowed rows; (b) is refused a table hidden behind a CTE of the same
//! name and a column hidden behind an alias; (c) is refused a user-defined function with a
//! side effect before it reaches the database; (d) proposes a write whose target rows then
//! change, and the approved write does not run; (e) on SQLite, builds a 900 MB string, which
//! fails without growing Warden's memory.

use crate::approvals::{awaited_approval, keygen, message};
use crate::{KEYS_ENV, bin, two_provider_config};
use serde_json::{Value, json};
use sqlx::Connection;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use warden_testkit::{MockUpstream, Reply, WardenProcess};
use warden_tools::approval::{Decision, parse_private_key};

/// The environment variable `url_env` names for PostgreSQL and MariaDB.
pub(crate) const URL_ENV: &str = "COMPANY_DB_URL";

pub(crate) fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// A name no other run (or test of this run) uses: `wtest_<pid>_<millis>_<n>`.
fn unique_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "wtest_{}_{}_{}",
        std::process::id(),
        warden_core::time::unix_millis() % 1_000_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
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

/// The company database, on one engine, reachable from the test directly.
pub(crate) enum Company {
    Sqlite {
        path: PathBuf,
        _dir: tempfile::TempDir,
    },
    Postgres {
        pool: sqlx::PgPool,
        schema: String,
        /// With `search_path` set to the schema.
        url: String,
    },
    Mysql {
        pool: sqlx::MySqlPool,
        server: String,
        db: String,
        url: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Engine {
    Sqlite,
    Postgres,
    Mysql,
}

const TABLES: &[&str] = &[
    "CREATE TABLE customers (id BIGINT PRIMARY KEY, name VARCHAR(50), email VARCHAR(100))",
    "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT, total DECIMAL(10,2), status VARCHAR(20))",
    "CREATE TABLE payroll (id BIGINT PRIMARY KEY, salary DECIMAL(10,2))",
];

const ROWS: &[&str] = &[
    "INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com'), (2, 'Bo', 'bo@example.org')",
    "INSERT INTO orders VALUES (1, 1, 10.00, 'pending'), (2, 1, 20.50, 'pending'), (3, 2, 5.00, 'shipped')",
    "INSERT INTO payroll VALUES (1, 123456.00)",
];

impl Company {
    /// Makes the database; `None` (skipped loudly) only outside CI.
    pub(crate) async fn create(engine: Engine) -> Option<Self> {
        let company = match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("company.db");
                Company::Sqlite { path, _dir: dir }
            }
            Engine::Postgres => {
                let Ok(server) = std::env::var("WARDEN_TEST_POSTGRES_URL") else {
                    assert!(!in_ci(), "WARDEN_TEST_POSTGRES_URL must be set in CI");
                    eprintln!(
                        "\n*** SKIPPED the PostgreSQL SQL firewall test: set WARDEN_TEST_POSTGRES_URL ***\n"
                    );
                    return None;
                };
                let schema = unique_name();
                let mut conn = sqlx::PgConnection::connect(&server)
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL must be reachable: {e}"));
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let _ = conn.close().await;
                let sep = if server.contains('?') { '&' } else { '?' };
                let url = format!("{server}{sep}options=-c%20search_path%3D{schema}");
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&url)
                    .await
                    .unwrap();
                Company::Postgres { pool, schema, url }
            }
            Engine::Mysql => {
                let server = match std::env::var("WARDEN_TEST_MYSQL_URL") {
                    Ok(u) => u,
                    Err(_) => {
                        assert!(!in_ci(), "WARDEN_TEST_MYSQL_URL must be set in CI");
                        "mysql://root@127.0.0.1:3306/test".to_owned()
                    }
                };
                let mut root = match sqlx::MySqlConnection::connect(&server).await {
                    Ok(c) => c,
                    Err(e) => {
                        assert!(
                            !in_ci(),
                            "MariaDB/MySQL must be reachable in CI (WARDEN_TEST_MYSQL_URL): {e}"
                        );
                        eprintln!(
                            "\n*** SKIPPED the MariaDB SQL firewall test: no server ({e}) ***\n"
                        );
                        return None;
                    }
                };
                let db = unique_name();
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{db}`")))
                    .execute(&mut root)
                    .await
                    .unwrap();
                let _ = root.close().await;
                let url = with_database(&server, &db);
                let pool = sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(2)
                    .connect(&url)
                    .await
                    .unwrap();
                Company::Mysql {
                    pool,
                    server,
                    db,
                    url,
                }
            }
        };
        for t in TABLES {
            company.exec(t).await;
        }
        company
            .exec(match engine {
                Engine::Sqlite => "CREATE TABLE audit (id INTEGER PRIMARY KEY, note TEXT)",
                Engine::Postgres => "CREATE TABLE audit (id BIGSERIAL PRIMARY KEY, note TEXT)",
                Engine::Mysql => {
                    "CREATE TABLE audit (id BIGINT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(50))"
                }
            })
            .await;
        for r in ROWS {
            company.exec(r).await;
        }
        // A function with a side effect (SQLite has none).
        match &company {
            Company::Sqlite { .. } => {}
            Company::Postgres { schema, .. } => {
                company
                    .exec(&format!(
                        "CREATE FUNCTION {schema}.touch() RETURNS int LANGUAGE sql AS $$ INSERT INTO {schema}.audit(note) VALUES ('ran') RETURNING 1 $$"
                    ))
                    .await
            }
            Company::Mysql { .. } => {
                company
                    .exec(
                        "CREATE FUNCTION touch() RETURNS INT NOT DETERMINISTIC MODIFIES SQL DATA \
                         BEGIN INSERT INTO audit (note) VALUES ('ran'); RETURN 1; END",
                    )
                    .await
            }
        }
        Some(company)
    }

    /// `kind` and where the database is, for `[databases.company]`.
    pub(crate) fn location(&self) -> String {
        match self {
            Company::Sqlite { path, .. } => {
                format!("kind = \"sqlite\"\npath = \"{}\"", path.display())
            }
            Company::Postgres { .. } => format!("kind = \"postgres\"\nurl_env = \"{URL_ENV}\""),
            Company::Mysql { .. } => format!("kind = \"mysql\"\nurl_env = \"{URL_ENV}\""),
        }
    }

    pub(crate) fn url(&self) -> Option<&str> {
        match self {
            Company::Sqlite { .. } => None,
            Company::Postgres { url, .. } | Company::Mysql { url, .. } => Some(url),
        }
    }

    /// The schema or database a function is qualified with.
    fn qualifier(&self) -> Option<&str> {
        match self {
            Company::Sqlite { .. } => None,
            Company::Postgres { schema, .. } => Some(schema),
            Company::Mysql { db, .. } => Some(db),
        }
    }

    async fn exec(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Company::Sqlite { path, .. } => {
                let mut c = sqlx::SqliteConnection::connect_with(
                    &sqlx::sqlite::SqliteConnectOptions::new()
                        .filename(path)
                        .create_if_missing(true),
                )
                .await
                .unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
            Company::Postgres { pool, .. } => {
                sqlx::raw_sql(sql).execute(pool).await.unwrap();
            }
            Company::Mysql { pool, .. } => {
                sqlx::raw_sql(sql).execute(pool).await.unwrap();
            }
        }
    }

    /// `(id, status)` of every order.
    async fn orders(&self) -> Vec<(i64, String)> {
        let sql = "SELECT id, status FROM orders ORDER BY id";
        match self {
            Company::Sqlite { path, .. } => {
                let mut c = sqlx::SqliteConnection::connect_with(
                    &sqlx::sqlite::SqliteConnectOptions::new().filename(path),
                )
                .await
                .unwrap();
                let rows = sqlx::query_as(sql).fetch_all(&mut c).await.unwrap();
                c.close().await.unwrap();
                rows
            }
            Company::Postgres { pool, .. } => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
            Company::Mysql { pool, .. } => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
        }
    }

    /// The total of order `id`, as a float.
    pub(crate) async fn order_total(&self, id: i64) -> f64 {
        match self {
            Company::Sqlite { path, .. } => {
                let mut c = sqlx::SqliteConnection::connect_with(
                    &sqlx::sqlite::SqliteConnectOptions::new().filename(path),
                )
                .await
                .unwrap();
                let n = sqlx::query_scalar("SELECT CAST(total AS REAL) FROM orders WHERE id = ?1")
                    .bind(id)
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                c.close().await.unwrap();
                n
            }
            Company::Postgres { pool, .. } => {
                sqlx::query_scalar("SELECT total::float8 FROM orders WHERE id = $1")
                    .bind(id)
                    .fetch_one(pool)
                    .await
                    .unwrap()
            }
            Company::Mysql { pool, .. } => {
                sqlx::query_scalar("SELECT CAST(total AS DOUBLE) FROM orders WHERE id = ?")
                    .bind(id)
                    .fetch_one(pool)
                    .await
                    .unwrap()
            }
        }
    }

    async fn audit_rows(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM audit";
        match self {
            Company::Sqlite { path, .. } => {
                let mut c = sqlx::SqliteConnection::connect_with(
                    &sqlx::sqlite::SqliteConnectOptions::new().filename(path),
                )
                .await
                .unwrap();
                let n = sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap();
                c.close().await.unwrap();
                n
            }
            Company::Postgres { pool, .. } => {
                sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
            }
            Company::Mysql { pool, .. } => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        }
    }

    /// Drops what `create` made.
    pub(crate) async fn drop_all(self) {
        match self {
            Company::Sqlite { .. } => {}
            Company::Postgres { pool, schema, .. } => {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
            Company::Mysql {
                pool, server, db, ..
            } => {
                pool.close().await;
                let mut root = sqlx::MySqlConnection::connect(&server).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS `{db}`"
                )))
                .execute(&mut root)
                .await
                .unwrap();
                let _ = root.close().await;
            }
        }
    }
}

/// `warden serve` with the clerk agent on the company database.
struct Firewall {
    a: MockUpstream,
    _b: MockUpstream,
    w: WardenProcess,
    key: String,
    admin: String,
    keys: tempfile::TempDir,
    http: reqwest::Client,
}

impl Firewall {
    async fn start(company: &Company) -> Self {
        let a = MockUpstream::start().await;
        let b = MockUpstream::start().await;
        let keys = tempfile::tempdir().unwrap();
        let alice = keygen(keys.path(), "alice");
        let extra = format!(
            r#"
[databases.company]
{location}
tables = ["customers", "orders", "audit"]
columns = {{ customers = ["id", "name"] }}
writable_tables = ["orders"]
statement_timeout = "2s"
[agents.clerk]
system_prompt = "You look after the company's orders."
model = "fast"
permissions = "read-write"
tools = ["sql_query", "sql_execute"]
databases = ["company"]
max_steps = 8
[approvers.alice]
public_key = "{alice}"
tools = ["sql_execute"]
"#,
            location = company.location()
        );
        let mut env = KEYS_ENV.to_vec();
        if let Some(url) = company.url() {
            env.push((URL_ENV, url));
        }
        let w = WardenProcess::start(&bin(), &two_provider_config(&a, &b, &extra), &env);
        let key = w.create_key("clerk-app", &[]);
        let admin = w.create_key("clerk-admin", &["--admin"]);
        Self {
            a,
            _b: b,
            w,
            key,
            admin,
            keys,
            http: reqwest::Client::new(),
        }
    }

    async fn ask(&self, name: &str, content: &str) -> Value {
        let r = self
            .http
            .post(format!("{}/v1/agents/clerk/{name}/messages", self.w.url))
            .bearer_auth(&self.key)
            .json(&json!({"content": content}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn get(&self, path: &str, key: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.w.url))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn history(&self, name: &str) -> Vec<Value> {
        let page = self
            .get(
                &format!("/v1/agents/clerk/{name}/history?limit=500"),
                &self.key,
            )
            .await;
        page["data"].as_array().unwrap().clone()
    }

    /// The tool messages of the model's last request: what the agent was told.
    fn told(&self) -> Vec<String> {
        let last = self.a.requests().last().unwrap().body.clone();
        last["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "tool")
            .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    async fn wait_idle(&self, name: &str) -> Value {
        for _ in 0..200 {
            let s = self
                .get(&format!("/v1/agents/clerk/{name}"), &self.key)
                .await;
            if s["status"] != "awaiting_approval" && s["status"] != "running" {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("agent {name} never finished");
    }

    /// Approves `id` as alice, signed with her key, as `warden approve` does.
    async fn approve(&self, id: &str) {
        let a = self.get(&format!("/v1/approvals/{id}"), &self.admin).await;
        let key = parse_private_key(
            &std::fs::read_to_string(self.keys.path().join("alice.key")).unwrap(),
        )
        .unwrap();
        let m = message(&a, Decision::Approve);
        let r = self
            .http
            .post(format!("{}/v1/approvals/{id}/decision", self.w.url))
            .bearer_auth(&self.admin)
            .json(&json!({"approver": "alice", "decision": "approve", "signature": m.sign(&key)}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }

    /// The `warden serve` process's id.
    fn pid(&self) -> u32 {
        self.w.pid().expect("warden serve is running")
    }
}

/// Peak resident memory of `pid` in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"))
}

fn sql(query: &str) -> Reply {
    Reply::ToolCall {
        name: "sql_query".into(),
        arguments: json!({"database": "company", "sql": query}).to_string(),
    }
}

fn write(statement: &str) -> Reply {
    Reply::ToolCall {
        name: "sql_execute".into(),
        arguments: json!({"database": "company", "sql": statement}).to_string(),
    }
}

fn outcomes(steps: &[Value]) -> Vec<String> {
    steps
        .iter()
        .filter(|s| s["kind"] == "tool")
        .map(|s| s["data"]["outcome"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn firewall(engine: Engine) {
    let Some(company) = Company::create(engine).await else {
        return;
    };
    let company = std::sync::Arc::new(company);
    let body = scenarios(engine, company.clone());
    let outcome = tokio::spawn(body).await;
    match std::sync::Arc::try_unwrap(company) {
        Ok(c) => c.drop_all().await,
        Err(_) => eprintln!("the company database is still in use; not dropped"),
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn scenarios(engine: Engine, company: std::sync::Arc<Company>) {
    let s = Firewall::start(&company).await;

    // (a) An allowed query returns its rows to the model.
    s.a.push([
        sql("SELECT id, name FROM customers ORDER BY id"),
        Reply::Text("Ada and Bo.".into()),
    ]);
    let out = s.ask("a", "Who are our customers?").await;
    assert_eq!(out["result"], "answered", "{engine:?}: {out}");
    let told = s.told();
    assert_eq!(told.len(), 1, "{told:?}");
    let result: Value = serde_json::from_str(&told[0]).unwrap_or_else(|_| json!(told[0]));
    assert_eq!(
        result["rows"],
        json!([{"id": 1, "name": "Ada"}, {"id": 2, "name": "Bo"}]),
        "{engine:?}: {result}"
    );
    assert_eq!(outcomes(&s.history("a").await), ["ok"]);

    // (b) A table hidden behind a CTE of its name, a column behind an alias: refused.
    s.a.push([
        sql(
            "SELECT * FROM payroll WHERE EXISTS (WITH payroll AS (SELECT 1) SELECT 1 FROM payroll)",
        ),
        sql("SELECT email AS email FROM customers"),
        Reply::Text("I may not read those.".into()),
    ]);
    let out = s.ask("b", "What do we pay, and to which addresses?").await;
    assert_eq!(out["result"], "answered", "{engine:?}: {out}");
    let told = s.told();
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(
        told[0].contains("table_not_allowed") && told[0].contains("payroll"),
        "{engine:?}: {}",
        told[0]
    );
    assert!(
        told[1].contains("column_not_allowed") && told[1].contains("email"),
        "{engine:?}: {}",
        told[1]
    );
    assert!(
        !told
            .iter()
            .any(|t| t.contains("123456") || t.contains("example")),
        "{told:?}"
    );
    assert_eq!(outcomes(&s.history("b").await), ["refused", "refused"]);

    // (c) A user-defined function with a side effect, called in a read: refused before it
    // reaches the database.
    if let Some(q) = company.qualifier() {
        s.a.push([
            sql("SELECT touch() AS t FROM customers"),
            sql(&format!("SELECT {q}.touch() AS t FROM customers")),
            sql(&format!("SELECT id FROM customers WHERE {q}.touch() = 1")),
            Reply::Text("I cannot call that.".into()),
        ]);
        let out = s.ask("c", "Touch the audit log").await;
        assert_eq!(out["result"], "answered", "{engine:?}: {out}");
        let told = s.told();
        assert_eq!(told.len(), 3, "{told:?}");
        for t in &told {
            assert!(t.contains("function_not_allowed"), "{engine:?}: {t}");
        }
        assert_eq!(outcomes(&s.history("c").await), ["refused"; 3]);
        assert_eq!(
            company.audit_rows().await,
            0,
            "{engine:?}: the function never ran"
        );
    }

    // (d) A write proposed, its target rows changed before the approval: it does not run.
    s.a.push([
        write("UPDATE orders SET status = 'cancelled' WHERE status = 'pending'"),
        Reply::Text("The orders changed; I will look again.".into()),
    ]);
    let out = s.ask("d", "Cancel the pending orders").await;
    assert_eq!(out["result"], "awaiting_approval", "{engine:?}: {out}");
    let id = awaited_approval(&out);
    let pending = s.get(&format!("/v1/approvals/{id}"), &s.admin).await;
    assert_eq!(pending["preview"]["rows_affected"], 2, "{pending}");
    assert_eq!(
        pending["preview"]["row_ids"],
        json!([[1], [2]]),
        "{pending}"
    );
    assert_eq!(
        company.orders().await,
        vec![
            (1, "pending".to_string()),
            (2, "pending".to_string()),
            (3, "shipped".to_string())
        ],
        "the preview changed nothing"
    );
    // Order 2 ships and order 3 comes back: still two pending orders, not the same ones.
    company
        .exec("UPDATE orders SET status = 'shipped' WHERE id = 2")
        .await;
    company
        .exec("UPDATE orders SET status = 'pending' WHERE id = 3")
        .await;
    let before = company.orders().await;
    s.approve(&id).await;
    let state = s.wait_idle("d").await;
    assert_eq!(state["status"], "idle", "{engine:?}: {state}");
    let a = s.get(&format!("/v1/approvals/{id}"), &s.admin).await;
    assert_eq!(a["state"], "failed", "{engine:?}: {a}");
    assert!(
        a["result"]
            .to_string()
            .contains("rows_changed_since_preview"),
        "{a}"
    );
    let told = s.told();
    assert!(
        told.last()
            .is_some_and(|t| t.contains("rows_changed_since_preview")),
        "{engine:?}: {told:?}"
    );
    assert_eq!(
        company.orders().await,
        before,
        "{engine:?}: the write did not run"
    );

    // (e) SQLite runs in Warden's process: a 900 MB string fails, and Warden's peak memory
    // barely moves.
    if engine == Engine::Sqlite {
        let pid = s.pid();
        let peak = peak_rss_kib(pid);
        s.a.push([
            sql("SELECT length(printf('%.*c', 900000000, 'x'))"),
            Reply::Text("Too big.".into()),
        ]);
        let out = s.ask("e", "Build a huge string").await;
        assert_eq!(out["result"], "answered", "{out}");
        // SQLite's per-value limit stops the string at 1 MiB: the call fails, or yields NULL.
        let told = s.told();
        assert_eq!(told.len(), 1, "{told:?}");
        let result: Value = serde_json::from_str(&told[0]).unwrap_or(Value::Null);
        let failed = told[0].contains("too big") || told[0].contains("error");
        assert!(
            failed || result["rows"] == json!([{"length(printf('%.*c', 900000000, 'x'))": null}]),
            "{}",
            told[0]
        );
        assert!(told[0].len() < 4096, "{} bytes", told[0].len());
        let grown = peak_rss_kib(pid).saturating_sub(peak);
        eprintln!(
            "warden's peak RSS: {peak} KiB before, grew by {grown} KiB: {}",
            told[0]
        );
        assert!(
            grown < 64 * 1024,
            "warden's peak RSS grew by {grown} KiB: {}",
            told[0]
        );
        // Still serving.
        s.a.push([
            sql("SELECT COUNT(*) AS n FROM orders"),
            Reply::Text("3".into()),
        ]);
        assert_eq!(s.ask("e", "count").await["result"], "answered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_firewall_on_sqlite() {
    firewall(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_firewall_on_postgres() {
    firewall(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_firewall_on_mysql() {
    firewall(Engine::Mysql).await;
}
