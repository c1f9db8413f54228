//! Durable agents: the agent rows (state and lease) and their journals. Every write after a
//! takeover is conditional on the lease epoch, so a writer that lost its lease cannot commit.

use super::rows::{self, AGENT_COLUMNS, STEP_COLUMNS};
use super::{SqlStore, with_pool};
use crate::agents::{AgentCreation, AgentRecord, AgentUpdate, NewStep, StepRecord};
use crate::{AgentStore, Error};
use async_trait::async_trait;

/// Appends `$step` to agent `$id`'s journal and writes `$update`, in the transaction `$tx`, if
/// the agent's epoch is still `$epoch`. Gives the step's sequence number, or `None` when the
/// lease was lost (nothing written). Used by both backends' ways of committing a step.
macro_rules! write_step {
    ($tx:expr, $id:expr, $epoch:expr, $step:expr, $update:expr) => {{
        let (id, epoch, step, update): (&str, i64, &NewStep, &AgentUpdate) =
            ($id, $epoch, $step, $update);
        let seq: Option<i64> = sqlx::query_scalar(
            "UPDATE agents SET status = $1, status_reason = $2, task_id = $3, task = $4,
                tokens_used = $5, steps = steps + 1, last_verified_at = $6, updated_at = $6
             WHERE id = $7 AND epoch = $8 RETURNING steps",
        )
        .bind(&update.status)
        .bind(&update.status_reason)
        .bind(&update.task_id)
        .bind(&update.task)
        .bind(update.tokens_used)
        .bind(step.finished_at)
        .bind(id)
        .bind(epoch)
        .fetch_optional(&mut *$tx)
        .await?;
        if let Some(seq) = seq {
            sqlx::query(
                "INSERT INTO agent_steps (agent_id, seq, task_id, kind, data, tokens, started_at,
                    finished_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id)
            .bind(seq)
            .bind(&step.task_id)
            .bind(&step.kind)
            .bind(&step.data)
            .bind(step.tokens)
            .bind(step.started_at)
            .bind(step.finished_at)
            .execute(&mut *$tx)
            .await?;
        }
        seq
    }};
}
pub(super) use write_step;

#[async_trait]
impl AgentStore for SqlStore {
    async fn acquire_agent(
        &self,
        id: &str,
        definition: &str,
        name: &str,
        owner_key_id: &str,
        owner: &str,
        now_ms: i64,
    ) -> Result<AgentRecord, Error> {
        let sql = format!(
            "INSERT INTO agents (id, definition, name, owner_key_id, status, epoch, lease_owner,
                created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'idle', 1, $5, $6, $6)
             ON CONFLICT (id) DO UPDATE SET epoch = agents.epoch + 1,
                lease_owner = excluded.lease_owner, updated_at = excluded.updated_at
             RETURNING {AGENT_COLUMNS}"
        );
        with_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(definition)
                .bind(name)
                .bind(owner_key_id)
                .bind(owner)
                .bind(now_ms)
                .fetch_one(pool)
                .await?;
            rows::agent(&row)
        })
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
        let owner_lock = self.dialect().owner_lock();
        with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            // Creations for one owner take turns, so two cannot both count one below the cap.
            if let Some(lock) = owner_lock {
                sqlx::query(lock)
                    .bind(format!("warden agents of {owner_key_id}"))
                    .execute(&mut *tx)
                    .await?;
            }
            let done = sqlx::query(
                "INSERT INTO agents (id, definition, name, owner_key_id, status, epoch, created_at,
                    updated_at)
                 SELECT $1, $2, $3, $4, 'idle', 0, $6, $6
                 WHERE (SELECT COUNT(*) FROM agents WHERE owner_key_id = $4) < $5
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(definition)
            .bind(name)
            .bind(owner_key_id)
            .bind(i64::try_from(max_per_owner).unwrap_or(i64::MAX))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            let created = if done.rows_affected() == 1 {
                AgentCreation::Created
            } else if sqlx::query("SELECT 1 FROM agents WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some()
            {
                AgentCreation::Exists
            } else {
                AgentCreation::OverCap
            };
            tx.commit().await?;
            Ok(created)
        })
    }

    async fn running_agents(&self) -> Result<Vec<AgentRecord>, Error> {
        let sql =
            format!("SELECT {AGENT_COLUMNS} FROM agents WHERE status = 'running' ORDER BY id");
        with_pool!(self, |pool| {
            let found = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await?;
            found.iter().map(rows::agent).collect()
        })
    }

    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, Error> {
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1");
        with_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(rows::agent).transpose()
        })
    }

    async fn commit_step(
        &self,
        id: &str,
        epoch: i64,
        step: &NewStep,
        update: &AgentUpdate,
    ) -> Result<i64, Error> {
        if let Some(journal) = &self.journal {
            return journal.commit(id, epoch, step, update).await;
        }
        with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let Some(seq) = write_step!(tx, id, epoch, step, update) else {
                return Err(Error::LeaseLost(id.to_owned()));
            };
            tx.commit().await?;
            Ok(seq)
        })
    }

    async fn update_agent(&self, id: &str, epoch: i64, update: &AgentUpdate) -> Result<(), Error> {
        let now = warden_core::time::unix_millis() as i64;
        let done = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE agents SET status = $1, status_reason = $2, task_id = $3, task = $4,
                    tokens_used = $5, updated_at = $6
                 WHERE id = $7 AND epoch = $8",
            )
            .bind(&update.status)
            .bind(&update.status_reason)
            .bind(&update.task_id)
            .bind(&update.task)
            .bind(update.tokens_used)
            .bind(now)
            .bind(id)
            .bind(epoch)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
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
        let sql = format!(
            "SELECT {STEP_COLUMNS} FROM agent_steps
             WHERE agent_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        );
        with_pool!(self, |pool| {
            let found = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(after_seq)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            found.iter().map(rows::step).collect()
        })
    }

    async fn task_steps(&self, id: &str, task_id: &str) -> Result<Vec<StepRecord>, Error> {
        let sql = format!(
            "SELECT {STEP_COLUMNS} FROM agent_steps WHERE agent_id = $1 AND task_id = $2 ORDER BY seq"
        );
        with_pool!(self, |pool| {
            let found = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(task_id)
                .fetch_all(pool)
                .await?;
            found.iter().map(rows::step).collect()
        })
    }
}
