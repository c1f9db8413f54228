//! Errors as HTTP responses, in the OpenAI shape
//! `{"error": {"message", "type", "param", "code"}}`, so the official SDKs raise the right
//! exception class. Messages are written for clients; internal details go to the log only.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use warden_core::ErrorCode;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    status: u16,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with the code's own status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            status: code.status(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The OpenAI-shaped error body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.code.openai_type(),
                "param": null,
                "code": self.code.as_str(),
            }
        })
    }
}

impl From<warden_gateway::Error> for ApiError {
    fn from(e: warden_gateway::Error) -> Self {
        let retry_after = e.retry_after();
        Self {
            code: e.code(),
            status: e.status(),
            message: e.to_string(),
            retry_after,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, secs.into());
        }
        if matches!(
            self.code,
            ErrorCode::MissingApiKey | ErrorCode::InvalidApiKey
        ) {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}
