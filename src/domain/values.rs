//! Field values by unified field, and where a change came from: the vocabulary two-way sync
//! compares in (what a CRM holds, what SyncRoot last wrote there, what the contact holds now).
//!
//! Not here: the decision which value wins (`merge`), or reading and writing CRM records
//! (`providers`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::contact::ContactFields;
use super::crm::Crm;
use super::email::Email;
use super::fields::{FIELDS, Field};

/// Values of some unified fields (`None`: empty), keyed by field. Which fields are present is
/// meaningful: a CRM's values hold exactly the fields its mapping writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldValues(pub BTreeMap<Field, Option<String>>);

impl FieldValues {
    /// The values of `fields` in `contact`.
    pub fn of(contact: &ContactFields, fields: impl IntoIterator<Item = Field>) -> Self {
        Self(
            fields
                .into_iter()
                .map(|f| (f, contact.get(f).map(str::to_owned)))
                .collect(),
        )
    }

    /// Every field of `contact`.
    pub fn all(contact: &ContactFields) -> Self {
        Self::of(contact, FIELDS.iter().map(|s| s.field))
    }

    /// Sets a value as a CRM reports it: blank text is empty (HubSpot clears a property to
    /// `""`), surrounding white space is not significant, e-mail addresses compare lower-cased.
    pub fn set_reported(&mut self, field: Field, value: Option<&str>) {
        let value = value.map(str::trim).filter(|v| !v.is_empty());
        let value = match field {
            Field::Email => value.map(str::to_lowercase),
            _ => value.map(str::to_owned),
        };
        self.0.insert(field, value);
    }

    pub fn get(&self, field: Field) -> Option<&Option<String>> {
        self.0.get(&field)
    }

    pub fn fields(&self) -> impl Iterator<Item = Field> + '_ {
        self.0.keys().copied()
    }
}

/// Stored and queued as a JSON object keyed by the fields' API names (`first_name`), so
/// the database shows it readably and a renamed enum variant never changes the format.
impl Serialize for FieldValues {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(f, v)| (f.spec().name, v)))
    }
}

impl<'de> Deserialize<'de> for FieldValues {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, Option<String>>::deserialize(d)?;
        let mut out = BTreeMap::new();
        for (name, value) in raw {
            let field = FIELDS
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.field)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown field '{name}'")))?;
            out.insert(field, value);
        }
        Ok(Self(out))
    }
}

impl ContactFields {
    /// One field's value.
    pub fn get(&self, field: Field) -> Option<&str> {
        match field {
            Field::Email => Some(self.email.as_str()),
            Field::FirstName => self.first_name.as_deref(),
            Field::LastName => self.last_name.as_deref(),
            Field::Phone => self.phone.as_deref(),
            Field::Company => self.company.as_deref(),
            Field::JobTitle => self.job_title.as_deref(),
        }
    }

    /// Sets one text field; `Email` is set through [`ContactFields::set_email`].
    pub fn set_text(&mut self, field: Field, value: Option<String>) {
        match field {
            Field::FirstName => self.first_name = value,
            Field::LastName => self.last_name = value,
            Field::Phone => self.phone = value,
            Field::Company => self.company = value,
            Field::JobTitle => self.job_title = value,
            Field::Email => {}
        }
    }

    pub fn set_email(&mut self, email: Email) {
        self.email = email;
    }
}

/// Who made a change: the application through the API, a person or tool inside a CRM (its
/// webhook), or the poller that finds changes webhooks missed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    #[default]
    Api,
    Hubspot,
    Salesforce,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Api => "api",
            Origin::Hubspot => "hubspot",
            Origin::Salesforce => "salesforce",
        }
    }

    /// The CRM a change came from, if it came from one.
    pub fn crm(self) -> Option<Crm> {
        match self {
            Origin::Api => None,
            Origin::Hubspot => Some(Crm::Hubspot),
            Origin::Salesforce => Some(Crm::Salesforce),
        }
    }
}

impl From<Crm> for Origin {
    fn from(crm: Crm) -> Self {
        match crm {
            Crm::Hubspot => Origin::Hubspot,
            Crm::Salesforce => Origin::Salesforce,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Origin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Origin::Api, Origin::Hubspot, Origin::Salesforce]
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("unknown origin '{s}' (known: api, hubspot, salesforce)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_serialise_by_field_name_and_refuse_unknown_names() {
        let mut v = FieldValues::default();
        v.set_reported(Field::JobTitle, Some("  CTO "));
        v.set_reported(Field::Phone, Some(""));
        v.set_reported(Field::Email, Some("Ada@Example.com"));
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"email": "ada@example.com", "phone": null, "job_title": "CTO"})
        );
        assert_eq!(serde_json::from_value::<FieldValues>(json).unwrap(), v);
        assert!(
            serde_json::from_value::<FieldValues>(serde_json::json!({"nickname": "x"})).is_err()
        );
    }
}
