//! `GET /admin/audit`: the admin audit log — every replay and discard of dead letters, every
//! change to a push subscription, every job created or cancelled, who made it (a key id), when,
//! and which entries — newest first, a page at a time. Admin scope.
//!
//! Not here: writing the rows (in the transaction of each change, `store::audit`) or the log
//! events of failed authentications and the start-up configuration (target `audit`).

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::dlq::params::{AuditQuery, LIMIT_DEFAULT, page};
use super::dlq::schema::PageParams;
use super::problem::{ApiError, Problem};
use crate::store::audit::{self, Action, AuditRow};

pub const TAG: &str = "admin";

/// One admin action that changed the dead-letter queue, a subscription or the jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryOut {
    pub id: Uuid,
    /// When it was committed.
    pub at: DateTime<Utc>,
    /// The admin key that made it, by id: the first 16 hex digits of the key's SHA-256
    /// (`printf %s "$KEY" | sha256sum | cut -c1-16`), never the key.
    pub key_id: String,
    pub action: AuditAction,
    /// For `replay_matching` and `discard_matching`: the request's query string (its filter)
    /// as given; for a subscription's update or replay, what was asked (`enabled=false`,
    /// `since=…`); for `job_create` and `job_cancel`, the job's kind; null otherwise.
    pub filter: Option<String>,
    /// The entries replayed or discarded (a bulk replay commits 200 entries at a time, each
    /// chunk with its own row), the subscription acted on, or the job created or cancelled.
    pub entry_ids: Vec<Uuid>,
}

/// What was done.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// `POST /dlq/{id}/replay`.
    Replay,
    /// `POST /dlq/replay`.
    ReplayMatching,
    /// `DELETE /dlq/{id}`.
    Discard,
    /// `POST /dlq/discard`.
    DiscardMatching,
    /// `POST /admin/subscriptions`.
    SubscriptionCreate,
    /// `PATCH /admin/subscriptions/{id}`.
    SubscriptionUpdate,
    /// `DELETE /admin/subscriptions/{id}`.
    SubscriptionDelete,
    /// `POST /admin/subscriptions/{id}/replay`.
    SubscriptionReplay,
    /// `POST /admin/subscriptions/{id}/rotate-secret`.
    SubscriptionRotateSecret,
    /// `POST /admin/jobs`: `entry_ids` holds the job's id, `filter` its kind.
    JobCreate,
    /// `POST /admin/jobs/{id}/cancel`: `entry_ids` holds the job's id, `filter` its kind.
    JobCancel,
}

impl From<Action> for AuditAction {
    fn from(a: Action) -> Self {
        match a {
            Action::Replay => Self::Replay,
            Action::ReplayMatching => Self::ReplayMatching,
            Action::Discard => Self::Discard,
            Action::DiscardMatching => Self::DiscardMatching,
            Action::SubscriptionCreate => Self::SubscriptionCreate,
            Action::SubscriptionUpdate => Self::SubscriptionUpdate,
            Action::SubscriptionDelete => Self::SubscriptionDelete,
            Action::SubscriptionReplay => Self::SubscriptionReplay,
            Action::SubscriptionRotateSecret => Self::SubscriptionRotateSecret,
            Action::JobCreate => Self::JobCreate,
            Action::JobCancel => Self::JobCancel,
        }
    }
}

/// One page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntryOut>,
    /// Pass as `cursor` to get the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// List admin actions.
///
/// Every replay and discard of dead letters, newest first, a page at a time: who made it (the
/// admin key's id), when, and which entries.
#[utoipa::path(
    get, path = "/admin/audit", tag = TAG, operation_id = "listAdminActions",
    params(PageParams),
    responses(
        (status = 200, description = "A page of actions, newest first", body = AuditPage),
        (status = 400, description = "Invalid query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    AuditQuery(q): AuditQuery,
) -> Result<axum::Json<AuditPage>, ApiError> {
    let limit = q.limit.unwrap_or(LIMIT_DEFAULT);
    let rows = audit::list(&state.db, q.cursor, limit + 1).await?;
    let (rows, next_cursor) = page(rows, limit, |r| r.id);
    let items = rows.into_iter().map(AuditEntryOut::from).collect();
    Ok(axum::Json(AuditPage { items, next_cursor }))
}

impl From<AuditRow> for AuditEntryOut {
    fn from(r: AuditRow) -> Self {
        Self {
            id: r.id,
            at: r.at,
            key_id: r.key_id,
            action: r.action.into(),
            filter: r.filter,
            entry_ids: r.entry_ids,
        }
    }
}
