//! The Contact schema the sandbox enforces: field names, labels, lengths, which fields are
//! writable, and the validation of a write body against them.
//!
//! What it is: a fixed subset of Salesforce's standard Contact fields plus one configurable
//! unique External ID text field. What it is not: a metadata API; there is no describe, no
//! custom field other than the external id, no picklist restriction; validation rules live in
//! `validation.rs`.
//!
//! Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_contact.htm
//! and "System Fields" in the same guide.

use serde_json::{Map, Value};

use super::errors::{ErrorCode, SfError};
use super::ids;
use super::wire;

/// What kind of value a field holds, and so how writes to it are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text of at most this many characters.
    Text(usize),
    /// Text of at most 80 characters shaped like an email address.
    Email,
    /// An id of another object: its 3-character key prefix and its label for messages.
    Reference {
        prefix: &'static str,
        label: &'static str,
    },
    /// The record id itself.
    Id,
    /// `Name`, computed from `FirstName` and `LastName`.
    FullName,
    /// `IsDeleted`.
    Bool,
    /// A system date-time.
    DateTime,
    /// A system user reference (`CreatedById`, `LastModifiedById`).
    UserRef,
}

/// One field of the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDef {
    /// API name, with Salesforce's capitalisation.
    pub name: String,
    /// Label used in error messages ("Last Name: data value too large…").
    pub label: String,
    pub kind: Kind,
    /// False for system and computed fields: writing them is `INVALID_FIELD_FOR_INSERT_UPDATE`.
    pub writable: bool,
}

/// Contact's fields in the order records are rendered.
#[derive(Debug, Clone)]
pub struct Schema {
    fields: Vec<FieldDef>,
    /// API name of the unique External ID field (configurable, e.g. `SyncRoot_Id__c`).
    pub external_id: String,
}

const STANDARD: &[(&str, &str, Kind, bool)] = &[
    ("Id", "Contact ID", Kind::Id, false),
    ("IsDeleted", "Deleted", Kind::Bool, false),
    (
        "AccountId",
        "Account ID",
        Kind::Reference {
            prefix: ids::ACCOUNT_PREFIX,
            label: "Account",
        },
        true,
    ),
    (
        "MasterRecordId",
        "Master Record ID",
        Kind::Reference {
            prefix: ids::CONTACT_PREFIX,
            label: "Contact",
        },
        false,
    ),
    ("LastName", "Last Name", Kind::Text(80), true),
    ("FirstName", "First Name", Kind::Text(40), true),
    ("Name", "Full Name", Kind::FullName, false),
    ("MailingStreet", "Mailing Street", Kind::Text(255), true),
    ("MailingCity", "Mailing City", Kind::Text(40), true),
    (
        "MailingState",
        "Mailing State/Province",
        Kind::Text(80),
        true,
    ),
    (
        "MailingPostalCode",
        "Mailing Zip/Postal Code",
        Kind::Text(20),
        true,
    ),
    ("MailingCountry", "Mailing Country", Kind::Text(80), true),
    ("Phone", "Business Phone", Kind::Text(40), true),
    ("MobilePhone", "Mobile Phone", Kind::Text(40), true),
    ("Email", "Email", Kind::Email, true),
    ("Title", "Title", Kind::Text(128), true),
    ("Department", "Department", Kind::Text(80), true),
    ("LeadSource", "Lead Source", Kind::Text(255), true),
    (
        "Description",
        "Contact Description",
        Kind::Text(32_000),
        true,
    ),
];

const SYSTEM: &[(&str, &str, Kind)] = &[
    ("CreatedDate", "Created Date", Kind::DateTime),
    ("CreatedById", "Created By ID", Kind::UserRef),
    ("LastModifiedDate", "Last Modified Date", Kind::DateTime),
    ("LastModifiedById", "Last Modified By ID", Kind::UserRef),
    ("SystemModstamp", "System Modstamp", Kind::DateTime),
];

/// Custom text fields default to 255 characters; the external id is one.
const EXTERNAL_ID_MAX: usize = 255;

impl Schema {
    pub fn contact(external_id: &str) -> Self {
        let def = |name: &str, label: &str, kind, writable| FieldDef {
            name: name.to_string(),
            label: label.to_string(),
            kind,
            writable,
        };
        let mut fields: Vec<FieldDef> = STANDARD
            .iter()
            .map(|(n, l, k, w)| def(n, l, *k, *w))
            .collect();
        let label = external_id.trim_end_matches("__c").replace('_', " ");
        fields.push(def(external_id, &label, Kind::Text(EXTERNAL_ID_MAX), true));
        fields.extend(SYSTEM.iter().map(|(n, l, k)| def(n, l, *k, false)));
        Self {
            fields,
            external_id: external_id.to_string(),
        }
    }

    pub fn fields(&self) -> &[FieldDef] {
        &self.fields
    }

    /// Field by API name; Salesforce matches names case-insensitively.
    pub fn find(&self, name: &str) -> Option<&FieldDef> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    pub fn is_external_id(&self, name: &str) -> bool {
        self.external_id.eq_ignore_ascii_case(name)
    }

    /// Resolves a `fields=` / SELECT list. Unknown names are `INVALID_FIELD`.
    pub fn select(&self, names: &[String]) -> Result<Vec<&FieldDef>, SfError> {
        names
            .iter()
            .map(|n| {
                self.find(n).ok_or_else(|| {
                    SfError::new(
                        ErrorCode::InvalidField,
                        format!("No such column '{n}' on entity 'Contact'"),
                    )
                })
            })
            .collect()
    }

    /// Checks a create/update body and returns `(canonical name, normalised value)` pairs.
    /// `attributes` is ignored; every problem is reported, as Salesforce lists them all.
    pub fn parse_write(
        &self,
        body: &Map<String, Value>,
    ) -> Result<Vec<(String, Value)>, Vec<SfError>> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for (key, raw) in body.iter().filter(|(k, _)| k.as_str() != "attributes") {
            match self.check_one(key, raw) {
                Ok(pair) => out.push(pair),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    fn check_one(&self, key: &str, raw: &Value) -> Result<(String, Value), SfError> {
        let def = self.find(key).ok_or_else(|| SfError::no_such_column(key))?;
        if def.kind == Kind::Id {
            return Err(SfError::new(
                ErrorCode::InvalidField,
                "The Id field should not be specified in the sobject data.",
            ));
        }
        if !def.writable {
            return Err(SfError::new(
                ErrorCode::InvalidFieldForInsertUpdate,
                format!(
                    "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                    def.name
                ),
            )
            .with_fields([def.name.as_str()]));
        }
        Ok((def.name.clone(), normalise(def, raw)?))
    }
}

/// Coerces a JSON value to the stored form: strings (numbers and booleans become text), empty
/// text becomes null as Salesforce stores it, references become 18-character ids.
fn normalise(def: &FieldDef, raw: &Value) -> Result<Value, SfError> {
    let text = match raw {
        Value::Null => return Ok(Value::Null),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => {
            return Err(SfError::json_parser(format!(
                "Cannot deserialize instance of {} from {} value",
                def.name,
                wire::json_kind(other)
            )));
        }
    };
    if text.is_empty() {
        return Ok(Value::Null);
    }
    match def.kind {
        Kind::Text(max) => check_length(def, &text, max)?,
        Kind::Email => {
            check_length(def, &text, 80)?;
            if !looks_like_email(&text) {
                return Err(SfError::new(
                    ErrorCode::InvalidEmailAddress,
                    format!("Email: invalid email address: {text}"),
                )
                .with_fields([def.name.as_str()]));
            }
        }
        Kind::Reference { prefix, label } => {
            return ids::canonical_15(&text)
                .filter(|key| ids::has_prefix(key, prefix))
                .and_then(|key| ids::to_18(&key))
                .map(Value::String)
                .ok_or_else(|| SfError::malformed_id(label, &text, &def.name));
        }
        _ => {}
    }
    Ok(Value::String(text))
}

fn check_length(def: &FieldDef, text: &str, max: usize) -> Result<(), SfError> {
    if text.chars().count() <= max {
        return Ok(());
    }
    Err(SfError::new(
        ErrorCode::StringTooLong,
        format!(
            "{}: data value too large: {text} (max length={max})",
            def.label
        ),
    )
    .with_fields([def.name.as_str()]))
}

/// A deliberately loose check in the spirit of Salesforce's: one `@`, a non-empty local part,
/// a dotted domain, no whitespace.
pub fn looks_like_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && !text.chars().any(char::is_whitespace)
        && domain.split('.').count() >= 2
        && domain.split('.').all(|label| !label.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::contact("SyncRoot_Id__c")
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn names_are_case_insensitive_and_values_normalised() {
        let out = schema()
            .parse_write(&body(
                json!({"attributes": {"type": "Contact"}, "lastname": "Hopper",
                "FirstName": "", "syncroot_id__c": 42}),
            ))
            .unwrap();
        assert!(out.contains(&("LastName".into(), json!("Hopper"))));
        assert!(out.contains(&("FirstName".into(), Value::Null)));
        assert!(out.contains(&("SyncRoot_Id__c".into(), json!("42"))));
    }

    #[test]
    fn every_bad_field_is_reported() {
        let errs = schema()
            .parse_write(&body(json!({"Id": "003", "Foo__c": 1, "CreatedDate": "x",
                "Email": "nope", "FirstName": "x".repeat(41), "AccountId": "003000000000000"})))
            .unwrap_err();
        let codes: Vec<_> = errs.iter().map(|e| e.code.as_str()).collect();
        for code in [
            "INVALID_FIELD",
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            "INVALID_EMAIL_ADDRESS",
            "STRING_TOO_LONG",
            "MALFORMED_ID",
        ] {
            assert!(codes.contains(&code), "{code} missing from {codes:?}");
        }
        assert!(
            errs.iter()
                .any(|e| e.message == "No such column 'Foo__c' on sobject of type Contact")
        );
    }

    #[test]
    fn email_shapes() {
        assert!(looks_like_email("ada@example.com"));
        for bad in [
            "ada",
            "@example.com",
            "ada@example",
            "ada@ex..com",
            "a da@example.com",
            "a@b@c.d",
        ] {
            assert!(!looks_like_email(bad), "{bad}");
        }
    }

    #[test]
    fn external_id_field_is_part_of_the_schema() {
        let s = schema();
        assert_eq!(s.find("syncroot_id__c").unwrap().label, "SyncRoot Id");
        assert!(s.select(&["Email".into(), "Nope".into()]).is_err());
    }
}
