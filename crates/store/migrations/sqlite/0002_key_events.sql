-- Key changes made by `warden keys …` (often from another process than the server). Written in
-- the same transaction as the change; the server copies each into the audit log, then marks it.
CREATE TABLE key_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms     INTEGER NOT NULL,
    action    TEXT NOT NULL,      -- created | rotated | revoked
    key_name  TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    audited   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX key_events_pending ON key_events(audited, id);
