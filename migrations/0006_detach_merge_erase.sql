-- Records SyncRoot stops writing, merges and erasures made in a CRM.

-- Why SyncRoot no longer writes this contact's record in this CRM (NULL: it does): the record
-- was deleted there (policy `mark`), its contact was merged into another, or the record awaits
-- a merge by hand. Delivery skips a detached link; reading the record from the CRM again (a
-- restore) attaches it.
ALTER TABLE crm_links ADD COLUMN detached TEXT;

-- History entries for what a CRM did to a contact besides changing fields, each with a note
-- in words: `detach` (a record deleted there, kept here), `merge` (contacts merged because
-- their records were), `erase` (a privacy deletion: the values are gone from the history too).
ALTER TABLE contact_versions DROP CONSTRAINT contact_versions_operation_check;
ALTER TABLE contact_versions ADD CONSTRAINT contact_versions_operation_check
    CHECK (operation IN ('create', 'update', 'delete', 'kept', 'detach', 'merge', 'erase'));
ALTER TABLE contact_versions ADD COLUMN note TEXT;

-- How a CRM's change reached SyncRoot: 'webhook' or 'poller' (NULL: through the API).
ALTER TABLE contact_versions ADD COLUMN via TEXT;
