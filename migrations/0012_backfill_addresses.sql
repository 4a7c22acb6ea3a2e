-- A backfill's first pass over each CRM: which records carry which address, so that its second
-- pass skips every record of an address several records share inside one CRM (never guessing
-- which is the person's). Addresses are kept as digests of their normalised form, never in
-- clear; a job's rows go when it finishes.
CREATE TABLE backfill_addresses (
    job_id   UUID  NOT NULL REFERENCES admin_jobs (id) ON DELETE CASCADE,
    crm      TEXT  NOT NULL,
    -- SHA-256 of the normalised address.
    address  BYTEA NOT NULL,
    remote_id TEXT NOT NULL,
    PRIMARY KEY (job_id, crm, address, remote_id)
);
