-- The change feed (GET /changes) reads contact_versions in an order no later commit can slip
-- behind: by the id of the transaction that wrote each entry, then by entry, and only entries
-- of transactions older than every transaction still running (see store::history::feed).
-- Entries written before this migration share its transaction id.
ALTER TABLE contact_versions ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX contact_versions_feed ON contact_versions (txid, entry);
