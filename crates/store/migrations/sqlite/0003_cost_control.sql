-- Cost control: what each request cost and how it was served, token budget counters, and
-- admin keys (which may read usage analytics).
ALTER TABLE usage ADD COLUMN user_id TEXT;          -- x-warden-user
ALTER TABLE usage ADD COLUMN session_id TEXT;       -- x-warden-session
ALTER TABLE usage ADD COLUMN cache TEXT;            -- hit | miss | bypass; NULL when the cache is off
ALTER TABLE usage ADD COLUMN refusal TEXT;          -- rate_limited | budget_exceeded
ALTER TABLE usage ADD COLUMN cached_tokens INTEGER; -- prompt tokens the provider served from its cache
ALTER TABLE usage ADD COLUMN cost_usd REAL;         -- by the configured price table
ALTER TABLE usage ADD COLUMN downgraded_from TEXT;  -- the model asked, when tiering moved it
CREATE INDEX usage_time ON usage(created_at);

-- Settled tokens per budget counter (e.g. `key:<id>:day:2026-11-26`), added to in the same
-- transaction as the usage rows that spent them, so the two never disagree.
CREATE TABLE budget_counters (
    counter    TEXT PRIMARY KEY,
    tokens     INTEGER NOT NULL,
    updated_at INTEGER NOT NULL   -- unix milliseconds
);

ALTER TABLE virtual_keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
