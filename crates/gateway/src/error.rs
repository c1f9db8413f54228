//! The gateway's errors. Each says which side failed and maps to a stable code; messages are
//! safe to show a client: they never hold a provider key or internal detail.

use warden_core::ErrorCode;

/// Who caused a failure: decides the status class and whether retrying may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client's request is wrong; retrying will not help.
    Client,
    /// The provider failed or refused.
    Upstream,
    /// Warden itself.
    Internal,
}

/// A failed gateway call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The body is not what the endpoint takes.
    #[error("{0}")]
    InvalidRequest(String),
    /// The request holds data whose redaction policy is `block` (types named, never values).
    #[error("{0}")]
    Blocked(String),
    /// Redacting the request would cost more than `redaction.max_cost`: it is refused whole,
    /// before any provider is chosen.
    #[error("{0}")]
    TooComplex(String),
    /// No route for this model.
    #[error("the model `{0}` does not exist or is not configured")]
    ModelNotFound(String),
    /// Nothing to send the request to: no provider, or every circuit is open.
    #[error("{0}")]
    NoProvider(String),
    /// Every target answered 429.
    #[error("every upstream target is rate limited; retry later")]
    RateLimited {
        /// Longest `retry-after` seen, in seconds, to pass on to the client.
        retry_after: Option<u64>,
    },
    /// A rate limit of Warden's own (per key or per user) refused the request.
    #[error("{message}")]
    LimitExceeded {
        /// Which limit, and when to retry.
        message: String,
        /// Seconds until the request would fit; `None` if it never can.
        retry_after: Option<u64>,
    },
    /// A token budget refused the request before it reached a provider.
    #[error("{message}")]
    BudgetExceeded {
        /// Which budget, and when it resets.
        message: String,
        /// Seconds until it resets; `None` for budgets that never do (sessions).
        retry_after: Option<u64>,
    },
    /// The store of limits or budgets cannot be reached, so the request is refused.
    #[error("limits and budgets cannot be checked right now; retry later")]
    LimitsUnavailable,
    /// Every target failed.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// Every target timed out.
    #[error("upstream timed out after {0}")]
    Timeout(String),
    /// A provider refused Warden's own credentials.
    #[error("provider `{0}` refused Warden's credentials; the operator must fix its API key")]
    UpstreamAuth(String),
    /// A provider rejected the request as invalid: its status and (scrubbed) message.
    #[error("{message}")]
    Rejected {
        /// Upstream status (4xx).
        status: u16,
        /// Upstream message, with any provider key removed.
        message: String,
    },
}

impl Error {
    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Self::Blocked(_) => ErrorCode::SensitiveDataBlocked,
            Self::TooComplex(_) => ErrorCode::PayloadTooComplex,
            Self::ModelNotFound(_) => ErrorCode::ModelNotFound,
            Self::NoProvider(_) => ErrorCode::NoProviderAvailable,
            Self::RateLimited { .. } => ErrorCode::UpstreamRateLimited,
            Self::LimitExceeded { .. } => ErrorCode::RateLimitExceeded,
            Self::BudgetExceeded { .. } => ErrorCode::BudgetExceeded,
            Self::LimitsUnavailable => ErrorCode::StoreUnavailable,
            Self::Unavailable(_) => ErrorCode::UpstreamUnavailable,
            Self::Timeout(_) => ErrorCode::UpstreamTimeout,
            Self::UpstreamAuth(_) => ErrorCode::UpstreamAuth,
            Self::Rejected { .. } => ErrorCode::UpstreamRejected,
        }
    }

    /// The HTTP status to answer with: the code's, except that an upstream rejection keeps
    /// the upstream's 4xx (a 404 for an unknown model stays a 404).
    pub fn status(&self) -> u16 {
        match self {
            Self::Rejected { status, .. } => *status,
            other => other.code().status(),
        }
    }

    /// Which side failed.
    pub fn side(&self) -> Side {
        match self {
            Self::InvalidRequest(_)
            | Self::TooComplex(_)
            | Self::ModelNotFound(_)
            | Self::Rejected { .. }
            | Self::LimitExceeded { .. }
            | Self::BudgetExceeded { .. } => Side::Client,
            Self::LimitsUnavailable => Side::Internal,
            Self::NoProvider(_) | Self::UpstreamAuth(_) => Side::Internal,
            _ => Side::Upstream,
        }
    }

    /// Seconds the client should wait before retrying (`retry-after`), when known.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after }
            | Self::LimitExceeded { retry_after, .. }
            | Self::BudgetExceeded { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the client may succeed by retrying the same request later.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::LimitExceeded { .. }
                | Self::LimitsUnavailable
                | Self::Unavailable(_)
                | Self::Timeout(_)
                | Self::NoProvider(_)
        )
    }
}
