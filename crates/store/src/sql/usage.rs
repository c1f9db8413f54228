//! Usage rows, the usage report, and the budget counters settled with each row.

use super::rows::{self, Columns, USAGE_COLUMNS};
use super::{SqlStore, placeholders, with_pool};
use crate::records::{GroupBy, UsageGroup, UsageRow};
use crate::{Error, UsageStore};
use async_trait::async_trait;
use std::collections::HashMap;

#[async_trait]
impl UsageStore for SqlStore {
    async fn insert_usage(&self, rows: &[UsageRow]) -> Result<(), Error> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for r in rows {
                sqlx::query(
                    "INSERT INTO usage (request_id, key_id, endpoint, model, provider, upstream_model,
                        status, prompt_tokens, completion_tokens, latency_ms, attempts, stream,
                        deployment, created_at, user_id, session_id, cache, refusal, cached_tokens,
                        cost_usd, downgraded_from)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                        $17, $18, $19, $20, $21)",
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
                if r.budget_tokens == 0 {
                    continue;
                }
                for counter in &r.budget_counters {
                    sqlx::query(
                        "INSERT INTO budget_counters (counter, tokens, updated_at) VALUES ($1, $2, $3)
                         ON CONFLICT (counter) DO UPDATE
                         SET tokens = budget_counters.tokens + excluded.tokens,
                             updated_at = excluded.updated_at",
                    )
                    .bind(counter)
                    .bind(r.budget_tokens)
                    .bind(r.created_at)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    async fn recent_usage(&self, limit: u32) -> Result<Vec<UsageRow>, Error> {
        let sql = format!("SELECT {USAGE_COLUMNS} FROM usage ORDER BY id DESC LIMIT $1");
        with_pool!(self, |pool| {
            let found = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            found.iter().map(rows::usage).collect()
        })
    }

    async fn usage_report(
        &self,
        group_by: GroupBy,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsageGroup>, Error> {
        // The grouping expression is one of three constants, never user text.
        let (group, order) = match group_by {
            GroupBy::Key => ("u.key_id".to_owned(), "cost_usd DESC, requests DESC, grp"),
            GroupBy::Model => ("u.model".to_owned(), "cost_usd DESC, requests DESC, grp"),
            GroupBy::Day => (self.dialect().day_of_millis("u.created_at"), "grp"),
        };
        let count = |cond: &str| format!("CAST(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END) AS BIGINT)");
        let sql = format!(
            "SELECT {group} AS grp,
                    MAX(k.name) AS key_name,
                    CAST(COUNT(*) AS BIGINT) AS requests,
                    CAST(COALESCE(SUM(u.prompt_tokens), 0) AS BIGINT) AS prompt_tokens,
                    CAST(COALESCE(SUM(u.completion_tokens), 0) AS BIGINT) AS completion_tokens,
                    CAST(COALESCE(SUM(u.cost_usd), 0.0) AS DOUBLE PRECISION) AS cost_usd,
                    {} AS cache_hits,
                    {} AS cache_lookups,
                    {} AS rate_limited,
                    {} AS budget_refused
             FROM usage u LEFT JOIN virtual_keys k ON k.id = u.key_id
             WHERE u.created_at >= $1 AND u.created_at < $2
             GROUP BY grp ORDER BY {order}",
            count("u.cache = 'hit'"),
            count("u.cache IN ('hit', 'miss')"),
            count("u.refusal = 'rate_limited'"),
            count("u.refusal = 'budget_exceeded'"),
        );
        with_pool!(self, |pool| {
            let found = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(from_ms)
                .bind(to_ms)
                .fetch_all(pool)
                .await?;
            found
                .iter()
                .map(|r| rows::usage_group(r, group_by))
                .collect()
        })
    }

    async fn budget_totals(&self, counters: &[String]) -> Result<HashMap<String, i64>, Error> {
        let mut out: HashMap<String, i64> = counters.iter().map(|c| (c.clone(), 0)).collect();
        if counters.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT counter, tokens FROM budget_counters WHERE counter IN ({})",
            placeholders(1, counters.len())
        );
        with_pool!(self, |pool| {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for counter in counters {
                query = query.bind(counter);
            }
            for r in query.fetch_all(pool).await? {
                out.insert(r.text("counter")?, r.int("tokens")?);
            }
            Ok(out)
        })
    }
}
