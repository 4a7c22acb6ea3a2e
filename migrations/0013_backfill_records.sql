-- A backfill reads each CRM once: every live record it read waits here, with its values, until
-- the job has read every CRM and matched them; a job's rows go when it finishes. Addresses are
-- kept as digests of their normalised form, as in the index below.
DROP TABLE backfill_addresses;
CREATE TABLE backfill_records (
    job_id      UUID        NOT NULL REFERENCES admin_jobs (id) ON DELETE CASCADE,
    crm         TEXT        NOT NULL,
    remote_id   TEXT        NOT NULL,
    -- SHA-256 of the normalised address; NULL for a record without a valid one.
    address     BYTEA,
    -- The record's mapped values, in SyncRoot's field names, as the CRM reported them.
    record      JSONB       NOT NULL,
    modified_at TIMESTAMPTZ NOT NULL,
    external_id TEXT,
    -- Merged into its contact already, during an earlier CRM's apply pass (its contact had just
    -- been created or updated there): not applied again.
    merged      BOOLEAN     NOT NULL DEFAULT false,
    PRIMARY KEY (job_id, crm, remote_id)
);
CREATE INDEX backfill_records_address ON backfill_records (job_id, address);

-- What a complete read of a CRM found at an address: the records carrying it (none: no record
-- of that CRM had it). Delivery links a contact not yet linked to the one record found, or
-- creates its record where none was, without asking the CRM again, while the read is recent
-- (`address_index_trust_secs`); a change to a record of the CRM seen since drops its
-- addresses' rows (the index never claims more than was read).
CREATE TABLE crm_address_index (
    crm      TEXT        NOT NULL,
    -- SHA-256 of the normalised address (`sha256(convert_to(contacts.email, 'UTF8'))`).
    address  BYTEA       NOT NULL,
    records  TEXT[]      NOT NULL,
    -- When the read that found this began.
    read_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (crm, address)
);
CREATE INDEX crm_address_index_record ON crm_address_index USING GIN (records);
