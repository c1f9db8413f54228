//! State shared by every handler, built once at start-up.

use http::HeaderValue;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use warden_gateway::Gateway;
use warden_store::Store;

/// What handlers need; handed to them as `Arc<AppState>`.
pub struct AppState {
    /// Persistent state.
    pub store: Arc<dyn Store>,
    /// The model pipeline.
    pub gateway: Arc<Gateway>,
    /// Usage rows and audit records, with the fail-closed policy (shared with the agents).
    pub recorder: warden_gateway::Recorder,
    /// Value of `x-warden-deployment` on every response.
    pub deployment: HeaderValue,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// The longest wait for the next piece of a request body, and the grace before
    /// `min_body_rate` applies (`server.body_read_timeout`).
    pub body_read_timeout: std::time::Duration,
    /// The slowest a request body may arrive, in bytes per second on average; 0 is no
    /// minimum (`server.min_body_rate`).
    pub min_body_rate: u64,
    /// Recently looked-up virtual keys.
    pub keys: crate::KeyCache,
    /// Renders `/metrics`; `None` turns the route off (404).
    pub metrics: Option<PrometheusHandle>,
    /// The durable agents; `None` when the server runs without them (handler tests).
    pub agents: Option<warden_agents::Agents>,
    /// Configured model names and aliases: the only values of the `model` label of
    /// `warden_requests_total` (anything else is counted as `other`, so clients cannot grow
    /// the public `/metrics` without bound).
    pub models: std::collections::HashSet<String>,
}

impl AppState {
    /// The deployment version as text (for usage rows).
    pub fn deployment_str(&self) -> &str {
        self.deployment.to_str().unwrap_or("unknown")
    }
}
