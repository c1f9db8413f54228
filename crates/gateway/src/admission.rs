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
use crate::stream::{ChatStream, StreamSummary};
use crate::{Call, CallReport, Endpoint, Error, Failure, Gateway, Reply, Success};
use crate::{price, redaction, tokens};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use warden_redact::{Exchange, Refusal};

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
    /// Runs a call through the whole pipeline.
    pub async fn call(&self, mut call: Call) -> Result<Success, Failure> {
        let mut meta = CallReport::default();
        let fail = |error: Error, redactions: BTreeMap<String, u32>, meta: CallReport| {
            Err(Failure {
                error,
                redactions,
                meta: Box::new(meta),
            })
        };
        let caller = call.caller.clone();
        let who = Who {
            key_id: &caller.key_id,
            key_name: &caller.key_name,
            user: caller.user.as_deref(),
        };

        // 1. Requests per minute.
        match self
            .limiter
            .check(&who, Kind::Requests, 1, &mut meta.rate)
            .await
        {
            Err(e) => {
                tracing::error!(error = %e, "rate limit check failed; refusing");
                return fail(Error::LimitsUnavailable, BTreeMap::new(), meta);
            }
            Ok(Err(exceeded)) => {
                meta.refusal = Some("rate_limited");
                return fail(limit_error(&exceeded, 1), BTreeMap::new(), meta);
            }
            Ok(Ok(())) => {}
        }

        // 2. Redaction: nothing leaves unredacted, and a blocked request goes no further.
        let mut exchange = self.redactor.exchange(&caller.key_name);
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
        let mut body = match redacted {
            Ok(body) => body,
            Err(Refusal::Blocked(blocked)) => {
                return fail(Error::Blocked(blocked.to_string()), exchange.totals(), meta);
            }
            Err(Refusal::TooComplex(too_complex)) => {
                metrics::counter!("warden_redaction_too_complex_total").increment(1);
                return fail(
                    Error::TooComplex(too_complex.to_string()),
                    BTreeMap::new(),
                    meta,
                );
            }
        };

        // 3. Tiering, then the route.
        let scopes = budget::scopes(
            &self.budgets,
            &caller.key_id,
            &caller.key_name,
            caller.session.as_deref(),
            warden_core::time::unix_secs(),
        );
        let mut model = call.model.clone();
        if let Some(cheaper) = self.tiering.cheaper.get(&model) {
            match self.ledger.share_used(&scopes).await {
                Ok(share) if share >= self.tiering.when_budget_used => {
                    metrics::counter!("warden_tier_downgrades_total", "from" => model.clone(),
                        "to" => cheaper.clone())
                    .increment(1);
                    meta.downgraded_from = Some(std::mem::replace(&mut model, cheaper.clone()));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "budget read failed; refusing");
                    return fail(Error::LimitsUnavailable, exchange.totals(), meta);
                }
            }
        }
        let Some(route) = self.route(&model) else {
            return fail(Error::ModelNotFound(model), exchange.totals(), meta);
        };

        // 4. The cache.
        let ttl = self.cache.ttl(&caller.key_name, &route.name);
        let cache_key = match ttl {
            Some(_) if caller.cache.lookup => {
                let key = self
                    .cache
                    .key(call.endpoint, &caller.key_id, &route.name, body.get());
                if let Some(entry) = self.cache.get(&key).await {
                    metrics::counter!("warden_cache_total", "result" => "hit").increment(1);
                    meta.cache = Some(CacheStatus::Hit);
                    meta.provider = Some(entry.provider.clone());
                    meta.upstream_model = Some(entry.upstream_model.clone());
                    return Ok(self.answer_from_cache(&call, entry, exchange, meta));
                }
                metrics::counter!("warden_cache_total", "result" => "miss").increment(1);
                meta.cache = Some(CacheStatus::Miss);
                Some(key)
            }
            _ => {
                metrics::counter!("warden_cache_total", "result" => "bypass").increment(1);
                meta.cache = Some(CacheStatus::Bypass);
                None
            }
        };

        // 5. Budgets and tokens per minute, on an estimate made with the model's tokenizer.
        let needs_tokens = !scopes.is_empty() || self.limiter.limits_tokens(&caller.key_name);
        let estimate = if needs_tokens {
            let tokenizer_model = route
                .targets
                .first()
                .map_or(model.as_str(), |t| &t.model)
                .to_owned();
            let output_estimate = self.budgets.output_estimate_tokens;
            let counted = crate::cpu::run(call.body_len, move || {
                let estimate = match endpoint {
                    Endpoint::ChatCompletions => {
                        tokens::chat_prompt(&tokenizer_model, body.get())
                            + tokens::output_cap(body.get(), output_estimate)
                    }
                    Endpoint::Embeddings => tokens::embeddings_input(&tokenizer_model, body.get()),
                };
                (body, estimate)
            });
            let estimate;
            (body, estimate) = counted.await;
            estimate
        } else {
            0
        };
        let reservation = match self.ledger.reserve(scopes, estimate).await {
            Err(e) => {
                tracing::error!(error = %e, "budget reservation failed; refusing");
                return fail(Error::LimitsUnavailable, exchange.totals(), meta);
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
                let error = Error::BudgetExceeded {
                    message: exhausted.message(),
                    retry_after,
                };
                return fail(error, exchange.totals(), meta);
            }
            Ok(Ok(r)) => r,
        };
        if needs_tokens {
            match self
                .limiter
                .check(&who, Kind::Tokens, estimate, &mut meta.rate)
                .await
            {
                Err(e) => {
                    tracing::error!(error = %e, "token limit check failed; refusing");
                    return fail(Error::LimitsUnavailable, exchange.totals(), meta);
                }
                Ok(Err(exceeded)) => {
                    meta.refusal = Some("rate_limited");
                    return fail(limit_error(&exceeded, estimate), exchange.totals(), meta);
                }
                Ok(Ok(())) => {}
            }
        }

        // 6. The providers.
        let store_key = cache_key.zip(ttl).filter(|_| caller.cache.store);
        call.collect_answer = call.stream && store_key.is_some();
        let mut exchange = Some(exchange);
        let forwarded = self
            .forward(&call, &route, &mut body, &mut exchange, &mut meta)
            .await;
        let totals = |x: &Option<Exchange>| x.as_ref().map(Exchange::totals).unwrap_or_default();

        // 7. Settlement.
        let reply = match forwarded {
            Err(error) => {
                drop(reservation);
                if needs_tokens {
                    self.limiter.adjust_tokens(&who, -(estimate as i64)).await;
                }
                return fail(error, totals(&exchange), meta);
            }
            Ok(reply) => reply,
        };
        match reply {
            Reply::Complete { body, usage } => {
                let actual = usage.map_or(estimate, |u| u.total());
                meta.spent = reservation.settle(actual);
                if needs_tokens {
                    self.limiter
                        .adjust_tokens(&who, actual as i64 - estimate as i64)
                        .await;
                }
                meta.cost_usd = usage.and_then(|u| {
                    price::lookup(&self.prices, meta.upstream_model.as_deref(), &model)
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
                let body = restore(&call, &mut exchange, body);
                Ok(Success {
                    redactions: totals(&exchange),
                    meta,
                    reply: Reply::Complete { body, usage },
                })
            }
            Reply::Stream(mut stream) => {
                let settle = Settle {
                    reservation,
                    estimate,
                    needs_tokens,
                    store_key,
                };
                self.settle_when_done(&mut stream, settle, &caller, &model, &meta);
                Ok(Success {
                    redactions: stream.redactions.clone(),
                    meta,
                    reply: Reply::Stream(stream),
                })
            }
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
        let redactions = exchange.as_ref().map(Exchange::totals).unwrap_or_default();
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

/// What a stream settles when it ends.
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
