//! One task: the loop of model calls and tool calls, each step committed to the journal before
//! anything depends on it, under the dead man's switch (step timeout, step cap, loop
//! detection, the session token budget).
//!
//! Content is kept redacted throughout: the task and every tool result are masked in one
//! exchange (placeholders numbered across the task), the gateway sees and returns masked text,
//! and only what goes back to the user (and a tool's arguments, when it runs) is restored.

mod writes;

pub(crate) use writes::{SETTLING, mask};

use crate::approval_state::ToolOutcome;
use crate::journal::{self, ToolCallRequest, kind};
use crate::{AgentError, Outcome, Principal, Registry, TaskEvent, status};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tokio::time::Instant;
use warden_config::AgentDefinition;
use warden_gateway::{CacheControl, Call, Endpoint, Reply};
use warden_redact::{Exchange, Refusal};
use warden_store::{AgentRecord, AgentUpdate, NewStep};
use warden_tools::{Catalog, Classification, ToolError};

/// The start of the status reason of a task the audit log stopped.
pub(crate) const AUDIT_STOP: &str = "audit_unavailable";

/// Output tokens asked for per model call at most.
const MAX_OUTPUT_TOKENS: u64 = 4096;

/// One hash for a tool call everywhere (journal, audit, approval): the SHA-256 of its
/// canonical JSON; arguments that are not JSON are hashed as they came.
fn arguments_sha256(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v) => warden_tools::approval::arguments_sha256(&v),
        Err(_) => {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(arguments.as_bytes()))
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    warden_core::time::unix_millis() as i64
}

fn new_id(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}_{:x}{:06x}",
        warden_core::time::unix_millis(),
        N.fetch_add(1, Ordering::Relaxed) & 0xff_ffff
    )
}

/// Why the loop stopped before an answer.
enum Stop {
    TimedOut(String),
    Halted(String),
    Failed(String),
    Store(AgentError),
    /// A write waits for a human's decision on this approval.
    AwaitingApproval(String),
}

impl From<AgentError> for Stop {
    fn from(e: AgentError) -> Self {
        Stop::Store(e)
    }
}

/// A task in progress.
pub(crate) struct Task {
    inner: Arc<Registry>,
    def: AgentDefinition,
    definition: String,
    catalog: Catalog,
    record: AgentRecord,
    caller: Principal,
    events: Option<mpsc::Sender<TaskEvent>>,
    exchange: Exchange,
    task_id: String,
    model_steps: u32,
    recent: Vec<(String, String)>,
    /// Journal position of the current model step (approval ids derive from it).
    model_seq: i64,
    /// The first journal step whose audit record could not be written (caught up on resume).
    audit_missing_from: Option<i64>,
}

impl Task {
    pub(crate) fn new(
        inner: Arc<Registry>,
        definition: &str,
        record: AgentRecord,
        caller: Principal,
        events: Option<mpsc::Sender<TaskEvent>>,
    ) -> Self {
        let def = inner.defs.definitions[definition].clone();
        let catalog = inner
            .defs
            .catalogs
            .get(definition)
            .cloned()
            .unwrap_or_default();
        let exchange = inner.deps.redactor.exchange(&caller.key_name);
        Self {
            inner,
            def,
            definition: definition.to_owned(),
            catalog,
            task_id: record.task_id.clone().unwrap_or_default(),
            record,
            caller,
            events,
            exchange,
            model_steps: 0,
            recent: Vec::new(),
            model_seq: 0,
            audit_missing_from: None,
        }
    }

    async fn emit(&self, event: TaskEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event).await;
        }
    }

    /// Commits a journal step with the agent's new state; the step is durable when this
    /// returns.
    async fn commit(
        &mut self,
        kind: &str,
        data: Value,
        tokens: Option<i64>,
        started_at: i64,
        new_status: &str,
        reason: Option<String>,
    ) -> Result<i64, AgentError> {
        let update = AgentUpdate {
            status: new_status.to_owned(),
            status_reason: reason.clone(),
            task_id: Some(self.task_id.clone()),
            task: self.record.task.clone(),
            tokens_used: self.record.tokens_used,
        };
        let step = NewStep {
            task_id: self.task_id.clone(),
            kind: kind.to_owned(),
            data: data.to_string(),
            tokens,
            started_at,
            finished_at: now_ms(),
        };
        let seq = self
            .inner
            .deps
            .store
            .commit_step(&self.record.id, self.record.epoch, &step, &update)
            .await?;
        let changed = self.record.status != new_status;
        self.record.status = update.status;
        self.record.status_reason = update.status_reason;
        self.record.task_id = update.task_id;
        self.record.steps = seq;
        self.record.last_verified_at = Some(step.finished_at);
        metrics::counter!("warden_agent_steps_total", "kind" => kind.to_owned()).increment(1);
        // Nothing of the step is released before its audit record is durable.
        let audited = audit_step(
            &self.inner,
            &self.record.id,
            &self.task_id,
            seq,
            kind,
            new_status,
            reason.as_deref(),
            tokens,
            &self.caller.key_id,
        )
        .await;
        if let Err(e) = audited {
            self.audit_missing_from.get_or_insert(seq);
            return Err(e);
        }
        if changed {
            self.emit(TaskEvent::State {
                status: new_status.to_owned(),
            })
            .await;
        }
        Ok(seq)
    }

    /// Starts a new task with the user's message.
    pub(crate) async fn start(
        mut self,
        content: String,
    ) -> (Result<Outcome, AgentError>, Option<AgentRecord>) {
        let redacted = match self.exchange.redact_text(&content) {
            Ok(r) => r.into_inner(),
            Err(Refusal::Blocked(blocked)) => {
                return (Err(AgentError::Blocked(blocked.to_string())), None);
            }
            Err(Refusal::TooComplex(too_complex)) => {
                return (Err(AgentError::TooComplex(too_complex.to_string())), None);
            }
        };
        self.task_id = new_id("task");
        self.record.task = Some(redacted.clone());
        self.record.tokens_used = 0;
        let started = now_ms();
        if let Err(e) = self
            .commit(
                kind::TASK,
                json!({"content": redacted}),
                None,
                started,
                status::RUNNING,
                None,
            )
            .await
        {
            return self.stopped_unrecorded(e).await;
        }
        let messages = vec![json!({"role": "user", "content": redacted})];
        self.run(messages, Vec::new()).await
    }

    /// Continues the failed or interrupted task from its journal.
    pub(crate) async fn resume(mut self) -> (Result<Outcome, AgentError>, Option<AgentRecord>) {
        let steps = match self
            .inner
            .deps
            .store
            .task_steps(&self.record.id, &self.task_id)
            .await
        {
            Ok(s) => s,
            Err(e) => return (Err(e.into()), None),
        };
        if let Err(e) = catch_up_audit(&self.inner, &self.record, &steps).await {
            return (Err(e), None);
        }
        let replay = journal::replay(&steps);
        // The journal holds placeholders whose values are gone with the old process: keep
        // their numbers reserved so new values get new ones.
        for m in &replay.messages {
            if let Some(text) = m["content"].as_str() {
                let _ = self.exchange.redact_text(text);
            }
        }
        self.model_steps = replay.model_steps;
        self.recent = replay.recent_calls;
        self.model_seq = replay.model_seq;
        let started = now_ms();
        if let Some(masked) = replay.answer {
            // The answer was journalled but never released (its audit record failed): release
            // it now instead of asking the model again.
            let data = json!({"model_steps_replayed": replay.model_steps, "answer_released": true});
            if let Err(e) = self
                .commit(kind::RESUMED, data, None, started, status::IDLE, None)
                .await
            {
                return self.stopped_unrecorded(e).await;
            }
            let outcome = self.outcome("answered", None, Some(self.exchange.restore_text(&masked)));
            self.emit(TaskEvent::Done(outcome.clone())).await;
            return (Ok(outcome), Some(self.record));
        }
        let data = json!({"model_steps_replayed": replay.model_steps, "pending_tool_calls": replay.pending_calls.len()});
        if let Err(e) = self
            .commit(kind::RESUMED, data, None, started, status::RUNNING, None)
            .await
        {
            return self.stopped_unrecorded(e).await;
        }
        self.run(replay.messages, replay.pending_calls).await
    }

    async fn run(
        mut self,
        messages: Vec<Value>,
        pending: Vec<ToolCallRequest>,
    ) -> (Result<Outcome, AgentError>, Option<AgentRecord>) {
        let stopped = self.steps(messages, pending).await;
        let (kind, new_status, result, reason) = match stopped {
            Ok(answer) => {
                let outcome = self.outcome("answered", None, Some(answer));
                self.emit(TaskEvent::Done(outcome.clone())).await;
                return (Ok(outcome), Some(self.record));
            }
            Err(Stop::Store(e)) => return self.stopped_unrecorded(e).await,
            Err(Stop::AwaitingApproval(id)) => {
                let reason = format!("approval {id} waits for a decision");
                if self.record.status != status::AWAITING_APPROVAL {
                    let update = AgentUpdate {
                        status: status::AWAITING_APPROVAL.into(),
                        status_reason: Some(reason.clone()),
                        task_id: Some(self.task_id.clone()),
                        task: self.record.task.clone(),
                        tokens_used: self.record.tokens_used,
                    };
                    if let Err(e) = self
                        .inner
                        .deps
                        .store
                        .update_agent(&self.record.id, self.record.epoch, &update)
                        .await
                    {
                        return (Err(e.into()), None);
                    }
                    self.record.status = update.status;
                    self.record.status_reason = update.status_reason;
                    self.emit(TaskEvent::State {
                        status: status::AWAITING_APPROVAL.into(),
                    })
                    .await;
                }
                let outcome = self.outcome("awaiting_approval", Some(reason), None);
                self.emit(TaskEvent::Done(outcome.clone())).await;
                return (Ok(outcome), Some(self.record));
            }
            Err(Stop::TimedOut(r)) => (kind::TIMED_OUT, status::IDLE, "timed_out", r),
            Err(Stop::Halted(r)) => (kind::HALTED, status::HALTED, "halted", r),
            Err(Stop::Failed(r)) => (kind::FAILED, status::FAILED, "failed", r),
        };
        metrics::counter!("warden_agent_stops_total", "result" => result).increment(1);
        let started = now_ms();
        if let Err(e) = self
            .commit(
                kind,
                json!({"reason": reason}),
                None,
                started,
                new_status,
                Some(reason.clone()),
            )
            .await
        {
            return self.stopped_unrecorded(e).await;
        }
        if let Some(hook) = self.inner.defs.webhooks.get(&self.definition) {
            hook.notify(json!({
                "agent": self.record.id, "task_id": self.task_id, "result": result,
                "status": new_status, "reason": reason, "at_ms": now_ms(),
            }));
        }
        let outcome = self.outcome(result, Some(reason), None);
        self.emit(TaskEvent::Done(outcome.clone())).await;
        (Ok(outcome), Some(self.record))
    }

    /// A task stopped by an error. If the audit log refused a record, the task is marked
    /// `failed` in the journal (resumable once the log is back), with the first step whose
    /// record is missing, so that the resume writes those records first; nothing more of the
    /// task is released. Other errors (the store, a lost lease) are returned as they are.
    async fn stopped_unrecorded(
        self,
        e: AgentError,
    ) -> (Result<Outcome, AgentError>, Option<AgentRecord>) {
        let AgentError::AuditUnavailable(detail) = &e else {
            return (Err(e), None);
        };
        metrics::counter!("warden_agent_stops_total", "result" => "audit_unavailable").increment(1);
        let reason = format!(
            "{AUDIT_STOP}: {detail}; POST …/resume continues the task once the log is back"
        );
        let data = json!({"reason": reason, "audit_missing_from_seq": self.audit_missing_from});
        let now = now_ms();
        let update = AgentUpdate {
            status: status::FAILED.into(),
            status_reason: Some(reason),
            task_id: Some(self.task_id.clone()),
            task: self.record.task.clone(),
            tokens_used: self.record.tokens_used,
        };
        let step = NewStep {
            task_id: self.task_id.clone(),
            kind: kind::FAILED.into(),
            data: data.to_string(),
            tokens: None,
            started_at: now,
            finished_at: now,
        };
        // Journalled without an audit record (the log is what failed); the resume writes it.
        match self
            .inner
            .deps
            .store
            .commit_step(&self.record.id, self.record.epoch, &step, &update)
            .await
        {
            Ok(seq) => {
                let mut record = self.record;
                record.status = update.status;
                record.status_reason = update.status_reason;
                record.steps = seq;
                (Err(e), Some(record))
            }
            Err(store) => (Err(store.into()), None),
        }
    }

    fn outcome(&self, result: &str, reason: Option<String>, answer: Option<String>) -> Outcome {
        Outcome {
            agent_id: self.record.id.clone(),
            task_id: self.task_id.clone(),
            status: self.record.status.clone(),
            result: result.to_owned(),
            reason,
            answer,
            model_steps: self.model_steps,
            tokens_used: self.record.tokens_used,
        }
    }

    /// Model and tool steps until an answer (returned restored) or a stop.
    async fn steps(
        &mut self,
        mut messages: Vec<Value>,
        mut pending: Vec<ToolCallRequest>,
    ) -> Result<String, Stop> {
        loop {
            let deadline = Instant::now() + self.def.step_timeout;
            if !pending.is_empty() {
                self.tools(&mut messages, std::mem::take(&mut pending), deadline)
                    .await?;
                continue;
            }
            if self.model_steps >= self.def.max_steps {
                return Err(Stop::Halted(format!(
                    "max_steps: no answer after {} steps",
                    self.def.max_steps
                )));
            }
            let remaining = self.def.session_tokens as i64 - self.record.tokens_used;
            if remaining <= 0 {
                return Err(Stop::Halted(format!(
                    "budget_exceeded: the task used its {} tokens",
                    self.def.session_tokens
                )));
            }
            let message = self.model(&messages, remaining as u64, deadline).await?;
            let calls = journal::tool_calls(&message);
            messages.push(message.clone());
            if calls.is_empty() {
                let masked = message["content"].as_str().unwrap_or_default().to_owned();
                let started = now_ms();
                self.commit(
                    kind::ANSWER,
                    json!({"content": masked}),
                    None,
                    started,
                    status::IDLE,
                    None,
                )
                .await?;
                return Ok(self.exchange.restore_text(&masked));
            }
            self.tools(&mut messages, calls, deadline).await?;
        }
    }

    /// One model call through the gateway, committed to the journal with its usage.
    async fn model(
        &mut self,
        messages: &[Value],
        remaining: u64,
        deadline: Instant,
    ) -> Result<Value, Stop> {
        if self.inner.deps.recorder.refuses_work() {
            // Nothing is spent on a model call the log could not record.
            return Err(AgentError::AuditUnavailable("the audit log is failing".into()).into());
        }
        let mut all = vec![json!({"role": "system", "content": self.def.system_prompt})];
        all.extend_from_slice(messages);
        let mut body = json!({
            "model": self.def.model,
            "messages": all,
            "max_tokens": remaining.min(MAX_OUTPUT_TOKENS),
        });
        if !self.catalog.is_empty() {
            body["tools"] = Value::Array(self.catalog.openai_tools());
        }
        let request_id = new_id("req_agent");
        let caller = warden_gateway::Caller {
            request_id: request_id.clone(),
            key_id: self.caller.key_id.clone(),
            key_name: self.caller.key_name.clone(),
            user: None,
            session: None,
            cache: CacheControl::default(),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let call = Call::parse(Endpoint::ChatCompletions, &bytes, caller)
            .map_err(|e| Stop::Failed(format!("the agent built a bad request: {e}")))?;
        let started = now_ms();
        let clock = std::time::Instant::now();
        let result = tokio::time::timeout_at(deadline, self.inner.deps.gateway.call(call)).await;
        let latency_ms = clock.elapsed().as_millis() as i64;
        let success = match result {
            Err(_) => {
                // Cut off, maybe after the provider started: still recorded (504).
                self.record_call(
                    &request_id,
                    &warden_gateway::CallReport::default(),
                    504,
                    None,
                    latency_ms,
                    &std::collections::BTreeMap::new(),
                )
                .await?;
                return Err(Stop::TimedOut(format!(
                    "step {} exceeded its {:?} timeout (model call)",
                    self.model_steps + 1,
                    self.def.step_timeout
                )));
            }
            Ok(Err(failure)) => {
                let status = failure.error.status();
                self.record_call(
                    &request_id,
                    &failure.meta,
                    status,
                    None,
                    latency_ms,
                    &failure.redactions,
                )
                .await?;
                return Err(Stop::Failed(format!(
                    "model call failed: {}",
                    failure.error
                )));
            }
            Ok(Ok(s)) => s,
        };
        let (body, usage) = match success.reply {
            Reply::Complete { body, usage } => (body, usage),
            Reply::Stream(_) => {
                return Err(Stop::Failed("unexpected stream from the gateway".into()));
            }
        };
        self.record_call(
            &request_id,
            &success.meta,
            200,
            usage,
            latency_ms,
            &success.redactions,
        )
        .await?;
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let message = parsed
            .pointer("/choices/0/message")
            .cloned()
            .ok_or_else(|| Stop::Failed("the model's answer has no message".into()))?;
        let tokens = usage.map(|u| u.total() as i64).unwrap_or(0);
        self.record.tokens_used += tokens;
        self.model_steps += 1;
        let data = json!({
            "message": message,
            "model": success.meta.upstream_model,
            "usage": {"prompt_tokens": usage.and_then(|u| u.prompt_tokens), "completion_tokens": usage.and_then(|u| u.completion_tokens)},
            "latency_ms": latency_ms,
            "request_id": request_id,
        });
        self.model_seq = self
            .commit(
                kind::MODEL,
                data,
                Some(tokens),
                started,
                status::RUNNING,
                None,
            )
            .await?;
        if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
            let content = self.exchange.restore_text(text);
            self.emit(TaskEvent::ModelText { content }).await;
        }
        Ok(message)
    }

    /// Runs the tool calls of one model step, each committed with its result.
    async fn tools(
        &mut self,
        messages: &mut Vec<Value>,
        calls: Vec<ToolCallRequest>,
        deadline: Instant,
    ) -> Result<(), Stop> {
        let mut ids = std::collections::HashSet::new();
        for call in calls {
            if !ids.insert(call.id.clone()) {
                // Two calls of one step with one id would share a journal entry and an
                // approval: the second is answered, not run.
                let message = format!(
                    "duplicate tool call id `{}` in one step: each call needs its own id; this one was not run",
                    call.id
                );
                messages.push(json!({"role": "tool", "tool_call_id": call.id,
                                     "content": json!({"error": message}).to_string()}));
                continue;
            }
            self.check_for_loop(&call)?;
            let result = self.tool_call(&call, deadline).await?;
            messages.push(json!({"role": "tool", "tool_call_id": call.id, "content": result}));
        }
        Ok(())
    }

    /// The dead man's switch on tool calls: the same tool with the same arguments called more
    /// than `max_identical_tool_calls` times in a row stops the task.
    fn check_for_loop(&mut self, call: &ToolCallRequest) -> Result<(), Stop> {
        self.recent
            .push((call.name.clone(), call.arguments.clone()));
        let repeats = self
            .recent
            .iter()
            .rev()
            .take_while(|c| **c == (call.name.clone(), call.arguments.clone()))
            .count();
        if repeats > self.def.max_identical_tool_calls as usize {
            return Err(Stop::Halted(format!(
                "loop: `{}` was called {repeats} times in a row with the same arguments",
                call.name
            )));
        }
        Ok(())
    }

    /// One tool call, classified by policy: a read runs after a durable record that it is
    /// about to, a write becomes an approval request; the outcome is audited, journalled and
    /// shown, and the (masked) result for the model is returned.
    async fn tool_call(
        &mut self,
        call: &ToolCallRequest,
        deadline: Instant,
    ) -> Result<String, Stop> {
        let parsed_args: Value = serde_json::from_str(&call.arguments).unwrap_or(Value::Null);
        let classification = self.catalog.classify_call(&call.name, &parsed_args);
        self.emit(TaskEvent::ToolCall {
            tool: call.name.clone(),
            classification: classification.as_str().into(),
            arguments: self.exchange.restore_text(&call.arguments),
        })
        .await;
        if self.inner.deps.recorder.refuses_work() {
            // No read runs, and no write is proposed, that the log could not record.
            return Err(AgentError::AuditUnavailable("the audit log is failing".into()).into());
        }
        let arguments_sha256 = arguments_sha256(&call.arguments);
        let (agent_id, task_id) = (self.record.id.clone(), self.task_id.clone());
        let tool_event = |outcome: ToolOutcome, summary: String, latency_ms: u64| {
            warden_audit::Event::ToolCall {
                agent_id: agent_id.clone(),
                task_id: task_id.clone(),
                call_id: call.id.clone(),
                tool: call.name.clone(),
                classification: classification.as_str().into(),
                arguments_sha256: arguments_sha256.clone(),
                outcome: outcome.as_str().into(),
                summary,
                latency_ms,
            }
        };
        if classification == Classification::Read {
            // A read reaches its target only after a durable record that it is about to.
            let started = tool_event(ToolOutcome::Started, String::new(), 0);
            self.inner
                .deps
                .recorder
                .event(started)
                .await
                .map_err(AgentError::from)?;
        }
        let started = now_ms();
        let clock = std::time::Instant::now();
        let (outcome, summary, result) = self.run_tool(call, classification, deadline).await?;
        let latency_ms = clock.elapsed().as_millis() as u64;
        // Results go to the model and the journal masked, like everything else.
        let result = self.masked_result(&result);
        let summary = self
            .exchange
            .redact_text(&summary)
            .map(|s| s.into_inner())
            .unwrap_or_else(|_| "withheld".into());
        // The record is durable before the result is journalled and shown to the model:
        // if it cannot be written, the task stops here and the call runs again on resume
        // (a read), or finds its approval's state (a write).
        let event = tool_event(outcome, summary.clone(), latency_ms);
        self.inner
            .deps
            .recorder
            .event(event)
            .await
            .map_err(AgentError::from)?;
        let data = json!({
            "call_id": call.id, "tool": call.name, "classification": classification.as_str(),
            "arguments": call.arguments, "arguments_sha256": arguments_sha256,
            "outcome": outcome.as_str(), "summary": summary,
            "result": result, "latency_ms": latency_ms,
        });
        self.commit(kind::TOOL, data, None, started, status::RUNNING, None)
            .await?;
        self.emit(TaskEvent::ToolResult {
            tool: call.name.clone(),
            outcome: outcome.as_str().into(),
            summary: self.exchange.restore_text(&summary),
        })
        .await;
        Ok(result)
    }

    /// What a tool call did: its outcome, a summary and the result for the model (unmasked).
    /// A read runs (with the real values the model's placeholders stand for) within the
    /// step's deadline; a write goes to `write_call`; an unknown tool, or a write asked by a
    /// read-only agent, is answered with an error.
    async fn run_tool(
        &mut self,
        call: &ToolCallRequest,
        classification: Classification,
        deadline: Instant,
    ) -> Result<(ToolOutcome, String, String), Stop> {
        let tool = self.catalog.get(&call.name).map(|(t, _)| t);
        let read_only = self.def.permissions == warden_config::Permissions::ReadOnly;
        Ok(match (tool, classification) {
            (Some(_), Classification::Write) if read_only => {
                // Configuration cannot give a read-only agent a write tool; this holds
                // even if it did (an unknown tool, or a write call of a mixed tool).
                let message = format!(
                    "this agent is read-only: `{}` with these arguments is a write, and it may not ask for one",
                    call.name
                );
                (
                    ToolOutcome::Refused,
                    message.clone(),
                    json!({"error": message}).to_string(),
                )
            }
            (None, _) => {
                let known: Vec<Value> = self.catalog.openai_tools();
                let names: Vec<&str> = known
                    .iter()
                    .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                    .collect();
                let message = format!(
                    "unknown tool `{}`; available: {}",
                    call.name,
                    names.join(", ")
                );
                (
                    ToolOutcome::Error,
                    message.clone(),
                    json!({"error": message}).to_string(),
                )
            }
            (Some(_), Classification::Write) => self.write_call(call).await?,
            (Some(tool), Classification::Read) => {
                // The model wrote placeholders; the tool gets the real values back.
                let restored = self.exchange.restore_json_text(&call.arguments);
                match serde_json::from_str::<Value>(&restored) {
                    Err(e) => {
                        let message = format!("the arguments are not JSON: {e}");
                        (
                            ToolOutcome::Error,
                            message.clone(),
                            json!({"error": message}).to_string(),
                        )
                    }
                    Ok(args) => match tokio::time::timeout_at(deadline, tool.call(&args)).await {
                        Err(_) => {
                            return Err(Stop::TimedOut(format!(
                                "step {} exceeded its {:?} timeout (tool `{}`)",
                                self.model_steps, self.def.step_timeout, call.name
                            )));
                        }
                        Ok(Ok(v)) => {
                            let rows = v["row_count"].as_u64();
                            let summary = rows.map_or("ok".to_owned(), |n| format!("{n} rows"));
                            (ToolOutcome::Ok, summary, v.to_string())
                        }
                        Ok(Err(e)) => {
                            let outcome = match &e {
                                ToolError::Refused { .. } => ToolOutcome::Refused,
                                ToolError::Timeout(_) => ToolOutcome::Timeout,
                                _ => ToolOutcome::Error,
                            };
                            (
                                outcome,
                                e.to_string(),
                                json!({"error": e.to_string()}).to_string(),
                            )
                        }
                    },
                }
            }
        })
    }

    /// A tool's result as the model and the journal get it: masked, or withheld when policy
    /// blocks what it holds or it is too complex to redact.
    fn masked_result(&mut self, result: &str) -> String {
        match self.exchange.redact_text(result) {
            Ok(r) => r.into_inner(),
            Err(Refusal::Blocked(blocked)) => json!({"error": format!(
                "the result was withheld: it holds data that policy does not let a model see ({})",
                blocked.types.join(", ")
            )})
            .to_string(),
            Err(Refusal::TooComplex(too_complex)) => json!({"error": format!(
                "the result was withheld: it is too complex to redact (more than {} units, redaction.max_cost)",
                too_complex.limit
            )})
            .to_string(),
        }
    }

    /// The usage row and audit record of one of the agent's model calls, as the HTTP handler
    /// writes them for outside clients.
    async fn record_call(
        &self,
        request_id: &str,
        meta: &warden_gateway::CallReport,
        status: u16,
        usage: Option<warden_gateway::Usage>,
        latency_ms: i64,
        redactions: &std::collections::BTreeMap<String, u32>,
    ) -> Result<(), AgentError> {
        let record = warden_gateway::CallRecord {
            request_id,
            key_id: &self.caller.key_id,
            key_name: &self.caller.key_name,
            endpoint: "agent.chat",
            model: &self.def.model,
            status,
            latency_ms,
            stream: false,
            deployment: &self.inner.deps.deployment,
            user: None,
            session: Some(&self.task_id),
            client_request_id: None,
        };
        self.inner
            .deps
            .recorder
            .model_call(&record, meta, usage, redactions)
            .await?;
        Ok(())
    }
}

/// Writes the audit record of a committed step.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn audit_step(
    inner: &Registry,
    agent_id: &str,
    task_id: &str,
    seq: i64,
    step: &str,
    new_status: &str,
    reason: Option<&str>,
    tokens: Option<i64>,
    key_id: &str,
) -> Result<(), AgentError> {
    let event = warden_audit::Event::AgentStep {
        agent_id: agent_id.to_owned(),
        task_id: task_id.to_owned(),
        seq: seq.max(0) as u64,
        step: step.to_owned(),
        status: new_status.to_owned(),
        reason: reason.map(str::to_owned),
        tokens,
        key_id: key_id.to_owned(),
    };
    inner.deps.recorder.event(event).await?;
    Ok(())
}

/// Before a task goes on after the audit log failed: the audit records of the journal steps
/// that were committed without one (from the first missing step to the `failed` marker that
/// stopped the task) are written now, so the log misses no step.
async fn catch_up_audit(
    inner: &Registry,
    record: &AgentRecord,
    steps: &[warden_store::StepRecord],
) -> Result<(), AgentError> {
    let Some(marker) = steps
        .iter()
        .rev()
        .find(|s| s.kind == kind::FAILED && s.data.contains("\"audit_missing_from_seq\""))
    else {
        return Ok(());
    };
    let data: Value = serde_json::from_str(&marker.data).unwrap_or(Value::Null);
    // Already caught up if a later step was committed (and audited) after the marker.
    if steps.iter().any(|s| s.seq > marker.seq) {
        return Ok(());
    }
    let from = data["audit_missing_from_seq"]
        .as_i64()
        .unwrap_or(marker.seq);
    for s in steps
        .iter()
        .filter(|s| s.seq >= from && s.seq <= marker.seq)
    {
        audit_step(
            inner,
            &record.id,
            &s.task_id,
            s.seq,
            &s.kind,
            &record.status,
            Some("recorded late: the audit log was unavailable when the step was committed"),
            s.tokens,
            &record.owner_key_id,
        )
        .await?;
    }
    Ok(())
}

/// Commits a marker step outside a task's loop (a reset, an interruption found after a
/// crash): the step, the agent's new status and reason, and its audit record.
pub(crate) async fn commit_marker(
    inner: &Registry,
    record: &AgentRecord,
    step_kind: &str,
    new_status: &str,
    reason: &str,
    data: Value,
    key_id: &str,
) -> Result<AgentRecord, AgentError> {
    let task_id = record.task_id.clone().unwrap_or_default();
    let now = now_ms();
    let update = AgentUpdate {
        status: new_status.into(),
        status_reason: Some(reason.to_owned()),
        task_id: record.task_id.clone(),
        task: record.task.clone(),
        tokens_used: record.tokens_used,
    };
    let step = NewStep {
        task_id: task_id.clone(),
        kind: step_kind.into(),
        data: data.to_string(),
        tokens: None,
        started_at: now,
        finished_at: now,
    };
    // Audited before it is journalled (a marker has no step to catch up from): the step
    // takes the next position of the agent's journal, which its lease holder alone writes.
    let expected = record.steps + 1;
    audit_step(
        inner,
        &record.id,
        &task_id,
        expected,
        step_kind,
        new_status,
        Some(reason),
        None,
        key_id,
    )
    .await?;
    let seq = inner
        .deps
        .store
        .commit_step(&record.id, record.epoch, &step, &update)
        .await?;
    if seq != expected {
        tracing::warn!(agent = %record.id, seq, expected, "a marker step took another journal position than its audit record says");
    }
    Ok(AgentRecord {
        status: update.status,
        status_reason: update.status_reason,
        steps: seq,
        last_verified_at: Some(now),
        ..record.clone()
    })
}

/// Back to idle, history kept: a `reset` step.
pub(crate) async fn reset(
    inner: &Arc<Registry>,
    record: &AgentRecord,
    caller: &Principal,
) -> Result<AgentRecord, AgentError> {
    // A write of the task that has not run never will: withdrawn first (audited), so a
    // decision made later finds it closed instead of stranding it `approved`.
    let withdrawn =
        crate::approvals::withdraw_task_approvals(inner, record, "the agent was reset").await?;
    let data = json!({"previous_status": record.status, "approvals_withdrawn": withdrawn});
    commit_marker(
        inner,
        record,
        kind::RESET,
        status::IDLE,
        "reset",
        data,
        &caller.key_id,
    )
    .await
}
