//! `/dlq`: the admin API of the dead-letter queue — list, show, replay and discard entries.
//!
//! Behind the admin scope (`admin_keys`), never the read or write keys. A replay goes through
//! the normal delivery path (`crate::replay`), so it keeps every guarantee of that path. Every
//! replay and discard is recorded in the admin audit log (`GET /admin/audit`) in the
//! transaction that makes it, and logged as an audit event. Not here:
//! what goes into the queue (the dead-letter worker) or when it leaves on its own (the delivery
//! worker resolves an entry once the CRM holds its version).

pub mod params;
pub mod schema;

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::Principal;
use super::problem::{ApiError, Problem};
use crate::replay;
use crate::store::audit::{self, Action};
use crate::store::dead_letters;
use params::{DiscardQuery, EntryPath, LIMIT_DEFAULT, ListQuery, ReplayQuery};
use schema::{
    BulkReplayedOut, DeadLetterOut, DeadLetterPage, Detail, DiscardParams, DiscardedOut,
    FilterParams, PageParams, ReplayedOut,
};

pub const TAG: &str = "dead-letters";

/// List dead letters.
///
/// Entries oldest first, a page at a time, optionally filtered. Items carry the last error; the
/// full history and a kept message's body are in `GET /dlq/{id}`.
#[utoipa::path(
    get, path = "/dlq", tag = TAG, operation_id = "listDeadLetters",
    params(FilterParams, PageParams),
    responses(
        (status = 200, description = "A page of entries", body = DeadLetterPage),
        (status = 400, description = "Invalid query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    ListQuery(q): ListQuery,
) -> Result<axum::Json<DeadLetterPage>, ApiError> {
    let limit = q.limit.unwrap_or(LIMIT_DEFAULT);
    let rows = dead_letters::list(&state.db, &q.filter, q.cursor, limit + 1).await?;
    let (rows, next_cursor) = params::page(rows, limit, |r| r.id);
    let items = rows
        .into_iter()
        .map(|r| DeadLetterOut::new(r, Detail::Summary))
        .collect();
    Ok(axum::Json(DeadLetterPage { items, next_cursor }))
}

/// Get a dead letter.
///
/// The entry with its whole error history and, for a kept message, its body.
#[utoipa::path(
    get, path = "/dlq/{id}", tag = TAG, operation_id = "getDeadLetter",
    params(("id" = uuid::Uuid, Path, description = "Entry id")),
    responses(
        (status = 200, description = "The entry", body = DeadLetterOut),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such entry", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    EntryPath(id): EntryPath,
) -> Result<axum::Json<DeadLetterOut>, ApiError> {
    match dead_letters::find(&state.db, id).await? {
        Some(e) => Ok(axum::Json(DeadLetterOut::new(e, Detail::Full))),
        None => Err(no_entry(id)),
    }
}

/// Replay a dead letter.
///
/// Sends the entry through the normal path again, whatever its status: a delivery becomes a
/// fresh delivery of the contact's current state, a kept message goes back where it came from.
/// The entry shows `replayed` until the outcome is known; a delivery entry disappears once the
/// CRM holds its version, and comes back if it fails again.
#[utoipa::path(
    post, path = "/dlq/{id}/replay", tag = TAG, operation_id = "replayDeadLetter",
    params(("id" = uuid::Uuid, Path, description = "Entry id")),
    responses(
        (status = 202, description = "Sent through again", body = ReplayedOut),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such entry", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The entry cannot be sent anywhere (a message kept without its origin, or no queue for it)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Message broker or database unavailable; nothing was replayed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn replay_one(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    EntryPath(id): EntryPath,
) -> Result<Response, ApiError> {
    let by = requested(&principal, None);
    match replay::replay_one(&state.db, &state.publisher, id, &by).await {
        Ok(true) => {
            audited(&by, Action::Replay, 1);
            Ok(accepted(1))
        }
        Ok(false) => Err(no_entry(id)),
        Err(e) => Err(e.into()),
    }
}

/// Replay matching dead letters.
///
/// Sends every matching entry that is `retrying` or `parked` through the normal path again
/// (entries already `replayed` are waiting for their outcome). Without filters: every entry.
#[utoipa::path(
    post, path = "/dlq/replay", tag = TAG, operation_id = "replayDeadLetters",
    params(FilterParams),
    responses(
        (status = 202, description = "Sent through again: `replayed` says how many, `skipped` how many matching entries cannot be sent anywhere and were left as they were", body = BulkReplayedOut),
        (status = 400, description = "Invalid query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Message broker or database unavailable; nothing was replayed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn replay_matching(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(raw): RawQuery,
    ReplayQuery(q): ReplayQuery,
) -> Result<Response, ApiError> {
    let by = requested(&principal, Some(raw.unwrap_or_default()));
    let done = replay::replay_matching(&state.db, &state.publisher, &q.filter, &by).await?;
    audited(&by, Action::ReplayMatching, done.sent);
    let body = BulkReplayedOut {
        replayed: done.sent,
        skipped: done.skipped,
    };
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

/// Discard a dead letter.
///
/// Deletes the entry without sending it anywhere; the contact keeps its current state in
/// SyncRoot and the CRM keeps what it has.
#[utoipa::path(
    delete, path = "/dlq/{id}", tag = TAG, operation_id = "discardDeadLetter",
    params(("id" = uuid::Uuid, Path, description = "Entry id")),
    responses(
        (status = 204, description = "Discarded"),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such entry", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn discard_one(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    EntryPath(id): EntryPath,
) -> Result<StatusCode, ApiError> {
    let by = requested(&principal, None);
    let mut tx = state.db.begin().await?;
    if !dead_letters::discard(&mut tx, id).await? {
        return Err(no_entry(id));
    }
    audit::record(&mut tx, &by, Action::Discard, &[id]).await?;
    tx.commit().await?;
    audited(&by, Action::Discard, 1);
    Ok(StatusCode::NO_CONTENT)
}

/// Discard matching dead letters.
///
/// Deletes every matching entry. At least one filter is required, or `all=true` to discard
/// every entry, so a bare request cannot empty the queue by accident.
#[utoipa::path(
    post, path = "/dlq/discard", tag = TAG, operation_id = "discardDeadLetters",
    params(FilterParams, DiscardParams),
    responses(
        (status = 200, description = "Discarded; `discarded` says how many", body = DiscardedOut),
        (status = 400, description = "Invalid query parameter, or neither a filter nor all=true", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn discard_matching(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(raw): RawQuery,
    DiscardQuery(q): DiscardQuery,
) -> Result<axum::Json<DiscardedOut>, ApiError> {
    if !q.is_filtered() && q.all != Some(true) {
        return Err(ApiError::BadParameters(vec![(
            "all".into(),
            "give at least one filter, or all=true to discard every entry".into(),
        )]));
    }
    let by = requested(&principal, Some(raw.unwrap_or_default()));
    let mut tx = state.db.begin().await?;
    let ids = dead_letters::discard_matching(&mut tx, &q.filter).await?;
    if !ids.is_empty() {
        audit::record(&mut tx, &by, Action::DiscardMatching, &ids).await?;
    }
    tx.commit().await?;
    let discarded = ids.len() as u64;
    audited(&by, Action::DiscardMatching, discarded);
    Ok(axum::Json(DiscardedOut { discarded }))
}

/// What the audit log records of who asked.
pub(super) fn requested(principal: &Principal, filter: Option<String>) -> audit::Requested {
    audit::Requested {
        key_id: principal.id.clone(),
        filter,
    }
}

/// The audit event of an admin action that went through (its row, if it changed anything, is
/// committed by now).
fn audited(by: &audit::Requested, action: Action, entries: u64) {
    tracing::info!(
        target: "audit", event = "admin_action", action = action.as_str(), key_id = %by.key_id,
        filter = by.filter.as_deref().unwrap_or(""), entries, "dead-letter queue changed by an admin"
    );
}

fn accepted(replayed: u64) -> Response {
    (StatusCode::ACCEPTED, axum::Json(ReplayedOut { replayed })).into_response()
}

fn no_entry(id: uuid::Uuid) -> ApiError {
    ApiError::NotFound(format!("no dead-letter entry has id {id}"))
}
