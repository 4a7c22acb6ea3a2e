//! `/admin/subscriptions`: push subscriptions to the change feed — create (the signing secret
//! is shown once), list, show (cursor, pending changes, failures), change (enable, disable,
//! URL), delete, rotate the secret, read the delivery log, and replay from a time.
//!
//! Behind the admin scope, like `/dlq`. Every change is recorded in the admin audit log
//! (`GET /admin/audit`) in the transaction that makes it. Not here: delivering (the
//! `subscriptions` role, `worker::subscriptions`).

pub mod schema;

use axum::Extension;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::AppState;
use super::audit::TAG;
use super::auth::Principal;
use super::dlq::params::{AuditQuery, LIMIT_DEFAULT, page};
use super::dlq::schema::PageParams;
use super::dlq::{audited, requested};
use super::extract::{JsonBody, OptionalJsonBody};
use super::problem::{ApiError, Problem};
use crate::push::signature::generate_secret;
use crate::store::audit::{self, Action};
use crate::store::subscriptions::{self as store, NewSubscription, Start, SubscriptionRow};
use schema::{
    CreatedOut, DeliveryOut, DeliveryPage, ReplayIn, RotateIn, SecretOut, SubscriptionIn,
    SubscriptionList, SubscriptionOut, SubscriptionPatch,
};

/// The `{id}` path segment of a subscription.
pub struct SubscriptionPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for SubscriptionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        super::extract::uuid_path(parts, state, "subscription", "subscription")
            .await
            .map(Self)
    }
}

/// Records `action` on subscription `id` in the audit log, commits the change with it, and
/// logs the audit event.
async fn commit_audited(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    by: &audit::Requested,
    action: Action,
    id: Uuid,
) -> Result<(), ApiError> {
    audit::record(&mut tx, by, action, &[id]).await?;
    tx.commit().await?;
    audited(by, action, 1);
    Ok(())
}

fn no_subscription(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("no subscription has id {id}"))
}

async fn out(state: &AppState, row: SubscriptionRow) -> Result<SubscriptionOut, ApiError> {
    let pending = store::pending(&state.db, row.cursor).await?;
    Ok(SubscriptionOut::new(row, pending))
}

/// Create a subscription.
///
/// Every change of the feed (`GET /changes`) from `since` on is POSTed to `url` as JSON, signed
/// by the Standard Webhooks scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature`)
/// with the secret returned here, once.
#[utoipa::path(
    post, path = "/admin/subscriptions", tag = TAG, operation_id = "createSubscription",
    request_body(content = SubscriptionIn, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; `secret` is shown this once", body = CreatedOut),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid member (each named by its pointer)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(body): JsonBody<false>,
) -> Result<Response, ApiError> {
    let new =
        schema::new_subscription(&body, state.allow_insecure_urls).map_err(ApiError::Invalid)?;
    let cursor = store::position_at(&state.db, new.start).await?;
    let id = Uuid::now_v7();
    let secret = generate_secret();
    let by = requested(&principal, Some(format!("url={}", new.url)));
    let mut tx = state.db.begin().await?;
    let row = store::create(
        &mut tx,
        &NewSubscription {
            id,
            url: &new.url,
            description: new.description.as_deref(),
            secret: &secret,
            cursor,
        },
    )
    .await?;
    commit_audited(tx, &by, Action::SubscriptionCreate, id).await?;
    let subscription = out(&state, row).await?;
    let body = CreatedOut {
        subscription,
        secret,
    };
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// List subscriptions.
#[utoipa::path(
    get, path = "/admin/subscriptions", tag = TAG, operation_id = "listSubscriptions",
    responses(
        (status = 200, description = "Every subscription, oldest first", body = SubscriptionList),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn list(State(state): State<AppState>) -> Result<axum::Json<SubscriptionList>, ApiError> {
    let mut items = Vec::new();
    for row in store::list(&state.db).await? {
        items.push(out(&state, row).await?);
    }
    Ok(axum::Json(SubscriptionList { items }))
}

/// Get a subscription.
///
/// Its status, cursor, pending changes and its last success and failure.
#[utoipa::path(
    get, path = "/admin/subscriptions/{id}", tag = TAG, operation_id = "getSubscription",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The subscription", body = SubscriptionOut),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    SubscriptionPath(id): SubscriptionPath,
) -> Result<axum::Json<SubscriptionOut>, ApiError> {
    let row = store::find(&state.db, id)
        .await?
        .ok_or_else(|| no_subscription(id))?;
    Ok(axum::Json(out(&state, row).await?))
}

/// Change a subscription.
///
/// Enable (delivery resumes from the cursor; the failures are cleared), disable, or change the
/// URL or description.
#[utoipa::path(
    patch, path = "/admin/subscriptions/{id}", tag = TAG, operation_id = "updateSubscription",
    params(("id" = Uuid, Path, description = "Subscription id")),
    request_body(content = SubscriptionPatch, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "Changed", body = SubscriptionOut),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/merge-patch+json or application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid member (each named by its pointer)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    SubscriptionPath(id): SubscriptionPath,
    JsonBody(body): JsonBody<true>,
) -> Result<axum::Json<SubscriptionOut>, ApiError> {
    let patch = schema::patch(&body, state.allow_insecure_urls).map_err(ApiError::Invalid)?;
    let asked = body
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        })
        .unwrap_or_default();
    let by = requested(&principal, Some(asked));
    let mut tx = state.db.begin().await?;
    let row = store::update(&mut tx, id, &patch)
        .await?
        .ok_or_else(|| no_subscription(id))?;
    commit_audited(tx, &by, Action::SubscriptionUpdate, id).await?;
    Ok(axum::Json(out(&state, row).await?))
}

/// Delete a subscription.
///
/// Delivery stops; its delivery log goes with it.
#[utoipa::path(
    delete, path = "/admin/subscriptions/{id}", tag = TAG, operation_id = "deleteSubscription",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    SubscriptionPath(id): SubscriptionPath,
) -> Result<StatusCode, ApiError> {
    let by = requested(&principal, None);
    let mut tx = state.db.begin().await?;
    if !store::delete(&mut tx, id).await? {
        return Err(no_subscription(id));
    }
    commit_audited(tx, &by, Action::SubscriptionDelete, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate a subscription's secret.
///
/// A new secret signs every delivery from now on. The secret it replaces keeps signing them
/// too for `overlap_secs` (default a day; 0: not at all): each delivery's `webhook-signature`
/// carries both (`v1,<new> v1,<previous>`), and a receiver holding either verifies it. A
/// rotation within the overlap replaces that previous secret with the one it replaces. The
/// body is optional.
#[utoipa::path(
    post, path = "/admin/subscriptions/{id}/rotate-secret", tag = TAG, operation_id = "rotateSubscriptionSecret",
    params(("id" = Uuid, Path, description = "Subscription id")),
    request_body(content = Option<RotateIn>, content_type = "application/json"),
    responses(
        (status = 200, description = "The new secret, shown this once, and until when the replaced one also signs", body = SecretOut),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "A body that is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid member (each named by its pointer)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    SubscriptionPath(id): SubscriptionPath,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<axum::Json<SecretOut>, ApiError> {
    let overlap = schema::rotation_overlap(body.as_ref()).map_err(ApiError::Invalid)?;
    let by = requested(
        &principal,
        Some(format!("overlap_secs={}", overlap.as_secs())),
    );
    let secret = generate_secret();
    let mut tx = state.db.begin().await?;
    let row = store::rotate_secret(&mut tx, id, &secret, overlap)
        .await?
        .ok_or_else(|| no_subscription(id))?;
    commit_audited(tx, &by, Action::SubscriptionRotateSecret, id).await?;
    Ok(axum::Json(SecretOut {
        secret,
        previous_secret_expires_at: schema::overlap_end(row.previous_secret_until),
    }))
}

/// Replay a subscription from a time.
///
/// Moves the cursor back to just before the first change accepted at or after `since`; every
/// change from there is delivered again, with the `webhook-id` it had.
#[utoipa::path(
    post, path = "/admin/subscriptions/{id}/replay", tag = TAG, operation_id = "replaySubscription",
    params(("id" = Uuid, Path, description = "Subscription id")),
    request_body(content = ReplayIn, content_type = "application/json"),
    responses(
        (status = 200, description = "The cursor moved back; delivery from there follows", body = SubscriptionOut),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid member (each named by its pointer)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn replay(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    SubscriptionPath(id): SubscriptionPath,
    JsonBody(body): JsonBody<false>,
) -> Result<axum::Json<SubscriptionOut>, ApiError> {
    let since = schema::replay_since(&body).map_err(ApiError::Invalid)?;
    let cursor = store::position_at(&state.db, Start::At(since)).await?;
    let by = requested(&principal, Some(format!("since={}", since.to_rfc3339())));
    let mut tx = state.db.begin().await?;
    let row = store::rewind(&mut tx, id, cursor)
        .await?
        .ok_or_else(|| no_subscription(id))?;
    commit_audited(tx, &by, Action::SubscriptionReplay, id).await?;
    Ok(axum::Json(out(&state, row).await?))
}

/// List a subscription's delivery attempts.
///
/// Every attempt, newest first, a page at a time: which change (`event_id` is its
/// `webhook-id`), which attempt, and the status code or the error.
#[utoipa::path(
    get, path = "/admin/subscriptions/{id}/deliveries", tag = TAG, operation_id = "listSubscriptionDeliveries",
    params(("id" = Uuid, Path, description = "Subscription id"), PageParams),
    responses(
        (status = 200, description = "A page of attempts, newest first", body = DeliveryPage),
        (status = 400, description = "Invalid query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_key" = []))
)]
pub async fn deliveries(
    State(state): State<AppState>,
    SubscriptionPath(id): SubscriptionPath,
    AuditQuery(q): AuditQuery,
) -> Result<axum::Json<DeliveryPage>, ApiError> {
    if store::find(&state.db, id).await?.is_none() {
        return Err(no_subscription(id));
    }
    let limit = q.limit.unwrap_or(LIMIT_DEFAULT);
    let rows = store::deliveries(&state.db, id, q.cursor, limit + 1).await?;
    let (rows, next_cursor) = page(rows, limit, |r| r.id);
    let items = rows.into_iter().map(DeliveryOut::from).collect();
    Ok(axum::Json(DeliveryPage { items, next_cursor }))
}
