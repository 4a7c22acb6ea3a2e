//! Small wire-format pieces shared by the handlers: JSON responses with Salesforce's content
//! type, key-ordered JSON objects, date-time formats, query-string and path decoding.
//!
//! What it is not: any Salesforce resource; only stateless formatting and parsing.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

use super::errors::{ItemError, SfError};

/// Salesforce answers JSON with this exact content type.
const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";

/// A JSON response with Salesforce's content type.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    // Serialising our own `Serialize` types cannot fail: every map key is a string.
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"[]".to_vec());
    let mut resp = (status, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    resp
}

/// A JSON object that keeps its keys in insertion order (serde_json's `Map` sorts them), so
/// records read like Salesforce's: `attributes` first, then fields in schema order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ordered(pub Vec<(String, Value)>);

impl Ordered {
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.0.push((key.into(), value.into()));
    }
}

impl Serialize for Ordered {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The result of one write: SaveResult / UpsertResult / DeleteResult share this shape.
/// Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_sobject_create.htm
#[derive(Debug, Serialize)]
pub struct SaveResult<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    pub success: bool,
    pub errors: Vec<ItemError<'a>>,
    /// Upserts only (API 46.0+): whether the record was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
}

impl<'a> SaveResult<'a> {
    pub fn ok(id: &'a str, created: Option<bool>) -> Self {
        Self {
            id: Some(id),
            success: true,
            errors: Vec::new(),
            created,
        }
    }
}

/// REST date-time format, e.g. `2024-03-05T08:00:00.000+0000` (crm-apis.md §2.3 [OBS]).
pub fn rest_datetime(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// Change-event date-time format, e.g. `2024-03-05T09:00:00.000Z` (crm-apis.md §2.10 example).
pub fn event_datetime(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `now` truncated to whole seconds: Salesforce stores date-times at second precision, which is
/// why every value it returns ends in `.000`.
pub fn now_seconds() -> DateTime<Utc> {
    to_second(Utc::now())
}

/// `at` truncated to whole seconds.
pub fn to_second(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

/// Query-string pairs, decoded (`+` is a space).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of `name` in the query string.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query_pairs(query)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// A comma-separated list parameter (`ids=a,b`, `fields=A,B`), blanks dropped.
pub fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Percent-decodes one path segment. `+` stays literal, as in any URL path.
pub fn decode_segment(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a request body that must be one JSON object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, SfError> {
    match parse_value(body)? {
        Value::Object(map) => Ok(map),
        other => Err(SfError::json_parser(format!(
            "Cannot deserialize instance of sObject from {} value",
            json_kind(&other)
        ))),
    }
}

/// Parses a request body as any JSON value; an empty body is a parser error as in Salesforce.
pub fn parse_value(body: &[u8]) -> Result<Value, SfError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(SfError::json_parser(
            "No content to map due to end-of-input",
        ));
    }
    serde_json::from_slice(body).map_err(SfError::json_parser)
}

/// Jackson-style token names, as they appear in Salesforce's parser errors.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "VALUE_NULL",
        Value::Bool(_) => "VALUE_BOOLEAN",
        Value::Number(_) => "VALUE_NUMBER",
        Value::String(_) => "VALUE_STRING",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_use_salesforce_formats() {
        let at = DateTime::from_timestamp(1_709_629_200, 0).unwrap();
        assert_eq!(rest_datetime(at), "2024-03-05T09:00:00.000+0000");
        assert_eq!(event_datetime(at), "2024-03-05T09:00:00.000Z");
    }

    #[test]
    fn ordered_keeps_insertion_order() {
        let mut o = Ordered::default();
        o.push("attributes", 1);
        o.push("Id", 2);
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"attributes":1,"Id":2}"#
        );
    }

    #[test]
    fn segments_and_queries_decode() {
        assert_eq!(decode_segment("a%2Fb+c%zz"), "a/b+c%zz");
        assert_eq!(
            query_param(Some("q=SELECT+Id+FROM+Contact&x=1"), "q").unwrap(),
            "SELECT Id FROM Contact"
        );
        assert_eq!(split_list(" a, ,b"), vec!["a", "b"]);
    }

    #[test]
    fn bodies_must_be_objects() {
        assert!(parse_object(b"{}").is_ok());
        assert_eq!(
            parse_object(b"").unwrap_err().code,
            super::super::errors::ErrorCode::JsonParserError
        );
        assert!(
            parse_object(b"[1]")
                .unwrap_err()
                .message
                .contains("START_ARRAY")
        );
    }
}
