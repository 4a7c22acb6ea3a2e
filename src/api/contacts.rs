//! `/contacts` handlers: validate, hand the write to `accept`, answer 202; read the persisted
//! contacts back.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::accept::{self, Modification, Reply};
use super::auth::Principal;
use super::extract::{ContactPath, JsonBody, LIST_LIMIT_DEFAULT, ListQuery, idempotency_key};
use super::problem::{ApiError, Problem};
use super::schema::{
    AcceptedOut, ContactIn, ContactOut, ContactPage, ContactPatch, SyncState, SyncStatusOut,
};
use crate::domain::fields::validate_members;
use crate::domain::{ContactFields, ContactId};
use crate::store::heads;
use crate::store::links::{self, LinkRow};

pub const TAG: &str = "contacts";

/// Create a contact.
///
/// Validates the body and queues the create; answers once the message broker has durably
/// accepted it. The contact is readable at `Location` at once; its `sync` section shows when
/// each CRM has it.
#[utoipa::path(
    post, path = "/contacts", tag = TAG, operation_id = "createContact",
    params(("Idempotency-Key" = Option<String>, Header, max_length = 255, pattern = r"^[!-~]+$",
            description = "Makes retries safe: a retry with the same key and body gets the first answer; the same key with another body gets 409. Remembered for 24 hours (api_idempotency_ttl_hours).")),
    request_body(content = ContactIn, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted; the create is queued", body = AcceptedOut,
         headers(("Location" = String, description = "URL of the new contact"))),
        (status = 400, description = "Malformed JSON or invalid header", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another live contact has this e-mail address, or the Idempotency-Key was used with another body", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Message broker or database unavailable; nothing was accepted", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<false>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let doc = full_document(&body)?;
    let reply = accept::create(&state, doc, key.map(|k| (principal, k))).await?;
    Ok(accepted(reply))
}

/// Get a contact.
///
/// The contact as accepted (a write answered with 202 is readable at once), with its
/// delivery state per CRM: `synced` once the CRM holds this version.
#[utoipa::path(
    get, path = "/contacts/{id}", tag = TAG, operation_id = "getContact",
    params(("id" = uuid::Uuid, Path, description = "Contact id")),
    responses(
        (status = 200, description = "The contact", body = ContactOut),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such contact, or it was deleted", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    ContactPath(id): ContactPath,
) -> Result<axum::Json<ContactOut>, ApiError> {
    match heads::find(&state.db, id).await? {
        Some(row) if row.deleted_at.is_none() => {
            let links = links::for_contacts(&state.db, &[id.0]).await?;
            let mut out = ContactOut::from(row);
            out.sync = sync_status(&state.crms, out.version, links.into_iter().map(|(_, l)| l));
            Ok(axum::Json(out))
        }
        Some(_) => Err(ApiError::NotFound(format!("contact {id} was deleted"))),
        None => Err(ApiError::NotFound(format!("no contact has id {id}"))),
    }
}

/// List contacts.
///
/// Live contacts in creation order, a page at a time; optionally only those with one e-mail
/// address (matched case-insensitively).
#[utoipa::path(
    get, path = "/contacts", tag = TAG, operation_id = "listContacts",
    params(
        ("email" = Option<String>, Query, max_length = 254, pattern = r"^[^\u0000-\u001F\u007F]*$", description = "Only contacts with this e-mail address"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Page size (default 50)"),
        ("cursor" = Option<uuid::Uuid>, Query, description = "`next_cursor` of the previous page (opaque)"),
    ),
    responses(
        (status = 200, description = "A page of contacts", body = ContactPage),
        (status = 400, description = "Invalid query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    q: ListQuery,
) -> Result<axum::Json<ContactPage>, ApiError> {
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let limit = q.limit.unwrap_or(LIST_LIMIT_DEFAULT);
    let email = q.email.map(|e| e.to_ascii_lowercase());
    // One extra row tells whether another page exists.
    let mut rows = heads::list(&state.db, email.as_deref(), after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| encode_cursor(r.id))
    } else {
        None
    };
    let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.id.0).collect();
    let mut links = links::for_contacts(&state.db, &ids).await?;
    let items = rows
        .into_iter()
        .map(|row| {
            let mut out = ContactOut::from(row);
            let mine = links
                .extract_if(.., |(cid, _)| *cid == out.id)
                .map(|(_, l)| l);
            out.sync = sync_status(&state.crms, out.version, mine);
            out
        })
        .collect();
    Ok(axum::Json(ContactPage { items, next_cursor }))
}

/// Replace a contact.
///
/// Full replace: fields absent from the body become null.
#[utoipa::path(
    put, path = "/contacts/{id}", tag = TAG, operation_id = "replaceContact",
    params(("id" = uuid::Uuid, Path, description = "Contact id")),
    request_body(content = ContactIn, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted; the update is queued", body = AcceptedOut,
         headers(("Location" = String, description = "URL of the contact"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such contact, or it was deleted", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another live contact has this e-mail address", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Message broker or database unavailable; nothing was accepted", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn replace(
    State(state): State<AppState>,
    ContactPath(id): ContactPath,
    JsonBody(body): JsonBody<false>,
) -> Result<Response, ApiError> {
    let doc = full_document(&body)?;
    Ok(accepted(
        accept::modify(&state, id, Modification::Replace(doc)).await?,
    ))
}

/// Update a contact.
///
/// JSON merge patch (RFC 7396): listed fields change, `null` clears an optional field.
#[utoipa::path(
    patch, path = "/contacts/{id}", tag = TAG, operation_id = "updateContact",
    params(("id" = uuid::Uuid, Path, description = "Contact id")),
    request_body(content(
        (ContactPatch = "application/merge-patch+json"),
        (ContactPatch = "application/json"),
    )),
    responses(
        (status = 202, description = "Accepted; the update is queued", body = AcceptedOut,
         headers(("Location" = String, description = "URL of the contact"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such contact, or it was deleted", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another live contact has this e-mail address", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not a JSON type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Message broker or database unavailable; nothing was accepted", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn patch(
    State(state): State<AppState>,
    ContactPath(id): ContactPath,
    JsonBody(body): JsonBody<true>,
) -> Result<Response, ApiError> {
    let values = validate_members(&body).map_err(ApiError::Invalid)?;
    Ok(accepted(
        accept::modify(&state, id, Modification::Patch(values)).await?,
    ))
}

/// Delete a contact.
///
/// Queues the delete. SyncRoot keeps a tombstone, so a late update cannot bring the contact back.
/// Deleting a deleted contact succeeds again without queueing anything (safe to retry).
#[utoipa::path(
    delete, path = "/contacts/{id}", tag = TAG, operation_id = "deleteContact",
    params(("id" = uuid::Uuid, Path, description = "Contact id")),
    responses(
        (status = 202, description = "Accepted; the delete is queued", body = AcceptedOut,
         headers(("Location" = String, description = "URL of the contact"))),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such contact", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Message broker or database unavailable; nothing was accepted", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    ContactPath(id): ContactPath,
) -> Result<Response, ApiError> {
    Ok(accepted(
        accept::modify(&state, id, Modification::Delete).await?,
    ))
}

fn full_document(body: &serde_json::Value) -> Result<ContactFields, ApiError> {
    let values = validate_members(body).map_err(ApiError::Invalid)?;
    ContactFields::from_values(values).map_err(|_| {
        ApiError::Invalid(vec![crate::domain::fields::FieldError::new(
            "/email",
            "is required",
        )])
    })
}

fn accepted(reply: Reply) -> Response {
    let id = ContactId(reply.accepted.id);
    let mut resp = (StatusCode::ACCEPTED, axum::Json(reply.accepted)).into_response();
    if let Ok(v) = HeaderValue::from_str(&accept::location(id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if reply.replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

/// Each enabled CRM's delivery state for a contact at `version`.
fn sync_status(
    crms: &[crate::domain::Crm],
    version: i64,
    links: impl Iterator<Item = LinkRow>,
) -> std::collections::BTreeMap<String, SyncStatusOut> {
    let links: Vec<LinkRow> = links.collect();
    crms.iter()
        .map(|crm| {
            let link = links.iter().find(|l| l.crm == crm.as_str());
            let status = match link {
                None => SyncStatusOut {
                    state: SyncState::Pending,
                    remote_id: None,
                    synced_version: None,
                    last_attempt_at: None,
                    last_error: None,
                },
                Some(l) => SyncStatusOut {
                    state: link_state(l, version),
                    remote_id: l.remote_id.clone(),
                    synced_version: l.synced_version,
                    last_attempt_at: Some(l.last_attempt_at),
                    last_error: l.detached.clone().or_else(|| l.last_error.clone()),
                },
            };
            (crm.as_str().to_owned(), status)
        })
        .collect()
}

/// Synced when the CRM holds the current version; retrying or failed when the last attempt at
/// the current version ended so; pending otherwise (a newer version is on its way).
fn link_state(l: &LinkRow, version: i64) -> SyncState {
    if l.detached.is_some() {
        return SyncState::Detached;
    }
    if l.synced_version.is_some_and(|v| v >= version) {
        return SyncState::Synced;
    }
    match l.state.as_str() {
        "retrying" if l.attempt_version >= version => SyncState::Retrying,
        "failed" if l.attempt_version >= version => SyncState::Failed,
        _ => SyncState::Pending,
    }
}

fn encode_cursor(id: ContactId) -> String {
    id.to_string()
}

fn decode_cursor(s: &str) -> Result<ContactId, ApiError> {
    ContactId::parse(s).ok_or_else(|| {
        ApiError::BadParameters(vec![(
            "cursor".into(),
            "is not a cursor this API issued; pass next_cursor from the previous page".into(),
        )])
    })
}
