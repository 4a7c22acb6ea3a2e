//! The control API under `/__sandbox/`: inspect and reset the org, simulate a person editing in
//! Lightning, seed a population, inject faults, set validation rules, the duplicate rule and
//! record locks, set how Bulk API 2.0 query jobs behave, set usage and the batch cap, expire sessions, point the webhook and the Outbound Message endpoint, read
//! counters and the write log.
//!
//! These routes need the control token (`X-Sandbox-Token`, see [`crate::kit::control`]), not a
//! session; they are not counted and are never faulted. Paths and shapes are
//! shared with the HubSpot sandbox so one test harness drives both. What it is not: anything
//! Salesforce has; nothing here exists on a real org.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::counters::Counters;
use super::duplicates::DuplicateRuleIn;
use super::errors::{SfError, SfErrors};
use super::faults::FaultsPatch;
use super::sobjects::contact_key;
use super::state::{Sandbox, lock};
use super::validation::ValidationRules;
use super::wire::Ordered;
use super::{jwt, outbound_message as om, record, wire};
use crate::kit::control::{self, ControlToken};
use crate::kit::seed;
use crate::kit::writes::SinceQuery;

type Shared = State<Arc<Sandbox>>;

/// The `/__sandbox` routes.
pub fn routes(token: ControlToken) -> Router<Arc<Sandbox>> {
    Router::new()
        .route("/__sandbox/state", get(state))
        .route("/__sandbox/reset", post(reset))
        .route(
            "/__sandbox/seed",
            post(seed_contacts).layer(DefaultBodyLimit::max(seed::MAX_BODY_BYTES)),
        )
        .route("/__sandbox/ui/contacts", post(ui_create))
        .route("/__sandbox/ui/contacts/merge", post(ui_merge))
        .route(
            "/__sandbox/ui/contacts/{id}",
            patch(ui_update).delete(ui_delete),
        )
        .route("/__sandbox/faults", get(faults).put(put_faults))
        .route(
            "/__sandbox/validation-rules",
            get(validation_rules).put(put_validation_rules),
        )
        .route(
            "/__sandbox/duplicate-rule",
            get(duplicate_rule).put(put_duplicate_rule),
        )
        .route(
            "/__sandbox/record-locks",
            get(record_locks).put(put_record_locks),
        )
        .route("/__sandbox/limits", get(limits).put(put_limits))
        .route("/__sandbox/bulk-query", get(bulk_query).put(put_bulk_query))
        .route("/__sandbox/expire-sessions", post(expire_sessions))
        .route("/__sandbox/webhook", get(webhook).put(put_webhook))
        .route(
            "/__sandbox/outbound-message",
            get(outbound_message).put(put_outbound_message),
        )
        .route("/__sandbox/jwt", put(put_jwt))
        .route("/__sandbox/counters", get(counters))
        .route("/__sandbox/writes", get(writes))
        .route("/__sandbox/counters/reset", post(reset_counters))
        .route_layer(from_fn_with_state(token, control::require_token))
}

fn ok(body: Value) -> Response {
    wire::json(StatusCode::OK, &body)
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

/// `GET /__sandbox/state`: every Contact, recycled ones included, and the change log.
async fn state(State(sb): Shared) -> Response {
    /// Records are `Ordered` (not `Value`) so they keep Salesforce's field order.
    #[derive(serde::Serialize)]
    struct StateOut {
        contacts: Vec<Ordered>,
        changes: Vec<Value>,
    }
    let contacts = lock(&sb.store)
        .all()
        .map(|c| record::render(c, &sb.schema, &sb.default_version, None))
        .collect();
    let changes = lock(&sb.changes).iter().cloned().collect();
    wire::json(StatusCode::OK, &StateOut { contacts, changes })
}

async fn reset(State(sb): Shared) -> Response {
    sb.reset();
    control::done()
}

/// `POST /__sandbox/seed`: a JSON array of Contacts (`{"LastName": …, "Email": …}`, API field
/// names), stored at once as if people had created them over the past year: realistic
/// `CreatedDate`/`LastModifiedDate`/`SystemModstamp`, created by the UI user, no notifications,
/// not counted against the allowance, not in the write log. Checked like API creates (required
/// `LastName`, validation rules, unique external id, the duplicate rule); all or nothing, a
/// refused record refuses the call with a `400` naming it. Answers `201 {"created", "ids"}`
/// with 18-character ids.
async fn seed_contacts(State(sb): Shared, body: Bytes) -> Response {
    let records = match seed::parse(&body) {
        Ok(r) => r,
        Err(refused) => return refused.into_response(),
    };
    let (now, count, actor) = (chrono::Utc::now(), records.len(), sb.ui_actor());
    let mut problems = seed::Problems::default();
    let mut ids = Vec::with_capacity(count);
    let mut undo = super::store::Undo::default();
    let mut store = lock(&sb.store);
    for (i, record) in records.iter().enumerate() {
        let written = sb
            .schema
            .parse_write(record)
            .map_err(|errors| errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>())
            .and_then(|fields| {
                let times = seed::times(i, count, now);
                store
                    .seed(fields, times, &actor, &mut undo)
                    .map_err(|e| vec![e.message])
            });
        match written {
            Ok(id) => ids.push(id),
            Err(why) => problems.push(i, format!("was refused: {}", why.join("; "))),
        }
    }
    if !problems.is_empty() {
        store.rollback(undo);
    }
    drop(store);
    match problems.into_result(ids) {
        Ok(ids) => seed::created(ids),
        Err(refused) => refused.into_response(),
    }
}

/// `POST /__sandbox/ui/contacts`: a person creates a Contact in Lightning.
async fn ui_create(State(sb): Shared, body: Bytes) -> Response {
    let result = (|| -> Result<Response, SfErrors> {
        let fields = sb.schema.parse_write(&wire::parse_object(&body)?)?;
        let actor = sb.ui_actor();
        let id = sb
            .write_one(|store, undo| store.create(fields, &actor, undo))?
            .record
            .id;
        Ok(wire::json(
            StatusCode::CREATED,
            &wire::SaveResult::ok(&id, None),
        ))
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `PATCH /__sandbox/ui/contacts/{id}`: a person edits; answers the record as it now is.
async fn ui_update(State(sb): Shared, Path(id): Path<String>, body: Bytes) -> Response {
    let result = (|| -> Result<Response, SfErrors> {
        let key = contact_key(&id)?;
        let fields = sb.schema.parse_write(&wire::parse_object(&body)?)?;
        let actor = sb.ui_actor();
        let change = sb.write_one(|store, undo| store.update(&key, fields, &actor, undo))?;
        let rec = record::render(&change.record, &sb.schema, &sb.default_version, None);
        Ok(wire::json(StatusCode::OK, &rec))
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /__sandbox/ui/contacts/merge` `{"masterRecordId": …, "recordIds": [one or two]}`: a
/// person merges duplicates in Lightning. Answers the master record as it now is.
async fn ui_merge(State(sb): Shared, body: Bytes) -> Response {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Merge {
        master_record_id: String,
        record_ids: Vec<String>,
    }
    let result = (|| -> Result<Response, SfErrors> {
        let m: Merge = parse(&body).map_err(|e| SfErrors::from(SfError::json_parser(&e)))?;
        let master = contact_key(&m.master_record_id)?;
        let losers = m
            .record_ids
            .iter()
            .map(|id| contact_key(id))
            .collect::<Result<Vec<_>, _>>()?;
        let actor = sb.ui_actor();
        let mut store = lock(&sb.store);
        let mut undo = super::store::Undo::default();
        let changes = match store.merge(&master, &losers, &actor, &mut undo) {
            Ok(changes) => changes,
            Err(e) => {
                store.rollback(undo);
                return Err(e.into());
            }
        };
        sb.commit(&changes);
        let super::store::Lookup::Live(c) = store.lookup(&master) else {
            return Ok(StatusCode::NO_CONTENT.into_response());
        };
        let rec = record::render(c, &sb.schema, &sb.default_version, None);
        Ok(wire::json(StatusCode::OK, &rec))
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `DELETE /__sandbox/ui/contacts/{id}`: a person deletes (to the recycle bin).
async fn ui_delete(State(sb): Shared, Path(id): Path<String>) -> Response {
    let result = (|| -> Result<Response, SfErrors> {
        let key = contact_key(&id)?;
        let actor = sb.ui_actor();
        sb.write_one(|store, undo| store.delete(&key, &actor, undo))?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn faults(State(sb): Shared) -> Response {
    ok(serde_json::to_value(&*lock(&sb.faults)).unwrap_or_default())
}

/// `PUT /__sandbox/faults`: partial update; answers the full settings.
async fn put_faults(State(sb): Shared, body: Bytes) -> Response {
    let patch: FaultsPatch = match parse(&body) {
        Ok(p) => p,
        Err(e) => return control::problem(e),
    };
    let updated = {
        let mut f = lock(&sb.faults);
        f.apply(patch).map(|()| f.clone())
    };
    match updated {
        Ok(f) => {
            sb.outbox.set_paused(f.webhooks_paused);
            ok(serde_json::to_value(f).unwrap_or_default())
        }
        Err(message) => control::problems(message),
    }
}

async fn validation_rules(State(sb): Shared) -> Response {
    ok(serde_json::to_value(lock(&sb.store).rules().rules()).unwrap_or_default())
}

/// `PUT /__sandbox/validation-rules` with `[{"name", "field", "contains", "message"}]`:
/// replaces the whole set (`[]` clears it); answers the set as stored.
async fn put_validation_rules(State(sb): Shared, body: Bytes) -> Response {
    let rules = match ValidationRules::parse(&body, &sb.schema) {
        Ok(r) => r,
        Err(e) => return control::problem(e),
    };
    let stored = serde_json::to_value(rules.rules()).unwrap_or_default();
    lock(&sb.store).set_rules(rules);
    ok(stored)
}

async fn duplicate_rule(State(sb): Shared) -> Response {
    ok(serde_json::to_value(&lock(&sb.store).duplicates).unwrap_or_default())
}

/// `PUT /__sandbox/duplicate-rule` with `{"action": "off" | "block" | "alert"}`: the rule on
/// Contact.Email (see `duplicates.rs`); answers the rule as stored.
async fn put_duplicate_rule(State(sb): Shared, body: Bytes) -> Response {
    let rule: DuplicateRuleIn = match parse(&body) {
        Ok(r) => r,
        Err(e) => return control::problem(e),
    };
    let mut store = lock(&sb.store);
    store.duplicates.action = rule.action;
    ok(serde_json::to_value(&store.duplicates).unwrap_or_default())
}

async fn record_locks(State(sb): Shared) -> Response {
    ok(json!({"next": lock(&sb.store).record_locks}))
}

/// `PUT /__sandbox/record-locks` with `{"next": n}`: the next `n` record saves in collection
/// writes fail with `UNABLE_TO_LOCK_ROW` (another transaction holds the record), each on its
/// own item; answers what is left.
async fn put_record_locks(State(sb): Shared, body: Bytes) -> Response {
    let locks: RecordLocksIn = match parse(&body) {
        Ok(r) => r,
        Err(e) => return control::problem(e),
    };
    let mut store = lock(&sb.store);
    store.record_locks = locks.next;
    ok(json!({"next": store.record_locks}))
}

async fn bulk_query(State(sb): Shared) -> Response {
    wire::json(StatusCode::OK, &lock(&sb.bulk_jobs).settings)
}

/// `PUT /__sandbox/bulk-query` with `{"polls_in_progress": n, "fail": bool}`: how Bulk API 2.0
/// query jobs created from now on behave — `n` state reads answer `InProgress` before the job
/// completes (default 1), and `fail` ends them `Failed` instead.
async fn put_bulk_query(State(sb): Shared, body: Bytes) -> Response {
    let settings: super::bulk::JobSettings = match parse(&body) {
        Ok(s) => s,
        Err(e) => return control::problem(e),
    };
    lock(&sb.bulk_jobs).settings = settings;
    wire::json(StatusCode::OK, &settings)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordLocksIn {
    next: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsPatch {
    daily_limit: Option<u32>,
    used: Option<u32>,
    /// Records per collection write, 1 to Salesforce's 200 (see [`crate::kit::batches`]).
    batch_cap: Option<usize>,
}

async fn limits(State(sb): Shared) -> Response {
    let m = lock(&sb.meter).clone();
    let cap = *lock(&sb.batch_cap);
    ok(json!({
        "daily_limit": m.daily_limit,
        "used": m.used,
        "batch_cap": cap.batch_cap,
        "batch_cap_ceiling": cap.batch_cap_ceiling,
    }))
}

async fn put_limits(State(sb): Shared, body: Bytes) -> Response {
    let patch: LimitsPatch = match parse(&body) {
        Ok(p) => p,
        Err(e) => return control::problem(e),
    };
    {
        let mut cap = lock(&sb.batch_cap);
        if let Some(problem) = cap.problem(patch.batch_cap) {
            return control::problem(problem);
        }
        cap.set(patch.batch_cap);
    }
    {
        let mut m = lock(&sb.meter);
        m.daily_limit = patch.daily_limit.unwrap_or(m.daily_limit);
        m.used = patch.used.unwrap_or(m.used);
    }
    limits(State(sb)).await
}

async fn expire_sessions(State(sb): Shared) -> Response {
    lock(&sb.sessions).expire_all();
    ok(json!({"expired": true}))
}

/// `GET /__sandbox/webhook`: the target URL; the secret is never shown.
async fn webhook(State(sb): Shared) -> Response {
    let target = sb.outbox.target();
    control::webhook(target.url.as_deref(), &target.secret)
}

/// `PUT /__sandbox/webhook` with `{"url": …, "secret": …}`; either may be omitted, and a null
/// `url` stops notifications.
async fn put_webhook(State(sb): Shared, body: Bytes) -> Response {
    let v: Value = match parse(&body) {
        Ok(v) => v,
        Err(e) => return control::problem(e),
    };
    let url = match v.get("url") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(u)) if url::Url::parse(u).is_ok() => Some(Some(u.clone())),
        Some(other) => {
            return control::problem(format!("url must be an absolute URL or null, got {other}"));
        }
    };
    let secret = match v.get("secret") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return control::problem(format!("secret must be a string, got {other}")),
    };
    sb.outbox.set_target(url, secret);
    let target = sb.outbox.target();
    control::webhook(target.url.as_deref(), &target.secret)
}

fn outbound_target(target: &om::Target) -> Response {
    ok(json!({"url": target.url, "org_id": om::ORG_ID, "fields": target.fields}))
}

/// `GET /__sandbox/outbound-message`: where Outbound Messages go, the org id they carry and
/// the fields they send.
async fn outbound_message(State(sb): Shared) -> Response {
    outbound_target(&sb.outbox.outbound_target())
}

/// `PUT /__sandbox/outbound-message` with `{"url": …, "fields": […]}`: either may be omitted;
/// a null `url` stops Outbound Messages. Contact creates and updates are then also sent as
/// Outbound Messages, whether or not the signed webhook is set.
async fn put_outbound_message(State(sb): Shared, body: Bytes) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TargetIn {
        #[serde(default, deserialize_with = "present")]
        url: Option<Option<String>>,
        fields: Option<Vec<String>>,
    }
    /// A present `url` (null included) is `Some`; an absent one stays `None`.
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
    let input: TargetIn = match parse(&body) {
        Ok(v) => v,
        Err(e) => return control::problem(e),
    };
    let mut target = sb.outbox.outbound_target();
    let mut problems = Vec::new();
    match input.url {
        Some(Some(u)) if url::Url::parse(&u).is_err() => {
            problems.push(format!("url must be an absolute URL or null, got {u}"));
        }
        Some(u) => target.url = u,
        None => {}
    }
    if let Some(fields) = input.fields {
        match om::check_fields(&fields, &sb.schema) {
            Ok(f) => target.fields = f,
            Err(p) => problems.extend(p),
        }
    }
    if !problems.is_empty() {
        return control::problems(problems);
    }
    sb.outbox.set_outbound_target(target.clone());
    outbound_target(&target)
}

/// `PUT /__sandbox/jwt` with `{"certificate_pem": "-----BEGIN CERTIFICATE-----…"}` (or null):
/// the connected app's certificate for the JWT bearer flow.
async fn put_jwt(State(sb): Shared, body: Bytes) -> Response {
    #[derive(Deserialize)]
    struct JwtIn {
        certificate_pem: Option<String>,
    }
    let input: JwtIn = match parse(&body) {
        Ok(v) => v,
        Err(e) => return control::problem(e),
    };
    let cert = match input
        .certificate_pem
        .as_deref()
        .map(jwt::parse_certificate)
        .transpose()
    {
        Ok(c) => c,
        Err(e) => return control::problem(e),
    };
    let enabled = cert.is_some();
    *lock(&sb.jwt_certificate) = cert;
    ok(json!({"jwt_bearer_enabled": enabled}))
}

async fn writes(State(sb): Shared, Query(q): Query<SinceQuery>) -> Response {
    control::writes(&lock(&sb.writes), q.since)
}

async fn counters(State(sb): Shared) -> Response {
    ok(lock(&sb.counters).snapshot())
}

async fn reset_counters(State(sb): Shared) -> Response {
    *lock(&sb.counters) = Counters::default();
    control::done()
}
