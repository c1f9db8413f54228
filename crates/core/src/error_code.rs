//! One table of stable error codes. Every crate's error maps onto one of these through its
//! `code()` method, and the HTTP layer turns the code into a status and the OpenAI error shape.
//! Codes are part of the public API: rename one and clients break.

/// A stable error code: what went wrong, in words clients can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request body is not valid JSON or misses a required field.
    InvalidRequest,
    /// The request holds data whose redaction policy is `block`.
    SensitiveDataBlocked,
    /// The body is larger than the configured limit.
    PayloadTooLarge,
    /// Redacting the body would cost more than the configured bound (`redaction.max_cost`).
    PayloadTooComplex,
    /// The client sent its request body too slowly (`server.body_read_timeout`,
    /// `server.min_body_rate`).
    RequestTimeout,
    /// No `Authorization: Bearer` header was sent.
    MissingApiKey,
    /// The key is unknown, revoked or expired.
    InvalidApiKey,
    /// The key exists but may not use the requested model.
    ModelNotAllowed,
    /// The requested model is neither configured nor routable.
    ModelNotFound,
    /// The route does not exist.
    NotFound,
    /// The method is not allowed on this route.
    MethodNotAllowed,
    /// Every upstream target answered 429.
    UpstreamRateLimited,
    /// Every upstream target failed (connection error, 5xx, malformed answer).
    UpstreamUnavailable,
    /// Every upstream target timed out.
    UpstreamTimeout,
    /// The upstream refused Warden's own credentials: an operator problem, not the client's.
    UpstreamAuth,
    /// The upstream rejected the request as invalid (a 4xx other than 401/403/429).
    UpstreamRejected,
    /// No provider is configured, or every circuit breaker is open.
    NoProviderAvailable,
    /// A rate limit of Warden's own (per key or per end user) refused the request.
    RateLimitExceeded,
    /// A token budget (session, key per day or per month) refused the request.
    BudgetExceeded,
    /// The route needs an admin key.
    AdminRequired,
    /// The agent belongs to another key.
    AgentForbidden,
    /// The key was not given this agent definition (`warden keys create --agents`).
    AgentNotAllowed,
    /// The key already has as many agents as it may (`--max-agents`, `server.max_agents_per_key`).
    AgentLimitReached,
    /// The agent has no failed or interrupted task to resume.
    AgentNotResumable,
    /// The approval request is no longer waiting for a decision.
    ApprovalNotPending,
    /// The agent waits for a decision on a write; it takes no new task until then.
    ApprovalPending,
    /// The agent is read-only; the call is a write.
    AgentReadOnly,
    /// The approver is unknown or may not decide on this tool.
    ApproverForbidden,
    /// The decision's signature does not verify over this approval request.
    BadSignature,
    /// The store could not be reached.
    StoreUnavailable,
    /// The audit log cannot record the request, so it is refused (fail closed).
    AuditUnavailable,
    /// A bug or an unexpected internal failure; details are logged, never returned.
    Internal,
}

impl ErrorCode {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [ErrorCode; 32] = [
        Self::InvalidRequest,
        Self::SensitiveDataBlocked,
        Self::PayloadTooLarge,
        Self::PayloadTooComplex,
        Self::RequestTimeout,
        Self::MissingApiKey,
        Self::InvalidApiKey,
        Self::ModelNotAllowed,
        Self::ModelNotFound,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::UpstreamRateLimited,
        Self::UpstreamUnavailable,
        Self::UpstreamTimeout,
        Self::UpstreamAuth,
        Self::UpstreamRejected,
        Self::NoProviderAvailable,
        Self::RateLimitExceeded,
        Self::BudgetExceeded,
        Self::AdminRequired,
        Self::AgentForbidden,
        Self::AgentNotAllowed,
        Self::AgentLimitReached,
        Self::AgentNotResumable,
        Self::ApprovalNotPending,
        Self::ApprovalPending,
        Self::AgentReadOnly,
        Self::ApproverForbidden,
        Self::BadSignature,
        Self::StoreUnavailable,
        Self::AuditUnavailable,
        Self::Internal,
    ];

    /// The HTTP status this code is answered with.
    pub const fn status(self) -> u16 {
        match self {
            Self::InvalidRequest | Self::SensitiveDataBlocked => 400,
            Self::PayloadTooLarge | Self::PayloadTooComplex => 413,
            Self::RequestTimeout => 408,
            Self::MissingApiKey | Self::InvalidApiKey => 401,
            Self::ModelNotAllowed
            | Self::AdminRequired
            | Self::AgentForbidden
            | Self::AgentNotAllowed
            | Self::AgentLimitReached
            | Self::ApproverForbidden
            | Self::AgentReadOnly => 403,
            Self::AgentNotResumable | Self::ApprovalNotPending | Self::ApprovalPending => 409,
            Self::BadSignature => 400,
            Self::RateLimitExceeded | Self::BudgetExceeded => 429,
            Self::ModelNotFound | Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::UpstreamRateLimited => 429,
            Self::UpstreamUnavailable | Self::UpstreamAuth => 502,
            Self::UpstreamRejected => 400,
            Self::UpstreamTimeout => 504,
            Self::NoProviderAvailable | Self::StoreUnavailable | Self::AuditUnavailable => 503,
            Self::Internal => 500,
        }
    }

    /// The stable machine-readable code, the `code` field of the OpenAI error shape.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::SensitiveDataBlocked => "sensitive_data_blocked",
            Self::PayloadTooLarge => "payload_too_large",
            Self::PayloadTooComplex => "payload_too_complex",
            Self::RequestTimeout => "request_timeout",
            Self::MissingApiKey => "missing_api_key",
            Self::InvalidApiKey => "invalid_api_key",
            Self::ModelNotAllowed => "model_not_allowed",
            Self::ModelNotFound => "model_not_found",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UpstreamRateLimited => "upstream_rate_limited",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamAuth => "upstream_auth_failed",
            Self::UpstreamRejected => "upstream_rejected",
            Self::NoProviderAvailable => "no_provider_available",
            Self::RateLimitExceeded => "rate_limit_exceeded",
            Self::BudgetExceeded => "budget_exceeded",
            Self::AdminRequired => "admin_required",
            Self::AgentForbidden => "agent_forbidden",
            Self::AgentNotAllowed => "agent_not_allowed",
            Self::AgentLimitReached => "agent_limit_reached",
            Self::AgentNotResumable => "agent_not_resumable",
            Self::ApprovalNotPending => "approval_not_pending",
            Self::ApprovalPending => "approval_pending",
            Self::AgentReadOnly => "agent_read_only",
            Self::ApproverForbidden => "approver_forbidden",
            Self::BadSignature => "bad_signature",
            Self::StoreUnavailable => "store_unavailable",
            Self::AuditUnavailable => "audit_unavailable",
            Self::Internal => "internal_error",
        }
    }

    /// The OpenAI error `type`, which the official SDKs use together with the status to pick
    /// an exception class.
    pub const fn openai_type(self) -> &'static str {
        match self {
            Self::InvalidRequest
            | Self::SensitiveDataBlocked
            | Self::PayloadTooLarge
            | Self::PayloadTooComplex
            | Self::RequestTimeout
            | Self::ModelNotFound
            | Self::NotFound
            | Self::MethodNotAllowed
            | Self::UpstreamRejected => "invalid_request_error",
            Self::MissingApiKey | Self::InvalidApiKey => "authentication_error",
            Self::ModelNotAllowed
            | Self::AdminRequired
            | Self::AgentForbidden
            | Self::AgentNotAllowed
            | Self::AgentLimitReached
            | Self::ApproverForbidden
            | Self::AgentReadOnly => "permission_error",
            Self::AgentNotResumable
            | Self::ApprovalNotPending
            | Self::ApprovalPending
            | Self::BadSignature => "invalid_request_error",
            Self::UpstreamRateLimited | Self::RateLimitExceeded => "rate_limit_error",
            Self::BudgetExceeded => "insufficient_quota",
            Self::UpstreamUnavailable
            | Self::UpstreamTimeout
            | Self::UpstreamAuth
            | Self::NoProviderAvailable
            | Self::StoreUnavailable
            | Self::AuditUnavailable
            | Self::Internal => "api_error",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_statuses_are_errors() {
        let names: HashSet<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            assert!(
                (400..600).contains(&code.status()),
                "{code} has status {}",
                code.status()
            );
        }
    }

    #[test]
    fn client_faults_are_4xx_and_upstream_faults_are_5xx() {
        assert_eq!(ErrorCode::InvalidApiKey.status(), 401);
        assert_eq!(ErrorCode::ModelNotAllowed.status(), 403);
        assert_eq!(ErrorCode::PayloadTooComplex.status(), 413);
        assert_eq!(ErrorCode::PayloadTooComplex.as_str(), "payload_too_complex");
        assert_eq!(
            ErrorCode::PayloadTooComplex.openai_type(),
            "invalid_request_error"
        );
        assert_eq!(ErrorCode::UpstreamAuth.status(), 502);
        assert_eq!(ErrorCode::UpstreamTimeout.status(), 504);
    }
}
