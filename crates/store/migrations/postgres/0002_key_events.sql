-- Key changes made by `warden keys …` (often from another process than the server). Written in
-- the same transaction as the change; the server copies each into the audit log, then marks it.
CREATE TABLE key_events (
    id        BIGSERIAL PRIMARY KEY,
    at_ms     BIGINT NOT NULL,
    action    TEXT NOT NULL,      -- created | rotated | revoked
    key_name  TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    audited   BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX key_events_pending ON key_events(audited, id);
