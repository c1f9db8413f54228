//! The usage row and the audit record of one model call, built in one place for every caller
//! of the pipeline (the HTTP handlers and the agents), so both record the same fields.

use crate::{CallReport, Usage};
use std::collections::BTreeMap;
use warden_store::UsageRow;

/// What a caller knows about a finished call, besides the gateway's [`CallReport`].
#[derive(Debug, Clone, Copy)]
pub struct CallRecord<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// Virtual key id.
    pub key_id: &'a str,
    /// Virtual key name.
    pub key_name: &'a str,
    /// `chat.completions`, `embeddings` or `agent.chat`.
    pub endpoint: &'a str,
    /// The model the caller asked for.
    pub model: &'a str,
    /// The HTTP status answered (or that the call's error maps to).
    pub status: u16,
    /// Milliseconds until the answer (streams: until the last byte).
    pub latency_ms: i64,
    /// Whether it was streamed.
    pub stream: bool,
    /// The deployment version.
    pub deployment: &'a str,
    /// The end user, if named.
    pub user: Option<&'a str>,
    /// The session (or the agent's task), if any.
    pub session: Option<&'a str>,
    /// The client's own request id (sanitised), for the audit record.
    pub client_request_id: Option<&'a str>,
}

impl CallRecord<'_> {
    /// The usage row.
    pub fn usage_row(&self, meta: &CallReport, usage: Option<Usage>) -> UsageRow {
        UsageRow {
            request_id: self.request_id.to_owned(),
            key_id: self.key_id.to_owned(),
            endpoint: self.endpoint.to_owned(),
            model: self.model.to_owned(),
            provider: meta.provider.clone(),
            upstream_model: meta.upstream_model.clone(),
            status: self.status,
            prompt_tokens: usage.and_then(|u| u.prompt_tokens),
            completion_tokens: usage.and_then(|u| u.completion_tokens),
            latency_ms: self.latency_ms,
            attempts: i64::from(meta.attempts),
            stream: self.stream,
            deployment: self.deployment.to_owned(),
            created_at: warden_core::time::unix_millis() as i64,
            user: self.user.map(str::to_owned),
            session: self.session.map(str::to_owned),
            cache: meta.cache.map(|c| c.label().to_owned()),
            refusal: meta.refusal.map(str::to_owned),
            cached_tokens: usage.and_then(|u| u.cached_tokens),
            cost_usd: meta.cost_usd,
            downgraded_from: meta.downgraded_from.clone(),
            budget_counters: meta.spent.counters.clone(),
            budget_tokens: meta.spent.tokens as i64,
        }
    }

    /// The audit record of the call described by `row`.
    pub fn audit_event(
        &self,
        row: &UsageRow,
        meta: &CallReport,
        redactions: &BTreeMap<String, u32>,
    ) -> warden_audit::Event {
        warden_audit::Event::ModelCall(Box::new(warden_audit::ModelCall {
            request_id: row.request_id.clone(),
            key_id: row.key_id.clone(),
            key_name: self.key_name.to_owned(),
            endpoint: row.endpoint.clone(),
            model: row.model.clone(),
            provider: row.provider.clone(),
            upstream_model: row.upstream_model.clone(),
            status: row.status,
            prompt_tokens: row.prompt_tokens,
            completion_tokens: row.completion_tokens,
            redactions: redactions.clone(),
            attempts: meta.attempts,
            stream: row.stream,
            latency_ms: row.latency_ms.max(0) as u64,
            user: row.user.clone(),
            session: row.session.clone(),
            cache: row.cache.clone(),
            refusal: row.refusal.clone(),
            cost_usd: row.cost_usd.map(|c| format!("{c:.8}")),
            downgraded_from: row.downgraded_from.clone(),
            client_request_id: self.client_request_id.map(str::to_owned),
        }))
    }
}
