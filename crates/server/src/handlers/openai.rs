//! The OpenAI-compatible endpoints. Each authenticates (extractor), reads the body within its
//! limit, checks the key may use the model, runs the gateway and records one usage row.

use crate::auth::AuthedKey;
use crate::request_id::{ClientRequestId, RequestId};
use crate::{ApiError, AppState};
use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::StatusCode;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use warden_core::ErrorCode;
use warden_gateway::{CacheControl, Call, CallReport, Caller, Endpoint, Reply, Usage};
use warden_store::KeyRecord;

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(
    State(state): State<Arc<AppState>>,
    key: AuthedKey,
    req: Request,
) -> Response {
    proxy(state, key.0, req, Endpoint::ChatCompletions).await
}

/// `POST /v1/embeddings`.
pub(crate) async fn embeddings(
    State(state): State<Arc<AppState>>,
    key: AuthedKey,
    req: Request,
) -> Response {
    proxy(state, key.0, req, Endpoint::Embeddings).await
}

/// `GET /v1/models`: the models this key may use.
pub(crate) async fn models(State(state): State<Arc<AppState>>, key: AuthedKey) -> Response {
    let data: Vec<_> = state
        .gateway
        .list_models()
        .await
        .into_iter()
        .filter(|m| key.0.allows_model(&m.id))
        .map(|m| serde_json::json!({"id": m.id, "object": "model", "created": 0, "owned_by": m.owned_by}))
        .collect();
    Json(serde_json::json!({"object": "list", "data": data})).into_response()
}

/// Reads the body, refusing more than `limit` bytes with 413. `http-body-util`'s `Limited`
/// counts the bytes (tower-http's body limit layer would answer its own plain 413, not the
/// API's error shape, and could not tell a slow body from a large one).
async fn read_body(req: Request, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    };
    if let Some(len) = req.headers().get(http::header::CONTENT_LENGTH)
        && len
            .to_str()
            .ok()
            .and_then(|l| l.parse::<u64>().ok())
            .is_some_and(|l| l > limit as u64)
    {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) if crate::slow_body::is_slow_body(&*e) => Err(crate::slow_body::refusal()),
        Err(_) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the request body could not be read",
        )),
    }
}

struct Record {
    state: Arc<AppState>,
    key_id: String,
    key_name: String,
    request_id: String,
    client_request_id: Option<String>,
    user: Option<String>,
    session: Option<String>,
    endpoint: Endpoint,
    model: String,
    stream: bool,
    started: Instant,
}

/// The `model` label for `warden_requests_total`: `requested` if it is configured, else `other`.
fn metric_model<'a>(configured: &std::collections::HashSet<String>, requested: &'a str) -> &'a str {
    if configured.contains(requested) {
        requested
    } else {
        "other"
    }
}

impl Record {
    fn call_record(&self, status: u16) -> warden_gateway::CallRecord<'_> {
        warden_gateway::CallRecord {
            request_id: &self.request_id,
            key_id: &self.key_id,
            key_name: &self.key_name,
            endpoint: self.endpoint.label(),
            model: &self.model,
            status,
            latency_ms: self.started.elapsed().as_millis() as i64,
            stream: self.stream,
            deployment: self.state.deployment_str(),
            user: self.user.as_deref(),
            session: self.session.as_deref(),
            client_request_id: self.client_request_id.as_deref(),
        }
    }

    /// Counts the request. The `model` label comes from a bounded set: a configured name or
    /// alias, else `other` (never the client's string: `/metrics` is public).
    fn count(&self, status: u16) {
        let model = metric_model(&self.state.models, &self.model).to_owned();
        metrics::counter!("warden_requests_total", "endpoint" => self.endpoint.label(),
            "model" => model, "status" => status.to_string())
        .increment(1);
    }

    async fn refuse(self, error: ApiError) -> Response {
        self.refuse_with(error, &CallReport::default()).await
    }

    async fn refuse_with(self, error: ApiError, meta: &CallReport) -> Response {
        match self
            .finish(meta, error.status(), None, &BTreeMap::new())
            .await
        {
            Ok(()) => error.into_response(),
            Err(audit_error) => audit_error.into_response(),
        }
    }

    /// Records the request through the one accounting path: an audit record, durable before
    /// this returns, and a usage row (off the request path). If the audit log cannot take it,
    /// the caller must not send the answer (fail closed): the error to send instead is returned.
    async fn finish(
        self,
        meta: &CallReport,
        status: u16,
        usage: Option<Usage>,
        redactions: &BTreeMap<String, u32>,
    ) -> Result<(), ApiError> {
        self.count(status);
        let record = self.call_record(status);
        self.state
            .recorder
            .model_call(&record, meta, usage, redactions)
            .await
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::AuditUnavailable,
                    "the audit log cannot record this request, so it is refused; retry later",
                )
            })
    }
}

async fn proxy(state: Arc<AppState>, key: KeyRecord, req: Request, endpoint: Endpoint) -> Response {
    let started = Instant::now();
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let caller = caller_of(&req, &key, request_id.clone());
    let mut record = Record {
        state: state.clone(),
        key_id: key.id.clone(),
        key_name: key.name.clone(),
        request_id: request_id.clone(),
        client_request_id: req
            .extensions()
            .get::<ClientRequestId>()
            .map(|c| c.0.clone()),
        user: caller.as_ref().ok().and_then(|c| c.user.clone()),
        session: caller.as_ref().ok().and_then(|c| c.session.clone()),
        endpoint,
        model: String::new(),
        stream: false,
        started,
    };
    // Refusals before the gateway are recorded too (with what is known of the request), so
    // usage shows every authenticated request, including the ones that never left Warden.
    let caller = match caller {
        Ok(c) => c,
        Err(e) => return record.refuse(e).await,
    };
    let body = match read_body(req, state.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return record.refuse(e).await,
    };
    let call = match Call::parse(endpoint, &body, caller) {
        Ok(c) => c,
        Err(e) => return record.refuse(ApiError::from(e)).await,
    };
    record.model = call.model.clone();
    record.stream = call.stream;
    if !key.allows_model(&call.model) {
        let message = format!("this key may not use the model `{}`", call.model);
        return record
            .refuse(ApiError::new(ErrorCode::ModelNotAllowed, message))
            .await;
    }
    if state.recorder.refuses_work() {
        // Nothing goes to a provider that the log could not record.
        return record
            .refuse(ApiError::new(
                ErrorCode::AuditUnavailable,
                "the audit log cannot record this request, so it is refused; retry later",
            ))
            .await;
    }
    let (mut response, redactions, meta) = match state.gateway.call(call).await {
        Err(failure) => {
            let error = ApiError::from(failure.error);
            let recorded = record
                .finish(&failure.meta, error.status(), None, &failure.redactions)
                .await;
            match recorded {
                Ok(()) => (error.into_response(), failure.redactions, *failure.meta),
                Err(audit_error) => (
                    audit_error.into_response(),
                    BTreeMap::new(),
                    CallReport::default(),
                ),
            }
        }
        Ok(success) => match success.reply {
            Reply::Complete { body, usage } => {
                // The answer is released only once its audit record is durable.
                match record
                    .finish(&success.meta, 200, usage, &success.redactions)
                    .await
                {
                    Ok(()) => {
                        let json = [(http::header::CONTENT_TYPE, "application/json")];
                        (
                            (StatusCode::OK, json, body).into_response(),
                            success.redactions,
                            success.meta,
                        )
                    }
                    Err(audit_error) => (
                        audit_error.into_response(),
                        BTreeMap::new(),
                        CallReport::default(),
                    ),
                }
            }
            Reply::Stream(stream) => {
                let mut meta = success.meta;
                let headers_meta = meta.clone();
                let summary = stream.summary;
                tokio::spawn(async move {
                    let summary = summary.await.unwrap_or_default();
                    meta.spent = summary.spent.clone();
                    meta.cost_usd = summary.cost_usd;
                    if let Some(reason) = &summary.failure {
                        tracing::warn!(request_id = %record.request_id, reason, "stream ended early");
                    }
                    // A stream's record is written when it ends (its bytes are already out;
                    // a failure is logged by the recorder, and the next request is refused).
                    if record
                        .finish(&meta, 200, summary.usage, &summary.redactions)
                        .await
                        .is_err()
                    {
                        tracing::error!("a finished stream could not be recorded");
                    }
                });
                let body = Body::from_stream(stream.body.map(Ok::<_, std::convert::Infallible>));
                let headers = [
                    (http::header::CONTENT_TYPE, "text/event-stream"),
                    (http::header::CACHE_CONTROL, "no-cache"),
                ];
                (
                    (StatusCode::OK, headers, body).into_response(),
                    stream.redactions,
                    headers_meta,
                )
            }
        },
    };
    crate::cost_headers::insert(response.headers_mut(), &meta);
    // Counts by type only, never values: `CREDIT_CARD=1,EMAIL=2`.
    if let Some(text) = warden_redact::format_counts(&redactions)
        && let Ok(v) = http::HeaderValue::from_str(&text)
    {
        response.headers_mut().insert("x-warden-redactions", v);
    }
    response
}

/// The caller of a request: its key, and the end user, session and cache directives from its
/// headers. A header that is present must be a short visible-ASCII id.
fn caller_of(req: &Request, key: &KeyRecord, request_id: String) -> Result<Caller, ApiError> {
    let id_header = |name: &str| -> Result<Option<String>, ApiError> {
        let Some(v) = req.headers().get(name) else {
            return Ok(None);
        };
        match v.to_str() {
            Ok(s) if !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()) => {
                Ok(Some(s.to_owned()))
            }
            _ => Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("`{name}` must be 1 to 128 visible ASCII characters"),
            )),
        }
    };
    Ok(Caller {
        request_id,
        key_id: key.id.clone(),
        key_name: key.name.clone(),
        user: id_header("x-warden-user")?,
        session: id_header("x-warden-session")?,
        cache: CacheControl::parse(
            req.headers()
                .get(http::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
        ),
    })
}
