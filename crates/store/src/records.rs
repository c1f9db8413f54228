//! The plain data the store reads and writes.

/// A key to insert. Only the hash of the plain key is stored.
#[derive(Debug, Clone)]
pub struct NewKeyRecord {
    /// Stable id (`key_…`), referenced by usage rows.
    pub id: String,
    /// Human name, unique among current keys.
    pub name: String,
    /// SHA-256 of the plain key.
    pub hash: [u8; 32],
    /// Displayable start of the key.
    pub prefix: String,
    /// Models this key may use; `None` means all.
    pub models: Option<Vec<String>>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None` means never.
    pub expires_at: Option<i64>,
    /// Whether the key may read usage analytics and other admin routes.
    pub admin: bool,
    /// Agent definitions this key may drive (`*` = all); empty means none.
    pub agents: Vec<String>,
    /// How many agents the key may own; `None` means the server default.
    pub max_agents: Option<i64>,
    /// The id of the first key of this key's rotation chain (its own id for a new key): the
    /// owner of the agents it creates, so that a rotation keeps them.
    pub lineage_id: String,
}

/// A stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Stable id.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Displayable start of the key.
    pub prefix: String,
    /// Models this key may use; `None` means all.
    pub models: Option<Vec<String>>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; after it the key is refused.
    pub expires_at: Option<i64>,
    /// Unix seconds; set once revoked.
    pub revoked_at: Option<i64>,
    /// Id of the key that replaced this one in a rotation.
    pub replaced_by: Option<String>,
    /// Whether the key may read usage analytics and other admin routes.
    pub admin: bool,
    /// Agent definitions this key may drive (`*` = all); empty means none.
    pub agents: Vec<String>,
    /// How many agents the key may own; `None` means the server default.
    pub max_agents: Option<i64>,
    /// The id of the first key of this key's rotation chain: the owner of its agents.
    pub lineage_id: String,
}

/// Whether a key may be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Replaced by a rotation but still inside its grace period.
    Grace,
    /// Past its expiry (or its grace period).
    Expired,
    /// Revoked.
    Revoked,
}

impl KeyRecord {
    /// The key's status at `now` (unix seconds).
    pub fn status(&self, now: i64) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|t| t <= now) {
            KeyStatus::Expired
        } else if self.replaced_by.is_some() {
            KeyStatus::Grace
        } else {
            KeyStatus::Active
        }
    }

    /// Whether this key may call `model` (exact name or alias as the client sent it).
    pub fn allows_model(&self, model: &str) -> bool {
        grants_model(self.models.as_deref(), model)
    }

    /// Whether this key was given the agent definition `definition` (by name or `*`).
    pub fn allows_agent(&self, definition: &str) -> bool {
        grants_agent(&self.agents, definition)
    }
}

/// Whether a key's model list (`None` = all) allows `model`: the rule of
/// [`KeyRecord::allows_model`], for callers holding the list alone.
pub fn grants_model(models: Option<&[String]>, model: &str) -> bool {
    models.is_none_or(|m| m.iter().any(|x| x == model))
}

/// Whether a key's agent grants (`*` = all) allow `definition`: the rule of
/// [`KeyRecord::allows_agent`], for callers holding the list alone.
pub fn grants_agent(agents: &[String], definition: &str) -> bool {
    agents.iter().any(|a| a == "*" || a == definition)
}

impl KeyStatus {
    /// Lower-case name for listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Grace => "grace",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

/// One proxied request, as recorded for usage and analytics. Holds no content.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageRow {
    /// The `x-request-id` of the request.
    pub request_id: String,
    /// The virtual key's id.
    pub key_id: String,
    /// `chat.completions` or `embeddings`.
    pub endpoint: String,
    /// Model name as the client asked.
    pub model: String,
    /// Provider of the last target tried, if any was.
    pub provider: Option<String>,
    /// Model name sent to that provider.
    pub upstream_model: Option<String>,
    /// HTTP status returned to the client.
    pub status: u16,
    /// From the provider's `usage`, when it reported one.
    pub prompt_tokens: Option<i64>,
    /// From the provider's `usage`, when it reported one.
    pub completion_tokens: Option<i64>,
    /// Wall time from request to the last byte, in milliseconds.
    pub latency_ms: i64,
    /// Upstream attempts made, retries and fallbacks included.
    pub attempts: i64,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Deployment version that served it.
    pub deployment: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The end user (`x-warden-user`), if the client named one.
    pub user: Option<String>,
    /// The session (`x-warden-session`), if the client named one.
    pub session: Option<String>,
    /// `hit`, `miss` or `bypass`; `None` when the cache is off for the request.
    pub cache: Option<String>,
    /// `rate_limited` or `budget_exceeded` when Warden refused the request for cost reasons.
    pub refusal: Option<String>,
    /// Prompt tokens the provider served from its own cache.
    pub cached_tokens: Option<i64>,
    /// Dollars, by the configured price table; `None` when the model has no price.
    pub cost_usd: Option<f64>,
    /// The model the client asked for, when tiering moved the request to a cheaper one.
    pub downgraded_from: Option<String>,
    /// Budget counters the request's tokens are added to (in the same transaction).
    pub budget_counters: Vec<String>,
    /// Tokens to add to each of `budget_counters`.
    pub budget_tokens: i64,
}

/// How usage is grouped in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// By virtual key (id and current name).
    Key,
    /// By the model name clients asked for.
    Model,
    /// By UTC day.
    Day,
}

impl GroupBy {
    /// Parses `key`, `model` or `day`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "key" => Some(Self::Key),
            "model" => Some(Self::Model),
            "day" => Some(Self::Day),
            _ => None,
        }
    }
}

/// One group of a usage report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageGroup {
    /// The key id, the model name, or the day (`2026-11-26`).
    pub group: String,
    /// For key groups: the key's name.
    pub name: Option<String>,
    /// Requests, refusals included.
    pub requests: i64,
    /// Prompt tokens spent.
    pub prompt_tokens: i64,
    /// Completion tokens spent.
    pub completion_tokens: i64,
    /// Dollars spent (priced models only).
    pub cost_usd: f64,
    /// Answers served from the cache.
    pub cache_hits: i64,
    /// Requests the cache was asked for (hits and misses).
    pub cache_lookups: i64,
    /// Requests refused by a rate limit.
    pub rate_limited: i64,
    /// Requests refused by a token budget.
    pub budget_refused: i64,
}

/// A key change waiting to be copied into the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvent {
    /// Row id (increasing).
    pub id: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// `created`, `rotated` or `revoked`.
    pub action: String,
    /// Key name.
    pub key_name: String,
    /// Key id (empty for a revocation by name).
    pub key_id: String,
}
