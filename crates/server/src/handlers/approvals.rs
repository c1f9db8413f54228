//! The approvals API (admin keys; the approver's identity is the Ed25519 signature):
//!
//! - `GET /v1/approvals?state=awaiting_approval&limit=50`
//! - `GET /v1/approvals/{id}` — with the preview of what would change
//! - `GET /v1/approvals/{id}/preview` — the preview computed again, with the real values
//! - `POST /v1/approvals/{id}/decision` `{"approver", "decision": "approve"|"deny",
//!   "comment", "signature"}` — verified, single use; the agent then continues
//! - `POST /v1/approvals/{id}/resolve` `{"approver", "outcome", "note", "signature"}` — a
//!   signed settlement of an unknown outcome

use crate::auth::AdminKey;
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use warden_core::ErrorCode;
use warden_store::ApprovalRecord;

fn iso(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| {
        warden_core::time::iso8601(ms.div_euclid(1000)).into()
    })
}

/// An approval request as JSON (shared with the CLI's output).
pub fn approval_json(a: &ApprovalRecord) -> Value {
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    json!({
        "object": "approval",
        "id": a.id,
        "agent": a.agent_id,
        "task_id": a.task_id,
        "tool": a.tool,
        "arguments": parse(&a.arguments),
        "arguments_canonical": a.arguments,
        "arguments_sha256": a.arguments_sha256,
        "requested_by": a.requested_by,
        "preview": parse(&a.preview),
        "state": a.state,
        "approver": a.approver,
        "decision": a.decision,
        "comment": a.comment,
        "decided_at": iso(a.decided_at),
        "result": a.result.as_deref().map(parse),
        "created_at": iso(Some(a.created_at)),
        "expires_at": iso(Some(a.expires_at)),
        "expires_at_ms": a.expires_at,
    })
}

/// The list query string.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    state: Option<String>,
    limit: Option<u32>,
}

/// An error of the approvals' read side: a store failure says only that (the detail goes to
/// the log), anything else as the agents say it.
fn read_error(e: warden_agents::AgentError) -> ApiError {
    if let warden_agents::AgentError::Store(detail) = &e {
        tracing::error!(error = %detail, "approval store failure");
        return ApiError::new(
            ErrorCode::StoreUnavailable,
            "the store is unavailable; retry later",
        );
    }
    e.into()
}

/// `GET /v1/approvals`.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    _admin: AdminKey,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let Query(q) = query.map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("bad query string: {}", e.body_text()),
            )
        })?;
        let rows = warden_agents::list_approvals(state.store.as_ref(), q.state.as_deref(), q.limit)
            .await
            .map_err(read_error)?;
        Ok::<_, ApiError>(
            Json(json!({"object": "list", "data": rows.iter().map(approval_json).collect::<Vec<_>>()}))
                .into_response(),
        )
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/approvals/{id}`.
pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    _admin: AdminKey,
    Path(id): Path<String>,
) -> Response {
    match warden_agents::approval(state.store.as_ref(), &id).await {
        Ok(a) => Json(approval_json(&a)).into_response(),
        Err(e) => read_error(e).into_response(),
    }
}

/// The decision body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionBody {
    approver: String,
    decision: String,
    #[serde(default)]
    comment: Option<String>,
    signature: String,
}

/// `POST /v1/approvals/{id}/decision`.
pub(crate) async fn decide(
    State(state): State<Arc<AppState>>,
    _admin: AdminKey,
    Path(id): Path<String>,
    body: Result<Json<DecisionBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let result = async {
        let Json(b) = body.map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "the body is not valid: {} (expected {{\"approver\", \"decision\", \"comment\", \"signature\"}})",
                    e.body_text()
                ),
            )
        })?;
        let decision = warden_agents::Decision::parse(&b.decision).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "`decision` must be approve or deny",
            )
        })?;
        if b.comment.as_ref().is_some_and(|c| c.len() > 2000) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "`comment` is at most 2000 characters",
            ));
        }
        let agents = state
            .agents
            .clone()
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "agents are not enabled"))?;
        // In its own task: a client that goes away cannot leave a decision audited but
        // not recorded.
        let decided = tokio::spawn(async move {
            agents
                .decide(&id, &b.approver, decision, b.comment, &b.signature)
                .await
        })
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "the decision did not finish"))??;
        Ok::<_, ApiError>(Json(approval_json(&decided)).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// The resolve body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResolveBody {
    approver: String,
    outcome: String,
    note: String,
    signature: String,
}

/// `POST /v1/approvals/{id}/resolve` `{"approver", "outcome": "succeeded"|"failed", "note",
/// "signature"}`: an approver settles a write whose outcome a crash left unknown, signing the
/// resolution (approval, agent, tool, arguments' hash, outcome, note) like a decision.
pub(crate) async fn resolve(
    State(state): State<Arc<AppState>>,
    _admin: AdminKey,
    Path(id): Path<String>,
    body: Result<Json<ResolveBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let result = async {
        let Json(b) = body.map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "the body is not valid: {} (expected {{\"approver\", \"outcome\", \"note\", \"signature\"}})",
                    e.body_text()
                ),
            )
        })?;
        let succeeded = match b.outcome.as_str() {
            "succeeded" => true,
            "failed" => false,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    "`outcome` must be succeeded or failed",
                ));
            }
        };
        if b.note.trim().is_empty() || b.note.len() > 2000 {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "`note` is 1 to 2000 characters: say how you checked",
            ));
        }
        let agents = state
            .agents
            .clone()
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "agents are not enabled"))?;
        let a = tokio::spawn(async move {
            agents
                .resolve(&id, &b.approver, succeeded, &b.note, &b.signature)
                .await
        })
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "the resolution did not finish"))??;
        Ok::<_, ApiError>(Json(approval_json(&a)).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/approvals/{id}/preview`: what the write would change, computed again now with the
/// real values (the stored preview is redacted), for an admin about to decide; `matches` says
/// whether it still changes exactly the rows of the stored preview.
pub(crate) async fn live_preview(
    State(state): State<Arc<AppState>>,
    admin: AdminKey,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let agents = state
            .agents
            .clone()
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "agents are not enabled"))?;
        // In its own task: a client that goes away cannot cut the preview's transaction off.
        let viewer = format!("key {}", admin.0.name);
        let id2 = id.clone();
        let (preview, matches) =
            tokio::spawn(async move { agents.live_preview(&id2, &viewer).await })
                .await
                .map_err(|_| ApiError::new(ErrorCode::Internal, "the preview did not finish"))??;
        Ok::<_, ApiError>(
            Json(json!({"object": "approval.preview", "id": id, "live": true,
                        "matches_stored_preview": matches, "preview": preview}))
            .into_response(),
        )
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}
