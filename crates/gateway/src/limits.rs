//! Rate limits per virtual key and per end user (`x-warden-user`, within its key): requests
//! and tokens per minute, by GCRA (the generic cell rate algorithm). Each limit is one number,
//! the "theoretical arrival time" (TAT): a request of cost `n` is allowed when, after adding
//! `n` emission intervals, the TAT is at most one minute ahead of now. That allows a burst of
//! the whole minute's quota and then a steady rate, with no window edges to game.
//!
//! The checks of one request (its key's and its user's) are all-or-nothing: a refused request
//! consumes nothing. In process, one short critical section; with Redis, one Lua script per
//! check, run atomically by the server with the server's clock, so every node sees one limit.

use crate::shared::{SharedRedis, without_url};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;
use warden_config::{Backend, LimitsConfig, Rate};

/// One minute, in microseconds: the GCRA period.
const PERIOD_US: f64 = 60_000_000.0;
/// The in-memory table is swept of idle entries when it grows past this.
const SWEEP_AT: usize = 100_000;

/// What is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
}

impl Kind {
    fn suffix(self) -> &'static str {
        match self {
            Kind::Requests => "rpm",
            Kind::Tokens => "tpm",
        }
    }

    /// Plural noun for messages and headers.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Requests => "requests",
            Kind::Tokens => "tokens",
        }
    }
}

/// Whose limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// The virtual key's.
    Key,
    /// The end user's (`x-warden-user`).
    User,
}

/// The state of one limit after a check, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Requests or tokens per minute.
    pub limit: u64,
    /// What is left now.
    pub remaining: u64,
    /// Microseconds until the full quota is back.
    pub reset_us: u64,
}

/// The tightest limit of each kind seen by a request (what OpenAI's headers report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateInfo {
    /// Requests per minute.
    pub requests: Option<Window>,
    /// Tokens per minute.
    pub tokens: Option<Window>,
}

impl RateInfo {
    fn merge(&mut self, kind: Kind, w: Window) {
        let slot = match kind {
            Kind::Requests => &mut self.requests,
            Kind::Tokens => &mut self.tokens,
        };
        if slot.is_none_or(|old| w.remaining < old.remaining) {
            *slot = Some(w);
        }
    }
}

/// A refused check.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    /// What ran out.
    pub kind: Kind,
    /// Whose limit.
    pub holder: Holder,
    /// Its value per minute.
    pub limit: u64,
    /// Microseconds until the request would fit; `None` if it never can (cost above limit).
    pub retry_after_us: Option<u64>,
    /// The headers' view, refused limit included.
    pub info: RateInfo,
}

impl Exceeded {
    /// A message for the client.
    pub fn message(&self, cost: u64) -> String {
        let whose = match self.holder {
            Holder::Key => "this key's",
            Holder::User => "this user's",
        };
        let noun = self.kind.noun();
        match self.retry_after_us {
            Some(us) => format!(
                "rate limit exceeded: {whose} limit is {} {noun} per minute; retry in {:.1}s",
                self.limit,
                us as f64 / 1e6
            ),
            None => format!(
                "this request needs about {cost} {noun}, more than {whose} limit of {} {noun} per minute",
                self.limit
            ),
        }
    }
}

/// Why a check could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the shared rate-limit store is unavailable: {0}")]
pub struct Unavailable(pub String);

/// One limit to check.
struct Check {
    name: String,
    holder: Holder,
    limit: u64,
}

/// The result of the GCRA step for one limit.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Step {
    allowed: bool,
    new_tat: f64,
    window: Window,
    retry_after_us: Option<u64>,
}

/// GCRA for one limit: `tat` and `now` in microseconds, `n` the cost.
fn step(tat: f64, now: f64, limit: u64, n: u64) -> Step {
    let t = PERIOD_US / limit as f64;
    let tat = tat.max(now);
    let new_tat = tat + n as f64 * t;
    let allow_at = new_tat - PERIOD_US;
    if allow_at <= now {
        Step {
            allowed: true,
            new_tat,
            window: Window {
                limit,
                remaining: ((now + PERIOD_US - new_tat) / t).floor().max(0.0) as u64,
                reset_us: (new_tat - now).ceil() as u64,
            },
            retry_after_us: None,
        }
    } else {
        Step {
            allowed: false,
            new_tat: tat,
            window: Window {
                limit,
                remaining: ((now + PERIOD_US - tat) / t).floor().max(0.0) as u64,
                reset_us: (tat - now).ceil() as u64,
            },
            retry_after_us: (n <= limit).then(|| (allow_at - now).ceil() as u64),
        }
    }
}

/// Requests and tokens per minute, per key and per user.
pub(crate) struct Limiter {
    config: LimitsConfig,
    store: Store,
}

enum Store {
    Memory(Mutex<Memory>),
    Redis(SharedRedis),
}

struct Memory {
    started: Instant,
    tats: HashMap<String, f64>,
    /// Size at which the next sweep runs: doubles when a sweep frees little, so a table of
    /// live limits is not swept on every check.
    sweep_at: usize,
}

impl Memory {
    fn now(&self) -> f64 {
        self.started.elapsed().as_micros() as f64
    }

    fn sweep(&mut self, now: f64) {
        if self.tats.len() > self.sweep_at {
            // An entry whose TAT has passed is the same as no entry.
            self.tats.retain(|_, tat| *tat > now);
            self.sweep_at = SWEEP_AT.max(self.tats.len() * 2);
        }
    }
}

const CHECK_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = 60000000
local n = tonumber(ARGV[1])
local out = {}
local news = {}
local ok = true
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[i + 1])
  local step = period / limit
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new = tat + n * step
  local allow_at = new - period
  if allow_at <= now then
    news[i] = new
    out[i] = {1, math.floor((now + period - new) / step), math.ceil(new - now), 0}
  else
    ok = false
    local retry = -1
    if n <= limit then retry = math.ceil(allow_at - now) end
    out[i] = {0, math.floor((now + period - tat) / step), math.ceil(tat - now), retry}
  end
end
if ok then
  for i, key in ipairs(KEYS) do
    redis.call('SET', key, string.format('%.0f', news[i]), 'PX', math.ceil((news[i] - now) / 1000) + 1000)
  end
end
return out
";

const ADJUST_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local delta = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local step = 60000000 / tonumber(ARGV[i + 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  tat = tat + delta * step
  if tat > now then
    redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  else
    redis.call('DEL', key)
  end
end
return 1
";

impl Limiter {
    pub(crate) fn new(config: &LimitsConfig, shared: Option<&SharedRedis>) -> Result<Self, String> {
        let store = match (config.backend, shared) {
            (Backend::Memory, _) => Store::Memory(Mutex::new(Memory {
                started: Instant::now(),
                tats: HashMap::new(),
                sweep_at: SWEEP_AT,
            })),
            (Backend::Redis, Some(s)) => Store::Redis(s.clone()),
            (Backend::Redis, None) => {
                return Err("limits.backend = \"redis\" but Redis is not connected".into());
            }
        };
        Ok(Self {
            config: config.clone(),
            store,
        })
    }

    /// Whether any token limit applies to this key (or its users), so the caller knows
    /// whether to count tokens at all.
    pub(crate) fn limits_tokens(&self, key_name: &str) -> bool {
        self.config.key_rate(key_name).tokens_per_minute.is_some()
            || self.config.user.tokens_per_minute.is_some()
    }

    fn checks(&self, who: &Who<'_>, kind: Kind) -> Vec<Check> {
        let pick = |r: Rate| match kind {
            Kind::Requests => r.requests_per_minute,
            Kind::Tokens => r.tokens_per_minute,
        };
        let mut out = Vec::new();
        if let Some(limit) = pick(self.config.key_rate(who.key_name)) {
            out.push(Check {
                name: format!("rl:{}:{}", who.key_id, kind.suffix()),
                holder: Holder::Key,
                limit,
            });
        }
        if let (Some(user), Some(limit)) = (who.user, pick(self.config.user)) {
            out.push(Check {
                name: format!("rl:{}:u:{user}:{}", who.key_id, kind.suffix()),
                holder: Holder::User,
                limit,
            });
        }
        out
    }

    /// Checks (and on success consumes) `n` of `kind` against the key's and the user's
    /// limits, all or nothing. `info` collects the windows for the response headers.
    pub(crate) async fn check(
        &self,
        who: &Who<'_>,
        kind: Kind,
        n: u64,
        info: &mut RateInfo,
    ) -> Result<Result<(), Exceeded>, Unavailable> {
        let checks = self.checks(who, kind);
        if checks.is_empty() {
            return Ok(Ok(()));
        }
        let steps = match &self.store {
            Store::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                let now = m.now();
                let steps: Vec<Step> = checks
                    .iter()
                    .map(|c| {
                        let tat = m.tats.get(&c.name).copied().unwrap_or(now);
                        step(tat, now, c.limit, n)
                    })
                    .collect();
                if steps.iter().all(|s| s.allowed) {
                    for (c, s) in checks.iter().zip(&steps) {
                        m.tats.insert(c.name.clone(), s.new_tat);
                    }
                    m.sweep(now);
                }
                steps
            }
            Store::Redis(shared) => redis_check(shared, &checks, n).await?,
        };
        let mut refused = None;
        for (c, s) in checks.iter().zip(&steps) {
            info.merge(kind, s.window);
            if !s.allowed && refused.is_none() {
                refused = Some((c, s.retry_after_us));
            }
        }
        Ok(match refused {
            None => Ok(()),
            Some((c, retry_after_us)) => Err(Exceeded {
                kind,
                holder: c.holder,
                limit: c.limit,
                retry_after_us,
                info: *info,
            }),
        })
    }

    /// Corrects a token check once the real count is known: `delta` = real - estimated.
    pub(crate) async fn adjust_tokens(&self, who: &Who<'_>, delta: i64) {
        if delta == 0 {
            return;
        }
        let checks = self.checks(who, Kind::Tokens);
        if checks.is_empty() {
            return;
        }
        match &self.store {
            Store::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                let now = m.now();
                for c in &checks {
                    let t = PERIOD_US / c.limit as f64;
                    let tat = m.tats.get(&c.name).copied().unwrap_or(now).max(now);
                    m.tats.insert(c.name.clone(), tat + delta as f64 * t);
                }
            }
            Store::Redis(shared) => {
                let script = redis::Script::new(ADJUST_SCRIPT);
                let mut inv = script.prepare_invoke();
                inv.arg(delta);
                for c in &checks {
                    inv.key(shared.key(&c.name)).arg(c.limit);
                }
                let mut conn = shared.conn.clone();
                if let Err(e) = inv.invoke_async::<i64>(&mut conn).await {
                    tracing::warn!(error = %without_url(&e), "could not correct a token limit");
                }
            }
        }
    }
}

async fn redis_check(
    shared: &SharedRedis,
    checks: &[Check],
    n: u64,
) -> Result<Vec<Step>, Unavailable> {
    let script = redis::Script::new(CHECK_SCRIPT);
    let mut inv = script.prepare_invoke();
    inv.arg(n);
    for c in checks {
        inv.key(shared.key(&c.name)).arg(c.limit);
    }
    let mut conn = shared.conn.clone();
    let rows: Vec<Vec<i64>> = inv
        .invoke_async(&mut conn)
        .await
        .map_err(|e| Unavailable(without_url(&e)))?;
    if rows.len() != checks.len() || rows.iter().any(|r| r.len() != 4) {
        return Err(Unavailable(
            "unexpected answer from the limit script".into(),
        ));
    }
    Ok(checks
        .iter()
        .zip(rows)
        .map(|(c, r)| Step {
            allowed: r[0] == 1,
            new_tat: 0.0,
            window: Window {
                limit: c.limit,
                remaining: r[1].max(0) as u64,
                reset_us: r[2].max(0) as u64,
            },
            retry_after_us: (r[0] != 1 && r[3] >= 0).then_some(r[3] as u64),
        })
        .collect())
}

/// Who a request is for.
pub(crate) struct Who<'a> {
    pub(crate) key_id: &'a str,
    pub(crate) key_name: &'a str,
    pub(crate) user: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_minute_burst_then_the_steady_rate() {
        // 60 per minute: one per second after the burst.
        let mut tat = 0.0;
        for i in 0..60 {
            let s = step(tat, 0.0, 60, 1);
            assert!(s.allowed, "request {i} of the burst");
            assert_eq!(s.window.remaining, 59 - i);
            tat = s.new_tat;
        }
        let refused = step(tat, 0.0, 60, 1);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_us, Some(1_000_000));
        assert_eq!(refused.new_tat, tat, "a refusal consumes nothing");
        assert!(!step(tat, 999_999.0, 60, 1).allowed);
        let later = step(tat, 1_000_000.0, 60, 1);
        assert!(later.allowed && later.window.remaining == 0);
    }

    #[test]
    fn costs_are_weights_and_a_cost_above_the_limit_never_fits() {
        let s = step(0.0, 0.0, 1000, 600);
        assert!(s.allowed && s.window.remaining == 400);
        let s2 = step(s.new_tat, 0.0, 1000, 401);
        assert!(!s2.allowed && s2.window.remaining == 400);
        // 1 token is worth 60 ms at 1000/min: 401 - 400 = 1 token short.
        assert_eq!(s2.retry_after_us, Some(60_000));
        assert_eq!(step(0.0, 0.0, 1000, 1001).retry_after_us, None);
    }

    fn limiter(key: Rate, user: Rate) -> Limiter {
        let config = LimitsConfig {
            backend: Backend::Memory,
            key,
            user,
            keys: Default::default(),
        };
        Limiter::new(&config, None).unwrap()
    }

    #[tokio::test]
    async fn key_and_user_limits_are_all_or_nothing() {
        let l = limiter(
            Rate {
                requests_per_minute: Some(3),
                tokens_per_minute: None,
            },
            Rate {
                requests_per_minute: Some(2),
                tokens_per_minute: None,
            },
        );
        let alice = Who {
            key_id: "k1",
            key_name: "app",
            user: Some("alice"),
        };
        let bob = Who {
            user: Some("bob"),
            ..alice
        };
        let mut info = RateInfo::default();
        for _ in 0..2 {
            l.check(&alice, Kind::Requests, 1, &mut info)
                .await
                .unwrap()
                .unwrap();
        }
        let e = l
            .check(&alice, Kind::Requests, 1, &mut info)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(e.holder, Holder::User);
        assert!(
            e.message(1)
                .contains("this user's limit is 2 requests per minute")
        );
        // Alice's refusal did not consume the key's quota: Bob still gets the third.
        let mut info = RateInfo::default();
        l.check(&bob, Kind::Requests, 1, &mut info)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.requests.unwrap().remaining, 0);
        let e = l
            .check(&bob, Kind::Requests, 1, &mut RateInfo::default())
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(e.holder, Holder::Key);
    }

    #[tokio::test]
    async fn token_corrections_give_back_and_take_more() {
        let l = limiter(
            Rate {
                requests_per_minute: None,
                tokens_per_minute: Some(1000),
            },
            Rate::default(),
        );
        let who = Who {
            key_id: "k",
            key_name: "app",
            user: None,
        };
        let mut info = RateInfo::default();
        l.check(&who, Kind::Tokens, 900, &mut info)
            .await
            .unwrap()
            .unwrap();
        assert!(
            l.check(&who, Kind::Tokens, 200, &mut info)
                .await
                .unwrap()
                .is_err()
        );
        l.adjust_tokens(&who, -500).await; // the call used 400, not 900
        l.check(&who, Kind::Tokens, 200, &mut info)
            .await
            .unwrap()
            .unwrap();
    }
}
