-- Two-way sync: who changed each field last, every version's history, and what each CRM is
-- known to hold, so a CRM's webhook can be told apart from SyncRoot's own write (echo).

-- Per field, when it last changed and where the change came from:
-- {"job_title": {"at": "2026-…Z", "by": "hubspot"}, …}. Conflicts are decided by these
-- (last writer wins by the source's own modification time). A field without a stamp counts
-- as changed at the head's `accepted_at` by the API.
ALTER TABLE contact_heads ADD COLUMN stamps JSONB NOT NULL DEFAULT '{}';

-- One row per accepted version, written in the transaction that accepts it (so a rolled-back
-- acceptance leaves no history either), and one per CRM change that lost every field to the
-- conflict policy ('kept': the version stays, the CRM is corrected).
CREATE TABLE contact_versions (
    entry       BIGSERIAL   PRIMARY KEY,
    contact_id  UUID        NOT NULL,
    version     BIGINT      NOT NULL,
    -- api, hubspot or salesforce.
    origin      TEXT        NOT NULL,
    operation   TEXT        NOT NULL CHECK (operation IN ('create', 'update', 'delete', 'kept')),
    -- [{field, old, new}] for the fields this version changed.
    changes     JSONB       NOT NULL,
    -- [{field, kept, kept_value, lost, lost_value, reason}]: values that lost a conflict.
    conflicts   JSONB       NOT NULL DEFAULT '[]',
    accepted_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX contact_versions_contact ON contact_versions (contact_id, version, entry);

-- The mapped values the CRM's record is known to hold (written by SyncRoot or read from the
-- CRM), and those of a write in flight. An incoming record equal to either is an echo.
ALTER TABLE crm_links ADD COLUMN remote_values JSONB;
ALTER TABLE crm_links ADD COLUMN written_values JSONB;
-- When the CRM last modified the record, as the CRM reported it.
ALTER TABLE crm_links ADD COLUMN remote_modified_at TIMESTAMPTZ;

-- Webhook events already handled, so a redelivered event costs nothing. Pruned after the
-- CRMs' redelivery windows (HubSpot: 24 h).
CREATE TABLE inbound_events (
    provider    TEXT        NOT NULL,
    event_key   TEXT        NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_key)
);
CREATE INDEX inbound_events_received_at ON inbound_events (received_at);

-- How far each CRM has been polled for records modified since (changes whose webhooks were
-- lost). One row per CRM; the poller that holds the CRM's advisory lock advances it.
CREATE TABLE poll_checkpoints (
    crm          TEXT        PRIMARY KEY,
    polled_until TIMESTAMPTZ NOT NULL,
    polled_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
