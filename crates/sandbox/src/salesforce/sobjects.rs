//! sObject Rows for Contact: create, read, update, delete by id, and read / upsert / delete by
//! external id.
//!
//! What it is not: any other sObject (they answer 404 `NOT_FOUND`), describe, Get Updated /
//! Get Deleted, or the `300 Multiple Choices` of a non-unique external id (the sandbox's external
//! id is unique, so an upsert matches at most one record).
//!
//! Vendor docs: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_sobject_create.htm
//! (create), …/dome_update_fields.htm (update), …/dome_delete_record.htm (delete),
//! …/dome_upsert.htm (upsert by external id; 200 vs 204 by version).

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::dispatch::{Call, method_not_allowed};
use super::errors::{ErrorCode, SfError, SfErrors};
use super::fields::FieldDef;
use super::state::lock;
use super::store::{Lookup, Undo};
use super::wire::SaveResult;
use super::{ids, record, wire};

/// From this API version on, an upsert that updates answers 200 with `created: false`, and
/// results carry `created`; before it, 204 with no body.
pub const UPSERT_BODY_SINCE: u32 = 46;

/// Only Contact is served; Salesforce matches sObject names case-insensitively.
pub fn require_contact(name: &str) -> Result<(), SfError> {
    if name.eq_ignore_ascii_case("Contact") {
        Ok(())
    } else {
        Err(SfError::not_found())
    }
}

/// The canonical key of a Contact id from a path or body; anything else is `MALFORMED_ID`.
pub fn contact_key(raw: &str) -> Result<String, SfError> {
    ids::canonical_15(raw)
        .filter(|k| ids::has_prefix(k, ids::CONTACT_PREFIX))
        .ok_or_else(|| SfError::malformed_id("Contact", raw, "Id"))
}

/// `/sobjects/Contact`: POST creates, GET returns the basic object information.
pub fn collection(call: &Call<'_>, name: &str) -> Result<Response, SfErrors> {
    require_contact(name)?;
    match *call.method {
        Method::POST => create(call),
        Method::GET => {
            let base = format!("/services/data/v{}/sobjects/Contact", call.version.text);
            let info = json!({
                "objectDescribe": {"name": "Contact", "label": "Contact", "keyPrefix": ids::CONTACT_PREFIX,
                    "urls": {"sobject": base, "rowTemplate": format!("{base}/{{ID}}")}},
                "recentItems": [],
            });
            Ok(wire::json(StatusCode::OK, &info))
        }
        _ => Err(method_not_allowed(call.method, "GET,POST,HEAD").into()),
    }
}

/// `/sobjects/Contact/{id}`.
pub fn row(call: &Call<'_>, name: &str, id: &str) -> Result<Response, SfErrors> {
    require_contact(name)?;
    let key = contact_key(id)?;
    match *call.method {
        Method::GET => get(call, &key),
        Method::PATCH => {
            update(call, &key, parse_body(call)?)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Method::DELETE => delete(call, &key),
        _ => Err(method_not_allowed(call.method, "GET,PATCH,DELETE,HEAD").into()),
    }
}

/// `/sobjects/Contact/{field}/{value}`: by external id (or by `Id`).
pub fn external(
    call: &Call<'_>,
    name: &str,
    field: &str,
    value: &str,
) -> Result<Response, SfErrors> {
    require_contact(name)?;
    let by_id = field.eq_ignore_ascii_case("Id");
    if !by_id && !call.sb.schema.is_external_id(field) {
        // [UNVERIFIED] status and message; the commonly reported answer (crm-apis.md §2.4).
        return Err(SfError::new(
            ErrorCode::NotFound,
            format!("Provided external ID field does not exist or is not accessible: {field}"),
        )
        .into());
    }
    if *call.method == Method::PATCH {
        return upsert(call, field, value);
    }
    let key = if by_id {
        contact_key(value)?
    } else {
        let found = lock(&call.sb.store)
            .find_by_external(value)
            .map(|c| c.id[..15].to_string());
        found.ok_or_else(SfError::not_found)?
    };
    match *call.method {
        Method::GET => get(call, &key),
        Method::DELETE => delete(call, &key),
        _ => Err(method_not_allowed(call.method, "GET,PATCH,DELETE,HEAD").into()),
    }
}

fn parse_body(call: &Call<'_>) -> Result<Map<String, Value>, SfError> {
    wire::parse_object(call.body)
}

/// The `?fields=` selection; `Id` is always included [UNVERIFIED: Salesforce appears to add it].
fn selection<'s>(call: &Call<'s>) -> Result<Option<Vec<&'s FieldDef>>, SfError> {
    let Some(raw) = call.param("fields") else {
        return Ok(None);
    };
    let mut defs = call.sb.schema.select(&wire::split_list(&raw))?;
    if !defs.iter().any(|d| d.name == "Id") {
        defs.extend(call.sb.schema.find("Id"));
    }
    Ok(Some(defs))
}

fn get(call: &Call<'_>, key: &str) -> Result<Response, SfErrors> {
    let select = selection(call)?;
    let store = lock(&call.sb.store);
    match store.lookup(key) {
        Lookup::Live(c) => {
            let rec = record::render(c, &call.sb.schema, &call.version.text, select.as_deref());
            Ok(wire::json(StatusCode::OK, &rec))
        }
        Lookup::Deleted => Err(SfError::entity_is_deleted().into()),
        Lookup::Missing => Err(SfError::not_found().into()),
    }
}

fn create(call: &Call<'_>) -> Result<Response, SfErrors> {
    let fields = call.sb.schema.parse_write(&parse_body(call)?)?;
    let actor = call.actor();
    let change = call
        .sb
        .write_one(|store, undo| store.create(fields, &actor, undo))?;
    let id = change.record.id;
    call.written(1);
    Ok(wire::json(StatusCode::CREATED, &SaveResult::ok(&id, None)))
}

fn update(call: &Call<'_>, key: &str, body: Map<String, Value>) -> Result<(), SfErrors> {
    let fields = call.sb.schema.parse_write(&body)?;
    let actor = call.actor();
    call.sb
        .write_one(|store, undo| store.update(key, fields, &actor, undo))?;
    call.written(1);
    Ok(())
}

fn delete(call: &Call<'_>, key: &str) -> Result<Response, SfErrors> {
    let actor = call.actor();
    call.sb
        .write_one(|store, undo| store.delete(key, &actor, undo))?;
    call.written(1);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Upsert: update the matching record, or create one carrying the external id value. The match
/// and the write happen under one lock, so concurrent upserts of one value cannot both create.
fn upsert(call: &Call<'_>, field: &str, value: &str) -> Result<Response, SfErrors> {
    let key = if field.eq_ignore_ascii_case("Id") {
        Some(contact_key(value)?)
    } else {
        None
    };
    let fields = call
        .sb
        .schema
        .parse_write(&without_key_field(call, field, value)?)?;
    let actor = call.actor();
    // `updateOnly=true` with no match creates nothing and answers 404 [UNVERIFIED: exact status].
    let create = call.param("updateOnly").as_deref() != Some("true");
    let (change, created) = {
        let mut store = lock(&call.sb.store);
        let mut undo = Undo::default();
        let (change, created) = match key {
            Some(key) => (store.update(&key, fields, &actor, &mut undo)?, false),
            None => store.upsert_external(value, fields, create, &actor, &mut undo)?,
        };
        call.sb.commit(std::slice::from_ref(&change));
        (change, created)
    };
    let id = change.record.id;
    call.written(1);
    Ok(upsert_response(call.version.major, &id, created))
}

/// 201 on create; on update 200 with `created: false` from API 46.0, 204 before it.
fn upsert_response(api_major: u32, id: &str, created: bool) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    match (api_major >= UPSERT_BODY_SINCE, created) {
        (true, _) => wire::json(status, &SaveResult::ok(id, Some(created))),
        (false, true) => wire::json(status, &SaveResult::ok(id, None)),
        (false, false) => StatusCode::NO_CONTENT.into_response(),
    }
}

/// The upsert body without the key field. The value belongs in the URL; a body copy is tolerated
/// when it equals the URL value and refused otherwise [UNVERIFIED: Salesforce's exact answer].
fn without_key_field(
    call: &Call<'_>,
    field: &str,
    value: &str,
) -> Result<Map<String, Value>, SfError> {
    let mut body = parse_body(call)?;
    let Some(k) = body.keys().find(|k| k.eq_ignore_ascii_case(field)).cloned() else {
        return Ok(body);
    };
    match body.remove(&k) {
        Some(Value::String(v)) if v.eq_ignore_ascii_case(value) => Ok(body),
        _ => Err(SfError::new(
            ErrorCode::InvalidField,
            format!("The {k} in the request body does not match the value in the URL"),
        )
        .with_fields([k.as_str()])),
    }
}
