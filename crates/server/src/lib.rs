//! Everything HTTP-facing: the axum router, virtual-key authentication, the OpenAI-compatible
//! handlers (chat completions with SSE streaming, embeddings, models), request ids and the
//! deployment header, the request-body read limits, health, readiness and Prometheus metrics.
//!
//! Handlers stay thin: they authenticate, read the body within its limit, and hand the call to
//! the gateway. This crate must never log a key, a prompt or an answer, and every error it
//! returns uses the OpenAI error shape without internal details.

mod auth;
mod cost_headers;
mod error;
mod handlers;
mod key_cache;
mod request_id;
mod slow_body;
mod state;

pub use error::ApiError;
pub use handlers::approvals::approval_json;
pub use handlers::usage::group_json;
pub use key_cache::KeyCache;
pub use state::AppState;

use axum::Router;
use axum::routing::{get, post};
use std::sync::Arc;

/// Builds the router. Middleware order (outermost first): request id and deployment header
/// on every response (errors included), then the request-body read limits (`slow_body`: 408
/// to a body sent too slowly), then the routes; auth is an extractor on the routes that need
/// it, so it runs before any body is read.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(handlers::openai::chat_completions),
        )
        .route("/v1/embeddings", post(handlers::openai::embeddings))
        .route("/v1/models", get(handlers::openai::models))
        .route("/v1/usage", get(handlers::usage::usage))
        .route(
            "/v1/agents/{definition}/{name}",
            get(handlers::agents::get_state),
        )
        .route(
            "/v1/agents/{definition}/{name}/messages",
            post(handlers::agents::message),
        )
        .route(
            "/v1/agents/{definition}/{name}/history",
            get(handlers::agents::history),
        )
        .route(
            "/v1/agents/{definition}/{name}/reset",
            post(handlers::agents::reset),
        )
        .route(
            "/v1/agents/{definition}/{name}/resume",
            post(handlers::agents::resume),
        )
        .route("/v1/approvals", get(handlers::approvals::list))
        .route("/v1/approvals/{id}", get(handlers::approvals::get))
        .route(
            "/v1/approvals/{id}/preview",
            get(handlers::approvals::live_preview),
        )
        .route(
            "/v1/approvals/{id}/decision",
            post(handlers::approvals::decide),
        )
        .route(
            "/v1/approvals/{id}/resolve",
            post(handlers::approvals::resolve),
        )
        .route("/healthz", get(handlers::ops::healthz))
        .route("/readyz", get(handlers::ops::readyz))
        .route("/metrics", get(handlers::ops::metrics))
        .fallback(handlers::ops::not_found)
        .method_not_allowed_fallback(handlers::ops::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            slow_body::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_id::layer,
        ))
        .with_state(state)
}
