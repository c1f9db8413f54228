//! Write calls of a task: proposed for a human's signed approval, executed at most once
//! when approved, and the audit records of each approval step.

use super::{Stop, Task, now_ms};
use crate::journal::{ToolCallRequest, kind};
use crate::{AgentError, Event, Inner, status};
use serde_json::{Value, json};
use warden_tools::ToolError;

/// The approval id of a write call: derived from where it stands in the journal, so the
/// same call finds its approval again after a restart, and two calls never share one.
pub(crate) fn approval_id(agent_id: &str, task_id: &str, model_seq: i64, call_id: &str) -> String {
    use sha2::Digest;
    let digest =
        sha2::Sha256::digest(format!("{agent_id}\n{task_id}\n{model_seq}\n{call_id}").as_bytes());
    format!("apr_{}", &warden_core::hex(&digest)[..24])
}

impl Task {
    /// A write call: proposed for approval the first time (the task then waits), executed
    /// once when approved (the approval verified again and consumed as it is dispatched),
    /// or answered with the denial, the expiry, or an outcome left unknown by a crash.
    pub(super) async fn write_call(
        &mut self,
        call: &ToolCallRequest,
    ) -> Result<(&'static str, String, String), Stop> {
        let refusal = |outcome: &'static str, message: String| {
            Ok((
                outcome,
                message.clone(),
                json!({"error": message}).to_string(),
            ))
        };
        let Some(tool) = self.catalog.write_tool(&call.name) else {
            return refusal(
                "needs_approval",
                "this tool changes data and needs a human's signed approval, which this agent cannot ask for".into(),
            );
        };
        // Writes run exactly as proposed and approved: the arguments are not restored.
        let args: Value = match serde_json::from_str(&call.arguments) {
            Ok(a) => a,
            Err(e) => return refusal("error", format!("the arguments are not JSON: {e}")),
        };
        let store = self.inner.deps.store.clone();
        let id = approval_id(&self.record.id, &self.task_id, self.model_seq, &call.id);
        let now = now_ms();
        let existing = store.approval(&id).await.map_err(AgentError::from)?;
        let Some(a) = existing else {
            let proposal = match tool.propose(&args).await {
                Ok(p) => p,
                Err(e) => {
                    let outcome = if matches!(e, ToolError::Refused { .. }) {
                        "refused"
                    } else {
                        "error"
                    };
                    return Ok((
                        outcome,
                        e.to_string(),
                        json!({"error": e.to_string()}).to_string(),
                    ));
                }
            };
            let record = warden_store::ApprovalRecord {
                id: id.clone(),
                agent_id: self.record.id.clone(),
                task_id: self.task_id.clone(),
                call_id: call.id.clone(),
                tool: call.name.clone(),
                arguments: warden_tools::approval::canonical_json(&args),
                arguments_sha256: warden_tools::approval::arguments_sha256(&args),
                requested_by: self.caller.key_id.clone(),
                preview: proposal.preview.to_string(),
                state: "awaiting_approval".into(),
                approver: None,
                decision: None,
                comment: None,
                signature: None,
                decided_at: None,
                idempotency_key: format!("warden:{id}"),
                result: None,
                created_at: now,
                expires_at: now + self.def.approval_ttl.as_millis() as i64,
                updated_at: now,
            };
            store
                .insert_approval(&record)
                .await
                .map_err(AgentError::from)?;
            let reason = format!("approval {id} waits for a decision");
            let data = json!({"approval_id": id, "tool": call.name, "arguments": call.arguments, "preview": proposal.preview});
            self.commit(
                kind::APPROVAL,
                data,
                None,
                now,
                status::AWAITING_APPROVAL,
                Some(reason),
            )
            .await?;
            audit_approval(
                &self.inner,
                &record,
                "awaiting_approval",
                None,
                Some(format!("{} rows previewed", proposal.rows_affected)),
            )
            .await;
            metrics::counter!("warden_approvals_total", "state" => "requested").increment(1);
            if let Some(hook) = self.inner.defs.webhooks.get(&self.definition) {
                hook.notify(json!({
                    "event": "approval_requested", "approval_id": id, "agent": self.record.id,
                    "tool": call.name, "preview": proposal.preview, "expires_at_ms": record.expires_at,
                    "text": format!("Agent {} asks to run {} ({} rows would change). Decide: warden approve {id} --approver NAME --key FILE", self.record.id, call.name, proposal.rows_affected),
                }));
            }
            self.emit(Event::ToolResult {
                tool: call.name.clone(),
                outcome: "needs_approval".into(),
                summary: format!(
                    "approval {id}: {} rows would change",
                    proposal.rows_affected
                ),
            })
            .await;
            return Err(Stop::AwaitingApproval(id));
        };
        let result_of =
            |a: &warden_store::ApprovalRecord| a.result.clone().unwrap_or_else(|| "{}".into());
        match a.state.as_str() {
            "awaiting_approval" if now >= a.expires_at => {
                let _ = store
                    .transition_approval(&id, "awaiting_approval", "expired", None, None, now)
                    .await;
                audit_approval(&self.inner, &a, "expired", None, None).await;
                refusal(
                    "denied",
                    "the approval request expired without a decision; do not retry it unasked"
                        .into(),
                )
            }
            "awaiting_approval" => Err(Stop::AwaitingApproval(id)),
            "approved" => {
                // Verified again, now: the signature over this request, the approver's right,
                // the expiry, and the arguments' hash recomputed from what will run.
                let approvers = &self.inner.defs.approvers;
                let message = warden_tools::approval::DecisionMessage {
                    approval_id: a.id.clone(),
                    agent_id: a.agent_id.clone(),
                    tool: a.tool.clone(),
                    arguments_sha256: warden_tools::approval::arguments_sha256(&args),
                    decision: warden_tools::approval::Decision::Approve,
                    expires_at_ms: a.expires_at,
                };
                let verified = warden_tools::approval::verify_decision(
                    approvers,
                    a.approver.as_deref().unwrap_or_default(),
                    &message,
                    a.signature.as_deref().unwrap_or_default(),
                    now,
                    args.clone(),
                );
                let proof = match verified {
                    Ok(p) => p,
                    Err(e) => {
                        let detail = format!("the approval no longer verifies: {e}");
                        let _ = store
                            .transition_approval(
                                &id,
                                "approved",
                                "failed",
                                None,
                                Some(&json!({"error": detail}).to_string()),
                                now,
                            )
                            .await;
                        audit_approval(&self.inner, &a, "failed", None, Some(detail.clone())).await;
                        return refusal("error", detail);
                    }
                };
                // Consumed as the dispatch is recorded: a replayed approval finds nothing.
                if !store
                    .transition_approval(&id, "approved", "dispatched", None, None, now)
                    .await
                    .map_err(AgentError::from)?
                {
                    return refusal("outcome_unknown", "the approval was already used".into());
                }
                audit_approval(&self.inner, &a, "dispatched", None, None).await;
                // What the approver saw: the write must change exactly those rows.
                let previewed = serde_json::from_str::<Value>(&a.preview).unwrap_or(Value::Null);
                match tool.execute(&proof, &a.idempotency_key, &previewed).await {
                    Ok(v) => {
                        let text = v.to_string();
                        store
                            .transition_approval(
                                &id,
                                "dispatched",
                                "succeeded",
                                None,
                                Some(&text),
                                now_ms(),
                            )
                            .await
                            .map_err(AgentError::from)?;
                        audit_approval(
                            &self.inner,
                            &a,
                            "succeeded",
                            None,
                            Some(format!("{} rows changed", v["rows_affected"])),
                        )
                        .await;
                        metrics::counter!("warden_approvals_total", "state" => "succeeded")
                            .increment(1);
                        Ok(("ok", format!("{} rows changed", v["rows_affected"]), text))
                    }
                    Err(e) => {
                        let text = json!({"error": e.to_string()}).to_string();
                        store
                            .transition_approval(
                                &id,
                                "dispatched",
                                "failed",
                                None,
                                Some(&text),
                                now_ms(),
                            )
                            .await
                            .map_err(AgentError::from)?;
                        audit_approval(&self.inner, &a, "failed", None, Some(e.to_string())).await;
                        Ok(("error", e.to_string(), text))
                    }
                }
            }
            "dispatched" => {
                // Found dispatched without a result: a crash during the write. Never retried
                // on its own; a human resolves it.
                let text = json!({"error": format!("the outcome of this write is unknown (interrupted); a human must resolve approval {id}")}).to_string();
                let _ = store
                    .transition_approval(
                        &id,
                        "dispatched",
                        "outcome_unknown",
                        None,
                        Some(&text),
                        now,
                    )
                    .await;
                audit_approval(&self.inner, &a, "outcome_unknown", None, None).await;
                Ok(("outcome_unknown", "outcome unknown".into(), text))
            }
            "denied" => refusal(
                "denied",
                format!(
                    "denied by {}: {}",
                    a.approver.as_deref().unwrap_or("?"),
                    a.comment.as_deref().unwrap_or("no reason given")
                ),
            ),
            "expired" => refusal(
                "denied",
                "the approval request expired without a decision".into(),
            ),
            "succeeded" => Ok(("ok", "done".into(), result_of(&a))),
            _ => Ok(("error", a.state.clone(), result_of(&a))),
        }
    }
}

/// Writes the audit record of an approval's step.
pub(crate) async fn audit_approval(
    inner: &Inner,
    a: &warden_store::ApprovalRecord,
    state: &str,
    signature: Option<String>,
    detail: Option<String>,
) {
    let Some(audit) = &inner.deps.audit else {
        return;
    };
    let event = warden_audit::Event::Approval {
        approval_id: a.id.clone(),
        agent_id: a.agent_id.clone(),
        tool: a.tool.clone(),
        arguments_sha256: a.arguments_sha256.clone(),
        state: state.to_owned(),
        approver: a.approver.clone(),
        signature,
        detail,
    };
    if let Err(e) = audit.append(event).await {
        tracing::error!(error = %e, "audit record of an approval failed");
    }
}
