//! The plain data of durable agents: the agent row (state and lease) and journal steps.
//! Content fields hold redacted text only; the agents crate redacts before it writes.

/// An agent's stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// `definition/name`.
    pub id: String,
    /// The definition's name.
    pub definition: String,
    /// The instance name.
    pub name: String,
    /// The virtual key that created it.
    pub owner_key_id: String,
    /// `idle`, `running`, `awaiting_approval`, `failed` or `halted`.
    pub status: String,
    /// Why it is failed or halted (or how the last task ended).
    pub status_reason: Option<String>,
    /// The current (or last) task.
    pub task_id: Option<String>,
    /// That task's request, redacted.
    pub task: Option<String>,
    /// Tokens the current task has used.
    pub tokens_used: i64,
    /// Journal entries so far.
    pub steps: i64,
    /// Lease epoch: grows on every takeover.
    pub epoch: i64,
    /// Unix ms of the last committed step.
    pub last_verified_at: Option<i64>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

/// What [`crate::Store::create_agent`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentCreation {
    /// The row is new.
    Created,
    /// The row was already there (nothing changed).
    Exists,
    /// The owner has as many agents as it may: nothing was created.
    OverCap,
}

/// The mutable part of an agent's state, written with each step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentUpdate {
    /// New status.
    pub status: String,
    /// Why.
    pub status_reason: Option<String>,
    /// Current task.
    pub task_id: Option<String>,
    /// Its request, redacted.
    pub task: Option<String>,
    /// Tokens the task has used.
    pub tokens_used: i64,
}

/// A journal step to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStep {
    /// The task it belongs to.
    pub task_id: String,
    /// `task`, `model`, `tool`, `answer`, `timed_out`, `halted`, `failed`, `interrupted`,
    /// `reset` or `resumed`.
    pub kind: String,
    /// JSON, redacted.
    pub data: String,
    /// Tokens it used (model steps).
    pub tokens: Option<i64>,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms.
    pub finished_at: i64,
}

/// A stored journal step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// Position in the agent's journal, from 1.
    pub seq: i64,
    /// The task it belongs to.
    pub task_id: String,
    /// Its kind (see [`NewStep::kind`]).
    pub kind: String,
    /// JSON, redacted.
    pub data: String,
    /// Tokens it used.
    pub tokens: Option<i64>,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms.
    pub finished_at: i64,
}

/// An approval request for a write tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    /// `apr_…`.
    pub id: String,
    /// The agent that asked.
    pub agent_id: String,
    /// Its task.
    pub task_id: String,
    /// The model's id for the call.
    pub call_id: String,
    /// The tool.
    pub tool: String,
    /// RFC 8785 canonical JSON arguments, as the model wrote them (redacted).
    pub arguments: String,
    /// Hex SHA-256 of `arguments`.
    pub arguments_sha256: String,
    /// The virtual key driving the agent.
    pub requested_by: String,
    /// JSON: what would change.
    pub preview: String,
    /// `awaiting_approval`, `approved`, `dispatched`, `succeeded`, `failed`,
    /// `outcome_unknown`, `denied` or `expired`.
    pub state: String,
    /// Who decided.
    pub approver: Option<String>,
    /// `approve` or `deny`.
    pub decision: Option<String>,
    /// The approver's comment or reason.
    pub comment: Option<String>,
    /// Hex Ed25519 signature over the decision message.
    pub signature: Option<String>,
    /// Unix ms.
    pub decided_at: Option<i64>,
    /// Handed to the tool, so a retried write is recognised.
    pub idempotency_key: String,
    /// JSON: the outcome.
    pub result: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms: no decision is accepted from then on.
    pub expires_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

/// A signed decision to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    /// `approved` or `denied`.
    pub new_state: String,
    /// Who decided.
    pub approver: String,
    /// `approve` or `deny`.
    pub decision: String,
    /// Comment or reason.
    pub comment: Option<String>,
    /// Hex signature.
    pub signature: String,
    /// Unix ms.
    pub at: i64,
}
