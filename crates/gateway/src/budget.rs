//! Token budgets per session, per key per UTC day and per UTC month. Before a model call the
//! pipeline reserves an estimate (prompt tokens by the model's tokenizer plus the output cap)
//! on every budget that applies, all or nothing, and refuses the call if any would overflow;
//! after the call the reservation is settled to the real count (or released, if nothing was
//! spent). So however many calls race, the overspend is bounded by how far real counts exceed
//! their estimates, and a call that does not fit never reaches the provider.
//!
//! Live counters are in this process (default) or in Redis (several nodes, one atomic script
//! per reservation). Settled tokens are also added to the store, in the same transaction as
//! the usage row that spent them, and counters are loaded from there after a restart.

use crate::shared::{SharedRedis, without_url};
use chrono::Datelike;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warden_config::{Backend, BudgetsConfig};
use warden_store::UsageStore;

/// Counters idle this long (with nothing reserved) leave memory; they reload from the store.
const IDLE: Duration = Duration::from_secs(3600);
/// The in-memory table is swept of idle counters when it grows past this.
const SWEEP_AT: usize = 50_000;
/// How long a session counter lives in Redis after its last use.
const SESSION_TTL_SECS: u64 = 30 * 86_400;

/// Which budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    /// Per `x-warden-session`.
    Session,
    /// Per key per UTC day.
    KeyDaily,
    /// Per key per UTC calendar month.
    KeyMonthly,
}

impl ScopeKind {
    /// How the budget is named in messages.
    pub fn describe(self) -> &'static str {
        match self {
            ScopeKind::Session => "session token budget",
            ScopeKind::KeyDaily => "daily token budget of this key",
            ScopeKind::KeyMonthly => "monthly token budget of this key",
        }
    }
}

/// One budget a call is charged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Which budget.
    pub kind: ScopeKind,
    /// Counter name, e.g. `key:<id>:day:2026-11-26`.
    pub counter: String,
    /// Tokens allowed.
    pub limit: u64,
    /// Unix seconds when it starts again from zero (`None`: never, as for sessions).
    pub resets_at: Option<i64>,
}

impl Scope {
    fn ttl_secs(&self, now: i64) -> u64 {
        match self.resets_at {
            Some(t) => (t - now).max(1) as u64 + 86_400,
            None => SESSION_TTL_SECS,
        }
    }
}

/// The budgets that apply to a call: the key's, and the session's if one is named.
pub(crate) fn scopes(
    config: &BudgetsConfig,
    key_id: &str,
    key_name: &str,
    session: Option<&str>,
    now: i64,
) -> Vec<Scope> {
    let budget = config.for_key(key_name);
    let mut out = Vec::new();
    if let (Some(limit), Some(session)) = (budget.session_tokens, session) {
        out.push(Scope {
            kind: ScopeKind::Session,
            counter: format!("session:{key_id}:{session}"),
            limit,
            resets_at: None,
        });
    }
    let today = warden_core::time::utc(now).unwrap_or_default().date();
    let midnight = |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp();
    if let Some(limit) = budget.daily_tokens {
        out.push(Scope {
            kind: ScopeKind::KeyDaily,
            counter: format!("key:{key_id}:day:{}", today.format("%Y-%m-%d")),
            limit,
            resets_at: today.succ_opt().map(midnight),
        });
    }
    if let Some(limit) = budget.monthly_tokens {
        let next_month = today
            .with_day(1)
            .and_then(|first| first.checked_add_months(chrono::Months::new(1)));
        out.push(Scope {
            kind: ScopeKind::KeyMonthly,
            counter: format!("key:{key_id}:month:{}", today.format("%Y-%m")),
            limit,
            resets_at: next_month.map(midnight),
        });
    }
    out
}

/// A refused reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    /// The budget that would overflow.
    pub scope: Scope,
    /// Tokens already spent or reserved on it.
    pub spent: u64,
    /// Tokens the call needed.
    pub needed: u64,
}

impl Exhausted {
    /// A message for the client: which budget, and when it resets.
    pub fn message(&self) -> String {
        let left = self.scope.limit.saturating_sub(self.spent);
        let reset = match self.scope.resets_at {
            Some(t) => format!("it resets at {}", warden_core::time::iso8601(t)),
            None => "it does not reset; start a new session".into(),
        };
        format!(
            "the {} ({} tokens) is exhausted: {left} left, this request needs up to {}; {reset}",
            self.scope.kind.describe(),
            self.scope.limit,
            self.needed
        )
    }
}

/// Why a reservation could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the budget store is unavailable: {0}")]
pub struct Unavailable(pub String);

/// Live budget counters.
pub(crate) struct Ledger {
    store: Arc<dyn UsageStore>,
    live: Live,
}

enum Live {
    Memory(Mutex<Counters>),
    Redis(SharedRedis),
}

/// The in-memory counters.
struct Counters {
    map: HashMap<String, Counter>,
    /// Size at which idle counters are next swept (doubles when a sweep frees little).
    sweep_at: usize,
}

struct Counter {
    settled: u64,
    reserved: u64,
    touched: Instant,
}

/// Tokens held on some budgets until the call is settled. Dropping it unsettled releases
/// the hold (the call spent nothing, or its outcome is unknown to Warden).
pub(crate) struct Reservation {
    ledger: Arc<Ledger>,
    scopes: Vec<Scope>,
    estimate: u64,
    done: bool,
}

/// What a settled call spent, for its usage row (which adds it to the stored counters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spent {
    /// Counters charged.
    pub counters: Vec<String>,
    /// Tokens charged to each.
    pub tokens: u64,
}

const RESERVE_SCRIPT: &str = r"
-- ARGV[1] = estimate; then per key: limit, ttl seconds, seed (-1 if not known)
local est = tonumber(ARGV[1])
local vals = {}
for i, key in ipairs(KEYS) do
  local base = 2 + (i - 1) * 3
  local v = redis.call('GET', key)
  if not v then
    local seed = tonumber(ARGV[base + 2])
    if seed < 0 then return {-1, i, 0} end
    redis.call('SET', key, seed, 'EX', ARGV[base + 1], 'NX')
    v = redis.call('GET', key)
  end
  vals[i] = tonumber(v)
  if vals[i] + est > tonumber(ARGV[base]) then return {0, i, vals[i]} end
end
for i, key in ipairs(KEYS) do
  redis.call('INCRBY', key, est)
  redis.call('EXPIRE', key, ARGV[2 + (i - 1) * 3 + 1])
end
return {1, 0, 0}
";

const SETTLE_SCRIPT: &str = r"
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then redis.call('INCRBY', key, ARGV[1]) end
end
return 1
";

impl Ledger {
    pub(crate) fn new(
        config: &BudgetsConfig,
        store: Arc<dyn UsageStore>,
        shared: Option<&SharedRedis>,
    ) -> Result<Self, String> {
        let live = match (config.backend, shared) {
            (Backend::Memory, _) => Live::Memory(Mutex::new(Counters {
                map: HashMap::new(),
                sweep_at: SWEEP_AT,
            })),
            (Backend::Redis, Some(s)) => Live::Redis(s.clone()),
            (Backend::Redis, None) => {
                return Err("budgets.backend = \"redis\" but Redis is not connected".into());
            }
        };
        Ok(Self { store, live })
    }

    async fn stored(&self, counters: &[String]) -> Result<HashMap<String, i64>, Unavailable> {
        self.store
            .budget_totals(counters)
            .await
            .map_err(|e| Unavailable(e.to_string()))
    }

    /// Loads into memory the counters not there yet (from the store's settled totals).
    async fn load(&self, scopes: &[Scope]) -> Result<(), Unavailable> {
        let Live::Memory(m) = &self.live else {
            return Ok(());
        };
        let missing: Vec<String> = {
            let m = m.lock().unwrap_or_else(|p| p.into_inner());
            scopes
                .iter()
                .filter(|s| !m.map.contains_key(&s.counter))
                .map(|s| s.counter.clone())
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let stored = self.stored(&missing).await?;
        let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if m.map.len() > m.sweep_at {
            m.map
                .retain(|_, c| c.reserved > 0 || now.duration_since(c.touched) < IDLE);
            m.sweep_at = SWEEP_AT.max(m.map.len() * 2);
        }
        for (counter, tokens) in stored {
            // Another call may have loaded it meanwhile: keep that (it may hold reservations).
            m.map.entry(counter).or_insert(Counter {
                settled: tokens.max(0) as u64,
                reserved: 0,
                touched: now,
            });
        }
        Ok(())
    }

    /// Reserves `estimate` tokens on every scope, or on none.
    pub(crate) async fn reserve(
        self: &Arc<Self>,
        scopes: Vec<Scope>,
        estimate: u64,
    ) -> Result<Result<Reservation, Exhausted>, Unavailable> {
        let reservation = |scopes| Reservation {
            ledger: self.clone(),
            scopes,
            estimate,
            done: false,
        };
        if scopes.is_empty() {
            return Ok(Ok(reservation(scopes)));
        }
        match &self.live {
            Live::Memory(m) => {
                self.load(&scopes).await?;
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                Ok(reserve_in(&mut m.map, scopes, estimate).map(reservation))
            }
            Live::Redis(shared) => {
                let now = warden_core::time::unix_secs();
                let mut seeds: Option<HashMap<String, i64>> = None;
                loop {
                    let script = redis::Script::new(RESERVE_SCRIPT);
                    let mut inv = script.prepare_invoke();
                    inv.arg(estimate);
                    for s in &scopes {
                        let seed = seeds
                            .as_ref()
                            .map_or(-1, |m| m.get(&s.counter).copied().unwrap_or(0));
                        inv.key(shared.key(&s.counter))
                            .arg(s.limit)
                            .arg(s.ttl_secs(now))
                            .arg(seed);
                    }
                    let mut conn = shared.conn.clone();
                    let r: Vec<i64> = inv
                        .invoke_async(&mut conn)
                        .await
                        .map_err(|e| Unavailable(without_url(&e)))?;
                    match r.as_slice() {
                        [1, ..] => return Ok(Ok(reservation(scopes))),
                        [0, i, spent] => {
                            let scope = scopes
                                .get((*i as usize).saturating_sub(1))
                                .cloned()
                                .ok_or_else(|| Unavailable("bad script answer".into()))?;
                            return Ok(Err(Exhausted {
                                scope,
                                spent: (*spent).max(0) as u64,
                                needed: estimate,
                            }));
                        }
                        // A counter Redis does not hold (first use, or Redis restarted):
                        // seed it from the store's settled total and try again.
                        [-1, ..] if seeds.is_none() => {
                            let names: Vec<String> =
                                scopes.iter().map(|s| s.counter.clone()).collect();
                            seeds = Some(self.stored(&names).await?);
                        }
                        _ => return Err(Unavailable("unexpected answer from Redis".into())),
                    }
                }
            }
        }
    }

    /// The largest share (0..) of the key's daily or monthly budget already spent.
    pub(crate) async fn share_used(&self, scopes: &[Scope]) -> Result<f64, Unavailable> {
        let keyed: Vec<&Scope> = scopes
            .iter()
            .filter(|s| s.kind != ScopeKind::Session)
            .collect();
        if keyed.is_empty() {
            return Ok(0.0);
        }
        let spent: Vec<u64> = match &self.live {
            Live::Memory(m) => {
                let owned: Vec<Scope> = keyed.iter().map(|s| (*s).clone()).collect();
                self.load(&owned).await?;
                let m = m.lock().unwrap_or_else(|p| p.into_inner());
                keyed
                    .iter()
                    .map(|s| m.map.get(&s.counter).map_or(0, |c| c.settled + c.reserved))
                    .collect()
            }
            Live::Redis(shared) => {
                let names: Vec<String> = keyed.iter().map(|s| shared.key(&s.counter)).collect();
                let mut conn = shared.conn.clone();
                let vals: Vec<Option<i64>> = redis::cmd("MGET")
                    .arg(&names)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| Unavailable(without_url(&e)))?;
                vals.into_iter()
                    .map(|v| v.unwrap_or(0).max(0) as u64)
                    .collect()
            }
        };
        Ok(keyed
            .iter()
            .zip(spent)
            .map(|(s, n)| n as f64 / s.limit as f64)
            .fold(0.0, f64::max))
    }

    fn finish(&self, scopes: &[Scope], estimate: u64, actual: u64) {
        match &self.live {
            Live::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                for s in scopes {
                    if let Some(c) = m.map.get_mut(&s.counter) {
                        c.reserved = c.reserved.saturating_sub(estimate);
                        c.settled += actual;
                        c.touched = now;
                    }
                }
            }
            Live::Redis(shared) => {
                let delta = actual as i64 - estimate as i64;
                if delta == 0 {
                    return;
                }
                let shared = shared.clone();
                let keys: Vec<String> = scopes.iter().map(|s| shared.key(&s.counter)).collect();
                let settle = async move {
                    let script = redis::Script::new(SETTLE_SCRIPT);
                    let mut inv = script.prepare_invoke();
                    inv.arg(delta);
                    for k in keys {
                        inv.key(k);
                    }
                    let mut conn = shared.conn.clone();
                    if let Err(e) = inv.invoke_async::<i64>(&mut conn).await {
                        // The counter keeps the estimate: it errs towards spending less.
                        tracing::warn!(error = %without_url(&e), "could not settle a budget reservation");
                    }
                };
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        rt.spawn(settle);
                    }
                    Err(_) => tracing::warn!("no runtime to settle a budget reservation"),
                }
            }
        }
    }
}

/// The all-or-nothing check and hold, under the lock.
fn reserve_in(
    m: &mut HashMap<String, Counter>,
    scopes: Vec<Scope>,
    estimate: u64,
) -> Result<Vec<Scope>, Exhausted> {
    for s in &scopes {
        let spent = m.get(&s.counter).map_or(0, |c| c.settled + c.reserved);
        if spent + estimate > s.limit {
            return Err(Exhausted {
                scope: s.clone(),
                spent,
                needed: estimate,
            });
        }
    }
    let now = Instant::now();
    for s in &scopes {
        let c = m.entry(s.counter.clone()).or_insert(Counter {
            settled: 0,
            reserved: 0,
            touched: now,
        });
        c.reserved += estimate;
        c.touched = now;
    }
    Ok(scopes)
}

impl Reservation {
    /// Replaces the hold by the real count; returns what to add to the stored counters.
    pub(crate) fn settle(mut self, actual: u64) -> Spent {
        self.done = true;
        self.ledger.finish(&self.scopes, self.estimate, actual);
        Spent {
            counters: std::mem::take(&mut self.scopes)
                .into_iter()
                .map(|s| s.counter)
                .collect(),
            tokens: actual,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done && !self.scopes.is_empty() {
            self.ledger.finish(&self.scopes, self.estimate, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_config::KeyBudget;

    fn config(daily: Option<u64>, monthly: Option<u64>) -> BudgetsConfig {
        BudgetsConfig {
            backend: Backend::Memory,
            default: KeyBudget {
                session_tokens: Some(50_000),
                daily_tokens: daily,
                monthly_tokens: monthly,
            },
            keys: Default::default(),
            output_estimate_tokens: 4096,
        }
    }

    #[test]
    fn scopes_name_their_period_and_reset() {
        // 2026-12-31T23:00:00Z
        let now = warden_core::time::parse_time("2026-12-31T23:00:00Z").unwrap();
        let s = scopes(&config(Some(10), Some(20)), "k1", "app", Some("s9"), now);
        assert_eq!(s[0].counter, "session:k1:s9");
        assert_eq!(s[0].resets_at, None);
        assert_eq!(s[1].counter, "key:k1:day:2026-12-31");
        assert_eq!(
            warden_core::time::iso8601(s[1].resets_at.unwrap()),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(s[2].counter, "key:k1:month:2026-12");
        assert_eq!(s[2].resets_at, s[1].resets_at);
        assert!(scopes(&config(None, None), "k1", "app", None, now).is_empty());
    }

    #[test]
    fn holds_are_all_or_nothing_and_bounded_by_the_limit() {
        let mut m = HashMap::new();
        let s = |counter: &str, limit| Scope {
            kind: ScopeKind::KeyDaily,
            counter: counter.into(),
            limit,
            resets_at: Some(0),
        };
        reserve_in(&mut m, vec![s("a", 100), s("b", 50)], 40).unwrap();
        let e = reserve_in(&mut m, vec![s("a", 100), s("b", 50)], 20).unwrap_err();
        assert_eq!((e.scope.counter.as_str(), e.spent), ("b", 40));
        assert_eq!(m["a"].reserved, 40, "the refused call held nothing on `a`");
        assert!(e.message().contains("10 left, this request needs up to 20"));
        assert!(e.message().contains("resets at 1970-01-01T00:00:00Z"));
    }
}
