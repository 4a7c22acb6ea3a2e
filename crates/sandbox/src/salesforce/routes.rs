//! Paths under `/services/data`: the API version segment, the route each path names (with the
//! template counters group calls by), and the two resources that need no record access — the
//! versions list and a version's resource list.
//!
//! Paths are parsed here rather than by axum's router because Salesforce tolerates trailing
//! slashes (simple-salesforce sends `…/query/` and `…/sobjects/Contact/`), versions are a path
//! segment (`v62.0`), and counters want one route template per resource.
//!
//! Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_list.htm

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::dispatch::{Call, method_not_allowed};
use super::errors::SfErrors;
use super::state::Sandbox;
use super::wire;

/// An API version from the path, e.g. `v62.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersion {
    /// `62.0`.
    pub text: String,
    pub major: u32,
}

impl ApiVersion {
    pub fn parse(segment: &str) -> Option<Self> {
        let (major, minor) = segment.strip_prefix('v')?.split_once('.')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        (digits(major) && digits(minor)).then(|| Self {
            text: format!("{major}.{minor}"),
            major: major.parse().unwrap_or(0),
        })
    }
}

/// A resource under `/services/data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Versions,
    Resources,
    Limits,
    SObject {
        name: String,
    },
    SObjectRow {
        name: String,
        id: String,
    },
    SObjectExternal {
        name: String,
        field: String,
        value: String,
    },
    Query {
        all: bool,
    },
    QueryMore {
        locator: String,
    },
    Collection,
    CollectionTyped {
        name: String,
    },
    CollectionUpsert {
        name: String,
        field: String,
    },
    /// Bulk API 2.0 query jobs.
    QueryJobs,
    QueryJob {
        id: String,
    },
    QueryJobResults {
        id: String,
    },
    Unknown,
}

impl Route {
    /// The template counters group calls by.
    pub fn template(&self) -> &'static str {
        match self {
            Self::Versions => "/services/data",
            Self::Resources => "/services/data/{version}",
            Self::Limits => "/services/data/{version}/limits",
            Self::SObject { .. } => "/services/data/{version}/sobjects/{sobject}",
            Self::SObjectRow { .. } => "/services/data/{version}/sobjects/{sobject}/{id}",
            Self::SObjectExternal { .. } => {
                "/services/data/{version}/sobjects/{sobject}/{field}/{value}"
            }
            Self::Query { all: false } => "/services/data/{version}/query",
            Self::Query { all: true } => "/services/data/{version}/queryAll",
            Self::QueryMore { .. } => "/services/data/{version}/query/{locator}",
            Self::Collection => "/services/data/{version}/composite/sobjects",
            Self::CollectionTyped { .. } => "/services/data/{version}/composite/sobjects/{sobject}",
            Self::CollectionUpsert { .. } => {
                "/services/data/{version}/composite/sobjects/{sobject}/{field}"
            }
            Self::QueryJobs => "/services/data/{version}/jobs/query",
            Self::QueryJob { .. } => "/services/data/{version}/jobs/query/{jobId}",
            Self::QueryJobResults { .. } => "/services/data/{version}/jobs/query/{jobId}/results",
            Self::Unknown => "/services/data/(unknown)",
        }
    }
}

/// Splits a `/services/data…` path into its version and route; empty segments are ignored.
pub fn parse(path: &str) -> (Option<ApiVersion>, Route) {
    let rest = path.strip_prefix("/services/data").unwrap_or(path);
    let segs: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(wire::decode_segment)
        .collect();
    let Some((first, tail)) = segs.split_first() else {
        return (None, Route::Versions);
    };
    let Some(version) = ApiVersion::parse(first) else {
        return (None, Route::Unknown);
    };
    let s = |i: usize| tail[i].clone();
    let route = match tail
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => Route::Resources,
        ["limits"] => Route::Limits,
        ["sobjects", _] => Route::SObject { name: s(1) },
        ["sobjects", _, _] => Route::SObjectRow {
            name: s(1),
            id: s(2),
        },
        ["sobjects", _, _, _] => Route::SObjectExternal {
            name: s(1),
            field: s(2),
            value: s(3),
        },
        ["query"] => Route::Query { all: false },
        ["queryAll"] => Route::Query { all: true },
        ["query" | "queryAll", _] => Route::QueryMore { locator: s(1) },
        ["composite", "sobjects"] => Route::Collection,
        ["composite", "sobjects", _] => Route::CollectionTyped { name: s(2) },
        ["composite", "sobjects", _, _] => Route::CollectionUpsert {
            name: s(2),
            field: s(3),
        },
        ["jobs", "query"] => Route::QueryJobs,
        ["jobs", "query", _] => Route::QueryJob { id: s(2) },
        ["jobs", "query", _, "results"] => Route::QueryJobResults { id: s(2) },
        _ => Route::Unknown,
    };
    (Some(version), route)
}

/// `GET /services/data/vXX.X/`: the resources of a version.
pub fn resources(call: &Call<'_>) -> Result<Response, SfErrors> {
    if call.method != Method::GET {
        return Err(method_not_allowed(call.method, "GET,HEAD").into());
    }
    let base = format!("/services/data/v{}", call.version.text);
    let body = json!({
        "limits": format!("{base}/limits"),
        "query": format!("{base}/query"),
        "queryAll": format!("{base}/queryAll"),
        "sobjects": format!("{base}/sobjects"),
        "composite": format!("{base}/composite"),
        "jobs": format!("{base}/jobs"),
    });
    Ok(wire::json(StatusCode::OK, &body))
}

/// `GET /services/data/`: every version from 31.0 up to the configured one. No session needed
/// and not counted against the allowance, as in Salesforce.
pub fn versions(sb: &Sandbox, method: &Method) -> Response {
    if method != Method::GET {
        return method_not_allowed(method, "GET,HEAD").into_response();
    }
    let newest = ApiVersion::parse(&format!("v{}", sb.default_version)).map_or(62, |v| v.major);
    let list: Vec<_> = (31..=newest.max(31))
        .map(|major| json!({"label": release_label(major), "url": format!("/services/data/v{major}.0"), "version": format!("{major}.0")}))
        .collect();
    wire::json(StatusCode::OK, &list)
}

/// Release name of an API version: three releases a year, v62.0 being Winter '25.
fn release_label(major: u32) -> String {
    let offset = i64::from(major) - 62;
    let season = ["Winter", "Spring", "Summer"][offset.rem_euclid(3) as usize];
    format!("{season} '{:02}", 25 + offset.div_euclid(3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_with_and_without_trailing_slashes() {
        let (v, r) = parse("/services/data/v62.0/sobjects/Contact/");
        assert_eq!(v.unwrap().major, 62);
        assert_eq!(
            r,
            Route::SObject {
                name: "Contact".into()
            }
        );
        assert_eq!(parse("/services/data/").1, Route::Versions);
        assert_eq!(
            parse("/services/data/v45.0/query/").1,
            Route::Query { all: false }
        );
        assert_eq!(
            parse("/services/data/v62.0/sobjects/Contact/SyncRoot_Id__c/a%2Fb").1,
            Route::SObjectExternal {
                name: "Contact".into(),
                field: "SyncRoot_Id__c".into(),
                value: "a/b".into()
            }
        );
        assert_eq!(
            parse("/services/data/v62.0/composite/sobjects/Contact/Ext__c")
                .1
                .template(),
            "/services/data/{version}/composite/sobjects/{sobject}/{field}"
        );
        assert_eq!(parse("/services/data/62.0/limits"), (None, Route::Unknown));
    }

    #[test]
    fn release_labels_follow_the_calendar() {
        assert_eq!(release_label(62), "Winter '25");
        assert_eq!(release_label(61), "Summer '24");
        assert_eq!(release_label(59), "Winter '24");
        assert_eq!(release_label(66), "Spring '26");
    }
}
