//! The model pipeline: everything between a parsed OpenAI-style request and the provider's
//! answer. It resolves the model to ordered targets, calls each provider with bounded retries
//! (honouring `retry-after`), falls back to the next target, skips providers whose circuit is
//! open, and streams answers chunk by chunk without ever ending a broken stream as a success.
//!
//! It knows no HTTP server: the `server` crate and, later, the agents call [`Gateway::call`]
//! in-process, so every caller gets the same pipeline. It must never log or return a provider
//! key, and never log request or answer content.

mod admission;
mod assemble;
mod backoff;
mod breaker;
mod budget;
mod cache;
mod call;
mod cpu;
mod error;
mod limits;
mod pipeline;
mod price;
mod provider;
mod record;
mod recorder;
mod redaction;
mod scrub;
mod shared;
mod sse;
mod stream;
mod tokens;
mod usage;

pub use budget::{Exhausted, Scope, ScopeKind, Spent};
pub use cache::{CacheControl, CacheStatus};
pub use call::{Call, Caller, Endpoint};
pub use error::{Error, Side};
pub use limits::{Exceeded, Holder, Kind as LimitKind, RateInfo, Window};
pub use provider::{KeySpec, Provider, SetupError};
pub use record::CallRecord;
pub use recorder::{Recorder, Unrecorded};
pub use shared::SharedRedis;
pub use stream::{ChatStream, StreamSummary};
pub use usage::Usage;

use breaker::Breaker;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use warden_config::{Config, RetryConfig, Target};

/// The configured pipeline. Build once, share behind an `Arc`.
pub struct Gateway {
    client: reqwest::Client,
    providers: HashMap<String, Upstream>,
    routes: HashMap<String, Arc<Route>>,
    listed: Vec<String>,
    default_provider: Option<String>,
    retry: RetryConfig,
    redactor: Arc<warden_redact::Redactor>,
    limiter: Arc<limits::Limiter>,
    ledger: Arc<budget::Ledger>,
    cache: Arc<cache::ResponseCache>,
    budgets: warden_config::BudgetsConfig,
    tiering: warden_config::TieringConfig,
    prices: Arc<BTreeMap<String, warden_config::Price>>,
    /// The default provider's model list and when it was fetched.
    upstream_models: std::sync::Mutex<Option<(std::time::Instant, Vec<String>)>>,
}

/// How long the default provider's model list is reused before it is asked again.
const MODEL_LIST_TTL: Duration = Duration::from_secs(60);

/// A provider and its circuit breaker.
pub(crate) struct Upstream {
    pub(crate) provider: Provider,
    pub(crate) breaker: Breaker,
}

/// A model name resolved to its ordered targets.
#[derive(Debug)]
pub(crate) struct Route {
    /// The configured name (for aliases, the name they point to).
    pub(crate) name: String,
    pub(crate) targets: Vec<Target>,
    /// Its name in metric labels: the configured name, or `other` for a name passed through
    /// to the default provider (a client's string must not make a new series).
    pub(crate) label: String,
}

/// What the gateway did, for usage rows and logs; present on success and failure alike.
#[derive(Debug, Clone, Default)]
pub struct CallReport {
    /// Provider of the last target tried.
    pub provider: Option<String>,
    /// Model name sent to it.
    pub upstream_model: Option<String>,
    /// Upstream attempts made, retries and fallbacks included.
    pub attempts: u32,
    /// How the cache was used; `None` if the request was refused before the lookup.
    pub cache: Option<CacheStatus>,
    /// Rate-limit windows for the `x-ratelimit-*` headers.
    pub rate: RateInfo,
    /// The model the client asked for, when tiering moved the request to a cheaper one.
    pub downgraded_from: Option<String>,
    /// `rate_limited` or `budget_exceeded` when Warden refused the call for cost reasons.
    pub refusal: Option<&'static str>,
    /// Budget counters charged (complete answers; a stream's come with its summary).
    pub spent: Spent,
    /// Dollars, when the model has a price (complete answers; streams: in the summary).
    pub cost_usd: Option<f64>,
}

/// A successful call.
pub struct Success {
    /// What was done.
    pub meta: CallReport,
    /// Redaction counts by entity type (for `x-warden-redactions` and the audit record).
    pub redactions: BTreeMap<String, u32>,
    /// The answer.
    pub reply: Reply,
}

/// A provider's answer.
pub enum Reply {
    /// A whole JSON body, forwarded byte for byte.
    Complete {
        /// The upstream body.
        body: Bytes,
        /// Its `usage`, when reported.
        usage: Option<Usage>,
    },
    /// Server-Sent Events, forwarded as they arrive.
    Stream(ChatStream),
}

/// A failed call.
#[derive(Debug)]
pub struct Failure {
    /// Why.
    pub error: Error,
    /// Redaction counts by entity type (a blocked request's too).
    pub redactions: BTreeMap<String, u32>,
    /// What was tried (boxed: failures stay small to move).
    pub meta: Box<CallReport>,
}

/// A model as listed by `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedModel {
    /// The name clients use.
    pub id: String,
    /// `warden` for configured names and aliases, the provider's name for pass-through ones.
    pub owned_by: String,
}

impl Gateway {
    /// Builds the pipeline. `key_for` turns each provider's configured key source into a
    /// [`KeySpec`] (the binary resolves environment variables; this crate reads no environment).
    /// `store` holds settled budget counters; `shared` is the Redis connection when limits,
    /// budgets or the cache are configured to live there.
    pub fn new(
        config: &Config,
        key_for: impl Fn(&str, &warden_config::ProviderConfig) -> Result<KeySpec, String>,
        store: Arc<dyn warden_store::UsageStore>,
        shared: Option<&SharedRedis>,
    ) -> Result<Self, String> {
        let mut providers = HashMap::new();
        for (name, p) in &config.providers {
            let key = key_for(name, p)?;
            let provider = Provider::new(name, p, key).map_err(|e| e.to_string())?;
            let breaker = Breaker::new(
                config.circuit_breaker.failure_threshold,
                config.circuit_breaker.cooldown,
            );
            providers.insert(name.clone(), Upstream { provider, breaker });
        }
        let mut routes = HashMap::new();
        let mut listed = Vec::new();
        for m in &config.models {
            let route = Arc::new(Route {
                name: m.name.clone(),
                targets: m.targets.clone(),
                label: m.name.clone(),
            });
            for n in std::iter::once(&m.name).chain(&m.aliases) {
                routes.insert(n.clone(), route.clone());
                listed.push(n.clone());
            }
        }
        let redactor = redaction::build(&config.redaction)?;
        // The tokenizer's vocabularies load in the background; the first estimate waits.
        std::thread::spawn(tokens::warm_up);
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(512)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            providers,
            routes,
            listed,
            default_provider: config.default_provider.clone(),
            retry: config.retry.clone(),
            redactor: Arc::new(redactor),
            limiter: Arc::new(limits::Limiter::new(&config.limits, shared)?),
            ledger: Arc::new(budget::Ledger::new(&config.budgets, store, shared)?),
            cache: Arc::new(cache::ResponseCache::new(&config.cache, shared)?),
            budgets: config.budgets.clone(),
            tiering: config.tiering.clone(),
            prices: Arc::new(config.prices.clone()),
            upstream_models: std::sync::Mutex::new(None),
        })
    }

    pub(crate) fn route(&self, model: &str) -> Option<Arc<Route>> {
        if let Some(r) = self.routes.get(model) {
            return Some(r.clone());
        }
        let provider = self.default_provider.as_ref()?;
        Some(Arc::new(Route {
            name: model.to_owned(),
            targets: vec![Target {
                provider: provider.clone(),
                model: model.to_owned(),
            }],
            label: "other".into(),
        }))
    }

    /// Models for `GET /v1/models`: configured names and aliases, then (when a default
    /// provider passes other names through) what that provider lists, best effort.
    pub async fn list_models(&self) -> Vec<ListedModel> {
        let mut out: Vec<ListedModel> = self
            .listed
            .iter()
            .map(|id| ListedModel {
                id: id.clone(),
                owned_by: "warden".into(),
            })
            .collect();
        if let Some(name) = &self.default_provider
            && let Some(up) = self.providers.get(name)
        {
            for id in self.upstream_model_ids(name, up).await {
                if !self.routes.contains_key(&id) {
                    out.push(ListedModel {
                        id,
                        owned_by: name.clone(),
                    });
                }
            }
        }
        out
    }

    /// The default provider's model ids, cached for [`MODEL_LIST_TTL`]; empty if it cannot
    /// be asked (the configured names are still listed).
    async fn upstream_model_ids(&self, name: &str, up: &Upstream) -> Vec<String> {
        let cached = self
            .upstream_models
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some((at, ids)) = cached
            && at.elapsed() < MODEL_LIST_TTL
        {
            return ids;
        }
        match pipeline::fetch_models(&self.client, &up.provider).await {
            Ok(ids) => {
                *self
                    .upstream_models
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) =
                    Some((std::time::Instant::now(), ids.clone()));
                ids
            }
            Err(e) => {
                tracing::warn!(provider = %name, error = %e, "could not list upstream models");
                Vec::new()
            }
        }
    }

    /// The redaction policy, shared with the agents (which redact their tasks and tool
    /// results with it).
    pub fn redactor(&self) -> Arc<warden_redact::Redactor> {
        self.redactor.clone()
    }

    /// Re-reads provider key files: those that changed, or all when `force` (SIGHUP).
    pub fn reload_keys(&self, force: bool) {
        for up in self.providers.values() {
            up.provider.reload_key(force);
        }
    }

    /// Publishes every provider's circuit state to the `warden_circuit_state` gauge; called
    /// before metrics are rendered, since a circuit half-opens by time alone.
    pub fn export_circuit_states(&self) {
        for (name, up) in &self.providers {
            metrics::gauge!("warden_circuit_state", "provider" => name.clone())
                .set(up.breaker.state() as u8 as f64);
        }
    }
}

/// Entry points for `benches/checks.rs`: the in-process rate-limit and budget checks, timed
/// without HTTP. Not part of the API.
#[doc(hidden)]
pub mod bench_api {
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use warden_config::{Backend, BudgetsConfig, KeyBudget, LimitsConfig, Rate};

    /// Times `n` request-rate checks (a key limit and a user limit each), spread over 1,000
    /// users; returns the mean time per check.
    pub async fn rate_limit_checks(n: u32) -> Duration {
        let big = Rate {
            requests_per_minute: Some(u64::MAX / 4),
            tokens_per_minute: Some(u64::MAX / 4),
        };
        let config = LimitsConfig {
            backend: Backend::Memory,
            key: big,
            user: big,
            keys: Default::default(),
        };
        let limiter = crate::limits::Limiter::new(&config, None).expect("limiter");
        let users: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
        let started = Instant::now();
        for i in 0..n {
            let who = crate::limits::Who {
                key_id: "key_0123456789abcdef",
                key_name: "bench",
                user: Some(&users[i as usize % users.len()]),
            };
            let mut info = crate::RateInfo::default();
            let ok = limiter
                .check(&who, crate::limits::Kind::Requests, 1, &mut info)
                .await;
            assert!(matches!(ok, Ok(Ok(()))));
        }
        started.elapsed() / n
    }

    /// Times `n` prompt estimates of a one-message chat body holding `text`, with the
    /// tokenizer of `model`: each a new text (`fresh`, a number is prepended) or the same one
    /// again (counted once, then remembered); returns the mean time per estimate.
    pub fn token_estimates(model: &str, text: &str, n: u32, fresh: bool) -> Duration {
        static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let run = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::tokens::warm_up();
        let bodies: Vec<serde_json::Map<String, serde_json::Value>> = (0..n)
            .map(|i| {
                let i = format!("{run}.{i}");
                let content = if fresh {
                    format!("{i} {text}")
                } else {
                    text.to_owned()
                };
                let v = serde_json::json!({"messages": [{"role": "user", "content": content}]});
                v.as_object().cloned().unwrap_or_default()
            })
            .collect();
        let started = Instant::now();
        for body in &bodies {
            std::hint::black_box(crate::tokens::chat_prompt(model, body));
        }
        started.elapsed() / n
    }

    /// Times `n` budget reservations and settlements (session, daily and monthly budgets
    /// each), spread over 1,000 sessions, once their counters are loaded; returns the mean
    /// time per reserve-and-settle.
    pub async fn budget_checks(store: Arc<dyn warden_store::UsageStore>, n: u32) -> Duration {
        let config = BudgetsConfig {
            backend: Backend::Memory,
            default: KeyBudget {
                session_tokens: Some(u64::MAX / 4),
                daily_tokens: Some(u64::MAX / 4),
                monthly_tokens: Some(u64::MAX / 4),
            },
            keys: Default::default(),
            output_estimate_tokens: 4096,
        };
        let ledger = Arc::new(crate::budget::Ledger::new(&config, store, None).expect("ledger"));
        let sessions: Vec<String> = (0..1000).map(|i| format!("session-{i}")).collect();
        let now = warden_core::time::unix_secs();
        let scopes = |i: u32| {
            crate::budget::scopes(
                &config,
                "key_0123456789abcdef",
                "bench",
                Some(&sessions[i as usize % sessions.len()]),
                now,
            )
        };
        for i in 0..1000 {
            let r = ledger.reserve(scopes(i), 100).await.expect("store");
            drop(r);
        }
        let started = Instant::now();
        for i in 0..n {
            let r = ledger.reserve(scopes(i), 100).await.expect("store");
            r.expect("fits").settle(80);
        }
        started.elapsed() / n
    }
}
