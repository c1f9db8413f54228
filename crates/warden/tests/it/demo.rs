//! `warden demo` on a fresh machine: no API key, no config; the scripted demo model, the
//! sample database and the demo agent answer a data question through a validated SQL read.

use crate::bin;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_answers_a_data_question_with_no_api_key() {
    let dir = tempfile::tempdir().unwrap();
    let port = warden_testkit::free_port();
    let mut child = Command::new(bin())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("WARDEN_DATA_DIR", dir.path().join("demo"))
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut out = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !out.contains("Try next") && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    // Let the rest of the block arrive.
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
        out.push_str(&line);
        out.push('\n');
    }
    let result = std::panic::catch_unwind(|| {
        assert!(out.contains("SCRIPTED DEMO MODEL"), "{out}");
        assert!(
            out.contains("sql_query (read): SELECT c.name, c.email, SUM(o.total)"),
            "{out}"
        );
        assert!(out.contains("-> ok: 3 rows"), "{out}");
        // The user sees the real addresses, restored after the model saw placeholders.
        assert!(
            out.contains("Grace Hopper") && out.contains("grace.hopper@example.com"),
            "{out}"
        );
        assert!(out.contains("answered after 2 model steps"), "{out}");
        assert!(out.contains("curl -s http://127.0.0.1:"), "{out}");
        // The write flow: proposed, previewed, waiting, signed, run once, answered.
        assert!(
            out.contains(
                "sql_execute (write): UPDATE orders SET status = 'cancelled' WHERE id = 12"
            ),
            "{out}"
        );
        assert!(out.contains("Waiting for a human: approval apr_"), "{out}");
        assert!(
            out.contains("\"status\":\"processing\"") && out.contains("\"status\":\"cancelled\""),
            "{out}"
        );
        assert!(out.contains("warden approve apr_"), "{out}");
        assert!(
            out.contains("The write ran once: approval succeeded"),
            "{out}"
        );
        assert!(out.contains("Done: the order is cancelled"), "{out}");
    });
    if let Err(panic) = result {
        let _ = child.kill();
        let _ = child.wait();
        std::panic::resume_unwind(panic);
    }
    {
        // The printed key works, and the journal holds the redacted text only.
        let key = out
            .split_whitespace()
            .find(|w| w.starts_with("wdn_"))
            .unwrap()
            .to_owned();
        let agent = out
            .split_whitespace()
            .find(|w| w.starts_with("analyst/demo-"))
            .unwrap()
            .trim_end_matches(':')
            .to_owned();
        let http = reqwest::Client::new();
        let history: Value = http
            .get(format!("http://127.0.0.1:{port}/v1/agents/{agent}/history"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let journal = history.to_string();
        let ok = !journal.contains("grace.hopper@example.com") && journal.contains("<EMAIL_");
        let refused: Value = http
            .post(format!(
                "http://127.0.0.1:{port}/v1/agents/{agent}/messages"
            ))
            .bearer_auth(&key)
            .json(&json!({"content": "What are the salaries in payroll?"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(ok, "{journal}");
        let shop = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.path().join("demo/demo-shop.db")),
        )
        .await
        .unwrap();
        let status: String = sqlx::query_scalar("SELECT status FROM orders WHERE id = 12")
            .fetch_one(&shop)
            .await
            .unwrap();
        assert_eq!(status, "cancelled");
        assert!(
            refused["answer"]
                .as_str()
                .unwrap()
                .contains("table_not_allowed"),
            "{refused}"
        );
    }
}
