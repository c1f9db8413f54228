//! The OpenAI-compatible endpoints. Each authenticates (extractor), reads the body within its
//! limit, checks the key may use the model, runs the gateway and records one usage row.

use crate::auth::AuthedKey;
use crate::request_id::RequestId;
use crate::{ApiError, AppState};
use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::StatusCode;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::sync::Arc;
use std::time::Instant;
use warden_core::ErrorCode;
use warden_gateway::{Call, Endpoint, Meta, Reply, Usage};
use warden_store::{KeyRecord, UsageRow};

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

/// Reads the body, refusing more than `limit` bytes with 413.
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
        Err(_) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the request body could not be read",
        )),
    }
}

struct Record {
    state: Arc<AppState>,
    key_id: String,
    request_id: String,
    endpoint: Endpoint,
    model: String,
    stream: bool,
    started: Instant,
}

impl Record {
    fn row(&self, meta: &Meta, status: u16, usage: Option<Usage>) -> UsageRow {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        UsageRow {
            request_id: self.request_id.clone(),
            key_id: self.key_id.clone(),
            endpoint: self.endpoint.label().into(),
            model: self.model.clone(),
            provider: meta.provider.clone(),
            upstream_model: meta.upstream_model.clone(),
            status,
            prompt_tokens: usage.and_then(|u| u.prompt_tokens),
            completion_tokens: usage.and_then(|u| u.completion_tokens),
            latency_ms: self.started.elapsed().as_millis() as i64,
            attempts: i64::from(meta.attempts),
            stream: self.stream,
            deployment: self.state.deployment_str().to_owned(),
            created_at: now_ms,
        }
    }

    fn count(&self, status: u16) {
        let model = if status == 404 || self.model.is_empty() {
            "unknown".to_owned()
        } else {
            self.model.clone()
        };
        metrics::counter!("warden_requests_total", "endpoint" => self.endpoint.label(),
            "model" => model, "status" => status.to_string())
        .increment(1);
    }

    async fn refuse(self, error: ApiError) -> Response {
        self.finish(&Meta::default(), error.status(), None).await;
        error.into_response()
    }

    async fn finish(self, meta: &Meta, status: u16, usage: Option<Usage>) {
        self.count(status);
        let row = self.row(meta, status, usage);
        self.state.usage.record(row).await;
    }
}

async fn proxy(state: Arc<AppState>, key: KeyRecord, req: Request, endpoint: Endpoint) -> Response {
    let started = Instant::now();
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let mut record = Record {
        state: state.clone(),
        key_id: key.id.clone(),
        request_id: request_id.clone(),
        endpoint,
        model: String::new(),
        stream: false,
        started,
    };
    // Refusals before the gateway are recorded too (with what is known of the request), so
    // usage shows every authenticated request, including the ones that never left Warden.
    let body = match read_body(req, state.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return record.refuse(e).await,
    };
    let call = match Call::parse(endpoint, &body, request_id, key.name.clone()) {
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
    let (mut response, redactions) = match state.gateway.call(call).await {
        Err(failure) => {
            let error = ApiError::from(failure.error);
            record.finish(&failure.meta, error.status(), None).await;
            (error.into_response(), failure.redactions)
        }
        Ok(success) => match success.reply {
            Reply::Complete { body, usage } => {
                record.finish(&success.meta, 200, usage).await;
                let ok = (
                    StatusCode::OK,
                    [(http::header::CONTENT_TYPE, "application/json")],
                    body,
                );
                (ok.into_response(), success.redactions)
            }
            Reply::Stream(stream) => {
                let meta = success.meta;
                let summary = stream.summary;
                tokio::spawn(async move {
                    let summary = summary.await.unwrap_or_default();
                    if let Some(reason) = &summary.failure {
                        tracing::warn!(request_id = %record.request_id, reason, "stream ended early");
                    }
                    record.finish(&meta, 200, summary.usage).await;
                });
                let body = Body::from_stream(stream.body.map(Ok::<_, std::convert::Infallible>));
                let headers = [
                    (http::header::CONTENT_TYPE, "text/event-stream"),
                    (http::header::CACHE_CONTROL, "no-cache"),
                ];
                (
                    (StatusCode::OK, headers, body).into_response(),
                    stream.redactions,
                )
            }
        },
    };
    // Counts by type only, never values: `EMAIL=2,CREDIT_CARD=1`.
    if let Some(v) = redactions.and_then(|r| http::HeaderValue::from_str(&r).ok()) {
        response.headers_mut().insert("x-warden-redactions", v);
    }
    response
}
