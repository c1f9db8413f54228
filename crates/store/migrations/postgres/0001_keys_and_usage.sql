-- Virtual keys: hashes only. A key is "current" while neither revoked nor replaced by a
-- rotation; a name has at most one current key.
CREATE TABLE virtual_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    key_hash     BYTEA NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    models       TEXT,              -- JSON array of allowed model names; NULL = all
    created_at   BIGINT NOT NULL,   -- unix seconds
    expires_at   BIGINT,            -- unix seconds; NULL = never
    revoked_at   BIGINT,
    replaced_by  TEXT
);
CREATE UNIQUE INDEX virtual_keys_current_name
    ON virtual_keys(name) WHERE revoked_at IS NULL AND replaced_by IS NULL;

-- One row per proxied request.
CREATE TABLE usage (
    id                BIGSERIAL PRIMARY KEY,
    request_id        TEXT NOT NULL,
    key_id            TEXT NOT NULL,
    endpoint          TEXT NOT NULL,
    model             TEXT NOT NULL,
    provider          TEXT,
    upstream_model    TEXT,
    status            BIGINT NOT NULL,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    latency_ms        BIGINT NOT NULL,
    attempts          BIGINT NOT NULL,
    stream            BOOLEAN NOT NULL,
    deployment        TEXT NOT NULL,
    created_at        BIGINT NOT NULL   -- unix milliseconds
);
CREATE INDEX usage_key_time ON usage(key_id, created_at);
CREATE INDEX usage_request ON usage(request_id);
