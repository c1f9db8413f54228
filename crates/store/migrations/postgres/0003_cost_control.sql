-- Cost control: what each request cost and how it was served, token budget counters, and
-- admin keys (which may read usage analytics).
ALTER TABLE usage ADD COLUMN user_id TEXT;
ALTER TABLE usage ADD COLUMN session_id TEXT;
ALTER TABLE usage ADD COLUMN cache TEXT;            -- hit | miss | bypass; NULL when not looked up
ALTER TABLE usage ADD COLUMN refusal TEXT;          -- rate_limited | budget_exceeded
ALTER TABLE usage ADD COLUMN cached_tokens BIGINT;
ALTER TABLE usage ADD COLUMN cost_usd DOUBLE PRECISION;
ALTER TABLE usage ADD COLUMN downgraded_from TEXT;
CREATE INDEX usage_time ON usage(created_at);

CREATE TABLE budget_counters (
    counter    TEXT PRIMARY KEY,
    tokens     BIGINT NOT NULL,
    updated_at BIGINT NOT NULL    -- unix milliseconds
);

ALTER TABLE virtual_keys ADD COLUMN admin BOOLEAN NOT NULL DEFAULT FALSE;
