//! Every response carries `x-request-id` (the client's, when it sent a sane one, else a new
//! one) and `x-warden-deployment`, so any answer can be traced to the request and the
//! deployment that produced it. This layer also logs one line per request and counts it.

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use rand::RngCore;
use std::sync::Arc;
use std::time::Instant;

/// The request id, available to handlers as an extension.
#[derive(Clone)]
pub struct RequestId(pub String);

/// Accepts a client id of 1–128 visible characters from a safe set; anything else is replaced.
fn sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

fn generate() -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    format!("req_{}", warden_core::hex(&bytes))
}

/// The middleware.
pub(crate) async fn layer(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane(v))
        .map(str::to_owned)
        .unwrap_or_else(generate);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    let status = resp.status().as_u16();
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert("x-request-id", v);
    }
    headers.insert("x-warden-deployment", state.deployment.clone());
    metrics::counter!("warden_http_requests_total", "route" => route.clone(),
        "status" => status.to_string())
    .increment(1);
    if route != "/healthz" && route != "/metrics" {
        tracing::info!(request_id = %id, %method, %route, status,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "request");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_client_ids_are_kept() {
        assert!(sane("abc-123_X.y:z"));
        assert!(!sane(""));
        assert!(!sane("has space"));
        assert!(!sane("new\nline"));
        assert!(!sane(&"a".repeat(129)));
        let g = generate();
        assert!(sane(&g) && g.starts_with("req_") && g.len() == 28);
    }
}
