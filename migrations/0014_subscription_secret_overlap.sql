-- Secret rotation with an overlap: after POST /admin/subscriptions/{id}/rotate-secret the
-- secret it replaced keeps signing deliveries, beside the new one, until previous_secret_until,
-- so a receiver that has not yet deployed the new secret keeps verifying. One previous secret
-- at most: a rotation within the overlap replaces it. Stored as `secret` is (`whsec_` and the
-- base64 of the key, in clear: it is needed to sign). The sender forgets it once expired.
ALTER TABLE subscriptions
    ADD COLUMN previous_secret       TEXT,
    ADD COLUMN previous_secret_until TIMESTAMPTZ,
    ADD CONSTRAINT subscriptions_previous_secret_until
        CHECK ((previous_secret IS NULL) = (previous_secret_until IS NULL));
