//! The validated configuration, with every default applied.

use crate::raw::{
    RawCircuitBreaker, RawConfig, RawModel, RawProvider, RawRetry, RawServer, RawStore, RawTarget,
};
use crate::{AuditConfig, Error, RedactionConfig, parse_duration};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Warden's whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The deployment version stamped on every response; `None` means "use the build's".
    pub deployment: Option<String>,
    /// The HTTP listener.
    pub server: ServerConfig,
    /// Where state lives.
    pub store: StoreConfig,
    /// Retries against one target.
    pub retry: RetryConfig,
    /// When a failing provider is skipped.
    pub circuit_breaker: CircuitBreakerConfig,
    /// What is removed from content before it leaves.
    pub redaction: RedactionConfig,
    /// The tamper-evident audit log.
    pub audit: AuditConfig,
    /// The exact-match response cache.
    pub cache: crate::CacheConfig,
    /// Requests and tokens per minute, per key and per end user.
    pub limits: crate::LimitsConfig,
    /// Token budgets per session, key and day or month.
    pub budgets: crate::BudgetsConfig,
    /// Cheaper models for keys that have spent most of their budget.
    pub tiering: crate::TieringConfig,
    /// Dollars per million tokens, by the model name the provider answered with.
    pub prices: BTreeMap<String, crate::Price>,
    /// Shared state for several nodes; `None` keeps everything in this process.
    pub redis: Option<crate::RedisConfig>,
    /// Databases the `sql_query` tool may read, by name.
    pub databases: BTreeMap<String, crate::DatabaseConfig>,
    /// Agent definitions, by name.
    pub agents: BTreeMap<String, crate::AgentDefinition>,
    /// People who may approve write tool calls, by name.
    pub approvers: BTreeMap<String, crate::ApproverConfig>,
    /// Where the `http_request` tool may go.
    pub http: crate::HttpConfig,
    /// Upstream providers by name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Model names clients may ask for, with their ordered targets.
    pub models: Vec<ModelRoute>,
    /// A provider that receives any model name not in `models`, unchanged.
    pub default_provider: Option<String>,
}

/// The HTTP listener's settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (default 127.0.0.1:8787).
    pub listen: SocketAddr,
    /// Largest request body accepted (default 4 MiB); larger bodies get 413.
    pub max_body_bytes: usize,
    /// How long in-flight requests may run after a shutdown signal (default 15s).
    pub shutdown_grace: Duration,
    /// Log line format.
    pub log_format: LogFormat,
    /// Whether `GET /metrics` is served (default true).
    pub metrics: bool,
    /// How long a looked-up virtual key is trusted before the store is asked again (default
    /// 1s, at most 60s; `0s` asks the store on every request). Bounds how long a revoked key
    /// keeps working.
    pub key_cache_ttl: Duration,
    /// How long an agent instance may sit idle before it leaves memory (default 60s); it is
    /// loaded again from the store when addressed.
    pub agent_idle: Duration,
    /// How many agents one key (with its rotations) may own unless the key names its own
    /// cap (`warden keys create --max-agents`); default 100, at least 1.
    pub max_agents_per_key: u64,
    /// How long a client may take to send a complete request head (default 10s, at most
    /// 5m); a connection that has not finished it in time is closed.
    pub header_read_timeout: Duration,
    /// How long a connection may sit without traffic before it is closed (default 60s).
    pub idle_timeout: Duration,
    /// The longest wait for the next piece of a request body once a handler reads it
    /// (default 10s, at most 5m), and the grace before `min_body_rate` applies. A body that
    /// stalls longer gets 408 `request_timeout` and its connection is closed.
    pub body_read_timeout: Duration,
    /// The slowest a request body may arrive, in bytes per second on average (default 1024,
    /// `0` turns it off): every `min_body_rate` bytes received extend the body's deadline,
    /// `body_read_timeout` after it started, by one second. Slower bodies get 408.
    pub min_body_rate: u64,
    /// Most connections open at once (default 1024); further ones are closed at once and
    /// counted in `warden_connections_refused_total{reason="global"}`.
    pub max_connections: usize,
    /// Most connections open at once from one IP address (default 256, at most
    /// `max_connections`); further ones are closed at once and counted with
    /// `reason="per_ip"`.
    pub max_connections_per_ip: usize,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Where state lives.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Folder holding `warden.db` (SQLite) and the audit log's local files; `None` means the
    /// caller's default (`./warden-data`).
    pub data_dir: Option<PathBuf>,
    /// Which database holds keys, usage, budgets (and later agents).
    pub backend: StoreBackend,
}

/// The database behind the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreBackend {
    /// `warden.db` in the data folder (the embedded default; one node).
    Sqlite,
    /// A PostgreSQL database shared by several nodes.
    Postgres {
        /// The environment variable holding the `postgres://` URL (it may hold a password).
        url_env: String,
        /// Schema to use (created if missing); `None` is the URL's default (`public`).
        schema: Option<String>,
    },
}

/// Retry policy against one target before falling back to the next.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Attempts per target, the first included (default 2).
    pub attempts: u32,
    /// Backoff before the first retry; doubles each time (default 200ms).
    pub initial_backoff: Duration,
    /// Longest backoff, and the longest `retry-after` honoured; a longer one falls back at once
    /// (default 5s).
    pub max_backoff: Duration,
}

/// When a provider that keeps failing is skipped.
#[derive(Debug, Clone)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures that open the circuit (default 5).
    pub failure_threshold: u32,
    /// How long an open circuit skips the provider before one probe is let through (default 30s).
    pub cooldown: Duration,
}

/// One OpenAI-compatible upstream.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Base URL including the version segment, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Where its API key comes from.
    pub key: KeySource,
    /// Timeout of one attempt (until the full answer, or for streams until the first byte and
    /// between chunks). Default 60s.
    pub timeout: Duration,
    /// Extra headers sent with every request.
    pub headers: BTreeMap<String, String>,
}

/// Where a provider's API key is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// No key (a local server that needs none).
    None,
    /// An environment variable, read once at start-up.
    Env(String),
    /// A file, re-read when it changes or on SIGHUP.
    File(PathBuf),
}

/// A model name clients use, mapped to ordered targets.
#[derive(Debug, Clone)]
pub struct ModelRoute {
    /// The name clients ask for.
    pub name: String,
    /// Other names for the same route.
    pub aliases: Vec<String>,
    /// Tried in order: retries on each, then fallback to the next.
    pub targets: Vec<Target>,
}

/// One provider and the model name it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Provider name, a key of [`Config::providers`].
    pub provider: String,
    /// Model name sent upstream.
    pub model: String,
}

impl Default for Config {
    fn default() -> Self {
        Self::from_raw(RawConfig::default()).expect("the empty configuration is valid")
    }
}

impl Config {
    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| Error::Parse(e.to_string()))?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawConfig) -> Result<Self, Error> {
        let server = server(raw.server)?;
        let retry = retry(raw.retry)?;
        let circuit_breaker = circuit_breaker(raw.circuit_breaker)?;
        let providers = providers(raw.providers)?;
        let (models, seen) = models(raw.models, &providers)?;

        if let Some(p) = &raw.routing.default_provider
            && !providers.contains_key(p)
        {
            return Err(Error::invalid(
                "routing.default_provider",
                format!("unknown provider `{p}`"),
            ));
        }
        if let Some(d) = &raw.deployment
            && (d.is_empty() || d.len() > 128 || !d.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(Error::invalid(
                "deployment",
                "must be 1-128 visible ASCII characters",
            ));
        }

        let redaction = crate::redaction::build(raw.redaction, server.max_body_bytes)?;
        let audit = crate::audit::build(raw.audit)?;
        let redis = crate::cost::redis(raw.redis)?;
        let shared = redis.is_some();
        let names: Vec<&str> = seen.keys().map(String::as_str).collect();
        let tiering = crate::cost::tiering(raw.tiering, &names)?;
        let databases = crate::agents::databases(raw.databases)?;
        let http = crate::agents::http(raw.http)?;
        let agents = crate::agents::agents(raw.agents, &databases, &http)?;
        let approvers = crate::agents::approvers(raw.approvers)?;
        Ok(Self {
            databases,
            agents,
            approvers,
            http,
            redaction,
            audit,
            cache: crate::cost::cache(raw.cache, shared)?,
            limits: crate::cost::limits(raw.limits, shared)?,
            budgets: crate::cost::budgets(raw.budgets, shared)?,
            tiering,
            prices: crate::cost::prices(raw.prices)?,
            redis,
            deployment: raw.deployment,
            server,
            store: store(raw.store)?,
            retry,
            circuit_breaker,
            providers,
            models,
            default_provider: raw.routing.default_provider,
        })
    }

    /// Adds a provider that serves every model name not configured otherwise: how the embedded
    /// defaults route any model to OpenAI (or an OpenAI-compatible server) with no file.
    pub fn with_default_provider(mut self, name: &str, provider: ProviderConfig) -> Self {
        self.providers.insert(name.to_owned(), provider);
        self.default_provider = Some(name.to_owned());
        self
    }
}

pub(crate) fn duration(
    field: &str,
    value: &Option<String>,
    default: &str,
) -> Result<Duration, Error> {
    let text = value.as_deref().unwrap_or(default);
    let d = parse_duration(text).map_err(|m| Error::invalid(field, m))?;
    if d.is_zero() {
        return Err(Error::invalid(field, "must be greater than zero"));
    }
    Ok(d)
}

/// The `[server]` section: the listener, body and connection bounds, timeouts, logging.
fn server(raw: RawServer) -> Result<ServerConfig, Error> {
    let listen_text = raw.listen.as_deref().unwrap_or("127.0.0.1:8787");
    let listen = listen_text.parse().map_err(|_| {
        Error::invalid(
            "server.listen",
            format!("`{listen_text}` is not an address like 127.0.0.1:8787"),
        )
    })?;
    let max_body_bytes = raw.max_body_bytes.unwrap_or(4 * 1024 * 1024);
    if max_body_bytes == 0 || max_body_bytes > 1 << 30 {
        return Err(Error::invalid(
            "server.max_body_bytes",
            "must be between 1 and 1073741824",
        ));
    }
    let log_format = match raw.log_format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(Error::invalid(
                "server.log_format",
                format!("`{other}` is not one of: text, json"),
            ));
        }
    };
    let header_read_timeout = read_timeout("server.header_read_timeout", &raw.header_read_timeout)?;
    let body_read_timeout = read_timeout("server.body_read_timeout", &raw.body_read_timeout)?;
    let min_body_rate = raw.min_body_rate.unwrap_or(1024);
    if min_body_rate > 1 << 30 {
        return Err(Error::invalid(
            "server.min_body_rate",
            "must be between 0 (off) and 1073741824 bytes per second",
        ));
    }
    let (max_connections, max_connections_per_ip) = connection_limits(&raw)?;
    Ok(ServerConfig {
        listen,
        max_body_bytes: max_body_bytes as usize,
        shutdown_grace: duration("server.shutdown_grace", &raw.shutdown_grace, "15s")?,
        log_format,
        metrics: raw.metrics.unwrap_or(true),
        key_cache_ttl: {
            let text = raw.key_cache_ttl.as_deref().unwrap_or("1s");
            let ttl =
                parse_duration(text).map_err(|m| Error::invalid("server.key_cache_ttl", m))?;
            if ttl > Duration::from_secs(60) {
                return Err(Error::invalid(
                    "server.key_cache_ttl",
                    "must be at most 60s",
                ));
            }
            ttl
        },
        agent_idle: duration("server.agent_idle", &raw.agent_idle, "60s")?,
        max_agents_per_key: match raw.max_agents_per_key.unwrap_or(100) {
            0 => {
                return Err(Error::invalid(
                    "server.max_agents_per_key",
                    "must be at least 1",
                ));
            }
            n => n,
        },
        header_read_timeout,
        idle_timeout: duration("server.idle_timeout", &raw.idle_timeout, "60s")?,
        body_read_timeout,
        min_body_rate,
        max_connections: max_connections as usize,
        max_connections_per_ip: max_connections_per_ip as usize,
    })
}

/// A read timeout of the `[server]` section (10 s unless set): at most 5 minutes.
fn read_timeout(field: &str, raw: &Option<String>) -> Result<Duration, Error> {
    let timeout = duration(field, raw, "10s")?;
    if timeout > Duration::from_secs(300) {
        return Err(Error::invalid(field, "must be at most 5m"));
    }
    Ok(timeout)
}

/// `server.max_connections` (1024 unless set) and `server.max_connections_per_ip` (256),
/// the second at most the first.
fn connection_limits(raw: &RawServer) -> Result<(u64, u64), Error> {
    let max_connections = raw.max_connections.unwrap_or(1024);
    if max_connections == 0 || max_connections > 1_000_000 {
        return Err(Error::invalid(
            "server.max_connections",
            "must be between 1 and 1000000",
        ));
    }
    let max_connections_per_ip = raw.max_connections_per_ip.unwrap_or(256);
    if max_connections_per_ip == 0 || max_connections_per_ip > max_connections {
        return Err(Error::invalid(
            "server.max_connections_per_ip",
            format!("must be between 1 and server.max_connections ({max_connections})"),
        ));
    }
    Ok((max_connections, max_connections_per_ip))
}

/// The `[retry]` section: attempts per target and their backoff.
fn retry(raw: RawRetry) -> Result<RetryConfig, Error> {
    let retry = RetryConfig {
        attempts: raw.attempts.unwrap_or(2),
        initial_backoff: duration("retry.initial_backoff", &raw.initial_backoff, "200ms")?,
        max_backoff: duration("retry.max_backoff", &raw.max_backoff, "5s")?,
    };
    if !(1..=10).contains(&retry.attempts) {
        return Err(Error::invalid("retry.attempts", "must be between 1 and 10"));
    }
    if retry.initial_backoff > retry.max_backoff {
        return Err(Error::invalid(
            "retry.initial_backoff",
            "must not exceed retry.max_backoff",
        ));
    }
    Ok(retry)
}

/// The `[circuit_breaker]` section: when a failing provider is skipped, and for how long.
fn circuit_breaker(raw: RawCircuitBreaker) -> Result<CircuitBreakerConfig, Error> {
    let circuit_breaker = CircuitBreakerConfig {
        failure_threshold: raw.failure_threshold.unwrap_or(5),
        cooldown: duration("circuit_breaker.cooldown", &raw.cooldown, "30s")?,
    };
    if circuit_breaker.failure_threshold == 0 {
        return Err(Error::invalid(
            "circuit_breaker.failure_threshold",
            "must be at least 1",
        ));
    }
    Ok(circuit_breaker)
}

/// The `[providers.*]` sections: base URLs, where each key comes from, headers, timeouts.
fn providers(
    raw: BTreeMap<String, RawProvider>,
) -> Result<BTreeMap<String, ProviderConfig>, Error> {
    let mut providers = BTreeMap::new();
    for (name, p) in raw {
        let field = |f: &str| format!("providers.{name}.{f}");
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::invalid(
                format!("providers.{name}"),
                "a provider name may hold only letters, digits, `-` and `_`",
            ));
        }
        if !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://")) {
            return Err(Error::invalid(
                field("base_url"),
                "must start with http:// or https://",
            ));
        }
        let key = match (p.api_key_env, p.api_key_file) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    field("api_key_env"),
                    "set api_key_env or api_key_file, not both",
                ));
            }
            (Some(var), None) => KeySource::Env(var),
            (None, Some(path)) => KeySource::File(PathBuf::from(path)),
            (None, None) => KeySource::None,
        };
        for header in p.headers.keys() {
            if header.is_empty()
                || !header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(Error::invalid(
                    field("headers"),
                    format!("`{header}` is not a header name"),
                ));
            }
            if header.eq_ignore_ascii_case("authorization") {
                return Err(Error::invalid(
                    field("headers"),
                    "Authorization is set from the provider key; use api_key_env or api_key_file",
                ));
            }
        }
        let timeout = duration(&field("timeout"), &p.timeout, "60s")?;
        providers.insert(
            name,
            ProviderConfig {
                base_url: p.base_url.trim_end_matches('/').to_owned(),
                key,
                timeout,
                headers: p.headers,
            },
        );
    }
    Ok(providers)
}

/// The `[models.*]` sections, each target's provider known: the routes, and every name a
/// model answers to (its own and its aliases) with the model it names.
fn models(
    raw: BTreeMap<String, RawModel>,
    providers: &BTreeMap<String, ProviderConfig>,
) -> Result<(Vec<ModelRoute>, BTreeMap<String, String>), Error> {
    let mut seen = BTreeMap::new();
    let mut models = Vec::new();
    for (name, m) in raw {
        if m.targets.is_empty() {
            return Err(Error::invalid(
                format!("models.{name}.targets"),
                "needs at least one target",
            ));
        }
        for (i, RawTarget { provider, .. }) in m.targets.iter().enumerate() {
            if !providers.contains_key(provider) {
                return Err(Error::invalid(
                    format!("models.{name}.targets[{i}].provider"),
                    format!("unknown provider `{provider}`"),
                ));
            }
        }
        for n in std::iter::once(&name).chain(&m.aliases) {
            if let Some(previous) = seen.insert(n.clone(), name.clone()) {
                return Err(Error::invalid(
                    format!("models.{name}.aliases"),
                    format!("`{n}` is already a name of models.{previous}"),
                ));
            }
        }
        let targets = m
            .targets
            .into_iter()
            .map(|t| Target {
                provider: t.provider,
                model: t.model,
            })
            .collect();
        models.push(ModelRoute {
            name,
            aliases: m.aliases,
            targets,
        });
    }
    Ok((models, seen))
}

/// The `[store]` section: the data folder and the backend (SQLite, or PostgreSQL with the
/// variable that holds its URL and an optional schema).
fn store(raw: RawStore) -> Result<StoreConfig, Error> {
    Ok(StoreConfig {
        data_dir: raw.data_dir.map(PathBuf::from),
        backend: match raw.backend.as_deref() {
            None | Some("sqlite") => {
                if raw.postgres_url_env.is_some() || raw.postgres_schema.is_some() {
                    return Err(Error::invalid(
                        "store.backend",
                        "postgres_url_env and postgres_schema need backend = \"postgres\"",
                    ));
                }
                StoreBackend::Sqlite
            }
            Some("postgres") => StoreBackend::Postgres {
                url_env: raw
                    .postgres_url_env
                    .unwrap_or_else(|| "WARDEN_POSTGRES_URL".into()),
                schema: match raw.postgres_schema {
                    Some(s)
                        if s.is_empty()
                            || s.len() > 63
                            || !s.bytes().all(|b| {
                                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
                            }) =>
                    {
                        return Err(Error::invalid(
                            "store.postgres_schema",
                            "use 1-63 lower-case letters, digits or `_`",
                        ));
                    }
                    other => other,
                },
            },
            Some(other) => {
                return Err(Error::invalid(
                    "store.backend",
                    format!("`{other}` is not one of: sqlite, postgres"),
                ));
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditStore, CustomMatcher, RedactAction};

    const FULL: &str = r#"
deployment = "prod-42"
[server]
listen = "0.0.0.0:9000"
max_body_bytes = 1024
log_format = "json"
[retry]
attempts = 3
[providers.openai]
base_url = "https://api.openai.com/v1/"
api_key_env = "OPENAI_API_KEY"
[providers.local]
base_url = "http://127.0.0.1:11434/v1"
api_key_file = "/run/secrets/local"
headers = { "X-Team" = "agents" }
[models.reasoning]
aliases = ["smart"]
targets = [{ provider = "openai", model = "gpt-4o" }, { provider = "local", model = "llama3" }]
"#;

    #[test]
    fn full_file_is_typed_with_defaults_filled() {
        let c = Config::from_toml(FULL).unwrap();
        assert_eq!(c.deployment.as_deref(), Some("prod-42"));
        assert_eq!(c.server.listen.port(), 9000);
        assert_eq!(c.server.log_format, LogFormat::Json);
        assert_eq!(c.retry.attempts, 3);
        assert_eq!(c.retry.max_backoff, Duration::from_secs(5));
        assert_eq!(c.providers["openai"].base_url, "https://api.openai.com/v1");
        assert_eq!(
            c.providers["local"].key,
            KeySource::File("/run/secrets/local".into())
        );
        assert_eq!(
            c.models[0].targets[1],
            Target {
                provider: "local".into(),
                model: "llama3".into()
            }
        );
    }

    #[test]
    fn the_agent_cap_per_key_defaults_to_100_and_is_at_least_1() {
        assert_eq!(Config::default().server.max_agents_per_key, 100);
        let e = error_of("[server]\nmax_agents_per_key = 0");
        assert!(e.starts_with("server.max_agents_per_key:"), "{e}");
    }

    #[test]
    fn connection_settings_have_defaults_and_are_checked() {
        let c = Config::default();
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.server.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.server.body_read_timeout, Duration::from_secs(10));
        assert_eq!(c.server.min_body_rate, 1024);
        assert_eq!(c.server.max_connections, 1024);
        assert_eq!(c.server.max_connections_per_ip, 256);
        for (text, field) in [
            (
                "header_read_timeout = \"0s\"",
                "server.header_read_timeout:",
            ),
            (
                "header_read_timeout = \"10m\"",
                "server.header_read_timeout:",
            ),
            ("idle_timeout = \"0s\"", "server.idle_timeout:"),
            ("body_read_timeout = \"0s\"", "server.body_read_timeout:"),
            ("body_read_timeout = \"6m\"", "server.body_read_timeout:"),
            ("min_body_rate = 2147483648", "server.min_body_rate:"),
            ("max_connections = 0", "server.max_connections:"),
            (
                "max_connections_per_ip = 0",
                "server.max_connections_per_ip:",
            ),
            (
                "max_connections = 10\nmax_connections_per_ip = 11",
                "server.max_connections_per_ip:",
            ),
        ] {
            let e = error_of(&format!("[server]\n{text}"));
            assert!(e.starts_with(field), "{text}: {e}");
        }
    }

    #[test]
    fn key_cache_ttl_may_be_zero_but_not_long() {
        let c = Config::from_toml("[server]\nkey_cache_ttl = \"0s\"").unwrap();
        assert_eq!(c.server.key_cache_ttl, Duration::ZERO);
        assert!(error_of("[server]\nkey_cache_ttl = \"5m\"").starts_with("server.key_cache_ttl:"));
    }

    #[test]
    fn the_example_file_is_valid_and_states_the_defaults() {
        let example = Config::from_toml(include_str!("../../../warden.example.toml")).unwrap();
        let defaults = Config::default();
        assert_eq!(example.server.listen, defaults.server.listen);
        assert_eq!(
            example.server.max_body_bytes,
            defaults.server.max_body_bytes
        );
        assert_eq!(
            example.server.shutdown_grace,
            defaults.server.shutdown_grace
        );
        assert_eq!(example.server.key_cache_ttl, defaults.server.key_cache_ttl);
        assert_eq!(
            example.server.header_read_timeout,
            defaults.server.header_read_timeout
        );
        assert_eq!(example.server.idle_timeout, defaults.server.idle_timeout);
        assert_eq!(
            example.server.body_read_timeout,
            defaults.server.body_read_timeout
        );
        assert_eq!(example.server.min_body_rate, defaults.server.min_body_rate);
        assert_eq!(
            example.server.max_connections,
            defaults.server.max_connections
        );
        assert_eq!(
            example.server.max_connections_per_ip,
            defaults.server.max_connections_per_ip
        );
        assert_eq!(example.retry.attempts, defaults.retry.attempts);
        assert_eq!(
            example.retry.initial_backoff,
            defaults.retry.initial_backoff
        );
        assert_eq!(example.retry.max_backoff, defaults.retry.max_backoff);
        assert_eq!(
            example.circuit_breaker.failure_threshold,
            defaults.circuit_breaker.failure_threshold
        );
        assert_eq!(
            example.circuit_breaker.cooldown,
            defaults.circuit_breaker.cooldown
        );
        assert_eq!(example.providers["openai"].timeout, Duration::from_secs(60));
        assert_eq!(example.models.len(), 3);
        assert_eq!(example.cache.enabled, defaults.cache.enabled);
        assert_eq!(example.cache.ttl, defaults.cache.ttl);
        assert_eq!(example.cache.max_bytes, defaults.cache.max_bytes);
        assert_eq!(example.limits.key, defaults.limits.key);
        assert_eq!(example.limits.user, defaults.limits.user);
        assert_eq!(example.budgets.default, defaults.budgets.default);
        assert_eq!(
            example.budgets.output_estimate_tokens,
            defaults.budgets.output_estimate_tokens
        );
        assert_eq!(
            example.tiering.when_budget_used,
            defaults.tiering.when_budget_used
        );
        assert_eq!(example.prices["gpt-4o"].cached_input, 1.25);
    }

    #[test]
    fn cost_sections_parse_with_defaults_and_name_bad_fields() {
        let d = Config::default();
        assert!(!d.cache.enabled);
        assert_eq!(d.budgets.default.session_tokens, Some(50_000));
        assert_eq!(d.budgets.default.daily_tokens, None);
        assert_eq!(d.limits.key.requests_per_minute, Some(600), "on by default");
        assert_eq!(d.limits.key.tokens_per_minute, None);
        let c = Config::from_toml(
            r#"
[providers.p]
base_url = "http://x"
[models.big]
targets = [{ provider = "p", model = "b" }]
[models.small]
targets = [{ provider = "p", model = "s" }]
[cache]
enabled = true
[cache.models.big]
ttl = "0s"
[limits]
requests_per_minute = 10
[limits.keys.bulk]
requests_per_minute = 0
[budgets]
session_tokens = 0
key_daily_tokens = 100
[budgets.keys.bulk]
daily_tokens = 1000
[tiering]
cheaper = { big = "small" }
[prices.b]
input = 1
output = 2
[redis]
url_env = "REDIS"
"#,
        )
        .unwrap();
        assert_eq!(c.cache.model_ttl["big"], Duration::ZERO);
        assert_eq!(c.limits.key_rate("app").requests_per_minute, Some(10));
        assert_eq!(c.limits.key_rate("bulk").requests_per_minute, None);
        assert_eq!(c.budgets.for_key("app").session_tokens, None);
        assert_eq!(c.budgets.for_key("bulk").daily_tokens, Some(1000));
        assert_eq!(c.budgets.for_key("bulk").monthly_tokens, None);
        assert_eq!(c.prices["b"].cached_input, 1.0);
        assert_eq!(c.redis.unwrap().key_prefix, "warden:");
        assert!(error_of("[cache]\nbackend = \"redis\"").starts_with("cache.backend:"));
        assert!(error_of("[limits]\nbackend = \"disk\"").starts_with("limits.backend:"));
        assert!(
            error_of("[tiering]\nwhen_budget_used = 1.5").starts_with("tiering.when_budget_used:")
        );
        assert!(
            error_of("[tiering]\ncheaper = { a = \"nope\" }").starts_with("tiering.cheaper.a:")
        );
        assert!(error_of("[prices.m]\ninput = -1\noutput = 1").starts_with("prices.m.input:"));
        assert!(error_of("[cache.models.m]\nttl = \"soon\"").starts_with("cache.models.m.ttl:"));
        assert!(error_of("[redis]\nkey_prefix = \"x\"").starts_with("redis.url_env:"));
        assert!(error_of("[budgets]\nsurprise = 1").contains("surprise"));
    }

    #[test]
    fn redaction_policies_parse_and_bad_actions_name_their_field() {
        let c = Config::from_toml(
            r#"
[redaction]
restore = false
[redaction.entities]
IP_ADDRESS = "allow"
[redaction.keys.support-bot]
default = "block"
EMAIL = "mask"
[[redaction.custom]]
name = "PROJECT"
words = ["Bluebird"]
"#,
        )
        .unwrap();
        assert_eq!(c.redaction.default, RedactAction::Mask);
        assert!(!c.redaction.restore && c.redaction.scan_answers);
        assert_eq!(c.redaction.entities["IP_ADDRESS"], RedactAction::Allow);
        assert_eq!(
            c.redaction.keys["support-bot"].default,
            Some(RedactAction::Block)
        );
        assert_eq!(
            c.redaction.custom[0].matcher,
            CustomMatcher::Words(vec!["Bluebird".into()])
        );
        assert_eq!(
            error_of("[redaction.entities]\nEMAIL = \"hide\""),
            "redaction.entities.EMAIL: `hide` is not one of: mask, block, allow"
        );
        assert!(
            error_of("[[redaction.custom]]\nname = \"lower\"\nregex = \"x\"")
                .starts_with("redaction.custom[0].name:")
        );
        assert!(error_of("[[redaction.custom]]\nname = \"X\"").starts_with("redaction.custom[0]:"));
    }

    #[test]
    fn audit_store_choices_are_checked() {
        let c = Config::from_toml(
            "[audit]\nstore = \"s3\"\ns3_bucket = \"b\"\ns3_prefix = \"/p/q/\"\n",
        )
        .unwrap();
        assert_eq!(
            c.audit.store,
            AuditStore::S3 {
                bucket: "b".into(),
                prefix: "p/q".into(),
                endpoint: None,
                region: "us-east-1".into(),
                allow_http: false
            }
        );
        assert!(error_of("[audit]\nstore = \"s3\"").starts_with("audit.s3_bucket:"));
        assert!(error_of("[audit]\nstore = \"gcs\"").starts_with("audit.store:"));
        let plain = "[audit]\nstore = \"s3\"\ns3_bucket = \"b\"\ns3_endpoint = \"http://x\"";
        assert!(error_of(plain).starts_with("audit.s3_endpoint:"));
        assert!(error_of("[audit]\nfsync = \"sometimes\"").starts_with("audit.fsync:"));
    }

    #[test]
    fn agents_and_databases_parse_and_bad_fields_are_named() {
        let c = Config::from_toml(
            r#"
[databases.shop]
kind = "sqlite"
path = "/tmp/shop.db"
tables = ["Customers", "orders"]
columns = { customers = ["id", "Name"] }
[agents.analyst]
system_prompt = "You answer questions."
model = "m"
tools = ["sql_query"]
databases = ["shop"]
"#,
        )
        .unwrap();
        let db = &c.databases["shop"];
        assert_eq!(db.max_rows, 100);
        assert_eq!(db.statement_timeout, Duration::from_secs(5));
        assert_eq!(
            db.tables["customers"]
                .as_ref()
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            ["id", "name"]
        );
        assert!(db.tables["orders"].is_none());
        let a = &c.agents["analyst"];
        assert_eq!(
            (a.max_steps, a.max_identical_tool_calls, a.session_tokens),
            (10, 3, 50_000)
        );
        assert_eq!(a.step_timeout, Duration::from_secs(30));
        assert_eq!(a.permissions, crate::Permissions::ReadOnly);
        let agent = |extra: &str| {
            format!(
                "[databases.shop]\nkind = \"sqlite\"\npath = \"x\"\ntables = [\"t\"]\n[agents.a]\nsystem_prompt = \"p\"\nmodel = \"m\"\n{extra}"
            )
        };
        assert!(error_of(&agent("tools = [\"rm_rf\"]")).starts_with("agents.a.tools:"));
        assert!(error_of(&agent("tools = [\"sql_query\"]")).starts_with("agents.a.databases:"));
        assert!(error_of(&agent("databases = [\"nope\"]")).starts_with("agents.a.databases:"));
        assert!(error_of(&agent("permissions = \"root\"")).starts_with("agents.a.permissions:"));
        let e = error_of(
            "[databases.d]\nkind = \"sqlite\"\npath = \"x\"\ntables = [\"people\"]\ncolumns = { people = [\"name\"] }\nwritable_tables = [\"main.people\"]",
        );
        assert!(e.starts_with("databases.d.writable_tables:"), "{e}");
        // A read-only agent (the default) may not be given a write tool, named or forced.
        let writable = "[databases.shop]\nkind = \"sqlite\"\npath = \"x\"\ntables = [\"t\"]\nwritable_tables = [\"t\"]\n[agents.a]\nsystem_prompt = \"p\"\nmodel = \"m\"\ndatabases = [\"shop\"]\n";
        let e = error_of(&format!(
            "{writable}tools = [\"sql_query\", \"sql_execute\"]"
        ));
        assert!(
            e.starts_with("agents.a.tools:") && e.contains("read-only"),
            "{e}"
        );
        let e = error_of(&format!(
            "{writable}tools = [\"sql_query\"]\nwrite_tools = [\"sql_query\"]"
        ));
        assert!(
            e.starts_with("agents.a.write_tools:") && e.contains("read-only"),
            "{e}"
        );
        assert!(
            Config::from_toml(&format!(
                "{writable}tools = [\"sql_query\", \"sql_execute\"]\npermissions = \"read-write\""
            ))
            .is_ok()
        );
        assert!(error_of(&agent("max_steps = 0")).starts_with("agents.a.max_steps:"));
        assert!(error_of(&agent("step_timeout = \"0s\"")).starts_with("agents.a.step_timeout:"));
        assert!(
            error_of("[databases.d]\nkind = \"oracle\"\ntables = [\"t\"]")
                .starts_with("databases.d.kind:")
        );
        assert!(
            error_of("[databases.d]\nkind = \"mysql\"\ntables = [\"t\"]")
                .starts_with("databases.d.url_env:")
        );
        let my = Config::from_toml(
            "[databases.d]\nkind = \"mysql\"\nurl_env = \"U\"\nwrite_url_env = \"W\"\ntables = [\"t\"]\nwritable_tables = [\"t\"]\nallowed_functions = [\"My_Fn\"]",
        )
        .unwrap();
        let d = &my.databases["d"];
        assert_eq!(d.location.url_env(), Some("U"));
        assert_eq!(d.write_url_env.as_deref(), Some("W"));
        assert!(d.allowed_functions.contains("my_fn"));
        assert!(!d.strict_roles);
        assert!(
            error_of("[databases.d]\nkind = \"sqlite\"\npath = \"x\"\ntables = [\"t\"]\nwritable_tables = [\"t\"]\nwrite_url_env = \"W\"")
                .starts_with("databases.d.write_url_env:")
        );
        assert!(
            error_of("[databases.d]\nkind = \"postgres\"\nurl_env = \"U\"\ntables = [\"t\"]\nwritable_tables = [\"t\"]\nstrict_roles = true")
                .starts_with("databases.d.write_url_env:"),
            "strict roles need a separate write role"
        );
        assert!(
            error_of("[databases.d]\nkind = \"sqlite\"\npath = \"x\"")
                .starts_with("databases.d.tables:")
        );
        assert!(
            error_of("[databases.d]\nkind = \"postgres\"\ntables = [\"t\"]")
                .starts_with("databases.d.url_env:")
        );
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8787");
        assert_eq!(c.server.max_body_bytes, 4 * 1024 * 1024);
        assert!(c.providers.is_empty());
    }

    fn error_of(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_field_is_named() {
        let e = error_of("[server]\nlisten_addr = \"x\"\n");
        assert!(e.contains("listen_addr"), "{e}");
    }

    #[test]
    fn unknown_provider_in_target_names_the_field() {
        let e = error_of("[models.m]\ntargets = [{ provider = \"nope\", model = \"x\" }]\n");
        assert_eq!(e, "models.m.targets[0].provider: unknown provider `nope`");
    }

    #[test]
    fn bad_values_name_their_field() {
        assert!(error_of("[server]\nlisten = \"here\"").starts_with("server.listen:"));
        assert!(
            error_of("[retry]\ninitial_backoff = \"10\"").starts_with("retry.initial_backoff:")
        );
        assert!(error_of("[retry]\nattempts = 0").starts_with("retry.attempts:"));
        assert!(
            error_of("[providers.p]\nbase_url = \"ftp://x\"").starts_with("providers.p.base_url:")
        );
        let both =
            "[providers.p]\nbase_url = \"http://x\"\napi_key_env = \"A\"\napi_key_file = \"f\"";
        assert!(error_of(both).starts_with("providers.p.api_key_env:"));
        let auth = "[providers.p]\nbase_url = \"http://x\"\nheaders = { Authorization = \"x\" }";
        assert!(error_of(auth).starts_with("providers.p.headers:"));
    }

    #[test]
    fn duplicate_model_names_are_refused() {
        let text = r#"
[providers.p]
base_url = "http://x"
[models.a]
targets = [{ provider = "p", model = "x" }]
[models.b]
aliases = ["a"]
targets = [{ provider = "p", model = "y" }]
"#;
        assert_eq!(
            error_of(text),
            "models.b.aliases: `a` is already a name of models.a"
        );
    }
}
