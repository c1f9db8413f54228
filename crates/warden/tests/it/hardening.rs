//! Hardening of what Warden exposes about requests: bounded metric labels, request ids that
//! are always Warden's own, and SQL text kept out of debug logs.

use crate::{KEYS_ENV, Setup, bin, chat_body, two_provider_config};
use serde_json::json;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;
use warden_testkit::{MockUpstream, Reply, WardenProcess};

fn random_name(i: usize) -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(i);
    format!("zz-rand-{:016x}", h.finish())
}

/// The sum of `warden_requests_total` samples whose labels contain `label`.
fn requests_with(metrics: &str, label: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("warden_requests_total{") && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_model_labels_come_from_the_configured_names() {
    let s = Setup::start().await;
    let names: Vec<String> = (0..50).map(random_name).collect();
    for name in &names {
        // Passed through to the default provider or refused: either way not a configured name.
        let r = s.post("/v1/chat/completions", chat_body(name)).await;
        r.text().await.unwrap();
    }
    let r = s.chat("quick").await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    let metrics = s.metrics().await;
    // Nowhere in /metrics: requests, tokens and fallbacks all label by configured name.
    for name in &names {
        assert!(!metrics.contains(name.as_str()), "{name} leaked: {metrics}");
    }
    assert_eq!(requests_with(&metrics, r#"model="other""#), 50, "{metrics}");
    assert_eq!(
        requests_with(&metrics, r#"model="quick""#),
        1,
        "a configured alias keeps its label: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_always_wardens_own() {
    let s = Setup::start().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = s
            .http
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(&s.key)
            .header("x-request-id", "client-dup-42")
            .json(&chat_body("fast"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-client-request-id"], "client-dup-42");
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(id.starts_with("req_") && id.len() == 28, "{id}");
        r.text().await.unwrap();
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "a reused client id cannot collide");
    // No client id, or an insane one: no echo.
    let r = s
        .http
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(&s.key)
        .header("x-request-id", "has space")
        .json(&chat_body("fast"))
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("x-client-request-id"));
    r.text().await.unwrap();
    // The log line carries both ids.
    let mut logs = String::new();
    for _ in 0..100 {
        logs = s.warden.logs();
        if ids.iter().all(|id| logs.contains(id.as_str())) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in &ids {
        let line = logs
            .lines()
            .find(|l| l.contains(id.as_str()) && l.contains("request"))
            .unwrap_or_else(|| panic!("no log line for {id}: {logs}"));
        assert!(line.contains("client-dup-42"), "{line}");
    }
}

/// A Warden with a read agent on a SQLite database, `RUST_LOG` set to `rust_log`; runs one
/// agent read and returns the log.
async fn agent_read_log(rust_log: &str) -> String {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let dbdir = tempfile::tempdir().unwrap();
    let db = dbdir.path().join("books.db");
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT);
         INSERT INTO books VALUES (1, 'Dune');",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let extra = format!(
        "[databases.lib]\nkind = \"sqlite\"\npath = \"{}\"\ntables = [\"books\"]\n\
         [agents.reader]\nsystem_prompt = \"You look books up.\"\nmodel = \"fast\"\n\
         tools = [\"sql_query\"]\ndatabases = [\"lib\"]\n",
        db.display()
    );
    let mut env = KEYS_ENV.to_vec();
    env.push(("RUST_LOG", rust_log));
    let w = WardenProcess::start(&bin(), &two_provider_config(&a, &b, &extra), &env);
    let key = w.create_key("reader", &[]);
    a.push([
        Reply::ToolCall {
            name: "sql_query".into(),
            arguments: json!({"database": "lib", "sql": "SELECT title FROM books WHERE id = 1"})
                .to_string(),
        },
        Reply::Text("It is Dune.".into()),
    ]);
    let r = reqwest::Client::new()
        .post(format!("{}/v1/agents/reader/r1/messages", w.url))
        .bearer_auth(&key)
        .json(&json!({"content": "Which book is number 1?"}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("Dune"), "{text}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    w.logs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_hold_no_query_text_unless_the_operator_asks() {
    let logs = agent_read_log("debug").await;
    assert!(logs.contains("DEBUG"), "debug logging was on: {logs}");
    for line in logs.lines() {
        assert!(
            !line.contains("sqlx::query") && !line.contains("sqlparser"),
            "a SQL debug line: {line}"
        );
    }
    assert!(!logs.contains("may include query text"), "{logs}");

    // Named in RUST_LOG, the targets are honoured, with a warning.
    let logs = agent_read_log("info,sqlx=debug,sqlparser=debug").await;
    assert!(logs.contains("may include query text"), "{logs}");
    assert!(
        logs.lines()
            .any(|l| l.contains("sqlx::query") && l.contains("SELECT title FROM books")),
        "the operator's sqlx/sqlparser levels apply: {logs}"
    );
}
