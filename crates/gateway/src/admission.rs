//! The order of one call, in one place:
//!
//! 1. the request rate limit (key and end user), before any work is spent on the request;
//! 2. redaction (or refusal: blocked data, or a body costlier to redact than its bound), so
//!    nothing later sees raw personal data;
//! 3. tiering (a key that spent most of its budget moves to the cheaper model) and the route;
//! 4. the cache lookup (a hit is answered here: no tokens, no provider);
//! 5. the token estimate, the budget reservation and the token rate limit;
//! 6. the providers (retries, fallback), see `pipeline`;
//! 7. settlement: budgets and token limits to the real count, the cost, the cache store, and
//!    the answer's placeholders restored for the client.

use crate::budget::{self, Reservation};
use crate::cache::{self, CacheStatus};
use crate::limits::{Exceeded, Kind, Who};
use crate::redaction::totals;
use crate::stream::{ChatStream, StreamSummary};
use crate::{Call, CallReport, Endpoint, Error, Failure, Gateway, Reply, Route, Success};
use crate::{price, redaction, tokens};
use futures_util::StreamExt;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use warden_redact::{Exchange, Redacted, Refusal};

fn seconds(us: u64) -> u64 {
    us.div_ceil(1_000_000).max(1)
}

fn limit_error(e: &Exceeded, cost: u64) -> Error {
    Error::LimitExceeded {
        message: e.message(cost),
        retry_after: e.retry_after_us.map(seconds),
    }
}

impl Gateway {
    /// Runs a call through the whole pipeline, in the order the module's documentation gives.
    pub async fn call(&self, mut call: Call) -> Result<Success, Failure> {
        let mut meta = CallReport::default();
        let caller = call.caller.clone();
        let who = Who {
            key_id: &caller.key_id,
            key_name: &caller.key_name,
            user: caller.user.as_deref(),
        };
        // 1. Requests per minute.
        if let Err(error) = self.admit_request(&who, &mut meta).await {
            return Err(failure(error, BTreeMap::new(), meta));
        }
        // 2. Redaction: nothing leaves unredacted, and a blocked request goes no further.
        let (exchange, body) = match self.redact_request(&mut call).await {
            Ok(redacted) => redacted,
            Err((error, redactions)) => return Err(failure(error, redactions, meta)),
        };
        // 3. Tiering, then the route.
        let scopes = budget::scopes(
            &self.budgets,
            &caller.key_id,
            &caller.key_name,
            caller.session.as_deref(),
            warden_core::time::unix_secs(),
        );
        let (model, route) = match self
            .route_after_tiering(&call.model, &scopes, &mut meta)
            .await
        {
            Ok(routed) => routed,
            Err(error) => return Err(failure(error, exchange.totals(), meta)),
        };
        // 4. The cache.
        let ttl = self.cache.ttl(&caller.key_name, &route.name);
        let cache_key = match self
            .look_up(&call, &route, ttl, body.get(), &mut meta)
            .await
        {
            Lookup::Hit(entry) => return Ok(self.answer_from_cache(&call, entry, exchange, meta)),
            Lookup::Miss(key) => key,
        };
        // 5. Budgets and tokens per minute, on an estimate made with the model's tokenizer.
        let needs_tokens = !scopes.is_empty() || self.limiter.limits_tokens(&caller.key_name);
        let (mut body, estimate) = if needs_tokens {
            self.estimate(&call, &route, &model, body).await
        } else {
            (body, 0)
        };
        let reservation = match self
            .reserve(&who, scopes, estimate, needs_tokens, &mut meta)
            .await
        {
            Ok(reservation) => reservation,
            Err(error) => return Err(failure(error, exchange.totals(), meta)),
        };

        // 6. The providers.
        let store_key = cache_key.zip(ttl).filter(|_| caller.cache.store);
        call.collect_answer = call.stream && store_key.is_some();
        let mut exchange = Some(exchange);
        let forwarded = self
            .forward(&call, &route, &mut body, &mut exchange, &mut meta)
            .await;

        // 7. Settlement.
        let reply = match forwarded {
            Err(error) => {
                drop(reservation);
                if needs_tokens {
                    self.limiter.adjust_tokens(&who, -(estimate as i64)).await;
                }
                return Err(failure(error, totals(&exchange), meta));
            }
            Ok(reply) => reply,
        };
        let settle = Settle {
            reservation,
            estimate,
            needs_tokens,
            store_key,
        };
        Ok(match reply {
            Reply::Complete { body, usage } => {
                let spent = (body, usage);
                self.settle_complete(&call, &who, &model, settle, spent, exchange, meta)
                    .await
            }
            Reply::Stream(mut stream) => {
                self.settle_when_done(&mut stream, settle, &caller, &model, &meta);
                Success {
                    redactions: stream.redactions.clone(),
                    meta,
                    reply: Reply::Stream(stream),
                }
            }
        })
    }

    /// Step 1: the request rate limits of the key and the end user (on success one request is
    /// consumed).
    async fn admit_request(&self, who: &Who<'_>, meta: &mut CallReport) -> Result<(), Error> {
        match self
            .limiter
            .check(who, Kind::Requests, 1, &mut meta.rate)
            .await
        {
            Err(e) => {
                tracing::error!(error = %e, "rate limit check failed; refusing");
                Err(Error::LimitsUnavailable)
            }
            Ok(Err(exceeded)) => {
                meta.refusal = Some("rate_limited");
                Err(limit_error(&exceeded, 1))
            }
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Step 2: the body redacted by the key's policy (off the async worker when it is large),
    /// with the exchange that restores the answer; or why it may not be sent, with what was
    /// found so far.
    async fn redact_request(
        &self,
        call: &mut Call,
    ) -> Result<(Exchange, Redacted<Map<String, Value>>), (Error, BTreeMap<String, u32>)> {
        let mut exchange = self.redactor.exchange(&call.caller.key_name);
        let raw = std::mem::take(&mut call.body);
        let endpoint = call.endpoint;
        let (exchange, redacted) = crate::cpu::run(call.body_len, move || {
            let redacted = match endpoint {
                Endpoint::ChatCompletions => exchange.chat_request(raw),
                Endpoint::Embeddings => exchange.embeddings_request(raw),
            };
            (exchange, redacted)
        })
        .await;
        redaction::record(exchange.counts().0, "request");
        match redacted {
            Ok(body) => Ok((exchange, body)),
            Err(Refusal::Blocked(blocked)) => {
                Err((Error::Blocked(blocked.to_string()), exchange.totals()))
            }
            Err(Refusal::TooComplex(too_complex)) => {
                metrics::counter!("warden_redaction_too_complex_total").increment(1);
                Err((Error::TooComplex(too_complex.to_string()), BTreeMap::new()))
            }
        }
    }

    /// Step 3: the model to use (the cheaper tier once a key has spent most of its budget)
    /// and its route.
    async fn route_after_tiering(
        &self,
        asked: &str,
        scopes: &[budget::Scope],
        meta: &mut CallReport,
    ) -> Result<(String, Arc<Route>), Error> {
        let mut model = asked.to_owned();
        if let Some(cheaper) = self.tiering.cheaper.get(&model) {
            match self.ledger.share_used(scopes).await {
                Ok(share) if share >= self.tiering.when_budget_used => {
                    metrics::counter!("warden_tier_downgrades_total", "from" => model.clone(),
                        "to" => cheaper.clone())
                    .increment(1);
                    meta.downgraded_from = Some(std::mem::replace(&mut model, cheaper.clone()));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "budget read failed; refusing");
                    return Err(Error::LimitsUnavailable);
                }
            }
        }
        match self.route(&model) {
            Some(route) => Ok((model, route)),
            None => Err(Error::ModelNotFound(model)),
        }
    }

    /// Step 4: the cached answer, if the key's cache settings allow a lookup and one is
    /// there; else the key to store the answer under (none when the cache is bypassed).
    async fn look_up(
        &self,
        call: &Call,
        route: &Route,
        ttl: Option<std::time::Duration>,
        body: &Map<String, Value>,
        meta: &mut CallReport,
    ) -> Lookup {
        if ttl.is_none() || !call.caller.cache.lookup {
            metrics::counter!("warden_cache_total", "result" => "bypass").increment(1);
            meta.cache = Some(CacheStatus::Bypass);
            return Lookup::Miss(None);
        }
        let key = self
            .cache
            .key(call.endpoint, &call.caller.key_id, &route.name, body);
        if let Some(entry) = self.cache.get(&key).await {
            metrics::counter!("warden_cache_total", "result" => "hit").increment(1);
            meta.cache = Some(CacheStatus::Hit);
            meta.provider = Some(entry.provider.clone());
            meta.upstream_model = Some(entry.upstream_model.clone());
            return Lookup::Hit(entry);
        }
        metrics::counter!("warden_cache_total", "result" => "miss").increment(1);
        meta.cache = Some(CacheStatus::Miss);
        Lookup::Miss(Some(key))
    }

    /// Step 5's estimate: the prompt's tokens by the first target's tokenizer plus the output
    /// cap (off the async worker when the body is large). Gives the body back.
    async fn estimate(
        &self,
        call: &Call,
        route: &Route,
        model: &str,
        body: Redacted<Map<String, Value>>,
    ) -> (Redacted<Map<String, Value>>, u64) {
        let tokenizer_model = route.targets.first().map_or(model, |t| &t.model).to_owned();
        let output_estimate = self.budgets.output_estimate_tokens;
        let endpoint = call.endpoint;
        crate::cpu::run(call.body_len, move || {
            let estimate = match endpoint {
                Endpoint::ChatCompletions => {
                    tokens::chat_prompt(&tokenizer_model, body.get())
                        + tokens::output_cap(body.get(), output_estimate)
                }
                Endpoint::Embeddings => tokens::embeddings_input(&tokenizer_model, body.get()),
            };
            (body, estimate)
        })
        .await
    }

    /// Step 5: the budget reservation of `estimate` tokens on every scope, then the token
    /// rate limits; a refusal of either spends nothing.
    async fn reserve(
        &self,
        who: &Who<'_>,
        scopes: Vec<budget::Scope>,
        estimate: u64,
        needs_tokens: bool,
        meta: &mut CallReport,
    ) -> Result<Reservation, Error> {
        let reservation = match self.ledger.reserve(scopes, estimate).await {
            Err(e) => {
                tracing::error!(error = %e, "budget reservation failed; refusing");
                return Err(Error::LimitsUnavailable);
            }
            Ok(Err(exhausted)) => {
                metrics::counter!("warden_budget_refusals_total",
                    "budget" => exhausted.scope.kind.describe())
                .increment(1);
                meta.refusal = Some("budget_exceeded");
                let retry_after = exhausted
                    .scope
                    .resets_at
                    .map(|t| (t - warden_core::time::unix_secs()).max(1) as u64);
                return Err(Error::BudgetExceeded {
                    message: exhausted.message(),
                    retry_after,
                });
            }
            Ok(Ok(r)) => r,
        };
        if needs_tokens {
            match self
                .limiter
                .check(who, Kind::Tokens, estimate, &mut meta.rate)
                .await
            {
                Err(e) => {
                    tracing::error!(error = %e, "token limit check failed; refusing");
                    return Err(Error::LimitsUnavailable);
                }
                Ok(Err(exceeded)) => {
                    meta.refusal = Some("rate_limited");
                    return Err(limit_error(&exceeded, estimate));
                }
                Ok(Ok(())) => {}
            }
        }
        Ok(reservation)
    }

    /// Step 7 for a complete answer: budgets and token limits settled to the real count, the
    /// cost, the cache store, and the answer restored for the client.
    #[allow(clippy::too_many_arguments)] // the call's parts, each used once
    async fn settle_complete(
        &self,
        call: &Call,
        who: &Who<'_>,
        model: &str,
        settle: Settle,
        (body, usage): (bytes::Bytes, Option<crate::Usage>),
        mut exchange: Option<Exchange>,
        mut meta: CallReport,
    ) -> Success {
        let Settle {
            reservation,
            estimate,
            needs_tokens,
            store_key,
        } = settle;
        let actual = usage.map_or(estimate, |u| u.total());
        meta.spent = reservation.settle(actual);
        if needs_tokens {
            self.limiter
                .adjust_tokens(who, actual as i64 - estimate as i64)
                .await;
        }
        meta.cost_usd = usage.and_then(|u| {
            price::lookup(&self.prices, meta.upstream_model.as_deref(), model)
                .map(|p| price::cost(p, &u))
        });
        if let Some((key, ttl)) = store_key {
            self.cache
                .put(
                    key,
                    body.clone(),
                    usage,
                    meta.provider.clone().unwrap_or_default(),
                    meta.upstream_model.clone().unwrap_or_default(),
                    ttl,
                )
                .await;
        }
        let body = restore(call, &mut exchange, body);
        Success {
            redactions: totals(&exchange),
            meta,
            reply: Reply::Complete { body, usage },
        }
    }

    /// A stream's tokens are known when it ends: settle then (and cache the whole answer if
    /// it completed), and hand the summary on.
    fn settle_when_done(
        &self,
        stream: &mut ChatStream,
        settle: Settle,
        caller: &crate::Caller,
        model: &str,
        meta: &CallReport,
    ) {
        let Settle {
            reservation,
            estimate,
            needs_tokens,
            store_key,
        } = settle;
        let cache = self.cache.clone();
        let provider = meta.provider.clone().unwrap_or_default();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let upstream_summary = std::mem::replace(&mut stream.summary, rx);
        let limiter = self.limiter.clone();
        let prices = self.prices.clone();
        let key_id = caller.key_id.clone();
        let key_name = caller.key_name.clone();
        let user = caller.user.clone();
        let upstream_model = meta.upstream_model.clone();
        let model = model.to_owned();
        tokio::spawn(async move {
            let mut summary = upstream_summary.await.unwrap_or_default();
            // A stream cut short without usage is charged its whole estimate.
            let actual = summary.usage.map_or(estimate, |u| u.total());
            summary.spent = reservation.settle(actual);
            if needs_tokens {
                let who = Who {
                    key_id: &key_id,
                    key_name: &key_name,
                    user: user.as_deref(),
                };
                limiter
                    .adjust_tokens(&who, actual as i64 - estimate as i64)
                    .await;
            }
            summary.cost_usd = summary.usage.and_then(|u| {
                price::lookup(&prices, upstream_model.as_deref(), &model)
                    .map(|p| price::cost(p, &u))
            });
            if let (Some((key, ttl)), Some(answer)) = (store_key, summary.answer.take()) {
                let upstream = upstream_model.clone().unwrap_or_default();
                cache
                    .put(key, answer, summary.usage, provider, upstream, ttl)
                    .await;
            }
            let _ = tx.send(summary);
        });
    }

    /// A cached answer, restored for this request, whole or replayed as a stream.
    fn answer_from_cache(
        &self,
        call: &Call,
        entry: std::sync::Arc<cache::Entry>,
        exchange: Exchange,
        meta: CallReport,
    ) -> Success {
        let mut exchange = Some(exchange);
        let body = restore(call, &mut exchange, entry.body.clone());
        let redactions = totals(&exchange);
        let reply = if call.stream {
            let sse = cache::replay_as_sse(&body, call.include_usage).unwrap_or_default();
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(StreamSummary {
                usage: None,
                completed: true,
                failure: None,
                redactions: redactions.clone(),
                spent: Default::default(),
                cost_usd: None,
                answer: None,
            });
            Reply::Stream(ChatStream {
                body: futures_util::stream::once(async move { sse }).boxed(),
                summary: rx,
                redactions: redactions.clone(),
            })
        } else {
            // Usage is reported as the original call's, but nothing was spent on this one.
            Reply::Complete { body, usage: None }
        };
        Success {
            meta,
            redactions,
            reply,
        }
    }
}

/// A failed call: the error, what redaction found, and what the gateway did.
fn failure(error: Error, redactions: BTreeMap<String, u32>, meta: CallReport) -> Failure {
    Failure {
        error,
        redactions,
        meta: Box::new(meta),
    }
}

/// What the cache lookup found.
enum Lookup {
    /// A stored answer.
    Hit(Arc<cache::Entry>),
    /// None: the key to store the answer under, if the cache is used at all.
    Miss(Option<cache::Key>),
}

/// What a call settles when it ends.
struct Settle {
    reservation: Reservation,
    estimate: u64,
    needs_tokens: bool,
    store_key: Option<(cache::Key, std::time::Duration)>,
}

/// Puts the request's own values back into a (masked) chat answer.
fn restore(call: &Call, exchange: &mut Option<Exchange>, body: bytes::Bytes) -> bytes::Bytes {
    if call.endpoint != Endpoint::ChatCompletions {
        return body;
    }
    let Some(x) = exchange.as_mut() else {
        return body;
    };
    let out = match x.restore_chat_answer(&body) {
        Some(new) => new.into(),
        None => body,
    };
    redaction::record_answer(x);
    out
}
