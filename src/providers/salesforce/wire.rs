//! Salesforce's request and response bodies as this client sends and reads them, and the
//! `Sforce-Limit-Info` header.
//!
//! What it is: plain serde types, each linked to the page that documents it. What it is not:
//! any decision about what a response means (that is `errors.rs`) or how SyncRoot's contacts
//! become records (`transformers.rs`). Nothing here leaves the `salesforce` folder.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The only sObject type SyncRoot writes.
pub const CONTACT: &str = "Contact";

/// Response header carrying the org's daily usage, `api-usage=USED/MAX`.
pub const LIMIT_INFO_HEADER: &str = "Sforce-Limit-Info";

/// Request header naming the calling client, e.g. `client=syncroot`.
pub const CALL_OPTIONS_HEADER: &str = "Sforce-Call-Options";

/// A successful client-credentials token response; the other documented members (`id`,
/// `issued_at`, `signature`, …) are not needed. There is no `expires_in`: a session lives
/// until it has been idle for the connected app's timeout.
///
/// No `Debug`: the token must never reach a log.
///
/// Vendor doc: https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_client_credentials_flow.htm
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    /// Base URL of every REST call made with this token.
    pub instance_url: String,
}

/// The OAuth endpoint's error body, e.g. `{"error":"invalid_client","error_description":…}`.
///
/// Vendor doc: the client-credentials page linked on [`TokenResponse`]; the shape is the
/// one observed in real responses (crm-apis.md §2.1).
#[derive(Debug, Deserialize)]
pub struct OAuthError {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
}

/// One entry of a top-level REST error body, which is a JSON array of these.
///
/// Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm
#[derive(Debug, Deserialize)]
pub struct RestError {
    #[serde(rename = "errorCode")]
    pub error_code: String,
    #[serde(default)]
    pub message: String,
}

/// The body of an sObject Collections create, update or upsert.
///
/// Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections.htm
#[derive(Debug, Serialize)]
pub struct CollectionWrite<'a> {
    /// Always false: one bad record must not roll back the others.
    #[serde(rename = "allOrNone")]
    pub all_or_none: bool,
    pub records: &'a [Map<String, Value>],
}

/// The result of one record of a collection request: SaveResult, UpsertResult and
/// DeleteResult share this shape. Results come back in input order, with HTTP 200 even when
/// items failed.
///
/// Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections.htm
#[derive(Debug, Deserialize)]
pub struct SaveResult {
    /// The record's id; absent when a create or upsert failed.
    #[serde(default)]
    pub id: Option<String>,
    pub success: bool,
    #[serde(default)]
    pub errors: Vec<ItemError>,
    /// Upserts only (API 46.0+): whether the record was created rather than updated.
    #[serde(default)]
    pub created: Option<bool>,
}

/// A per-record error inside collection results. Note `statusCode`, where top-level errors
/// say `errorCode`.
///
/// Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections.htm
#[derive(Debug, Clone, Deserialize)]
pub struct ItemError {
    #[serde(rename = "statusCode")]
    pub status_code: String,
    #[serde(default)]
    pub message: String,
    /// API names of the fields the error is about.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// One page of SOQL results.
///
/// Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_query.htm
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryPage {
    /// Records the whole query matches, over every page.
    #[serde(default)]
    pub total_size: u64,
    pub done: bool,
    /// Path of the next page (`/services/data/vXX.X/query/…`) while `done` is false.
    #[serde(default)]
    pub next_records_url: Option<String>,
    pub records: Vec<Map<String, Value>>,
}

/// The body of `POST /jobs/query`: a Bulk API 2.0 query job, results as comma-separated CSV
/// with LF line endings.
///
/// Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/query_create_job.htm
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryJobIn<'a> {
    /// `query` (live records) or `queryAll` (recycled ones too).
    pub operation: &'static str,
    pub query: &'a str,
    pub content_type: &'static str,
    pub column_delimiter: &'static str,
    pub line_ending: &'static str,
}

/// A Bulk API 2.0 query job as creating it or reading its state answers (only what this client
/// reads). `state` is `UploadComplete`, `InProgress`, `JobComplete`, `Failed` or `Aborted`.
///
/// Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/query_get_one_job.htm
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryJobInfo {
    pub id: String,
    pub state: String,
    #[serde(default)]
    pub number_records_processed: u64,
    /// Why a `Failed` job failed.
    #[serde(default)]
    pub error_message: Option<String>,
}

/// Response headers of a query job's results: how many records this set holds, and the
/// locator of the next set (`null` after the last).
///
/// Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/query_get_job_results.htm
pub const NUMBER_OF_RECORDS_HEADER: &str = "Sforce-NumberOfRecords";
pub const LOCATOR_HEADER: &str = "Sforce-Locator";

/// A text field of a query record, `None` when null, empty or absent. Salesforce matches
/// field names case-insensitively, so the lookup does too.
pub fn text_field<'r>(record: &'r Map<String, Value>, name: &str) -> Option<&'r str> {
    record
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
        .filter(|s| !s.is_empty())
}

/// A REST date-time such as `2024-03-05T08:00:00.000+0000` (crm-apis.md §2.3: the offset has
/// no colon, so it is not RFC 3339); RFC 3339 (`…Z`, `+00:00`) is read too.
pub fn parse_datetime(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .or_else(|_| DateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `(used, max)` from a `Sforce-Limit-Info` value such as
/// `api-usage=18/5000, per-app-api-usage=17/250(appName=sample-app)`.
///
/// Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_api_usage.htm
pub fn parse_limit_info(value: &str) -> Option<(u64, u64)> {
    let usage = value
        .split(',')
        .find_map(|part| part.trim().strip_prefix("api-usage="))?;
    let (used, max) = usage.split_once('/')?;
    Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limit_info_is_read_from_the_api_usage_part() {
        assert_eq!(
            parse_limit_info("api-usage=10018/100000"),
            Some((10018, 100000))
        );
        assert_eq!(
            parse_limit_info("per-app-api-usage=17/250(appName=x), api-usage=18/5000"),
            Some((18, 5000))
        );
        for bad in [
            "",
            "api-usage=",
            "api-usage=1",
            "api-usage=a/2",
            "usage=1/2",
        ] {
            assert_eq!(parse_limit_info(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rest_date_times_read_with_or_without_a_colon_in_the_offset() {
        let want: DateTime<Utc> = "2024-03-05T08:00:00Z".parse().unwrap();
        for raw in [
            "2024-03-05T08:00:00.000+0000",
            "2024-03-05T09:00:00.000+0100",
            "2024-03-05T08:00:00.000Z",
            "2024-03-05T08:00:00+00:00",
        ] {
            assert_eq!(parse_datetime(raw), Some(want), "{raw}");
        }
        for bad in ["", "2024-03-05", "2024-03-05T08:00:00", "yesterday"] {
            assert_eq!(parse_datetime(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn results_and_errors_read_as_documented() {
        let results: Vec<SaveResult> = serde_json::from_value(json!([
            {"id": "003A", "success": true, "errors": [], "created": true},
            {"success": false, "errors": [{"statusCode": "DUPLICATES_DETECTED",
                "message": "Use one of these records?", "fields": []}]}
        ]))
        .unwrap();
        assert_eq!(results[0].created, Some(true));
        assert_eq!(results[1].errors[0].status_code, "DUPLICATES_DETECTED");
        let record = json!({"Id": "003A", "email": "a@b.co", "Ext__c": null})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(text_field(&record, "Email"), Some("a@b.co"));
        assert_eq!(text_field(&record, "ext__c"), None);
    }
}
