//! Pure mapping between SyncRoot's unified contact and Salesforce Contact records, in both
//! directions, through the configured [`FieldMap`].
//!
//! Salesforce's rules that shape it: `LastName` is required, so a contact without one gets a
//! placeholder (and the placeholder reads back as "no last name"); Contact has no company
//! field (companies are Accounts), so `company` is sent only when mapped to a custom field;
//! a JSON null clears a field. What it is not: HTTP or error handling.
//!
//! Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_contact.htm

use serde_json::{Map, Value, json};

use super::wire::CONTACT;
use crate::domain::fields::Field;
use crate::domain::{ContactFields, ContactId, Email};
use crate::providers::mapping::FieldMap;

/// The standard field Salesforce requires on every Contact.
const LAST_NAME: &str = "LastName";

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
