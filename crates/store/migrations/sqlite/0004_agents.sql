-- Durable agents: one row per agent id (definition/name) with its state and lease, and an
-- append-only journal of its steps. Content in both is redacted before it is written.
CREATE TABLE agents (
    id              TEXT PRIMARY KEY,        -- definition/name
    definition      TEXT NOT NULL,
    name            TEXT NOT NULL,
    owner_key_id    TEXT NOT NULL,           -- the virtual key that created it
    status          TEXT NOT NULL,           -- idle | running | awaiting_approval | failed | halted
    status_reason   TEXT,
    task_id         TEXT,                    -- the current (or last) task
    task            TEXT,                    -- its request, redacted
    tokens_used     INTEGER NOT NULL DEFAULT 0, -- tokens of the current task
    steps           INTEGER NOT NULL DEFAULT 0, -- journal entries so far
    epoch           INTEGER NOT NULL DEFAULT 0, -- lease epoch: grows on every takeover; writes are conditional on it
    lease_owner     TEXT,
    last_verified_at INTEGER,                   -- unix ms: the last time a step committed
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE agent_steps (
    agent_id    TEXT NOT NULL,
    seq         INTEGER NOT NULL,                -- from 1, per agent, without gaps
    task_id     TEXT NOT NULL,
    kind        TEXT NOT NULL,                -- task | model | tool | answer | timed_out | halted | failed | interrupted | reset | resumed
    data        TEXT NOT NULL,                -- JSON, redacted
    tokens      INTEGER,
    started_at  INTEGER NOT NULL,                -- unix ms
    finished_at INTEGER NOT NULL,
    PRIMARY KEY (agent_id, seq)
);
