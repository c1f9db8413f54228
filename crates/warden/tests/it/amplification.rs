//! Default limits against amplification: every key has a request rate unless configured
//! otherwise (600 per minute), agents' model calls included, and a body whose redaction would
//! cost more than `redaction.max_cost` is refused with 413 `payload_too_complex` before
//! anything reaches a provider.

use crate::{Setup, chat_body, error_code};
use serde_json::{Value, json};
use std::time::Instant;

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Near-miss candidates (SSN look-alikes, none valid): the costliest text per byte to redact.
fn adversarial(bytes: usize) -> String {
    "123-45-678 ".repeat(bytes / 11)
}

/// Ordinary prompt text: prose, code and log lines with a little personal data.
fn ordinary(bytes: usize) -> String {
    const PARTS: &[&str] = &[
        "The quarterly review covered revenue, churn and the migration plan. ",
        "fn handle(req: Request) -> Result<Response, Error> { Ok(Response::json(&req)) }\n",
        "2024-11-26T10:30:00Z INFO request_id=req_8f3a2b status=200 version=1.4.2\n",
        "Contact jane.doe@example.com about the refund. ",
    ];
    let mut out = String::new();
    let mut i = 0;
    while out.len() < bytes {
        out.push_str(PARTS[i % PARTS.len()]);
        i += 1;
    }
    out
}

fn ask(content: &str) -> Value {
    json!({"model": "fast", "messages": [{"role": "user", "content": content}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_limits_configured_a_key_gets_600_requests_a_minute_then_429() {
    let s = Setup::start().await;
    // GCRA: a burst of the minute's 600, then one more every 100 ms. Send until refusals
    // come, in waves of 16 at once.
    let started = Instant::now();
    let (mut ok, mut refused, mut sent) = (0u64, 0u64, 0u64);
    let mut first_refusal = None;
    while refused < 20 && sent < 2000 {
        let wave: Vec<_> = (0..16).map(|_| s.spawn_chat("fast")).collect();
        for handle in wave {
            let r = handle.await.unwrap().unwrap();
            sent += 1;
            match r.status().as_u16() {
                200 => ok += 1,
                429 => {
                    refused += 1;
                    if first_refusal.is_none() {
                        first_refusal = Some(r);
                        continue;
                    }
                }
                other => panic!("unexpected {other}"),
            }
            r.bytes().await.unwrap();
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(refused >= 20, "no refusals after {sent} requests");
    let refill = (elapsed * 10.0).ceil() as u64 + 1;
    assert!(
        (600..=600 + refill).contains(&ok),
        "{ok} answered in {elapsed:.1}s"
    );
    // Nothing refused reached a provider.
    assert_eq!((s.a.hits() + s.b.hits()) as u64, ok);
    let r = first_refusal.unwrap();
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), "600");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "0");
    let retry_after: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let (code, body) = error_code(r, 429).await;
    assert_eq!(code, "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this key's limit is 600 requests per minute"),
        "{body}"
    );
    // The limit is each key's own.
    let other = s.warden.create_key("other", &[]);
    assert_eq!(s.chat_as(&other, "fast").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_rate_holds_for_agents_model_calls_too_and_0_turns_it_off() {
    let s = Setup::start_with(
        r#"
[limits]
requests_per_minute = 3
[limits.keys.bulk]
requests_per_minute = 0
[agents.helper]
system_prompt = "Answer briefly."
model = "fast"
"#,
    )
    .await;
    for _ in 0..3 {
        assert_eq!(s.chat("fast").await.status(), 200);
    }
    let r = s.chat("fast").await;
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), "3");
    assert_eq!(error_code(r, 429).await.0, "rate_limit_exceeded");
    // An agent driven by the same key calls the model through the same pipeline: refused.
    let r = s
        .http
        .post(s.url("/v1/agents/helper/h1/messages"))
        .bearer_auth(&s.key)
        .json(&json!({"content": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["result"], "failed", "{out}");
    assert!(out.to_string().contains("rate limit exceeded"), "{out}");
    assert_eq!(s.a.hits(), 3, "the agent's call never reached the provider");
    // A key configured with 0 has no request limit.
    let bulk = s.warden.create_key("bulk", &[]);
    for _ in 0..5 {
        let r = s.chat_as(&bulk, "fast").await;
        assert_eq!(r.status(), 200);
        assert!(!r.headers().contains_key("x-ratelimit-limit-requests"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_too_complex_to_redact_gets_413_and_nothing_reaches_the_upstream() {
    let s = Setup::start().await;
    // 1.5 MiB: the mock upstream takes at most 2 MiB; Warden takes 4 MiB by default.
    let size = 1536 * 1024;
    let bad = adversarial(size);
    // Chat, plain and streaming, and embeddings: refused whole, before any provider.
    for body in [
        ask(&bad),
        json!({"model": "fast", "stream": true, "messages": [{"role": "user", "content": bad}]}),
        json!({"model": "fast", "messages": [
            {"role": "system", "content": &bad[..size / 2]},
            {"role": "user", "content": &bad[size / 2..]},
        ]}),
    ] {
        let started = Instant::now();
        let r = s.post("/v1/chat/completions", body).await;
        let (code, err) = error_code(r, 413).await;
        assert_eq!(code, "payload_too_complex", "{err}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains("redaction.max_cost"), "{message}");
        assert!(
            !message.contains("123-45"),
            "no content in errors: {message}"
        );
        eprintln!("refused in {:?} (debug build)", started.elapsed());
    }
    let r = s
        .post(
            "/v1/embeddings",
            json!({"model": "fast", "input": [&bad[..size / 2], &bad[size / 2..]]}),
        )
        .await;
    assert_eq!(error_code(r, 413).await.0, "payload_too_complex");
    assert_eq!(s.a.hits() + s.b.hits(), 0, "nothing was sent upstream");

    // A body of ordinary text of the same size passes, redacted.
    let good = ordinary(size);
    let r = s.post("/v1/chat/completions", ask(&good)).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    r.bytes().await.unwrap();
    let sent = s.a.requests();
    assert_eq!(sent.len(), 1);
    let content = sent[0].body["messages"][0]["content"].as_str().unwrap();
    assert!(content.len() > size - 64 * 1024, "{}", content.len());
    assert!(!content.contains("jane.doe@example.com") && content.contains("<EMAIL_1>"));
    // Counted for the operator.
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("warden_redaction_too_complex_total 4"),
        "{metrics}"
    );
    // Each large body was worked on off the async workers (`gateway::cpu`).
    let off_worker = blocking_pool_tasks(&metrics);
    assert!(off_worker >= 5, "{off_worker} large bodies off the workers");
    // Fine again for a small request, which is worked on in place.
    assert_eq!(
        s.post("/v1/chat/completions", chat_body("fast"))
            .await
            .status(),
        200
    );
    assert_eq!(blocking_pool_tasks(&s.metrics().await), off_worker);
}

/// `warden_blocking_pool_tasks_total` in a metrics page (0 when absent).
fn blocking_pool_tasks(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("warden_blocking_pool_tasks_total "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_task_too_complex_to_redact_gets_413_before_any_step() {
    let s = Setup::start_with(
        r#"
[redaction]
max_cost = 10000000
[agents.helper]
system_prompt = "Answer briefly."
model = "fast"
"#,
    )
    .await;
    let r = s
        .http
        .post(s.url("/v1/agents/helper/h2/messages"))
        .bearer_auth(&s.key)
        .json(&json!({"content": adversarial(200 * 1024)}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 413).await.0, "payload_too_complex");
    assert_eq!(s.a.hits(), 0);
    // The agent is not stuck: an ordinary task runs.
    let r = s
        .http
        .post(s.url("/v1/agents/helper/h2/messages"))
        .bearer_auth(&s.key)
        .json(&json!({"content": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["result"], "answered", "{out}");
}
