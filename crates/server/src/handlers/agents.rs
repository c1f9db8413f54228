//! The agents API (virtual-key auth; an agent belongs to the key that created it):
//!
//! - `POST /v1/agents/{definition}/{name}/messages` `{"content": "...", "stream": false}`
//! - `GET /v1/agents/{definition}/{name}` — the state
//! - `GET /v1/agents/{definition}/{name}/history?cursor=&limit=` — the journal, paged
//! - `POST /v1/agents/{definition}/{name}/reset` — back to idle, history kept
//! - `POST /v1/agents/{definition}/{name}/resume` — continue a failed or interrupted task
//!
//! With `stream: true`, the task's steps come as Server-Sent Events (`state`, `model_text`,
//! `tool_call`, `tool_result`, `done`).

use crate::auth::AuthedKey;
use crate::request_id::RequestId;
use crate::{ApiError, AppState};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use warden_agents::{AgentError, Agents, Outcome, Principal, TaskEvent};
use warden_core::ErrorCode;
use warden_store::{AgentRecord, StepRecord};

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        let code = match &e {
            AgentError::UnknownDefinition(_) | AgentError::NotFound(_) => ErrorCode::NotFound,
            AgentError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            AgentError::NotYours(_) => ErrorCode::AgentForbidden,
            AgentError::DefinitionNotAllowed(_) => ErrorCode::AgentNotAllowed,
            AgentError::ModelNotAllowed(..) => ErrorCode::ModelNotAllowed,
            AgentError::AgentLimitReached(_) => ErrorCode::AgentLimitReached,
            AgentError::NothingToResume(_) => ErrorCode::AgentNotResumable,
            AgentError::Blocked(_) => ErrorCode::SensitiveDataBlocked,
            AgentError::TooComplex(_) => ErrorCode::PayloadTooComplex,
            AgentError::Store(detail) => {
                tracing::error!(error = %detail, "agent store failure");
                return ApiError::new(
                    ErrorCode::StoreUnavailable,
                    "the agent store is unavailable; retry later",
                );
            }
            AgentError::LeaseLost(_) => {
                tracing::warn!(error = %e, "agent lease lost");
                return ApiError::new(
                    ErrorCode::StoreUnavailable,
                    "the agent moved to another instance; retry",
                );
            }
            AgentError::AuditUnavailable(detail) => {
                tracing::error!(error = %detail, "agent work refused: the audit log cannot record");
                return ApiError::new(
                    ErrorCode::AuditUnavailable,
                    "the audit log cannot record this agent's work, so the task stopped (failed, resumable); resume it once the log is back",
                );
            }
            AgentError::ApprovalPending(_) => ErrorCode::ApprovalPending,
            AgentError::ReadOnly(_) => ErrorCode::AgentReadOnly,
            AgentError::Stopped => ErrorCode::StoreUnavailable,
            AgentError::ApprovalNotFound(_) => ErrorCode::NotFound,
            AgentError::ApprovalNotPending(..) => ErrorCode::ApprovalNotPending,
            AgentError::ApproverRefused(_) => ErrorCode::ApproverForbidden,
            AgentError::BadSignature(_) => ErrorCode::BadSignature,
        };
        ApiError::new(code, e.to_string())
    }
}

fn agents(state: &AppState) -> Result<&Agents, ApiError> {
    state
        .agents
        .as_ref()
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "agents are not enabled"))
}

fn caller(key: &AuthedKey, request_id: Option<&RequestId>) -> Principal {
    Principal::for_key(&key.0, request_id.map(|r| r.0.clone()).unwrap_or_default())
}

fn iso_ms(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| {
        Value::from(warden_core::time::iso8601(ms.div_euclid(1000)))
    })
}

fn state_json(agents: &Agents, r: &AgentRecord) -> Value {
    let permissions = agents
        .definition(&r.definition)
        .map(|d| match d.permissions {
            warden_config::Permissions::ReadOnly => "read-only",
            warden_config::Permissions::ReadWrite => "read-write",
        });
    json!({
        "object": "agent",
        "id": r.id,
        "definition": r.definition,
        "name": r.name,
        "status": r.status,
        "status_reason": r.status_reason,
        "task_id": r.task_id,
        "task": r.task,
        "tokens_used": r.tokens_used,
        "steps": r.steps,
        "permissions": permissions,
        "lease_epoch": r.epoch,
        "last_verified_at": iso_ms(r.last_verified_at),
        "created_at": iso_ms(Some(r.created_at)),
        "updated_at": iso_ms(Some(r.updated_at)),
    })
}

fn outcome_json(o: &Outcome) -> Value {
    json!({
        "object": "agent.task",
        "agent": o.agent_id,
        "task_id": o.task_id,
        "status": o.status,
        "result": o.result,
        "reason": o.reason,
        "answer": o.answer,
        "model_steps": o.model_steps,
        "tokens_used": o.tokens_used,
    })
}

fn step_json(s: &StepRecord) -> Value {
    json!({
        "seq": s.seq,
        "task_id": s.task_id,
        "kind": s.kind,
        "data": serde_json::from_str::<Value>(&s.data).unwrap_or(Value::Null),
        "tokens": s.tokens,
        "started_at": iso_ms(Some(s.started_at)),
        "finished_at": iso_ms(Some(s.finished_at)),
        "duration_ms": s.finished_at - s.started_at,
    })
}

fn sse(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn event_bytes(e: &TaskEvent) -> Bytes {
    match e {
        TaskEvent::State { status } => sse("state", &json!({"status": status})),
        TaskEvent::ModelText { content } => sse("model_text", &json!({"content": content})),
        TaskEvent::ToolCall {
            tool,
            classification,
            arguments,
        } => sse(
            "tool_call",
            &json!({"tool": tool, "classification": classification, "arguments": arguments}),
        ),
        TaskEvent::ToolResult {
            tool,
            outcome,
            summary,
        } => sse(
            "tool_result",
            &json!({"tool": tool, "outcome": outcome, "summary": summary}),
        ),
        TaskEvent::Done(o) => sse("done", &outcome_json(o)),
    }
}

/// The body of `messages` and `resume`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskBody {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    stream: bool,
}

/// Largest message body accepted.
const MAX_MESSAGE_BYTES: usize = 256 * 1024;

async fn read_task_body(req: Request, required: bool) -> Result<TaskBody, ApiError> {
    let bytes = axum::body::to_bytes(req.into_body(), MAX_MESSAGE_BYTES)
        .await
        .map_err(|e| {
            if crate::slow_body::is_slow_body(&e) {
                return crate::slow_body::refusal();
            }
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the body exceeds {MAX_MESSAGE_BYTES} bytes"),
            )
        })?;
    if bytes.is_empty() && !required {
        return Ok(TaskBody::default());
    }
    let body: TaskBody = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "the body is not valid: {e} (expected {{\"content\": \"...\", \"stream\": false}})"
            ),
        )
    })?;
    if required && body.content.as_deref().is_none_or(|c| c.trim().is_empty()) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "`content` is required",
        ));
    }
    Ok(body)
}

/// Runs a task (a new message or a resume), whole or streamed.
async fn run_task(
    agents: Agents,
    caller: Principal,
    definition: String,
    name: String,
    content: Option<String>,
    stream: bool,
) -> Response {
    // Refusals that need no step (a definition not given, another key's agent, a bad name)
    // keep their status instead of arriving as an error event in a 200 stream.
    if stream
        && let Err(e) = agents
            .authorize(&caller, &definition, &name, content.is_some())
            .await
    {
        return ApiError::from(e).into_response();
    }
    let run = move |events| {
        let agents = agents.clone();
        async move {
            match content {
                Some(c) => agents.message(caller, &definition, &name, c, events).await,
                None => agents.resume(caller, &definition, &name, events).await,
            }
        }
    };
    if !stream {
        return match run(None).await {
            Ok(o) => Json(outcome_json(&o)).into_response(),
            Err(e) => ApiError::from(e).into_response(),
        };
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<TaskEvent>(64);
    let (err_tx, err_rx) = tokio::sync::oneshot::channel::<ApiError>();
    tokio::spawn(async move {
        if let Err(e) = run(Some(tx)).await {
            let _ = err_tx.send(ApiError::from(e));
        }
    });
    let events = tokio_stream::wrappers::ReceiverStream::new(rx).map(|e| event_bytes(&e));
    // A refusal before any step (unknown agent, another key's agent) ends the stream with an
    // error event.
    let tail = futures_util::stream::once(async move {
        match err_rx.await {
            Ok(e) => sse("error", &e.body()),
            Err(_) => Bytes::new(),
        }
    })
    .filter(|b| futures_util::future::ready(!b.is_empty()));
    let body = Body::from_stream(events.chain(tail).map(Ok::<_, std::convert::Infallible>));
    (
        [
            (http::header::CONTENT_TYPE, "text/event-stream"),
            (http::header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `POST /v1/agents/{definition}/{name}/messages`.
pub(crate) async fn message(
    State(state): State<Arc<AppState>>,
    key: AuthedKey,
    Path((definition, name)): Path<(String, String)>,
    req: Request,
) -> Response {
    let agents = match agents(&state) {
        Ok(a) => a.clone(),
        Err(e) => return e.into_response(),
    };
    let caller = caller(&key, req.extensions().get::<RequestId>());
    let body = match read_task_body(req, true).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    run_task(agents, caller, definition, name, body.content, body.stream).await
}

/// `POST /v1/agents/{definition}/{name}/resume`.
pub(crate) async fn resume(
    State(state): State<Arc<AppState>>,
    key: AuthedKey,
    Path((definition, name)): Path<(String, String)>,
    req: Request,
) -> Response {
    let agents = match agents(&state) {
        Ok(a) => a.clone(),
        Err(e) => return e.into_response(),
    };
    let caller = caller(&key, req.extensions().get::<RequestId>());
    let body = match read_task_body(req, false).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if body.content.is_some() {
        return ApiError::new(
            ErrorCode::InvalidRequest,
            "resume takes no `content`; send a message instead",
        )
        .into_response();
    }
    run_task(agents, caller, definition, name, None, body.stream).await
}

/// `POST /v1/agents/{definition}/{name}/reset`.
pub(crate) async fn reset(
    State(state): State<Arc<AppState>>,
    key: AuthedKey,
    Path((definition, name)): Path<(String, String)>,
    request_id: Option<axum::Extension<RequestId>>,
) -> Response {
    let caller = caller(&key, request_id.as_ref().map(|r| &r.0));
    let result = async {
        let agents = agents(&state)?;
        let record = agents.reset(caller, &definition, &name).await?;
        Ok::<_, ApiError>(Json(state_json(agents, &record)).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/agents/{definition}/{name}`.
pub(crate) async fn get_state(
    State(state): State<Arc<AppState>>,
    key: AuthedKey,
    Path((definition, name)): Path<(String, String)>,
    request_id: Option<axum::Extension<RequestId>>,
) -> Response {
    let result = async {
        let agents = agents(&state)?;
        let caller = caller(&key, request_id.as_ref().map(|r| &r.0));
        let record = agents.state(&caller, &definition, &name).await?;
        Ok::<_, ApiError>(Json(state_json(agents, &record)).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// The history query string.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    cursor: Option<i64>,
    limit: Option<u32>,
}

/// `GET /v1/agents/{definition}/{name}/history?cursor=&limit=`.
pub(crate) async fn history(
    State(state): State<Arc<AppState>>,
    key: AuthedKey,
    Path((definition, name)): Path<(String, String)>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let Query(q) = query.map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("bad query string: {}", e.body_text()),
            )
        })?;
        let agents = agents(&state)?;
        let caller = caller(&key, None);
        let page = agents
            .history(
                &caller,
                &definition,
                &name,
                q.cursor.unwrap_or(0).max(0),
                q.limit.unwrap_or(50),
            )
            .await?;
        Ok::<_, ApiError>(
            Json(json!({
                "object": "list",
                "data": page.steps.iter().map(step_json).collect::<Vec<_>>(),
                "next_cursor": page.next_cursor,
            }))
            .into_response(),
        )
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}
