//! `GET /contacts/{id}/history`: every version of a contact, where it came from (the API or a
//! CRM), the fields it changed and the conflicts resolved on the way.

use axum::extract::State;
use axum::http::request::Parts;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::contacts::TAG;
use super::extract::ContactPath;
use super::problem::{ApiError, Problem};
use crate::domain::merge::{Conflict, FieldChange};
use crate::store::{heads, history};

/// One field a version changed.
#[derive(Serialize, ToSchema)]
pub struct FieldChangeOut {
    /// The field's name, as in the contact (`job_title`).
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// A field two sides had changed, and how the conflict policy decided.
#[derive(Serialize, ToSchema)]
pub struct ConflictOut {
    pub field: String,
    /// Whose value the contact kept: `api`, `hubspot` or `salesforce`.
    pub kept: String,
    pub kept_value: Option<String>,
    /// Whose value lost.
    pub lost: String,
    pub lost_value: Option<String>,
    /// `older` (the other change is newer), `tie_break` (same time; the configured order
    /// decided), `owner` (the field's owner always wins), `invalid` (the CRM's value breaks
    /// the field's rules) or `taken` (the CRM's e-mail address belongs to another contact).
    pub reason: String,
}

/// One entry of the history: an accepted version, or a CRM change that was not taken.
#[derive(Serialize, ToSchema)]
pub struct VersionOut {
    pub version: i64,
    /// Where the change came from: `api`, `hubspot` or `salesforce`.
    pub origin: String,
    /// `create`, `update`, `delete`; `kept`: a change made in a CRM that lost every field to
    /// the conflict policy (the version stays; the CRM is corrected); `detach`: the contact's
    /// record was deleted in a CRM and SyncRoot stopped writing it there (the contact stays);
    /// `merge`: the contact absorbed another, or was merged into another, because their
    /// records were merged in a CRM; `erase`: a privacy deletion (the history keeps no values).
    pub operation: String,
    pub accepted_at: chrono::DateTime<chrono::Utc>,
    pub changes: Vec<FieldChangeOut>,
    pub conflicts: Vec<ConflictOut>,
    /// What happened, in words, for `detach`, `merge` and `erase`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// How a change made in a CRM reached SyncRoot: `webhook` (the CRM's notification) or
    /// `poller` (found by polling the CRM for what webhooks did not bring). Absent for the API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// A page of a contact's history, oldest first.
#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    pub versions: Vec<VersionOut>,
    /// Pass as `after` to read the next page (opaque); absent on the last page.
    pub next_after: Option<i64>,
}

/// The query of the history route.
pub struct HistoryQuery {
    after: i64,
    limit: i64,
}

const LIMIT_MAX: i64 = 200;
const LIMIT_DEFAULT: i64 = 50;

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for HistoryQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let mut q = HistoryQuery {
            after: 0,
            limit: LIMIT_DEFAULT,
        };
        let mut errors = Vec::new();
        let raw = parts.uri.query().unwrap_or("");
        for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            match (name.as_ref(), value.parse::<i64>()) {
                ("after", Ok(n)) if n >= 0 => q.after = n,
                ("after", _) => errors.push((
                    "after".into(),
                    "must be a version number (0 or more)".into(),
                )),
                ("limit", Ok(n)) if (1..=LIMIT_MAX).contains(&n) => q.limit = n,
                ("limit", _) => errors.push((
                    "limit".into(),
                    format!("must be a whole number from 1 to {LIMIT_MAX}"),
                )),
                _ => {}
            }
        }
        if errors.is_empty() {
            Ok(q)
        } else {
            Err(ApiError::BadParameters(errors))
        }
    }
}

/// Get a contact's history.
///
/// Every accepted version, oldest first: its origin (the API, or a change made in a CRM), the
/// fields it changed with old and new values, and any conflict the policy resolved. A deleted
/// contact's history is not served (404), like the contact.
#[utoipa::path(
    get, path = "/contacts/{id}/history", tag = TAG, operation_id = "getContactHistory",
    params(
        ("id" = uuid::Uuid, Path, description = "Contact id"),
        ("after" = Option<i64>, Query, minimum = 0, description = "`next_after` of the previous page"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Page size (default 50)"),
    ),
    responses(
        (status = 200, description = "The contact's versions", body = HistoryPage),
        (status = 400, description = "Invalid query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such contact, or it was deleted", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn history(
    State(state): State<AppState>,
    ContactPath(id): ContactPath,
    q: HistoryQuery,
) -> Result<axum::Json<HistoryPage>, ApiError> {
    // Like the contact itself, its history is gone with it (a deleted contact is 404).
    match heads::find(&state.db, id).await? {
        None => return Err(ApiError::NotFound(format!("no contact has id {id}"))),
        Some(row) if row.deleted_at.is_some() => {
            return Err(ApiError::NotFound(format!("contact {id} was deleted")));
        }
        Some(_) => {}
    }
    let mut rows = history::list(&state.db, id, q.after, q.limit + 1).await?;
    let more = rows.len() as i64 > q.limit;
    rows.truncate(q.limit as usize);
    let next_after = more.then(|| rows.last().map(|r| r.entry)).flatten();
    let versions = rows
        .into_iter()
        .map(|r| VersionOut {
            version: r.version,
            origin: r.origin,
            operation: r.operation,
            accepted_at: r.accepted_at,
            changes: r.changes.into_iter().map(change_out).collect(),
            conflicts: r.conflicts.into_iter().map(conflict_out).collect(),
            note: r.note,
            via: r.via,
        })
        .collect();
    Ok(axum::Json(HistoryPage {
        versions,
        next_after,
    }))
}

pub(super) fn change_out(c: FieldChange) -> FieldChangeOut {
    FieldChangeOut {
        field: c.field,
        old: c.old,
        new: c.new,
    }
}

fn conflict_out(c: Conflict) -> ConflictOut {
    let reason = serde_json::to_value(c.reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    ConflictOut {
        field: c.field,
        kept: c.kept.to_string(),
        kept_value: c.kept_value,
        lost: c.lost.to_string(),
        lost_value: c.lost_value,
        reason,
    }
}
