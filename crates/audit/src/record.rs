//! Typed audit records. Every record carries its sequence number, time, deployment version and
//! the SHA-256 of the previous record's canonical bytes; its own hash covers all of that, so
//! editing, removing, reordering or inserting a record breaks the chain.
//!
//! Records hold no raw content: model calls carry counts, names and ids; later kinds that need
//! content will take it as `Redacted` text only.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// One request through the gateway.
    ModelCall(Box<ModelCall>),
    /// A virtual key was created, rotated or revoked (copied from the store's key events, at
    /// least once).
    KeyChange {
        /// `created`, `rotated` or `revoked`.
        action: String,
        /// Key name.
        key_name: String,
        /// Key id (empty for a revocation, which covers every key of the name).
        key_id: String,
        /// When the change was made (unix ms), possibly before this record.
        changed_at_ms: u64,
    },
    /// A step of a durable agent was committed to its journal.
    AgentStep {
        /// `definition/name`.
        agent_id: String,
        /// The task it belongs to.
        task_id: String,
        /// Its position in the agent's journal.
        seq: u64,
        /// `task`, `model`, `tool`, `answer`, `timed_out`, `halted`, `failed`, `interrupted`,
        /// `reset` or `resumed`.
        step: String,
        /// The agent's status after it.
        status: String,
        /// Why (for halts, timeouts and failures).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Tokens the step used.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tokens: Option<i64>,
        /// The virtual key that drives the agent.
        key_id: String,
    },
    /// A tool call an agent made (or was refused).
    ToolCall {
        /// `definition/name`.
        agent_id: String,
        /// The task it belongs to.
        task_id: String,
        /// The model's id for the call.
        call_id: String,
        /// Tool name.
        tool: String,
        /// `read` or `write`, as configuration decided.
        classification: String,
        /// Hex SHA-256 of the (redacted) arguments.
        arguments_sha256: String,
        /// `ok`, `refused`, `error`, `timeout` or `needs_approval`.
        outcome: String,
        /// A short redacted summary (row count, the rule broken, the error).
        summary: String,
        /// Milliseconds it took.
        latency_ms: u64,
    },
    /// An approval request for a write, or a step of its life: requested, approved, denied,
    /// expired, dispatched, succeeded, failed, outcome_unknown.
    Approval {
        /// `apr_…`.
        approval_id: String,
        /// `definition/name`.
        agent_id: String,
        /// Tool.
        tool: String,
        /// Hex SHA-256 of the canonical arguments.
        arguments_sha256: String,
        /// The new state.
        state: String,
        /// Who decided (decisions only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approver: Option<String>,
        /// The approver's signature (decisions only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
        /// Rows previewed or changed, the reason of a denial, or the error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Warden started with this configuration (its hash, never its secrets).
    Started {
        /// SHA-256 of the configuration file, if one was used.
        config_sha256: Option<String>,
    },
}

/// One model call, as seen by the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCall {
    /// `x-request-id`.
    pub request_id: String,
    /// Virtual key id and name.
    pub key_id: String,
    /// Virtual key name.
    pub key_name: String,
    /// `chat.completions` or `embeddings`.
    pub endpoint: String,
    /// Model asked for.
    pub model: String,
    /// Provider and upstream model that answered (or were tried last).
    pub provider: Option<String>,
    /// Upstream model name.
    pub upstream_model: Option<String>,
    /// HTTP status returned.
    pub status: u16,
    /// Token counts reported by the provider.
    pub prompt_tokens: Option<i64>,
    /// Token counts reported by the provider.
    pub completion_tokens: Option<i64>,
    /// Redactions by entity type (request and answer).
    pub redactions: BTreeMap<String, u32>,
    /// Upstream attempts.
    pub attempts: u32,
    /// Whether it was streamed.
    pub stream: bool,
    /// Milliseconds from request to last byte (streams) or to the answer.
    pub latency_ms: u64,
    /// The end user (`x-warden-user`), if named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The session (`x-warden-session`), if named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// `hit`, `miss` or `bypass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// `rate_limited` or `budget_exceeded` when Warden refused the call for cost reasons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Dollars by the configured price table, as a decimal string (exact in the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<String>,
    /// The model asked for, when tiering moved the call to a cheaper one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downgraded_from: Option<String>,
    /// The client's own `x-request-id` (sanitised), kept apart from Warden's `request_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
}

/// A record in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// Unix milliseconds.
    pub time_ms: u64,
    /// Deployment version (`x-warden-deployment`).
    pub deployment: String,
    /// Hex SHA-256 of the previous record's canonical bytes (64 zeros for the first).
    pub prev_hash: String,
    /// What happened.
    pub event: Event,
}

/// The hash that precedes the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl Record {
    /// The canonical bytes: compact JSON with fields in declaration order (serde's derive is
    /// deterministic), one line of a segment file.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Hex SHA-256 of the canonical bytes.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical()))
    }
}
