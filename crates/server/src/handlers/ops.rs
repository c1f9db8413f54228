//! Operational routes: liveness, readiness (the store answers), Prometheus metrics, and the
//! OpenAI-shaped answers for unknown routes and methods.

use crate::{ApiError, AppState};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use warden_core::ErrorCode;

/// `GET /healthz`: the process is up.
pub(crate) async fn healthz() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: the store answers, so requests can be authenticated and recorded.
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "readiness check failed");
            ApiError::new(ErrorCode::StoreUnavailable, "the store is unreachable").into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text, when enabled.
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let Some(handle) = &state.metrics else {
        return not_found().await;
    };
    state.gateway.export_circuit_states();
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// Any unknown route.
pub(crate) async fn not_found() -> Response {
    ApiError::new(ErrorCode::NotFound, "no such route").into_response()
}

/// A known route with the wrong method.
pub(crate) async fn method_not_allowed() -> Response {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
    .into_response()
}
