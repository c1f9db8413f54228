//! The embedded backend: one SQLite file in WAL mode with `synchronous = FULL` (a commit is on
//! disk when it returns), driven through sqlx's own worker threads so that nothing blocks the
//! async runtime. Agent journal steps are group-committed by one writer task.

use crate::agents::{
    AgentCreation, AgentRecord, AgentUpdate, ApprovalRecord, DecisionRecord, NewStep, StepRecord,
};
use crate::records::{GroupBy, KeyEvent, KeyRecord, NewKeyRecord, UsageGroup, UsageRow};
use crate::{Error, Store, migrate};
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Journal steps go through one writer that commits them in groups (see
    /// [`journal_writer`]).
    journal: tokio::sync::mpsc::Sender<JournalWrite>,
}

/// One step to commit, and where to say how it went.
struct JournalWrite {
    id: String,
    epoch: i64,
    step: NewStep,
    update: AgentUpdate,
    ack: tokio::sync::oneshot::Sender<Result<i64, Error>>,
}

/// Steps committed in one transaction at most.
const JOURNAL_GROUP: usize = 256;

/// Group commit for agent journals: steps that arrive together (from many agents) are written
/// in one transaction and synced once, and each is acknowledged only after that commit. Each
/// step's state update is conditional on its agent's lease epoch; a stale one is skipped (and
/// reported as [`Error::LeaseLost`]) without failing the others.
async fn journal_writer(pool: SqlitePool, mut rx: tokio::sync::mpsc::Receiver<JournalWrite>) {
    let mut batch = Vec::with_capacity(JOURNAL_GROUP);
    while rx.recv_many(&mut batch, JOURNAL_GROUP).await > 0 {
        let group = std::mem::take(&mut batch);
        match write_group(&pool, &group).await {
            Ok(results) => {
                for (w, r) in group.into_iter().zip(results) {
                    let _ = w.ack.send(r);
                }
            }
            Err(e) => {
                for w in group {
                    let _ = w.ack.send(Err(Error::Unavailable(e.to_string())));
                }
            }
        }
    }
}

async fn write_group(
    pool: &SqlitePool,
    group: &[JournalWrite],
) -> Result<Vec<Result<i64, Error>>, Error> {
    let mut tx = pool.begin().await?;
    let mut results = Vec::with_capacity(group.len());
    for w in group {
        let seq: Option<i64> = sqlx::query_scalar(
            "UPDATE agents SET status = ?1, status_reason = ?2, task_id = ?3, task = ?4,
                tokens_used = ?5, steps = steps + 1, last_verified_at = ?6, updated_at = ?6
             WHERE id = ?7 AND epoch = ?8 RETURNING steps",
        )
        .bind(&w.update.status)
        .bind(&w.update.status_reason)
        .bind(&w.update.task_id)
        .bind(&w.update.task)
        .bind(w.update.tokens_used)
        .bind(w.step.finished_at)
        .bind(&w.id)
        .bind(w.epoch)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(seq) = seq else {
            results.push(Err(Error::LeaseLost(w.id.clone())));
            continue;
        };
        sqlx::query(
            "INSERT INTO agent_steps (agent_id, seq, task_id, kind, data, tokens, started_at, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(&w.id)
        .bind(seq)
        .bind(&w.step.task_id)
        .bind(&w.step.kind)
        .bind(&w.step.data)
        .bind(w.step.tokens)
        .bind(w.step.started_at)
        .bind(w.step.finished_at)
        .execute(&mut *tx)
        .await?;
        results.push(Ok(seq));
    }
    tx.commit().await?;
    Ok(results)
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/warden.db` and applies pending migrations.
    pub async fn open_dir(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Unavailable(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        Self::open_file(&dir.join("warden.db")).await
    }

    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open_file(path: &Path) -> Result<Self, Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        migrate::sqlite(&pool).await?;
        let (journal, rx) = tokio::sync::mpsc::channel(4 * JOURNAL_GROUP);
        tokio::spawn(journal_writer(pool.clone(), rx));
        Ok(Self { pool, journal })
    }
}

fn key_from_row(row: &SqliteRow) -> Result<KeyRecord, Error> {
    let models: Option<String> = row.try_get("models")?;
    let models = match models {
        None => None,
        Some(text) => Some(
            serde_json::from_str(&text)
                .map_err(|e| Error::Corrupt(format!("virtual_keys.models: {e}")))?,
        ),
    };
    Ok(KeyRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        models,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        replaced_by: row.try_get("replaced_by")?,
        admin: row.try_get("admin")?,
        agents: serde_json::from_str(&row.try_get::<String, _>("agents")?)
            .map_err(|e| Error::Corrupt(format!("virtual_keys.agents: {e}")))?,
        max_agents: row.try_get("max_agents")?,
        // Set for every key by the migration that added the column, and on every insert.
        lineage_id: row
            .try_get::<Option<String>, _>("lineage_id")?
            .ok_or_else(|| Error::Corrupt("virtual_keys.lineage_id is NULL".into()))?,
    })
}

async fn key_event(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    action: &str,
    key_name: &str,
    key_id: &str,
) -> Result<(), Error> {
    let now_ms = warden_core::time::unix_millis() as i64;
    sqlx::query("INSERT INTO key_events (at_ms, action, key_name, key_id) VALUES (?, ?, ?, ?)")
        .bind(now_ms)
        .bind(action)
        .bind(key_name)
        .bind(key_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Ends a change to the keys named `name` that touched `rows` rows: none is
/// [`Error::NoSuchKey`] (rolled back); else the change is recorded as an `action` key event in
/// the same transaction. Returns the rows changed.
async fn commit_key_change(
    mut tx: sqlx::Transaction<'_, sqlx::Sqlite>,
    rows: u64,
    action: &str,
    name: &str,
) -> Result<u64, Error> {
    if rows == 0 {
        return Err(Error::NoSuchKey(name.to_owned()));
    }
    key_event(&mut tx, action, name, "").await?;
    tx.commit().await?;
    Ok(rows)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

async fn insert_key_with<'e, E>(executor: E, key: &NewKeyRecord) -> Result<(), Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let models = key
        .models
        .as_ref()
        .map(|m| serde_json::Value::from(m.clone()).to_string());
    sqlx::query(
        "INSERT INTO virtual_keys (id, name, key_hash, prefix, models, created_at, expires_at, admin,
            agents, max_agents, lineage_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&key.id)
    .bind(&key.name)
    .bind(&key.hash[..])
    .bind(&key.prefix)
    .bind(models)
    .bind(key.created_at)
    .bind(key.expires_at)
    .bind(key.admin)
    .bind(serde_json::Value::from(key.agents.clone()).to_string())
    .bind(key.max_agents)
    .bind(&key.lineage_id)
    .execute(executor)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::NameTaken(key.name.clone())
        } else {
            e.into()
        }
    })?;
    Ok(())
}

const AGENT_COLUMNS: &str =
    "id, definition, name, owner_key_id, status, status_reason, task_id, task,
    tokens_used, steps, epoch, last_verified_at, created_at, updated_at";

fn agent_from_row(row: &SqliteRow) -> Result<AgentRecord, Error> {
    Ok(AgentRecord {
        id: row.try_get("id")?,
        definition: row.try_get("definition")?,
        name: row.try_get("name")?,
        owner_key_id: row.try_get("owner_key_id")?,
        status: row.try_get("status")?,
        status_reason: row.try_get("status_reason")?,
        task_id: row.try_get("task_id")?,
        task: row.try_get("task")?,
        tokens_used: row.try_get("tokens_used")?,
        steps: row.try_get("steps")?,
        epoch: row.try_get("epoch")?,
        last_verified_at: row.try_get("last_verified_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn step_from_row(row: &SqliteRow) -> Result<StepRecord, Error> {
    Ok(StepRecord {
        seq: row.try_get("seq")?,
        task_id: row.try_get("task_id")?,
        kind: row.try_get("kind")?,
        data: row.try_get("data")?,
        tokens: row.try_get("tokens")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

const APPROVAL_COLUMNS: &str = "id, agent_id, task_id, call_id, tool, arguments, arguments_sha256,
    requested_by, preview, state, approver, decision, comment, signature, decided_at,
    idempotency_key, result, created_at, expires_at, updated_at";

fn approval_from_row(row: &SqliteRow) -> Result<ApprovalRecord, Error> {
    Ok(ApprovalRecord {
        id: row.try_get("id")?,
        agent_id: row.try_get("agent_id")?,
        task_id: row.try_get("task_id")?,
        call_id: row.try_get("call_id")?,
        tool: row.try_get("tool")?,
        arguments: row.try_get("arguments")?,
        arguments_sha256: row.try_get("arguments_sha256")?,
        requested_by: row.try_get("requested_by")?,
        preview: row.try_get("preview")?,
        state: row.try_get("state")?,
        approver: row.try_get("approver")?,
        decision: row.try_get("decision")?,
        comment: row.try_get("comment")?,
        signature: row.try_get("signature")?,
        decided_at: row.try_get("decided_at")?,
        idempotency_key: row.try_get("idempotency_key")?,
        result: row.try_get("result")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn insert_key(&self, key: &NewKeyRecord) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        insert_key_with(&mut *tx, key).await?;
        key_event(&mut tx, "created", &key.name, &key.id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>, Error> {
        let row = sqlx::query(
            "SELECT id, name, prefix, models, created_at, expires_at, revoked_at, replaced_by, admin,
    agents, max_agents, lineage_id
             FROM virtual_keys WHERE key_hash = ?",
        )
        .bind(&hash[..])
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, Error> {
        let rows = sqlx::query(
            "SELECT id, name, prefix, models, created_at, expires_at, revoked_at, replaced_by, admin,
    agents, max_agents, lineage_id
             FROM virtual_keys ORDER BY created_at DESC, rowid DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_keys(&self, name: &str, now: i64) -> Result<u64, Error> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE virtual_keys SET revoked_at = ?
             WHERE name = ? AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(now)
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        commit_key_change(tx, done.rows_affected(), "revoked", name).await
    }

    async fn rotate_key(&self, new: &NewKeyRecord, old_valid_until: i64) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        // The new key continues the old one's lineage, which owns its agents.
        let lineage: Option<String> = sqlx::query_scalar(
            "SELECT lineage_id FROM virtual_keys
             WHERE name = ? AND revoked_at IS NULL AND replaced_by IS NULL",
        )
        .bind(&new.name)
        .fetch_optional(&mut *tx)
        .await?
        .flatten();
        let new = &NewKeyRecord {
            lineage_id: lineage.unwrap_or_else(|| new.lineage_id.clone()),
            ..new.clone()
        };
        let old = sqlx::query(
            "UPDATE virtual_keys
             SET replaced_by = ?,
                 expires_at = CASE WHEN expires_at IS NULL OR expires_at > ? THEN ? ELSE expires_at END
             WHERE name = ? AND revoked_at IS NULL AND replaced_by IS NULL",
        )
        .bind(&new.id)
        .bind(old_valid_until)
        .bind(old_valid_until)
        .bind(&new.name)
        .execute(&mut *tx)
        .await?;
        if old.rows_affected() == 0 {
            return Err(Error::NoSuchKey(new.name.clone()));
        }
        insert_key_with(&mut *tx, new).await?;
        key_event(&mut tx, "rotated", &new.name, &new.id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_key_agents(
        &self,
        name: &str,
        agents: &[String],
        max_agents: Option<i64>,
    ) -> Result<u64, Error> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE virtual_keys SET agents = ?, max_agents = ? WHERE name = ? AND revoked_at IS NULL",
        )
        .bind(serde_json::Value::from(agents.to_vec()).to_string())
        .bind(max_agents)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        commit_key_change(tx, done.rows_affected(), "updated", name).await
    }

    async fn pending_key_events(&self) -> Result<Vec<KeyEvent>, Error> {
        let rows = sqlx::query(
            "SELECT id, at_ms, action, key_name, key_id FROM key_events WHERE audited = 0 ORDER BY id LIMIT 1000",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyEvent {
                    id: r.try_get("id")?,
                    at_ms: r.try_get("at_ms")?,
                    action: r.try_get("action")?,
                    key_name: r.try_get("key_name")?,
                    key_id: r.try_get("key_id")?,
                })
            })
            .collect()
    }

    async fn mark_key_events_audited(&self, up_to_id: i64) -> Result<(), Error> {
        sqlx::query("UPDATE key_events SET audited = 1 WHERE audited = 0 AND id <= ?")
            .bind(up_to_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_usage(&self, rows: &[UsageRow]) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO usage (request_id, key_id, endpoint, model, provider, upstream_model,
                    status, prompt_tokens, completion_tokens, latency_ms, attempts, stream,
                    deployment, created_at, user_id, session_id, cache, refusal, cached_tokens,
                    cost_usd, downgraded_from)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&r.request_id)
            .bind(&r.key_id)
            .bind(&r.endpoint)
            .bind(&r.model)
            .bind(&r.provider)
            .bind(&r.upstream_model)
            .bind(i64::from(r.status))
            .bind(r.prompt_tokens)
            .bind(r.completion_tokens)
            .bind(r.latency_ms)
            .bind(r.attempts)
            .bind(r.stream)
            .bind(&r.deployment)
            .bind(r.created_at)
            .bind(&r.user)
            .bind(&r.session)
            .bind(&r.cache)
            .bind(&r.refusal)
            .bind(r.cached_tokens)
            .bind(r.cost_usd)
            .bind(&r.downgraded_from)
            .execute(&mut *tx)
            .await?;
            if r.budget_tokens != 0 {
                for counter in &r.budget_counters {
                    sqlx::query(
                        "INSERT INTO budget_counters (counter, tokens, updated_at) VALUES (?, ?, ?)
                         ON CONFLICT(counter) DO UPDATE
                         SET tokens = tokens + excluded.tokens, updated_at = excluded.updated_at",
                    )
                    .bind(counter)
                    .bind(r.budget_tokens)
                    .bind(r.created_at)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn recent_usage(&self, limit: u32) -> Result<Vec<UsageRow>, Error> {
        let rows = sqlx::query(
            "SELECT request_id, key_id, endpoint, model, provider, upstream_model, status,
                    prompt_tokens, completion_tokens, latency_ms, attempts, stream, deployment,
                    created_at, user_id, session_id, cache, refusal, cached_tokens, cost_usd,
                    downgraded_from
             FROM usage ORDER BY id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let status: i64 = row.try_get("status")?;
                Ok(UsageRow {
                    request_id: row.try_get("request_id")?,
                    key_id: row.try_get("key_id")?,
                    endpoint: row.try_get("endpoint")?,
                    model: row.try_get("model")?,
                    provider: row.try_get("provider")?,
                    upstream_model: row.try_get("upstream_model")?,
                    status: u16::try_from(status)
                        .map_err(|_| Error::Corrupt(format!("usage.status {status}")))?,
                    prompt_tokens: row.try_get("prompt_tokens")?,
                    completion_tokens: row.try_get("completion_tokens")?,
                    latency_ms: row.try_get("latency_ms")?,
                    attempts: row.try_get("attempts")?,
                    stream: row.try_get("stream")?,
                    deployment: row.try_get("deployment")?,
                    created_at: row.try_get("created_at")?,
                    user: row.try_get("user_id")?,
                    session: row.try_get("session_id")?,
                    cache: row.try_get("cache")?,
                    refusal: row.try_get("refusal")?,
                    cached_tokens: row.try_get("cached_tokens")?,
                    cost_usd: row.try_get("cost_usd")?,
                    downgraded_from: row.try_get("downgraded_from")?,
                    budget_counters: Vec::new(),
                    budget_tokens: 0,
                })
            })
            .collect()
    }

    async fn usage_report(
        &self,
        group_by: GroupBy,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsageGroup>, Error> {
        // The grouping expression is one of three constants, never user text.
        let (group, order) = match group_by {
            GroupBy::Key => ("u.key_id", "cost_usd DESC, requests DESC, grp"),
            GroupBy::Model => ("u.model", "cost_usd DESC, requests DESC, grp"),
            GroupBy::Day => (
                "strftime('%Y-%m-%d', u.created_at / 1000, 'unixepoch')",
                "grp",
            ),
        };
        let sql = format!(
            "SELECT {group} AS grp,
                    (SELECT name FROM virtual_keys k WHERE k.id = u.key_id) AS key_name,
                    COUNT(*) AS requests,
                    COALESCE(SUM(u.prompt_tokens), 0) AS prompt_tokens,
                    COALESCE(SUM(u.completion_tokens), 0) AS completion_tokens,
                    COALESCE(SUM(u.cost_usd), 0.0) AS cost_usd,
                    SUM(u.cache = 'hit') AS cache_hits,
                    SUM(u.cache IN ('hit', 'miss')) AS cache_lookups,
                    SUM(u.refusal = 'rate_limited') AS rate_limited,
                    SUM(u.refusal = 'budget_exceeded') AS budget_refused
             FROM usage u
             WHERE u.created_at >= ? AND u.created_at < ?
             GROUP BY grp ORDER BY {order}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let count = |c: &str| -> Result<i64, Error> {
                    Ok(r.try_get::<Option<i64>, _>(c)?.unwrap_or(0))
                };
                Ok(UsageGroup {
                    group: r.try_get("grp")?,
                    name: if group_by == GroupBy::Key {
                        r.try_get("key_name")?
                    } else {
                        None
                    },
                    requests: count("requests")?,
                    prompt_tokens: count("prompt_tokens")?,
                    completion_tokens: count("completion_tokens")?,
                    cost_usd: r.try_get("cost_usd")?,
                    cache_hits: count("cache_hits")?,
                    cache_lookups: count("cache_lookups")?,
                    rate_limited: count("rate_limited")?,
                    budget_refused: count("budget_refused")?,
                })
            })
            .collect()
    }

    async fn budget_totals(&self, counters: &[String]) -> Result<HashMap<String, i64>, Error> {
        let mut out = HashMap::new();
        for counter in counters {
            let tokens: Option<i64> =
                sqlx::query_scalar("SELECT tokens FROM budget_counters WHERE counter = ?")
                    .bind(counter)
                    .fetch_optional(&self.pool)
                    .await?;
            out.insert(counter.clone(), tokens.unwrap_or(0));
        }
        Ok(out)
    }

    async fn acquire_agent(
        &self,
        id: &str,
        definition: &str,
        name: &str,
        owner_key_id: &str,
        owner: &str,
        now_ms: i64,
    ) -> Result<AgentRecord, Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO agents (id, definition, name, owner_key_id, status, epoch, lease_owner,
                created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'idle', 1, ?5, ?6, ?6)
             ON CONFLICT (id) DO UPDATE SET epoch = epoch + 1,
                lease_owner = excluded.lease_owner, updated_at = excluded.updated_at
             RETURNING {AGENT_COLUMNS}"
        )))
        .bind(id)
        .bind(definition)
        .bind(name)
        .bind(owner_key_id)
        .bind(owner)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        agent_from_row(&row)
    }

    async fn create_agent(
        &self,
        id: &str,
        definition: &str,
        name: &str,
        owner_key_id: &str,
        max_per_owner: u64,
        now_ms: i64,
    ) -> Result<AgentCreation, Error> {
        // SQLite runs one write at a time, so the count and the insert cannot interleave
        // with another creation.
        let done = sqlx::query(
            "INSERT INTO agents (id, definition, name, owner_key_id, status, epoch, created_at, updated_at)
             SELECT ?1, ?2, ?3, ?4, 'idle', 0, ?6, ?6
             WHERE (SELECT COUNT(*) FROM agents WHERE owner_key_id = ?4) < ?5
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(definition)
        .bind(name)
        .bind(owner_key_id)
        .bind(i64::try_from(max_per_owner).unwrap_or(i64::MAX))
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(AgentCreation::Created);
        }
        Ok(if self.agent(id).await?.is_some() {
            AgentCreation::Exists
        } else {
            AgentCreation::OverCap
        })
    }

    async fn running_agents(&self) -> Result<Vec<AgentRecord>, Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE status = 'running' ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(agent_from_row).collect()
    }

    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    async fn commit_step(
        &self,
        id: &str,
        epoch: i64,
        step: &NewStep,
        update: &AgentUpdate,
    ) -> Result<i64, Error> {
        let (ack, done) = tokio::sync::oneshot::channel();
        let write = JournalWrite {
            id: id.to_owned(),
            epoch,
            step: step.clone(),
            update: update.clone(),
            ack,
        };
        self.journal
            .send(write)
            .await
            .map_err(|_| Error::Unavailable("the journal writer has stopped".into()))?;
        done.await
            .map_err(|_| Error::Unavailable("the journal writer has stopped".into()))?
    }

    async fn update_agent(&self, id: &str, epoch: i64, update: &AgentUpdate) -> Result<(), Error> {
        let now = warden_core::time::unix_millis() as i64;
        let done = sqlx::query(
            "UPDATE agents SET status = ?1, status_reason = ?2, task_id = ?3, task = ?4,
                tokens_used = ?5, updated_at = ?6
             WHERE id = ?7 AND epoch = ?8",
        )
        .bind(&update.status)
        .bind(&update.status_reason)
        .bind(&update.task_id)
        .bind(&update.task)
        .bind(update.tokens_used)
        .bind(now)
        .bind(id)
        .bind(epoch)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::LeaseLost(id.to_owned()));
        }
        Ok(())
    }

    async fn agent_steps(
        &self,
        id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StepRecord>, Error> {
        let rows = sqlx::query(
            "SELECT seq, task_id, kind, data, tokens, started_at, finished_at FROM agent_steps
             WHERE agent_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .bind(id)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(step_from_row).collect()
    }

    async fn task_steps(&self, id: &str, task_id: &str) -> Result<Vec<StepRecord>, Error> {
        let rows = sqlx::query(
            "SELECT seq, task_id, kind, data, tokens, started_at, finished_at FROM agent_steps
             WHERE agent_id = ?1 AND task_id = ?2 ORDER BY seq",
        )
        .bind(id)
        .bind(task_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(step_from_row).collect()
    }

    async fn insert_approval(&self, a: &ApprovalRecord) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO approvals (id, agent_id, task_id, call_id, tool, arguments, arguments_sha256,
                requested_by, preview, state, idempotency_key, created_at, expires_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?12)",
        )
        .bind(&a.id)
        .bind(&a.agent_id)
        .bind(&a.task_id)
        .bind(&a.call_id)
        .bind(&a.tool)
        .bind(&a.arguments)
        .bind(&a.arguments_sha256)
        .bind(&a.requested_by)
        .bind(&a.preview)
        .bind(&a.state)
        .bind(&a.idempotency_key)
        .bind(a.created_at)
        .bind(a.expires_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::Conflict(format!("an approval with id `{}` already exists", a.id))
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(approval_from_row).transpose()
    }

    async fn list_approvals(
        &self,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ApprovalRecord>, Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals
             WHERE (?1 IS NULL OR state = ?1) ORDER BY created_at DESC, id DESC LIMIT ?2"
        )))
        .bind(state)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(approval_from_row).collect()
    }

    async fn transition_approval(
        &self,
        id: &str,
        from: &str,
        to: &str,
        decision: Option<&DecisionRecord>,
        result: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE approvals SET state = ?1,
                approver = COALESCE(?2, approver), decision = COALESCE(?3, decision),
                comment = COALESCE(?4, comment), signature = COALESCE(?5, signature),
                decided_at = COALESCE(?6, decided_at), result = COALESCE(?7, result),
                updated_at = ?8
             WHERE id = ?9 AND state = ?10",
        )
        .bind(to)
        .bind(decision.map(|d| d.approver.clone()))
        .bind(decision.map(|d| d.decision.clone()))
        .bind(decision.and_then(|d| d.comment.clone()))
        .bind(decision.map(|d| d.signature.clone()))
        .bind(decision.map(|d| d.at))
        .bind(result)
        .bind(now_ms)
        .bind(id)
        .bind(from)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
