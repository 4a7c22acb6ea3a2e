//! Batch contact endpoints: read, create, update, upsert and archive, at most 100 inputs.
//!
//! Writes are all-or-nothing unless every input carries an `objectWriteTraceId`: then each
//! input succeeds or fails on its own and failures come back in a 207 with the trace id in
//! `context`. Without trace ids the first bad input fails the whole call with its own status
//! (e.g. the 409 naming the first duplicate) and nothing is written.
//! <https://developers.hubspot.com/docs/api-reference/legacy/crm/using-object-apis>

use std::collections::{BTreeMap, HashSet};

use axum::Extension;
use axum::Json;
use axum::extract::{MatchedPath, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::counters::RecordsCarried;
use super::errors::ApiError;
use super::extract::HubJson;
use super::gate::route_key;
use super::schema::Schema;
use super::state::{AppState, lock};
use super::store::{Change, Store};
use super::webhooks::ChangeSource;
use super::wire::{
    BatchIn, BatchItemError, BatchOut, ContactOut, IdInput, ReadQuery, Selection, WriteInput,
    contact_out, stringify,
};

/// "Batch operations are limited to 100 records at a time."
pub const BATCH_MAX_INPUTS: usize = 100;

type Handled = Result<Response, ApiError>;

/// Counts the call in the batch tally (refused or not) and refuses it when it carries more
/// inputs than the cap (HubSpot's 100, or a lower one a test set), before anything is looked at.
fn admit(state: &AppState, matched: &MatchedPath, inputs: usize) -> Result<(), ApiError> {
    let route = route_key(&Method::POST, Some(matched.as_str()));
    let cap = lock(&state.batch_cap).batch_cap;
    if lock(&state.counters).batches.admit(&route, inputs, cap) {
        return Ok(());
    }
    Err(oversized(inputs, cap))
}

/// HubSpot's answer to a batch over the cap: a 400 `VALIDATION_ERROR`.
fn oversized(inputs: usize, cap: usize) -> ApiError {
    ApiError::validation(format!(
        "Batch input size {inputs} exceeds the limit of {cap} inputs per request"
    ))
}

/// Ids that repeat within one batch, as HubSpot refuses them for update and upsert.
fn check_distinct<'a>(ids: impl Iterator<Item = &'a str>) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    let dupes: Vec<_> = ids.filter(|id| !seen.insert(id.to_lowercase())).collect();
    if dupes.is_empty() {
        return Ok(());
    }
    Err(ApiError::validation(format!(
        "Duplicate IDs found in batch input: [{}]. IDs must be unique",
        dupes.join(", ")
    )))
}

/// Outcome of applying a batch of writes.
struct Applied {
    results: Vec<ContactOut>,
    errors: Vec<BatchItemError>,
    changes: Vec<Change>,
}

/// One input's write: the record to return and the changes it made.
type Step = Result<(ContactOut, Vec<Change>), ApiError>;

/// Applies `op` to every input under one store lock; see the module docs for the modes.
fn apply<F>(
    state: &AppState,
    inputs: &[WriteInput],
    multi_status: bool,
    mut op: F,
) -> Result<Applied, ApiError>
where
    F: FnMut(&mut Store, &WriteInput, DateTime<Utc>) -> Step,
{
    let mut store = lock(&state.store);
    let mut applied = Applied {
        results: Vec::new(),
        errors: Vec::new(),
        changes: Vec::new(),
    };
    store.begin();
    for input in inputs {
        match op(&mut store, input, Utc::now()) {
            Ok((mut out, changes)) => {
                out.object_write_trace_id = input.object_write_trace_id.clone();
                applied.results.push(out);
                applied.changes.extend(changes);
            }
            Err(err) if multi_status => applied.errors.push(item_error(err, input)),
            Err(err) => {
                store.rollback();
                return Err(err);
            }
        }
    }
    store.commit();
    Ok(applied)
}

fn item_error(err: ApiError, input: &WriteInput) -> BatchItemError {
    let mut context = err.body.context;
    if let Some(trace) = &input.object_write_trace_id {
        context.insert("objectWriteTraceId".into(), vec![trace.clone()]);
    }
    BatchItemError {
        status: "error",
        category: err.body.category.unwrap_or("VALIDATION_ERROR"),
        message: err.body.message,
        context,
        links: BTreeMap::new(),
        errors: err
            .body
            .errors
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect(),
    }
}

/// Multi-status needs a trace id on every input.
fn wants_multi_status(inputs: &[WriteInput]) -> bool {
    !inputs.is_empty() && inputs.iter().all(|i| i.object_write_trace_id.is_some())
}

fn respond(
    state: &AppState,
    applied: Applied,
    ok: StatusCode,
    started: DateTime<Utc>,
    carried: usize,
) -> Response {
    state.committed(
        applied.results.len(),
        &applied.changes,
        ChangeSource::Integration,
    );
    let status = if applied.errors.is_empty() {
        ok
    } else {
        StatusCode::MULTI_STATUS
    };
    let body = BatchOut::complete(applied.results, applied.errors, started);
    (status, Extension(RecordsCarried(carried)), Json(body)).into_response()
}

pub async fn create(
    State(state): State<AppState>,
    matched: MatchedPath,
    HubJson(body): HubJson<BatchIn<WriteInput>>,
) -> Handled {
    let started = Utc::now();
    admit(&state, &matched, body.inputs.len())?;
    let multi = wants_multi_status(&body.inputs);
    let schema = state.schema.clone();
    let applied = apply(&state, &body.inputs, multi, |store, input, now| {
        let w = store.create(&stringify(&input.properties), now)?;
        Ok((
            contact_out(&w.contact, &Selection::Written(w.touched), &schema),
            w.changes,
        ))
    })?;
    Ok(respond(
        &state,
        applied,
        StatusCode::CREATED,
        started,
        body.inputs.len(),
    ))
}

pub async fn update(
    State(state): State<AppState>,
    matched: MatchedPath,
    HubJson(body): HubJson<BatchIn<WriteInput>>,
) -> Handled {
    let started = Utc::now();
    admit(&state, &matched, body.inputs.len())?;
    check_distinct(body.inputs.iter().filter_map(|i| i.id.as_deref()))?;
    let multi = wants_multi_status(&body.inputs);
    let schema = state.schema.clone();
    let fallback = body.id_property.clone();
    let applied = apply(&state, &body.inputs, multi, |store, input, now| {
        let key = input
            .id
            .as_deref()
            .ok_or_else(|| ApiError::validation("Each input needs an id"))?;
        let id_property = input.id_property.as_deref().or(fallback.as_deref());
        let id = store
            .find(id_property, key, false)?
            .ok_or_else(ApiError::not_found)?
            .id;
        let w = store.update(id, &stringify(&input.properties), now)?;
        Ok((
            contact_out(&w.contact, &Selection::Written(w.touched), &schema),
            w.changes,
        ))
    })?;
    Ok(respond(
        &state,
        applied,
        StatusCode::OK,
        started,
        body.inputs.len(),
    ))
}

/// Creates or updates by a unique property. "Partial upserts are not supported when using
/// email as the idProperty", so an email-keyed batch is always all-or-nothing.
pub async fn upsert(
    State(state): State<AppState>,
    matched: MatchedPath,
    HubJson(body): HubJson<BatchIn<WriteInput>>,
) -> Handled {
    let started = Utc::now();
    admit(&state, &matched, body.inputs.len())?;
    check_distinct(body.inputs.iter().filter_map(|i| i.id.as_deref()))?;
    let fallback = body.id_property.clone();
    let id_property_of = |i: &WriteInput| i.id_property.clone().or_else(|| fallback.clone());
    let by_email = body
        .inputs
        .iter()
        .any(|i| id_property_of(i).as_deref() == Some("email"));
    let multi = wants_multi_status(&body.inputs) && !by_email;
    let schema = state.schema.clone();
    let applied = apply(&state, &body.inputs, multi, |store, input, now| {
        let prop = id_property_of(input)
            .filter(|p| schema.is_id_property(p) && p != "hs_object_id")
            .ok_or_else(|| {
                ApiError::validation("Upsert inputs need an idProperty naming a unique property")
            })?;
        upsert_one(store, &schema, input, prop, now)
    })?;
    Ok(respond(
        &state,
        applied,
        StatusCode::OK,
        started,
        body.inputs.len(),
    ))
}

/// Updates the live contact whose `prop` equals the input's id, or creates one with it.
fn upsert_one(
    store: &mut Store,
    schema: &Schema,
    input: &WriteInput,
    prop: String,
    now: DateTime<Utc>,
) -> Step {
    let key = input
        .id
        .as_deref()
        .ok_or_else(|| ApiError::validation("Each input needs an id"))?;
    let mut props = stringify(&input.properties);
    let existing = store.find(Some(&prop), key, false)?.map(|c| c.id);
    let (w, new) = match existing {
        Some(id) => (store.update(id, &props, now)?, false),
        None => {
            props.entry(prop).or_insert_with(|| key.to_owned());
            (store.create(&props, now)?, true)
        }
    };
    let mut out = contact_out(&w.contact, &Selection::Written(w.touched), schema);
    out.new = Some(new);
    Ok((out, w.changes))
}

/// Missing ids are reported together in one 207 `OBJECT_NOT_FOUND` error.
pub async fn read(
    State(state): State<AppState>,
    matched: MatchedPath,
    RawQuery(raw): RawQuery,
    HubJson(body): HubJson<BatchIn<IdInput>>,
) -> Handled {
    let started = Utc::now();
    admit(&state, &matched, body.inputs.len())?;
    let archived = ReadQuery::parse(raw.as_deref()).archived;
    let selection = Selection::from_request(body.properties);
    let store = lock(&state.store);
    let (mut results, mut missing) = (Vec::new(), Vec::new());
    for input in &body.inputs {
        match store.find(body.id_property.as_deref(), &input.id, archived)? {
            Some(c) => results.push(contact_out(c, &selection, &state.schema)),
            None => missing.push(input.id.clone()),
        }
    }
    drop(store);
    let errors: Vec<_> = (!missing.is_empty())
        .then(|| BatchItemError {
            status: "error",
            category: "OBJECT_NOT_FOUND",
            message: "Could not get some CONTACT objects, they may be deleted or not exist. \
                      Check that ids are valid."
                .into(),
            context: BTreeMap::from([("ids".to_owned(), missing)]),
            links: BTreeMap::new(),
            errors: Vec::new(),
        })
        .into_iter()
        .collect();
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    let body_out = BatchOut::complete(results, errors, started);
    Ok((
        status,
        Extension(RecordsCarried(body.inputs.len())),
        Json(body_out),
    )
        .into_response())
}

/// 204 without a body; unknown ids are ignored.
pub async fn archive(
    State(state): State<AppState>,
    matched: MatchedPath,
    HubJson(body): HubJson<BatchIn<IdInput>>,
) -> Handled {
    admit(&state, &matched, body.inputs.len())?;
    let now = Utc::now();
    let changes: Vec<_> = {
        let mut store = lock(&state.store);
        let ids = body.inputs.iter().filter_map(|i| i.id.parse::<u64>().ok());
        ids.filter_map(|id| store.archive(id, now)).collect()
    };
    state.committed(changes.len(), &changes, ChangeSource::Integration);
    Ok((
        StatusCode::NO_CONTENT,
        Extension(RecordsCarried(body.inputs.len())),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_batches_are_validation_errors() {
        let err = oversized(101, BATCH_MAX_INPUTS);
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.body.category, Some("VALIDATION_ERROR"));
        assert!(
            err.body.message.contains("limit of 100"),
            "{}",
            err.body.message
        );
    }

    #[test]
    fn repeated_ids_are_refused_case_insensitively() {
        assert!(check_distinct(["a@x.io", "b@x.io"].into_iter()).is_ok());
        let err = check_distinct(["a@x.io", "A@x.io"].into_iter()).err();
        assert!(err.is_some_and(|e| e.body.message.contains("Duplicate IDs")));
    }
}
