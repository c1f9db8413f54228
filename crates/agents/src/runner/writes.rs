//! Write calls of a task: proposed for a human's signed approval (the preview redacted before
//! it is stored, journalled or sent), executed at most once when approved (the approval
//! verified again, audited and consumed as it is dispatched), or answered with the denial, the
//! expiry, the withdrawal, or the settlement of a write a crash interrupted.

use super::{Stop, Task, now_ms};
use crate::approval_state::{ApprovalState, ToolOutcome, state_of};
use crate::approvals::{audit_approval, audited_transition, settle_dispatched, stored_arguments};
use crate::journal::{ToolCallRequest, kind};
use crate::{AgentError, TaskEvent, status};
use serde_json::{Value, json};
use warden_redact::Exchange;
use warden_store::ApprovalRecord;
use warden_tools::{Settlement, ToolError};

/// What a write call tells the model: its outcome, a short summary and the result text.
type Answer = (ToolOutcome, String, String);

/// The start of the status reason of a task whose write's outcome is being settled.
pub(crate) const SETTLING: &str = "settling a write";

/// `text` masked by the task's redaction policy (withheld if the policy blocks it).
pub(crate) fn mask(exchange: &mut Exchange, text: &str) -> String {
    match exchange.redact_text(text) {
        Ok(masked) => masked.into_inner(),
        Err(warden_redact::Refusal::Blocked(blocked)) => {
            format!("<withheld: {}>", blocked.types.join(", "))
        }
        Err(warden_redact::Refusal::TooComplex(_)) => "<withheld: too complex to redact>".into(),
    }
}

fn refusal(outcome: ToolOutcome, message: String) -> Result<Answer, Stop> {
    let text = json!({"error": message}).to_string();
    Ok((outcome, message, text))
}

/// The approval id of a write call: derived from where it stands in the journal, so the
/// same call finds its approval again after a restart, and two calls never share one.
pub(crate) fn approval_id(agent_id: &str, task_id: &str, model_seq: i64, call_id: &str) -> String {
    use sha2::Digest;
    let digest =
        sha2::Sha256::digest(format!("{agent_id}\n{task_id}\n{model_seq}\n{call_id}").as_bytes());
    format!("apr_{}", &hex::encode(digest)[..24])
}

/// A preview as it may be stored, journalled, shown and sent: every value and every object
/// key masked by the task's redaction policy (a value the policy blocks is withheld). Only
/// Warden's own top-level fields (`kind`, `rows_affected`, `row_ids_sha256`) are kept as
/// they are. The real values are shown only to an admin, by computing the preview again
/// (`Agents::live_preview`).
pub(crate) fn redact_preview(exchange: &mut Exchange, preview: &Value) -> Value {
    match preview {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let keep = matches!(k.as_str(), "row_ids_sha256" | "rows_affected" | "kind");
                    let v = if keep {
                        v.clone()
                    } else {
                        redact_value(exchange, v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => redact_value(exchange, other),
    }
}

fn redact_value(exchange: &mut Exchange, value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(mask(exchange, text)),
        // Numbers are scanned as their text (a card or phone number stored as an integer).
        Value::Number(n) => {
            let text = n.to_string();
            let masked = mask(exchange, &text);
            if masked == text {
                value.clone()
            } else {
                Value::String(masked)
            }
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| redact_value(exchange, v)).collect())
        }
        // Keys are company data too (a JSON column's object).
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (mask(exchange, k), redact_value(exchange, v)))
                .collect(),
        ),
        Value::Bool(_) | Value::Null => value.clone(),
    }
}

/// The preview as the agent's owner (the journal) and the webhook see it: without the row
/// ids and their hash, which could confirm a guessed hidden key offline. The approval keeps
/// the hash, for the check at execution, behind admin keys.
fn preview_for_owner(preview: &Value) -> Value {
    let mut shown = preview.clone();
    if let Some(map) = shown.as_object_mut() {
        map.remove("row_ids");
        map.remove("row_ids_sha256");
    }
    shown
}

impl Task {
    /// A write call: proposed for approval the first time (the task then waits), executed
    /// once when approved, or answered with the state its approval reached.
    pub(super) async fn write_call(&mut self, call: &ToolCallRequest) -> Result<Answer, Stop> {
        let Some(tool) = self.catalog.write_tool(&call.name) else {
            return refusal(
                ToolOutcome::NeedsApproval,
                "this tool changes data and needs a human's signed approval, which this agent cannot ask for".into(),
            );
        };
        // Writes run exactly as proposed and approved: the arguments are not restored.
        let args: Value = match serde_json::from_str(&call.arguments) {
            Ok(a) => a,
            Err(e) => {
                return refusal(
                    ToolOutcome::Error,
                    format!("the arguments are not JSON: {e}"),
                );
            }
        };
        // What is hashed, shown, signed and run is one byte string: a number canonical JSON
        // would round is refused rather than signed as another.
        if let Some(at) = warden_tools::approval::inexact_number(&args) {
            return refusal(
                ToolOutcome::Refused,
                format!(
                    "the number at `{at}` is beyond what an approval can bind exactly (integers up to 2^53); send it as a string"
                ),
            );
        }
        let id = approval_id(&self.record.id, &self.task_id, self.model_seq, &call.id);
        let existing = self
            .inner
            .deps
            .store
            .approval(&id)
            .await
            .map_err(AgentError::from)?;
        let Some(a) = existing else {
            return self.propose(call, &tool, &args, id).await;
        };
        // An approval answers only the call it was made for.
        if a.tool != call.name
            || a.arguments_sha256 != warden_tools::approval::arguments_sha256(&args)
        {
            return refusal(
                ToolOutcome::Refused,
                format!(
                    "approval {} is for another call; this one was not run",
                    a.id
                ),
            );
        }
        self.answer_approval(call, &tool, &args, a).await
    }

    /// First time: validated and previewed by the tool, recorded as an approval request
    /// (audited first), journalled with its redacted preview; the task then waits.
    async fn propose(
        &mut self,
        call: &ToolCallRequest,
        tool: &std::sync::Arc<dyn warden_tools::WriteTool>,
        args: &Value,
        id: String,
    ) -> Result<Answer, Stop> {
        let arguments_sha256 = warden_tools::approval::arguments_sha256(args);
        // The preview runs the write against the target (rolled back): recorded first.
        let started = warden_audit::Event::ToolCall {
            agent_id: self.record.id.clone(),
            task_id: self.task_id.clone(),
            call_id: call.id.clone(),
            tool: call.name.clone(),
            classification: "write".into(),
            arguments_sha256: arguments_sha256.clone(),
            outcome: ToolOutcome::Started.as_str().into(),
            summary: "preview".into(),
            latency_ms: 0,
        };
        self.inner
            .deps
            .recorder
            .event(started)
            .await
            .map_err(AgentError::from)?;
        let proposal = match tool.propose(args).await {
            Ok(p) => p,
            Err(e) => {
                let outcome = if matches!(e, ToolError::Refused { .. }) {
                    ToolOutcome::Refused
                } else {
                    ToolOutcome::Error
                };
                return refusal(outcome, e.to_string());
            }
        };
        let preview = redact_preview(&mut self.exchange, &proposal.preview);
        let now = now_ms();
        let record = ApprovalRecord {
            id: id.clone(),
            agent_id: self.record.id.clone(),
            task_id: self.task_id.clone(),
            call_id: call.id.clone(),
            tool: call.name.clone(),
            arguments: warden_tools::approval::canonical_json(args),
            arguments_sha256,
            requested_by: self.caller.key_id.clone(),
            preview: preview.to_string(),
            state: ApprovalState::AwaitingApproval.as_str().into(),
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
        // Audited before it exists: a request nobody could see in the log is never made.
        audit_approval(
            &self.inner,
            &record,
            ApprovalState::AwaitingApproval,
            None,
            Some(format!("{} rows previewed", proposal.rows_affected)),
        )
        .await?;
        self.inner
            .deps
            .store
            .insert_approval(&record)
            .await
            .map_err(AgentError::from)?;
        metrics::counter!("warden_approvals_total", "state" => "requested").increment(1);
        let reason = format!("approval {id} waits for a decision");
        let shown = preview_for_owner(&preview);
        let data = json!({"approval_id": id, "tool": call.name, "arguments": call.arguments,
                          "arguments_sha256": record.arguments_sha256, "preview": shown});
        self.commit(
            kind::APPROVAL,
            data,
            None,
            now,
            status::AWAITING_APPROVAL,
            Some(reason),
        )
        .await?;
        if let Some(hook) = self.inner.defs.webhooks.get(&self.definition) {
            hook.notify(json!({
                "event": "approval_requested", "approval_id": id, "agent": self.record.id,
                "tool": call.name, "preview": shown, "expires_at_ms": record.expires_at,
                "text": format!("Agent {} asks to run {} ({} rows would change). Decide: warden approve {id} --approver NAME --key FILE", self.record.id, call.name, proposal.rows_affected),
            }));
        }
        self.emit(TaskEvent::ToolResult {
            tool: call.name.clone(),
            outcome: ToolOutcome::NeedsApproval.as_str().into(),
            summary: format!(
                "approval {id}: {} rows would change",
                proposal.rows_affected
            ),
        })
        .await;
        Err(Stop::AwaitingApproval(id))
    }

    /// The call's approval exists: answer by its state (and run it, if approved).
    async fn answer_approval(
        &mut self,
        call: &ToolCallRequest,
        tool: &std::sync::Arc<dyn warden_tools::WriteTool>,
        args: &Value,
        a: ApprovalRecord,
    ) -> Result<Answer, Stop> {
        let result_of = |a: &ApprovalRecord| a.result.clone().unwrap_or_else(|| "{}".into());
        let now = now_ms();
        match state_of(&a)? {
            ApprovalState::AwaitingApproval if now >= a.expires_at => {
                audited_transition(
                    &self.inner,
                    &a,
                    ApprovalState::AwaitingApproval,
                    ApprovalState::Expired,
                    None,
                    None,
                    None,
                )
                .await?;
                refusal(
                    ToolOutcome::Denied,
                    "the approval request expired without a decision; do not retry it unasked"
                        .into(),
                )
            }
            ApprovalState::AwaitingApproval => Err(Stop::AwaitingApproval(a.id)),
            ApprovalState::Approved => self.dispatch(call, tool, args, a).await,
            ApprovalState::Dispatched => {
                // Found dispatched without a result: a crash during the write. Never run
                // again; the target is asked whether it took effect. If it cannot be asked
                // now, the task stops as settling, and goes on once the reconciler settles it.
                let settled = match settle_dispatched(&self.inner, &a).await {
                    Ok(s) => s,
                    Err(e @ (AgentError::AuditUnavailable(_) | AgentError::LeaseLost(_))) => {
                        return Err(e.into());
                    }
                    Err(e) => {
                        tracing::warn!(approval = %a.id, error = %e, "a dispatched write cannot be settled yet");
                        return Err(Stop::Failed(format!(
                            "{SETTLING}: whether approval {} took effect cannot be asked now; it is settled later and the task continues then",
                            a.id
                        )));
                    }
                };
                Box::pin(self.answer_approval(call, tool, args, settled)).await
            }
            ApprovalState::Denied => refusal(
                ToolOutcome::Denied,
                format!(
                    "denied by {}: {}",
                    a.approver.as_deref().unwrap_or("?"),
                    a.comment.as_deref().unwrap_or("no reason given")
                ),
            ),
            ApprovalState::Expired => refusal(
                ToolOutcome::Denied,
                "the approval request expired without a decision".into(),
            ),
            ApprovalState::Withdrawn => refusal(
                ToolOutcome::Denied,
                "the approval request was withdrawn".into(),
            ),
            ApprovalState::Succeeded => Ok((ToolOutcome::Ok, "done".into(), result_of(&a))),
            ApprovalState::NotApplied => Ok((
                ToolOutcome::Error,
                "not applied (interrupted by a restart; nothing changed)".into(),
                result_of(&a),
            )),
            ApprovalState::OutcomeUnknown => Ok((
                ToolOutcome::OutcomeUnknown,
                "outcome unknown".into(),
                result_of(&a),
            )),
            ApprovalState::Failed => Ok((ToolOutcome::Error, "failed".into(), result_of(&a))),
        }
    }

    /// Runs an approved write once: the signature verified again over the stored (canonical)
    /// arguments, which must be the call's; the dispatch audited, then recorded (consuming the
    /// approval); the tool run with the idempotency key; the result audited and recorded.
    async fn dispatch(
        &mut self,
        call: &ToolCallRequest,
        tool: &std::sync::Arc<dyn warden_tools::WriteTool>,
        args: &Value,
        a: ApprovalRecord,
    ) -> Result<Answer, Stop> {
        let now = now_ms();
        // What runs is what was approved: the stored canonical arguments.
        let approved_args = stored_arguments(&a)?;
        let hash = warden_tools::approval::arguments_sha256(&approved_args);
        let message = warden_tools::approval::DecisionMessage {
            approval_id: a.id.clone(),
            agent_id: a.agent_id.clone(),
            tool: a.tool.clone(),
            arguments_sha256: hash.clone(),
            decision: warden_tools::approval::Decision::Approve,
            expires_at_ms: a.expires_at,
        };
        let verified = if hash != a.arguments_sha256
            || hash != warden_tools::approval::arguments_sha256(args)
            || call.name != a.tool
        {
            Err("the call is not the one approved".to_owned())
        } else {
            warden_tools::approval::verify_decision(
                &self.inner.defs.approvers,
                a.approver.as_deref().unwrap_or_default(),
                &message,
                a.signature.as_deref().unwrap_or_default(),
                now,
                approved_args,
            )
            .map_err(|e| e.to_string())
        };
        let proof = match verified {
            Ok(p) => p,
            Err(e) => {
                let detail = format!("the approval no longer verifies: {e}");
                let text = json!({"error": detail}).to_string();
                audited_transition(
                    &self.inner,
                    &a,
                    ApprovalState::Approved,
                    ApprovalState::Failed,
                    None,
                    Some(&text),
                    Some(detail.clone()),
                )
                .await?;
                return refusal(ToolOutcome::Error, detail);
            }
        };
        // Audited, then consumed as the dispatch is recorded: a replayed approval finds
        // nothing, and no write runs unrecorded.
        if !audited_transition(
            &self.inner,
            &a,
            ApprovalState::Approved,
            ApprovalState::Dispatched,
            None,
            None,
            None,
        )
        .await?
        {
            return refusal(
                ToolOutcome::OutcomeUnknown,
                "the approval was already used".into(),
            );
        }
        self.inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(a.id.clone());
        // What the approver saw: the write must change exactly those rows.
        let previewed = serde_json::from_str::<Value>(&a.preview).unwrap_or(Value::Null);
        let ran = tool.execute(&proof, &a.idempotency_key, &previewed).await;
        let answer = self.record_result(&a, tool, ran).await;
        self.inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&a.id);
        answer
    }

    /// Records a dispatched write's result, redacted, audited, then the approval moved. An
    /// error does not prove the write did nothing (a COMMIT whose answer was lost, a request
    /// sent before a timeout): the target is asked. Applied: `succeeded`; proven not applied,
    /// or refused before anything was sent: `failed`; the target cannot tell:
    /// `outcome_unknown`; the target cannot be asked now: the approval stays `dispatched`
    /// for the reconciler and the task stops until it is settled.
    async fn record_result(
        &mut self,
        a: &ApprovalRecord,
        tool: &std::sync::Arc<dyn warden_tools::WriteTool>,
        ran: Result<Value, ToolError>,
    ) -> Result<Answer, Stop> {
        let (to, text, outcome, summary) = match ran {
            Ok(v) => (
                ApprovalState::Succeeded,
                v.to_string(),
                ToolOutcome::Ok,
                format!("{} rows changed", v["rows_affected"]),
            ),
            Err(e) => {
                let arguments: Value = serde_json::from_str(&a.arguments).unwrap_or(Value::Null);
                match tool.settle(&arguments, &a.idempotency_key).await {
                    Ok(Settlement::Applied { rows_affected }) => (
                        ApprovalState::Succeeded,
                        json!({"rows_affected": rows_affected, "already_applied": true,
                               "settled": "the write reported an error but its idempotency key shows it committed"})
                        .to_string(),
                        ToolOutcome::Ok,
                        format!("{rows_affected} rows changed"),
                    ),
                    Ok(Settlement::NotApplied) => (
                        ApprovalState::Failed,
                        json!({"error": e.to_string()}).to_string(),
                        ToolOutcome::Error,
                        e.to_string(),
                    ),
                    Ok(Settlement::Unknown) if matches!(e, ToolError::Refused { .. }) => (
                        ApprovalState::Failed,
                        json!({"error": e.to_string()}).to_string(),
                        ToolOutcome::Error,
                        e.to_string(),
                    ),
                    Ok(Settlement::Unknown) => (
                        ApprovalState::OutcomeUnknown,
                        json!({"error": format!("the outcome of this write is unknown ({e}); it may have taken effect; a human must resolve approval {}", a.id)}).to_string(),
                        ToolOutcome::OutcomeUnknown,
                        "outcome unknown".into(),
                    ),
                    Err(settle) => {
                        tracing::warn!(approval = %a.id, error = %settle, "a failed write cannot be settled yet");
                        return Err(Stop::Failed(format!(
                            "{SETTLING}: approval {} reported an error and whether it took effect cannot be asked now; it is settled later and the task continues then",
                            a.id
                        )));
                    }
                }
            }
        };
        // Stored, audited and shown like every tool result: redacted.
        let text = mask(&mut self.exchange, &text);
        let summary = mask(&mut self.exchange, &summary);
        audited_transition(
            &self.inner,
            a,
            ApprovalState::Dispatched,
            to,
            None,
            Some(&text),
            Some(summary.clone()),
        )
        .await?;
        Ok((outcome, summary, text))
    }
}
