//! The order of the pipeline, in one place: redact the request (or refuse it), resolve the
//! route, then for each target in order (skipping providers whose circuit is open) make up to
//! `retry.attempts` attempts with backoff, then fall back to the next target. A client error
//! (4xx other than 401/403/429) ends the call at once: another provider would refuse it too.
//! Answers are redacted and restored on the way back, whole or streamed.

use crate::call::upstream_body;
use crate::provider::UrlFor;
use crate::{Call, CallReport, Endpoint, Error, Gateway, Reply, Route, Upstream};
use crate::{backoff, stream, usage};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde_json::{Map, Value};
use std::time::{Duration, Instant, SystemTime};
use warden_config::Target;
use warden_redact::{Exchange, Redacted};

/// Why one attempt failed.
pub(crate) enum AttemptError {
    /// Worth retrying on this target (and counted by its breaker).
    Retry {
        kind: Kind,
        retry_after: Option<Duration>,
    },
    /// This target cannot serve the request, but another might (e.g. its key is refused).
    NextTarget(Error),
    /// No target can: answer the client now.
    Final(Error),
}

impl AttemptError {
    fn retry(kind: Kind) -> Self {
        Self::Retry {
            kind,
            retry_after: None,
        }
    }
}

/// Timeout or connection failure, from a client error.
fn kind_of(e: &reqwest::Error) -> Kind {
    if e.is_timeout() {
        Kind::Timeout
    } else {
        Kind::Connect
    }
}

/// The kinds of retryable failure, summarised for the client when every target fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    RateLimited,
    Status(u16),
    Connect,
    Timeout,
    Malformed,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::RateLimited => "rate_limited",
            Kind::Status(_) => "error_status",
            Kind::Connect => "connect_error",
            Kind::Timeout => "timeout",
            Kind::Malformed => "malformed",
        }
    }
}

impl Gateway {
    /// Sends a redacted call to its route's targets in order: retries with backoff on each,
    /// fallback to the next, circuit breakers skipped. `meta` records what was tried.
    /// Complete chat answers come back masked but not yet restored (see `admission`).
    pub(crate) async fn forward(
        &self,
        call: &Call,
        route: &Route,
        body: &mut Redacted<Map<String, Value>>,
        exchange: &mut Option<Exchange>,
        meta: &mut CallReport,
    ) -> Result<Reply, Error> {
        let mut failures: Vec<(String, Kind)> = Vec::new();
        let mut longest_retry_after: Option<Duration> = None;
        let mut auth_error: Option<Error> = None;
        let mut skipped = 0usize;

        for (i, target) in route.targets.iter().enumerate() {
            let Some(up) = self.providers.get(&target.provider) else {
                skipped += 1;
                continue;
            };
            if i > 0 && meta.attempts > 0 {
                metrics::counter!("warden_fallbacks_total", "model" => route.label.clone(),
                    "to" => target.provider.clone())
                .increment(1);
            }
            for attempt in 1..=self.retry.attempts {
                let Some(permit) = up.breaker.try_acquire() else {
                    if attempt == 1 {
                        skipped += 1;
                    }
                    break;
                };
                if permit.is_probe() {
                    tracing::info!(provider = %target.provider, "circuit half-open: sending a probe");
                }
                if attempt > 1 {
                    metrics::counter!("warden_upstream_retries_total",
                        "provider" => target.provider.clone())
                    .increment(1);
                }
                meta.attempts += 1;
                meta.provider = Some(target.provider.clone());
                meta.upstream_model = Some(target.model.clone());
                let outcome = self.attempt(up, target, &route.label, call, body, exchange);
                match outcome.await {
                    Ok(reply) => {
                        permit.success();
                        return Ok(reply);
                    }
                    Err(AttemptError::Final(error)) => {
                        // The provider answered sensibly: it is healthy.
                        permit.success();
                        return Err(error);
                    }
                    Err(AttemptError::NextTarget(error)) => {
                        drop(permit);
                        auth_error = Some(error);
                        break;
                    }
                    Err(AttemptError::Retry { kind, retry_after }) => {
                        if permit.failure() {
                            tracing::warn!(provider = %target.provider, "circuit opened");
                        }
                        failures.push((target.provider.clone(), kind));
                        if let Some(ra) = retry_after {
                            longest_retry_after = longest_retry_after.max(Some(ra));
                        }
                        if attempt == self.retry.attempts {
                            break;
                        }
                        let wait = match retry_after {
                            Some(ra) if ra > self.retry.max_backoff => break,
                            Some(ra) => ra,
                            None => backoff::delay(&self.retry, attempt),
                        };
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }

        let error = if failures.is_empty() {
            match auth_error {
                Some(e) => e,
                None if skipped > 0 => Error::NoProvider(
                    "every provider for this model is failing (circuit open); retry later".into(),
                ),
                None => Error::NoProvider("no provider is configured for this model".into()),
            }
        } else if failures.iter().all(|(_, k)| *k == Kind::RateLimited) {
            Error::RateLimited {
                retry_after: longest_retry_after.map(|d| d.as_secs().max(1)),
            }
        } else if failures.iter().all(|(_, k)| *k == Kind::Timeout) {
            let p = &failures[failures.len() - 1].0;
            let t = self
                .providers
                .get(p)
                .map(|u| u.provider.timeout)
                .unwrap_or_default();
            Error::Timeout(warden_config::format_duration(t))
        } else {
            let mut summary: Vec<String> = Vec::new();
            for (p, k) in &failures {
                let text = match k {
                    Kind::Status(s) => format!("provider `{p}` answered {s}"),
                    Kind::RateLimited => format!("provider `{p}` answered 429"),
                    Kind::Connect => format!("provider `{p}` could not be reached"),
                    Kind::Timeout => format!("provider `{p}` timed out"),
                    Kind::Malformed => format!("provider `{p}` sent a malformed answer"),
                };
                if !summary.contains(&text) {
                    summary.push(text);
                }
            }
            Error::Unavailable(format!(
                "{} (after {} attempts)",
                summary.join("; "),
                meta.attempts
            ))
        };
        Err(error)
    }

    /// One request to one target.
    async fn attempt(
        &self,
        up: &Upstream,
        target: &Target,
        metric_label: &str,
        call: &Call,
        body: &mut Redacted<Map<String, Value>>,
        exchange: &mut Option<Exchange>,
    ) -> Result<Reply, AttemptError> {
        let provider = &up.provider;
        let body = upstream_body(body, &target.model, call.stream);
        let mut req = self
            .client
            .post(provider.url(match call.endpoint {
                Endpoint::ChatCompletions => UrlFor::Chat,
                Endpoint::Embeddings => UrlFor::Embeddings,
            }))
            .headers(provider.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("x-request-id", &call.caller.request_id)
            .body(body);
        if let Some(key) = provider.key() {
            req = req.header(AUTHORIZATION, format!("Bearer {}", key.expose()));
        }
        if call.stream {
            req = req.header(ACCEPT, "text/event-stream");
        } else {
            req = req.timeout(provider.timeout);
        }
        let started = Instant::now();
        let observe = |outcome: &'static str| {
            metrics::histogram!("warden_upstream_duration_seconds",
                "provider" => provider.name.clone(), "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        };
        let sent = if call.stream {
            match tokio::time::timeout(provider.timeout, req.send()).await {
                Ok(r) => r,
                Err(_) => {
                    observe(Kind::Timeout.label());
                    return Err(AttemptError::retry(Kind::Timeout));
                }
            }
        } else {
            req.send().await
        };
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                observe(kind_of(&e).label());
                tracing::warn!(provider = %provider.name, error = %without_url(&e), "upstream request failed");
                return Err(AttemptError::retry(kind_of(&e)));
            }
        };
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| backoff::parse_retry_after(v, SystemTime::now()));
            let body = tokio::time::timeout(provider.timeout, resp.bytes()).await;
            let body = body.ok().and_then(Result::ok).unwrap_or_default();
            let kind = match status {
                429 => Kind::RateLimited,
                408 => Kind::Timeout,
                _ => Kind::Status(status),
            };
            observe(kind.label());
            tracing::warn!(provider = %provider.name, status, "upstream answered an error");
            return Err(match status {
                401 | 403 => AttemptError::NextTarget(Error::UpstreamAuth(provider.name.clone())),
                400..=499 if kind == Kind::Status(status) => AttemptError::Final(Error::Rejected {
                    status,
                    message: self.upstream_message(&body, provider),
                }),
                // 408, 429, 5xx, and anything unexpected (1xx, 3xx): worth another try.
                _ => AttemptError::Retry { kind, retry_after },
            });
        }
        if call.stream {
            let opened = stream::open(
                resp,
                provider.timeout,
                call.include_usage,
                metric_label,
                exchange,
                call.collect_answer,
            )
            .await;
            observe(opened.as_ref().err().map_or("ok", |k| k.label()));
            return opened.map(Reply::Stream).map_err(AttemptError::retry);
        }
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                observe(kind_of(&e).label());
                return Err(AttemptError::retry(kind_of(&e)));
            }
        };
        match usage::from_body(&body) {
            Ok(u) => {
                observe("ok");
                if let Some(u) = &u {
                    usage::record_tokens(metric_label, u);
                }
                // Values the model produced are masked here; the client's own are restored by
                // the caller, after the masked answer may have been cached.
                let mut body = body;
                if call.endpoint == Endpoint::ChatCompletions
                    && let Some(x) = exchange.as_mut()
                    && let Some(new) = x.mask_chat_answer(&body)
                {
                    body = new.into();
                }
                Ok(Reply::Complete { body, usage: u })
            }
            Err(e) => {
                observe("malformed");
                tracing::warn!(provider = %provider.name, error = %e, "upstream sent malformed JSON");
                Err(AttemptError::Retry {
                    kind: Kind::Malformed,
                    retry_after: None,
                })
            }
        }
    }
}

/// A reqwest error's text without the URL (which may name internal hosts).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<upstream>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Gateway {
    /// The upstream's error message for the client, scrubbed by detection: withheld whole if
    /// it holds any fragment of a configured provider key (any case, any separators, plain
    /// or base64) or a secret the detectors find (`scrub`).
    fn upstream_message(&self, body: &[u8], provider: &crate::Provider) -> String {
        let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let message = parsed
            .as_ref()
            .and_then(|v| v.pointer("/error/message").or_else(|| v.get("message")))
            .and_then(|m| m.as_str())
            .unwrap_or("the provider rejected the request");
        let message: String = message.chars().take(1000).collect();
        let secrets: Vec<_> = self
            .providers
            .values()
            .filter_map(|u| u.provider.key())
            .collect();
        let keys: Vec<&str> = secrets.iter().map(|k| k.expose()).collect();
        let shown = crate::scrub::clean(&message, &keys, self.redactor.detector())
            .unwrap_or_else(|| crate::scrub::WITHHELD.to_owned());
        format!("provider `{}`: {shown}", provider.name)
    }
}

/// `GET {base}/models` on one provider: the ids it lists.
pub(crate) async fn fetch_models(
    client: &reqwest::Client,
    provider: &crate::Provider,
) -> Result<Vec<String>, String> {
    let mut req = client
        .get(provider.url(UrlFor::Models))
        .timeout(provider.timeout.min(Duration::from_secs(10)));
    if let Some(key) = provider.key() {
        req = req.header(AUTHORIZATION, format!("Bearer {}", key.expose()));
    }
    let resp = req.send().await.map_err(|e| without_url(&e))?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status().as_u16()));
    }
    let v: serde_json::Value = resp.json().await.map_err(|e| without_url(&e))?;
    Ok(v.get("data")
        .and_then(|d| d.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get("id")?.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}
