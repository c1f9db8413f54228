use crate::{Setup, chat_body, error_code};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wrong_and_malformed_keys_get_401_in_openai_shape() {
    let s = Setup::start().await;
    let url = s.url("/v1/chat/completions");
    let none = s
        .http
        .post(&url)
        .json(&chat_body("fast"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(none, 401).await.0, "missing_api_key");
    let wrong = format!("wdn_{}", "0".repeat(48));
    for token in [wrong.as_str(), "sk-not-a-warden-key", ""] {
        let r = s
            .http
            .post(&url)
            .bearer_auth(token)
            .json(&chat_body("fast"))
            .send()
            .await
            .unwrap();
        let (code, body) = error_code(r, 401).await;
        assert_eq!(code, "invalid_api_key");
        assert_eq!(body["error"]["type"], "authentication_error");
    }
    assert_eq!(
        s.a.hits(),
        0,
        "nothing reaches the provider without a valid key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_checked_before_the_body_is_read() {
    let s = Setup::start().await;
    let r = s
        .http
        .post(s.url("/v1/chat/completions"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 401).await.0, "missing_api_key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_limited_to_some_models_gets_403_for_others() {
    let s = Setup::start().await;
    let limited = s.warden.create_key("limited", &["--models", "quick"]);
    let ok = s.chat_as(&limited, "quick").await;
    assert_eq!(ok.status(), 200);
    let denied = s.chat_as(&limited, "fast").await;
    let (code, body) = error_code(denied, 403).await;
    assert_eq!(code, "model_not_allowed");
    assert_eq!(body["error"]["type"], "permission_error");
    // The model list shows only what the key may use.
    let models: serde_json::Value = s
        .http
        .get(s.url("/v1/models"))
        .bearer_auth(&limited)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["quick"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_route_requires_a_key() {
    let s = Setup::start().await;
    let r = s.http.get(s.url("/v1/models")).send().await.unwrap();
    assert_eq!(error_code(r, 401).await.0, "missing_api_key");
}
