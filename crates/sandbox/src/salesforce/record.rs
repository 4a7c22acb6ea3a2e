//! Renders a stored Contact as Salesforce JSON: the REST record shape (with `attributes`) and
//! field values as change events carry them.
//!
//! What it is not: parsing or validation of incoming records (see `fields.rs`).
//!
//! Vendor doc (record shape): https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_get_field_values.htm

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::fields::{FieldDef, Kind, Schema};
use super::store::Contact;
use super::wire::{self, Ordered};

/// How date-times are written: REST uses `+0000`, change events `Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Rest,
    Event,
}

/// `attributes` of a record: its type and REST URL under the caller's API version.
pub fn attributes(c: &Contact, version: &str) -> Value {
    json!({"type": "Contact", "url": format!("/services/data/v{version}/sobjects/Contact/{}", c.id)})
}

/// A record with `attributes` and the selected fields (all fields when `select` is `None`),
/// in schema or selection order.
pub fn render(
    c: &Contact,
    schema: &Schema,
    version: &str,
    select: Option<&[&FieldDef]>,
) -> Ordered {
    match select {
        Some(defs) => render_fields(c, version, defs.iter().copied()),
        None => render_fields(c, version, schema.fields()),
    }
}

/// A record with `attributes` and the given fields, in that order.
pub fn render_fields<'d>(
    c: &Contact,
    version: &str,
    defs: impl IntoIterator<Item = &'d FieldDef>,
) -> Ordered {
    let mut out = Ordered::default();
    out.push("attributes", attributes(c, version));
    for d in defs {
        out.push(d.name.clone(), value(c, d, Flavour::Rest));
    }
    out
}

/// One field's value; null when unset.
pub fn value(c: &Contact, def: &FieldDef, flavour: Flavour) -> Value {
    if let Some(at) = timestamp(c, def) {
        return Value::String(match flavour {
            Flavour::Rest => wire::rest_datetime(at),
            Flavour::Event => wire::event_datetime(at),
        });
    }
    match (def.kind, def.name.as_str()) {
        (Kind::Id, _) => Value::String(c.id.clone()),
        (Kind::Bool, _) => Value::Bool(c.is_deleted),
        (Kind::FullName, _) => full_name(c),
        (Kind::UserRef, "CreatedById") => Value::String(c.created_by.clone()),
        (Kind::UserRef, _) => Value::String(c.last_modified_by.clone()),
        _ => c.values.get(&def.name).cloned().unwrap_or(Value::Null),
    }
}

/// The value of a date-time field, `None` for other fields.
pub fn timestamp(c: &Contact, def: &FieldDef) -> Option<DateTime<Utc>> {
    match (def.kind, def.name.as_str()) {
        (Kind::DateTime, "CreatedDate") => Some(c.created_date),
        (Kind::DateTime, "LastModifiedDate") => Some(c.last_modified_date),
        (Kind::DateTime, _) => Some(c.system_modstamp),
        _ => None,
    }
}

/// `Name` = `FirstName LastName`, as Salesforce composes it for English locales.
fn full_name(c: &Contact) -> Value {
    let parts: Vec<&str> = ["FirstName", "LastName"]
        .iter()
        .filter_map(|f| c.values.get(*f).and_then(Value::as_str))
        .collect();
    if parts.is_empty() {
        Value::Null
    } else {
        Value::String(parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use std::collections::BTreeMap;

    fn contact() -> Contact {
        let at = DateTime::from_timestamp(1_709_629_200, 0).unwrap();
        Contact {
            id: "0038d0000000001AAA".into(),
            values: BTreeMap::from([
                ("LastName".into(), json!("Lovelace")),
                ("FirstName".into(), json!("Ada")),
            ]),
            is_deleted: false,
            created_date: at,
            created_by: "005U".into(),
            last_modified_date: at,
            last_modified_by: "005U".into(),
            system_modstamp: at,
        }
    }

    #[test]
    fn full_record_has_attributes_first_and_every_field() {
        let schema = Schema::contact("SyncRoot_Id__c");
        let json = serde_json::to_value(render(&contact(), &schema, "62.0", None)).unwrap();
        assert_eq!(
            json["attributes"]["url"],
            "/services/data/v62.0/sobjects/Contact/0038d0000000001AAA"
        );
        assert_eq!(json["Name"], "Ada Lovelace");
        assert_eq!(json["Email"], Value::Null);
        assert_eq!(json["SystemModstamp"], "2024-03-05T09:00:00.000+0000");
        let text = serde_json::to_string(&render(&contact(), &schema, "62.0", None)).unwrap();
        assert!(text.starts_with(r#"{"attributes":"#));
    }

    #[test]
    fn event_flavour_uses_z_suffix() {
        let schema = Schema::contact("X__c");
        let def = schema.find("LastModifiedDate").unwrap();
        assert_eq!(
            value(&contact(), def, Flavour::Event),
            json!("2024-03-05T09:00:00.000Z")
        );
    }
}
