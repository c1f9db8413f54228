//! `kill -9` during an approved SQL write, on SQLite, PostgreSQL and MariaDB, many times: after
//! each restart the write is settled without a human (`succeeded` when it committed,
//! `not_applied` when it did not, by its idempotency key), it is never run twice, and the agent
//! finishes its task without a resume.

use crate::approvals::{awaited_approval, keygen, message, settled};
use crate::sql_firewall::{Company, Engine, URL_ENV};
use crate::{KEYS_ENV, bin, two_provider_config};
use rand::Rng;
use serde_json::{Value, json};
use std::time::Duration;
use warden_testkit::{MockUpstream, Reply, WardenProcess};
use warden_tools::approval::{Decision, parse_private_key};

/// Crash runs per engine.
const RUNS: usize = 6;

async fn crash_during_writes(engine: Engine) {
    let Some(company) = Company::create(engine).await else {
        return;
    };
    let company = std::sync::Arc::new(company);
    let outcome = tokio::spawn(runs(company.clone())).await;
    match std::sync::Arc::try_unwrap(company) {
        Ok(c) => c.drop_all().await,
        Err(_) => eprintln!("the company database is still in use; not dropped"),
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn runs(company: std::sync::Arc<Company>) {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let keys = tempfile::tempdir().unwrap();
    let alice = keygen(keys.path(), "alice");
    let signing =
        parse_private_key(&std::fs::read_to_string(keys.path().join("alice.key")).unwrap())
            .unwrap();
    let extra = format!(
        r#"
[databases.company]
{location}
tables = ["orders"]
writable_tables = ["orders"]
[agents.clerk]
system_prompt = "You look after the orders."
model = "fast"
permissions = "read-write"
tools = ["sql_execute"]
databases = ["company"]
[approvers.alice]
public_key = "{alice}"
tools = ["sql_execute"]
"#,
        location = company.location()
    );
    let config = two_provider_config(&a, &b, &extra);
    let mut env = KEYS_ENV.to_vec();
    if let Some(url) = company.url() {
        env.push((URL_ENV, url));
    }
    let http = reqwest::Client::new();
    let mut outcomes = Vec::new();
    for run in 0..RUNS {
        let first = WardenProcess::start_in(&bin(), WardenProcess::temp_dir(), Some(&config), &env);
        let key = first.create_key("app", &[]);
        let admin = first.create_key("admin", &["--admin"]);
        a.clear();
        a.push([
            Reply::ToolCall {
                name: "sql_execute".into(),
                arguments: json!({"database": "company", "sql": "UPDATE orders SET total = total + 1 WHERE id = 1"}).to_string(),
            },
            Reply::Delay(Duration::from_millis(30), Box::new(Reply::Text("done".into()))),
        ]);
        let before = company.order_total(1).await;
        let out: Value = http
            .post(format!("{}/v1/agents/clerk/c{run}/messages", first.url))
            .bearer_auth(&key)
            .json(&json!({"content": "add one to order 1"}))
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
        let signature = message(&pending, Decision::Approve).sign(&signing);
        let r = http
            .post(format!("{}/v1/approvals/{id}/decision", first.url))
            .bearer_auth(&admin)
            .json(&json!({"approver": "alice", "decision": "approve", "signature": signature}))
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
        a.push([Reply::Text("done".into()), Reply::Text("done".into())]);
        let second = first.restart();
        let agent = format!("clerk/c{run}");
        let (state, status) = settled(&http, &second.url, &admin, &key, &id, &agent).await;
        let added = company.order_total(1).await - before;
        eprintln!(
            "{run}: killed {wait} ms after the decision; approval {state}, agent {status}, total +{added}"
        );
        match state.as_str() {
            "succeeded" => assert_eq!(added, 1.0, "run {run}: applied once"),
            "not_applied" => assert_eq!(added, 0.0, "run {run}: not applied"),
            other => panic!("run {run}: the approval ended {other}, not settled by Warden"),
        }
        assert_eq!(
            status, "idle",
            "run {run}: the agent went on without a resume"
        );
        outcomes.push(state);
    }
    eprintln!("outcomes: {outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_approved_writes_on_sqlite_settles_every_one() {
    crash_during_writes(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_approved_writes_on_postgres_settles_every_one() {
    crash_during_writes(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_approved_writes_on_mariadb_settles_every_one() {
    crash_during_writes(Engine::Mysql).await;
}
