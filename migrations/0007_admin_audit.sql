-- Admin actions that changed the dead-letter queue, for admins to read back (GET /admin/audit):
-- who, what, which entries, when. Each row is written in the transaction of the change it
-- records: a committed replay or discard has its row, a rolled-back one has none.
CREATE TABLE admin_audit (
    -- UUIDv7: time-ordered, so the newest first is ORDER BY id DESC.
    id        UUID        PRIMARY KEY,
    at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The admin key's id: the first 16 hex digits of its SHA-256, never the key.
    key_id    TEXT        NOT NULL,
    action    TEXT        NOT NULL
              CHECK (action IN ('replay', 'replay_matching', 'discard', 'discard_matching')),
    -- For replay_matching and discard_matching: the request's query string as given (its
    -- filter); NULL for an action on one entry.
    filter    TEXT,
    -- The entries replayed or discarded (a bulk replay commits 200 entries at a time, each
    -- chunk with its own row).
    entry_ids UUID[]      NOT NULL
);
