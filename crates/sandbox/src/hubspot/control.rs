//! The control API under `/__sandbox/`: inspect and reset state, simulate edits made by a
//! person in the CRM UI, inject faults, change quotas, the batch cap and the webhook target,
//! and read the usage counters and the write log. It needs the control token
//! (`X-Sandbox-Token`, see [`crate::kit::control`]), not the HubSpot token; it is never
//! rate-limited and is not counted.
//!
//! The paths and bodies match the Salesforce sandbox's control API.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;

use super::counters::Counters;
use super::errors::ApiError;
use super::extract::HubJson;
use super::faults::FaultsPatch;
use super::ratelimit::Limits;
use super::state::{AppState, lock};
use super::webhooks::ChangeSource;
use super::wire::{PropertiesIn, Selection, contact_out, stringify};
use crate::kit::batches::BatchCap;
use crate::kit::control::{self, ControlToken};
use crate::kit::seed;
use crate::kit::writes::SinceQuery;

pub fn routes(token: ControlToken) -> Router<AppState> {
    Router::new()
        .route("/__sandbox/state", get(dump_state))
        .route("/__sandbox/reset", post(reset))
        .route(
            "/__sandbox/seed",
            post(seed_contacts).layer(DefaultBodyLimit::max(seed::MAX_BODY_BYTES)),
        )
        .route("/__sandbox/ui/contacts", post(ui_create))
        .route("/__sandbox/ui/contacts/merge", post(ui_merge))
        .route("/__sandbox/ui/contacts/{id}/gdpr-delete", post(ui_erase))
        .route(
            "/__sandbox/ui/contacts/{id}",
            patch(ui_update).delete(ui_archive),
        )
        .route("/__sandbox/faults", get(get_faults).put(put_faults))
        .route("/__sandbox/limits", get(get_limits).put(put_limits))
        .route("/__sandbox/webhook", get(get_webhook).put(put_webhook))
        .route("/__sandbox/counters", get(get_counters))
        .route("/__sandbox/writes", get(get_writes))
        .route("/__sandbox/counters/reset", post(reset_counters))
        .route_layer(from_fn_with_state(token, control::require_token))
}

/// Every contact, archived ones included, with all its properties.
async fn dump_state(State(state): State<AppState>) -> Response {
    let store = lock(&state.store);
    let contacts: Vec<_> = store
        .all()
        .map(|c| contact_out(c, &Selection::All, &state.schema))
        .collect();
    Json(json!({ "contacts": contacts })).into_response()
}

async fn reset(State(state): State<AppState>) -> Response {
    state.reset();
    control::done()
}

/// `POST /__sandbox/seed`: a JSON array of contacts, each its properties (`{"email": …}`) or
/// a create body (`{"properties": {…}}`), stored at once with realistic creation and
/// modification dates: no webhooks, not counted, not in the write log. All or nothing: a
/// refused record (an invalid property, a duplicate e-mail) refuses the call with a `400`
/// naming it. Answers `201 {"created", "ids"}`.
async fn seed_contacts(State(state): State<AppState>, body: Bytes) -> Response {
    let records = match seed::parse(&body) {
        Ok(r) => r,
        Err(refused) => return refused.into_response(),
    };
    let (now, count) = (Utc::now(), records.len());
    let mut problems = seed::Problems::default();
    let mut ids = Vec::with_capacity(count);
    let mut store = lock(&state.store);
    store.begin();
    for (i, record) in records.into_iter().enumerate() {
        let props = match record.get("properties") {
            Some(serde_json::Value::Object(p)) => p.clone().into_iter().collect(),
            _ => record.into_iter().collect(),
        };
        let (created, modified) = seed::times(i, count, now);
        match store.seed(&stringify(&props), created, modified) {
            Ok(id) => ids.push(id.to_string()),
            Err(e) => problems.push(i, format!("was refused: {e}")),
        }
    }
    if problems.is_empty() {
        store.commit();
    } else {
        store.rollback();
    }
    drop(store);
    match problems.into_result(ids) {
        Ok(ids) => seed::created(ids),
        Err(refused) => refused.into_response(),
    }
}

async fn ui_create(
    State(state): State<AppState>,
    HubJson(body): HubJson<PropertiesIn>,
) -> Result<Response, ApiError> {
    let written = lock(&state.store).create(&stringify(&body.properties), Utc::now())?;
    state.committed(1, &written.changes, ChangeSource::CrmUi);
    let out = contact_out(&written.contact, &Selection::All, &state.schema);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `?at=<RFC 3339>`: when the person made the edit (the record's `lastmodifieddate`), for an
/// edit made earlier than it reaches anyone (an offline client syncing late, a bulk import
/// carrying its own dates); default now.
#[derive(Deserialize)]
struct EditedAt {
    at: Option<chrono::DateTime<Utc>>,
}

async fn ui_update(
    State(state): State<AppState>,
    Path(id): Path<u64>,
    Query(when): Query<EditedAt>,
    HubJson(body): HubJson<PropertiesIn>,
) -> Result<Response, ApiError> {
    let at = when.at.unwrap_or_else(Utc::now);
    let written = lock(&state.store).update(id, &stringify(&body.properties), at)?;
    state.committed(1, &written.changes, ChangeSource::CrmUi);
    Ok(Json(contact_out(
        &written.contact,
        &Selection::All,
        &state.schema,
    ))
    .into_response())
}

/// Unlike the API's archive, an unknown id is a 404 here, so tests notice a wrong id.
async fn ui_archive(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    let change = lock(&state.store)
        .archive(id, Utc::now())
        .ok_or_else(ApiError::not_found)?;
    state.committed(1, &[change], ChangeSource::CrmUi);
    Ok(StatusCode::NO_CONTENT)
}

/// `{"primaryObjectId": …, "objectIdToMerge": …}`, the body of HubSpot's merge endpoint.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MergeIn {
    #[serde(deserialize_with = "id_from_string_or_number")]
    primary_object_id: u64,
    #[serde(deserialize_with = "id_from_string_or_number")]
    object_id_to_merge: u64,
}

/// HubSpot's API takes ids as strings; numbers are accepted too.
fn id_from_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s.parse().map_err(serde::de::Error::custom),
        serde_json::Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| serde::de::Error::custom("not an id")),
        _ => Err(serde::de::Error::custom("an id is a string or a number")),
    }
}

/// A person merges two contacts in HubSpot; answers the merged record.
async fn ui_merge(
    State(state): State<AppState>,
    HubJson(body): HubJson<MergeIn>,
) -> Result<Response, ApiError> {
    let written =
        lock(&state.store).merge(body.primary_object_id, body.object_id_to_merge, Utc::now())?;
    state.committed(1, &written.changes, ChangeSource::CrmUi);
    Ok(Json(contact_out(
        &written.contact,
        &Selection::All,
        &state.schema,
    ))
    .into_response())
}

/// A person erases a contact for privacy (GDPR delete): gone for good, not archived.
async fn ui_erase(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    let change = lock(&state.store)
        .erase(id, Utc::now())
        .ok_or_else(ApiError::not_found)?;
    state.committed(1, &[change], ChangeSource::CrmUi);
    Ok(StatusCode::NO_CONTENT)
}

async fn get_faults(State(state): State<AppState>) -> Response {
    Json(lock(&state.faults).clone()).into_response()
}

async fn put_faults(State(state): State<AppState>, Json(patch): Json<FaultsPatch>) -> Response {
    let mut faults = lock(&state.faults);
    if let Err(problems) = faults.apply(patch) {
        return control::problems(problems);
    }
    let snapshot = faults.clone();
    drop(faults);
    state.webhooks.set_paused(snapshot.common.webhooks_paused);
    Json(snapshot).into_response()
}

/// Partial update of the quotas and the batch cap; usage so far is kept.
#[derive(Debug, Deserialize)]
struct LimitsPatch {
    burst_limit: Option<u32>,
    daily_limit: Option<u32>,
    search_limit_per_second: Option<u32>,
    /// Inputs per batch call, 1 to HubSpot's 100 (see [`crate::kit::batches`]).
    batch_cap: Option<usize>,
}

/// The quotas and the batch cap, in one object.
#[derive(Serialize)]
struct LimitsOut {
    #[serde(flatten)]
    quotas: Limits,
    #[serde(flatten)]
    batches: BatchCap,
}

async fn get_limits(State(state): State<AppState>) -> Response {
    let quotas = lock(&state.limiter).limits;
    let batches = *lock(&state.batch_cap);
    Json(LimitsOut { quotas, batches }).into_response()
}

async fn put_limits(State(state): State<AppState>, Json(patch): Json<LimitsPatch>) -> Response {
    {
        let mut cap = lock(&state.batch_cap);
        if let Some(problem) = cap.problem(patch.batch_cap) {
            return control::problem(problem);
        }
        cap.set(patch.batch_cap);
    }
    {
        let mut limiter = lock(&state.limiter);
        let limits = &mut limiter.limits;
        limits.burst_limit = patch.burst_limit.unwrap_or(limits.burst_limit);
        limits.daily_limit = patch.daily_limit.unwrap_or(limits.daily_limit);
        limits.search_limit_per_second = patch
            .search_limit_per_second
            .unwrap_or(limits.search_limit_per_second);
    }
    get_limits(State(state)).await
}

/// `url`: a string sets the target, `null` or `""` stops deliveries, absent keeps it.
#[derive(Debug, Deserialize)]
struct WebhookPatch {
    #[serde(default, deserialize_with = "present")]
    url: Option<Option<String>>,
    secret: Option<String>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

async fn get_webhook(State(state): State<AppState>) -> Response {
    let target = lock(&state.webhooks.target).clone();
    control::webhook(target.url.as_deref(), &target.client_secret)
}

async fn put_webhook(State(state): State<AppState>, Json(patch): Json<WebhookPatch>) -> Response {
    let url = patch.url.map(|u| u.filter(|s| !s.is_empty()));
    if let Some(Some(raw)) = &url
        && let Err(err) = url::Url::parse(raw)
    {
        return control::problems(vec![format!("url is not a valid URL: {err}")]);
    }
    {
        let mut target = lock(&state.webhooks.target);
        if let Some(url) = url {
            target.url = url;
        }
        if let Some(secret) = patch.secret {
            target.client_secret = secret;
        }
    }
    get_webhook(State(state)).await
}

async fn get_writes(State(state): State<AppState>, Query(q): Query<SinceQuery>) -> Response {
    control::writes(&lock(&state.writes), q.since)
}

async fn get_counters(State(state): State<AppState>) -> Response {
    Json(lock(&state.counters).clone()).into_response()
}

async fn reset_counters(State(state): State<AppState>) -> StatusCode {
    *lock(&state.counters) = Counters::default();
    StatusCode::NO_CONTENT
}
