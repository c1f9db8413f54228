//! The Validated Tool Pattern's write half through `warden serve` and the CLI: a model asks
//! for a write, the approval waits with its preview, `warden approve` signs it, the write runs
//! once and the agent continues; and every kind of bad decision is refused.

use crate::{KEYS_ENV, bin, two_provider_config};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use warden_testkit::{MockUpstream, Reply, WardenProcess, run_cli};
use warden_tools::approval::{Decision, DecisionMessage, arguments_sha256, parse_private_key};

pub(crate) fn keygen(dir: &Path, name: &str) -> String {
    let (code, out, err) = run_cli(
        &bin(),
        dir,
        &["approvers", "keygen", name, "--dir", dir.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("mode 0600"), "{err}");
    out.trim().to_owned()
}

async fn orders(db: &Path) -> Vec<(i64, f64)> {
    let pool =
        sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(db))
            .await
            .unwrap();
    let rows: Vec<(i64, f64)> = sqlx::query_as("SELECT customer_id, total FROM orders ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows
}

struct Setup {
    a: MockUpstream,
    _b: MockUpstream,
    hook: MockUpstream,
    w: WardenProcess,
    key: String,
    admin: String,
    keys: tempfile::TempDir,
    db: std::path::PathBuf,
    http: reqwest::Client,
    _work: tempfile::TempDir,
}

impl Setup {
    async fn start(ttl: &str) -> Self {
        let a = MockUpstream::start().await;
        let b = MockUpstream::start().await;
        let hook = MockUpstream::start().await;
        let work = tempfile::tempdir().unwrap();
        let db = crate::agents::shop_db(work.path()).await;
        let keys = tempfile::tempdir().unwrap();
        let alice = keygen(keys.path(), "alice");
        let bob = keygen(keys.path(), "bob");
        crate::allow_local_url(&hook.base_url());
        let local_hosts = crate::local_http_hosts();
        let extra = format!(
            r#"
[databases.shop]
kind = "sqlite"
path = "{db}"
tables = ["customers", "orders"]
writable_tables = ["orders"]
[http]
allowed_hosts = {local_hosts}
allow_private = ["localhost"]
[agents.ops]
system_prompt = "You keep the orders in order."
model = "fast"
permissions = "read-write"
tools = ["sql_query", "sql_execute", "http_request"]
databases = ["shop"]
approval_ttl = "{ttl}"
webhook_url_env = "OPS_HOOK"
[agents.viewer]
system_prompt = "You only look."
model = "fast"
tools = ["sql_query", "http_request"]
databases = ["shop"]
[approvers.alice]
public_key = "{alice}"
tools = ["sql_execute"]
[approvers.bob]
public_key = "{bob}"
tools = ["http_request"]
"#,
            db = db.display()
        );
        let hook_url = format!("{}/chat/completions", hook.base_url());
        let mut env = KEYS_ENV.to_vec();
        env.push(("OPS_HOOK", &hook_url));
        let w = WardenProcess::start(&bin(), &two_provider_config(&a, &b, &extra), &env);
        let key = w.create_key("ops-app", &[]);
        let admin = w.create_key("ops-admin", &["--admin"]);
        Self {
            a,
            _b: b,
            hook,
            w,
            key,
            admin,
            keys,
            db,
            http: reqwest::Client::new(),
            _work: work,
        }
    }

    async fn ask(&self, name: &str, content: &str) -> Value {
        self.http
            .post(format!("{}/v1/agents/ops/{name}/messages", self.w.url))
            .bearer_auth(&self.key)
            .json(&json!({"content": content}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn approval(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/v1/approvals/{id}", self.w.url))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Posts a decision signed with `key_file` over `message`.
    async fn post_decision(
        &self,
        id: &str,
        approver: &str,
        key_file: &str,
        message: &DecisionMessage,
    ) -> (u16, Value) {
        let key =
            parse_private_key(&std::fs::read_to_string(self.keys.path().join(key_file)).unwrap())
                .unwrap();
        let r = self
            .http
            .post(format!("{}/v1/approvals/{id}/decision", self.w.url))
            .bearer_auth(&self.admin)
            .json(&json!({"approver": approver, "decision": message.decision.as_str(), "signature": message.sign(&key)}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--url", &self.w.url, "--api-key", &self.admin]);
        let key_path = self.keys.path().to_str().unwrap().to_owned();
        let all: Vec<String> = all.iter().map(|a| a.replace("KEYS", &key_path)).collect();
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        run_cli(&bin(), &self.w.data_dir, &refs)
    }

    async fn wait_idle(&self, name: &str) -> Value {
        for _ in 0..100 {
            let s: Value = self
                .http
                .get(format!("{}/v1/agents/ops/{name}", self.w.url))
                .bearer_auth(&self.key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if s["status"] != "awaiting_approval" && s["status"] != "running" {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("agent {name} never finished");
    }
}

/// The approval id a task waits on, from its reply's reason ("approval ID waits for a decision").
pub(crate) fn awaited_approval(out: &Value) -> String {
    out["reason"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

pub(crate) fn message(a: &Value, decision: Decision) -> DecisionMessage {
    DecisionMessage {
        approval_id: a["id"].as_str().unwrap().into(),
        agent_id: a["agent"].as_str().unwrap().into(),
        tool: a["tool"].as_str().unwrap().into(),
        arguments_sha256: a["arguments_sha256"].as_str().unwrap().into(),
        decision,
        expires_at_ms: a["expires_at_ms"].as_i64().unwrap(),
    }
}

/// Waits until approval `id` is settled and agent `agent` (`definition/name`) is at rest;
/// returns both states.
pub(crate) async fn settled(
    http: &reqwest::Client,
    url: &str,
    admin: &str,
    key: &str,
    id: &str,
    agent: &str,
) -> (String, String) {
    let get = |path: String, bearer: &str| {
        let req = http.get(format!("{url}{path}")).bearer_auth(bearer);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let mut last = (String::new(), String::new());
    for _ in 0..200 {
        let a = get(format!("/v1/approvals/{id}"), admin).await;
        let agent = get(format!("/v1/agents/{agent}"), key).await;
        last = (
            a["state"]
                .as_str()
                .map_or_else(|| a.to_string(), str::to_owned),
            agent["status"].as_str().unwrap_or("?").to_owned(),
        );
        let settled = !matches!(
            last.0.as_str(),
            "approved" | "dispatched" | "awaiting_approval"
        );
        if settled && last.1 == "idle" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

fn write(sql: &str) -> Reply {
    Reply::ToolCall {
        name: "sql_execute".into(),
        arguments: json!({"database": "shop", "sql": sql}).to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_for_a_signed_approval_runs_once_and_the_agent_continues() {
    let s = Setup::start("1h").await;
    let before = orders(&s.db).await;
    s.a.push([
        write("INSERT INTO orders (customer_id, total) VALUES (2, 42.0)"),
        Reply::Text("The order is recorded.".into()),
    ]);
    let out = s.ask("olga", "Record a 42.0 order for customer 2").await;
    assert_eq!(out["result"], "awaiting_approval", "{out}");
    assert_eq!(out["status"], "awaiting_approval");
    let id = awaited_approval(&out);
    // Pending, with its preview; nothing written yet.
    let a = s.approval(&id).await;
    assert_eq!(a["state"], "awaiting_approval", "{a}");
    assert_eq!(a["preview"]["rows_affected"], 1);
    assert_eq!(a["preview"]["kind"], "insert");
    assert_eq!(a["preview"]["after"][0]["total"], 42.0);
    assert_eq!(orders(&s.db).await, before, "the preview was rolled back");
    let (code, out, _) = s.cli(&["approvals", "list", "--state", "awaiting_approval"]);
    assert_eq!(code, 0);
    assert!(out.contains(&id), "{out}");
    // The webhook heard of it, with the preview and a line for chat tools.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notes: Vec<Value> = s.hook.requests().into_iter().map(|r| r.body).collect();
    let note = notes
        .iter()
        .find(|n| n["event"] == "approval_requested")
        .expect("notified");
    assert_eq!(note["approval_id"], id.as_str());
    assert_eq!(note["preview"]["rows_affected"], 1);
    assert!(
        note["text"].as_str().unwrap().contains("warden approve"),
        "{note}"
    );

    // Bad decisions are refused, and change nothing.
    let m = message(&a, Decision::Approve);
    let (st, body) = s.post_decision(&id, "alice", "bob.key", &m).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (400, Some("bad_signature")),
        "wrong key: {body}"
    );
    let (st, body) = s.post_decision(&id, "mallory", "alice.key", &m).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (403, Some("approver_forbidden")),
        "unknown approver: {body}"
    );
    let (st, body) = s.post_decision(&id, "bob", "bob.key", &m).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (403, Some("approver_forbidden")),
        "tool not allowed: {body}"
    );
    let tampered = DecisionMessage {
        arguments_sha256: arguments_sha256(
            &json!({"database": "shop", "sql": "DELETE FROM orders WHERE id > 0"}),
        ),
        ..m.clone()
    };
    let (st, _) = s.post_decision(&id, "alice", "alice.key", &tampered).await;
    assert_eq!(st, 400, "a signature over other arguments");
    let other_id = DecisionMessage {
        approval_id: "apr_000000000000000000000000".into(),
        ..m.clone()
    };
    let (st, _) = s.post_decision(&id, "alice", "alice.key", &other_id).await;
    assert_eq!(st, 400, "a signature over another approval id");
    assert_eq!(s.approval(&id).await["state"], "awaiting_approval");

    // The approver signs with the CLI; the write runs once and the agent finishes.
    let (code, out, err) = s.cli(&[
        "approve",
        &id,
        "--approver",
        "alice",
        "--key",
        "KEYS/alice.key",
        "--comment",
        "fine",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "approved");
    let state = s.wait_idle("olga").await;
    assert_eq!(state["status"], "idle", "{state}");
    let after = orders(&s.db).await;
    assert_eq!(after.len(), before.len() + 1, "executed exactly once");
    assert_eq!(after.last().unwrap(), &(2, 42.0));
    let a = s.approval(&id).await;
    assert_eq!(a["state"], "succeeded", "{a}");
    assert_eq!(a["approver"], "alice");
    assert_eq!(a["comment"], "fine");
    // The model got the result and answered.
    let last = s.a.requests().last().unwrap().body.clone();
    let tool_msg = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "tool")
        .unwrap()
        .clone();
    assert!(
        tool_msg["content"]
            .as_str()
            .unwrap()
            .contains("\"rows_affected\":1"),
        "{tool_msg}"
    );
    // A replayed decision is refused: the request was decided, and its approval used.
    let (st, body) = s.post_decision(&id, "alice", "alice.key", &m).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (409, Some("approval_not_pending")),
        "{body}"
    );
    assert_eq!(orders(&s.db).await.len(), before.len() + 1);
    // The journal shows the whole flow; the audit log holds the decision and its signature.
    let history: Value = s
        .http
        .get(format!("{}/v1/agents/ops/olga/history", s.w.url))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "task", "model", "approval", "resumed", "tool", "model", "answer"
        ]
    );
    let (_, audit, _) = s.w.cli(&["audit", "search", "--limit", "200"]);
    for state in ["awaiting_approval", "approved", "dispatched", "succeeded"] {
        assert!(
            audit.contains(&format!("\"state\":\"{state}\"")),
            "{state} not audited"
        );
    }
    assert!(audit.contains(a["id"].as_str().unwrap()) && audit.contains("\"signature\":\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_write_tells_the_agent_why_and_an_expired_request_takes_no_decision() {
    let s = Setup::start("1500ms").await;
    let before = orders(&s.db).await;
    s.a.push([
        write("DELETE FROM orders WHERE customer_id = 1"),
        Reply::Text("Understood, nothing deleted.".into()),
    ]);
    let out = s.ask("dan", "Delete Ada's orders").await;
    let id = awaited_approval(&out);
    assert_eq!(s.approval(&id).await["preview"]["rows_affected"], 2);
    let (code, out, err) = s.cli(&[
        "deny",
        &id,
        "--approver",
        "alice",
        "--key",
        "KEYS/alice.key",
        "--reason",
        "not today",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "denied");
    let state = s.wait_idle("dan").await;
    assert_eq!(state["status"], "idle");
    assert_eq!(orders(&s.db).await, before, "nothing deleted");
    let last = s.a.requests().last().unwrap().body.to_string();
    assert!(last.contains("denied by alice: not today"), "{last}");
    // An expired request accepts no decision.
    s.a.push([write("UPDATE orders SET total = 1 WHERE id = 3")]);
    let out = s.ask("eve", "Set order 3 to 1").await;
    let id = awaited_approval(&out);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let (code, _, err) = s.cli(&[
        "approve",
        &id,
        "--approver",
        "alice",
        "--key",
        "KEYS/alice.key",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("409") || err.contains("expired"), "{err}");
    assert_eq!(orders(&s.db).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_around_an_approved_write_never_runs_it_twice() {
    use rand::Rng;
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let keys = tempfile::tempdir().unwrap();
    let alice = keygen(keys.path(), "alice");
    let signing =
        parse_private_key(&std::fs::read_to_string(keys.path().join("alice.key")).unwrap())
            .unwrap();
    let extra = format!(
        r#"
[databases.shop]
kind = "sqlite"
path = "{}"
tables = ["orders"]
writable_tables = ["orders"]
[agents.ops]
system_prompt = "You record orders."
model = "fast"
permissions = "read-write"
tools = ["sql_execute"]
databases = ["shop"]
[approvers.alice]
public_key = "{alice}"
tools = ["sql_execute"]
"#,
        db.display()
    );
    let config = two_provider_config(&a, &b, &extra);
    let http = reqwest::Client::new();
    let mut outcomes = Vec::new();
    for run in 0..8 {
        let dir = WardenProcess::temp_dir();
        let first = WardenProcess::start_in(&bin(), dir.clone(), Some(&config), &KEYS_ENV);
        let key = first.create_key("app", &[]);
        let admin = first.create_key("admin", &["--admin"]);
        a.clear();
        a.push([
            write(&format!(
                "INSERT INTO orders (customer_id, total) VALUES ({run}, 1.0)"
            )),
            Reply::Delay(
                Duration::from_millis(30),
                Box::new(Reply::Text("recorded".into())),
            ),
        ]);
        let before = orders(&db).await.len();
        let out: Value = http
            .post(format!("{}/v1/agents/ops/crash/messages", first.url))
            .bearer_auth(&key)
            .json(&json!({"content": "record it"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = awaited_approval(&out);
        let pending: Value = http
            .get(format!("{}/v1/approvals/{id}", first.url))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let m = message(&pending, Decision::Approve);
        let r = http
            .post(format!("{}/v1/approvals/{id}/decision", first.url))
            .bearer_auth(&admin)
            .json(
                &json!({"approver": "alice", "decision": "approve", "signature": m.sign(&signing)}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let wait = rand::rng().random_range(0..40);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        first.signal("KILL");
        let mut first = first;
        tokio::task::block_in_place(|| first.wait_exit(Duration::from_secs(5)));

        a.clear();
        a.push([
            Reply::Text("recorded".into()),
            Reply::Text("recorded".into()),
        ]);
        let second = WardenProcess::start_in(&bin(), dir.clone(), Some(&config), &KEYS_ENV);
        // No human and no resume: the restart settles the write and the agent goes on.
        let (final_state, status) =
            settled(&http, &second.url, &admin, &key, &id, "ops/crash").await;
        let inserted = orders(&db).await.len() - before;
        eprintln!(
            "run {run}: killed {wait} ms after the decision; approval {final_state}, agent {status}, rows inserted {inserted}"
        );
        assert!(inserted <= 1, "run {run}: the write ran {inserted} times");
        match final_state.as_str() {
            "succeeded" => assert_eq!(inserted, 1, "run {run}"),
            "not_applied" => assert_eq!(inserted, 0, "run {run}"),
            other => panic!("run {run}: approval ended {other}"),
        }
        assert_eq!(status, "idle", "run {run}: the agent continued on its own");
        outcomes.push(final_state);
    }
    assert!(outcomes.iter().any(|o| o == "succeeded"), "{outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_found_dispatched_after_a_crash_is_settled_by_its_idempotency_key_not_retried() {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let work = tempfile::tempdir().unwrap();
    let db = crate::agents::shop_db(work.path()).await;
    let keys = tempfile::tempdir().unwrap();
    let alice = keygen(keys.path(), "alice");
    let extra = format!(
        "[databases.shop]\nkind = \"sqlite\"\npath = \"{}\"\ntables = [\"orders\"]\nwritable_tables = [\"orders\"]\n\
         [agents.ops]\nsystem_prompt = \"x\"\nmodel = \"fast\"\npermissions = \"read-write\"\ntools = [\"sql_execute\"]\ndatabases = [\"shop\"]\n\
         [approvers.alice]\npublic_key = \"{alice}\"\ntools = [\"sql_execute\"]\n",
        db.display()
    );
    let config = two_provider_config(&a, &b, &extra);
    let dir = WardenProcess::temp_dir();
    let first = WardenProcess::start_in(&bin(), dir.clone(), Some(&config), &KEYS_ENV);
    let key = first.create_key("app", &[]);
    let admin = first.create_key("admin", &["--admin"]);
    a.push([write(
        "INSERT INTO orders (customer_id, total) VALUES (7, 7.0)",
    )]);
    let http = reqwest::Client::new();
    let out: Value = http
        .post(format!("{}/v1/agents/ops/x/messages", first.url))
        .bearer_auth(&key)
        .json(&json!({"content": "record it"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = awaited_approval(&out);
    first.signal("KILL");
    let mut first = first;
    tokio::task::block_in_place(|| first.wait_exit(Duration::from_secs(5)));
    // As if the process died right after consuming the approval, before the write finished.
    let store = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new().filename(first.data_dir.join("warden.db")),
    )
    .await
    .unwrap();
    sqlx::query("UPDATE approvals SET state = 'dispatched', approver = 'alice', decision = 'approve' WHERE id = ?")
        .bind(&id)
        .execute(&store)
        .await
        .unwrap();
    sqlx::query("UPDATE agents SET status = 'running' WHERE id = 'ops/x'")
        .execute(&store)
        .await
        .unwrap();
    store.close().await;
    let before = orders(&db).await.len();
    a.push([Reply::Text(
        "It was not applied; I will not retry it unasked.".into(),
    )]);
    let second = WardenProcess::start_in(&bin(), dir.clone(), Some(&config), &KEYS_ENV);
    // The target tells: no idempotency record, and now none can be made. Settled without a
    // human, and the agent goes on without a resume.
    let (state, status) = settled(&http, &second.url, &admin, &key, &id, "ops/x").await;
    assert_eq!((state.as_str(), status.as_str()), ("not_applied", "idle"));
    assert_eq!(orders(&db).await.len(), before, "not run again");
    let told = a.requests().last().unwrap().body.to_string();
    assert!(told.contains("was not applied"), "{told}");
    // A not_applied write is final: no resolution, signed or not, changes it.
    let (code, _, err) = run_cli(
        &bin(),
        &second.data_dir,
        &[
            "approvals",
            "resolve",
            &id,
            "--outcome",
            "succeeded",
            "--note",
            "x",
            "--approver",
            "alice",
            "--key",
            keys.path().join("alice.key").to_str().unwrap(),
            "--url",
            &second.url,
            "--api-key",
            &admin,
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("approval_not_pending"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_write_the_target_cannot_settle_is_resolved_only_by_a_signed_statement() {
    let s = Setup::start("1h").await;
    // A POST whose crash mid-dispatch leaves no way to ask the target.
    s.a.push([Reply::ToolCall {
        name: "http_request".into(),
        arguments: json!({"method": "POST", "url": format!("{}/chat/completions", s.hook.base_url().replace("127.0.0.1", "localhost")), "body": {"n": 1}}).to_string(),
    }]);
    let out = s.ask("hana", "post it").await;
    assert_eq!(
        out["result"],
        "awaiting_approval",
        "{out} {:?}",
        s.a.requests().last().map(|r| r.body.to_string())
    );
    let id = awaited_approval(&out);
    s.w.signal("KILL");
    let Setup {
        w,
        a,
        admin,
        key,
        keys,
        http,
        ..
    } = s;
    let mut w = w;
    tokio::task::block_in_place(|| w.wait_exit(Duration::from_secs(5)));
    let store = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new().filename(w.data_dir.join("warden.db")),
    )
    .await
    .unwrap();
    sqlx::query("UPDATE approvals SET state = 'dispatched', approver = 'bob', decision = 'approve' WHERE id = ?")
        .bind(&id)
        .execute(&store)
        .await
        .unwrap();
    sqlx::query("UPDATE agents SET status = 'running' WHERE id = 'ops/hana'")
        .execute(&store)
        .await
        .unwrap();
    store.close().await;
    a.push([Reply::Text(
        "The outcome is unknown; a human will check.".into(),
    )]);
    let second = w.restart();
    let (state, status) = settled(&http, &second.url, &admin, &key, &id, "ops/hana").await;
    assert_eq!(
        (state.as_str(), status.as_str()),
        ("outcome_unknown", "idle"),
        "{}",
        second.logs()
    );
    let told = a.requests().last().unwrap().body.to_string();
    assert!(told.contains("outcome of this write is unknown"), "{told}");
    // An admin key alone settles nothing: the body needs an approver's signature.
    let r = http
        .post(format!("{}/v1/approvals/{id}/resolve", second.url))
        .bearer_auth(&admin)
        .json(&json!({"outcome": "succeeded", "note": "checked"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A signature by an approver without the right to the tool, or over another outcome.
    let approval: Value = http
        .get(format!("{}/v1/approvals/{id}", second.url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resolution = |succeeded: bool, note: &str| warden_tools::approval::ResolutionMessage {
        approval_id: id.clone(),
        agent_id: approval["agent"].as_str().unwrap().into(),
        tool: approval["tool"].as_str().unwrap().into(),
        arguments_sha256: approval["arguments_sha256"].as_str().unwrap().into(),
        succeeded,
        note: note.into(),
    };
    let key_of = |name: &str| {
        parse_private_key(&std::fs::read_to_string(keys.path().join(name)).unwrap()).unwrap()
    };
    let post = |approver: &str, outcome: &str, note: &str, sig: String| {
        let req = http
            .post(format!("{}/v1/approvals/{id}/resolve", second.url))
            .bearer_auth(&admin)
            .json(
                &json!({"approver": approver, "outcome": outcome, "note": note, "signature": sig}),
            );
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (st, body) = post(
        "alice",
        "succeeded",
        "checked",
        resolution(true, "checked").sign(&key_of("alice.key")),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (403, Some("approver_forbidden")),
        "{body}"
    );
    let (st, body) = post(
        "bob",
        "succeeded",
        "checked",
        resolution(false, "checked").sign(&key_of("bob.key")),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (400, Some("bad_signature")),
        "{body}"
    );
    // Bob, who may decide on http_request, signs it with the CLI.
    let (code, out, err) = run_cli(
        &bin(),
        &second.data_dir,
        &[
            "approvals",
            "resolve",
            &id,
            "--outcome",
            "succeeded",
            "--note",
            "the receiver logged the POST",
            "--approver",
            "bob",
            "--key",
            keys.path().join("bob.key").to_str().unwrap(),
            "--url",
            &second.url,
            "--api-key",
            &admin,
        ],
    );
    assert_eq!((code, out.trim()), (0, "succeeded"), "{err}");
    let (_, audit, _) = second.cli(&["audit", "search", "--limit", "500"]);
    assert!(
        audit.contains("resolved by bob: the receiver logged the POST"),
        "{audit}"
    );
}

fn http_post(s: &Setup, body: Value) -> Reply {
    let url = format!(
        "{}/chat/completions",
        s.hook.base_url().replace("127.0.0.1", "localhost")
    );
    Reply::ToolCall {
        name: "http_request".into(),
        arguments: json!({"method": "POST", "url": url, "body": body}).to_string(),
    }
}

async fn approvals_of(s: &Setup, agent: &str) -> Vec<Value> {
    let list: Value = s
        .http
        .get(format!("{}/v1/approvals?limit=500", s.w.url))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["agent"] == agent)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_message_while_a_write_waits_is_refused_and_a_reset_withdraws_the_write() {
    let s = Setup::start("1h").await;
    let before = orders(&s.db).await;
    s.a.push([write("UPDATE orders SET total = 99 WHERE id = 1")]);
    let out = s.ask("pia", "Set order 1 to 99").await;
    let id = awaited_approval(&out);
    // A second task would strand the approval: refused, and the approval still waits.
    let r = s
        .http
        .post(format!("{}/v1/agents/ops/pia/messages", s.w.url))
        .bearer_auth(&s.key)
        .json(&json!({"content": "something else"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "approval_pending", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(&id),
        "{body}"
    );
    assert_eq!(s.approval(&id).await["state"], "awaiting_approval");
    // A reset ends the task and withdraws its write: a later decision finds it closed.
    let r = s
        .http
        .post(format!("{}/v1/agents/ops/pia/reset", s.w.url))
        .bearer_auth(&s.key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let a = s.approval(&id).await;
    assert_eq!(a["state"], "withdrawn", "{a}");
    let (st, body) = s
        .post_decision(&id, "alice", "alice.key", &message(&a, Decision::Approve))
        .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (409, Some("approval_not_pending"))
    );
    assert_eq!(orders(&s.db).await, before, "nothing written");
    // The agent takes new work again.
    s.a.push([Reply::Text("ok".into())]);
    assert_eq!(s.ask("pia", "hello").await["result"], "answered");
}

/// A key that loses its grant while its agent waits: the decision withdraws the write
/// instead of approving it for nothing; once the grant is back, `resume` continues the task
/// with that outcome rather than leaving the agent stuck (found by a red-team session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_key_lost_the_grant_is_withdrawn_and_the_task_resumes_after() {
    let s = Setup::start("1h").await;
    let before = orders(&s.db).await;
    s.a.push([write("UPDATE orders SET total = 99 WHERE id = 1")]);
    let id = awaited_approval(&s.ask("quin", "Set order 1 to 99").await);
    let (code, _, err) = s.w.cli(&["keys", "update", "ops-app", "--agents", ""]);
    assert_eq!(code, 0, "{err}");
    let a = s.approval(&id).await;
    let (st, body) = s
        .post_decision(&id, "alice", "alice.key", &message(&a, Decision::Approve))
        .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (409, Some("approval_not_pending")),
        "{body}"
    );
    assert_eq!(s.approval(&id).await["state"], "withdrawn");
    assert_eq!(orders(&s.db).await, before, "nothing written");
    // The grant comes back (the key cache forgets the old one within its 1s TTL).
    let (code, _, err) = s.w.cli(&["keys", "update", "ops-app", "--agents", "*"]);
    assert_eq!(code, 0, "{err}");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    s.a.push([Reply::Text(
        "The change was withdrawn; nothing was written.".into(),
    )]);
    let r = s
        .http
        .post(format!("{}/v1/agents/ops/quin/resume", s.w.url))
        .bearer_auth(&s.key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["result"], "answered", "{out}");
    let told = s.a.requests().last().unwrap().body.to_string();
    assert!(told.contains("withdrawn"), "{told}");
    assert_eq!(orders(&s.db).await, before, "still nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integers_canonical_json_would_round_are_refused_in_writes_not_signed_as_others() {
    let s = Setup::start("1h").await;
    // 2^53 + 1 would be signed as 2^53: refused before any approval exists.
    s.a.push([
        http_post(&s, json!({"order_id": 9007199254740993u64})),
        Reply::Text("I will send it as a string.".into()),
    ]);
    let out = s.ask("ivy", "post order 9007199254740993").await;
    assert_eq!(out["result"], "answered", "{out}");
    let told = s.a.requests().last().unwrap().body.to_string();
    assert!(
        told.contains("beyond what an approval can bind exactly"),
        "{told}"
    );
    assert!(approvals_of(&s, "ops/ivy").await.is_empty());
    // 2^53 is exact: the approval carries it, and the journal and the audit record carry the
    // approval's hash.
    s.a.push([http_post(&s, json!({"order_id": 9007199254740992u64}))]);
    let out = s.ask("ivy", "post order 9007199254740992").await;
    let id = awaited_approval(&out);
    let a = s.approval(&id).await;
    assert!(
        a["arguments_canonical"]
            .as_str()
            .unwrap()
            .contains("9007199254740992"),
        "{a}"
    );
    let hash = a["arguments_sha256"].as_str().unwrap();
    let history: Value = s
        .http
        .get(format!("{}/v1/agents/ops/ivy/history?limit=100", s.w.url))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let step = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["kind"] == "approval")
        .unwrap()
        .clone();
    assert_eq!(step["data"]["arguments_sha256"], hash, "{step}");
    let (_, audit, _) = s.w.cli(&["audit", "search", "--limit", "500"]);
    assert!(audit.contains(hash), "the audit record names the same hash");
    let refused_hash = audit
        .lines()
        .filter(|l| l.contains("\"kind\":\"tool_call\"") && l.contains("\"refused\""))
        .count();
    assert_eq!(refused_hash, 1, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_agent_gets_no_write_even_from_a_mixed_tool() {
    let s = Setup::start("1h").await;
    s.a.push([
        http_post(&s, json!({"n": 1})),
        Reply::Text("I may not.".into()),
    ]);
    let r: Value = s
        .http
        .post(format!("{}/v1/agents/viewer/vic/messages", s.w.url))
        .bearer_auth(&s.key)
        .json(&json!({"content": "post it"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["result"], "answered", "{r}");
    let told = s.a.requests().last().unwrap().body.to_string();
    assert!(told.contains("this agent is read-only"), "{told}");
    assert!(approvals_of(&s, "viewer/vic").await.is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        s.hook.requests().is_empty(),
        "nothing was sent to the target"
    );
}

#[test]
fn a_read_only_agent_configured_with_a_write_tool_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        "[databases.shop]\nkind = \"sqlite\"\npath = \"shop.db\"\ntables = [\"orders\"]\n\
         writable_tables = [\"orders\"]\n\
         [agents.ops]\nsystem_prompt = \"x\"\nmodel = \"m\"\ntools = [\"sql_execute\"]\ndatabases = [\"shop\"]\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(
        &bin(),
        dir.path(),
        &["serve", "--config", config.to_str().unwrap()],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("agents.ops.tools") && err.contains("read-only"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_an_expiry_to_come_still_drives_its_agent_after_a_decision() {
    let s = Setup::start("1h").await;
    // Key expiries are in seconds, decisions in milliseconds: a key valid for a day more must
    // not be taken for an expired one.
    let key = s.w.create_key("ops-day", &["--expires", "1d"]);
    s.a.push([
        write("UPDATE orders SET total = 8 WHERE id = 1"),
        Reply::Text("Done.".into()),
    ]);
    let out: Value = s
        .http
        .post(format!("{}/v1/agents/ops/dee/messages", s.w.url))
        .bearer_auth(&key)
        .json(&json!({"content": "set order 1 to 8"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = awaited_approval(&out);
    let a = s.approval(&id).await;
    let (st, body) = s
        .post_decision(&id, "alice", "alice.key", &message(&a, Decision::Approve))
        .await;
    assert_eq!(st, 200, "{body}");
    let (state, status) = settled(&s.http, &s.w.url, &s.admin, &key, &id, "ops/dee").await;
    assert_eq!((state.as_str(), status.as_str()), ("succeeded", "idle"));
}
