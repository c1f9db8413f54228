//! Redaction end to end: what reaches the provider, what the client gets back, streaming,
//! blocking, per-key policies, custom entities, and that values reach no log or stored row.

use crate::{Setup, chat_body, error_code};
use serde_json::{Value, json};
use warden_testkit::Reply;

const EMAIL: &str = "jane.doe@example.com";
const CARD: &str = "4111 1111 1111 1111";

fn pii_body() -> Value {
    json!({"model": "fast", "messages": [
        {"role": "system", "content": "You help customers."},
        {"role": "user", "content": format!("I am {EMAIL}, card {CARD}. Email me.")}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_never_reaches_the_provider_and_comes_back_to_the_client() {
    let s = Setup::start().await;
    let r = s.post("/v1/chat/completions", pii_body()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-warden-redactions"], "CREDIT_CARD=1,EMAIL=1");
    let v: Value = r.json().await.unwrap();
    // The mock echoes what it received; Warden restores the originals on the way back.
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("echo: I am {EMAIL}, card {CARD}. Email me.")
    );
    let sent = s.a.requests()[0].body.to_string();
    assert!(!sent.contains(EMAIL) && !sent.contains("4111"), "{sent}");
    assert!(
        sent.contains("I am <EMAIL_1>, card <CREDIT_CARD_1>."),
        "{sent}"
    );
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"warden_redactions_total{entity="EMAIL",direction="request"} 1"#),
        "{metrics}"
    );
    // No value in the log or the store.
    let logs = s.warden.logs();
    assert!(!logs.contains(EMAIL) && !logs.contains("4111"));
    let db = std::fs::read(s.warden.data_dir.join("warden.db")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&db).contains(EMAIL));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_answers_are_restored_even_when_a_placeholder_is_split() {
    let s = Setup::start().await;
    s.a.push([Reply::Stream {
        pieces: vec![
            "Contact <EMA".into(),
            "IL_1> or pay with <CREDIT".into(),
            "_CARD_1>.".into(),
        ],
        delay: std::time::Duration::ZERO,
    }]);
    let events = s.stream(pii_body()).await;
    let mut text = String::new();
    for e in &events {
        if let Ok(v) = serde_json::from_str::<Value>(e)
            && let Some(t) = v["choices"][0]["delta"]["content"].as_str()
        {
            assert!(
                !t.contains("<EMA") && !t.contains("<CREDIT"),
                "partial placeholder sent: {t:?}"
            );
            text.push_str(t);
        }
    }
    assert_eq!(text, format!("Contact {EMAIL} or pay with {CARD}."));
    assert_eq!(events.last().unwrap(), "[DONE]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_the_model_outputs_are_masked() {
    let s = Setup::start().await;
    let token = "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R";
    s.a.push([Reply::Text(format!("Use {token} to log in."))]);
    let r = s.chat("fast").await;
    assert_eq!(r.headers()["x-warden-redactions"], "GITHUB_TOKEN=1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Use <GITHUB_TOKEN_1> to log in."
    );
    // Streamed too.
    s.a.push([Reply::Stream {
        pieces: vec![
            "key ghp_1a2B3c4D5e".into(),
            "6F7g8H9i0J1k2L3m4N5o6P7q8R ok".into(),
        ],
        delay: std::time::Duration::ZERO,
    }]);
    let events = s.stream(chat_body("fast")).await;
    let all = events.concat();
    assert!(!all.contains("ghp_1a2B"), "{all}");
    assert!(all.contains("<GITHUB_TOKEN_1>"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_types_are_refused_naming_the_type_not_the_value() {
    let s = Setup::start_with("[redaction.entities]\nCREDIT_CARD = \"block\"\n").await;
    let r = s.post("/v1/chat/completions", pii_body()).await;
    let (code, body) = error_code(r, 400).await;
    assert_eq!(code, "sensitive_data_blocked");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("CREDIT_CARD") && !msg.contains("4111"),
        "{msg}"
    );
    assert_eq!(s.a.hits(), 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_policies_and_custom_entities_apply() {
    let extra = r#"
[redaction.keys.trusted]
EMAIL = "allow"

[[redaction.custom]]
name = "PROJECT"
words = ["Bluebird"]
"#;
    let s = Setup::start_with(extra).await;
    let trusted = s.warden.create_key("trusted", &[]);
    let body = json!({"model": "fast", "messages": [{"role": "user", "content": format!("{EMAIL} works on bluebird")}]});
    let r = s
        .http
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(&trusted)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.a.requests()[0].body["messages"][0]["content"],
        format!("{EMAIL} works on <PROJECT_1>")
    );
    // The default key keeps the global policy.
    s.post("/v1/chat/completions", body)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        s.a.requests()[1].body["messages"][0]["content"],
        "<EMAIL_1> works on <PROJECT_1>"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoration_can_be_turned_off_and_embeddings_are_masked() {
    let s = Setup::start_with("[redaction]\nrestore = false\n").await;
    let v: Value = s
        .post("/v1/chat/completions", pii_body())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "echo: I am <EMAIL_1>, card <CREDIT_CARD_1>. Email me."
    );
    let r = s
        .post(
            "/v1/embeddings",
            json!({"model": "fast", "input": [format!("mail {EMAIL}")]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.a.requests()[1].body["input"], json!(["mail <EMAIL_1>"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_entity_in_the_config_stops_start_up() {
    let dir = warden_testkit::WardenProcess::temp_dir();
    let path = dir.join("w.toml");
    std::fs::write(&path, "[redaction.entities]\nEMAILS = \"allow\"\n").unwrap();
    let out = std::process::Command::new(crate::bin())
        .env_clear()
        .env("WARDEN_DATA_DIR", dir.join("data"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("redaction.entities.EMAILS: unknown entity type"),
        "{err}"
    );
}
