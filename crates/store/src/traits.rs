//! The store's API, split by concern so that each caller names what it uses: keys, the key
//! events' outbox, usage and budgets, agents and their journals, approvals. [`Store`] is all of
//! them, which each backend implements.

use crate::Error;
use crate::agents::{
    AgentCreation, AgentRecord, AgentUpdate, ApprovalRecord, DecisionRecord, NewStep, StepRecord,
};
use crate::records::{GroupBy, KeyEvent, KeyRecord, NewKeyRecord, UsageGroup, UsageRow};
use async_trait::async_trait;

/// Virtual keys: their hashes, grants, rotation and revocation. Every change is recorded as a
/// key event in the same transaction ([`KeyEventOutbox`]).
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new key. Fails with [`Error::NameTaken`] if a current key has the same name.
    async fn insert_key(&self, key: &NewKeyRecord) -> Result<(), Error>;

    /// Finds a key by the SHA-256 of its plain value, whatever its status.
    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>, Error>;

    /// All keys, newest first, including revoked, replaced and expired ones.
    async fn list_keys(&self) -> Result<Vec<KeyRecord>, Error>;

    /// Revokes the current key of this name and any of its predecessors still in their grace
    /// period. Returns how many keys were revoked; [`Error::NoSuchKey`] if none.
    async fn revoke_keys(&self, name: &str, now: i64) -> Result<u64, Error>;

    /// Replaces the current key of `new.name` by `new`, in one transaction; the old key keeps
    /// working until `old_valid_until` (or its own earlier expiry).
    async fn rotate_key(&self, new: &NewKeyRecord, old_valid_until: i64) -> Result<(), Error>;

    /// Sets the agent definitions (`*` = all) and the agent cap (`None` = the server default)
    /// of every unrevoked key named `name` (the current one and any in a rotation's grace
    /// period), recorded as an `updated` key event. Returns how many keys changed;
    /// [`Error::NoSuchKey`] if none.
    async fn update_key_agents(
        &self,
        name: &str,
        agents: &[String],
        max_agents: Option<i64>,
    ) -> Result<u64, Error>;
}

/// The outbox of key changes: events written with each change, copied into the audit log by
/// the running server (at least once).
#[async_trait]
pub trait KeyEventOutbox: Send + Sync + 'static {
    /// Key changes not yet copied into the audit log, oldest first (at most 1,000).
    async fn pending_key_events(&self) -> Result<Vec<KeyEvent>, Error>;

    /// Marks key changes up to `up_to_id` as copied into the audit log.
    async fn mark_key_events_audited(&self, up_to_id: i64) -> Result<(), Error>;
}

/// Usage rows and budget counters: what each request used, and the settled totals budgets
/// are checked against.
#[async_trait]
pub trait UsageStore: Send + Sync + 'static {
    /// Appends usage rows in one transaction.
    async fn insert_usage(&self, rows: &[UsageRow]) -> Result<(), Error>;

    /// The most recent usage rows, newest first.
    async fn recent_usage(&self, limit: u32) -> Result<Vec<UsageRow>, Error>;

    /// Usage between two instants (unix milliseconds, `from` inclusive, `to` exclusive),
    /// grouped, largest groups first for keys and models, in order for days.
    async fn usage_report(
        &self,
        group_by: GroupBy,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsageGroup>, Error>;

    /// Settled tokens of these budget counters (absent ones are 0).
    async fn budget_totals(
        &self,
        counters: &[String],
    ) -> Result<std::collections::HashMap<String, i64>, Error>;
}

/// Durable agents: the agent rows (state and lease) and their journals. Every write is
/// conditional on the lease epoch held, so a writer that lost its lease cannot commit.
#[async_trait]
pub trait AgentStore: Send + Sync + 'static {
    /// Takes an agent over for `owner` (a node and instance id), creating its row if it is
    /// new: the lease epoch grows by one, and every later write must carry the new epoch.
    /// Returns the state as it is now.
    async fn acquire_agent(
        &self,
        id: &str,
        definition: &str,
        name: &str,
        owner_key_id: &str,
        owner: &str,
        now_ms: i64,
    ) -> Result<AgentRecord, Error>;

    /// Creates the agent row `id` (idle, no lease yet) for `owner_key_id` unless it exists or
    /// that owner already has `max_per_owner` agents; the count and the insert are atomic
    /// with respect to other creations for the same owner.
    async fn create_agent(
        &self,
        id: &str,
        definition: &str,
        name: &str,
        owner_key_id: &str,
        max_per_owner: u64,
        now_ms: i64,
    ) -> Result<AgentCreation, Error>;

    /// Agents whose status is `running` (after a crash: tasks nobody finished).
    async fn running_agents(&self) -> Result<Vec<AgentRecord>, Error>;

    /// An agent's state, if it exists.
    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, Error>;

    /// Appends `step` to the journal and writes `update`, in one transaction, only if the
    /// agent's epoch is still `epoch` ([`Error::LeaseLost`] otherwise). Returns the step's
    /// sequence number.
    async fn commit_step(
        &self,
        id: &str,
        epoch: i64,
        step: &NewStep,
        update: &AgentUpdate,
    ) -> Result<i64, Error>;

    /// Writes `update` without a step, only if the epoch is still `epoch`.
    async fn update_agent(&self, id: &str, epoch: i64, update: &AgentUpdate) -> Result<(), Error>;

    /// Journal steps after `after_seq`, oldest first, at most `limit`.
    async fn agent_steps(
        &self,
        id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StepRecord>, Error>;

    /// Every step of one task, oldest first.
    async fn task_steps(&self, id: &str, task_id: &str) -> Result<Vec<StepRecord>, Error>;
}

/// Approval requests for write tool calls and their single-use state changes.
#[async_trait]
pub trait ApprovalStore: Send + Sync + 'static {
    /// Stores a new approval request.
    async fn insert_approval(&self, approval: &ApprovalRecord) -> Result<(), Error>;

    /// An approval request.
    async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, Error>;

    /// Approval requests, newest first; only those in `state` if given.
    async fn list_approvals(
        &self,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ApprovalRecord>, Error>;

    /// Moves an approval from `from` to `to` (with the decision, or the result), only if it
    /// is still in `from`. Returns whether it moved: a decision or a dispatch that finds the
    /// request no longer in the expected state did not happen (single use).
    async fn transition_approval(
        &self,
        id: &str,
        from: &str,
        to: &str,
        decision: Option<&DecisionRecord>,
        result: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, Error>;
}

/// Everything Warden persists. Implementations must be safe to share between tasks.
#[async_trait]
pub trait Store: KeyStore + KeyEventOutbox + UsageStore + AgentStore + ApprovalStore {
    /// Checks that the database answers (for `/readyz`).
    async fn ping(&self) -> Result<(), Error>;
}
