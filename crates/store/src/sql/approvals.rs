//! Approval requests for write tool calls. A request moves from state to state only from the
//! state its mover expects, so a decision or a dispatch happens at most once.

use super::rows::{self, APPROVAL_COLUMNS};
use super::{SqlStore, is_unique_violation, with_pool};
use crate::agents::{ApprovalRecord, DecisionRecord};
use crate::{ApprovalStore, Error};
use async_trait::async_trait;

#[async_trait]
impl ApprovalStore for SqlStore {
    async fn insert_approval(&self, a: &ApprovalRecord) -> Result<(), Error> {
        let inserted = with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO approvals (id, agent_id, task_id, call_id, tool, arguments,
                    arguments_sha256, requested_by, preview, state, idempotency_key, created_at,
                    expires_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $12)",
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
            .execute(pool)
            .await
            .map(|_| ())
        });
        inserted.map_err(|e| {
            if is_unique_violation(&e) {
                Error::Conflict(format!("an approval with id `{}` already exists", a.id))
            } else {
                e.into()
            }
        })
    }

    async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, Error> {
        let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = $1");
        with_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(rows::approval).transpose()
        })
    }

    async fn list_approvals(
        &self,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ApprovalRecord>, Error> {
        // The cast gives PostgreSQL the parameter's type when it is NULL.
        let sql = format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals
             WHERE (CAST($1 AS TEXT) IS NULL OR state = CAST($1 AS TEXT))
             ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        with_pool!(self, |pool| {
            let found = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(state)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            found.iter().map(rows::approval).collect()
        })
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
        let moved = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE approvals SET state = $1,
                    approver = COALESCE($2, approver), decision = COALESCE($3, decision),
                    comment = COALESCE($4, comment), signature = COALESCE($5, signature),
                    decided_at = COALESCE($6, decided_at), result = COALESCE($7, result),
                    updated_at = $8
                 WHERE id = $9 AND state = $10",
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
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(moved == 1)
    }
}
