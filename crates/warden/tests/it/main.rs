//! End-to-end tests: the real `warden` binary, started as a child process, against mock
//! upstreams the tests control.

#![allow(clippy::unwrap_used)] // test helpers fail by panicking

mod agent_access;
mod agents;
mod amplification;
mod approvals;
mod audit;
mod auth;
mod compat;
mod connections;
mod cost;
mod crash_writes;
mod demo;
mod fail_closed;
mod hardening;
mod keys;
mod leaks;
mod lifecycle;
mod limits;
mod postgres;
mod proxy;
mod redaction;
mod redteam12;
mod redteam12b;
mod resilience;
mod sql_firewall;
mod tidy;

use serde_json::{Value, json};
use std::path::PathBuf;
use warden_testkit::{MockUpstream, WardenProcess};

pub(crate) fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_warden"))
}

/// Fast retries and a quick breaker so fault tests finish in milliseconds.
pub(crate) const FAST_RETRY: &str = r#"
[retry]
attempts = 2
initial_backoff = "10ms"
max_backoff = "300ms"

[circuit_breaker]
failure_threshold = 3
cooldown = "400ms"
"#;

/// Two providers (two mocks) and a tiered model with an alias.
pub(crate) fn two_provider_config(a: &MockUpstream, b: &MockUpstream, extra: &str) -> String {
    format!(
        r#"
deployment = "test-deploy-1"
{FAST_RETRY}
[routing]
default_provider = "primary"

[providers.primary]
base_url = "{a}"
api_key_env = "PRIMARY_KEY"
timeout = "2s"
headers = {{ "X-Team" = "agents" }}

[providers.secondary]
base_url = "{b}"
api_key_env = "SECONDARY_KEY"
timeout = "2s"

[models.fast]
aliases = ["quick"]
targets = [{{ provider = "primary", model = "small-a" }}, {{ provider = "secondary", model = "small-b" }}]
{extra}
"#,
        a = a.base_url(),
        b = b.base_url()
    )
}

/// Local ports the tests' HTTP targets listen on, for `[http] allowed_hosts` (hosts allow
/// only ports 80 and 443 unless an entry names the port).
static LOCAL_PORTS: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// Registers a local HTTP target's port (before the config that should reach it is written).
pub(crate) fn allow_local_port(port: u16) {
    LOCAL_PORTS.lock().unwrap().push(port);
}

/// The port of a `http://127.0.0.1:PORT…` URL, registered as a target.
pub(crate) fn allow_local_url(url: &str) {
    let port = url
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("a URL with a port");
    allow_local_port(port);
}

/// `["localhost:P1", …]` for every registered target port, as a TOML array.
pub(crate) fn local_http_hosts() -> String {
    let ports = LOCAL_PORTS.lock().unwrap();
    let entries: Vec<String> = ports.iter().map(|p| format!("\"localhost:{p}\"")).collect();
    format!("[{}]", entries.join(", "))
}

pub(crate) const KEYS_ENV: [(&str, &str); 2] = [
    ("PRIMARY_KEY", "sk-primary-0123456789abcdef"),
    ("SECONDARY_KEY", "sk-secondary-0123456789"),
];

/// A running Warden with two mock upstreams and one key.
pub(crate) struct Setup {
    pub(crate) a: MockUpstream,
    pub(crate) b: MockUpstream,
    pub(crate) warden: WardenProcess,
    pub(crate) key: String,
    pub(crate) http: reqwest::Client,
}

impl Setup {
    pub(crate) async fn start() -> Self {
        Self::start_with("").await
    }

    pub(crate) async fn start_with(extra: &str) -> Self {
        let a = MockUpstream::start().await;
        let b = MockUpstream::start().await;
        let warden = WardenProcess::start(&bin(), &two_provider_config(&a, &b, extra), &KEYS_ENV);
        let key = warden.create_key("test", &[]);
        Self {
            a,
            b,
            warden,
            key,
            http: reqwest::Client::new(),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.warden.url)
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub(crate) async fn chat(&self, model: &str) -> reqwest::Response {
        self.post("/v1/chat/completions", chat_body(model)).await
    }

    /// A chat request with another key.
    pub(crate) async fn chat_as(&self, key: &str, model: &str) -> reqwest::Response {
        self.http
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&chat_body(model))
            .send()
            .await
            .unwrap()
    }

    /// `GET /metrics` as text.
    pub(crate) async fn metrics(&self) -> String {
        let r = self.http.get(self.url("/metrics")).send().await.unwrap();
        r.text().await.unwrap()
    }

    /// Starts a chat request in the background (for requests in flight during a signal).
    pub(crate) fn spawn_chat(
        &self,
        model: &str,
    ) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
        let req = self
            .http
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(&self.key)
            .json(&chat_body(model));
        tokio::spawn(req.send())
    }

    /// A streaming chat request; returns the `data:` payloads.
    pub(crate) async fn stream(&self, mut body: Value) -> Vec<String> {
        body["stream"] = json!(true);
        sse_events(self.post("/v1/chat/completions", body).await).await
    }
}

pub(crate) fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
}

/// Asserts the OpenAI error shape and returns `error.code`.
pub(crate) async fn error_code(resp: reqwest::Response, status: u16) -> (String, Value) {
    assert_eq!(resp.status().as_u16(), status);
    assert!(resp.headers().contains_key("x-request-id"));
    let body: Value = resp.json().await.expect("json error body");
    let err = &body["error"];
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(err["type"].is_string(), "{body}");
    (err["code"].as_str().unwrap_or_default().to_owned(), body)
}

/// Reads an SSE response into its `data:` payloads.
pub(crate) async fn sse_events(resp: reqwest::Response) -> Vec<String> {
    let text = resp.text().await.expect("stream body");
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}
