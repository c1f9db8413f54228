//! Durable agents, like Cloudflare Durable Objects: for each agent id (`definition/name`) at
//! most one live instance in this process, an actor that owns the agent's state and handles
//! its messages in arrival order. Every step is committed to the journal in the store (under
//! the agent's lease epoch) before anything depends on it, so a restart loses no
//! acknowledged step and replays journalled model answers instead of paying for them again.
//! Idle instances leave memory and are loaded again when addressed.
//!
//! The loop calls the model through the same in-process gateway as outside clients (same
//! redaction, limits, budgets and logging) and runs the read tools configuration allows. The
//! dead man's switch ends steps that run too long, halts loops of identical tool calls, too
//! many steps and exhausted budgets, and tells the user and the webhook.
//!
//! This crate must never store or log unredacted content, and never run a tool call that
//! configuration does not classify as a read.

mod actor;
mod approval_state;
mod approvals;
mod journal;
mod notify;
mod runner;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use warden_config::AgentDefinition;
use warden_gateway::Gateway;
use warden_store::{AgentRecord, StepRecord, Store};
use warden_tools::Catalog;

pub use approval_state::{ApprovalState, ToolOutcome};
pub use approvals::{Settled, approval, list_approvals};
pub use notify::Webhook;
/// An approver's decision (approve or deny), as the approvals API and the CLI parse it.
pub use warden_tools::approval::Decision;

/// Statuses an agent can be in.
pub mod status {
    /// Waiting for a message.
    pub const IDLE: &str = "idle";
    /// Working on a task.
    pub const RUNNING: &str = "running";
    /// A write waits for a human's approval (the approvals issue).
    pub const AWAITING_APPROVAL: &str = "awaiting_approval";
    /// The last task failed (an upstream failure after retries, or a restart interrupted
    /// it); `resume` continues it.
    pub const FAILED: &str = "failed";
    /// The dead man's switch stopped the last task (loop, step cap, budget).
    pub const HALTED: &str = "halted";
}

/// Who drives an agent: the virtual key of the HTTP request, with what it was given.
#[derive(Debug, Clone, Default)]
pub struct Principal {
    /// Key id (usage, limits and budgets are per key id).
    pub key_id: String,
    /// The key's lineage (the first key of its rotation chain): an agent belongs to the
    /// lineage that created it, so a rotated key keeps its agents.
    pub owner_id: String,
    /// Key name (selects redaction policy, limits and budgets in the gateway).
    pub key_name: String,
    /// Whether the key is an admin key (may address any agent of any definition).
    pub admin: bool,
    /// Agent definitions the key may drive (`*` = all); empty means none.
    pub agents: Vec<String>,
    /// Models the key may use (`None` = all): an agent's model must be one of them.
    pub models: Option<Vec<String>>,
    /// The key's own cap on the agents it owns (`None` = `server.max_agents_per_key`).
    pub max_agents: Option<u64>,
    /// The HTTP request id, for logs and the gateway.
    pub request_id: String,
}

impl Principal {
    /// The caller for a stored key (and an HTTP request id).
    pub fn for_key(key: &warden_store::KeyRecord, request_id: String) -> Self {
        Self {
            key_id: key.id.clone(),
            owner_id: key.lineage_id.clone(),
            key_name: key.name.clone(),
            admin: key.admin,
            agents: key.agents.clone(),
            models: key.models.clone(),
            max_agents: key.max_agents.and_then(|n| u64::try_from(n).ok()),
            request_id,
        }
    }
}

/// What happened during a task, as it happens (the SSE stream of `stream: true`).
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    /// The agent's status changed.
    State {
        /// New status.
        status: String,
    },
    /// The model wrote text (restored for the user).
    ModelText {
        /// The text.
        content: String,
    },
    /// The model asked for a tool call.
    ToolCall {
        /// Tool name.
        tool: String,
        /// `read` or `write`.
        classification: String,
        /// Arguments as the model wrote them (restored for the user).
        arguments: String,
    },
    /// A tool call's outcome.
    ToolResult {
        /// Tool name.
        tool: String,
        /// `ok`, `refused`, `error`, `timeout` or `needs_approval`.
        outcome: String,
        /// Row count, the rule broken, or the error.
        summary: String,
    },
    /// The task ended.
    Done(Outcome),
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The agent's id.
    pub agent_id: String,
    /// The task.
    pub task_id: String,
    /// The agent's status now (`idle` after an answer or a timeout).
    pub status: String,
    /// `answered`, `timed_out`, `halted`, `failed`.
    pub result: String,
    /// Why, for anything but an answer.
    pub reason: Option<String>,
    /// The answer, restored for the user (`None` unless answered).
    pub answer: Option<String>,
    /// Model steps taken in this task.
    pub model_steps: u32,
    /// Tokens the task used.
    pub tokens_used: i64,
}

/// Why a request about an agent was refused.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No such definition in the configuration.
    #[error("no agent definition named `{0}`")]
    UnknownDefinition(String),
    /// The name is not usable.
    #[error("{0}")]
    InvalidRequest(String),
    /// The agent was never created.
    #[error("agent `{0}` does not exist")]
    NotFound(String),
    /// The agent belongs to another key.
    #[error("agent `{0}` belongs to another key")]
    NotYours(String),
    /// The key was not given this agent definition.
    #[error("this key may not use agents of definition `{0}` (see `warden keys update --agents`)")]
    DefinitionNotAllowed(String),
    /// The key may not use the definition's model.
    #[error("this key may not use model `{1}`, which agents of definition `{0}` run on")]
    ModelNotAllowed(String, String),
    /// The key owns as many agents as it may.
    #[error(
        "this key already owns {0} agents, as many as it may; reuse one (or raise --max-agents)"
    )]
    AgentLimitReached(u64),
    /// Nothing to resume.
    #[error("{0}")]
    NothingToResume(String),
    /// The request holds data the key's redaction policy blocks.
    #[error("{0}")]
    Blocked(String),
    /// Redacting the task would cost more than `redaction.max_cost`.
    #[error("{0}")]
    TooComplex(String),
    /// The store is unavailable, or holds what it should not.
    #[error("the agent store is unavailable: {0}")]
    Store(String),
    /// Another holder (a newer instance, another node) took the agent over: this one must not
    /// write again.
    #[error("the lease on agent `{0}` was lost to a newer holder")]
    LeaseLost(String),
    /// The audit log cannot record the step, so it did not go on (fail closed). The task is
    /// `failed` and can be resumed once the log is back.
    #[error(
        "the audit log cannot record this agent's work ({0}); the task stopped and can be resumed"
    )]
    AuditUnavailable(String),
    /// The agent waits for a decision on a write: a new task would strand it.
    #[error("{0}")]
    ApprovalPending(String),
    /// The agent is read-only and the call is a write.
    #[error("{0}")]
    ReadOnly(String),
    /// The agent's actor stopped (shutting down).
    #[error("the agent is shutting down; retry")]
    Stopped,
    /// No such approval request.
    #[error("approval `{0}` does not exist")]
    ApprovalNotFound(String),
    /// The request is no longer waiting for a decision (decided, expired, or used).
    #[error("approval `{0}` is {1}, not waiting for a decision")]
    ApprovalNotPending(String, String),
    /// The approver is unknown or may not decide on this tool.
    #[error("{0}")]
    ApproverRefused(String),
    /// The signature does not verify over this request.
    #[error("{0}")]
    BadSignature(String),
}

impl From<warden_store::Error> for AgentError {
    fn from(e: warden_store::Error) -> Self {
        match e {
            warden_store::Error::LeaseLost(id) => AgentError::LeaseLost(id),
            other => AgentError::Store(other.to_string()),
        }
    }
}

impl From<warden_gateway::Unrecorded> for AgentError {
    fn from(e: warden_gateway::Unrecorded) -> Self {
        AgentError::AuditUnavailable(e.0)
    }
}

/// What the agents need from the rest of Warden.
pub struct Services {
    /// The model pipeline (same as for outside clients).
    pub gateway: Arc<Gateway>,
    /// State and journal.
    pub store: Arc<dyn Store>,
    /// Usage rows and audit records of the agents' model calls, steps, tool calls and
    /// approvals: the same accounting path and fail-closed policy as the HTTP handlers.
    pub recorder: warden_gateway::Recorder,
    /// Stamped on usage rows.
    pub deployment: String,
    /// The redaction policy, for tasks and tool results.
    pub redactor: Arc<warden_redact::Redactor>,
}

/// Agent definitions with their tools.
pub struct Definitions {
    /// By name.
    pub definitions: BTreeMap<String, AgentDefinition>,
    /// Each definition's tools (its `sql_query` over its databases).
    pub catalogs: BTreeMap<String, Catalog>,
    /// Each definition's webhook, if configured.
    pub webhooks: BTreeMap<String, Webhook>,
    /// Who may approve writes, and which tools.
    pub approvers: BTreeMap<String, warden_tools::approval::Approver>,
}

/// Every agent of this process.
#[derive(Clone)]
pub struct Agents {
    inner: Arc<Registry>,
}

pub(crate) struct Registry {
    pub(crate) deps: Services,
    pub(crate) defs: Definitions,
    /// Live instances: agent id -> its mailbox.
    pub(crate) live: Mutex<HashMap<String, mpsc::UnboundedSender<actor::Command>>>,
    /// How long an instance may sit idle before it leaves memory.
    pub(crate) idle: Duration,
    /// This process, for the lease owner column.
    pub(crate) node: String,
    /// Approvals this process has dispatched and not yet settled (the reconciler leaves them).
    pub(crate) in_flight: Mutex<std::collections::HashSet<String>>,
    /// Approval moves of this process, one at a time (`approvals::audited_transition`).
    pub(crate) transitions: tokio::sync::Mutex<()>,
    /// How many agents a key may own unless it has its own cap.
    pub(crate) max_agents_per_key: u64,
}

impl Registry {
    /// Whether `caller` may drive agents of `definition`: the key was given it (admin keys
    /// all) and may use its model. The grant is checked before the definition's existence, so
    /// a key learns nothing about definitions it was not given. The one rule for the agents
    /// API and for continuing a task on its owner's behalf.
    pub(crate) fn access(
        &self,
        caller: &Principal,
        definition: &str,
    ) -> Result<&AgentDefinition, AgentError> {
        if !caller.admin && !warden_store::grants_agent(&caller.agents, definition) {
            return Err(AgentError::DefinitionNotAllowed(definition.to_owned()));
        }
        let Some(def) = self.defs.definitions.get(definition) else {
            return Err(AgentError::UnknownDefinition(definition.to_owned()));
        };
        if !warden_store::grants_model(caller.models.as_deref(), &def.model) {
            return Err(AgentError::ModelNotAllowed(
                definition.to_owned(),
                def.model.clone(),
            ));
        }
        Ok(def)
    }
}

/// A page of an agent's history.
pub struct History {
    /// Steps, oldest first.
    pub steps: Vec<StepRecord>,
    /// The cursor of the next page, if there may be more.
    pub next_cursor: Option<i64>,
}

/// Whether `name` can address an agent: what names were before they became opaque ids
/// (up to 128 characters, `@` allowed), so that agents created then stay reachable.
fn check_name(name: &str) -> Result<(), AgentError> {
    if !id_of(name, 128, b"-_.@") {
        return Err(AgentError::InvalidRequest(NEW_NAME_RULE.into()));
    }
    Ok(())
}

/// Whether `name` is 1 to `max_len` ASCII letters, digits or bytes of `extra`.
fn id_of(name: &str, max_len: usize, extra: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= max_len
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// What a new agent's name may be.
const NEW_NAME_RULE: &str = "an agent name is an opaque id: 1-64 letters, digits, `-`, `_` or `.`, and no personal data (not an email address, a phone number …)";

/// Whether `name` may name a new agent: an opaque id (it is stored, logged and audited as
/// is), so at most 64 letters, digits, `-`, `_` or `.`, and nothing the detectors find.
fn check_new_name(name: &str, detector: &warden_redact::Detector) -> Result<(), AgentError> {
    if !id_of(name, 64, b"-_.") || name_variants(name).any(|v| !detector.find(&v).is_empty()) {
        return Err(AgentError::InvalidRequest(NEW_NAME_RULE.into()));
    }
    Ok(())
}

/// `name` as written and as the words an id style glues together (`cust_4111…`,
/// `tel415-555-0132`, `DE89…x`): separators as spaces, and a space where letters turn to
/// digits or digits to letters, so the detectors' word boundaries see each part.
fn name_variants(name: &str) -> impl Iterator<Item = String> {
    let spaced: String = name
        .chars()
        .map(|c| if matches!(c, '_' | '-' | '.') { ' ' } else { c })
        .collect();
    let split_where = |boundary: fn(char, char) -> bool| {
        let mut out = String::with_capacity(name.len() * 2);
        let mut prev: Option<char> = None;
        for c in name.chars() {
            if prev.is_some_and(|p| boundary(p, c)) {
                out.push(' ');
            }
            out.push(if c == '_' { ' ' } else { c });
            prev = Some(c);
        }
        out
    };
    let letter_digit = split_where(|p, c| p.is_ascii_alphabetic() && c.is_ascii_digit());
    let digit_letter = split_where(|p, c| p.is_ascii_digit() && c.is_ascii_alphabetic());
    [name.to_owned(), spaced, letter_digit, digit_letter].into_iter()
}

impl Agents {
    /// The agents of this process; idle instances leave memory after `idle`; a key may own
    /// `max_agents_per_key` agents unless it has its own cap.
    pub fn new(deps: Services, defs: Definitions, idle: Duration, max_agents_per_key: u64) -> Self {
        let node = format!(
            "{}-{}",
            std::process::id(),
            warden_core::time::unix_millis()
        );
        Self {
            inner: Arc::new(Registry {
                deps,
                defs,
                live: Mutex::new(HashMap::new()),
                idle,
                node,
                in_flight: Mutex::new(Default::default()),
                transitions: tokio::sync::Mutex::new(()),
                max_agents_per_key,
            }),
        }
    }

    /// Marks the tasks that a crashed process left `running` as interrupted (resumable).
    /// With `stale_after`, only those that made no progress for that long (another node may
    /// still run the others); without, all of them (one node owns the store). Returns how
    /// many were marked.
    pub async fn recover_interrupted(
        &self,
        stale_after: Option<Duration>,
    ) -> Result<usize, AgentError> {
        let store = &self.inner.deps.store;
        let now = warden_core::time::unix_millis() as i64;
        let mut marked = 0;
        for r in store.running_agents().await? {
            if stale_after.is_some_and(|d| now - r.updated_at < d.as_millis() as i64) {
                continue;
            }
            let held = store
                .acquire_agent(
                    &r.id,
                    &r.definition,
                    &r.name,
                    &r.owner_key_id,
                    &self.inner.node,
                    now,
                )
                .await?;
            if held.status == status::RUNNING {
                actor::mark_interrupted(&self.inner, held).await?;
                marked += 1;
            }
        }
        Ok(marked)
    }

    /// A definition by name.
    pub fn definition(&self, name: &str) -> Option<&AgentDefinition> {
        self.inner.defs.definitions.get(name)
    }

    /// How many instances are in memory.
    pub fn live_count(&self) -> usize {
        self.inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// The id of agent `definition/name` for `caller`, and its stored state if it exists,
    /// once the caller may address it: the key was given the definition (admin keys all)
    /// and may use its model, and the agent (if it exists) is the key's own (or the key is an
    /// admin key). The grant is checked before the definition's existence, so a key learns
    /// nothing about definitions it was not given.
    async fn address(
        &self,
        caller: &Principal,
        definition: &str,
        name: &str,
    ) -> Result<(String, Option<AgentRecord>), AgentError> {
        self.inner.access(caller, definition)?;
        check_name(name)?;
        let id = format!("{definition}/{name}");
        let record = self.owned(caller, &id).await?;
        Ok((id, record))
    }

    /// Whether `caller` may address agent `definition/name` now (for a new agent, whether a
    /// message may create it), without doing anything: lets a streaming request be refused
    /// with its status before the stream starts. The task itself checks again.
    pub async fn authorize(
        &self,
        caller: &Principal,
        definition: &str,
        name: &str,
        may_create: bool,
    ) -> Result<(), AgentError> {
        match self.address(caller, definition, name).await? {
            (_, Some(_)) => Ok(()),
            (_, None) if may_create => check_new_name(name, self.inner.deps.redactor.detector()),
            (id, None) => Err(AgentError::NotFound(id)),
        }
    }

    /// Creates agent `id` for `caller` within its cap (a name fit to be stored first).
    async fn create(
        &self,
        caller: &Principal,
        id: &str,
        definition: &str,
        name: &str,
    ) -> Result<(), AgentError> {
        check_new_name(name, self.inner.deps.redactor.detector())?;
        let cap = caller.max_agents.unwrap_or(self.inner.max_agents_per_key);
        let now = warden_core::time::unix_millis() as i64;
        match self
            .inner
            .deps
            .store
            .create_agent(id, definition, name, &caller.owner_id, cap, now)
            .await?
        {
            warden_store::AgentCreation::Created => {
                tracing::info!(agent = %id, key = %caller.key_name, "agent created");
                Ok(())
            }
            warden_store::AgentCreation::Exists => {
                // Created a moment ago by someone else: the same checks as for any existing agent.
                self.owned(caller, id).await.map(drop)
            }
            warden_store::AgentCreation::OverCap => Err(AgentError::AgentLimitReached(cap)),
        }
    }

    /// Hands a command to the agent's live instance, starting one if there is none.
    fn send(
        &self,
        id: &str,
        definition: &str,
        name: &str,
        cmd: actor::Command,
    ) -> Result<(), AgentError> {
        let mut live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        let mut cmd = cmd;
        if let Some(tx) = live.get(id) {
            match tx.send(cmd) {
                Ok(()) => return Ok(()),
                // The instance is gone (it hibernated): start a new one.
                Err(mpsc::error::SendError(back)) => cmd = back,
            }
        }
        let tx = actor::spawn(self.inner.clone(), id, definition, name);
        tx.send(cmd).map_err(|_| AgentError::Stopped)?;
        live.insert(id.to_owned(), tx);
        Ok(())
    }

    /// Checks that `caller` may address the stored agent `id` (if it exists).
    async fn owned(&self, caller: &Principal, id: &str) -> Result<Option<AgentRecord>, AgentError> {
        let record = self.inner.deps.store.agent(id).await?;
        if let Some(r) = &record
            && r.owner_key_id != caller.owner_id
            && !caller.admin
        {
            return Err(AgentError::NotYours(id.to_owned()));
        }
        Ok(record)
    }

    /// Gives the agent a task and waits for its outcome; `events` receives each step as it
    /// happens. Messages to one agent are handled one at a time, in arrival order.
    pub async fn message(
        &self,
        caller: Principal,
        definition: &str,
        name: &str,
        content: String,
        events: Option<mpsc::Sender<TaskEvent>>,
    ) -> Result<Outcome, AgentError> {
        if content.trim().is_empty() {
            return Err(AgentError::InvalidRequest(
                "`content` must not be empty".into(),
            ));
        }
        let (id, record) = self.address(&caller, definition, name).await?;
        if record.is_none() {
            self.create(&caller, &id, definition, name).await?;
        }
        let (reply, answer) = oneshot::channel();
        self.send(
            &id,
            definition,
            name,
            actor::Command::Message {
                caller,
                content,
                events,
                reply,
            },
        )?;
        answer.await.map_err(|_| AgentError::Stopped)?
    }

    /// Continues a task that failed or was interrupted, from its journal.
    pub async fn resume(
        &self,
        caller: Principal,
        definition: &str,
        name: &str,
        events: Option<mpsc::Sender<TaskEvent>>,
    ) -> Result<Outcome, AgentError> {
        let (id, record) = self.address(&caller, definition, name).await?;
        let Some(record) = record else {
            return Err(AgentError::NotFound(id));
        };
        let (reply, answer) = oneshot::channel();
        // A task waiting on an approval goes on from it: still pending, it keeps waiting;
        // decided, expired or withdrawn (say its key lost the grant and got it back), the
        // task continues with that outcome instead of staying stuck.
        let cmd = if record.status == status::AWAITING_APPROVAL {
            actor::Command::Continue {
                caller,
                events,
                reply,
            }
        } else {
            actor::Command::Resume {
                caller,
                events,
                reply,
            }
        };
        self.send(&id, definition, name, cmd)?;
        answer.await.map_err(|_| AgentError::Stopped)?
    }

    /// Returns the agent to idle, keeping its history.
    pub async fn reset(
        &self,
        caller: Principal,
        definition: &str,
        name: &str,
    ) -> Result<AgentRecord, AgentError> {
        let (id, record) = self.address(&caller, definition, name).await?;
        if record.is_none() {
            return Err(AgentError::NotFound(id));
        }
        let (reply, answer) = oneshot::channel();
        self.send(
            &id,
            definition,
            name,
            actor::Command::Reset { caller, reply },
        )?;
        answer.await.map_err(|_| AgentError::Stopped)?
    }

    /// The agent's state (from the store; an instance need not be live).
    pub async fn state(
        &self,
        caller: &Principal,
        definition: &str,
        name: &str,
    ) -> Result<AgentRecord, AgentError> {
        let (id, record) = self.address(caller, definition, name).await?;
        record.ok_or(AgentError::NotFound(id))
    }

    /// A page of the agent's history: steps after `cursor` (a sequence number), at most
    /// `limit`.
    pub async fn history(
        &self,
        caller: &Principal,
        definition: &str,
        name: &str,
        cursor: i64,
        limit: u32,
    ) -> Result<History, AgentError> {
        let (id, record) = self.address(caller, definition, name).await?;
        if record.is_none() {
            return Err(AgentError::NotFound(id));
        }
        let limit = limit.clamp(1, 500);
        let steps = self
            .inner
            .deps
            .store
            .agent_steps(&id, cursor, limit)
            .await?;
        let next_cursor =
            (steps.len() as u32 == limit).then(|| steps.last().map_or(cursor, |s| s.seq));
        Ok(History { steps, next_cursor })
    }
}
