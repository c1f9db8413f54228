//! The cost-control sections: `[cache]`, `[limits]`, `[budgets]`, `[tiering]`, `[prices]` and
//! `[redis]` (shared state for several nodes). Every limit is off unless set, except the
//! per-session token budget (50,000 by default, as agents loop) and each key's requests per
//! minute (600 by default, so that one key cannot amplify its traffic without bound).

use crate::Error;
use crate::typed::duration;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCache {
    pub enabled: Option<bool>,
    pub backend: Option<String>,
    pub ttl: Option<String>,
    pub max_bytes: Option<u64>,
    pub shared_across_keys: Option<bool>,
    #[serde(default)]
    pub models: BTreeMap<String, RawTtl>,
    #[serde(default)]
    pub keys: BTreeMap<String, RawTtl>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTtl {
    pub ttl: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRate {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub backend: Option<String>,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    #[serde(default)]
    pub users: RawRate,
    #[serde(default)]
    pub keys: BTreeMap<String, RawRate>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKeyBudget {
    pub session_tokens: Option<u64>,
    pub daily_tokens: Option<u64>,
    pub monthly_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudgets {
    pub backend: Option<String>,
    pub session_tokens: Option<u64>,
    pub key_daily_tokens: Option<u64>,
    pub key_monthly_tokens: Option<u64>,
    pub output_estimate_tokens: Option<u64>,
    #[serde(default)]
    pub keys: BTreeMap<String, RawKeyBudget>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTiering {
    pub when_budget_used: Option<f64>,
    #[serde(default)]
    pub cheaper: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPrice {
    pub input: f64,
    pub output: f64,
    pub cached_input: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedis {
    pub url_env: Option<String>,
    pub key_prefix: Option<String>,
}

/// Where shared counters and cached answers live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// In this process (one node).
    Memory,
    /// In Redis, shared by every node (needs `[redis]`).
    Redis,
}

/// The exact-match response cache.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Whether answers are cached (default false: a cached answer to a sampled request is a
    /// behaviour change, so it is the operator's choice).
    pub enabled: bool,
    /// Where answers are kept (default memory).
    pub backend: Backend,
    /// How long an answer is served (default 5m).
    pub ttl: Duration,
    /// Memory bound of the in-process cache (default 64 MiB); the least useful entries go.
    pub max_bytes: u64,
    /// Whether two keys sending the same request share an answer (default false: each key
    /// has its own cache, so a hit reveals nothing about another key's traffic).
    pub shared_across_keys: bool,
    /// TTL per model name as clients send it (`0s` turns caching off for it).
    pub model_ttl: BTreeMap<String, Duration>,
    /// TTL per virtual-key name (`0s` turns caching off for it); wins over the model's.
    pub key_ttl: BTreeMap<String, Duration>,
}

/// A rate: requests and tokens per minute; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate {
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Tokens (prompt estimate plus output cap, settled to the real count) per minute.
    pub tokens_per_minute: Option<u64>,
}

impl Rate {
    /// Whether either limit is set.
    pub fn is_limited(&self) -> bool {
        self.requests_per_minute.is_some() || self.tokens_per_minute.is_some()
    }
}

/// Each key's requests per minute unless configured (`limits.requests_per_minute`, or per key
/// name); `0` turns it off.
pub const DEFAULT_KEY_REQUESTS_PER_MINUTE: u64 = 600;

/// Rate limits (GCRA) per virtual key and per end user (`x-warden-user`, within a key).
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Where the limiter state lives (default memory).
    pub backend: Backend,
    /// Every key's rate unless `keys` names it (requests: 600 per minute by default).
    pub key: Rate,
    /// Each end user's rate.
    pub user: Rate,
    /// Per virtual-key name, field by field over `key` (a field left out keeps `key`'s).
    pub keys: BTreeMap<String, Rate>,
}

impl LimitsConfig {
    /// The rate of the key with this name.
    pub fn key_rate(&self, name: &str) -> Rate {
        self.keys.get(name).copied().unwrap_or(self.key)
    }
}

/// One key's token budgets; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyBudget {
    /// Per session (`x-warden-session`).
    pub session_tokens: Option<u64>,
    /// Per UTC day.
    pub daily_tokens: Option<u64>,
    /// Per UTC calendar month.
    pub monthly_tokens: Option<u64>,
}

/// Token budgets: reserved before a call, settled with the real usage after.
#[derive(Debug, Clone)]
pub struct BudgetsConfig {
    /// Where live counters are kept (default memory; settled totals are always in the store).
    pub backend: Backend,
    /// Budgets of every key unless `keys` names it (session 50,000 by default).
    pub default: KeyBudget,
    /// Per virtual-key name, field by field over `default`.
    pub keys: BTreeMap<String, KeyBudget>,
    /// Output tokens reserved when a request sets no `max_tokens` (default 4,096).
    pub output_estimate_tokens: u64,
}

impl BudgetsConfig {
    /// The budgets of the key with this name.
    pub fn for_key(&self, name: &str) -> KeyBudget {
        self.keys.get(name).copied().unwrap_or(self.default)
    }
}

/// Moves requests to a cheaper model when a key has spent most of its budget.
#[derive(Debug, Clone)]
pub struct TieringConfig {
    /// Share of the key's daily or monthly budget after which requests move (default 0.8).
    pub when_budget_used: f64,
    /// Model name to its cheaper tier, e.g. `reasoning = "simple"`.
    pub cheaper: BTreeMap<String, String>,
}

/// Prices in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Prompt tokens.
    pub input: f64,
    /// Generated tokens.
    pub output: f64,
    /// Prompt tokens the provider served from its own cache (default: the input price).
    pub cached_input: f64,
}

/// Shared state for several nodes.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// The environment variable holding the `redis://` URL (it may hold a password).
    pub url_env: String,
    /// Prefix of every key Warden writes (default `warden:`).
    pub key_prefix: String,
}

fn backend(field: &str, value: &Option<String>, redis: bool) -> Result<Backend, Error> {
    match value.as_deref() {
        None | Some("memory") => Ok(Backend::Memory),
        Some("redis") if redis => Ok(Backend::Redis),
        Some("redis") => Err(Error::invalid(
            field,
            "is \"redis\" but there is no [redis] section",
        )),
        Some(other) => Err(Error::invalid(
            field,
            format!("`{other}` is not one of: memory, redis"),
        )),
    }
}

/// `0` means unlimited, as does leaving the field out.
fn limit(n: Option<u64>) -> Option<u64> {
    n.filter(|n| *n > 0)
}

fn rate(r: &RawRate) -> Rate {
    Rate {
        requests_per_minute: limit(r.requests_per_minute),
        tokens_per_minute: limit(r.tokens_per_minute),
    }
}

fn ttl(field: String, text: &str) -> Result<Duration, Error> {
    crate::parse_duration(text).map_err(|m| Error::invalid(field, m))
}

pub(crate) fn redis(raw: RawRedis) -> Result<Option<RedisConfig>, Error> {
    let Some(url_env) = raw.url_env else {
        if raw.key_prefix.is_some() {
            return Err(Error::invalid(
                "redis.url_env",
                "is required in a [redis] section",
            ));
        }
        return Ok(None);
    };
    if url_env.is_empty() {
        return Err(Error::invalid("redis.url_env", "must name a variable"));
    }
    Ok(Some(RedisConfig {
        url_env,
        key_prefix: raw.key_prefix.unwrap_or_else(|| "warden:".into()),
    }))
}

pub(crate) fn cache(raw: RawCache, redis: bool) -> Result<CacheConfig, Error> {
    let max_bytes = raw.max_bytes.unwrap_or(64 * 1024 * 1024);
    if max_bytes < 1024 {
        return Err(Error::invalid("cache.max_bytes", "must be at least 1024"));
    }
    let mut model_ttl = BTreeMap::new();
    for (name, t) in raw.models {
        let d = ttl(format!("cache.models.{name}.ttl"), &t.ttl)?;
        model_ttl.insert(name, d);
    }
    let mut key_ttl = BTreeMap::new();
    for (name, t) in raw.keys {
        let d = ttl(format!("cache.keys.{name}.ttl"), &t.ttl)?;
        key_ttl.insert(name, d);
    }
    Ok(CacheConfig {
        enabled: raw.enabled.unwrap_or(false),
        backend: backend("cache.backend", &raw.backend, redis)?,
        ttl: duration("cache.ttl", &raw.ttl, "5m")?,
        max_bytes,
        shared_across_keys: raw.shared_across_keys.unwrap_or(false),
        model_ttl,
        key_ttl,
    })
}

pub(crate) fn limits(raw: RawLimits, redis: bool) -> Result<LimitsConfig, Error> {
    let key = Rate {
        requests_per_minute: limit(Some(
            raw.requests_per_minute
                .unwrap_or(DEFAULT_KEY_REQUESTS_PER_MINUTE),
        )),
        tokens_per_minute: limit(raw.tokens_per_minute),
    };
    let over = |v: Option<u64>, d: Option<u64>| if v.is_some() { limit(v) } else { d };
    let keys = raw
        .keys
        .iter()
        .map(|(name, r)| {
            let rate = Rate {
                requests_per_minute: over(r.requests_per_minute, key.requests_per_minute),
                tokens_per_minute: over(r.tokens_per_minute, key.tokens_per_minute),
            };
            (name.clone(), rate)
        })
        .collect();
    Ok(LimitsConfig {
        backend: backend("limits.backend", &raw.backend, redis)?,
        key,
        user: rate(&raw.users),
        keys,
    })
}

pub(crate) fn budgets(raw: RawBudgets, redis: bool) -> Result<BudgetsConfig, Error> {
    let default = KeyBudget {
        session_tokens: limit(Some(raw.session_tokens.unwrap_or(50_000))),
        daily_tokens: limit(raw.key_daily_tokens),
        monthly_tokens: limit(raw.key_monthly_tokens),
    };
    let keys = raw
        .keys
        .iter()
        .map(|(name, k)| {
            let over = |v: Option<u64>, d: Option<u64>| if v.is_some() { limit(v) } else { d };
            let budget = KeyBudget {
                session_tokens: over(k.session_tokens, default.session_tokens),
                daily_tokens: over(k.daily_tokens, default.daily_tokens),
                monthly_tokens: over(k.monthly_tokens, default.monthly_tokens),
            };
            (name.clone(), budget)
        })
        .collect();
    let output_estimate_tokens = raw.output_estimate_tokens.unwrap_or(4096);
    if output_estimate_tokens == 0 {
        return Err(Error::invalid(
            "budgets.output_estimate_tokens",
            "must be at least 1",
        ));
    }
    Ok(BudgetsConfig {
        backend: backend("budgets.backend", &raw.backend, redis)?,
        default,
        keys,
        output_estimate_tokens,
    })
}

pub(crate) fn tiering(raw: RawTiering, model_names: &[&str]) -> Result<TieringConfig, Error> {
    let share = raw.when_budget_used.unwrap_or(0.8);
    if !(share > 0.0 && share <= 1.0) {
        return Err(Error::invalid(
            "tiering.when_budget_used",
            "must be a share greater than 0 and at most 1, e.g. 0.8",
        ));
    }
    for (from, to) in &raw.cheaper {
        if !model_names.contains(&to.as_str()) {
            return Err(Error::invalid(
                format!("tiering.cheaper.{from}"),
                format!("`{to}` is not a configured model name or alias"),
            ));
        }
        if from == to {
            return Err(Error::invalid(
                format!("tiering.cheaper.{from}"),
                "a model cannot be its own cheaper tier",
            ));
        }
    }
    Ok(TieringConfig {
        when_budget_used: share,
        cheaper: raw.cheaper,
    })
}

pub(crate) fn prices(raw: BTreeMap<String, RawPrice>) -> Result<BTreeMap<String, Price>, Error> {
    let mut out = BTreeMap::new();
    for (model, p) in raw {
        let cached_input = p.cached_input.unwrap_or(p.input);
        for (name, v) in [
            ("input", p.input),
            ("output", p.output),
            ("cached_input", cached_input),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(
                    format!("prices.{model}.{name}"),
                    "must be a non-negative number of dollars per million tokens",
                ));
            }
        }
        out.insert(
            model,
            Price {
                input: p.input,
                output: p.output,
                cached_input,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::{Config, DEFAULT_KEY_REQUESTS_PER_MINUTE, Rate};

    fn rate(requests: Option<u64>, tokens: Option<u64>) -> Rate {
        Rate {
            requests_per_minute: requests,
            tokens_per_minute: tokens,
        }
    }

    #[test]
    fn every_key_has_600_requests_per_minute_unless_configured_and_0_turns_it_off() {
        assert_eq!(DEFAULT_KEY_REQUESTS_PER_MINUTE, 600);
        let c = Config::default();
        assert_eq!(c.limits.key_rate("any"), rate(Some(600), None));
        assert_eq!(c.limits.user, Rate::default(), "users stay unlimited");
        let off = Config::from_toml("[limits]\nrequests_per_minute = 0\n").unwrap();
        assert_eq!(off.limits.key_rate("any"), Rate::default());
        let set = Config::from_toml("[limits]\nrequests_per_minute = 5\n").unwrap();
        assert_eq!(set.limits.key_rate("any"), rate(Some(5), None));
    }

    #[test]
    fn a_key_of_its_own_overrides_field_by_field() {
        let c = Config::from_toml(
            "[limits]\ntokens_per_minute = 1000\n[limits.keys.a]\ntokens_per_minute = 5\n\
             [limits.keys.b]\nrequests_per_minute = 0\n",
        )
        .unwrap();
        assert_eq!(
            c.limits.key_rate("a"),
            rate(Some(600), Some(5)),
            "a key with only a token limit keeps the default request rate"
        );
        assert_eq!(c.limits.key_rate("b"), rate(None, Some(1000)));
        assert_eq!(c.limits.key_rate("c"), rate(Some(600), Some(1000)));
    }

    #[test]
    fn the_example_file_states_the_new_defaults() {
        // (The limits themselves are compared in `typed.rs`.)
        let example = Config::from_toml(include_str!("../../../warden.example.toml")).unwrap();
        assert_eq!(
            example.limits.key_rate("any").requests_per_minute,
            Some(600)
        );
        assert_eq!(
            example.redaction.max_cost,
            Config::default().redaction.max_cost
        );
    }
}
