-- Approval requests for write tool calls, and their lifecycle:
-- awaiting_approval -> approved -> dispatched -> succeeded | failed | outcome_unknown,
-- or awaiting_approval -> denied | expired. Every transition is a conditional update.
CREATE TABLE approvals (
    id               TEXT PRIMARY KEY,
    agent_id         TEXT NOT NULL,
    task_id          TEXT NOT NULL,
    call_id          TEXT NOT NULL,
    tool             TEXT NOT NULL,
    arguments        TEXT NOT NULL,         -- RFC 8785 canonical JSON, as the model wrote it (redacted)
    arguments_sha256 TEXT NOT NULL,
    requested_by     TEXT NOT NULL,         -- the virtual key driving the agent
    preview          TEXT NOT NULL,         -- JSON: what would change
    state            TEXT NOT NULL,
    approver         TEXT,
    decision         TEXT,                  -- approve | deny
    comment          TEXT,
    signature        TEXT,                  -- hex Ed25519 over the decision message
    decided_at       BIGINT,
    idempotency_key  TEXT NOT NULL,
    result           TEXT,                  -- JSON: the outcome
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX approvals_state ON approvals(state, created_at);
CREATE INDEX approvals_agent ON approvals(agent_id);
