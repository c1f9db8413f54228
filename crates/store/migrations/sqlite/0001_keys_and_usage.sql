-- Virtual keys: hashes only. A key is "current" while neither revoked nor replaced by a
-- rotation; a name has at most one current key.
CREATE TABLE virtual_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    key_hash     BLOB NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    models       TEXT,              -- JSON array of allowed model names; NULL = all
    created_at   INTEGER NOT NULL,  -- unix seconds
    expires_at   INTEGER,           -- unix seconds; NULL = never
    revoked_at   INTEGER,
    replaced_by  TEXT
);
CREATE UNIQUE INDEX virtual_keys_current_name
    ON virtual_keys(name) WHERE revoked_at IS NULL AND replaced_by IS NULL;

-- One row per proxied request.
CREATE TABLE usage (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id        TEXT NOT NULL,
    key_id            TEXT NOT NULL,
    endpoint          TEXT NOT NULL,
    model             TEXT NOT NULL,
    provider          TEXT,
    upstream_model    TEXT,
    status            INTEGER NOT NULL,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    latency_ms        INTEGER NOT NULL,
    attempts          INTEGER NOT NULL,
    stream            INTEGER NOT NULL,
    deployment        TEXT NOT NULL,
    created_at        INTEGER NOT NULL  -- unix milliseconds
);
CREATE INDEX usage_key_time ON usage(key_id, created_at);
CREATE INDEX usage_request ON usage(request_id);
