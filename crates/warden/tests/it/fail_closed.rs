//! Fail closed on every path: when the audit log cannot write, an agent's step, its model
//! call or tool call, and an approval decision stop there (503 `audit_unavailable`, the task
//! `failed` and resumable, no write dispatched), and once the log is back the task resumes,
//! writing the records it could not write before.

use crate::approvals::{awaited_approval, keygen, message};
use crate::{KEYS_ENV, bin, two_provider_config};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use warden_testkit::{MockUpstream, Reply, WardenProcess};
use warden_tools::approval::{Decision, parse_private_key};

struct Rig {
    a: MockUpstream,
    _b: MockUpstream,
    w: Option<WardenProcess>,
    key: String,
    admin: String,
    keys: tempfile::TempDir,
    db: PathBuf,
    http: reqwest::Client,
    _work: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Self {
        let a = MockUpstream::start().await;
        let b = MockUpstream::start().await;
        let work = tempfile::tempdir().unwrap();
        let db = crate::agents::shop_db(work.path()).await;
        let keys = tempfile::tempdir().unwrap();
        let alice = keygen(keys.path(), "alice");
        let extra = format!(
            r#"
[audit]
max_segment_age = "200ms"
[databases.shop]
kind = "sqlite"
path = "{db}"
tables = ["customers", "orders"]
writable_tables = ["orders"]
[agents.ops]
system_prompt = "You keep the orders."
model = "fast"
permissions = "read-write"
tools = ["sql_query", "sql_execute"]
databases = ["shop"]
[approvers.alice]
public_key = "{alice}"
tools = ["sql_execute"]
"#,
            db = db.display()
        );
        let w = WardenProcess::start(&bin(), &two_provider_config(&a, &b, &extra), &KEYS_ENV);
        let key = w.create_key("ops-app", &[]);
        let admin = w.create_key("ops-admin", &["--admin"]);
        Self {
            a,
            _b: b,
            w: Some(w),
            key,
            admin,
            keys,
            db,
            http: reqwest::Client::new(),
            _work: work,
        }
    }

    fn w(&self) -> &WardenProcess {
        self.w.as_ref().unwrap()
    }

    /// Makes the audit log fail: its `open/` folder is moved aside and a file put in its
    /// place, so the next rotation cannot create a segment and the writer stops.
    async fn break_log(&self) {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let open = self.w().data_dir.join("audit/open");
        std::fs::rename(&open, open.with_extension("aside")).unwrap();
        std::fs::write(&open, b"not a directory").unwrap();
        tokio::time::sleep(Duration::from_millis(900)).await;
    }

    /// Stops Warden, puts the log back as it was, and starts it again.
    fn mend_log_and_restart(&mut self) {
        let mut w = self.w.take().unwrap();
        w.signal("KILL");
        tokio::task::block_in_place(|| w.wait_exit(Duration::from_secs(5)));
        let open = w.data_dir.join("audit/open");
        std::fs::remove_file(&open).unwrap();
        std::fs::rename(open.with_extension("aside"), &open).unwrap();
        self.w = Some(w.restart());
    }

    async fn post(&self, path: &str, bearer: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.w().url))
            .bearer_auth(bearer)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn get(&self, path: &str, bearer: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.w().url))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn orders(&self) -> i64 {
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new().filename(&self.db),
        )
        .await
        .unwrap();
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    }

    fn audit(&self) -> String {
        self.w().cli(&["audit", "search", "--limit", "1000"]).1
    }
}

fn sql(query: &str) -> Reply {
    Reply::ToolCall {
        name: "sql_query".into(),
        arguments: json!({"database": "shop", "sql": query}).to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_step_the_log_cannot_record_stops_the_task_until_the_log_is_back() {
    let mut r = Rig::start().await;
    r.break_log().await;
    r.a.push([Reply::Text("never seen".into())]);
    let (status, body) = r
        .post(
            "/v1/agents/ops/s1/messages",
            &r.key.clone(),
            json!({"content": "how many orders?"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("audit_unavailable")),
        "{body}"
    );
    assert_eq!(r.a.hits(), 0, "no model call after an unrecorded step");
    let state = r.get("/v1/agents/ops/s1", &r.key.clone()).await;
    assert_eq!(state["status"], "failed", "{state}");
    assert!(
        state["status_reason"]
            .as_str()
            .unwrap()
            .starts_with("audit_unavailable"),
        "{state}"
    );

    r.mend_log_and_restart();
    r.a.clear();
    r.a.push([
        sql("SELECT COUNT(*) AS n FROM orders"),
        Reply::Text("There are 3 orders.".into()),
    ]);
    let (status, out) = r
        .post("/v1/agents/ops/s1/resume", &r.key.clone(), json!({}))
        .await;
    assert_eq!(
        (status, out["result"].as_str()),
        (200, Some("answered")),
        "{out}"
    );
    // The records the log missed were written when the task went on.
    let audit = r.audit();
    assert!(audit.contains("recorded late"), "{audit}");
    assert!(audit.contains("\"step\":\"task\""), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_answer_and_a_tool_result_are_not_released_unrecorded() {
    let mut r = Rig::start().await;
    // The model answers slowly; the log breaks meanwhile.
    r.a.push([Reply::Delay(
        Duration::from_millis(2500),
        Box::new(sql("SELECT COUNT(*) AS n FROM orders")),
    )]);
    let http = r.http.clone();
    let url = format!("{}/v1/agents/ops/s2/messages", r.w().url);
    let key = r.key.clone();
    let asked = tokio::spawn(async move {
        let resp = http
            .post(url)
            .bearer_auth(key)
            .json(&json!({"content": "how many orders?"}))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    });
    r.break_log().await;
    let (status, body) = asked.await.unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("audit_unavailable")),
        "{body}"
    );
    let steps = r.get("/v1/agents/ops/s2/history", &r.key.clone()).await;
    let kinds: Vec<&str> = steps["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["task", "failed"],
        "nothing of the model's answer kept"
    );

    r.mend_log_and_restart();
    r.a.clear();
    r.a.push([
        sql("SELECT COUNT(*) AS n FROM orders"),
        Reply::Text("There are 3 orders.".into()),
    ]);
    let (status, out) = r
        .post("/v1/agents/ops/s2/resume", &r.key.clone(), json!({}))
        .await;
    assert_eq!(
        (status, out["result"].as_str()),
        (200, Some("answered")),
        "{out}"
    );
    let audit = r.audit();
    assert!(
        audit.contains("\"kind\":\"tool_call\""),
        "the read is recorded: {audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_the_log_cannot_record_is_not_made_and_nothing_is_dispatched() {
    let mut r = Rig::start().await;
    r.a.push([
        Reply::ToolCall {
            name: "sql_execute".into(),
            arguments: json!({"database": "shop", "sql": "INSERT INTO orders (customer_id, total) VALUES (2, 9.0)"}).to_string(),
        },
        Reply::Text("Recorded.".into()),
    ]);
    let (_, out) = r
        .post(
            "/v1/agents/ops/s3/messages",
            &r.key.clone(),
            json!({"content": "record it"}),
        )
        .await;
    let id = awaited_approval(&out);
    let before = r.orders().await;
    let admin = r.admin.clone();
    let approval = r.get(&format!("/v1/approvals/{id}"), &admin).await;
    let signing =
        parse_private_key(&std::fs::read_to_string(r.keys.path().join("alice.key")).unwrap())
            .unwrap();
    let decision = json!({"approver": "alice", "decision": "approve",
        "signature": message(&approval, Decision::Approve).sign(&signing)});
    r.break_log().await;
    let (status, body) = r
        .post(
            &format!("/v1/approvals/{id}/decision"),
            &admin,
            decision.clone(),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("audit_unavailable")),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        r.get(&format!("/v1/approvals/{id}"), &admin).await["state"],
        "awaiting_approval"
    );
    assert_eq!(r.orders().await, before, "nothing dispatched");

    // Back: the same signed decision is accepted and the write runs once.
    r.mend_log_and_restart();
    let (status, body) = r
        .post(&format!("/v1/approvals/{id}/decision"), &admin, decision)
        .await;
    assert_eq!(status, 200, "{body}");
    let mut state = Value::Null;
    for _ in 0..100 {
        state = r.get(&format!("/v1/approvals/{id}"), &admin).await;
        if state["state"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state["state"], "succeeded", "{state}");
    assert_eq!(r.orders().await, before + 1);
}
