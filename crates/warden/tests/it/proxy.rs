use crate::{Setup, chat_body, error_code, sse_events};
use serde_json::{Value, json};
use warden_testkit::Reply;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_is_routed_to_the_first_target_with_its_model_name_key_and_headers() {
    let s = Setup::start().await;
    let r = s.chat("quick").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-warden-deployment"], "test-deploy-1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "echo: hello");
    let seen = s.a.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].body["model"], "small-a",
        "alias resolved to the target's model"
    );
    assert_eq!(
        seen[0].headers["authorization"],
        "Bearer sk-primary-0123456789abcdef"
    );
    assert_eq!(seen[0].headers["x-team"], "agents");
    assert_ne!(
        seen[0].headers["authorization"],
        format!("Bearer {}", s.key),
        "virtual key never leaves"
    );
    assert_eq!(s.b.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_and_tool_definitions_pass_through_untouched() {
    let s = Setup::start().await;
    s.a.push([Reply::ToolCall {
        name: "get_weather".into(),
        arguments: r#"{"city":"Paris"}"#.into(),
    }]);
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let body = json!({"model": "fast", "messages": [{"role": "user", "content": "weather?"}],
        "tools": tools, "tool_choice": "auto", "x_vendor_feature": {"nested": [1, 2, 3]},
        "temperature": 0.2});
    let r = s.post("/v1/chat/completions", body).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    let call = &answer["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], r#"{"city":"Paris"}"#);
    let sent = &s.a.requests()[0].body;
    assert_eq!(sent["tools"], tools);
    assert_eq!(sent["tool_choice"], "auto");
    assert_eq!(sent["x_vendor_feature"]["nested"], json!([1, 2, 3]));
    assert_eq!(sent["temperature"], 0.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_forwards_events_and_hides_usage_unless_asked() {
    let s = Setup::start().await;
    let mut body = chat_body("fast");
    body["stream"] = json!(true);
    let r = s.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let events = sse_events(r).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let text: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(text, "echo: hello");
    assert!(
        !events.iter().any(|e| e.contains("\"usage\":{")),
        "usage chunk was not asked for"
    );
    assert_eq!(
        s.a.requests()[0].body["stream_options"]["include_usage"],
        true
    );

    body["stream_options"] = json!({"include_usage": true});
    let events = sse_events(s.post("/v1/chat/completions", body).await).await;
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["prompt_tokens"], 10);
    assert_eq!(usage["choices"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_tool_calls_arrive_intact() {
    let s = Setup::start().await;
    s.a.push([Reply::ToolCall {
        name: "lookup".into(),
        arguments: r#"{"id":42,"q":"x"}"#.into(),
    }]);
    let events = s.stream(chat_body("fast")).await;
    let args: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(args, r#"{"id":42,"q":"x"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_are_proxied() {
    let s = Setup::start().await;
    let r = s
        .post(
            "/v1/embeddings",
            json!({"model": "fast", "input": ["a", "b"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(s.a.requests()[0].path, "/v1/embeddings");
    assert_eq!(s.a.requests()[0].body["model"], "small-a");
    let (code, _) = error_code(
        s.post("/v1/embeddings", json!({"model": "fast"})).await,
        400,
    )
    .await;
    assert_eq!(code, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_names_pass_through_to_the_default_provider() {
    let s = Setup::start().await;
    assert_eq!(s.chat("gpt-4o-mini").await.status(), 200);
    assert_eq!(s.a.requests()[0].body["model"], "gpt-4o-mini");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_configured_names_aliases_and_upstream_models() {
    let s = Setup::start().await;
    let v: Value = s
        .http
        .get(s.url("/v1/models"))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<(&str, &str)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["owned_by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ids,
        vec![
            ("fast", "warden"),
            ("quick", "warden"),
            ("mock-large", "primary"),
            ("mock-small", "primary")
        ]
    );
    // The upstream list is reused for a minute, not fetched on every call.
    let again = s
        .http
        .get(s.url("/v1/models"))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let asked =
        s.a.requests()
            .iter()
            .filter(|r| r.path == "/v1/models")
            .count();
    assert_eq!(asked, 1);
    assert_eq!(
        s.a.requests()[0].headers["authorization"],
        "Bearer sk-primary-0123456789abcdef"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_leaves_a_usage_row_and_metrics() {
    let s = Setup::start().await;
    let r = s
        .http
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(&s.key)
        .header("x-request-id", "client-trace-123")
        .json(&chat_body("fast"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-client-request-id"], "client-trace-123");
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(id.starts_with("req_"), "Warden's own id: {id}");
    r.text().await.unwrap();
    let store = warden_store::SqlStore::open_sqlite_dir(&s.warden.data_dir)
        .await
        .unwrap();
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = warden_store::UsageStore::recent_usage(&store, 10)
            .await
            .unwrap();
        if !rows.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.request_id, id);
    assert_eq!(
        (row.endpoint.as_str(), row.model.as_str()),
        ("chat.completions", "fast")
    );
    assert_eq!(
        (row.provider.as_deref(), row.upstream_model.as_deref()),
        (Some("primary"), Some("small-a"))
    );
    assert_eq!(
        (row.status, row.prompt_tokens, row.completion_tokens),
        (200, Some(10), Some(2))
    );
    assert_eq!(
        (row.attempts, row.deployment.as_str()),
        (1, "test-deploy-1")
    );
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(
            r#"warden_requests_total{endpoint="chat.completions",model="fast",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"warden_tokens_total{model="fast",kind="prompt"} 10"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("warden_upstream_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"warden_circuit_state{provider="primary"} 0"#),
        "{metrics}"
    );
    assert!(!metrics.contains("sk-primary"), "no secret in metrics");
}
