use crate::{Setup, chat_body, error_code};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_key_is_refused_within_the_key_cache_ttl() {
    let s = Setup::start().await;
    assert_eq!(s.chat("fast").await.status(), 200);
    let (code, _, err) = s.warden.cli(&["keys", "revoke", "test"]);
    assert_eq!(code, 0, "{err}");
    let revoked_at = std::time::Instant::now();
    while s.chat("fast").await.status() == 200 {
        assert!(
            revoked_at.elapsed() < Duration::from_millis(1500),
            "revoked key still works"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        error_code(s.chat("fast").await, 401).await.0,
        "invalid_api_key"
    );
    let (code, _, err) = s.warden.cli(&["keys", "revoke", "test"]);
    assert_ne!(code, 0);
    assert!(err.contains("no key named `test`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_key_cache_off_revocation_is_immediate() {
    let s = Setup::start_with("[server]\nkey_cache_ttl = \"0s\"\n").await;
    assert_eq!(s.chat("fast").await.status(), 200);
    let (code, _, err) = s.warden.cli(&["keys", "revoke", "test"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        error_code(s.chat("fast").await, 401).await.0,
        "invalid_api_key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_the_old_key_for_the_grace_period_only() {
    let s = Setup::start().await;
    let (code, out, err) = s.warden.cli(&["keys", "rotate", "test", "--grace", "2s"]);
    assert_eq!(code, 0, "{err}");
    let new_key = out.trim().to_owned();
    assert!(new_key.starts_with("wdn_") && new_key != s.key);
    let call = |key: String| {
        let http = s.http.clone();
        let url = s.url("/v1/chat/completions");
        async move {
            http.post(url)
                .bearer_auth(key)
                .json(&chat_body("fast"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(call(s.key.clone()).await, 200, "old key works during grace");
    assert_eq!(call(new_key.clone()).await, 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        call(s.key.clone()).await,
        401,
        "old key refused after grace"
    );
    assert_eq!(call(new_key).await, 200);
    let (_, list, _) = s.warden.cli(&["keys", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let statuses: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["active", "expired"]);
    assert!(
        !list.to_string().contains(&s.key),
        "list never shows key values"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_key_is_refused() {
    let s = Setup::start().await;
    let (code, out, err) = s
        .warden
        .cli(&["keys", "create", "--name", "short", "--expires", "1s"]);
    assert_eq!(code, 0, "{err}");
    let short = out.trim().to_owned();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = s.chat_as(&short, "fast").await;
    assert_eq!(error_code(r, 401).await.0, "invalid_api_key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_commands_reject_bad_input_clearly() {
    let s = Setup::start().await;
    let (code, _, err) = s.warden.cli(&["keys", "create", "--name", "test"]);
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = s
        .warden
        .cli(&["keys", "create", "--name", "x", "--expires", "soon"]);
    assert_eq!(code, 2);
    assert!(err.contains("--expires"), "{err}");
    let (code, _, err) = s.warden.cli(&["keys", "create", "--name", "bad name"]);
    assert_eq!(code, 2);
    assert!(err.contains("--name"), "{err}");
    let (code, _, _) = s.warden.cli(&["keys", "rotate", "nobody"]);
    assert_ne!(code, 0);
}
