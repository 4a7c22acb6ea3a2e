-- Push subscriptions: each one follows the change feed (GET /changes, store::history::feed)
-- from its own cursor and POSTs every entry to its URL, signed by the Standard Webhooks
-- scheme. The sender (`syncroot subscriptions`) takes a subscription for a while with a lease
-- (lease_token, lease_until) instead of holding a row lock: an open transaction would hold the
-- feed's xmin, and with it every reader of the feed, back for as long as a subscriber is slow.
CREATE TABLE subscriptions (
    id                   UUID        PRIMARY KEY,
    url                  TEXT        NOT NULL,
    description          TEXT,
    -- `whsec_` and the base64 of the key; needed in clear to sign, shown once on create.
    secret               TEXT        NOT NULL,
    enabled              BOOLEAN     NOT NULL DEFAULT true,
    -- Why the sender disabled it (failing for too long); NULL when enabled or disabled by hand.
    disabled_reason      TEXT,
    -- The feed position of the last entry the subscriber acknowledged (2xx).
    cursor_txid          xid8        NOT NULL,
    cursor_entry         BIGINT      NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_success_at      TIMESTAMPTZ,
    last_failure_at      TIMESTAMPTZ,
    last_error           TEXT,
    consecutive_failures INT         NOT NULL DEFAULT 0,
    -- The first of the current run of failures; NULL after a success.
    failing_since        TIMESTAMPTZ,
    -- When the sender looks at it next (a retry's backoff, or the poll interval when idle).
    next_attempt_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_token          UUID,
    lease_until          TIMESTAMPTZ
);
CREATE INDEX subscriptions_due ON subscriptions (next_attempt_at) WHERE enabled;

-- Every attempt to deliver an entry, for admins to read (GET /admin/subscriptions/{id}/deliveries);
-- pruned after subscription_log_retention_hours.
CREATE TABLE subscription_deliveries (
    -- UUIDv7: time-ordered, so the newest first is ORDER BY id DESC.
    id              UUID        PRIMARY KEY,
    subscription_id UUID        NOT NULL REFERENCES subscriptions ON DELETE CASCADE,
    -- The webhook-id: the entry's feed cursor.
    event_id        TEXT        NOT NULL,
    contact_id      UUID        NOT NULL,
    version         BIGINT      NOT NULL,
    attempt         INT         NOT NULL,
    -- The subscriber's status code, or NULL when no answer came (error says why).
    status_code     INT,
    error           TEXT,
    took_ms         BIGINT      NOT NULL,
    at              TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX subscription_deliveries_by_subscription ON subscription_deliveries (subscription_id, id DESC);
CREATE INDEX subscription_deliveries_at ON subscription_deliveries (at);

-- The admin audit log records what admins do to subscriptions too; entry_ids holds the
-- subscription's id, filter what was asked (the patch, the replay's time).
ALTER TABLE admin_audit DROP CONSTRAINT admin_audit_action_check;
ALTER TABLE admin_audit ADD CONSTRAINT admin_audit_action_check
    CHECK (action IN ('replay', 'replay_matching', 'discard', 'discard_matching',
                      'subscription_create', 'subscription_update', 'subscription_delete',
                      'subscription_replay', 'subscription_rotate_secret'));
