-- Every address SyncRoot wrote a contact to in a CRM while no record of it was linked there:
-- a create whose answer was lost (a timeout, a dropped connection, a crash) may have left a
-- record at any of them, and a CRM that matches records by address (HubSpot's upsert by e-mail)
-- does not find it once the contact has moved on. Delivery looks at every one before it
-- creates or archives, keeps one record and archives the others. Lower-cased, oldest first;
-- emptied once a write succeeds.
ALTER TABLE crm_links ADD COLUMN left_addresses TEXT[] NOT NULL DEFAULT '{}';

-- Until now only the earliest such address was kept, in written_values.
UPDATE crm_links
   SET left_addresses = ARRAY[lower(written_values->>'email')]
 WHERE remote_id IS NULL AND written_values->>'email' IS NOT NULL;
