//! HubSpot CRM v3 wire types for the contact endpoints this client calls: the request inputs
//! (batch writes, `batch/read`, `search`), the batch and search response envelopes and
//! HubSpot's error body.
//!
//! Shapes only: deciding what a response means is `errors.rs` (failures) and the batch writer
//! (results). These types never leave the `hubspot` folder.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `{"inputs": [...]}`, the body of every batch endpoint.
/// <https://developers.hubspot.com/docs/api-reference/legacy/crm/using-object-apis>
#[derive(Debug, Serialize)]
pub struct BatchRequest<'a, T> {
    pub inputs: Vec<&'a T>,
}

/// One input of `batch/update` (by record id) or `batch/upsert` (by a unique property).
/// <https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/guide>
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteInput {
    /// The record id (update) or the unique property's value (upsert).
    pub id: String,
    /// Upsert only: the unique property `id` is a value of (`email` or a custom property).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_property: Option<String>,
    /// Every value is a string; `""` clears the property.
    pub properties: BTreeMap<String, String>,
    /// A unique string per input, so that HubSpot reports failures per input (a 207
    /// multi-status answer) where it supports that, instead of failing the whole batch.
    pub object_write_trace_id: String,
}

/// One input of `batch/archive`: a record id.
/// <https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/guide>
#[derive(Clone, Debug, Serialize)]
pub struct IdInput {
    pub id: String,
}

/// The body of `batch/read` by record id: which properties to return, and the ids.
/// Unset requested properties come back as `null`; one that does not exist is left out.
/// <https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/guide>
/// (crm-apis.md §1.2, "Batch shapes")
#[derive(Debug, Serialize)]
pub struct ReadRequest<'a> {
    pub properties: &'a [String],
    pub inputs: Vec<IdInput>,
    /// Read by this unique property instead of the record id (`email`).
    #[serde(rename = "idProperty", skip_serializing_if = "Option::is_none")]
    pub id_property: Option<&'a str>,
}

/// The body of `POST /crm/v3/objects/contacts/search` (`PublicObjectSearchRequest`): filter
/// groups (OR of groups, AND within one), sorts, the properties to return and the page size
/// (at most 200). `after` is left out: this client reads one page.
/// <https://developers.hubspot.com/docs/api-reference/legacy/crm/search-the-crm>
/// (crm-apis.md §1.5)
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest<'a> {
    pub filter_groups: Vec<FilterGroup>,
    pub sorts: Vec<Sort>,
    pub properties: &'a [String],
    pub limit: usize,
}

/// Filters that must all hold.
#[derive(Debug, Serialize)]
pub struct FilterGroup {
    pub filters: Vec<Filter>,
}

/// One comparison, e.g. `lastmodifieddate GTE "1709251200000"` (dates as epoch ms strings).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    pub property_name: String,
    /// `EQ`, `GTE`, … (crm-apis.md §1.5, "Operators").
    pub operator: &'static str,
    pub value: String,
}

/// One sort key.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sort {
    pub property_name: String,
    /// `ASCENDING` or `DESCENDING`.
    pub direction: &'static str,
}

/// A search answer: one page of records (never archived ones) and how many match in all.
/// `paging.next.after` is not read, as the caller advances its filter instead.
/// <https://developers.hubspot.com/docs/api-reference/legacy/crm/search-the-crm>
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SearchResponse {
    pub total: u64,
    pub results: Vec<Record>,
}

/// One page of `GET /crm/v3/objects/contacts` (`CollectionResponseSimplePublicObjectWithAssociationsForwardPaging`):
/// records in id order and, while more follow, the cursor of the next page.
/// <https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/guide>
/// (crm-apis.md §1.2, "Paging (list)")
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListResponse {
    pub results: Vec<Record>,
    pub paging: Option<Paging>,
}

/// `paging` of a list answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Paging {
    pub next: Option<NextPage>,
}

/// `paging.next`: `after` is the opaque cursor to send for the next page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NextPage {
    pub after: String,
}

/// The batch response envelope: records written, and on a 207 the inputs that failed.
/// Every field is optional on the wire as far as this client is concerned.
/// <https://developers.hubspot.com/docs/api-reference/legacy/crm/using-object-apis>
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BatchResponse {
    pub results: Vec<Record>,
    pub errors: Vec<BatchError>,
}

/// A record as batch reads and writes return it (`SimplePublicObject`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Record {
    /// The record id, a string of digits.
    pub id: String,
    /// Property values as strings; unset ones are `null`.
    pub properties: BTreeMap<String, Option<String>>,
    /// When the record last changed, ISO-8601 (`2024-03-05T08:00:00.000Z`).
    pub updated_at: Option<String>,
    /// True for a record in the recycle bin, which reads only return when asked to.
    pub archived: bool,
    /// The input's trace id, echoed where HubSpot does so.
    pub object_write_trace_id: Option<String>,
}

/// One failed input of a 207 multi-status answer (`StandardError`).
/// <https://developers.hubspot.com/docs/api-reference/error-handling>
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BatchError {
    pub category: Option<String>,
    pub message: Option<String>,
    /// Names the inputs concerned: `objectWriteTraceId` or, for missing records, `ids`.
    /// Values are read defensively (see [`context_strings`]).
    pub context: BTreeMap<String, Value>,
    pub errors: Vec<ErrorDetail>,
}

/// HubSpot's error body; every field is optional, so it is parsed defensively.
/// <https://developers.hubspot.com/docs/api-reference/error-handling>
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ErrorBody {
    pub message: Option<String>,
    /// e.g. `VALIDATION_ERROR`, `CONFLICT`, `OBJECT_NOT_FOUND`, `MISSING_SCOPES`.
    pub category: Option<String>,
    pub errors: Vec<ErrorDetail>,
    /// 429s only: `TEN_SECONDLY_ROLLING` or `DAILY`.
    pub policy_name: Option<String>,
}

/// One entry of `errors[]`, e.g. `{"code": "PROPERTY_DOESNT_EXIST", ...}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ErrorDetail {
    pub message: Option<String>,
    pub code: Option<String>,
}

/// The strings under `key` in an error `context`: HubSpot sends arrays of strings, but a
/// lone string is accepted too rather than failing the whole response over it.
pub fn context_strings<'a>(context: &'a BTreeMap<String, Value>, key: &str) -> Vec<&'a str> {
    match context.get(key) {
        Some(Value::Array(values)) => values.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => vec![s.as_str()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn write_inputs_use_hubspot_member_names() {
        let input = WriteInput {
            id: "ada@example.com".into(),
            id_property: Some("email".into()),
            properties: BTreeMap::from([("firstname".into(), "Ada".into())]),
            object_write_trace_id: "c1".into(),
        };
        let body = serde_json::to_value(BatchRequest {
            inputs: vec![&input],
        })
        .unwrap();
        assert_eq!(
            body,
            json!({"inputs": [{"id": "ada@example.com", "idProperty": "email",
                               "properties": {"firstname": "Ada"}, "objectWriteTraceId": "c1"}]})
        );
    }

    #[test]
    fn multi_status_envelopes_parse_with_missing_and_odd_members() {
        let body = json!({
            "status": "COMPLETE",
            "results": [{"id": "51", "properties": {"email": "a@x.io", "phone": null}}],
            "numErrors": 1,
            "errors": [{"status": "error", "category": "OBJECT_NOT_FOUND",
                        "context": {"ids": ["52"], "objectWriteTraceId": "t2", "n": {"x": 1}}}]
        });
        let parsed: BatchResponse = serde_json::from_value(body).unwrap();
        assert_eq!(parsed.results[0].properties["phone"], None);
        let err = &parsed.errors[0];
        assert_eq!(context_strings(&err.context, "ids"), ["52"]);
        assert_eq!(context_strings(&err.context, "objectWriteTraceId"), ["t2"]);
        assert!(context_strings(&err.context, "n").is_empty());
    }
}
