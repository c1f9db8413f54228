//! Rows into records, once for both backends: [`Columns`] reads a column of a known type from
//! any driver's row, and each record has one mapping and one column list.

use crate::Error;
use crate::agents::{AgentRecord, ApprovalRecord, StepRecord};
use crate::records::{GroupBy, KeyEvent, KeyRecord, UsageGroup, UsageRow};
use sqlx::{ColumnIndex, Decode, Row, Type};

/// A row's columns by name and type, for any backend's row (the driver's bounds are stated
/// here once, not on every mapping).
pub(crate) trait Columns {
    fn text(&self, column: &str) -> Result<String, Error>;
    fn text_opt(&self, column: &str) -> Result<Option<String>, Error>;
    fn int(&self, column: &str) -> Result<i64, Error>;
    fn int_opt(&self, column: &str) -> Result<Option<i64>, Error>;
    fn flag(&self, column: &str) -> Result<bool, Error>;
    fn real(&self, column: &str) -> Result<f64, Error>;
    fn real_opt(&self, column: &str) -> Result<Option<f64>, Error>;
}

impl<R> Columns for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &str) -> Result<String, Error> {
        Ok(self.try_get(column)?)
    }
    fn text_opt(&self, column: &str) -> Result<Option<String>, Error> {
        Ok(self.try_get(column)?)
    }
    fn int(&self, column: &str) -> Result<i64, Error> {
        Ok(self.try_get(column)?)
    }
    fn int_opt(&self, column: &str) -> Result<Option<i64>, Error> {
        Ok(self.try_get(column)?)
    }
    fn flag(&self, column: &str) -> Result<bool, Error> {
        Ok(self.try_get(column)?)
    }
    fn real(&self, column: &str) -> Result<f64, Error> {
        Ok(self.try_get(column)?)
    }
    fn real_opt(&self, column: &str) -> Result<Option<f64>, Error> {
        Ok(self.try_get(column)?)
    }
}

/// The columns [`key`] reads.
pub(crate) const KEY_COLUMNS: &str =
    "id, name, prefix, models, created_at, expires_at, revoked_at, replaced_by, admin,
    agents, max_agents, lineage_id";

pub(crate) fn key(row: &impl Columns) -> Result<KeyRecord, Error> {
    let models = match row.text_opt("models")? {
        None => None,
        Some(text) => Some(
            serde_json::from_str(&text)
                .map_err(|e| Error::Corrupt(format!("virtual_keys.models: {e}")))?,
        ),
    };
    Ok(KeyRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        prefix: row.text("prefix")?,
        models,
        created_at: row.int("created_at")?,
        expires_at: row.int_opt("expires_at")?,
        revoked_at: row.int_opt("revoked_at")?,
        replaced_by: row.text_opt("replaced_by")?,
        admin: row.flag("admin")?,
        agents: serde_json::from_str(&row.text("agents")?)
            .map_err(|e| Error::Corrupt(format!("virtual_keys.agents: {e}")))?,
        max_agents: row.int_opt("max_agents")?,
        // Set for every key by the migration that added the column, and on every insert.
        lineage_id: row
            .text_opt("lineage_id")?
            .ok_or_else(|| Error::Corrupt("virtual_keys.lineage_id is NULL".into()))?,
    })
}

pub(crate) fn key_event(row: &impl Columns) -> Result<KeyEvent, Error> {
    Ok(KeyEvent {
        id: row.int("id")?,
        at_ms: row.int("at_ms")?,
        action: row.text("action")?,
        key_name: row.text("key_name")?,
        key_id: row.text("key_id")?,
    })
}

/// The columns [`usage`] reads.
pub(crate) const USAGE_COLUMNS: &str =
    "request_id, key_id, endpoint, model, provider, upstream_model, status, prompt_tokens,
    completion_tokens, latency_ms, attempts, stream, deployment, created_at, user_id,
    session_id, cache, refusal, cached_tokens, cost_usd, downgraded_from";

pub(crate) fn usage(row: &impl Columns) -> Result<UsageRow, Error> {
    let status = row.int("status")?;
    Ok(UsageRow {
        request_id: row.text("request_id")?,
        key_id: row.text("key_id")?,
        endpoint: row.text("endpoint")?,
        model: row.text("model")?,
        provider: row.text_opt("provider")?,
        upstream_model: row.text_opt("upstream_model")?,
        status: u16::try_from(status)
            .map_err(|_| Error::Corrupt(format!("usage.status {status}")))?,
        prompt_tokens: row.int_opt("prompt_tokens")?,
        completion_tokens: row.int_opt("completion_tokens")?,
        latency_ms: row.int("latency_ms")?,
        attempts: row.int("attempts")?,
        stream: row.flag("stream")?,
        deployment: row.text("deployment")?,
        created_at: row.int("created_at")?,
        user: row.text_opt("user_id")?,
        session: row.text_opt("session_id")?,
        cache: row.text_opt("cache")?,
        refusal: row.text_opt("refusal")?,
        cached_tokens: row.int_opt("cached_tokens")?,
        cost_usd: row.real_opt("cost_usd")?,
        downgraded_from: row.text_opt("downgraded_from")?,
        budget_counters: Vec::new(),
        budget_tokens: 0,
    })
}

/// One group of a usage report (the columns of `UsageStore::usage_report`'s query).
pub(crate) fn usage_group(row: &impl Columns, group_by: GroupBy) -> Result<UsageGroup, Error> {
    // Sums over a group are never NULL, but an empty sum would be: read them as 0.
    let count = |column: &str| Ok::<_, Error>(row.int_opt(column)?.unwrap_or(0));
    Ok(UsageGroup {
        group: row.text("grp")?,
        name: if group_by == GroupBy::Key {
            row.text_opt("key_name")?
        } else {
            None
        },
        requests: count("requests")?,
        prompt_tokens: count("prompt_tokens")?,
        completion_tokens: count("completion_tokens")?,
        cost_usd: row.real("cost_usd")?,
        cache_hits: count("cache_hits")?,
        cache_lookups: count("cache_lookups")?,
        rate_limited: count("rate_limited")?,
        budget_refused: count("budget_refused")?,
    })
}

/// The columns [`agent`] reads.
pub(crate) const AGENT_COLUMNS: &str =
    "id, definition, name, owner_key_id, status, status_reason, task_id, task,
    tokens_used, steps, epoch, last_verified_at, created_at, updated_at";

pub(crate) fn agent(row: &impl Columns) -> Result<AgentRecord, Error> {
    Ok(AgentRecord {
        id: row.text("id")?,
        definition: row.text("definition")?,
        name: row.text("name")?,
        owner_key_id: row.text("owner_key_id")?,
        status: row.text("status")?,
        status_reason: row.text_opt("status_reason")?,
        task_id: row.text_opt("task_id")?,
        task: row.text_opt("task")?,
        tokens_used: row.int("tokens_used")?,
        steps: row.int("steps")?,
        epoch: row.int("epoch")?,
        last_verified_at: row.int_opt("last_verified_at")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

/// The columns [`step`] reads.
pub(crate) const STEP_COLUMNS: &str = "seq, task_id, kind, data, tokens, started_at, finished_at";

pub(crate) fn step(row: &impl Columns) -> Result<StepRecord, Error> {
    Ok(StepRecord {
        seq: row.int("seq")?,
        task_id: row.text("task_id")?,
        kind: row.text("kind")?,
        data: row.text("data")?,
        tokens: row.int_opt("tokens")?,
        started_at: row.int("started_at")?,
        finished_at: row.int("finished_at")?,
    })
}

/// The columns [`approval`] reads.
pub(crate) const APPROVAL_COLUMNS: &str =
    "id, agent_id, task_id, call_id, tool, arguments, arguments_sha256,
    requested_by, preview, state, approver, decision, comment, signature, decided_at,
    idempotency_key, result, created_at, expires_at, updated_at";

pub(crate) fn approval(row: &impl Columns) -> Result<ApprovalRecord, Error> {
    Ok(ApprovalRecord {
        id: row.text("id")?,
        agent_id: row.text("agent_id")?,
        task_id: row.text("task_id")?,
        call_id: row.text("call_id")?,
        tool: row.text("tool")?,
        arguments: row.text("arguments")?,
        arguments_sha256: row.text("arguments_sha256")?,
        requested_by: row.text("requested_by")?,
        preview: row.text("preview")?,
        state: row.text("state")?,
        approver: row.text_opt("approver")?,
        decision: row.text_opt("decision")?,
        comment: row.text_opt("comment")?,
        signature: row.text_opt("signature")?,
        decided_at: row.int_opt("decided_at")?,
        idempotency_key: row.text("idempotency_key")?,
        result: row.text_opt("result")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        updated_at: row.int("updated_at")?,
    })
}
