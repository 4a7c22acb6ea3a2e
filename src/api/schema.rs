//! The API's data transfer objects and their OpenAPI schemas.
//!
//! Request bodies (`ContactIn`, `ContactPatch`) are validated member by member against the
//! field table in `domain::fields`, and their schemas are built from the same table, so the
//! spec states exactly the rules the server enforces.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{
    AdditionalProperties, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

use super::auth::{Area, required_scope};
use crate::domain::fields::{FIELDS, FieldKind, FieldSpec};
use crate::store::contacts::ContactRow;

/// Body of `POST /contacts` and `PUT /contacts/{id}`: the contact's writable fields.
/// Absent optional fields are null (PUT replaces the whole contact).
pub struct ContactIn;

/// Body of `PATCH /contacts/{id}`: a JSON merge patch (RFC 7396) of the writable fields.
/// Listed fields change; `null` clears an optional field; `email` cannot be cleared.
pub struct ContactPatch;

fn field_schema(spec: &FieldSpec, nullable: bool) -> Schema {
    let ty = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::new(Type::String)
    };
    let mut b = ObjectBuilder::new()
        .schema_type(ty)
        .description(Some(spec.description))
        .min_length(Some(1))
        .max_length(Some(spec.max_len))
        .pattern(Some(spec.kind.pattern()))
        .examples([spec.example]);
    if spec.kind == FieldKind::Email {
        b = b.format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)));
    }
    b.into()
}

fn contact_object(require_email: bool, description: &str) -> RefOr<Schema> {
    let mut b = ObjectBuilder::new()
        .description(Some(description))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for spec in &FIELDS {
        let optional = spec.kind != FieldKind::Email;
        b = b.property(spec.name, field_schema(spec, optional));
    }
    if require_email {
        b = b.required("email");
    }
    RefOr::T(b.into())
}

impl PartialSchema for ContactIn {
    fn schema() -> RefOr<Schema> {
        contact_object(
            true,
            "A contact's writable fields. Absent optional fields are null.",
        )
    }
}
impl ToSchema for ContactIn {}

impl PartialSchema for ContactPatch {
    fn schema() -> RefOr<Schema> {
        contact_object(
            false,
            "A JSON merge patch (RFC 7396): listed fields change, null clears an optional field.",
        )
    }
}
impl ToSchema for ContactPatch {}

/// A contact as persisted.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactOut {
    pub id: Uuid,
    #[schema(format = Email)]
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub job_title: Option<String>,
    /// Sequence number of the last applied change (1 for the create).
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Delivery state per CRM (`salesforce`, `hubspot`), keyed by CRM name.
    pub sync: BTreeMap<String, SyncStatusOut>,
}

/// Delivery state of a contact in one CRM.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncStatusOut {
    pub state: SyncState,
    /// The CRM's record id, once linked.
    pub remote_id: Option<String>,
    /// The contact version the CRM holds.
    pub synced_version: Option<i64>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The last delivery error (never contains credentials).
    pub last_error: Option<String>,
}

/// Where a contact's delivery to one CRM stands.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    Pending,
    Synced,
    Retrying,
    Failed,
    /// SyncRoot no longer writes this contact to this CRM: its record was deleted there (the
    /// `mark` deletion policy), merged away, or awaits a merge by hand. `last_error` says which.
    Detached,
}

impl From<ContactRow> for ContactOut {
    fn from(r: ContactRow) -> Self {
        Self {
            id: r.id.0,
            email: r.email,
            first_name: r.first_name,
            last_name: r.last_name,
            phone: r.phone,
            company: r.company,
            job_title: r.job_title,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
            sync: BTreeMap::new(),
        }
    }
}

/// The answer to an accepted write: the change is durably queued and will be applied.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AcceptedOut {
    pub id: Uuid,
    /// The contact's version once this change is applied.
    pub version: i64,
    pub operation: Operation,
    pub accepted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Create,
    Update,
    Delete,
}

/// One page of contacts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactPage {
    pub items: Vec<ContactOut>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves requests.
    pub status: String,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    /// Each dependency and `ok` or what is wrong with it.
    pub checks: BTreeMap<String, String>,
}

/// States what the bearer-key middleware enforces on every keyed operation, from the same rule
/// ([`required_scope`]): the scope in its security requirement, and the two answers any keyed
/// operation can give besides 401 — 403 without that scope, 429 over the key's limits.
pub fn state_scopes(spec: &mut utoipa::openapi::OpenApi) {
    use axum::http::Method;
    use utoipa::openapi::security::SecurityRequirement;

    for item in spec.paths.paths.values_mut() {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
            (Method::HEAD, &mut item.head),
        ];
        for (method, op) in operations {
            let Some(op) = op.as_mut() else { continue };
            let Some(area) = keyed_area(op) else { continue };
            let scope = required_scope(area, &method).as_str();
            op.security = Some(vec![SecurityRequirement::new(area.scheme(), [scope])]);
            let responses = &mut op.responses.responses;
            responses
                .entry("403".into())
                .or_insert_with(|| forbidden(scope).into());
            responses
                .entry("429".into())
                .or_insert_with(|| rate_limited().into());
        }
    }
}

/// The area of an operation whose security requirement names one of the key schemes.
fn keyed_area(op: &utoipa::openapi::path::Operation) -> Option<Area> {
    // The requirement's scheme names are private to utoipa; its JSON form is `{name: scopes}`.
    let security = serde_json::to_value(op.security.as_ref()?).ok()?;
    let names: Vec<&String> = security
        .as_array()?
        .iter()
        .filter_map(|r| r.as_object())
        .flat_map(|r| r.keys())
        .collect();
    [Area::Contacts, Area::Admin]
        .into_iter()
        .find(|a| names.iter().any(|n| n.as_str() == a.scheme()))
}

fn problem_content() -> utoipa::openapi::content::Content {
    utoipa::openapi::content::Content::new(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
}

fn forbidden(scope: &str) -> utoipa::openapi::Response {
    utoipa::openapi::ResponseBuilder::new()
        .description(format!(
            "The key is valid but lacks the `{scope}` scope this operation needs (the problem's `scope` member names it); nothing was changed"
        ))
        .content(super::problem::PROBLEM_JSON, problem_content())
        .build()
}

fn rate_limited() -> utoipa::openapi::Response {
    let seconds = ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Integer))
        .minimum(Some(1));
    let retry_after = utoipa::openapi::HeaderBuilder::new()
        .schema(seconds)
        .description(Some("Seconds to wait before the key may try again"))
        .build();
    utoipa::openapi::ResponseBuilder::new()
        .description(
            "This key is over its rate (api_key_rate_per_sec, api_key_burst) or has too many requests in flight (api_key_max_in_flight); nothing was done. Other keys are not affected",
        )
        .header("Retry-After", retry_after)
        .content(super::problem::PROBLEM_JSON, problem_content())
        .build()
}
