//! Pure mapping between SyncRoot's unified contact and HubSpot contact properties, through
//! the configured [`FieldMap`]: to HubSpot for delivery, and back for reading HubSpot's
//! changes (two-way sync).
//!
//! No I/O and no wire envelopes here: the inputs and outputs are property maps, which is all
//! HubSpot's contact records hold (every value a string).
//! <https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/guide>

use std::collections::BTreeMap;

use crate::domain::fields::{FIELDS, Field};
use crate::domain::{ContactFields, Email};
use crate::providers::mapping::FieldMap;

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
