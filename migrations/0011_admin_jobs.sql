-- Admin jobs: long-running work an admin (or the schedule) asks for, such as the drift check.
-- A runner claims a queued job, or a running one whose runner's lease ran out, with
-- FOR UPDATE SKIP LOCKED; it extends its lease while it works and writes progress and
-- checkpoint after each page in one transaction, so another runner resumes a job whose runner
-- died from its last checkpoint.
CREATE TABLE admin_jobs (
    -- UUIDv7: time-ordered, so the newest first is ORDER BY id DESC.
    id               UUID        PRIMARY KEY,
    kind             TEXT        NOT NULL,
    params           JSONB       NOT NULL DEFAULT '{}',
    status           TEXT        NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    -- The kind's counters (`done`, `total` where known, and its own).
    progress         JSONB       NOT NULL DEFAULT '{}',
    -- Where a resumed run continues; the kind's own shape.
    checkpoint       JSONB,
    result           JSONB,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    -- The admin key's id (first 16 hex digits of its SHA-256); NULL for a scheduled job.
    requested_by     TEXT,
    error            TEXT,
    -- Set by POST /admin/jobs/{id}/cancel on a running job; the runner stops between pages.
    cancel_requested BOOLEAN     NOT NULL DEFAULT false,
    -- The runner holding the job, and until when its claim holds without a heartbeat.
    lease_owner      UUID,
    lease_until      TIMESTAMPTZ
);
-- What runners look for.
CREATE INDEX admin_jobs_unfinished ON admin_jobs (created_at) WHERE status IN ('queued', 'running');
-- One unfinished job per kind: two drift checks at once would read every record twice, and
-- the schedule of several replicas cannot enqueue a second.
CREATE UNIQUE INDEX admin_jobs_one_unfinished_per_kind ON admin_jobs (kind)
    WHERE status IN ('queued', 'running');

-- Creating and cancelling jobs are admin actions too.
ALTER TABLE admin_audit DROP CONSTRAINT admin_audit_action_check;
ALTER TABLE admin_audit ADD CONSTRAINT admin_audit_action_check
    CHECK (action IN ('replay', 'replay_matching', 'discard', 'discard_matching',
                      'subscription_create', 'subscription_update', 'subscription_delete',
                      'subscription_replay', 'subscription_rotate_secret',
                      'job_create', 'job_cancel'));
