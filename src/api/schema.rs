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
