//! What both sandboxes' `POST /__sandbox/seed` share: reading the body (a JSON array of
//! records in the CRM's own field names), the creation and modification times each seeded
//! record gets, and the answer.
//!
//! Seeding is how a test or a benchmark gives a sandbox a realistic population (tens of
//! thousands of records) in seconds: records go straight into the store under one lock,
//! all or nothing, without webhooks or notifications, without counting as API calls and
//! without entering the write log. What it is not: any vendor's validation, which each
//! sandbox's store applies to every seeded record as it does to API writes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};

use super::control;

/// Largest seed body, in bytes: 50,000 realistic contacts take about 8 MB.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Most records one seed call takes.
pub const MAX_RECORDS: usize = 250_000;
/// At most this many problems are listed when records are refused.
const MAX_PROBLEMS: usize = 20;
/// Seeded records were created over the year before the seed call.
const SPAN_DAYS: i64 = 365;

/// Why a seed call was refused: every problem found, answered as the control API's `400`.
#[derive(Debug)]
pub struct Refused(Vec<String>);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        control::problems(self.0)
    }
}

fn refused(problem: impl Into<String>) -> Refused {
    Refused(vec![problem.into()])
}

/// The records of a seed body, each a JSON object.
pub fn parse(body: &[u8]) -> Result<Vec<Map<String, Value>>, Refused> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| refused(format!("the body is not JSON: {e}")))?;
    let Value::Array(items) = value else {
        return Err(refused("the body must be a JSON array of records"));
    };
    if items.len() > MAX_RECORDS {
        return Err(refused(format!(
            "{} records in one seed call; at most {MAX_RECORDS}",
            items.len()
        )));
    }
    let mut records = Vec::with_capacity(items.len());
    let mut problems = Problems::default();
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::Object(map) => records.push(map),
            other => problems.push(i, format!("is a JSON {}, not an object", kind(&other))),
        }
    }
    problems.into_result(records)
}

/// When the `index`-th of `count` seeded records was created and last modified: creations
/// spread evenly over the year before `now`, in index order (so ids and creation dates agree),
/// and each modification somewhere between its creation and `now`, spread deterministically so
/// that a date filter splits the population the same way every run.
pub fn times(index: usize, count: usize, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let span_ms = Duration::days(SPAN_DAYS).num_milliseconds();
    let (index, count) = (index as i64, count.max(1) as i64);
    let created = now - Duration::milliseconds(span_ms - span_ms * index / count);
    // Knuth's multiplicative hash spreads consecutive indices over 0..1000.
    let permille = index.wrapping_mul(2_654_435_761).rem_euclid(1000);
    let modified =
        created + Duration::milliseconds((now - created).num_milliseconds() * permille / 1000);
    (created, modified)
}

/// `201 {"created": n, "ids": [...]}`: the ids in the order of the records sent.
pub fn created(ids: Vec<String>) -> Response {
    let body = json!({"created": ids.len(), "ids": ids});
    (StatusCode::CREATED, Json(body)).into_response()
}

/// Problems with individual records, the first [`MAX_PROBLEMS`] listed.
#[derive(Debug, Default)]
pub struct Problems {
    listed: Vec<String>,
    total: usize,
}

impl Problems {
    /// Records that record `index` was refused, and why.
    pub fn push(&mut self, index: usize, why: impl std::fmt::Display) {
        self.total += 1;
        if self.listed.len() < MAX_PROBLEMS {
            self.listed.push(format!("record {index} {why}"));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// `Ok(value)` when no record was refused; else the refusal listing them (nothing seeded).
    pub fn into_result<T>(mut self, value: T) -> Result<T, Refused> {
        if self.total == 0 {
            return Ok(value);
        }
        if self.total > self.listed.len() {
            let more = self.total - self.listed.len();
            self.listed.push(format!("and {more} more records refused"));
        }
        Err(Refused(self.listed))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_spread_creations_over_the_past_year_in_order_and_modify_after_creation() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let n = 50_000;
        let mut last_created = now - Duration::days(SPAN_DAYS + 1);
        let mut modified_set = std::collections::HashSet::new();
        for i in 0..n {
            let (created, modified) = times(i, n, now);
            assert!(
                created >= last_created,
                "record {i} created before {}",
                i - 1
            );
            assert!(created >= now - Duration::days(SPAN_DAYS) && created < now);
            assert!(modified >= created && modified <= now, "record {i}");
            last_created = created;
            modified_set.insert(modified);
        }
        assert!(modified_set.len() > n / 2, "modification times are spread");
    }

    #[test]
    fn a_body_that_is_not_an_array_of_objects_is_refused_naming_each_record() {
        assert!(parse(b"{}").is_err());
        assert!(parse(b"nope").is_err());
        assert_eq!(parse(b"[{\"a\":1},{}]").map(|r| r.len()).ok(), Some(2));
        let refused = parse(b"[{}, 3, \"x\"]").unwrap_err().into_response();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    }
}
