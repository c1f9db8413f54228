//! The file as written: serde structs that reject unknown fields, with every value optional
//! so that defaults live in one place ([`crate::typed`]).

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub deployment: Option<String>,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub retry: RawRetry,
    #[serde(default)]
    pub circuit_breaker: RawCircuitBreaker,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub redaction: RawRedaction,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub cache: crate::cost::RawCache,
    #[serde(default)]
    pub limits: crate::cost::RawLimits,
    #[serde(default)]
    pub budgets: crate::cost::RawBudgets,
    #[serde(default)]
    pub tiering: crate::cost::RawTiering,
    #[serde(default)]
    pub prices: BTreeMap<String, crate::cost::RawPrice>,
    #[serde(default)]
    pub redis: crate::cost::RawRedis,
    #[serde(default)]
    pub databases: BTreeMap<String, crate::agents::RawDatabase>,
    #[serde(default)]
    pub agents: BTreeMap<String, crate::agents::RawAgent>,
    #[serde(default)]
    pub approvers: BTreeMap<String, crate::agents::RawApprover>,
    #[serde(default)]
    pub http: crate::agents::RawHttp,
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub models: BTreeMap<String, RawModel>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub shutdown_grace: Option<String>,
    pub log_format: Option<String>,
    pub metrics: Option<bool>,
    pub key_cache_ttl: Option<String>,
    pub agent_idle: Option<String>,
    pub max_agents_per_key: Option<u64>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub body_read_timeout: Option<String>,
    pub min_body_rate: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_connections_per_ip: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    pub data_dir: Option<String>,
    pub backend: Option<String>,
    pub postgres_url_env: Option<String>,
    pub postgres_schema: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub attempts: Option<u32>,
    pub initial_backoff: Option<String>,
    pub max_backoff: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCircuitBreaker {
    pub failure_threshold: Option<u32>,
    pub cooldown: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouting {
    pub default_provider: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    pub base_url: String,
    pub api_key_env: Option<String>,
    pub api_key_file: Option<String>,
    pub timeout: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModel {
    pub targets: Vec<RawTarget>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    pub provider: String,
    pub model: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedaction {
    pub default: Option<String>,
    pub restore: Option<bool>,
    pub scan_answers: Option<bool>,
    pub max_cost: Option<u64>,
    pub phone_regions: Option<Vec<String>>,
    #[serde(default)]
    pub entities: BTreeMap<String, String>,
    /// Per virtual-key name: `default` and entity names to actions.
    #[serde(default)]
    pub keys: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    pub custom: Vec<RawCustomEntity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCustomEntity {
    pub name: String,
    pub regex: Option<String>,
    pub words: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub enabled: Option<bool>,
    pub fsync: Option<String>,
    pub max_segment_bytes: Option<u64>,
    pub max_segment_age: Option<String>,
    pub store_dir: Option<String>,
    pub ship_interval: Option<String>,
    pub checkpoint_interval: Option<String>,
    pub store: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_prefix: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_allow_http: Option<bool>,
    pub retention_days: Option<u32>,
    pub fail_open: Option<bool>,
}
