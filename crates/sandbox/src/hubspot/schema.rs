//! The contact property schema: which properties exist, which are read-only, unique or
//! enumerations, and the per-property validation HubSpot applies to writes.
//!
//! It does not store values (see `store`) and knows nothing of HTTP; it reports problems as
//! [`PropertyIssue`]s that `errors` renders in HubSpot's shape.

use std::collections::BTreeMap;

use super::config::CustomProperty;

/// Properties returned when a request names none.
/// <https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/guide>
pub const DEFAULT_PROPERTIES: [&str; 6] = [
    "createdate",
    "email",
    "firstname",
    "hs_object_id",
    "lastmodifieddate",
    "lastname",
];

/// Properties present on every returned record whatever was requested (observed on real
/// responses; not stated in the docs).
pub const ALWAYS_RETURNED: [&str; 3] = ["createdate", "hs_object_id", "lastmodifieddate"];

/// Standard writable contact properties (internal names).
/// <https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/guide>
const STANDARD_TEXT: [&str; 16] = [
    "firstname",
    "lastname",
    "phone",
    "mobilephone",
    "fax",
    "company",
    "jobtitle",
    "website",
    "address",
    "city",
    "state",
    "zip",
    "country",
    "hs_timezone",
    "hs_additional_emails",
    "hs_marketable_until_renewal",
];

/// Internal names of the default `lifecyclestage` options.
pub const LIFECYCLE_STAGES: [&str; 8] = [
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
];

/// Default fields of the search `query` text match for contacts.
pub const QUERY_SEARCHABLE: [&str; 8] = [
    "firstname",
    "lastname",
    "email",
    "phone",
    "hs_additional_emails",
    "fax",
    "mobilephone",
    "company",
];

/// The value type of a property, which drives validation and search comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropertyKind {
    Text,
    Email,
    /// Compared case-sensitively in search and checked against [`LIFECYCLE_STAGES`].
    Enumeration,
    /// Epoch-ms comparable; stored as ISO-8601 with milliseconds.
    DateTime,
    Number,
}

#[derive(Clone, Debug)]
pub struct PropertyDef {
    pub kind: PropertyKind,
    /// Values are unique across live contacts and the property may be an `idProperty`.
    pub unique: bool,
    pub read_only: bool,
}

/// Why one property of a write was refused; `code` is HubSpot's `error` / `errors[].code`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropertyIssue {
    pub name: String,
    pub code: &'static str,
    pub message: String,
}

/// The account's contact properties.
#[derive(Clone, Debug)]
pub struct Schema {
    defs: BTreeMap<String, PropertyDef>,
}

impl Schema {
    pub fn new(custom: &[CustomProperty]) -> Self {
        let mut defs = BTreeMap::new();
        let mut add = |name: &str, kind, unique, read_only| {
            let def = PropertyDef {
                kind,
                unique,
                read_only,
            };
            defs.insert(name.to_owned(), def);
        };
        for name in STANDARD_TEXT {
            add(name, PropertyKind::Text, false, false);
        }
        add("email", PropertyKind::Email, true, false);
        add("lifecyclestage", PropertyKind::Enumeration, false, false);
        add("hs_object_id", PropertyKind::Number, true, true);
        add("createdate", PropertyKind::DateTime, false, true);
        add("lastmodifieddate", PropertyKind::DateTime, false, true);
        for prop in custom {
            add(&prop.name, PropertyKind::Text, prop.unique, false);
        }
        Self { defs }
    }

    pub fn find(&self, name: &str) -> Option<&PropertyDef> {
        self.defs.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = (&str, &PropertyDef)> {
        self.defs.iter().map(|(n, d)| (n.as_str(), d))
    }

    /// Names of unique properties that keep an index (everything unique but the record id).
    pub fn indexed_unique(&self) -> Vec<String> {
        self.names()
            .filter(|(n, d)| d.unique && *n != "hs_object_id")
            .map(|(n, _)| n.to_owned())
            .collect()
    }

    /// Whether `name` may be used as an `idProperty` for lookups.
    pub fn is_id_property(&self, name: &str) -> bool {
        self.find(name).is_some_and(|d| d.unique)
    }

    /// Checks a write and returns the values as they will be stored (emails lower-cased,
    /// trimmed), or every problem found.
    pub fn validate(
        &self,
        props: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, Vec<PropertyIssue>> {
        let mut issues = Vec::new();
        let mut clean = BTreeMap::new();
        for (name, value) in props {
            match self.validate_one(name, value) {
                Ok(v) => {
                    clean.insert(name.clone(), v);
                }
                Err(issue) => issues.push(issue),
            }
        }
        if issues.is_empty() {
            Ok(clean)
        } else {
            Err(issues)
        }
    }

    fn validate_one(&self, name: &str, value: &str) -> Result<String, PropertyIssue> {
        let issue = |code, message: String| PropertyIssue {
            name: name.to_owned(),
            code,
            message,
        };
        let Some(def) = self.find(name) else {
            let msg = format!("Property \"{name}\" does not exist");
            return Err(issue("PROPERTY_DOESNT_EXIST", msg));
        };
        if def.read_only {
            let msg = format!("\"{name}\" is a read only property; its value cannot be set.");
            return Err(issue("READ_ONLY_VALUE", msg));
        }
        match def.kind {
            // HubSpot stores email addresses lower-cased; an empty value clears the property.
            PropertyKind::Email if value.is_empty() => Ok(String::new()),
            PropertyKind::Email => {
                let normalised = value.trim().to_lowercase();
                if is_plausible_email(&normalised) {
                    Ok(normalised)
                } else {
                    let msg = format!("Email address {value} is invalid");
                    Err(issue("INVALID_EMAIL", msg))
                }
            }
            PropertyKind::Enumeration
                if !value.is_empty() && !LIFECYCLE_STAGES.contains(&value) =>
            {
                let msg =
                    format!("{value} was not one of the allowed options: {LIFECYCLE_STAGES:?}");
                Err(issue("INVALID_OPTION", msg))
            }
            _ => Ok(value.to_owned()),
        }
    }
}

/// A deliberately loose syntax check: one `@`, a non-empty local part, a dotted domain and
/// no whitespace. HubSpot's own rule is unpublished; this rejects what it is seen rejecting.
fn is_plausible_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    let dotted = domain.split('.').all(|label| !label.is_empty()) && domain.contains('.');
    !local.is_empty() && dotted && !domain.contains('@') && !value.contains(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn emails_are_lower_cased_and_checked() {
        let schema = Schema::new(&[]);
        let ok = schema.validate(&props(&[("email", " Ada@Example.COM ")]));
        assert_eq!(
            ok.ok().and_then(|m| m.get("email").cloned()).as_deref(),
            Some("ada@example.com")
        );
        let bad = schema.validate(&props(&[("email", "not-an-email")]));
        assert_eq!(bad.err().map(|i| i[0].code), Some("INVALID_EMAIL"));
    }

    #[test]
    fn unknown_and_read_only_properties_are_reported_together() {
        let schema = Schema::new(&[]);
        let issues = schema
            .validate(&props(&[("nickname", "x"), ("hs_object_id", "5")]))
            .err()
            .unwrap_or_default();
        let codes: Vec<_> = issues.iter().map(|i| i.code).collect();
        assert_eq!(codes, ["READ_ONLY_VALUE", "PROPERTY_DOESNT_EXIST"]);
    }

    #[test]
    fn custom_unique_property_is_an_id_property() {
        let custom = [CustomProperty {
            name: "syncroot_id".into(),
            unique: true,
        }];
        let schema = Schema::new(&custom);
        assert!(schema.is_id_property("syncroot_id"));
        assert!(schema.is_id_property("email"));
        assert!(!schema.is_id_property("firstname"));
    }
}
