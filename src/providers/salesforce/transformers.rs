//! Pure mapping between SyncRoot's unified contact and Salesforce Contact records, in both
//! directions, through the configured [`FieldMap`]: records to write, and records read back
//! (a change event's fields, or a queried record as a [`RemoteRecord`]).
//!
//! Salesforce's rules that shape it: `LastName` is required, so a contact without one gets a
//! placeholder (and the placeholder reads back as "no last name"); Contact has no company
//! field (companies are Accounts), so `company` is sent only when mapped to a custom field;
//! a JSON null clears a field. What it is not: HTTP or error handling.
//!
//! Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_contact.htm

use serde_json::{Map, Value, json};

use super::wire::{self, CONTACT, text_field};
use crate::domain::fields::Field;
use crate::domain::{ContactFields, ContactId, Email, FieldValues};
use crate::providers::RemoteRecord;
use crate::providers::mapping::FieldMap;

/// The standard field Salesforce requires on every Contact.
const LAST_NAME: &str = "LastName";
/// Last change by a person or an automated process: the replication watermark (crm-apis.md
/// §2.6), where `LastModifiedDate` misses changes made by automation.
pub const SYSTEM_MODSTAMP: &str = "SystemModstamp";

/// How SyncRoot's contacts are laid out on Contact records.
#[derive(Clone, Copy, Debug)]
pub struct RecordShape<'a> {
    pub fields: &'a FieldMap,
    /// The External ID field holding SyncRoot's contact id.
    pub external_id_field: &'a str,
    /// Sent as `LastName` when a contact has none.
    pub last_name_placeholder: &'a str,
}

/// What a Salesforce record says about the unified fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnifiedFields {
    /// Mapped fields the record carries, in mapping order; `None` is an empty value.
    pub values: Vec<(Field, Option<String>)>,
    /// Mapped fields whose value SyncRoot cannot take, with the reason.
    pub skipped: Vec<(Field, String)>,
}

/// The Contact record for a contact, as sObject Collections upsert it: `attributes`, every
/// mapped field (null clears it), and the external id.
pub fn contact_record(
    shape: RecordShape<'_>,
    id: ContactId,
    contact: &ContactFields,
) -> Map<String, Value> {
    let mut record = Map::new();
    record.insert("attributes".into(), json!({ "type": CONTACT }));
    for (field, target) in shape.fields.pairs() {
        let mut value = field_value(contact, field).filter(|v| !v.trim().is_empty());
        if value.is_none() && target.eq_ignore_ascii_case(LAST_NAME) {
            value = Some(shape.last_name_placeholder.to_owned());
        }
        record.insert(target.to_owned(), value.map_or(Value::Null, Value::String));
    }
    record.insert(
        shape.external_id_field.to_owned(),
        Value::String(id.to_string()),
    );
    record
}

/// The record that links an existing Contact (`record_id`) to a contact: its fields and the
/// external id, written by id.
pub fn link_record(
    shape: RecordShape<'_>,
    record_id: &str,
    id: ContactId,
    contact: &ContactFields,
) -> Map<String, Value> {
    let mut record = contact_record(shape, id, contact);
    record.insert("id".into(), Value::String(record_id.to_owned()));
    record
}

/// The unified fields a Contact record carries (for reading Salesforce's changes back).
/// Unmapped and system fields are ignored; a mapped field the record lacks is not reported.
pub fn unified_fields(shape: RecordShape<'_>, record: &Map<String, Value>) -> UnifiedFields {
    let mut out = UnifiedFields::default();
    for (field, target) in shape.fields.pairs() {
        let Some((_, raw)) = record.iter().find(|(k, _)| k.eq_ignore_ascii_case(target)) else {
            continue;
        };
        let text = match raw {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Array(_) | Value::Object(_) => {
                out.skipped
                    .push((field, format!("{target} is not a text value")));
                continue;
            }
        };
        // Salesforce stores an empty text as null; they mean the same.
        let text = text.filter(|t| !t.is_empty());
        match read_value(shape, field, target, text) {
            Ok(value) => out.values.push((field, value)),
            Err(reason) => out.skipped.push((field, reason)),
        }
    }
    out
}

/// The fields a read of Contacts selects: `Id`, every mapped field, the external id field and
/// [`SYSTEM_MODSTAMP`], each once (SOQL refuses a field selected twice).
pub fn read_fields(shape: RecordShape<'_>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mapped = shape.fields.pairs().map(|(_, target)| target);
    let all = std::iter::once("Id")
        .chain(mapped)
        .chain([shape.external_id_field, SYSTEM_MODSTAMP]);
    for name in all {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name.to_owned());
        }
    }
    names
}

/// A Contact read by [`read_fields`] in SyncRoot's vocabulary: every mapped field as
/// Salesforce reports it ([`FieldValues::set_reported`]; null is empty, the `LastName`
/// placeholder means no last name, numbers and booleans as text), the external id and
/// `SystemModstamp`. A field holding a structured value (an address) is left out, as
/// SyncRoot cannot say what it holds. `Err` names what makes the record unreadable.
pub fn remote_record(
    shape: RecordShape<'_>,
    record: &Map<String, Value>,
) -> Result<RemoteRecord, String> {
    let id = text_field(record, "Id").ok_or("a queried Contact has no Id")?;
    let mut values = FieldValues::default();
    for (field, target) in shape.fields.pairs() {
        let raw = record
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(target))
            .map(|(_, v)| v);
        let text = match raw {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(Value::Array(_) | Value::Object(_)) => continue,
        };
        let placeholder = target.eq_ignore_ascii_case(LAST_NAME)
            && text.as_deref() == Some(shape.last_name_placeholder);
        values.set_reported(field, text.as_deref().filter(|_| !placeholder));
    }
    let stamp = text_field(record, SYSTEM_MODSTAMP)
        .ok_or_else(|| format!("Contact {id} has no {SYSTEM_MODSTAMP}"))?;
    let modified_at = wire::parse_datetime(stamp)
        .ok_or_else(|| format!("Contact {id} has an unreadable {SYSTEM_MODSTAMP} {stamp:?}"))?;
    Ok(RemoteRecord {
        remote_id: id.to_owned(),
        values,
        modified_at,
        external_id: text_field(record, shape.external_id_field).map(str::to_owned),
    })
}

/// One field's value as SyncRoot reads it, or why it cannot.
fn read_value(
    shape: RecordShape<'_>,
    field: Field,
    target: &str,
    text: Option<String>,
) -> Result<Option<String>, String> {
    match (field, text) {
        (Field::Email, None) => Err(format!(
            "{target} is empty; a contact's e-mail cannot be cleared"
        )),
        (Field::Email, Some(raw)) => Email::parse(&raw)
            .map(|e| Some(e.to_string()))
            .map_err(|e| format!("{target} is not an acceptable e-mail address: {e}")),
        (_, Some(t))
            if target.eq_ignore_ascii_case(LAST_NAME) && t == shape.last_name_placeholder =>
        {
            Ok(None)
        }
        (_, text) => Ok(text),
    }
}

/// A unified field's value on a contact.
fn field_value(contact: &ContactFields, field: Field) -> Option<String> {
    match field {
        Field::Email => Some(contact.email.to_string()),
        Field::FirstName => contact.first_name.clone(),
        Field::LastName => contact.last_name.clone(),
        Field::Phone => contact.phone.clone(),
        Field::Company => contact.company.clone(),
        Field::JobTitle => contact.job_title.clone(),
    }
}

#[cfg(test)]
#[path = "transformers_tests.rs"]
mod tests;
