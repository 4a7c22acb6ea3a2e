//! Pure mapping between SyncRoot's unified contact and HubSpot contact properties, through
//! the configured [`FieldMap`]: to HubSpot for delivery, and back for reading HubSpot's
//! changes (two-way sync): a webhook's properties ([`from_properties`]) or a record read by
//! `batch/read` ([`remote_record`]).
//!
//! No I/O and no batch envelopes here: the inputs and outputs are property maps and single
//! records, which is all HubSpot's contacts hold (every value a string).
//! <https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/guide>

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::wire::Record;
use crate::domain::fields::{FIELDS, Field};
use crate::domain::{ContactFields, Email, FieldValues};
use crate::providers::RemoteRecord;
use crate::providers::mapping::FieldMap;

/// Contacts' last-modified property (other objects call it `hs_lastmodifieddate`).
/// crm-apis.md §1.3.
pub const LAST_MODIFIED: &str = "lastmodifieddate";

/// The HubSpot properties a contact is written as. Every mapped field is sent, a null one as
/// `""`, because HubSpot clears a property given an empty string and leaves alone one that is
/// not sent; unmapped fields are left out.
pub fn to_properties(contact: &ContactFields, map: &FieldMap) -> BTreeMap<String, String> {
    map.pairs()
        .map(|(field, property)| {
            let value = value_of(contact, field).unwrap_or_default();
            (property.to_owned(), value.to_owned())
        })
        .collect()
}

/// What a HubSpot record says about the unified fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unified {
    /// Fields whose property the record carries, in field-table order; `None` clears the field.
    pub fields: Vec<(Field, Option<String>)>,
    /// Properties that map to a field but whose value SyncRoot cannot take.
    pub skipped: Vec<Skipped>,
}

/// A property value left out of [`Unified::fields`], and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub property: String,
    pub reason: String,
}

/// Reads the unified fields out of a HubSpot record's properties. A property the record does
/// not carry says nothing (the field is not listed); one that is null or `""` clears the field.
/// E-mail addresses are normalised by [`Email::parse`]; an invalid or missing one is skipped,
/// since a SyncRoot contact cannot be without one.
pub fn from_properties(properties: &BTreeMap<String, Option<String>>, map: &FieldMap) -> Unified {
    let mut unified = Unified::default();
    for spec in &FIELDS {
        let Some(property) = map.target(spec.field) else {
            continue;
        };
        // HubSpot's internal names are lower-case; a configured name may not be.
        let carried = properties
            .get(property)
            .or_else(|| find_ignoring_case(properties, property));
        let Some(value) = carried else {
            continue;
        };
        let value = value.as_deref().filter(|v| !v.is_empty());
        match (spec.field, value) {
            (Field::Email, None) => unified.skipped.push(Skipped {
                property: property.to_owned(),
                reason: "the record has no e-mail address".into(),
            }),
            (Field::Email, Some(raw)) => match Email::parse(raw.trim()) {
                Ok(email) => unified
                    .fields
                    .push((Field::Email, Some(email.as_str().to_owned()))),
                Err(e) => unified.skipped.push(Skipped {
                    property: property.to_owned(),
                    reason: format!("not an acceptable e-mail address: {e}"),
                }),
            },
            (field, value) => unified.fields.push((field, value.map(str::to_owned))),
        }
    }
    unified
}

/// The properties a `batch/read` asks for: every mapped one, and [`LAST_MODIFIED`].
pub fn read_properties(map: &FieldMap) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in map.pairs().map(|(_, p)| p).chain([LAST_MODIFIED]) {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name.to_owned());
        }
    }
    names
}

/// A record read back from HubSpot in SyncRoot's vocabulary: every mapped field, as HubSpot
/// reports it ([`FieldValues::set_reported`]; a property that is null or not returned at all
/// is empty, since HubSpot holds nothing there), and when it last changed. `Err` names what
/// makes the record unreadable: no modification time at all.
pub(super) fn remote_record(record: &Record, map: &FieldMap) -> Result<RemoteRecord, String> {
    let mut values = FieldValues::default();
    for (field, property) in map.pairs() {
        let value = record
            .properties
            .get(property)
            .or_else(|| find_ignoring_case(&record.properties, property))
            .and_then(Option::as_deref);
        values.set_reported(field, value);
    }
    let modified = record
        .properties
        .get(LAST_MODIFIED)
        .and_then(Option::as_deref)
        .and_then(parse_timestamp)
        .or_else(|| record.updated_at.as_deref().and_then(parse_timestamp))
        .ok_or_else(|| {
            format!(
                "record {} has neither a readable {LAST_MODIFIED} nor updatedAt",
                record.id
            )
        })?;
    Ok(RemoteRecord {
        remote_id: record.id.clone(),
        values,
        modified_at: modified,
        external_id: None,
    })
}

/// A HubSpot date-time: ISO-8601 as the v3 objects API returns it, or epoch milliseconds as
/// the same properties are written in search filters and older APIs.
fn parse_timestamp(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        return DateTime::from_timestamp_millis(raw.parse().ok()?);
    }
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn find_ignoring_case<'a>(
    properties: &'a BTreeMap<String, Option<String>>,
    name: &str,
) -> Option<&'a Option<String>> {
    properties
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn value_of(contact: &ContactFields, field: Field) -> Option<&str> {
    match field {
        Field::Email => Some(contact.email.as_str()),
        Field::FirstName => contact.first_name.as_deref(),
        Field::LastName => contact.last_name.as_deref(),
        Field::Phone => contact.phone.as_deref(),
        Field::Company => contact.company.as_deref(),
        Field::JobTitle => contact.job_title.as_deref(),
    }
}

#[cfg(test)]
#[path = "transformers_tests.rs"]
mod tests;
