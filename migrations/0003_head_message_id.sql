-- The message id of the change each head was last advanced by. The forwarder applies a change
-- only if the API committed it: a change whose acceptance rolled back after the broker had
-- confirmed it (confirm timeout, commit failure, a crash between the two) is never applied.
ALTER TABLE contact_heads ADD COLUMN message_id UUID;
