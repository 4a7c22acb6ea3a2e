//! sObject Collections for Contact: create, update, upsert and delete up to 200 records, and
//! read up to 2,000 by id, each request counting as one API call.
//!
//! Results come back in input order with HTTP 200 even when items fail; each item has
//! `success` and `errors: [{statusCode, message, fields}]`. With `allOrNone=true` any failure
//! undoes the whole request and every other item reports `ALL_OR_NONE_OPERATION_ROLLED_BACK`;
//! nothing is notified then. What it is not: other sObject types, the ten-type chunking rule,
//! or the `/composite` and `/composite/batch` resources.
//!
//! Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections.htm

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::dispatch::{Call, method_not_allowed};
use super::errors::{ErrorCode, SfError, SfErrors};
use super::sobjects::{UPSERT_BODY_SINCE, contact_key, require_contact};
use super::state::lock;
use super::store::{Change, ChangeType, Lookup, Store, Undo};
use super::wire::{Ordered, SaveResult};
use super::{record, wire};

/// Records per create / update / upsert / delete request.
pub const WRITE_CAP: usize = 200;
/// Ids per read request.
pub const READ_CAP: usize = 2_000;

/// Request body of create / update / upsert.
#[derive(Debug, Deserialize)]
struct CollectionIn {
    #[serde(default, rename = "allOrNone")]
    all_or_none: bool,
    records: Vec<Value>,
}

/// Request body of the POST read.
#[derive(Debug, Deserialize)]
struct ReadIn {
    ids: Vec<String>,
    fields: Vec<String>,
}

/// The outcome of one item.
#[derive(Debug)]
struct Outcome {
    id: Option<String>,
    created: Option<bool>,
    errors: Vec<SfError>,
    /// The step created a record, so a rollback leaves no id to report.
    was_create: bool,
}

/// What a per-item step returns: the change and, for upserts, whether it created.
type Step = Result<(Change, Option<bool>), (Option<String>, Vec<SfError>)>;

/// `EXCEEDED_ID_LIMIT` is the code Salesforce answers oversize collections with [OBS:
/// "record limit reached. cannot submit more than 200 records into this call"].
fn too_many(cap: usize) -> SfError {
    SfError::new(
        ErrorCode::ExceededIdLimit,
        format!("record limit reached. cannot submit more than {cap} records into this call"),
    )
}

/// Counts the call in the batch tally (refused or not) and refuses it over `cap`.
fn admit(call: &Call<'_>, records: usize, cap: usize) -> Result<(), SfError> {
    if lock(&call.sb.counters)
        .batches
        .admit(call.template, records, cap)
    {
        return Ok(());
    }
    Err(too_many(cap))
}

/// Records per write call now: [`WRITE_CAP`], or lower for a test.
fn write_cap(call: &Call<'_>) -> usize {
    lock(&call.sb.batch_cap).batch_cap
}

fn parse_in(call: &Call<'_>) -> Result<CollectionIn, SfError> {
    let input: CollectionIn =
        serde_json::from_value(wire::parse_value(call.body)?).map_err(SfError::json_parser)?;
    admit(call, input.records.len(), write_cap(call))?;
    Ok(input)
}

/// `/composite/sobjects`: POST create, PATCH update, DELETE by `ids`.
pub fn collection(call: &Call<'_>) -> Result<Response, SfErrors> {
    match *call.method {
        Method::POST => {
            let input = parse_in(call)?;
            let records = input.records;
            Ok(respond(execute(
                call,
                input.all_or_none,
                records.len(),
                |i, store, undo| create_one(call, &records[i], store, undo),
            )))
        }
        Method::PATCH => {
            let input = parse_in(call)?;
            let records = input.records;
            Ok(respond(execute(
                call,
                input.all_or_none,
                records.len(),
                |i, store, undo| update_one(call, &records[i], store, undo),
            )))
        }
        Method::DELETE => delete(call),
        _ => Err(method_not_allowed(call.method, "GET,POST,PATCH,DELETE,HEAD").into()),
    }
}

/// `/composite/sobjects/Contact`: GET `?ids=&fields=` or POST `{ids, fields}` reads.
pub fn typed(call: &Call<'_>, name: &str) -> Result<Response, SfErrors> {
    require_contact(name)?;
    let (ids, fields) = match *call.method {
        Method::GET => {
            // `fields` is required by Salesforce; without it the request is refused.
            let missing = |p: &str| {
                SfError::new(
                    ErrorCode::MissingArgument,
                    format!("The {p} parameter is required"),
                )
            };
            let ids = call.param("ids").ok_or_else(|| missing("ids"))?;
            let fields = call.param("fields").ok_or_else(|| missing("fields"))?;
            (wire::split_list(&ids), wire::split_list(&fields))
        }
        Method::POST => {
            let input: ReadIn = serde_json::from_value(wire::parse_value(call.body)?)
                .map_err(SfError::json_parser)?;
            (input.ids, input.fields)
        }
        _ => return Err(method_not_allowed(call.method, "GET,POST,HEAD").into()),
    };
    admit(call, ids.len(), READ_CAP)?;
    let mut select = call.sb.schema.select(&fields)?;
    if !select.iter().any(|d| d.name == "Id") {
        select.extend(call.sb.schema.find("Id"));
    }
    let store = lock(&call.sb.store);
    // Invalid, unknown and deleted ids read as null, as Salesforce answers inaccessible ones.
    let records: Vec<Option<Ordered>> = ids
        .iter()
        .map(|raw| match contact_key(raw).map(|k| store.lookup(&k)) {
            Ok(Lookup::Live(c)) => Some(record::render(
                c,
                &call.sb.schema,
                &call.version.text,
                Some(&select),
            )),
            _ => None,
        })
        .collect();
    Ok(wire::json(StatusCode::OK, &records))
}

/// `PATCH /composite/sobjects/Contact/{ExtField}`: upsert by external id (API 46.0+).
pub fn upsert(call: &Call<'_>, name: &str, field: &str) -> Result<Response, SfErrors> {
    require_contact(name)?;
    if *call.method != Method::PATCH {
        return Err(method_not_allowed(call.method, "PATCH").into());
    }
    if !call.sb.schema.is_external_id(field) {
        return Err(SfError::new(
            ErrorCode::NotFound,
            format!("Provided external ID field does not exist or is not accessible: {field}"),
        )
        .into());
    }
    let input = parse_in(call)?;
    let keys: Vec<Option<String>> = input
        .records
        .iter()
        .map(|r| external_value(r, field))
        .collect();
    let records = input.records;
    let outcomes = execute(call, input.all_or_none, records.len(), |i, store, undo| {
        upsert_one(call, &records[i], keys[i].as_deref(), &keys, store, undo)
    });
    Ok(respond(outcomes))
}

fn external_value(record: &Value, field: &str) -> Option<String> {
    let map = record.as_object()?;
    let (_, v) = map.iter().find(|(k, _)| k.eq_ignore_ascii_case(field))?;
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `DELETE /composite/sobjects?ids=…&allOrNone=…`.
fn delete(call: &Call<'_>) -> Result<Response, SfErrors> {
    let ids = wire::split_list(&call.param("ids").unwrap_or_default());
    if ids.is_empty() {
        return Err(
            SfError::new(ErrorCode::MissingArgument, "The ids parameter is required").into(),
        );
    }
    admit(call, ids.len(), write_cap(call))?;
    let all_or_none = call
        .param("allOrNone")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Ok(respond(execute(
        call,
        all_or_none,
        ids.len(),
        |i, store, undo| {
            let raw = &ids[i];
            let key = contact_key(raw).map_err(|e| (Some(raw.clone()), vec![e]))?;
            store
                .delete(&key, &call.actor(), undo)
                .map(|ch| (ch, None))
                .map_err(|e| (Some(raw.clone()), vec![e]))
        },
    )))
}

/// Runs `n` steps under one store lock, then commits or (for a failed `allOrNone`) rolls back.
fn execute(
    call: &Call<'_>,
    all_or_none: bool,
    n: usize,
    mut step: impl FnMut(usize, &mut Store, &mut Undo) -> Step,
) -> Vec<Outcome> {
    let mut changes = Vec::new();
    let mut outcomes = Vec::with_capacity(n);
    let mut store = lock(&call.sb.store);
    let mut undo = Undo::default();
    for i in 0..n {
        if store.record_locks > 0 {
            store.record_locks -= 1;
            outcomes.push(Outcome {
                id: None,
                created: None,
                errors: vec![SfError::new(
                    ErrorCode::UnableToLockRow,
                    "unable to obtain exclusive access to this record",
                )],
                was_create: false,
            });
            continue;
        }
        match step(i, &mut store, &mut undo) {
            Ok((ch, created)) => {
                let was_create = ch.change_type == ChangeType::Create;
                outcomes.push(Outcome {
                    id: Some(ch.record.id.clone()),
                    created,
                    errors: Vec::new(),
                    was_create,
                });
                changes.push(ch);
            }
            Err((id, errors)) => outcomes.push(Outcome {
                id,
                created: None,
                errors,
                was_create: false,
            }),
        }
    }
    if all_or_none && outcomes.iter().any(|o| !o.errors.is_empty()) {
        store.rollback(undo);
        for o in outcomes.iter_mut().filter(|o| o.errors.is_empty()) {
            if o.was_create {
                o.id = None;
            }
            o.created = None;
            o.errors = vec![SfError::rolled_back()];
        }
        return outcomes;
    }
    call.sb.commit(&changes);
    drop(store);
    call.written(changes.len());
    outcomes
}

fn respond(outcomes: Vec<Outcome>) -> Response {
    let items: Vec<SaveResult<'_>> = outcomes
        .iter()
        .map(|o| SaveResult {
            id: o.id.as_deref(),
            success: o.errors.is_empty(),
            errors: o.errors.iter().map(SfError::to_item).collect(),
            created: o.created,
        })
        .collect();
    wire::json(StatusCode::OK, &items)
}

/// Checks `attributes.type`; collection writes must name a concrete type.
fn record_fields(record: &Value, type_required: bool) -> Result<Map<String, Value>, SfError> {
    let Some(map) = record.as_object() else {
        return Err(SfError::json_parser(format!(
            "Cannot deserialize instance of sObject from {} value",
            wire::json_kind(record)
        )));
    };
    match map
        .get("attributes")
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
    {
        Some(t) if t.eq_ignore_ascii_case("Contact") => Ok(map.clone()),
        Some(t) => Err(SfError::new(
            ErrorCode::InvalidType,
            format!("sObject type '{t}' is not supported."),
        )),
        None if type_required => Err(SfError::new(
            ErrorCode::InvalidType,
            "Must send a concrete entity type.",
        )),
        None => Ok(map.clone()),
    }
}

fn create_one(call: &Call<'_>, record: &Value, store: &mut Store, undo: &mut Undo) -> Step {
    let fail = |errs: Vec<SfError>| (None, errs);
    let map = record_fields(record, true).map_err(|e| fail(vec![e]))?;
    let fields = call.sb.schema.parse_write(&map).map_err(fail)?;
    store
        .create(fields, &call.actor(), undo)
        .map(|ch| (ch, None))
        .map_err(|e| fail(vec![e]))
}

fn update_one(call: &Call<'_>, record: &Value, store: &mut Store, undo: &mut Undo) -> Step {
    let mut map = record_fields(record, true).map_err(|e| (None, vec![e]))?;
    let id_key = map.keys().find(|k| k.eq_ignore_ascii_case("id")).cloned();
    let Some(raw) = id_key
        .and_then(|k| map.remove(&k))
        .and_then(|v| v.as_str().map(String::from))
    else {
        return Err((
            None,
            vec![SfError::new(
                ErrorCode::MissingArgument,
                "Id not specified in an update call",
            )],
        ));
    };
    let fail = |errs: Vec<SfError>| (Some(raw.clone()), errs);
    let key = contact_key(&raw).map_err(|e| fail(vec![e]))?;
    let fields = call.sb.schema.parse_write(&map).map_err(fail)?;
    store
        .update(&key, fields, &call.actor(), undo)
        .map(|ch| (ch, None))
        .map_err(|e| fail(vec![e]))
}

fn upsert_one(
    call: &Call<'_>,
    record: &Value,
    value: Option<&str>,
    all: &[Option<String>],
    store: &mut Store,
    undo: &mut Undo,
) -> Step {
    let fail = |e: SfError| (None, vec![e]);
    let value = external_key(&call.sb.schema.external_id, value, all).map_err(fail)?;
    let map = record_fields(record, false).map_err(fail)?;
    let fields = call
        .sb
        .schema
        .parse_write(&map)
        .map_err(|errs| (None, errs))?;
    let (change, created) = store
        .upsert_external(value, fields, true, &call.actor(), undo)
        .map_err(fail)?;
    let report_created = call.version.major >= UPSERT_BODY_SINCE;
    Ok((change, report_created.then_some(created)))
}

/// The item's external id value; missing, or repeated within the request, is an error.
fn external_key<'v>(
    field: &str,
    value: Option<&'v str>,
    all: &[Option<String>],
) -> Result<&'v str, SfError> {
    let Some(value) = value else {
        let msg = format!("{field} not specified");
        return Err(SfError::new(ErrorCode::MissingArgument, msg).with_fields([field]));
    };
    let repeats = all
        .iter()
        .flatten()
        .filter(|v| v.eq_ignore_ascii_case(value))
        .count();
    if repeats > 1 {
        let msg = format!("Duplicate external id specified: {value}");
        return Err(SfError::new(ErrorCode::DuplicateExternalId, msg).with_fields([field]));
    }
    Ok(value)
}
