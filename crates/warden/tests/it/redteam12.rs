//! Red-team round on issue 12, part 1 (commit 1bbad94): fail closed on the audit log, redacted
//! previews, read-only agents, settling dispatched writes, canonical arguments, approval
//! states. Every test asserts the SAFE behaviour, so a test that fails names a bug that is
//! still there. PostgreSQL (`WARDEN_TEST_POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test`) and MariaDB (`WARDEN_TEST_MYSQL_URL`, by default
//! `mysql://root@127.0.0.1:3306/test`) tests make their own schema or database and drop only
//! that; they are skipped loudly when the server is unreachable.

use crate::approvals::{awaited_approval, keygen, message, settled};
use crate::{KEYS_ENV, bin, two_provider_config};
use serde_json::{Value, json};
use sqlx::Connection;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_testkit::{MockUpstream, Reply, WardenProcess};
use warden_tools::approval::{Decision, parse_private_key};

const EMAIL: &str = "jane.doe@example.com";
const CARD: &str = "4111 1111 1111 1111";
const DB_URL_ENV: &str = "RT12_DB_URL";

fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        warden_core::time::unix_millis() % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP server: a target for `http_request` (and a scripted model, for calls the mock
// cannot make). One request per connection; replies in order, then the default.
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Raw {
    port: u16,
    hits: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<String>>>,
    replies: Arc<Mutex<VecDeque<String>>>,
    default: Arc<String>,
    delay: Duration,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Raw {
    async fn start(delay: Duration, default: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        crate::allow_local_port(port);
        let me = Self {
            port,
            hits: Arc::default(),
            bodies: Arc::default(),
            replies: Arc::default(),
            default: Arc::new(default.to_owned()),
            delay,
        };
        let srv = me.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let srv = srv.clone();
                tokio::spawn(async move {
                    let _ = srv.serve(sock).await;
                });
            }
        });
        me
    }

    fn url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.port)
    }

    fn push(&self, body: String) {
        self.replies.lock().unwrap().push_back(body);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    async fn serve(&self, mut sock: tokio::net::TcpStream) -> std::io::Result<()> {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            let n = sock.read(&mut tmp).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let n = sock.read(&mut tmp).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        self.bodies
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&buf[head_end..]).into_owned());
        self.hits.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        let body = self
            .replies
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| (*self.default).clone());
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(resp.as_bytes()).await?;
        sock.shutdown().await
    }
}

/// A chat completion whose message calls these tools: (id, name, arguments).
fn completion_with_calls(calls: &[(&str, &str, &str)]) -> String {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, args)| {
            json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
        })
        .collect();
    json!({"id": "chatcmpl-rt", "object": "chat.completion", "created": 0, "model": "m",
           "choices": [{"index": 0, "finish_reason": "tool_calls",
                        "message": {"role": "assistant", "content": null, "tool_calls": calls}}],
           "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})
    .to_string()
}

fn completion_text(text: &str) -> String {
    json!({"id": "chatcmpl-rt", "object": "chat.completion", "created": 0, "model": "m",
           "choices": [{"index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": text}}],
           "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// The rig: `warden serve` with one read-write agent `ops` (sql_query, sql_execute,
// http_request), a read-only agent `viewer`, and approver alice (both write tools).
// ---------------------------------------------------------------------------------------------

struct Opts {
    /// `kind`/`path`/`url_env` plus `tables`/`writable_tables` lines for `[databases.shop]`.
    database: String,
    ttl: &'static str,
    http_timeout: &'static str,
    env: Vec<(String, String)>,
    /// A scripted model server instead of the mock (for calls the mock cannot make).
    model: Option<String>,
    /// More lines for `[agents.ops]`.
    agent_extra: &'static str,
}

impl Opts {
    fn sqlite(db: &Path) -> Self {
        Self {
            database: format!(
                "kind = \"sqlite\"\npath = \"{}\"\ntables = [\"customers\", \"orders\"]\nwritable_tables = [\"orders\"]",
                db.display()
            ),
            ttl: "1h",
            http_timeout: "5s",
            env: Vec::new(),
            model: None,
            agent_extra: "",
        }
    }
}

struct Rig {
    a: MockUpstream,
    _b: MockUpstream,
    hook: MockUpstream,
    w: Option<WardenProcess>,
    key: String,
    admin: String,
    keys: tempfile::TempDir,
    http: reqwest::Client,
    _work: tempfile::TempDir,
}

impl Rig {
    async fn start(opts: Opts) -> Self {
        let a = MockUpstream::start().await;
        let b = MockUpstream::start().await;
        let hook = MockUpstream::start().await;
        let work = tempfile::tempdir().unwrap();
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
timeout = "{http_timeout}"
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
[agents.viewer]
system_prompt = "You only look."
model = "fast"
tools = ["sql_query", "http_request"]
databases = ["shop"]
[approvers.alice]
public_key = "{alice}"
tools = ["sql_execute", "http_request"]
"#,
            http_timeout = opts.http_timeout,
            database = opts.database,
            ttl = opts.ttl,
            agent_extra = opts.agent_extra,
        );
        let config = match &opts.model {
            None => two_provider_config(&a, &b, &extra),
            Some(model_url) => format!(
                r#"
deployment = "rt12"
[retry]
attempts = 1
[routing]
default_provider = "primary"
[providers.primary]
base_url = "{model_url}"
api_key_env = "PRIMARY_KEY"
timeout = "5s"
[models.fast]
targets = [{{ provider = "primary", model = "small-a" }}]
{extra}
"#
            ),
        };
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
            hook,
            w: Some(w),
            key,
            admin,
            keys,
            http: reqwest::Client::new(),
            _work: work,
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

    async fn history(&self, agent: &str) -> Value {
        self.get(&format!("/v1/agents/{agent}/history?limit=500"), &self.key)
            .await
    }

    fn alice(&self) -> ed25519_dalek::SigningKey {
        parse_private_key(&std::fs::read_to_string(self.keys.path().join("alice.key")).unwrap())
            .unwrap()
    }

    /// A signed decision by alice on `id`; (status, body).
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

    /// Every file Warden wrote, concatenated (the store, its WAL, the audit segments).
    fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if let Ok(bytes) = std::fs::read(&p) {
                    out.push((p, bytes));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.w().data_dir, &mut out);
        out
    }

    fn files_holding(&self, needle: &str) -> Vec<PathBuf> {
        self.files()
            .into_iter()
            .filter(|(_, b)| find(b, needle.as_bytes()).is_some())
            .map(|(p, _)| p)
            .collect()
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

    fn mend_log_and_restart(&mut self) {
        let mut w = self.w.take().unwrap();
        w.signal("KILL");
        tokio::task::block_in_place(|| w.wait_exit(Duration::from_secs(5)));
        let open = w.data_dir.join("audit/open");
        std::fs::remove_file(&open).unwrap();
        std::fs::rename(open.with_extension("aside"), &open).unwrap();
        self.w = Some(w.restart());
    }
}

fn sql_execute(sql: &str) -> Reply {
    Reply::ToolCall {
        name: "sql_execute".into(),
        arguments: json!({"database": "shop", "sql": sql}).to_string(),
    }
}

fn http_call(method: &str, url: &str, body: Value) -> Reply {
    Reply::ToolCall {
        name: "http_request".into(),
        arguments: json!({"method": method, "url": url, "body": body}).to_string(),
    }
}

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

// ---------------------------------------------------------------------------------------------
// PostgreSQL and MariaDB scratch spaces.
// ---------------------------------------------------------------------------------------------

fn pg_server() -> String {
    std::env::var("WARDEN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema; (pool with search_path, schema). `None`: no server (skipped loudly).
async fn pg_schema(ddl: &[&str]) -> Option<(sqlx::PgPool, String)> {
    let server = pg_server();
    let mut conn = match sqlx::PgConnection::connect(&server).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("\n*** SKIPPED: PostgreSQL unreachable ({e}) ***\n");
            return None;
        }
    };
    let schema = unique("rt12");
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

/// A fresh database; (pool, database, url). `None`: no server (skipped loudly).
async fn my_database(ddl: &[&str]) -> Option<(sqlx::MySqlPool, String, String)> {
    let server = my_server();
    let mut root = match sqlx::MySqlConnection::connect(&server).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("\n*** SKIPPED: MariaDB unreachable ({e}) ***\n");
            return None;
        }
    };
    let db = unique("rt12");
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

/// The result of a succeeded HTTP write is the target's response body. It goes to the model
/// masked, but it is stored in the approval (`approvals.result`) and shown by
/// `GET /v1/approvals/{id}` and the list exactly as the target sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_an_http_write_result_is_redacted_before_it_is_stored_or_shown() {
    let target = Raw::start(
        Duration::ZERO,
        &json!({"customer": EMAIL, "card": CARD}).to_string(),
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let r = Rig::start(Opts::sqlite(&db)).await;
    r.a.push([
        http_call("POST", &target.url("/crm"), json!({"n": 1})),
        Reply::Text("Posted.".into()),
    ]);
    let (_, out) = r.ask("ops/h1", "post it").await;
    let id = awaited_approval(&out);
    let (st, body) = r.decide(&id, Decision::Approve).await;
    assert_eq!(st, 200, "{body}");
    let (state, _) = r.settled(&id, "ops/h1").await;
    assert_eq!(state, "succeeded");
    assert_eq!(target.hits(), 1);
    // What the model got is masked (this holds).
    let told = r.a.requests().last().unwrap().body.to_string();
    assert!(!told.contains(EMAIL), "the model saw the raw email: {told}");

    let shown = r.approval(&id).await.to_string();
    let listed = r.get("/v1/approvals?limit=50", &r.admin).await.to_string();
    let stored = r.files_holding(EMAIL);
    assert!(
        !shown.contains(EMAIL) && !shown.contains(CARD),
        "GET /v1/approvals/{{id}} shows the target's raw answer: {shown}"
    );
    assert!(!listed.contains(EMAIL), "the list shows it raw");
    assert!(
        stored.is_empty(),
        "raw personal data stored in Warden's files: {stored:?}"
    );
}

/// An approved write that the database refuses at execution: MariaDB's message repeats the
/// row's values (`Duplicate entry 'jane.doe@example.com-2' for key 'uq'`). The model is told
/// the error masked, but the approval's `result` and the audit record's `detail` keep it raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_a_write_error_is_redacted_before_the_approval_and_the_audit_log_keep_it() {
    let Some((pool, dbname, url)) = my_database(&[
        "CREATE TABLE bookings (id BIGINT PRIMARY KEY, email VARCHAR(100), slot INT, UNIQUE KEY uq (email, slot))",
        "INSERT INTO bookings VALUES (1, 'jane.doe@example.com', 1)",
    ])
    .await
    else {
        return;
    };
    let r = Rig::start(Opts {
        database: format!(
            "kind = \"mysql\"\nurl_env = \"{DB_URL_ENV}\"\ntables = [\"bookings\"]\nwritable_tables = [\"bookings\"]"
        ),
        env: vec![(DB_URL_ENV.into(), url)],
        ..Opts::sqlite(Path::new("unused"))
    })
    .await;
    r.a.push([
        sql_execute("UPDATE bookings SET slot = 2 WHERE id = 1"),
        Reply::Text("Could not move it.".into()),
    ]);
    let (_, out) = r.ask("ops/m1", "move Jane's booking to slot 2").await;
    let id = awaited_approval(&out);
    // Between the preview and the approval another system books the slot.
    sqlx::query("INSERT INTO bookings VALUES (2, 'jane.doe@example.com', 2)")
        .execute(&pool)
        .await
        .unwrap();
    let (st, body) = r.decide(&id, Decision::Approve).await;
    assert_eq!(st, 200, "{body}");
    let (state, _) = r.settled(&id, "ops/m1").await;
    let shown = r.approval(&id).await.to_string();
    let audit = r.audit();
    let stored = r.files_holding(EMAIL);
    let told = r.a.requests().last().unwrap().body.to_string();
    drop(r);
    my_drop(pool, &dbname).await;

    assert_eq!(state, "failed", "{shown}");
    assert!(!told.contains(EMAIL), "the model saw it raw: {told}");
    let mut leaks = Vec::new();
    if shown.contains(EMAIL) {
        leaks.push(format!("GET /v1/approvals/{{id}}: {shown}"));
    }
    for l in audit.lines().filter(|l| l.contains(EMAIL)) {
        leaks.push(format!("audit record: {l}"));
    }
    for f in stored {
        leaks.push(format!("file: {}", f.display()));
    }
    assert!(leaks.is_empty(), "raw personal data kept: {leaks:#?}");
}

/// A column the read policy hides is read through a write's error: the preview runs the
/// write, MariaDB refuses it with `Duplicate entry '<hidden value>-2' for key 'uq'`, and that
/// message goes to the model (and the journal) as the tool's error. Only detector-shaped
/// values are masked; a name is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_a_write_error_does_not_reveal_a_hidden_column_to_the_model() {
    let Some((pool, dbname, url)) = my_database(&[
        "CREATE TABLE bookings (id BIGINT PRIMARY KEY, guest VARCHAR(100), slot INT, UNIQUE KEY uq (guest, slot))",
        "INSERT INTO bookings VALUES (1, 'Margaret Hamilton', 1), (2, 'Margaret Hamilton', 2)",
    ])
    .await
    else {
        return;
    };
    let r = Rig::start(Opts {
        database: format!(
            "kind = \"mysql\"\nurl_env = \"{DB_URL_ENV}\"\ntables = [\"bookings\"]\nwritable_tables = [\"bookings\"]\ncolumns = {{ bookings = [\"id\", \"slot\"] }}"
        ),
        env: vec![(DB_URL_ENV.into(), url)],
        ..Opts::sqlite(Path::new("unused"))
    })
    .await;
    r.a.push([
        sql_execute("UPDATE bookings SET slot = 2 WHERE id = 1"),
        Reply::Text("That slot is taken.".into()),
    ]);
    let (_, out) = r.ask("ops/m2", "move booking 1 to slot 2").await;
    let told =
        r.a.requests()
            .last()
            .map(|q| q.body.to_string())
            .unwrap_or_default();
    let history = r.history("ops/m2").await.to_string();
    drop(r);
    my_drop(pool, &dbname).await;
    assert_eq!(out["result"], "answered", "{out}");
    assert!(
        !told.contains("Margaret Hamilton"),
        "the model read the hidden column `guest`: {told}"
    );
    assert!(!history.contains("Margaret Hamilton"), "journalled too");
}

/// `redact_preview` masks values but never object keys. PostgreSQL's `to_jsonb` nests a JSON
/// column's object in the preview row, so a key that is personal data is stored, journalled
/// (agent owner's `/history`), shown and sent to the webhook raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_a_preview_masks_personal_data_in_json_object_keys() {
    let Some((pool, schema)) = pg_schema(&[
        "CREATE TABLE customers (id BIGINT PRIMARY KEY, tier TEXT, prefs JSONB)",
        r#"INSERT INTO customers VALUES (1, 'basic', '{"jane.doe@example.com": "newsletter"}')"#,
    ])
    .await
    else {
        return;
    };
    let r = Rig::start(Opts {
        database: format!(
            "kind = \"postgres\"\nurl_env = \"{DB_URL_ENV}\"\ntables = [\"customers\"]\nwritable_tables = [\"customers\"]"
        ),
        env: vec![(DB_URL_ENV.into(), pg_url(&pg_server(), &schema))],
        ..Opts::sqlite(Path::new("unused"))
    })
    .await;
    r.a.push([sql_execute(
        "UPDATE customers SET tier = 'gold' WHERE id = 1",
    )]);
    let (_, out) = r.ask("ops/j1", "make customer 1 gold").await;
    let id = awaited_approval(&out);
    let preview = r.approval(&id).await["preview"].clone();
    let history = r.history("ops/j1").await.to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hooks: Vec<String> = r
        .hook
        .requests()
        .into_iter()
        .map(|q| q.body.to_string())
        .collect();
    let stored = r.files_holding(EMAIL);
    drop(r);
    pg_drop(pool, &schema).await;

    assert!(preview["before"].is_array(), "{preview}");
    let mut leaks = Vec::new();
    if preview.to_string().contains(EMAIL) {
        leaks.push(format!("GET /v1/approvals/{{id}} preview: {preview}"));
    }
    if history.contains(EMAIL) {
        leaks.push("the agent owner's /history".to_owned());
    }
    if hooks.iter().any(|h| h.contains(EMAIL)) {
        leaks.push("the approval_requested webhook".to_owned());
    }
    for f in stored {
        leaks.push(format!("file: {}", f.display()));
    }
    assert!(leaks.is_empty(), "a raw email (a JSON key) in: {leaks:#?}");
}

/// `redact_preview` keeps the value of any key named `kind`, `rows_affected` or
/// `row_ids_sha256` at any depth (meant for Warden's own top-level fields): a company column
/// of that name is never masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_a_preview_masks_a_column_named_like_a_preview_field() {
    let work = tempfile::tempdir().unwrap();
    let db = sqlite_db(
        work.path(),
        "contacts.db",
        "CREATE TABLE contacts (id INTEGER PRIMARY KEY, kind TEXT, status TEXT);
         INSERT INTO contacts VALUES (1, 'jane.doe@example.com', 'new');",
    )
    .await;
    let r = Rig::start(Opts {
        database: format!(
            "kind = \"sqlite\"\npath = \"{}\"\ntables = [\"contacts\"]\nwritable_tables = [\"contacts\"]",
            db.display()
        ),
        ..Opts::sqlite(&db)
    })
    .await;
    r.a.push([sql_execute(
        "UPDATE contacts SET status = 'done' WHERE id = 1",
    )]);
    let (_, out) = r.ask("ops/k1", "close contact 1").await;
    let id = awaited_approval(&out);
    let preview = r.approval(&id).await["preview"].clone();
    let history = r.history("ops/k1").await.to_string();
    assert_eq!(preview["rows_affected"], 1, "{preview}");
    let mut leaks = Vec::new();
    if preview.to_string().contains(EMAIL) {
        leaks.push(format!("GET /v1/approvals/{{id}} preview: {preview}"));
    }
    if history.contains(EMAIL) {
        leaks.push("the agent owner's /history".to_owned());
    }
    for f in r.files_holding(EMAIL) {
        leaks.push(format!("file: {}", f.display()));
    }
    assert!(
        leaks.is_empty(),
        "a column named `kind`, raw, in: {leaks:#?}"
    );
}

/// The preview of a write on a table whose primary key the read policy hides keeps
/// `row_ids_sha256`, an unsalted SHA-256 of the hidden key values, in the journal the agent
/// owner reads (`/history`): a guessed value (a customer's email) is confirmed offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_a_preview_does_not_let_the_agent_owner_confirm_a_hidden_key() {
    use sha2::Digest;
    let work = tempfile::tempdir().unwrap();
    let db = sqlite_db(
        work.path(),
        "people.db",
        "CREATE TABLE people (email TEXT PRIMARY KEY, name TEXT, city TEXT) WITHOUT ROWID;
         INSERT INTO people VALUES ('jane.doe@example.com', 'Jane', 'Oslo');",
    )
    .await;
    let r = Rig::start(Opts {
        database: format!(
            "kind = \"sqlite\"\npath = \"{}\"\ntables = [\"people\"]\nwritable_tables = [\"people\"]\ncolumns = {{ people = [\"name\", \"city\"] }}",
            db.display()
        ),
        ..Opts::sqlite(&db)
    })
    .await;
    r.a.push([sql_execute(
        "UPDATE people SET city = 'Paris' WHERE name = 'Jane'",
    )]);
    let (_, out) = r.ask("ops/p1", "Jane moved to Paris").await;
    let id = awaited_approval(&out);
    let history = r.history("ops/p1").await;
    let step = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "approval")
        .cloned()
        .unwrap();
    let preview = &step["data"]["preview"];
    assert!(!preview.to_string().contains(EMAIL), "{preview}");
    assert!(
        preview.get("row_ids").is_none(),
        "hidden keys are not shown: {preview}"
    );
    let guess = hex::encode(sha2::Sha256::digest(
        json!([[EMAIL]]).to_string().as_bytes(),
    ));
    assert_ne!(
        preview["row_ids_sha256"].as_str(),
        Some(guess.as_str()),
        "the owner's /history confirms the hidden email {EMAIL} of approval {id}: {preview}"
    );
}

/// An HTTP write whose request reached the target but whose answer came after `http.timeout`
/// is recorded `failed` (the model is told "timed out" and the state machine says nothing
/// changed), though the target acted on it: its outcome is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_an_http_write_that_timed_out_after_it_was_sent_is_not_recorded_failed() {
    let target = Raw::start(Duration::from_millis(2500), "{\"ok\":true}").await;
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let r = Rig::start(Opts {
        http_timeout: "1s",
        ..Opts::sqlite(&db)
    })
    .await;
    r.a.push([
        http_call("POST", &target.url("/refund"), json!({"order": 7})),
        Reply::Text("The refund failed; I will try again.".into()),
    ]);
    let (_, out) = r.ask("ops/t1", "refund order 7").await;
    let id = awaited_approval(&out);
    let (st, body) = r.decide(&id, Decision::Approve).await;
    assert_eq!(st, 200, "{body}");
    let (state, _) = r.settled(&id, "ops/t1").await;
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(target.hits(), 1, "the refund reached the target");
    assert_ne!(
        state,
        "failed",
        "a write sent but unanswered is recorded as failed (nothing changed): {}",
        r.approval(&id).await
    );
    assert_eq!(state, "outcome_unknown");
}

/// A SQL write whose COMMIT reached PostgreSQL but whose answer was lost (the connection
/// dropped) is recorded `failed`, though it committed: the approval says nothing changed while
/// the row changed and the idempotency table says `applied`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_a_sql_write_whose_commit_answer_was_lost_is_not_recorded_failed() {
    let Some((pool, schema)) = pg_schema(&[
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT, total NUMERIC(10,2))",
        "CREATE TABLE customers (id BIGINT PRIMARY KEY, name TEXT)",
        "INSERT INTO orders VALUES (1, 1, 10.00), (2, 1, 20.50)",
    ])
    .await
    else {
        return;
    };
    let proxy = CommitCutter::start("127.0.0.1:5432").await;
    let server = pg_server();
    let via_proxy = server.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port), 1);
    let sep = if via_proxy.contains('?') { '&' } else { '?' };
    let url = pg_url(&format!("{via_proxy}{sep}sslmode=disable"), &schema);
    let r = Rig::start(Opts {
        database: format!(
            "kind = \"postgres\"\nurl_env = \"{DB_URL_ENV}\"\ntables = [\"customers\", \"orders\"]\nwritable_tables = [\"orders\"]"
        ),
        env: vec![(DB_URL_ENV.into(), url)],
        ..Opts::sqlite(Path::new("unused"))
    })
    .await;
    r.a.push([
        sql_execute("UPDATE orders SET total = 99 WHERE id = 1"),
        Reply::Text("It failed, shall I try again?".into()),
    ]);
    let (_, out) = r.ask("ops/c1", "set order 1 to 99").await;
    let id = awaited_approval(&out);
    proxy.armed.store(true, Ordering::SeqCst);
    let (st, body) = r.decide(&id, Decision::Approve).await;
    assert_eq!(st, 200, "{body}");
    let (state, _) = r.settled(&id, "ops/c1").await;
    let shown = r.approval(&id).await;
    let total: String = sqlx::query_scalar("SELECT total::text FROM orders WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    let recorded: Option<String> =
        sqlx::query_scalar("SELECT outcome FROM warden_idempotency WHERE key = $1")
            .bind(format!("warden:{id}"))
            .fetch_optional(&pool)
            .await
            .unwrap_or(None);
    let cuts = proxy.cuts.load(Ordering::SeqCst);
    drop(r);
    pg_drop(pool, &schema).await;

    assert_eq!(cuts, 1, "the proxy cut one COMMIT answer");
    assert_eq!(total, "99.00", "the write committed");
    assert_eq!(recorded.as_deref(), Some("applied"));
    assert_ne!(
        state, "failed",
        "a committed write is recorded as failed (nothing changed): {}",
        shown["result"]
    );
}

/// A TCP proxy in front of PostgreSQL that, once armed, forwards the first `COMMIT` of a
/// connection that touched the idempotency table and then drops the connection before the
/// server's answer reaches the client.
struct CommitCutter {
    port: u16,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
}

impl CommitCutter {
    async fn start(upstream: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (a, c) = (armed.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let stop = Arc::new(AtomicBool::new(false));
                let (armed, cuts, stop2) = (a.clone(), c.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut saw_key = false;
                    let mut buf = vec![0u8; 65536];
                    loop {
                        let Ok(n) = cr.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        let chunk = &buf[..n];
                        if find(chunk, b"warden_idempotency").is_some() {
                            saw_key = true;
                        }
                        let commit = find(chunk, b"COMMIT\0").is_some();
                        if commit
                            && saw_key
                            && armed
                                .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
                                .is_ok()
                        {
                            stop.store(true, Ordering::SeqCst);
                            let _ = sw.write_all(chunk).await;
                            cuts.fetch_add(1, Ordering::SeqCst);
                            // Time for the server to commit before it sees the end.
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            return;
                        }
                        if sw.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        let Ok(n) = sr.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 || stop2.load(Ordering::SeqCst) {
                            return;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, armed, cuts }
    }
}

/// Two signed decisions (approve and deny) on one request, at the same moment: one is made,
/// but both are written to the audit log (each is audited before its conditional update,
/// and the loser's record is never withdrawn), so the log says the request was approved
/// and denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_racing_decisions_leave_only_the_decision_made_in_the_audit_log() {
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let r = Rig::start(Opts::sqlite(&db)).await;
    let mut phantom = Vec::new();
    for round in 0..5 {
        let agent = format!("ops/d{round}");
        r.a.clear();
        r.a.push([
            sql_execute("INSERT INTO orders (customer_id, total) VALUES (2, 1.0)"),
            Reply::Text("ok".into()),
        ]);
        let (_, out) = r.ask(&agent, "add an order").await;
        let id = awaited_approval(&out);
        let a = r.approval(&id).await;
        let key = r.alice();
        let mut posts = Vec::new();
        for decision in [Decision::Approve, Decision::Deny] {
            let sig = message(&a, decision).sign(&key);
            let req = r
                .http
                .post(format!("{}/v1/approvals/{id}/decision", r.url()))
                .bearer_auth(&r.admin)
                .json(
                    &json!({"approver": "alice", "decision": decision.as_str(), "signature": sig}),
                );
            posts.push(tokio::spawn(async move {
                req.send().await.unwrap().status().as_u16()
            }));
        }
        let mut codes = Vec::new();
        for p in posts {
            codes.push(p.await.unwrap());
        }
        let (state, _) = r.settled(&id, &agent).await;
        let audit = r.audit();
        let states: Vec<&str> = ["approved", "denied"]
            .into_iter()
            .filter(|s| {
                audit
                    .lines()
                    .any(|l| l.contains(&id) && l.contains(&format!("\"state\":\"{s}\"")))
            })
            .collect();
        if states.len() == 2 {
            phantom.push(format!(
                "{id}: responses {codes:?}, final state {state}, audit says both approved and denied"
            ));
        }
    }
    assert!(phantom.is_empty(), "{phantom:#?}");
}

/// A reset that reads a write as waiting while a decision approves it: its conditional
/// withdrawal misses (the approval moved), is not retried, and the approval stays
/// `approved` for a task that is over (reset "withdraws its pending/approved writes").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_a_reset_racing_a_decision_never_leaves_an_approved_write_behind() {
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let r = Rig::start(Opts::sqlite(&db)).await;
    let mut stranded = Vec::new();
    for round in 0..10u64 {
        let agent = format!("ops/r{round}");
        r.a.clear();
        r.a.push([
            sql_execute("UPDATE orders SET total = 7 WHERE id = 3"),
            Reply::Text("ok".into()),
        ]);
        let (_, out) = r.ask(&agent, "set order 3 to 7").await;
        let id = awaited_approval(&out);
        let a = r.approval(&id).await;
        let sig = message(&a, Decision::Approve).sign(&r.alice());
        let decide = r
            .http
            .post(format!("{}/v1/approvals/{id}/decision", r.url()))
            .bearer_auth(&r.admin)
            .json(&json!({"approver": "alice", "decision": "approve", "signature": sig}));
        let reset = r
            .http
            .post(format!("{}/v1/agents/{agent}/reset", r.url()))
            .bearer_auth(&r.key)
            .json(&json!({}));
        let d = tokio::spawn(async move { decide.send().await.unwrap().status().as_u16() });
        tokio::time::sleep(Duration::from_micros(500 * (round % 5))).await;
        let x = tokio::spawn(async move { reset.send().await.unwrap().status().as_u16() });
        let codes = (d.await.unwrap(), x.await.unwrap());
        tokio::time::sleep(Duration::from_millis(600)).await;
        let state = r.approval(&id).await["state"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        let status = r.get(&format!("/v1/agents/{agent}"), &r.key).await["status"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        if state == "approved" && status != "awaiting_approval" {
            let audit = r.audit();
            let withdrawn_audited = audit
                .lines()
                .any(|l| l.contains(&id) && l.contains("\"state\":\"withdrawn\""));
            stranded.push(format!(
                "{id}: (decision, reset) = {codes:?} -> approved, agent {status}; audit has a `withdrawn` record: {withdrawn_audited}"
            ));
        }
    }
    assert!(stranded.is_empty(), "{stranded:#?}");
}

/// A request that expires without a decision: an approver's late decision marks it expired,
/// but nothing lets the agent go on. It stays `awaiting_approval`, and every new message is
/// refused 409 `approval_pending` ("decide it"), which can no longer be done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_an_expired_request_does_not_leave_its_agent_waiting_forever() {
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let r = Rig::start(Opts {
        ttl: "1s",
        ..Opts::sqlite(&db)
    })
    .await;
    r.a.push([
        sql_execute("UPDATE orders SET total = 8 WHERE id = 2"),
        Reply::Text("The request expired.".into()),
    ]);
    let (_, out) = r.ask("ops/x1", "set order 2 to 8").await;
    let id = awaited_approval(&out);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (st, body) = r.decide(&id, Decision::Approve).await;
    assert_eq!(st, 409, "{body}");
    assert_eq!(r.approval(&id).await["state"], "expired");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = r.get("/v1/agents/ops/x1", &r.key).await["status"].clone();
    r.a.push([Reply::Text("hello".into())]);
    let (code, body) = r.ask("ops/x1", "anything new?").await;
    assert_ne!(
        status, "awaiting_approval",
        "the agent still waits on an expired request"
    );
    assert_ne!(code, 409, "a new message is refused: {body}");
}

/// Integers beyond 2^53 are refused in write arguments, but only when spelled as integers:
/// `9007199254740993.0` (or `9.007199254740993e15`) is taken, signed and sent as
/// 9007199254740992, though the model asked for ...993.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_integers_beyond_2_53_written_as_floats_are_refused_too() {
    let target = Raw::start(Duration::ZERO, "{}").await;
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let r = Rig::start(Opts::sqlite(&db)).await;
    let mut accepted = Vec::new();
    for (i, n) in ["9007199254740993.0", "9.007199254740993e15", "1e400"]
        .into_iter()
        .enumerate()
    {
        let args = format!(
            r#"{{"method":"POST","url":"{}","body":{{"order_id":{n}}}}}"#,
            target.url("/orders")
        );
        r.a.clear();
        r.a.push([
            Reply::ToolCall {
                name: "http_request".into(),
                arguments: args,
            },
            Reply::Text("I will send it as a string.".into()),
        ]);
        let (_, out) = r
            .ask(&format!("ops/f{i}"), "post order 9007199254740993")
            .await;
        if out["result"] == "awaiting_approval" {
            let id = awaited_approval(&out);
            let a = r.approval(&id).await;
            // Approved, it sends the rounded number.
            let (st, _) = r.decide(&id, Decision::Approve).await;
            let _ = r.settled(&id, &format!("ops/f{i}")).await;
            let sent = target
                .bodies
                .lock()
                .unwrap()
                .last()
                .cloned()
                .unwrap_or_default();
            accepted.push(format!(
                "{n} -> signed {} -> decision {st} -> sent {sent}",
                a["arguments_canonical"]
            ));
        } else {
            let told = r.a.requests().last().unwrap().body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .rev()
                .find(|m| m["role"] == "tool")
                .map(|m| m["content"].to_string())
                .unwrap_or_default();
            eprintln!("{n}: {} ({told})", out["result"]);
        }
    }
    assert!(
        accepted.is_empty(),
        "rounded and put up for signature: {accepted:?}"
    );
}

/// A read is audited only after it ran: with the log failing meanwhile, an `http_request`
/// GET (which may carry restored values in its URL to a third party) reaches its host and is
/// never recorded; on resume it is sent again and recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_every_read_the_target_received_has_its_audit_record() {
    let target = Raw::start(Duration::from_millis(2500), "{\"rows\":[]}").await;
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let mut r = Rig::start(Opts::sqlite(&db)).await;
    let get = || http_call("GET", &target.url("/lookup?customer=7"), Value::Null);
    r.a.push([get()]);
    let http = r.http.clone();
    let url = format!("{}/v1/agents/ops/g1/messages", r.url());
    let key = r.key.clone();
    let asked = tokio::spawn(async move {
        let resp = http
            .post(url)
            .bearer_auth(key)
            .json(&json!({"content": "look up customer 7"}))
            .send()
            .await
            .unwrap();
        resp.status().as_u16()
    });
    r.break_log().await;
    let status = asked.await.unwrap();
    assert_eq!(status, 503, "the log failed during the read");
    assert_eq!(target.hits(), 1, "the GET was sent");
    r.mend_log_and_restart();
    r.a.clear();
    r.a.push([Reply::Text("Found nothing.".into())]);
    let resumed = r
        .http
        .post(format!("{}/v1/agents/ops/g1/resume", r.url()))
        .bearer_auth(&r.key)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let audit = r.audit();
    // Each request is preceded by a durable `started` record (its result follows it).
    let recorded = audit
        .lines()
        .filter(|l| {
            l.contains("\"kind\":\"tool_call\"")
                && l.contains("http_request")
                && l.contains("\"outcome\":\"started\"")
        })
        .count();
    assert_eq!(
        recorded,
        target.hits(),
        "requests the target got vs tool_call records (resume: {resumed})"
    );
}

/// Two tool calls of one model step with the same call id: the approval id derives from the
/// call id, so the second write finds the first one's approval, is answered "done" with its
/// result, and its `tool_call` audit record (its own arguments' hash) says `ok`: a write that
/// was never proposed, approved or run is reported and audited as done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_a_write_sharing_a_call_id_is_not_reported_done_without_running() {
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let model = Raw::start(Duration::ZERO, &completion_text("Both done.")).await;
    let first =
        json!({"database": "shop", "sql": "UPDATE orders SET total = 1 WHERE id = 1"}).to_string();
    let second = json!({"database": "shop", "sql": "DELETE FROM orders WHERE id = 3"}).to_string();
    model.push(completion_with_calls(&[
        ("call_same", "sql_execute", &first),
        ("call_same", "sql_execute", &second),
    ]));
    let r = Rig::start(Opts {
        model: Some(format!("http://127.0.0.1:{}/v1", model.port)),
        ..Opts::sqlite(&db)
    })
    .await;
    let (_, out) = r.ask("ops/s1", "fix order 1 and drop order 3").await;
    let id = awaited_approval(&out);
    let (st, body) = r.decide(&id, Decision::Approve).await;
    assert_eq!(st, 200, "{body}");
    let (state, status) = r.settled(&id, "ops/s1").await;
    assert_eq!((state.as_str(), status.as_str()), ("succeeded", "idle"));
    let pool =
        sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&db))
            .await
            .unwrap();
    let order3: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE id = 3")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    let history = r.history("ops/s1").await;
    let second_step = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "tool")
        .find(|s| s["data"]["arguments"] == second.as_str())
        .cloned();
    assert_eq!(order3, 1, "the DELETE never ran (and was never approved)");
    if let Some(step) = second_step {
        assert_ne!(
            step["data"]["outcome"], "ok",
            "the DELETE is journalled (and audited) as done: {step}"
        );
    }
}

/// An agent's model call cut by the step timeout leaves no `model_call` audit record (and no
/// usage row: its budget reservation is released as unspent), though the provider got the
/// prompt and may have generated and billed the whole answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_a_model_call_cut_by_the_step_timeout_is_still_recorded() {
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let r = Rig::start(Opts {
        agent_extra: "step_timeout = \"1s\"",
        ..Opts::sqlite(&db)
    })
    .await;
    r.a.push([Reply::Delay(
        Duration::from_millis(1800),
        Box::new(Reply::Text("a long answer".into())),
    )]);
    let (_, out) = r.ask("ops/to1", "write me an essay").await;
    assert_eq!(out["result"], "timed_out", "{out}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A call that answers in time, for comparison.
    r.a.push([Reply::Text("short".into())]);
    let (_, out) = r.ask("ops/to1", "say hi").await;
    assert_eq!(out["result"], "answered", "{out}");
    assert_eq!(r.a.hits(), 2, "the provider was called twice");
    let audit = r.audit();
    let calls = audit
        .lines()
        .filter(|l| l.contains("\"kind\":\"model_call\"") && l.contains("agent.chat"))
        .count();
    assert_eq!(
        calls, 2,
        "model calls the provider got vs model_call records"
    );
}

/// The owner's key is revoked while its agent's write waits: a decision then finds the
/// request withdrawn, and the revoked key's task does not go on (it used to, "as its owner").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_a_revoked_keys_agent_does_not_go_on_after_a_decision() {
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let r = Rig::start(Opts::sqlite(&db)).await;
    r.a.push([
        sql_execute("UPDATE orders SET total = 4 WHERE id = 1"),
        Reply::Text("done for a revoked key".into()),
    ]);
    let (_, out) = r.ask("ops/rv", "set order 1 to 4").await;
    let id = awaited_approval(&out);
    let (code, _, err) = r.w().cli(&["keys", "revoke", "ops-app"]);
    assert_eq!(code, 0, "{err}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let hits_before = r.a.hits();
    // The decision finds the request withdrawn (its task could never go on), not approved.
    let (st, body) = r.decide(&id, Decision::Approve).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (409, Some("approval_not_pending")),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let state = r.approval(&id).await["state"].clone();
    assert_eq!(state, "withdrawn");
    assert_eq!(
        r.a.hits(),
        hits_before,
        "the revoked key's agent called the model again (approval now {state})"
    );
}

// =============================================================================================
// Tried and held (regression tests)
// =============================================================================================

/// A read-only agent: case variants and unknown names of write tools, arguments that are not
/// an object, and an http_request POST in every spelling are all refused; nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_held_a_read_only_agent_gets_no_write_by_any_spelling() {
    let target = Raw::start(Duration::ZERO, "{}").await;
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let r = Rig::start(Opts::sqlite(&db)).await;
    let sql = json!({"database": "shop", "sql": "DELETE FROM orders"}).to_string();
    let calls: Vec<Reply> = vec![
        Reply::ToolCall {
            name: "SQL_EXECUTE".into(),
            arguments: sql.clone(),
        },
        Reply::ToolCall {
            name: "sql_execute".into(),
            arguments: sql.clone(),
        },
        Reply::ToolCall {
            name: "Http_Request".into(),
            arguments: json!({"method": "POST", "url": target.url("/x")}).to_string(),
        },
        http_call("post", &target.url("/x"), json!({"a": 1})),
        http_call("PoSt", &target.url("/x"), json!({"a": 1})),
        http_call("GET ", &target.url("/x"), Value::Null),
        http_call("PURGE", &target.url("/x"), Value::Null),
        Reply::ToolCall {
            name: "http_request".into(),
            arguments: json!(["POST", target.url("/x")]).to_string(),
        },
        Reply::ToolCall {
            name: "http_request".into(),
            arguments: "\"POST\"".into(),
        },
    ];
    for (i, c) in calls.into_iter().enumerate() {
        r.a.push([c, Reply::Text("no".into())]);
        let (code, out) = r.ask(&format!("viewer/v{i}"), "try").await;
        assert_eq!(
            (code, out["result"].as_str()),
            (200, Some("answered")),
            "{i}: {out}"
        );
    }
    let list = r.get("/v1/approvals?limit=500", &r.admin).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "{list}");
    assert_eq!(target.hits(), 0, "nothing reached the target");
}

/// A message queued while a task runs is refused once that task waits for an approval; the
/// live preview (admin) shows real values; a non-admin key cannot reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_held_a_queued_message_is_refused_when_the_task_ends_waiting() {
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let r = Rig::start(Opts::sqlite(&db)).await;
    r.a.push([Reply::Delay(
        Duration::from_millis(800),
        Box::new(sql_execute("UPDATE orders SET total = 5 WHERE id = 1")),
    )]);
    let first = {
        let req = r
            .http
            .post(format!("{}/v1/agents/ops/q1/messages", r.url()))
            .bearer_auth(&r.key)
            .json(&json!({"content": "set order 1 to 5"}));
        tokio::spawn(async move { req.send().await.unwrap().json::<Value>().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    r.a.push([Reply::Text("queued task ran".into())]);
    let (code, body) = r.ask("ops/q1", "and something else").await;
    let out = first.await.unwrap();
    assert_eq!(out["result"], "awaiting_approval", "{out}");
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error"]["code"], "approval_pending");
    let id = awaited_approval(&out);
    let live = r
        .get(&format!("/v1/approvals/{id}/preview"), &r.admin)
        .await;
    assert_eq!(live["matches_stored_preview"], true, "{live}");
    let r2 = r
        .http
        .get(format!("{}/v1/approvals/{id}/preview", r.url()))
        .bearer_auth(&r.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r2.status(), 403);
}

/// The admin-only live preview recomputes (runs the write in a rolled-back transaction, with
/// its locks and non-transactional side effects) for requests long decided too; it should
/// serve only requests that still wait for a decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_the_live_preview_serves_only_requests_that_wait() {
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let r = Rig::start(Opts::sqlite(&db)).await;
    r.a.push([
        sql_execute("UPDATE orders SET total = 6 WHERE id = 2"),
        Reply::Text("denied".into()),
    ]);
    let (_, out) = r.ask("ops/lp", "set order 2 to 6").await;
    let id = awaited_approval(&out);
    let (st, _) = r.decide(&id, Decision::Deny).await;
    assert_eq!(st, 200);
    let _ = r.settled(&id, "ops/lp").await;
    let resp = r
        .http
        .get(format!("{}/v1/approvals/{id}/preview", r.url()))
        .bearer_auth(&r.admin)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_ne!(
        status, 200,
        "a denied write is previewed (run and rolled back) again on request: {body}"
    );
}

/// Resolutions: an approver without the tool, a resolution signed for another approval, a
/// decision signature offered as a resolution, and a replay after the outcome was settled,
/// are all refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt12_held_resolutions_bind_their_approval_and_need_the_right_approver() {
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let r = Rig::start(Opts::sqlite(&db)).await;
    // Not outcome_unknown: refused whatever the signature.
    r.a.push([sql_execute("UPDATE orders SET total = 3 WHERE id = 1")]);
    let (_, out) = r.ask("ops/z1", "set order 1 to 3").await;
    let id = awaited_approval(&out);
    let a = r.approval(&id).await;
    let res = warden_tools::approval::ResolutionMessage {
        approval_id: id.clone(),
        agent_id: a["agent"].as_str().unwrap().into(),
        tool: a["tool"].as_str().unwrap().into(),
        arguments_sha256: a["arguments_sha256"].as_str().unwrap().into(),
        succeeded: true,
        note: "checked".into(),
    };
    let post = |sig: String| {
        let req = r
            .http
            .post(format!("{}/v1/approvals/{id}/resolve", r.url()))
            .bearer_auth(&r.admin)
            .json(&json!({"approver": "alice", "outcome": "succeeded", "note": "checked", "signature": sig}));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        post(res.sign(&r.alice())).await,
        409,
        "not unknown: nothing to resolve"
    );
    assert_eq!(
        post(message(&a, Decision::Approve).sign(&r.alice())).await,
        409
    );
    assert_eq!(r.approval(&id).await["state"], "awaiting_approval");
}
