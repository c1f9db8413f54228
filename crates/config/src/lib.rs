//! Warden's configuration: one TOML file, parsed into a raw serde model that rejects unknown
//! fields, then validated into the typed [`Config`] the rest of the program uses.
//!
//! This crate never reads the environment or any secret: a provider names *where* its key
//! lives ([`KeySource`]) and the binary resolves it. An invalid file is an [`Error`] whose
//! message names the field's path and what is wrong with it.

mod agents;
mod audit;
mod cost;
mod duration;
mod raw;
mod redaction;
mod typed;

pub use agents::{
    AgentDefinition, ApproverConfig, DatabaseConfig, DatabaseLocation, HttpConfig, HttpProxyConfig,
    KNOWN_TOOLS, Permissions,
};
pub use audit::{AuditConfig, AuditStore};
pub use cost::{
    Backend, BudgetsConfig, CacheConfig, DEFAULT_KEY_REQUESTS_PER_MINUTE, KeyBudget, LimitsConfig,
    Price, Rate, RedisConfig, TieringConfig,
};
pub use duration::{format_duration, parse_duration};
pub use redaction::{
    CustomEntity, CustomMatcher, DEFAULT_REDACTION_MAX_COST, KeyRedaction, RedactAction,
    RedactionConfig,
};
pub use typed::{
    CircuitBreakerConfig, Config, KeySource, LogFormat, ModelRoute, ProviderConfig, RetryConfig,
    ServerConfig, StoreBackend, StoreConfig, Target,
};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not valid TOML or does not match the model (unknown or mistyped field).
    #[error("{0}")]
    Parse(String),
    /// A field has a value that parses but makes no sense.
    #[error("{field}: {message}")]
    Invalid {
        /// The dotted path of the offending field, e.g. `models.fast.targets[0].provider`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}
