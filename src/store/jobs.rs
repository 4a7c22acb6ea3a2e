//! `admin_jobs`: jobs an admin or the schedule asked for, their progress, checkpoint and
//! result, and the lease of the runner working on one.
//!
//! A runner holds a job by its lease (`lease_owner`, `lease_until`): every write a runner makes
//! names itself as owner, so a runner that lost its lease (it stalled past `lease_until` and
//! another took the job over) changes nothing any more.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use uuid::Uuid;

use crate::domain::job::{JobKind, JobParams, JobStatus, Progress};

/// One job.
#[derive(Clone, Debug)]
pub struct JobRow {
    pub id: Uuid,
    pub kind: JobKind,
    pub params: Value,
    pub status: JobStatus,
    pub progress: Progress,
    pub checkpoint: Option<Value>,
    pub result: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub requested_by: Option<String>,
    pub error: Option<String>,
    pub cancel_requested: bool,
}

const COLUMNS: &str = "id, kind, params, status, progress, checkpoint, result, created_at, started_at, finished_at, requested_by, error, cancel_requested";

fn row(r: &PgRow) -> Result<JobRow, sqlx::Error> {
    let kind: String = r.try_get("kind")?;
    let status: String = r.try_get("status")?;
    let decode = |what: String| sqlx::Error::Decode(what.into());
    Ok(JobRow {
        id: r.try_get("id")?,
        kind: JobKind::parse(&kind).ok_or_else(|| decode(format!("unknown job kind {kind}")))?,
        params: r.try_get("params")?,
        status: JobStatus::parse(&status)
            .ok_or_else(|| decode(format!("unknown job status {status}")))?,
        progress: serde_json::from_value(r.try_get("progress")?)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        checkpoint: r.try_get("checkpoint")?,
        result: r.try_get("result")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        requested_by: r.try_get("requested_by")?,
        error: r.try_get("error")?,
        cancel_requested: r.try_get("cancel_requested")?,
    })
}

/// Queues a job; `Err` with the unfinished job of the same kind if there is one (one at a
/// time per kind).
pub async fn create(
    conn: &mut PgConnection,
    params: &JobParams,
    requested_by: Option<&str>,
) -> Result<Result<JobRow, Uuid>, sqlx::Error> {
    let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO admin_jobs (id, kind, params, requested_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(params.kind().as_str())
    .bind(params.to_json())
    .bind(requested_by)
    .try_map(|r: PgRow| row(&r))
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(job) = inserted {
        return Ok(Ok(job));
    }
    let active: Uuid = sqlx::query_scalar(
        "SELECT id FROM admin_jobs WHERE kind = $1 AND status IN ('queued', 'running')",
    )
    .bind(params.kind().as_str())
    .fetch_one(conn)
    .await?;
    Ok(Err(active))
}

pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM admin_jobs WHERE id = $1"
    )))
    .bind(id)
    .try_map(|r: PgRow| row(&r))
    .fetch_optional(pool)
    .await
}

/// A page of jobs, newest first, older than `before`.
pub async fn list(
    pool: &PgPool,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM admin_jobs WHERE ($1::uuid IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
    )))
    .bind(before)
    .bind(limit)
    .try_map(|r: PgRow| row(&r))
    .fetch_all(pool)
    .await
}

/// What a cancel request did.
#[derive(Debug)]
pub enum Cancelled {
    /// A queued job: cancelled now.
    Now(JobRow),
    /// A running job: its runner stops after the page in hand.
    Requested(JobRow),
    /// Already finished: nothing changed.
    Finished(JobRow),
}

/// Cancels a job (inside the caller's transaction); `None` if there is no such job.
pub async fn cancel(conn: &mut PgConnection, id: Uuid) -> Result<Option<Cancelled>, sqlx::Error> {
    let Some(status): Option<String> =
        sqlx::query_scalar("SELECT status FROM admin_jobs WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
    else {
        return Ok(None);
    };
    let status = JobStatus::parse(&status);
    let set = match status {
        Some(JobStatus::Queued) => "status = 'cancelled', finished_at = now()",
        Some(JobStatus::Running) => "cancel_requested = true",
        // Finished: read back unchanged.
        _ => "cancel_requested = cancel_requested",
    };
    let job = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE admin_jobs SET {set} WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .try_map(|r: PgRow| row(&r))
    .fetch_one(conn)
    .await?;
    Ok(Some(match status {
        Some(JobStatus::Queued) => Cancelled::Now(job),
        Some(JobStatus::Running) => Cancelled::Requested(job),
        _ => Cancelled::Finished(job),
    }))
}

fn interval_secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Claims the oldest queued job, or a running one whose runner's lease ran out, for `owner`
/// until `lease` from now.
pub async fn claim(
    pool: &PgPool,
    owner: Uuid,
    lease: Duration,
) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE admin_jobs SET status = 'running', lease_owner = $1,
                lease_until = now() + make_interval(secs => $2), started_at = COALESCE(started_at, now())
         WHERE id = (SELECT id FROM admin_jobs
                     WHERE status = 'queued' OR (status = 'running' AND lease_until < now())
                     ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1)
         RETURNING {COLUMNS}"
    )))
    .bind(owner)
    .bind(interval_secs(lease))
    .try_map(|r: PgRow| row(&r))
    .fetch_optional(pool)
    .await
}

/// Extends `owner`'s lease; `None` when it no longer holds the job, otherwise whether a cancel
/// was asked.
pub async fn heartbeat(
    pool: &PgPool,
    id: Uuid,
    owner: Uuid,
    lease: Duration,
) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE admin_jobs SET lease_until = now() + make_interval(secs => $3)
         WHERE id = $1 AND lease_owner = $2 AND status = 'running' RETURNING cancel_requested",
    )
    .bind(id)
    .bind(owner)
    .bind(interval_secs(lease))
    .fetch_optional(pool)
    .await
}

/// Records a page's progress and checkpoint in one statement (one transaction), extending the
/// lease. `None` when `owner` no longer holds the job; otherwise whether a cancel was asked.
pub async fn save_page(
    pool: &PgPool,
    id: Uuid,
    owner: Uuid,
    lease: Duration,
    progress: &Progress,
    checkpoint: &Value,
) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE admin_jobs SET progress = $3, checkpoint = $4, lease_until = now() + make_interval(secs => $5)
         WHERE id = $1 AND lease_owner = $2 AND status = 'running' RETURNING cancel_requested",
    )
    .bind(id)
    .bind(owner)
    .bind(sqlx::types::Json(progress))
    .bind(checkpoint)
    .bind(interval_secs(lease))
    .fetch_optional(pool)
    .await
}

/// How a job ended.
pub struct Outcome<'a> {
    pub status: JobStatus,
    pub progress: &'a Progress,
    pub result: Option<&'a Value>,
    pub error: Option<&'a str>,
}

/// Finishes `owner`'s job; false when it no longer holds it.
pub async fn finish(
    pool: &PgPool,
    id: Uuid,
    owner: Uuid,
    end: &Outcome<'_>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE admin_jobs SET status = $3, progress = $4, result = $5, error = $6,
                finished_at = now(), lease_owner = NULL, lease_until = NULL
         WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(owner)
    .bind(end.status.as_str())
    .bind(sqlx::types::Json(end.progress))
    .bind(end.result)
    .bind(end.error)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// When the last job of `kind` that succeeded started.
pub async fn last_succeeded_start(
    pool: &PgPool,
    kind: JobKind,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT max(started_at) FROM admin_jobs WHERE kind = $1 AND status = 'succeeded'",
    )
    .bind(kind.as_str())
    .fetch_one(pool)
    .await
}

/// Queues a scheduled job unless one of its kind was created within `every`; the new job's id.
/// Replicas running the same schedule serialise on an advisory lock, and the one-unfinished-
/// job-per-kind index refuses a second unfinished one in any case.
pub async fn enqueue_scheduled(
    pool: &PgPool,
    params: &JobParams,
    every: Duration,
) -> Result<Option<Uuid>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(schedule_lock_key(params.kind()))
        .execute(&mut *tx)
        .await?;
    let recent: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM admin_jobs
                        WHERE kind = $1 AND created_at > now() - make_interval(secs => $2))",
    )
    .bind(params.kind().as_str())
    .bind(interval_secs(every))
    .fetch_one(&mut *tx)
    .await?;
    if recent {
        return Ok(None);
    }
    let created = create(&mut tx, params, None).await?;
    tx.commit().await?;
    Ok(created.ok().map(|j| j.id))
}

/// The advisory lock a kind's schedule takes.
fn schedule_lock_key(kind: JobKind) -> i64 {
    // Any constant distinct from the other advisory keys (contacts' random bits, the pollers').
    0x6a6f_6273_0000_0000 + kind as i64
}
