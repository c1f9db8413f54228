use crate::{FAST_RETRY, Setup, bin, chat_body, error_code};
use serde_json::json;
use warden_testkit::{MockUpstream, WardenProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413_whether_declared_or_streamed() {
    let s = Setup::start_with("[server]\nmax_body_bytes = 2048\n").await;
    let big = json!({"model": "fast", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let (code, _) = error_code(s.post("/v1/chat/completions", big.clone()).await, 413).await;
    assert_eq!(code, "payload_too_large");
    // Chunked upload without Content-Length.
    let bytes = serde_json::to_vec(&big).unwrap();
    let stream = futures_util::stream::iter(
        bytes
            .chunks(512)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let r = s
        .http
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(&s.key)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 413).await.0, "payload_too_large");
    assert_eq!(s.a.hits(), 0);
    // Just under the limit passes.
    assert_eq!(s.chat("fast").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_and_bad_fields_get_400_naming_the_problem() {
    let s = Setup::start().await;
    let r = s
        .http
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(&s.key)
        .header("content-type", "application/json")
        .body("{\"model\": \"fast\", \"messages\": [")
        .send()
        .await
        .unwrap();
    let (code, body) = error_code(r, 400).await;
    assert_eq!(code, "invalid_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1 column"),
        "{body}"
    );
    for (bad, needle) in [
        (
            json!({"messages": [{"role": "user", "content": "x"}]}),
            "`model`",
        ),
        (json!({"model": "fast"}), "`messages`"),
        (json!({"model": "fast", "messages": []}), "`messages`"),
        (
            json!({"model": "fast", "messages": [{}], "stream": "yes"}),
            "`stream`",
        ),
    ] {
        let (code, body) = error_code(s.post("/v1/chat/completions", bad).await, 400).await;
        assert_eq!(code, "invalid_request");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(needle),
            "{body}"
        );
    }
    assert_eq!(s.a.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_in_the_error_shape_with_trace_headers() {
    let s = Setup::start().await;
    let r = s
        .http
        .get(s.url("/v1/nothing"))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-warden-deployment"], "test-deploy-1");
    assert_eq!(error_code(r, 404).await.0, "not_found");
    let r = s
        .http
        .get(s.url("/v1/chat/completions"))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 405).await.0, "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insane_client_request_ids_are_replaced() {
    let s = Setup::start().await;
    let r = s
        .http
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(&s.key)
        .header("x-request-id", "x".repeat(300))
        .json(&chat_body("fast"))
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(id.starts_with("req_") && id.len() == 28, "{id}");
    assert_eq!(
        s.a.requests()[0].headers["x-request-id"],
        id.as_str(),
        "the id is sent upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_model_without_a_default_provider_is_404() {
    let mock = MockUpstream::start().await;
    let config = format!(
        "{FAST_RETRY}\n[providers.p]\nbase_url = \"{}\"\n[models.only]\ntargets = [{{ provider = \"p\", model = \"m\" }}]\n",
        mock.base_url()
    );
    let w = WardenProcess::start(&bin(), &config, &[]);
    let key = w.create_key("k", &[]);
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", w.url))
        .bearer_auth(&key)
        .json(&chat_body("gpt-unknown"))
        .send()
        .await
        .unwrap();
    let (code, body) = error_code(r, 404).await;
    assert_eq!(code, "model_not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gpt-unknown")
    );
    assert_eq!(mock.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_are_public() {
    let s = Setup::start().await;
    assert_eq!(
        s.http.get(s.url("/healthz")).send().await.unwrap().status(),
        200
    );
    let r = s.http.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "ready"
    );
}
