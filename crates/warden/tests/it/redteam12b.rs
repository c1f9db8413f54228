//! Second red-team round on issue 12 (after the fixes of a5f9cab and 7e8b0b4): approvals,
//! settlement, the audit path and sanitized database errors. Every test asserts the SAFE
//! behaviour, so a test that fails names a bug that is still there. PostgreSQL
//! (`WARDEN_TEST_POSTGRES_URL`) and MariaDB (`WARDEN_TEST_MYSQL_URL`) tests make their own schema
//! or database and drop only that; they are skipped loudly when the server is unreachable.

use crate::approvals::{awaited_approval, keygen, message, settled};
use crate::{KEYS_ENV, bin, two_provider_config};
use serde_json::{Value, json};
use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use warden_testkit::{MockUpstream, Reply, WardenProcess};
use warden_tools::approval::{Decision, parse_private_key};

const DB_URL_ENV: &str = "RT12B_DB_URL";

fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        warden_core::time::unix_millis() % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

struct Opts {
    database: String,
    ttl: &'static str,
    env: Vec<(String, String)>,
    agent_extra: &'static str,
    extra: &'static str,
}

impl Opts {
    fn sqlite(db: &Path) -> Self {
        Self {
            database: format!(
                "kind = \"sqlite\"\npath = \"{}\"\ntables = [\"customers\", \"orders\"]\nwritable_tables = [\"orders\"]",
                db.display()
            ),
            ttl: "1h",
            env: Vec::new(),
            agent_extra: "",
            extra: "",
        }
    }
}

struct Rig {
    a: MockUpstream,
    _b: MockUpstream,
    _hook: MockUpstream,
    w: Option<WardenProcess>,
    key: String,
    admin: String,
    keys: tempfile::TempDir,
    http: reqwest::Client,
}

impl Rig {
    async fn start(opts: Opts) -> Self {
        let a = MockUpstream::start().await;
        let b = MockUpstream::start().await;
        let hook = MockUpstream::start().await;
        let keys = tempfile::tempdir().unwrap();
        let alice = keygen(keys.path(), "alice");
        crate::allow_local_url(&hook.base_url());
        let local_hosts = crate::local_http_hosts();
        let extra = format!(
            r#"
[audit]
max_segment_age = "200ms"
[http]
allowed_hosts = {local_hosts}
allow_private = ["localhost"]
timeout = "1s"
{more}
[databases.shop]
{database}
[agents.ops]
system_prompt = "You keep the shop's records."
model = "fast"
permissions = "read-write"
tools = ["sql_query", "sql_execute", "http_request"]
databases = ["shop"]
approval_ttl = "{ttl}"
webhook_url_env = "OPS_HOOK"
{agent_extra}
[approvers.alice]
public_key = "{alice}"
tools = ["sql_execute", "http_request"]
"#,
            more = opts.extra,
            database = opts.database,
            ttl = opts.ttl,
            agent_extra = opts.agent_extra,
        );
        let config = two_provider_config(&a, &b, &extra);
        let hook_url = format!("{}/chat/completions", hook.base_url());
        let mut env: Vec<(&str, &str)> = KEYS_ENV.to_vec();
        env.push(("OPS_HOOK", &hook_url));
        for (k, v) in &opts.env {
            env.push((k, v));
        }
        let w = WardenProcess::start(&bin(), &config, &env);
        let key = w.create_key("ops-app", &[]);
        let admin = w.create_key("ops-admin", &["--admin"]);
        Self {
            a,
            _b: b,
            _hook: hook,
            w: Some(w),
            key,
            admin,
            keys,
            http: reqwest::Client::new(),
        }
    }

    fn w(&self) -> &WardenProcess {
        self.w.as_ref().unwrap()
    }

    fn url(&self) -> String {
        self.w().url.clone()
    }

    async fn ask(&self, agent: &str, content: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/agents/{agent}/messages", self.url()))
            .bearer_auth(&self.key)
            .json(&json!({"content": content}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, bearer: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url()))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null)
    }

    async fn approval(&self, id: &str) -> Value {
        self.get(&format!("/v1/approvals/{id}"), &self.admin).await
    }

    fn alice(&self) -> ed25519_dalek::SigningKey {
        parse_private_key(&std::fs::read_to_string(self.keys.path().join("alice.key")).unwrap())
            .unwrap()
    }

    async fn decide(&self, id: &str, decision: Decision) -> (u16, Value) {
        let a = self.approval(id).await;
        let sig = message(&a, decision).sign(&self.alice());
        let r = self
            .http
            .post(format!("{}/v1/approvals/{id}/decision", self.url()))
            .bearer_auth(&self.admin)
            .json(&json!({"approver": "alice", "decision": decision.as_str(), "signature": sig}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn settled(&self, id: &str, agent: &str) -> (String, String) {
        settled(&self.http, &self.url(), &self.admin, &self.key, id, agent).await
    }

    fn audit(&self) -> String {
        self.w().cli(&["audit", "search", "--limit", "5000"]).1
    }

    /// Makes the audit log fail (as `fail_closed.rs` does): `open/` moved aside and a file put
    /// in its place, so the next rotation cannot create a segment.
    async fn break_log(&self) {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let open = self.w().data_dir.join("audit/open");
        std::fs::rename(&open, open.with_extension("aside")).unwrap();
        std::fs::write(&open, b"not a directory").unwrap();
        tokio::time::sleep(Duration::from_millis(900)).await;
    }

    fn mend_log(&self) {
        let open = self.w().data_dir.join("audit/open");
        if open.is_file() {
            std::fs::remove_file(&open).unwrap();
            std::fs::rename(open.with_extension("aside"), &open).unwrap();
        }
    }
}

/// An HTTP target that answers `{"ok":true}` after `delay`; counts requests.
async fn slow_target(delay: Duration) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    crate::allow_local_port(port);
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = sock.read(&mut buf).await;
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let body = "{\"ok\":true}";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (port, hits)
}

fn http_call(method: &str, url: &str, body: Value) -> Reply {
    Reply::ToolCall {
        name: "http_request".into(),
        arguments: json!({"method": method, "url": url, "body": body}).to_string(),
    }
}

fn sql_execute(sql: &str) -> Reply {
    Reply::ToolCall {
        name: "sql_execute".into(),
        arguments: json!({"database": "shop", "sql": sql}).to_string(),
    }
}

#[allow(dead_code)]
async fn sqlite_db(dir: &Path, name: &str, ddl: &str) -> PathBuf {
    let path = dir.join(name);
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(ddl.to_owned()))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    path
}

fn pg_server() -> String {
    std::env::var("WARDEN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

#[allow(dead_code)]
async fn pg_schema(ddl: &[&str]) -> Option<(sqlx::PgPool, String)> {
    let server = pg_server();
    let mut conn = match sqlx::PgConnection::connect(&server).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("\n*** SKIPPED: PostgreSQL unreachable ({e}) ***\n");
            return None;
        }
    };
    let schema = unique("rt12b");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&pg_url(&server, &schema))
        .await
        .unwrap();
    for d in ddl {
        sqlx::raw_sql(sqlx::AssertSqlSafe((*d).to_owned()))
            .execute(&pool)
            .await
            .unwrap();
    }
    Some((pool, schema))
}

fn pg_url(server: &str, schema: &str) -> String {
    let sep = if server.contains('?') { '&' } else { '?' };
    format!("{server}{sep}options=-c%20search_path%3D{schema}")
}

#[allow(dead_code)]
async fn pg_drop(pool: sqlx::PgPool, schema: &str) {
    pool.close().await;
    let mut conn = sqlx::PgConnection::connect(&pg_server()).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let _ = conn.close().await;
}

fn my_server() -> String {
    std::env::var("WARDEN_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

async fn my_database(ddl: &[&str]) -> Option<(sqlx::MySqlPool, String, String)> {
    let server = my_server();
    let mut root = match sqlx::MySqlConnection::connect(&server).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("\n*** SKIPPED: MariaDB unreachable ({e}) ***\n");
            return None;
        }
    };
    let db = unique("rt12b");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{db}`")))
        .execute(&mut root)
        .await
        .unwrap();
    let _ = root.close().await;
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
    let url = format!("{base}/{db}");
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .unwrap();
    for d in ddl {
        sqlx::raw_sql(sqlx::AssertSqlSafe((*d).to_owned()))
            .execute(&pool)
            .await
            .unwrap();
    }
    Some((pool, db, url))
}

async fn my_drop(pool: sqlx::MySqlPool, db: &str) {
    pool.close().await;
    let mut root = sqlx::MySqlConnection::connect(&my_server()).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS `{db}`"
    )))
    .execute(&mut root)
    .await
    .unwrap();
    let _ = root.close().await;
}

// =============================================================================================
// Findings (these fail while the bug exists)
// =============================================================================================

/// The admin-only live preview runs the write on MySQL/MariaDB between a raw `START
/// TRANSACTION` and `ROLLBACK` on the one write connection. If the admin's client goes away
/// while the previewed statement waits (here: an INSERT waiting on a row lock another session
/// holds), the handler's future is dropped before its ROLLBACK: the connection goes back to the
/// pool with the transaction open and the previewed row in it, and the next `START
/// TRANSACTION` on that connection (any later preview, write or fence) commits it implicitly.
/// An unapproved write is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12b_an_abandoned_live_preview_never_commits_the_previewed_write_on_mariadb() {
    let Some((pool, dbname, url)) = my_database(&[
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, status VARCHAR(20), total INT) ENGINE=InnoDB",
        "INSERT INTO orders VALUES (1, 'open', 5)",
    ])
    .await
    else {
        return;
    };
    let r = Rig::start(Opts {
        database: format!(
            "kind = \"mysql\"\nurl_env = \"{DB_URL_ENV}\"\ntables = [\"orders\"]\nwritable_tables = [\"orders\"]\nstatement_timeout = \"20s\""
        ),
        env: vec![(DB_URL_ENV.into(), url.clone())],
        ..Opts::sqlite(Path::new("unused"))
    })
    .await;
    r.a.push([
        sql_execute("INSERT INTO orders (id, status, total) VALUES (100, 'unapproved', 1)"),
        Reply::Text("waiting".into()),
    ]);
    let (_, out) = r.ask("ops/lp1", "add order 100").await;
    let id = awaited_approval(&out);
    // Another session holds key 100 uncommitted: the preview's INSERT waits for its lock.
    let mut blocker = sqlx::MySqlConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("START TRANSACTION; INSERT INTO orders VALUES (100, 'blocker', 0)")
        .execute(&mut blocker)
        .await
        .unwrap();
    // The admin asks for the live preview and gives up after a second.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(1000))
        .build()
        .unwrap();
    let gave_up = impatient
        .get(format!("{}/v1/approvals/{id}/preview", r.url()))
        .bearer_auth(&r.admin)
        .send()
        .await;
    assert!(gave_up.is_err(), "the preview did not wait: {gave_up:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut blocker)
        .await
        .unwrap();
    let _ = blocker.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Any later use of the write connection: another preview.
    let again = r
        .http
        .get(format!("{}/v1/approvals/{id}/preview", r.url()))
        .bearer_auth(&r.admin)
        .send()
        .await
        .unwrap();
    let again_status = again.status().as_u16();
    let again_body = again.text().await.unwrap_or_default();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let state = r.approval(&id).await["state"].clone();
    drop(r);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, CAST(status AS CHAR) FROM orders WHERE id = 100")
            .fetch_all(&pool)
            .await
            .unwrap();
    my_drop(pool, &dbname).await;
    assert!(
        rows.is_empty(),
        "an INSERT nobody approved (approval {state}) is in the table: {rows:?}; second preview: {again_status} {again_body}"
    );
}

/// An approver's resolution note is stored in the approval's result and written to the audit
/// log (`detail: "resolved by alice: <note>"`) exactly as typed: unlike a decision's comment,
/// it is not held to the redaction policy, so an email or card number in it reaches the log
/// and `GET /v1/approvals/{id}` raw ("raw personal data and secrets never reach a log").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12b_a_resolution_note_is_redacted_before_the_audit_log_and_the_approval_keep_it() {
    let (port, hits) = slow_target(Duration::from_millis(2500)).await;
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let r = Rig::start(Opts::sqlite(&db)).await;
    r.a.push([
        http_call(
            "POST",
            &format!("http://localhost:{port}/refund"),
            json!({"order": 7}),
        ),
        Reply::Text("unknown".into()),
    ]);
    let (_, out) = r.ask("ops/n1", "refund order 7").await;
    let id = awaited_approval(&out);
    let (st, body) = r.decide(&id, Decision::Approve).await;
    assert_eq!(st, 200, "{body}");
    let (state, _) = r.settled(&id, "ops/n1").await;
    assert_eq!(state, "outcome_unknown", "{}", r.approval(&id).await);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let note = "called jane.doe@example.com, card 4111 1111 1111 1111 was refunded";
    let a = r.approval(&id).await;
    let res = warden_tools::approval::ResolutionMessage {
        approval_id: id.clone(),
        agent_id: a["agent"].as_str().unwrap().into(),
        tool: a["tool"].as_str().unwrap().into(),
        arguments_sha256: a["arguments_sha256"].as_str().unwrap().into(),
        succeeded: true,
        note: note.into(),
    };
    let resp = r
        .http
        .post(format!("{}/v1/approvals/{id}/resolve", r.url()))
        .bearer_auth(&r.admin)
        .json(
            &json!({"approver": "alice", "outcome": "succeeded", "note": note,
                      "signature": res.sign(&r.alice())}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let shown = r.approval(&id).await.to_string();
    let audit = r.audit();
    assert!(
        !audit.contains("jane.doe@example.com") && !audit.contains("4111 1111 1111 1111"),
        "the resolution note reached the audit log raw: {}",
        audit
            .lines()
            .filter(|l| l.contains("jane.doe"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !shown.contains("jane.doe@example.com"),
        "and the approval shows it raw: {shown}"
    );
}

/// The live preview runs the write (rolled back) against the company's database and shows
/// the real values, but it is not held to the fail-closed rule: with the audit log failing
/// (every agent step, model call and tool call refused with 503), an admin still gets the
/// preview, and no record of it is ever written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12b_the_live_preview_is_refused_while_the_audit_log_is_failing() {
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let r = Rig::start(Opts::sqlite(&db)).await;
    r.a.push([
        sql_execute("UPDATE orders SET total = 7 WHERE id = 1"),
        Reply::Text("ok".into()),
    ]);
    let (_, out) = r.ask("ops/lp2", "set order 1 to 7").await;
    let id = awaited_approval(&out);
    r.break_log().await;
    // The log is failing: work is refused up front (an agent message, a model call).
    r.a.push([Reply::Text("hello".into())]);
    let (code, _) = r.ask("ops/other", "hello").await;
    let resp = r
        .http
        .get(format!("{}/v1/approvals/{id}/preview", r.url()))
        .bearer_auth(&r.admin)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    r.mend_log();
    assert_ne!(code, 200, "the log is not failing: the test proves nothing");
    assert_ne!(
        status, 200,
        "the write was run (rolled back) and its real values shown with the audit log down: {body}"
    );
}

/// A write that reports an error while its target cannot be asked is left `dispatched` for
/// the reconciler and its task stops `failed` ("settling a write"), to continue once settled.
/// If the owner presses `POST …/resume` meanwhile (the target still busy), the resumed task
/// tries to settle in-task, fails with a store-kind error, and stops without a marker: the
/// agent is left `running` with nothing running, and when the reconciler settles the write
/// the task is not `continuable` (status `running`), so it never goes on by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12b_a_resume_while_the_target_is_busy_does_not_strand_the_task_running() {
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let mut opts = Opts::sqlite(&db);
    opts.database.push_str("\nstatement_timeout = \"1s\"");
    opts.agent_extra = "step_timeout = \"1s\"";
    let r = Rig::start(opts).await;
    r.a.push([
        sql_execute("UPDATE orders SET total = 9 WHERE id = 1"),
        Reply::Text("the write went through".into()),
    ]);
    let (_, out) = r.ask("ops/st1", "set order 1 to 9").await;
    let id = awaited_approval(&out);
    // Someone else holds the shop database's write lock.
    let mut holder = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&db),
    )
    .await
    .unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let (st, body) = r.decide(&id, Decision::Approve).await;
    assert_eq!(st, 200, "{body}");
    // The write times out on the lock, and so does its settlement: failed, settling.
    let mut agent = Value::Null;
    for _ in 0..100 {
        agent = r.get("/v1/agents/ops/st1", &r.key).await;
        if agent["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(agent["status"], "failed", "{agent}");
    assert_eq!(r.approval(&id).await["state"], "dispatched");
    // The owner resumes while the lock is still held.
    let resumed = r
        .http
        .post(format!("{}/v1/agents/ops/st1/resume", r.url()))
        .bearer_auth(&r.key)
        .send()
        .await
        .unwrap();
    let resumed_status = resumed.status().as_u16();
    let resumed_body = resumed.text().await.unwrap_or_default();
    let after_resume = r.get("/v1/agents/ops/st1", &r.key).await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    let _ = holder.close().await;
    // The reconciler (every 30 s) settles the write; the task should go on by itself.
    let mut last = (String::new(), String::new());
    for _ in 0..45 {
        let a = r.approval(&id).await;
        let g = r.get("/v1/agents/ops/st1", &r.key).await;
        last = (
            a["state"].as_str().unwrap_or("?").to_owned(),
            g["status"].as_str().unwrap_or("?").to_owned(),
        );
        if last.1 == "idle" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    assert!(
        after_resume["status"] != "running" && last.1 == "idle",
        "after a resume that could not settle ({resumed_status} {resumed_body}) the agent shows \
         `{}` ({}); 40 s later the write is `{}` and the agent `{}`, its task not continued",
        after_resume["status"],
        after_resume["status_reason"],
        last.0,
        last.1
    );
}

// =============================================================================================
// Tried and held (regression tests)
// =============================================================================================

/// The same abandoned live preview on PostgreSQL: its transaction is sqlx's, rolled back when
/// the dropped future releases the connection, so the previewed INSERT never commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12b_held_an_abandoned_live_preview_never_commits_on_postgres() {
    let Some((pool, schema)) = pg_schema(&[
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, status TEXT, total INT)",
        "INSERT INTO orders VALUES (1, 'open', 5)",
    ])
    .await
    else {
        return;
    };
    let url = pg_url(&pg_server(), &schema);
    let r = Rig::start(Opts {
        database: format!(
            "kind = \"postgres\"\nurl_env = \"{DB_URL_ENV}\"\ntables = [\"orders\"]\nwritable_tables = [\"orders\"]\nstatement_timeout = \"20s\""
        ),
        env: vec![(DB_URL_ENV.into(), url.clone())],
        ..Opts::sqlite(Path::new("unused"))
    })
    .await;
    r.a.push([
        sql_execute("INSERT INTO orders (id, status, total) VALUES (100, 'unapproved', 1)"),
        Reply::Text("waiting".into()),
    ]);
    let (_, out) = r.ask("ops/lp3", "add order 100").await;
    let id = awaited_approval(&out);
    let mut blocker = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("BEGIN; INSERT INTO orders VALUES (100, 'blocker', 0)")
        .execute(&mut blocker)
        .await
        .unwrap();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(1000))
        .build()
        .unwrap();
    let gave_up = impatient
        .get(format!("{}/v1/approvals/{id}/preview", r.url()))
        .bearer_auth(&r.admin)
        .send()
        .await;
    assert!(gave_up.is_err(), "the preview did not wait: {gave_up:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut blocker)
        .await
        .unwrap();
    let _ = blocker.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = r
        .http
        .get(format!("{}/v1/approvals/{id}/preview", r.url()))
        .bearer_auth(&r.admin)
        .send()
        .await
        .unwrap();
    let again_status = again.status().as_u16();
    drop(r);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT id FROM orders WHERE id = 100")
        .fetch_all(&pool)
        .await
        .unwrap();
    pg_drop(pool, &schema).await;
    assert!(rows.is_empty(), "committed: {rows:?}");
    assert_eq!(again_status, 200, "the next preview works");
}
