//! `/admin/jobs`: ask for a long-running job (the drift check), follow its progress, cancel it.
//! Admin scope. Creating and cancelling are recorded in the admin audit log in the transaction
//! that makes them.
//!
//! The API only queues and reads jobs; the webhooks role (or `all`) runs them
//! (`worker::jobs`).

use axum::Extension;
use axum::extract::{FromRequestParts, State};
use axum::http::{StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::Principal;
use super::dlq::params::{AuditQuery, LIMIT_DEFAULT, page};
use super::dlq::schema::PageParams;
use super::extract::JsonBody;
use super::problem::{ApiError, Problem};
use crate::domain::fields::FieldError;
use crate::domain::job::{JobKind, JobParams, JobStatus};
use crate::store::audit::{self, Action};
use crate::store::jobs::{self, Cancelled, JobRow};

pub const TAG: &str = "admin";

/// A job request: its kind, and that kind's parameters (all optional).
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum JobIn {
    Drift(DriftJobIn),
    Backfill(BackfillJobIn),
}

/// A drift check: compares every linked record with what SyncRoot holds.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct DriftJobIn {
    #[schema(inline)]
    pub kind: DriftKind,
    #[schema(required = false, nullable = false)]
    pub params: Option<DriftParamsIn>,
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum DriftKind {
    Drift,
}

/// A backfill: matches, links and creates the people the CRMs already hold.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct BackfillJobIn {
    #[schema(inline)]
    pub kind: BackfillKind,
    #[schema(required = false, nullable = false)]
    pub params: Option<BackfillParamsIn>,
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum BackfillKind {
    Backfill,
}

/// A drift check's parameters.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct DriftParamsIn {
    /// Default false (only report): resolve each differing record by the conflict policy, as a
    /// change made in its CRM, and handle a record missing in its CRM as a deletion made there.
    #[schema(required = false, nullable = false)]
    pub repair: Option<bool>,
    /// Default false: check every linked record instead of only those the CRM modified since
    /// the last completed check started (the first check is always full).
    #[schema(required = false, nullable = false)]
    pub full: Option<bool>,
}

/// A backfill's parameters.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct BackfillParamsIn {
    /// Default false: count what it would do and write nothing.
    #[schema(required = false, nullable = false)]
    pub dry_run: Option<bool>,
    /// Default every enabled CRM: the CRMs whose records are read and matched (each must be
    /// enabled; one named twice counts once). The people the backfill creates still go to every CRM.
    #[schema(required = false, nullable = false, min_items = 1)]
    pub crms: Option<Vec<super::dlq::schema::CrmName>>,
}

/// What a job does.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKindOut {
    /// Compare the records linked in each enabled CRM with what SyncRoot holds; optionally
    /// repair.
    Drift,
    /// Match every live record of each enabled CRM with SyncRoot's contacts by e-mail: link
    /// it, merge differing values by the conflict policy, or create the contact.
    Backfill,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatusOut {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// A job's progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressOut {
    /// Items handled so far (a drift check: records compared or found missing).
    pub done: u64,
    /// Items in all, where known up front (a full drift check); null otherwise.
    pub total: Option<u64>,
    /// The kind's counters. `drift`: `checked`, `same`, `differing`, `missing` (linked record
    /// absent in the CRM), `pending` (a delivery to it is under way, so it was not compared),
    /// `errors`, and with `repair` one `repair_<outcome>` per outcome of the inbound path:
    /// `repair_updated` (the CRM's values won and are on their way to the other systems),
    /// `repair_kept` (SyncRoot's won and the CRM is being corrected), `repair_detached` or
    /// `repair_deleted` (a missing record, by the deletion policy), `repair_unchanged`,
    /// `repair_echo` (nothing to take: the CRM holds what SyncRoot last wrote there) and
    /// `repair_skipped`. `backfill`: `read`, `matched` (a contact has the record's address),
    /// `linked` (a record newly linked), `created`, `updated` (the contact took values from
    /// the record), `conflicts` (records whose values differed, resolved by the policy),
    /// `duplicates` (records sharing an address inside their CRM: skipped), `skipped` (no
    /// valid address, or the contact is deleted or linked to another record), `errors`.
    pub counters: std::collections::BTreeMap<String, u64>,
    /// Items per second since the job started.
    pub rate_per_sec: f64,
    /// Seconds left at that rate, while running and the total is known.
    pub eta_secs: Option<u64>,
}

/// An admin job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobOut {
    pub id: Uuid,
    pub kind: JobKindOut,
    /// The parameters it runs with (defaults filled in).
    #[schema(value_type = Object)]
    pub params: Value,
    pub status: JobStatusOut,
    pub progress: ProgressOut,
    /// When finished successfully: the kind's report. `drift`: the counters, and `sample`,
    /// the first differing or missing records (contact id, CRM, record id, the names of the
    /// fields that differ — never their values). `backfill`: `dry_run`, the counters, and
    /// `duplicates`: the first groups of records sharing an address (CRM, record ids).
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The admin key that asked for it, by id; null for a scheduled job.
    pub requested_by: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// A cancel was asked while it ran; it stops after the page in hand.
    pub cancel_requested: bool,
}

/// One page of jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    pub items: Vec<JobOut>,
    /// Pass as `cursor` to get the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Start a job.
///
/// Queues a job of the kind; a runner (the webhooks role) picks it up. One unfinished job per
/// kind: while one is queued or running, another is refused with 409.
#[utoipa::path(
    post, path = "/admin/jobs", tag = TAG, operation_id = "createJob",
    request_body(content = JobIn, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued; `Location` is the job", body = JobOut,
         headers(("Location" = String, description = "The job's URL"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A job of this kind is queued or running", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown kind or invalid parameters; each named by its JSON Pointer", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(body): JsonBody<false>,
) -> Result<Response, ApiError> {
    let params = JobParams::from_request(&body).map_err(ApiError::Invalid)?;
    if let JobParams::Backfill(p) = &params {
        let off: Vec<FieldError> = (p.crms.iter().flatten().enumerate())
            .filter(|(_, c)| !state.crms.contains(c))
            .map(|(i, c)| {
                FieldError::new(
                    format!("/params/crms/{i}"),
                    format!("{c} is not enabled here"),
                )
            })
            .collect();
        if !off.is_empty() {
            return Err(ApiError::Invalid(off));
        }
    }
    let kind = params.kind();
    let by = super::dlq::requested(&principal, Some(kind.as_str().to_owned()));
    let mut tx = state.db.begin().await?;
    let job = match jobs::create(&mut tx, &params, Some(&by.key_id)).await? {
        Ok(job) => job,
        Err(active) => {
            return Err(ApiError::JobConflict(format!(
                "a {} job is already queued or running: {active}",
                kind.as_str()
            )));
        }
    };
    audit::record(&mut tx, &by, Action::JobCreate, &[job.id]).await?;
    tx.commit().await?;
    audited(&by, Action::JobCreate, job.id);
    let location = format!("/admin/jobs/{}", job.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        axum::Json(JobOut::from(job)),
    )
        .into_response())
}

/// List jobs.
///
/// Newest first, a page at a time.
#[utoipa::path(
    get, path = "/admin/jobs", tag = TAG, operation_id = "listJobs",
    params(PageParams),
    responses(
        (status = 200, description = "A page of jobs, newest first", body = JobPage),
        (status = 400, description = "Invalid query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    AuditQuery(q): AuditQuery,
) -> Result<axum::Json<JobPage>, ApiError> {
    let limit = q.limit.unwrap_or(LIMIT_DEFAULT);
    let rows = jobs::list(&state.db, q.cursor, limit + 1).await?;
    let (rows, next_cursor) = page(rows, limit, |r| r.id);
    let items = rows.into_iter().map(JobOut::from).collect();
    Ok(axum::Json(JobPage { items, next_cursor }))
}

/// Get a job.
///
/// Its status, progress (counters, rate, and the time left where the total is known) and,
/// once finished, its result or error.
#[utoipa::path(
    get, path = "/admin/jobs/{id}", tag = TAG, operation_id = "getJob",
    params(("id" = uuid::Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = JobOut),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    JobPath(id): JobPath,
) -> Result<axum::Json<JobOut>, ApiError> {
    match jobs::find(&state.db, id).await? {
        Some(job) => Ok(axum::Json(job.into())),
        None => Err(no_job(id)),
    }
}

/// Cancel a job.
///
/// A queued job is cancelled at once; a running one stops after the page in hand (its status
/// turns `cancelled` then, with what it did so far in its progress). A finished job cannot be
/// cancelled (409).
#[utoipa::path(
    post, path = "/admin/jobs/{id}/cancel", tag = TAG, operation_id = "cancelJob",
    params(("id" = uuid::Uuid, Path, description = "Job id")),
    responses(
        (status = 202, description = "Cancelled, or asked to stop", body = JobOut),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has finished", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JobPath(id): JobPath,
) -> Result<Response, ApiError> {
    let mut tx = state.db.begin().await?;
    let job = match jobs::cancel(&mut tx, id).await? {
        None => return Err(no_job(id)),
        Some(Cancelled::Finished(job)) => {
            return Err(ApiError::JobConflict(format!(
                "job {id} has finished ({}); there is nothing to cancel",
                job.status.as_str()
            )));
        }
        Some(Cancelled::Now(job) | Cancelled::Requested(job)) => job,
    };
    let by = super::dlq::requested(&principal, Some(job.kind.as_str().to_owned()));
    audit::record(&mut tx, &by, Action::JobCancel, &[id]).await?;
    tx.commit().await?;
    audited(&by, Action::JobCancel, id);
    Ok((StatusCode::ACCEPTED, axum::Json(JobOut::from(job))).into_response())
}

/// The audit event of a job action (its row is committed by now).
fn audited(by: &audit::Requested, action: Action, job: Uuid) {
    tracing::info!(
        target: "audit", event = "admin_action", action = action.as_str(), key_id = %by.key_id,
        kind = by.filter.as_deref().unwrap_or(""), %job, "job changed by an admin"
    );
}

fn no_job(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("no job has id {id}"))
}

/// The `{id}` path segment. Anything that is not a UUID cannot name a job: 404.
pub struct JobPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for JobPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        super::extract::uuid_path(parts, state, "job", "job")
            .await
            .map(Self)
    }
}

impl From<JobRow> for JobOut {
    fn from(j: JobRow) -> Self {
        let now = Utc::now();
        let (rate_per_sec, eta) = j
            .started_at
            .map(|s| j.progress.rate_and_eta(s, j.finished_at.unwrap_or(now)))
            .unwrap_or((0.0, None));
        Self {
            id: j.id,
            kind: match j.kind {
                JobKind::Drift => JobKindOut::Drift,
                JobKind::Backfill => JobKindOut::Backfill,
            },
            params: j.params,
            status: match j.status {
                JobStatus::Queued => JobStatusOut::Queued,
                JobStatus::Running => JobStatusOut::Running,
                JobStatus::Succeeded => JobStatusOut::Succeeded,
                JobStatus::Failed => JobStatusOut::Failed,
                JobStatus::Cancelled => JobStatusOut::Cancelled,
            },
            progress: ProgressOut {
                done: j.progress.done,
                total: j.progress.total,
                counters: j.progress.counters,
                rate_per_sec: (rate_per_sec * 100.0).round() / 100.0,
                eta_secs: eta.filter(|_| j.status == JobStatus::Running),
            },
            result: j.result,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            requested_by: j.requested_by,
            error: j.error,
            cancel_requested: j.cancel_requested,
        }
    }
}
