//! `GET /v1/usage?group_by=key|model|day&from=&to=` (admin keys only): tokens, cost,
//! requests, cache hit rate, and rate-limit and budget refusals, grouped.

use crate::auth::AdminKey;
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use warden_core::ErrorCode;
use warden_store::{GroupBy, UsageGroup};

/// How far back a report reaches when `from` is not given.
const DEFAULT_SPAN_SECS: i64 = 30 * 86_400;

/// The query string.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsageQuery {
    group_by: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// One group as JSON (shared with `warden usage --json`).
pub fn group_json(g: &UsageGroup) -> serde_json::Value {
    let hit_rate = if g.cache_lookups > 0 {
        serde_json::json!(g.cache_hits as f64 / g.cache_lookups as f64)
    } else {
        serde_json::Value::Null
    };
    serde_json::json!({
        "group": g.group,
        "name": g.name,
        "requests": g.requests,
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": g.completion_tokens,
        "total_tokens": g.prompt_tokens + g.completion_tokens,
        "cost_usd": g.cost_usd,
        "cache_hits": g.cache_hits,
        "cache_hit_rate": hit_rate,
        "rate_limited": g.rate_limited,
        "budget_refused": g.budget_refused,
    })
}

fn bad(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

pub(crate) async fn usage(
    State(state): State<Arc<AppState>>,
    _admin: AdminKey,
    query: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return bad(format!("bad query string: {}", e.body_text())).into_response(),
    };
    let group_by = q.group_by.as_deref().unwrap_or("key");
    let Some(group) = GroupBy::parse(group_by) else {
        return bad(format!(
            "`group_by` must be one of: key, model, day (not `{group_by}`)"
        ))
        .into_response();
    };
    let now = warden_core::time::unix_secs();
    let time = |field: &str, v: &Option<String>, default: i64| match v {
        None => Ok(default),
        Some(text) => {
            warden_core::time::parse_time(text).map_err(|m| bad(format!("`{field}`: {m}")))
        }
    };
    let (from, to) = match (
        time("from", &q.from, now - DEFAULT_SPAN_SECS),
        time("to", &q.to, now + 1),
    ) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    if from >= to {
        return bad("`from` must be before `to`".into()).into_response();
    }
    match state
        .store
        .usage_report(group, from * 1000, to * 1000)
        .await
    {
        Ok(groups) => Json(serde_json::json!({
            "object": "usage.report",
            "group_by": group_by,
            "from": warden_core::time::iso8601(from),
            "to": warden_core::time::iso8601(to),
            "data": groups.iter().map(group_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "usage report failed");
            ApiError::new(
                ErrorCode::StoreUnavailable,
                "the usage store is unavailable; retry later",
            )
            .into_response()
        }
    }
}
