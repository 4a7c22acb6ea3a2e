-- One row per contact per CRM: the link to the CRM's record and the delivery state.
-- Written only by the delivery worker of that CRM (one active per CRM), after each attempt.
CREATE TABLE crm_links (
    crm             TEXT        NOT NULL,
    contact_id      UUID        NOT NULL,
    -- The CRM's record id, once known (HubSpot: digits; Salesforce: 18-character id).
    remote_id       TEXT,
    -- The contact version the CRM holds, and when it got it.
    synced_version  BIGINT,
    synced_at       TIMESTAMPTZ,
    -- The version the last attempt carried, and how it ended.
    attempt_version BIGINT      NOT NULL,
    state           TEXT        NOT NULL CHECK (state IN ('synced', 'retrying', 'failed')),
    -- Consecutive failed attempts (0 after a success).
    attempts        INTEGER     NOT NULL DEFAULT 0,
    last_attempt_at TIMESTAMPTZ NOT NULL,
    -- The last failure, without credentials.
    last_error      TEXT,
    PRIMARY KEY (crm, contact_id)
);
CREATE INDEX crm_links_remote ON crm_links (crm, remote_id);
