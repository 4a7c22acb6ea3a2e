//! `GET /changes`: the change feed. Every entry of every contact's history (creates, updates,
//! deletes, and what CRMs changed), in an order a client can follow with an opaque cursor and
//! resume from after a stop, without missing an entry or seeing one twice.
//!
//! Not here: pushing changes to subscribers; this is the pull side.

use axum::extract::State;
use axum::http::request::Parts;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::contacts::TAG;
use super::history::{FieldChangeOut, change_out};
use super::problem::{ApiError, Problem};
use crate::store::history::{self, FeedPosition};

/// One entry of the feed.
#[derive(Serialize, ToSchema)]
pub struct ChangeOut {
    pub contact_id: uuid::Uuid,
    /// The contact's version after this entry.
    pub version: i64,
    /// Where the change came from: `api`, `hubspot` or `salesforce`.
    pub origin: String,
    /// As in the contact's history: `create`, `update`, `delete`, `kept`, `detach`, `merge`
    /// or `erase`.
    pub operation: String,
    /// The fields it changed (values are gone after a privacy deletion).
    pub changes: Vec<FieldChangeOut>,
    pub accepted_at: chrono::DateTime<chrono::Utc>,
    /// How a CRM's change reached SyncRoot: `webhook` or `poller`. Absent for the API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// A page of the feed.
#[derive(Serialize, ToSchema)]
pub struct ChangePage {
    pub changes: Vec<ChangeOut>,
    /// Pass as `after` for what follows (pass it back as given). Always present: on an empty
    /// page it is the position asked for, so a client polls with it until new entries come.
    pub next_after: String,
}

/// The query of the feed.
pub struct ChangesQuery {
    after: FeedPosition,
    limit: i64,
}

const LIMIT_MAX: i64 = 1000;
const LIMIT_DEFAULT: i64 = 100;
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ChangesQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let mut q = ChangesQuery {
            after: FeedPosition::default(),
            limit: LIMIT_DEFAULT,
        };
        let mut errors = Vec::new();
        let raw = parts.uri.query().unwrap_or("");
        for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            match name.as_ref() {
                "after" => match FeedPosition::parse_cursor(&value) {
                    Some(p) => q.after = p,
                    None => errors.push((
                        "after".into(),
                        "must be a next_after value from an earlier page".into(),
                    )),
                },
                "limit" => match value.parse::<i64>() {
                    Ok(n) if (1..=LIMIT_MAX).contains(&n) => q.limit = n,
                    _ => errors.push((
                        "limit".into(),
                        format!("must be a whole number from 1 to {LIMIT_MAX}"),
                    )),
                },
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

/// Follow every change.
///
/// The append-only log of every contact's versions and history entries, oldest first: what
/// the API accepted and what was changed in a CRM. Start without `after`; then pass each
/// page's `next_after` to read on, or to poll for what comes next. An entry appears once its
/// transaction and every older one have finished, so a cursor never skips one that commits
/// late; one contact's entries come in version order.
#[utoipa::path(
    get, path = "/changes", tag = TAG, operation_id = "listChanges",
    params(
        ("after" = Option<String>, Query, pattern = r"^[0-9]{1,19}-[0-9]{1,18}$", description = "`next_after` of the previous page (pass it back as given); absent: from the start"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100)"),
    ),
    responses(
        (status = 200, description = "The next entries of the feed", body = ChangePage),
        (status = 400, description = "Invalid query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn changes(
    State(state): State<AppState>,
    q: ChangesQuery,
) -> Result<axum::Json<ChangePage>, ApiError> {
    let rows = history::feed(&state.db, q.after, q.limit).await?;
    let last = rows.last().map_or(q.after, |r| r.position);
    let changes = rows
        .into_iter()
        .map(|f| ChangeOut {
            contact_id: f.contact_id,
            version: f.row.version,
            origin: f.row.origin,
            operation: f.row.operation,
            changes: f.row.changes.into_iter().map(change_out).collect(),
            accepted_at: f.row.accepted_at,
            via: f.row.via,
        })
        .collect();
    Ok(axum::Json(ChangePage {
        changes,
        next_after: last.cursor(),
    }))
}
