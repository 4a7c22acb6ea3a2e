//! The unified contact: its identifier and its writable fields.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::email::Email;
use super::fields::{Field, FieldValue};

/// A contact's identifier: a UUIDv7 chosen by the server, so ids sort by creation time and
/// make a stable pagination cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContactId(pub Uuid);

impl ContactId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Parses the textual form used in paths; `None` for anything that is not a UUID.
    pub fn parse(s: &str) -> Option<Self> {
        Uuid::try_parse(s).ok().map(Self)
    }

    /// The queue shard this contact's changes travel through. Stable for a given shard
    /// count: it uses the id's last 64 bits, which are random in a UUIDv7.
    pub fn shard(&self, shards: u16) -> u16 {
        let low = self.0.as_u128() as u64;
        (low % u64::from(shards.max(1))) as u16
    }
}

impl Default for ContactId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ContactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The writable state of a contact: what a create or full replace supplies, and what each
/// queued change carries in full (so that applying the newest change alone is always right).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactFields {
    pub email: Email,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub job_title: Option<String>,
}

/// Why a set of field values does not make a complete contact.
#[derive(Debug, PartialEq, Eq)]
pub struct MissingEmail;

impl ContactFields {
    /// What is left of an erased contact (privacy deletion): a placeholder address in the
    /// reserved `.invalid` domain, unique to the contact, and no other value.
    pub fn erased(id: ContactId) -> Self {
        Self {
            email: Email::parse(&format!("erased-{}@erased.invalid", id.0.simple()))
                .expect("the placeholder is a valid address"),
            first_name: None,
            last_name: None,
            phone: None,
            company: None,
            job_title: None,
        }
    }

    /// Builds a full document from validated values; absent optional fields are null.
    pub fn from_values(values: Vec<(Field, FieldValue)>) -> Result<Self, MissingEmail> {
        let email = values.iter().find_map(|(_, v)| match v {
            FieldValue::Email(e) => Some(e.clone()),
            FieldValue::Text(_) => None,
        });
        let mut doc = Self {
            email: email.ok_or(MissingEmail)?,
            first_name: None,
            last_name: None,
            phone: None,
            company: None,
            job_title: None,
        };
        doc.apply(values);
        Ok(doc)
    }

    /// Applies validated values as a JSON merge patch (RFC 7396): listed fields change,
    /// `null` clears, absent fields keep their value.
    pub fn apply(&mut self, values: Vec<(Field, FieldValue)>) {
        for (field, value) in values {
            let FieldValue::Text(text) = value else {
                if let FieldValue::Email(e) = value {
                    self.email = e;
                }
                continue;
            };
            match field {
                Field::FirstName => self.first_name = text,
                Field::LastName => self.last_name = text,
                Field::Phone => self.phone = text,
                Field::Company => self.company = text,
                Field::JobTitle => self.job_title = text,
                // Validation only ever pairs `Email` with `FieldValue::Email`.
                Field::Email => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fields::validate_members;
    use serde_json::json;

    fn doc(v: serde_json::Value) -> ContactFields {
        ContactFields::from_values(validate_members(&v).unwrap()).unwrap()
    }

    #[test]
    fn a_document_without_email_is_incomplete() {
        let values = validate_members(&json!({"first_name": "Ada"})).unwrap();
        assert_eq!(ContactFields::from_values(values), Err(MissingEmail));
    }

    #[test]
    fn merge_patch_changes_listed_fields_and_clears_nulls() {
        let mut c = doc(json!({"email": "ada@example.com", "first_name": "Ada", "phone": "1"}));
        c.apply(validate_members(&json!({"phone": null, "job_title": "CTO"})).unwrap());
        assert_eq!(c.first_name.as_deref(), Some("Ada"));
        assert_eq!(c.phone, None);
        assert_eq!(c.job_title.as_deref(), Some("CTO"));
    }

    #[test]
    fn shards_come_from_the_ids_random_low_bits_and_spread() {
        // Every process must put a contact on the same shard: the value is fixed by the id
        // (the low 64 bits, 0x9f000123456789ab, modulo the shard count).
        let id = ContactId::parse("0190b6a2-7c3e-7a1b-9f00-0123456789ab").unwrap();
        assert_eq!(id.shard(8), 3);
        assert_eq!(id.shard(10), (0x9f00_0123_4567_89ab_u64 % 10) as u16);
        assert_eq!(id.shard(0), 0, "no shards counts as one");
        let mut seen = [0u32; 5];
        for _ in 0..1000 {
            seen[usize::from(ContactId::new().shard(5))] += 1;
        }
        assert!(
            seen.iter().all(|&n| n > 100),
            "new ids spread over the shards: {seen:?}"
        );
    }
}
