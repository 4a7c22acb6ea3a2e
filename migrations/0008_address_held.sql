-- Delivery holds back a contact not yet linked to a CRM while a record of another contact in
-- that CRM may still carry its e-mail address (that contact was deleted, or moved to another
-- address, and the CRM has not been told yet): see links::held_by_another. These find such
-- records by address: the address a link's record is known to hold, and deleted contacts'
-- last addresses.
CREATE INDEX crm_links_record_email
    ON crm_links (crm, lower(COALESCE(remote_values->>'email', written_values->>'email')))
    WHERE remote_id IS NOT NULL;
CREATE INDEX contacts_deleted_email ON contacts (email) WHERE deleted_at IS NOT NULL;
