//! The approval workflow's side outside a task: signed decisions, signed resolutions of unknown
//! outcomes, withdrawal when a task ends, the live (re-read) preview for an admin, and the
//! reconciler that settles writes a crash left `dispatched` by asking their target.
//!
//! Every transition is audited before it takes effect (a decision that cannot be recorded is
//! not made) and goes through [`transition`], the one table of allowed moves.

use crate::approval_state::{ApprovalState, state_of, transition};
use crate::journal::kind;
use crate::runner::now_ms;
use crate::{AgentError, Agents, Outcome, Principal, Registry, actor, status};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::oneshot;
use warden_store::{AgentRecord, ApprovalRecord};
use warden_tools::Settlement;
use warden_tools::approval::{
    Decision, DecisionError, DecisionMessage, ResolutionMessage, verify_decision, verify_resolution,
};

/// How the reconciler settled one dispatched write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The approval.
    pub approval_id: String,
    /// Its state now: `succeeded`, `not_applied` or `outcome_unknown`.
    pub state: ApprovalState,
}

/// Approvals of one state looked at per reconciler round or start-up scan at most.
const SCAN: u32 = 5000;

/// The key `key_id` if it may still drive its agents (active, or in its rotation grace);
/// `None` if it is revoked, expired or gone.
async fn active_owner(
    inner: &Registry,
    agent: &AgentRecord,
) -> Result<Option<warden_store::KeyRecord>, AgentError> {
    use warden_store::KeyStatus;
    let now = warden_core::time::unix_secs();
    let mut keys: Vec<_> = inner
        .deps
        .store
        .list_keys()
        .await?
        .into_iter()
        .filter(|k| k.lineage_id == agent.owner_key_id)
        .filter(|k| matches!(k.status(now), KeyStatus::Active | KeyStatus::Grace))
        .filter(|k| {
            inner
                .access(&Principal::for_key(k, String::new()), &agent.definition)
                .is_ok()
        })
        .collect();
    // The current key of the lineage before one in a rotation's grace period.
    keys.sort_by_key(|k| k.status(now) != KeyStatus::Active);
    Ok(keys.into_iter().next())
}

/// The stored approval `id` ([`AgentError::ApprovalNotFound`] if there is none): what the
/// approvals API shows and what a decision is checked against.
pub async fn approval(
    store: &dyn warden_store::ApprovalStore,
    id: &str,
) -> Result<ApprovalRecord, AgentError> {
    store
        .approval(id)
        .await?
        .ok_or_else(|| AgentError::ApprovalNotFound(id.to_owned()))
}

/// Approval requests, newest first; only those in `state` (a state's name) if given; at most
/// `limit` (50 unless given, at most 500). An unknown state is an
/// [`AgentError::InvalidRequest`] that names the known ones.
pub async fn list_approvals(
    store: &dyn warden_store::ApprovalStore,
    state: Option<&str>,
    limit: Option<u32>,
) -> Result<Vec<ApprovalRecord>, AgentError> {
    if let Some(st) = state
        && ApprovalState::parse(st).is_none()
    {
        let known: Vec<&str> = ApprovalState::ALL.iter().map(|s| s.as_str()).collect();
        return Err(AgentError::InvalidRequest(format!(
            "`state` must be one of: {}",
            known.join(", ")
        )));
    }
    let limit = limit.unwrap_or(50).clamp(1, 500);
    Ok(store.list_approvals(state, limit).await?)
}

/// The approval's stored canonical arguments: what is signed, shown and run.
pub(crate) fn stored_arguments(a: &ApprovalRecord) -> Result<Value, AgentError> {
    serde_json::from_str(&a.arguments)
        .map_err(|e| AgentError::Store(format!("approval {} arguments unreadable: {e}", a.id)))
}

/// Human text (an approver's comment or note) masked by the global redaction policy.
fn mask_global(inner: &Registry, text: &str) -> String {
    crate::runner::mask(&mut inner.deps.redactor.exchange(""), text)
}

/// Writes the audit record of an approval's step; `Err` means the step must not happen.
pub(crate) async fn audit_approval(
    inner: &Registry,
    a: &ApprovalRecord,
    state: ApprovalState,
    signature: Option<String>,
    detail: Option<String>,
) -> Result<(), AgentError> {
    let event = warden_audit::Event::Approval {
        approval_id: a.id.clone(),
        agent_id: a.agent_id.clone(),
        tool: a.tool.clone(),
        arguments_sha256: a.arguments_sha256.clone(),
        state: state.as_str().to_owned(),
        approver: a.approver.clone(),
        signature,
        detail,
    };
    inner.deps.recorder.event(event).await?;
    Ok(())
}

/// Audits `a`'s move to `to`, then makes it (only if `a` is still in `from`). Returns whether
/// it moved. In this process, moves are made one at a time and the state is read again first,
/// so a move that lost a race is neither audited nor made; a race with another node is
/// caught by the conditional update and recorded as not made.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn audited_transition(
    inner: &Registry,
    a: &ApprovalRecord,
    from: ApprovalState,
    to: ApprovalState,
    decision: Option<&warden_store::DecisionRecord>,
    result: Option<&str>,
    detail: Option<String>,
) -> Result<bool, AgentError> {
    let _one_at_a_time = inner.transitions.lock().await;
    let current = inner.deps.store.approval(&a.id).await?;
    if current.map(|c| c.state).as_deref() != Some(from.as_str()) {
        return Ok(false);
    }
    audit_approval(inner, a, to, decision.map(|d| d.signature.clone()), detail).await?;
    let moved = transition(
        inner.deps.store.as_ref(),
        &a.id,
        from,
        to,
        decision,
        result,
        now_ms(),
    )
    .await?;
    if moved {
        metrics::counter!("warden_approvals_total", "state" => to.as_str()).increment(1);
    } else {
        // The record above described a move that lost a race: say so, so the log shows only
        // what happened.
        audit_approval(
            inner,
            a,
            to,
            None,
            Some(format!(
                "not made: the approval was no longer {} (another decision or step came first)",
                from.as_str()
            )),
        )
        .await?;
    }
    Ok(moved)
}

/// What a tool's settlement means for the approval, and the result the agent is told.
fn settled_state(id: &str, s: &Settlement) -> (ApprovalState, Value) {
    match s {
        Settlement::Applied { rows_affected } => (
            ApprovalState::Succeeded,
            json!({"rows_affected": rows_affected, "already_applied": true,
                   "settled": "the write was found applied by its idempotency key after a restart"}),
        ),
        Settlement::NotApplied => (
            ApprovalState::NotApplied,
            json!({"error": "the write was not applied: a restart interrupted it before it committed, and it can no longer commit; nothing changed",
                   "settled": "not_applied"}),
        ),
        Settlement::Unknown => (
            ApprovalState::OutcomeUnknown,
            json!({"error": format!("the outcome of this write is unknown (a restart interrupted it and the target cannot tell); a human must resolve approval {id}")}),
        ),
    }
}

/// Settles an approval found `dispatched` by asking its target: applied (`succeeded`, with
/// its recorded row count), proven never applied (`not_applied`), or, where the target cannot
/// tell, `outcome_unknown`. An error (the target unreachable, the write still in progress)
/// leaves it `dispatched` for a later try. Returns the approval as it is now.
pub(crate) async fn settle_dispatched(
    inner: &Registry,
    a: &ApprovalRecord,
) -> Result<ApprovalRecord, AgentError> {
    let definition = a.agent_id.split('/').next().unwrap_or_default();
    let tool = inner
        .defs
        .catalogs
        .get(definition)
        .and_then(|c| c.write_tool(&a.tool));
    let arguments = stored_arguments(a)?;
    let settlement = match tool {
        Some(t) => t
            .settle(&arguments, &a.idempotency_key)
            .await
            .map_err(|e| AgentError::Store(format!("cannot settle approval {}: {e}", a.id)))?,
        // The tool is no longer configured: nothing here can ask the target.
        None => Settlement::Unknown,
    };
    let (to, result) = settled_state(&a.id, &settlement);
    let detail = Some(format!("settled after a restart: {}", to.as_str()));
    audited_transition(
        inner,
        a,
        ApprovalState::Dispatched,
        to,
        None,
        Some(&result.to_string()),
        detail,
    )
    .await?;
    if to == ApprovalState::OutcomeUnknown
        && let Some(hook) = inner.defs.webhooks.get(definition)
    {
        hook.notify(json!({
            "event": "approval_outcome_unknown", "approval_id": a.id, "agent": a.agent_id,
            "tool": a.tool, "at_ms": now_ms(),
            "text": format!("A restart interrupted {} of agent {}; the target cannot tell whether it took effect. Resolve: warden approvals resolve {} --outcome succeeded|failed --note … --approver NAME --key FILE", a.tool, a.agent_id, a.id),
        }));
    }
    approval(inner.deps.store.as_ref(), &a.id).await
}

/// Withdraws the approvals of `record`'s current task that have not run (awaiting a decision,
/// or approved but not dispatched): its task is over, so they never will.
pub(crate) async fn withdraw_task_approvals(
    inner: &Registry,
    record: &AgentRecord,
    why: &str,
) -> Result<usize, AgentError> {
    let Some(task_id) = &record.task_id else {
        return Ok(0);
    };
    let store = &inner.deps.store;
    let mut n = 0;
    for step in store.task_steps(&record.id, task_id).await? {
        if step.kind != kind::APPROVAL {
            continue;
        }
        let data: Value = serde_json::from_str(&step.data).unwrap_or(Value::Null);
        let Some(id) = data["approval_id"].as_str() else {
            continue;
        };
        // A decision may land between the read and the move: read again until it is
        // withdrawn or past the point where it could be (dispatched or final).
        for _ in 0..8 {
            let Some(a) = store.approval(id).await? else {
                break;
            };
            let from = state_of(&a)?;
            if !from.may_become(ApprovalState::Withdrawn) {
                break;
            }
            let result = json!({"error": format!("withdrawn: {why}")}).to_string();
            if audited_transition(
                inner,
                &a,
                from,
                ApprovalState::Withdrawn,
                None,
                Some(&result),
                Some(why.to_owned()),
            )
            .await?
            {
                n += 1;
                break;
            }
        }
    }
    Ok(n)
}

impl Agents {
    /// Records a signed decision on an approval request: the approver must exist and may
    /// decide on the tool, the request must still be waiting and not expired, and the
    /// signature must verify over the request's message (id, agent, tool, the arguments'
    /// hash, the decision, the expiry). The decision is audited before it is recorded. Then
    /// the agent continues in the background: with the write (run once), or with the denial.
    pub async fn decide(
        &self,
        approval_id: &str,
        approver: &str,
        decision: Decision,
        comment: Option<String>,
        signature: &str,
    ) -> Result<ApprovalRecord, AgentError> {
        let inner = &self.inner;
        let store = &inner.deps.store;
        let a = approval(store.as_ref(), approval_id).await?;
        let now = now_ms();
        if state_of(&a)? != ApprovalState::AwaitingApproval {
            return Err(AgentError::ApprovalNotPending(a.id, a.state));
        }
        // A request whose agent's key can no longer drive it would be approved for nothing
        // (its task never goes on): withdrawn instead.
        let active = match store.agent(&a.agent_id).await? {
            Some(agent) => active_owner(inner, &agent).await?.is_some(),
            None => false,
        };
        if !active {
            let why =
                "the key that drives the agent is revoked, expired or no longer given this agent";
            let result = json!({"error": format!("withdrawn: {why}")}).to_string();
            audited_transition(
                inner,
                &a,
                ApprovalState::AwaitingApproval,
                ApprovalState::Withdrawn,
                None,
                Some(&result),
                Some(why.into()),
            )
            .await?;
            return Err(AgentError::ApprovalNotPending(a.id, "withdrawn".into()));
        }
        if now >= a.expires_at {
            audited_transition(
                inner,
                &a,
                ApprovalState::AwaitingApproval,
                ApprovalState::Expired,
                None,
                None,
                None,
            )
            .await?;
            // Its task goes on with the expiry instead of waiting forever.
            self.continue_in_background(a.agent_id.clone(), a.task_id.clone());
            return Err(AgentError::ApprovalNotPending(a.id, "expired".into()));
        }
        // The hash is recomputed from the stored arguments, never taken on trust.
        let arguments = stored_arguments(&a)?;
        let message = DecisionMessage {
            approval_id: a.id.clone(),
            agent_id: a.agent_id.clone(),
            tool: a.tool.clone(),
            arguments_sha256: warden_tools::approval::arguments_sha256(&arguments),
            decision,
            expires_at_ms: a.expires_at,
        };
        verify_decision(
            &inner.defs.approvers,
            approver,
            &message,
            signature,
            now,
            (),
        )
        .map_err(|e| refused(&a, e))?;
        let new_state = match decision {
            Decision::Approve => ApprovalState::Approved,
            Decision::Deny => ApprovalState::Denied,
        };
        let record = warden_store::DecisionRecord {
            new_state: new_state.as_str().into(),
            approver: approver.to_owned(),
            decision: decision.as_str().into(),
            // Stored and audited, so held to the global redaction policy like any text (it is
            // not part of the signed message).
            comment: comment.map(|c| mask_global(inner, &c)),
            signature: signature.trim().to_owned(),
            at: now,
        };
        let signed = ApprovalRecord {
            approver: Some(approver.to_owned()),
            ..a.clone()
        };
        if !audited_transition(
            inner,
            &signed,
            ApprovalState::AwaitingApproval,
            new_state,
            Some(&record),
            None,
            record.comment.clone(),
        )
        .await?
        {
            return Err(AgentError::ApprovalNotPending(a.id, "decided".into()));
        }
        let decided = approval(store.as_ref(), &a.id).await?;
        self.continue_in_background(decided.agent_id.clone(), decided.task_id.clone());
        Ok(decided)
    }

    /// An approver settles a write whose outcome a crash left unknown (the target could not
    /// tell): `succeeded` or `failed`, with a note, signed like a decision over the approval
    /// (id, agent, tool, arguments' hash), the outcome and the note. Audited, then recorded.
    pub async fn resolve(
        &self,
        approval_id: &str,
        approver: &str,
        succeeded: bool,
        note: &str,
        signature: &str,
    ) -> Result<ApprovalRecord, AgentError> {
        let inner = &self.inner;
        let store = &inner.deps.store;
        let a = approval(store.as_ref(), approval_id).await?;
        if state_of(&a)? != ApprovalState::OutcomeUnknown {
            return Err(AgentError::ApprovalNotPending(a.id, a.state));
        }
        let message = ResolutionMessage {
            approval_id: a.id.clone(),
            agent_id: a.agent_id.clone(),
            tool: a.tool.clone(),
            arguments_sha256: a.arguments_sha256.clone(),
            succeeded,
            note: note.to_owned(),
        };
        verify_resolution(&inner.defs.approvers, approver, &message, signature)
            .map_err(|e| refused(&a, e))?;
        let to = if succeeded {
            ApprovalState::Succeeded
        } else {
            ApprovalState::Failed
        };
        // Stored and audited redacted; the note's SHA-256 (which the signature covers) is kept,
        // so the signed resolution can be checked against the approver's own copy.
        let masked = mask_global(inner, note);
        let note_sha256 = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(note.as_bytes()))
        };
        let result = json!({"resolved_by": approver, "outcome": to.as_str(), "note": masked,
                            "note_sha256": note_sha256, "signature": signature.trim()})
        .to_string();
        let note = masked.as_str();
        let signed = ApprovalRecord {
            approver: Some(approver.to_owned()),
            ..a.clone()
        };
        let detail = Some(format!("resolved by {approver}: {note}"));
        if !audited_transition(
            inner,
            &signed,
            ApprovalState::OutcomeUnknown,
            to,
            None,
            Some(&result),
            detail,
        )
        .await?
        {
            return Err(AgentError::ApprovalNotPending(a.id, "resolved".into()));
        }
        approval(store.as_ref(), &a.id).await
    }

    /// The preview of a pending write as the target holds it now, with the real values, for
    /// an admin who is about to decide (the stored preview is redacted). Computed again in a
    /// rolled-back transaction; `matches` says whether it still changes exactly the rows the
    /// stored preview names (same count, same row ids).
    pub async fn live_preview(
        &self,
        approval_id: &str,
        viewer: &str,
    ) -> Result<(Value, bool), AgentError> {
        let inner = &self.inner;
        let a = approval(inner.deps.store.as_ref(), approval_id).await?;
        // Computed again only while a decision is still to be made: a decided request's
        // preview would run the write (rolled back) for nothing.
        if state_of(&a)? != ApprovalState::AwaitingApproval {
            return Err(AgentError::ApprovalNotPending(a.id, a.state));
        }
        let definition = a.agent_id.split('/').next().unwrap_or_default();
        let tool = inner
            .defs
            .catalogs
            .get(definition)
            .and_then(|c| c.write_tool(&a.tool))
            .ok_or_else(|| {
                AgentError::InvalidRequest(format!("`{}` is no longer configured", a.tool))
            })?;
        let arguments = stored_arguments(&a)?;
        // It runs the write against the company's database (rolled back): recorded first,
        // and refused while the log cannot record.
        if inner.deps.recorder.refuses_work() {
            return Err(AgentError::AuditUnavailable(
                "the audit log is failing".into(),
            ));
        }
        audit_approval(
            inner,
            &a,
            ApprovalState::AwaitingApproval,
            None,
            Some(format!("preview computed again for an admin ({viewer})")),
        )
        .await?;
        let live = tool.propose(&arguments).await.map_err(|e| {
            AgentError::InvalidRequest(format!("the preview cannot be computed: {e}"))
        })?;
        let stored: Value = serde_json::from_str(&a.preview).unwrap_or(Value::Null);
        let matches = live.preview["rows_affected"] == stored["rows_affected"]
            && live.preview["row_ids_sha256"] == stored["row_ids_sha256"];
        Ok((live.preview, matches))
    }

    /// Settles the writes a crash left `dispatched` (older than `min_age`, and not running in
    /// this process) by asking their targets, then lets their agents continue. Returns what
    /// was settled; a write whose target cannot be asked now stays for the next round.
    pub async fn reconcile(&self, min_age: Duration) -> Result<Vec<Settled>, AgentError> {
        let inner = &self.inner;
        let now = now_ms();
        self.expire_overdue(now).await?;
        let mut settled = Vec::new();
        for a in inner
            .deps
            .store
            .list_approvals(Some(ApprovalState::Dispatched.as_str()), SCAN)
            .await?
        {
            let running_here = inner
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&a.id);
            if running_here || now - a.updated_at < min_age.as_millis() as i64 {
                continue;
            }
            match settle_dispatched(inner, &a).await {
                Ok(now_a) => {
                    let state = state_of(&now_a)?;
                    tracing::info!(approval = %a.id, state = state.as_str(), "dispatched write settled");
                    settled.push(Settled {
                        approval_id: a.id.clone(),
                        state,
                    });
                    // Its task goes on, if the restart left that task interrupted.
                    self.continue_in_background(a.agent_id.clone(), a.task_id.clone());
                }
                Err(e) => {
                    tracing::warn!(approval = %a.id, error = %e, "dispatched write not settled yet");
                }
            }
        }
        Ok(settled)
    }

    /// Requests past their expiry without a decision become `expired`, and their tasks go on
    /// with that answer (instead of waiting for a decision that can no longer be made).
    async fn expire_overdue(&self, now: i64) -> Result<(), AgentError> {
        let waiting = ApprovalState::AwaitingApproval.as_str();
        for a in self
            .inner
            .deps
            .store
            .list_approvals(Some(waiting), SCAN)
            .await?
        {
            if now < a.expires_at {
                continue;
            }
            if audited_transition(
                &self.inner,
                &a,
                ApprovalState::AwaitingApproval,
                ApprovalState::Expired,
                None,
                None,
                None,
            )
            .await?
            {
                self.continue_in_background(a.agent_id.clone(), a.task_id.clone());
            }
        }
        Ok(())
    }

    /// Runs [`Agents::reconcile`] every `every` until `stop` resolves.
    pub async fn run_reconciler(
        self,
        every: Duration,
        min_age: Duration,
        stop: impl Future<Output = ()>,
    ) {
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.reconcile(min_age).await {
                tracing::warn!(error = %e, "reconciling dispatched writes failed; retrying later");
            }
        }
    }

    /// After a restart: agents waiting for an approval that was decided (or expired) while
    /// no process ran them continue now, and so do tasks the restart interrupted after a human
    /// had decided on their write (approved, run, settled): the decision was the go-ahead, so
    /// no one has to resume them by hand. Returns how many were continued.
    pub async fn continue_decided(&self) -> Result<usize, AgentError> {
        let store = &self.inner.deps.store;
        let mut agents = std::collections::BTreeMap::new();
        for state in ApprovalState::ALL {
            if matches!(
                state,
                ApprovalState::AwaitingApproval | ApprovalState::Dispatched
            ) {
                continue;
            }
            for a in store.list_approvals(Some(state.as_str()), SCAN).await? {
                agents.entry(a.agent_id.clone()).or_insert(a.task_id);
            }
        }
        let mut n = 0;
        for (id, task_id) in agents {
            if store
                .agent(&id)
                .await?
                .is_some_and(|r| continuable(&r, &task_id).is_some())
            {
                self.continue_in_background(id, task_id);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Continues `agent_id`'s task `task_id` as its owner, if it is still that agent's task
    /// and it can go on by itself (see [`continuable`]).
    async fn continue_task(&self, agent_id: &str, task_id: &str) -> Result<Outcome, AgentError> {
        let store = &self.inner.deps.store;
        let record = store
            .agent(agent_id)
            .await?
            .ok_or_else(|| AgentError::NotFound(agent_id.to_owned()))?;
        let Some(waiting) = continuable(&record, task_id) else {
            return Err(AgentError::NothingToResume(format!(
                "agent `{agent_id}` is {}, not waiting to continue task {task_id}",
                record.status
            )));
        };
        // A task goes on only for a key that may still drive it.
        let Some(owner) = active_owner(&self.inner, &record).await? else {
            return Err(AgentError::NothingToResume(format!(
                "the key that drives agent `{agent_id}` is revoked, expired or no longer given this agent; the task stays where it is"
            )));
        };
        let caller = Principal {
            admin: false,
            ..Principal::for_key(&owner, String::new())
        };
        let (reply, answer) = oneshot::channel();
        let cmd = if waiting {
            actor::Command::Continue {
                caller,
                events: None,
                reply,
            }
        } else {
            actor::Command::Resume {
                caller,
                events: None,
                reply,
            }
        };
        self.send(agent_id, &record.definition, &record.name, cmd)?;
        answer.await.map_err(|_| AgentError::Stopped)?
    }

    fn continue_in_background(&self, agent_id: String, task_id: String) {
        let me = self.clone();
        tokio::spawn(async move {
            match me.continue_task(&agent_id, &task_id).await {
                Ok(_) | Err(AgentError::NothingToResume(_)) => {}
                Err(e) => {
                    tracing::warn!(agent = %agent_id, error = %e, "agent could not continue");
                }
            }
        });
    }
}

/// Whether `record`'s task `task_id` goes on by itself once its write is decided or settled:
/// `Some(true)` if it waits for the approval (continue), `Some(false)` if a restart or the
/// audit log stopped it (resume), `None` otherwise (another task, idle, halted, or failed for
/// another reason: the owner decides).
fn continuable(record: &AgentRecord, task_id: &str) -> Option<bool> {
    if record.task_id.as_deref() != Some(task_id) {
        return None;
    }
    if record.status == status::AWAITING_APPROVAL {
        return Some(true);
    }
    let stopped_by_us = record.status_reason.as_deref().is_some_and(|why| {
        why.starts_with(crate::actor::INTERRUPTED)
            || why.starts_with(crate::runner::AUDIT_STOP)
            || why.starts_with(crate::runner::SETTLING)
    });
    (record.status == status::FAILED && stopped_by_us).then_some(false)
}

fn refused(a: &ApprovalRecord, e: DecisionError) -> AgentError {
    match e {
        e @ (DecisionError::UnknownApprover(_) | DecisionError::NotAllowed { .. }) => {
            AgentError::ApproverRefused(e.to_string())
        }
        DecisionError::Expired => AgentError::ApprovalNotPending(a.id.clone(), "expired".into()),
        e @ DecisionError::BadSignature => AgentError::BadSignature(e.to_string()),
    }
}
