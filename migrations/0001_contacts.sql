-- Accept side: one row per contact id the API has ever accepted. The API locks this row while
-- it publishes a change, so a contact's changes get gapless sequence numbers and reach the
-- queue in that order, whichever API replica accepted them. `doc` is the accepted state,
-- which PATCH merges into and which enforces e-mail uniqueness among live contacts.
CREATE TABLE contact_heads (
    id          UUID PRIMARY KEY,
    seq         BIGINT      NOT NULL CHECK (seq >= 1),
    email       TEXT        NOT NULL,
    doc         JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    accepted_at TIMESTAMPTZ NOT NULL,
    deleted_at  TIMESTAMPTZ
);
CREATE UNIQUE INDEX contact_heads_live_email ON contact_heads (email) WHERE deleted_at IS NULL;

-- Applied side: the contact as the forwarder persisted it. A row is only ever replaced by a
-- change with a higher (version, updated_at), so a stale or redelivered change is a no-op.
-- Deleted contacts stay as tombstones (deleted_at set) so a late update cannot resurrect them.
CREATE TABLE contacts (
    id              UUID PRIMARY KEY,
    version         BIGINT      NOT NULL,
    email           TEXT        NOT NULL,
    first_name      TEXT,
    last_name       TEXT,
    phone           TEXT,
    company         TEXT,
    job_title       TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    deleted_at      TIMESTAMPTZ,
    last_message_id UUID        NOT NULL,
    persisted_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX contacts_email ON contacts (email) WHERE deleted_at IS NULL;

-- Idempotency-Key records for POST /contacts: the first response for a key is replayed for
-- retries with the same body; a different body under the same key is refused.
CREATE TABLE idempotency_keys (
    principal    TEXT        NOT NULL,
    key          TEXT        NOT NULL,
    request_hash TEXT        NOT NULL,
    status       SMALLINT    NOT NULL,
    location     TEXT,
    response     JSONB       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
