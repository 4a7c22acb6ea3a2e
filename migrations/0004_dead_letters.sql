-- The dead-letter queue as people see it: what could not be delivered or processed, with every
-- error, kept until it is replayed successfully, superseded or discarded.
--
-- Written by the dead-letter worker (which consumes RabbitMQ's dead-letter queue); the delivery
-- worker deletes a contact's entry once the CRM holds a version at least as new; the admin API
-- replays and discards.
CREATE TABLE dead_letters (
    id              UUID        PRIMARY KEY,
    -- 'delivery': a contact's delivery to one CRM. 'message': any other dead-lettered message
    -- (unreadable, an unknown format version, a change a worker kept failing on), kept raw.
    kind            TEXT        NOT NULL CHECK (kind IN ('delivery', 'message')),
    crm             TEXT,
    contact_id      UUID,
    -- The newest contact version that failed, and whether it was a write or a delete.
    version         BIGINT,
    operation       TEXT        CHECK (operation IN ('upsert', 'delete')),
    -- 'retrying': waiting for the dead-letter worker's next round (at next_attempt_at);
    -- 'replayed': sent through again, outcome pending; 'parked': waiting for a person.
    status          TEXT        NOT NULL CHECK (status IN ('retrying', 'replayed', 'parked')),
    -- Why it is here: permanent, retries_exhausted, delivery_limit, rejected, undecodable, …
    reason          TEXT        NOT NULL,
    -- The last error, and every error oldest first ([{at, code, message, retryable}]).
    error_code      TEXT,
    error_message   TEXT,
    errors          JSONB       NOT NULL DEFAULT '[]',
    -- Failed delivery attempts in total, and rounds the dead-letter worker has given it.
    attempts        INTEGER     NOT NULL DEFAULT 0,
    rounds          INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    -- A 'message' as it was: where it came from and its content, so it can be replayed.
    source_queue    TEXT,
    exchange        TEXT,
    routing_key     TEXT,
    content_type    TEXT,
    message_type    TEXT,
    body            BYTEA,
    first_failed_at TIMESTAMPTZ NOT NULL,
    last_failed_at  TIMESTAMPTZ NOT NULL,
    CHECK (kind = 'message' OR (crm IS NOT NULL AND contact_id IS NOT NULL AND version IS NOT NULL))
);
-- One entry per contact per CRM: a later failure of the same contact updates it.
CREATE UNIQUE INDEX dead_letters_delivery ON dead_letters (crm, contact_id) WHERE kind = 'delivery';
CREATE INDEX dead_letters_due ON dead_letters (next_attempt_at) WHERE status = 'retrying';
