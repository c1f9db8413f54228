use crate::{Setup, chat_body, error_code};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use warden_testkit::Reply;

fn status(code: u16, retry_after: Option<&str>) -> Reply {
    Reply::Status {
        status: code,
        retry_after: retry_after.map(String::from),
        message: "mock failure".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_on_the_same_target() {
    let s = Setup::start().await;
    s.a.push([status(503, None)]);
    let r = s.chat("fast").await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.a.hits(), 2);
    assert_eq!(s.b.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let s = Setup::start().await;
    s.a.push([status(429, Some("0.25"))]);
    let started = Instant::now();
    let r = s.chat("fast").await;
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.a.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_beyond_the_bound_falls_back_at_once() {
    let s = Setup::start().await;
    s.a.push([status(429, Some("30"))]);
    let started = Instant::now();
    let r = s.chat("fast").await;
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!((s.a.hits(), s.b.hits()), (1, 1));
    assert_eq!(s.b.requests()[0].body["model"], "small-b");
    assert_eq!(
        s.b.requests()[0].headers["authorization"],
        "Bearer sk-secondary-0123456789"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_falls_back_to_the_next_target() {
    let s = Setup::start().await;
    s.a.push([status(500, None), status(502, None)]);
    let r = s.chat("fast").await;
    assert_eq!(r.status(), 200);
    assert_eq!((s.a.hits(), s.b.hits()), (2, 1));
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"warden_upstream_retries_total{provider="primary"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"warden_fallbacks_total{model="fast",to="secondary"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_targets_failing_gives_a_clear_upstream_error_without_secrets() {
    let s = Setup::start().await;
    s.a.push([status(503, None), status(503, None)]);
    s.b.push([status(500, None), status(500, None)]);
    let (code, body) = error_code(s.chat("fast").await, 502).await;
    assert_eq!(code, "upstream_unavailable");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("primary") && msg.contains("secondary") && msg.contains("4 attempts"),
        "{msg}"
    );
    assert!(!body.to_string().contains("sk-"), "{body}");
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "no internal address: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_targets_rate_limited_gives_429_with_retry_after() {
    let s = Setup::start().await;
    s.a.push([status(429, Some("0")), status(429, Some("0"))]);
    s.b.push([status(429, Some("1")), status(429, Some("1"))]);
    let r = s.chat("fast").await;
    assert_eq!(r.headers()["retry-after"], "1");
    let (code, body) = error_code(r, 429).await;
    assert_eq!(code, "upstream_rate_limited");
    assert_eq!(body["error"]["type"], "rate_limit_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_malformed_answers_fall_back() {
    let s = Setup::start().await;
    // Provider timeout is 2s in the test config.
    s.a.push([
        Reply::Delay(Duration::from_secs(3), Box::new(Reply::Text("late".into()))),
        Reply::Malformed,
    ]);
    let r = s.chat("fast").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hello");
    assert_eq!((s.a.hits(), s.b.hits()), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_from_upstream_are_not_retried_and_keys_are_scrubbed() {
    let s = Setup::start().await;
    s.a.push([Reply::Status {
        status: 400,
        retry_after: None,
        message: "bad request for key sk-primary-0123456789abcdef (sk-prim...cdef)".into(),
    }]);
    let (code, body) = error_code(s.chat("fast").await, 400).await;
    assert_eq!(code, "upstream_rejected");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("provider `primary`: "), "{msg}");
    assert!(msg.contains("withheld"), "{msg}");
    assert!(
        !msg.contains("0123456789abcdef") && !msg.contains("sk-prim"),
        "{msg}"
    );
    assert_eq!((s.a.hits(), s.b.hits()), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_key_echoed_in_any_form_never_reaches_the_client() {
    use base64::Engine;
    let s = Setup::start().await;
    let key = "sk-primary-0123456789abcdef";
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    let spaced: Vec<String> = key.chars().map(|c| c.to_string()).collect();
    let forms = [
        format!("key fragment {}", &key[2..22]),
        format!("auth header was {}", b64(&format!("Bearer {key}"))),
        format!("key {} refused", key.to_uppercase()),
        format!("key {} refused", spaced.join(" ")),
        format!("key {} refused", key.replace('-', ".")),
        // Another credential the detectors know.
        "token ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R rejected".to_owned(),
    ];
    for form in &forms {
        s.a.push([Reply::Status {
            status: 400,
            retry_after: None,
            message: form.clone(),
        }]);
        let (_, body) = error_code(s.chat("fast").await, 400).await;
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains("withheld"), "{form} -> {msg}");
    }
    // A message with nothing of the kind passes as it came.
    s.a.push([Reply::Status {
        status: 400,
        retry_after: None,
        message: "`temperature` must be between 0 and 2".into(),
    }]);
    let (_, body) = error_code(s.chat("fast").await, 400).await;
    assert_eq!(
        body["error"]["message"],
        "provider `primary`: `temperature` must be between 0 and 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_provider_key_falls_back_and_is_reported_as_ours_not_the_clients() {
    let s = Setup::start().await;
    s.a.push([status(401, None)]);
    assert_eq!(s.chat("fast").await.status(), 200);
    assert_eq!((s.a.hits(), s.b.hits()), (1, 1));
    s.a.push([status(401, None)]);
    s.b.push([status(403, None)]);
    let (code, _) = error_code(s.chat("fast").await, 502).await;
    assert_eq!(code, "upstream_auth_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_skips_a_failing_provider_and_probes_it_later() {
    let s = Setup::start().await;
    // Threshold 3: two failed attempts on the first request, one on the second.
    s.a.push([status(503, None), status(503, None), status(503, None)]);
    assert_eq!(s.chat("fast").await.status(), 200);
    assert_eq!(s.chat("fast").await.status(), 200);
    let hits_when_open = s.a.hits();
    assert_eq!(hits_when_open, 3);
    // Open: the primary is skipped entirely.
    for _ in 0..3 {
        assert_eq!(s.chat("fast").await.status(), 200);
    }
    assert_eq!(s.a.hits(), hits_when_open, "open circuit sends nothing");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"warden_circuit_state{provider="primary"} 1"#),
        "{metrics}"
    );
    // After the cooldown one probe goes through; its success closes the circuit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.chat("fast").await.status(), 200);
    assert_eq!(s.a.hits(), hits_when_open + 1);
    assert_eq!(s.chat("fast").await.status(), 200);
    assert_eq!(s.a.hits(), hits_when_open + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_circuit_is_open_the_answer_is_503() {
    let s = Setup::start().await;
    s.a.push((0..3).map(|_| status(503, None)));
    s.b.push((0..3).map(|_| status(503, None)));
    // Each request makes 2 attempts on each provider: after two requests both are open.
    let _ = s.chat("fast").await;
    let _ = s.chat("fast").await;
    let (code, _) = error_code(s.chat("fast").await, 503).await;
    assert_eq!(code, "no_provider_available");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_failing_before_the_first_byte_falls_back() {
    let s = Setup::start().await;
    s.a.push([status(503, None), Reply::StreamReset { pieces: vec![] }]);
    let events = s.stream(chat_body("fast")).await;
    assert_eq!(events.last().unwrap(), "[DONE]", "{events:?}");
    assert!(!events.iter().any(|e| e.contains("error")), "{events:?}");
    assert_eq!(
        (s.a.hits(), s.b.hits()),
        (2, 1),
        "503 retried, reset before first byte, then fallback"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_stream_reset_ends_with_an_error_event_not_a_silent_success() {
    let s = Setup::start().await;
    s.a.push([Reply::StreamReset {
        pieces: vec!["partial ".into(), "answer".into()],
    }]);
    let events = s.stream(chat_body("fast")).await;
    assert!(events.iter().any(|e| e.contains("partial")), "{events:?}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_interrupted");
    assert!(!events.contains(&"[DONE]".to_owned()));
    assert_eq!(s.b.hits(), 0, "no fallback after bytes reached the client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_ending_without_done_is_reported_as_interrupted() {
    let s = Setup::start().await;
    s.a.push([Reply::StreamTruncated {
        pieces: vec!["cut".into()],
    }]);
    let events = s.stream(chat_body("fast")).await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_interrupted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_chunks_are_forwarded_as_they_arrive() {
    let s = Setup::start().await;
    s.a.push([Reply::Stream {
        pieces: vec!["one ".into(), "two ".into(), "three".into()],
        delay: Duration::from_millis(300),
    }]);
    let mut body = chat_body("fast");
    body["stream"] = json!(true);
    let started = Instant::now();
    let mut resp = s.post("/v1/chat/completions", body).await;
    let mut first_content_at = None;
    let mut all = String::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        all.push_str(&String::from_utf8_lossy(&chunk));
        if first_content_at.is_none() && all.contains("one ") {
            first_content_at = Some(started.elapsed());
        }
    }
    let total = started.elapsed();
    let first = first_content_at.expect("content arrived");
    // Pieces are 300ms apart: the first one must arrive long before the stream ends.
    assert!(
        total - first >= Duration::from_millis(500),
        "first at {first:?}, total {total:?}"
    );
    assert!(all.ends_with("data: [DONE]\n\n"));
}
