//! Handler tests without sockets: the router is called with `oneshot`, backed by a real
//! SQLite store in a temporary folder and a gateway whose one provider is the mock upstream.

#![allow(clippy::unwrap_used)] // test helpers fail by panicking

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;
use warden_config::Config;
use warden_gateway::{Gateway, KeySpec};
use warden_server::{AppState, KeyCache};
use warden_store::{NewKeyRecord, SqlStore, Store, UsageWriter};
use warden_testkit::MockUpstream;

struct App {
    router: axum::Router,
    key: String,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
    _mock: MockUpstream,
}

async fn app() -> App {
    let mock = MockUpstream::start().await;
    let config = Config::from_toml(&format!(
        "[providers.p]\nbase_url = \"{}\"\n[models.m]\ntargets = [{{ provider = \"p\", model = \"up\" }}]\n",
        mock.base_url()
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite_dir(dir.path()).await.unwrap());
    let gateway = Gateway::new(&config, |_, _| Ok(KeySpec::None), store.clone(), None).unwrap();
    let new = warden_core::keys::generate();
    store
        .insert_key(&NewKeyRecord {
            id: "key_1".into(),
            name: "t".into(),
            hash: new.hash,
            prefix: new.display_prefix,
            models: None,
            created_at: 0,
            expires_at: None,
            admin: false,
            agents: Vec::new(),
            max_agents: None,
            lineage_id: "key_1".into(),
        })
        .await
        .unwrap();
    let (writer, usage) = UsageWriter::new(store.clone());
    tokio::spawn(writer.run(std::future::pending()));
    let state = Arc::new(AppState {
        store: store.clone(),
        gateway: Arc::new(gateway),
        recorder: warden_gateway::Recorder::new(None, usage, false),
        deployment: "unit-1".parse().unwrap(),
        max_body_bytes: 1024,
        body_read_timeout: std::time::Duration::from_secs(10),
        min_body_rate: 1024,
        keys: KeyCache::new(std::time::Duration::from_secs(1)),
        metrics: None,
        agents: None,
        models: ["m".to_owned()].into(),
    });
    App {
        router: warden_server::router(state),
        key: new.plain.expose().to_owned(),
        store,
        _dir: dir,
        _mock: mock,
    }
}

async fn send(app: &App, req: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn post(app: &App, body: impl Into<Body>) -> Request<Body> {
    Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {}", app.key))
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn chat_answers_with_trace_headers_and_records_usage() {
    let app = app().await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let (status, headers, v) = send(&app, post(&app, body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hi");
    assert_eq!(headers["x-warden-deployment"], "unit-1");
    let id = headers["x-request-id"].to_str().unwrap().to_owned();
    for _ in 0..100 {
        if let Some(row) = app.store.recent_usage(1).await.unwrap().first() {
            assert_eq!(row.request_id, id);
            assert_eq!(row.upstream_model.as_deref(), Some("up"));
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no usage row");
}

#[tokio::test]
async fn errors_use_the_openai_shape() {
    let app = app().await;
    let (status, headers, v) = send(&app, post(&app, "{oops")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(headers.contains_key("x-request-id"));

    let big = format!(
        "{{\"model\":\"m\",\"messages\":[\"{}\"]}}",
        "x".repeat(2000)
    );
    let (status, _, v) = send(&app, post(&app, big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(v["error"]["code"], "payload_too_large");

    let body = json!({"model": "unknown", "messages": [{}]}).to_string();
    let (status, _, v) = send(&app, post(&app, body)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "model_not_found");

    // Every authenticated request leaves a usage row, refusals included.
    let mut statuses = Vec::new();
    for _ in 0..100 {
        statuses = app
            .store
            .recent_usage(10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.status)
            .collect();
        if statuses.len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(statuses, vec![404, 413, 400]);

    let req = Request::get("/v1/models").body(Body::empty()).unwrap();
    let (status, headers, v) = send(&app, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(v["error"]["type"], "authentication_error");
}

#[tokio::test]
async fn metrics_route_is_off_without_a_recorder() {
    let app = app().await;
    let (status, _, v) = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "not_found");
}
