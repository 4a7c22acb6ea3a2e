//! HubSpot's CRM v3 wire types for contacts — request inputs, record and collection
//! outputs, the batch envelope — and the mapping from stored [`Contact`]s to them.
//!
//! No handlers or validation here beyond shape: routes decide what to return.
//! <https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/guide>

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::schema::{ALWAYS_RETURNED, DEFAULT_PROPERTIES, Schema};
use super::store::{Contact, format_timestamp};

/// A record as returned by reads, writes, lists and searches (`SimplePublicObject`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactOut {
    pub id: String,
    /// Requested properties; unset ones are `null`.
    pub properties: BTreeMap<String, Option<String>>,
    pub created_at: String,
    pub updated_at: String,
    pub archived: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<String>,
    /// Echo of the input's trace id in batch responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_write_trace_id: Option<String>,
    /// Only in upsert results: whether the record was created by this call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<bool>,
}

/// Which properties a response carries.
#[derive(Clone, Debug)]
pub enum Selection {
    /// No `properties` given: HubSpot's default set.
    Default,
    /// Named by the request; unknown names are silently dropped.
    Listed(Vec<String>),
    /// Create/update responses: the properties the request wrote.
    Written(Vec<String>),
    /// Every property the record has (control API state dump).
    All,
}

impl Selection {
    pub fn from_request(names: Option<Vec<String>>) -> Self {
        match names {
            Some(names) if !names.is_empty() => Self::Listed(names),
            _ => Self::Default,
        }
    }
}

pub fn contact_out(contact: &Contact, selection: &Selection, schema: &Schema) -> ContactOut {
    let mut properties = BTreeMap::new();
    let mut pick = |name: &str| {
        if schema.find(name).is_some() {
            properties.insert(name.to_owned(), contact.properties.get(name).cloned());
        }
    };
    match selection {
        Selection::Default => DEFAULT_PROPERTIES.iter().for_each(|n| pick(n)),
        Selection::Listed(names) | Selection::Written(names) => {
            ALWAYS_RETURNED.iter().for_each(|n| pick(n));
            names.iter().for_each(|n| pick(n));
        }
        Selection::All => {
            for (name, value) in &contact.properties {
                properties.insert(name.clone(), Some(value.clone()));
            }
        }
    }
    ContactOut {
        id: contact.id.to_string(),
        properties,
        created_at: format_timestamp(contact.created_at),
        updated_at: format_timestamp(contact.updated_at),
        archived: contact.archived_at.is_some(),
        archived_at: contact.archived_at.map(format_timestamp),
        object_write_trace_id: None,
        new: None,
    }
}

#[derive(Debug, Serialize)]
pub struct NextPage {
    pub after: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Paging {
    pub next: NextPage,
}

/// `GET /crm/v3/objects/contacts` (`CollectionResponse…ForwardPaging`).
#[derive(Debug, Serialize)]
pub struct ListOut {
    pub results: Vec<ContactOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

/// `POST …/search` (`CollectionResponseWithTotal…`).
#[derive(Debug, Serialize)]
pub struct SearchOut {
    pub total: usize,
    pub results: Vec<ContactOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

/// One failed input of a multi-status batch (`StandardError`); HubSpot's client models
/// require `context`, `links` and `errors` to be present, even when empty.
#[derive(Clone, Debug, Serialize)]
pub struct BatchItemError {
    pub status: &'static str,
    pub category: &'static str,
    pub message: String,
    pub context: BTreeMap<String, Vec<String>>,
    pub links: BTreeMap<String, String>,
    pub errors: Vec<Value>,
}

/// The batch envelope; `numErrors`/`errors` only appear on 207 responses.
/// <https://developers.hubspot.com/docs/api-reference/legacy/crm/using-object-apis>
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchOut {
    pub status: &'static str,
    pub results: Vec<ContactOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_errors: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<BatchItemError>,
    pub requested_at: String,
    pub started_at: String,
    pub completed_at: String,
}

impl BatchOut {
    pub fn complete(
        results: Vec<ContactOut>,
        errors: Vec<BatchItemError>,
        started: DateTime<Utc>,
    ) -> Self {
        let num_errors = (!errors.is_empty()).then_some(errors.len());
        Self {
            status: "COMPLETE",
            results,
            num_errors,
            errors,
            requested_at: format_timestamp(started),
            started_at: format_timestamp(started),
            completed_at: format_timestamp(Utc::now()),
        }
    }
}

/// Body of single create and update (`SimplePublicObjectInput[ForCreate]`).
#[derive(Debug, Deserialize)]
pub struct PropertiesIn {
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
}

/// `{"inputs": […]}` plus the read-only options of batch read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchIn<T> {
    pub inputs: Vec<T>,
    #[serde(default)]
    pub properties: Option<Vec<String>>,
    #[serde(default)]
    pub id_property: Option<String>,
}

/// One input of batch create, update or upsert; `id` is absent on create.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteInput {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub id_property: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
    #[serde(default)]
    pub object_write_trace_id: Option<String>,
}

/// One input of batch read or archive.
#[derive(Debug, Deserialize)]
pub struct IdInput {
    pub id: String,
}

/// HubSpot takes every value as a string but tolerates JSON scalars; `null` clears.
pub fn stringify(props: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    props
        .iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (k.clone(), s)
        })
        .collect()
}

/// Query parameters of the GET endpoints. `properties` may be repeated (the official
/// clients do that) or comma-separated.
#[derive(Debug, Default)]
pub struct ReadQuery {
    pub properties: Option<Vec<String>>,
    pub limit: Option<String>,
    pub after: Option<String>,
    pub archived: bool,
    pub id_property: Option<String>,
}

impl ReadQuery {
    pub fn parse(raw: Option<&str>) -> Self {
        let mut q = Self::default();
        let pairs = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes());
        for (key, value) in pairs {
            match key.as_ref() {
                "properties" => {
                    let names = value.split(',').map(str::trim).filter(|s| !s.is_empty());
                    q.properties
                        .get_or_insert_with(Vec::new)
                        .extend(names.map(str::to_owned));
                }
                "limit" => q.limit = Some(value.into_owned()),
                "after" => q.after = Some(value.into_owned()),
                "archived" => q.archived = value.eq_ignore_ascii_case("true"),
                "idProperty" => q.id_property = Some(value.into_owned()),
                _ => {}
            }
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_may_be_repeated_or_comma_separated() {
        let q = ReadQuery::parse(Some(
            "properties=email&properties=firstname,lastname&limit=5",
        ));
        assert_eq!(
            q.properties,
            Some(vec!["email".into(), "firstname".into(), "lastname".into()])
        );
        assert_eq!(q.limit.as_deref(), Some("5"));
        assert!(!q.archived);
    }

    #[test]
    fn scalars_become_strings_and_null_clears() {
        let props = serde_json::json!({"zip": 12345, "firstname": null, "city": "Oslo"});
        let map: BTreeMap<String, Value> = serde_json::from_value(props).unwrap_or_default();
        let s = stringify(&map);
        assert_eq!(s["zip"], "12345");
        assert_eq!(s["firstname"], "");
        assert_eq!(s["city"], "Oslo");
    }
}
