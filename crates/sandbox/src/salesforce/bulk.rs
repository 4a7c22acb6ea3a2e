//! Bulk API 2.0 query jobs: `POST /jobs/query` creates a job for a SOQL query, `GET
//! /jobs/query/{id}` reports its state, `GET /jobs/query/{id}/results` pages its CSV results by
//! locator, `PATCH` with `{"state": "Aborted"}` aborts it and `DELETE` removes it.
//!
//! The query runs when the job is created (the sandbox's SOQL evaluator, `evaluate.rs`) and its
//! rows are kept with the job, so results never change while they are paged. A job reports
//! `UploadComplete` when created, then `InProgress` for the next
//! [`JobSettings::polls_in_progress`] state reads, then `JobComplete` (or `Failed` when the
//! control API asked for it), so clients poll as they must against a real org. Every call goes
//! through the REST pipeline (`dispatch.rs`), so it is counted and spends the allowance.
//!
//! CSV results: every value quoted, `"` doubled, a null as an empty value (Salesforce keeps an
//! empty text as null), date-times as `2024-03-05T08:00:00.000Z`, the header row in every set
//! (simple-salesforce parses each set on its own), columns in the order the query names them
//! (API 50.0 and later).
//!
//! Vendor docs: https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/query_create_job.htm ,
//! …/query_get_one_job.htm , …/query_get_job_results.htm , …/query_abort_job.htm ,
//! …/query_delete_job.htm

use std::collections::VecDeque;

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::dispatch::{Call, method_not_allowed};
use super::errors::{ErrorCode, SfError, SfErrors};
use super::evaluate::Plan;
use super::record::{self, Flavour};
use super::state::lock;
use super::{ids, soql, wire};

/// Records per result set when the request names no `maxRecords` [UNVERIFIED: Salesforce
/// picks its own default, bounded by size; simple-salesforce asks for 50,000].
const DEFAULT_MAX_RECORDS: usize = 50_000;
/// Jobs kept; the oldest is forgotten beyond this (Salesforce keeps them for 7 days).
const MAX_JOBS: usize = 64;
/// Key prefix of a job id (`750…`, as in the docs' examples).
const JOB_PREFIX: &str = "750";

/// How new jobs behave; set through `PUT /__sandbox/bulk-query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSettings {
    /// State reads that answer `InProgress` before a job completes.
    #[serde(default = "one")]
    pub polls_in_progress: u32,
    /// New jobs end `Failed` instead of `JobComplete`.
    #[serde(default)]
    pub fail: bool,
}

fn one() -> u32 {
    1
}

/// The org's query jobs.
#[derive(Debug)]
pub struct Jobs {
    next: u64,
    jobs: VecDeque<Job>,
    pub settings: JobSettings,
}

impl Default for Jobs {
    fn default() -> Self {
        Self {
            next: 0,
            jobs: VecDeque::new(),
            settings: JobSettings {
                polls_in_progress: 1,
                fail: false,
            },
        }
    }
}

#[derive(Debug)]
struct Job {
    info: JobInfo,
    /// Column names, then one row of CSV cells per record.
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    polls_left: u32,
    fail: bool,
    /// The API version the job was created with; results must be read with the same one.
    version: String,
}

/// A job as `GET /jobs/query/{id}` shows it. Vendor doc: `query_get_one_job.htm`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct JobInfo {
    id: String,
    operation: String,
    object: String,
    created_by_id: String,
    created_date: String,
    system_modstamp: String,
    state: &'static str,
    concurrency_mode: &'static str,
    content_type: &'static str,
    api_version: f64,
    job_type: &'static str,
    line_ending: String,
    column_delimiter: String,
    number_records_processed: usize,
    retries: u32,
    total_processing_time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
}

/// The body of `POST /jobs/query`. Vendor doc: `query_create_job.htm`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateIn {
    operation: Option<String>,
    query: Option<String>,
    content_type: Option<String>,
    column_delimiter: Option<String>,
    line_ending: Option<String>,
}

/// `POST /jobs/query` (create) and `GET` (not served: listing jobs is left out).
pub fn jobs(call: &Call<'_>) -> Result<Response, SfErrors> {
    if *call.method != Method::POST {
        return Err(method_not_allowed(call.method, "POST").into());
    }
    let body: CreateIn = serde_json::from_slice(call.body).map_err(SfError::json_parser)?;
    let operation = body.operation.unwrap_or_default();
    let include_deleted = match operation.as_str() {
        "query" => false,
        "queryAll" => true,
        other => {
            return Err(
                invalid_job(format!("Invalid operation '{other}'; query or queryAll")).into(),
            );
        }
    };
    if body.content_type.as_deref().is_some_and(|c| c != "CSV") {
        return Err(invalid_job("contentType must be CSV").into());
    }
    let delimiter = body.column_delimiter.unwrap_or_else(|| "COMMA".into());
    if delimiter_char(&delimiter).is_none() {
        return Err(invalid_job(format!("Invalid columnDelimiter '{delimiter}'")).into());
    }
    let line_ending = body.line_ending.unwrap_or_else(|| "LF".into());
    if !matches!(line_ending.as_str(), "LF" | "CRLF") {
        return Err(invalid_job(format!("Invalid lineEnding '{line_ending}'")).into());
    }
    let q = body
        .query
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| invalid_job("A query is required for a query job"))?;
    let plan = Plan::new(&call.sb.schema, &soql::parse(&q)?)?;
    if plan.has_offset() {
        return Err(
            SfError::malformed_query("OFFSET is not supported by Bulk API 2.0 query").into(),
        );
    }
    let header: Vec<String> = plan.selected().iter().map(|d| d.name.clone()).collect();
    let rows: Vec<Vec<String>> = {
        let store = lock(&call.sb.store);
        plan.matching(&store, include_deleted)
            .into_iter()
            .map(|c| {
                let cells = plan.selected().iter();
                cells
                    .map(|d| cell(record::value(c, d, Flavour::Event)))
                    .collect()
            })
            .collect()
    };
    let now = wire::rest_datetime(wire::now_seconds());
    let mut jobs = lock(&call.sb.bulk_jobs);
    jobs.next += 1;
    let info = JobInfo {
        id: ids::mint(JOB_PREFIX, jobs.next),
        operation,
        object: "Contact".into(),
        created_by_id: call.sb.integration_user.clone(),
        created_date: now.clone(),
        system_modstamp: now,
        state: "UploadComplete",
        concurrency_mode: "Parallel",
        content_type: "CSV",
        api_version: call.version.text.parse().unwrap_or(0.0),
        job_type: "V2Query",
        line_ending,
        column_delimiter: delimiter,
        number_records_processed: 0,
        retries: 0,
        total_processing_time: 0,
        error_message: None,
    };
    let job = Job {
        info: info.clone(),
        header,
        rows,
        polls_left: jobs.settings.polls_in_progress,
        fail: jobs.settings.fail,
        version: call.version.text.clone(),
    };
    if jobs.jobs.len() == MAX_JOBS {
        jobs.jobs.pop_front();
    }
    jobs.jobs.push_back(job);
    Ok(wire::json(StatusCode::OK, &info))
}

/// `GET` (state), `PATCH` (abort) and `DELETE` of `/jobs/query/{id}`.
pub fn job(call: &Call<'_>, id: &str) -> Result<Response, SfErrors> {
    let mut jobs = lock(&call.sb.bulk_jobs);
    let at = position(&jobs.jobs, id)?;
    match *call.method {
        Method::GET => {
            let job = &mut jobs.jobs[at];
            advance(job);
            Ok(wire::json(StatusCode::OK, &job.info))
        }
        Method::PATCH => {
            #[derive(Deserialize)]
            struct StateIn {
                state: Option<String>,
            }
            let body: StateIn = serde_json::from_slice(call.body).map_err(SfError::json_parser)?;
            if body.state.as_deref() != Some("Aborted") {
                return Err(invalid_job("A query job can only be set to the state Aborted").into());
            }
            let job = &mut jobs.jobs[at];
            if matches!(job.info.state, "JobComplete" | "Failed" | "Aborted") {
                let msg = format!("Job {id} is {} and cannot be aborted", job.info.state);
                return Err(SfError::new(ErrorCode::InvalidJobState, msg).into());
            }
            job.info.state = "Aborted";
            job.info.system_modstamp = wire::rest_datetime(wire::now_seconds());
            Ok(wire::json(StatusCode::OK, &job.info))
        }
        Method::DELETE => {
            jobs.jobs.remove(at);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(method_not_allowed(call.method, "GET,PATCH,DELETE").into()),
    }
}

/// `GET /jobs/query/{id}/results[?locator=&maxRecords=]`: one set of CSV rows, with
/// `Sforce-NumberOfRecords` and `Sforce-Locator` (the next set's locator, or `null`).
pub fn results(call: &Call<'_>, id: &str) -> Result<Response, SfErrors> {
    if *call.method != Method::GET {
        return Err(method_not_allowed(call.method, "GET").into());
    }
    let jobs = lock(&call.sb.bulk_jobs);
    let job = &jobs.jobs[position(&jobs.jobs, id)?];
    if job.info.state != "JobComplete" {
        let msg = format!(
            "Job {id} is {}; results are available once it is JobComplete",
            job.info.state
        );
        return Err(SfError::new(ErrorCode::InvalidJobState, msg).into());
    }
    if job.version != call.version.text {
        let msg = format!("Job {id} was created with API version {}", job.version);
        let e = SfError::new(ErrorCode::InvalidJobState, msg).with_status(StatusCode::CONFLICT);
        return Err(e.into());
    }
    let max = match call.param("maxRecords") {
        None => DEFAULT_MAX_RECORDS,
        Some(raw) => raw
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                invalid_job(format!("maxRecords must be a positive number, not '{raw}'"))
            })?,
    };
    let start = match call
        .param("locator")
        .filter(|l| !l.is_empty() && l != "null")
    {
        None => 0,
        Some(l) => decode_locator(&l)
            .filter(|n| *n <= job.rows.len())
            .ok_or_else(|| {
                SfError::new(
                    ErrorCode::InvalidQueryLocator,
                    format!("invalid locator: {l}"),
                )
            })?,
    };
    let end = job.rows.len().min(start.saturating_add(max));
    let body = csv(job, &job.rows[start..end]);
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv"));
    h.insert("sforce-numberofrecords", HeaderValue::from(end - start));
    let next = if end < job.rows.len() {
        encode_locator(end)
    } else {
        "null".into()
    };
    if let Ok(v) = HeaderValue::from_str(&next) {
        h.insert("sforce-locator", v);
    }
    Ok(resp)
}

/// A job's state moves on as clients read it: `InProgress` while polls are left, then its end.
fn advance(job: &mut Job) {
    match job.info.state {
        "UploadComplete" | "InProgress" if job.polls_left > 0 => {
            job.polls_left -= 1;
            job.info.state = "InProgress";
        }
        "UploadComplete" | "InProgress" if job.fail => {
            job.info.state = "Failed";
            job.info.error_message =
                Some("The query job failed (set through the sandbox control API)".into());
        }
        "UploadComplete" | "InProgress" => {
            job.info.state = "JobComplete";
            job.info.number_records_processed = job.rows.len();
        }
        _ => return,
    }
    job.info.system_modstamp = wire::rest_datetime(wire::now_seconds());
}

fn position(jobs: &VecDeque<Job>, id: &str) -> Result<usize, SfError> {
    jobs.iter()
        .position(|j| j.info.id == id || j.info.id[..15] == *id)
        .ok_or_else(SfError::not_found)
}

fn invalid_job(message: impl Into<String>) -> SfError {
    SfError::new(ErrorCode::InvalidJob, message)
}

/// A locator is the offset of the set it starts, base64-encoded (the docs' example locator
/// `MTAwMDA` is `10000`); clients treat it as opaque.
fn encode_locator(offset: usize) -> String {
    STANDARD_NO_PAD.encode(offset.to_string())
}

fn decode_locator(locator: &str) -> Option<usize> {
    let bytes = STANDARD_NO_PAD.decode(locator.trim_end_matches('=')).ok()?;
    std::str::from_utf8(&bytes).ok()?.parse().ok()
}

/// The column delimiter a `columnDelimiter` value names.
fn delimiter_char(name: &str) -> Option<char> {
    Some(match name {
        "COMMA" => ',',
        "TAB" => '\t',
        "PIPE" => '|',
        "SEMICOLON" => ';',
        "CARET" => '^',
        "BACKQUOTE" => '`',
        _ => return None,
    })
}

/// One CSV cell's text: null is empty.
fn cell(v: Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// The header row and `rows`, every value quoted, in the job's delimiter and line ending.
fn csv(job: &Job, rows: &[Vec<String>]) -> String {
    let delimiter = delimiter_char(&job.info.column_delimiter).unwrap_or(',');
    let eol = if job.info.line_ending == "CRLF" {
        "\r\n"
    } else {
        "\n"
    };
    let mut out = String::new();
    for row in std::iter::once(&job.header).chain(rows) {
        for (i, value) in row.iter().enumerate() {
            if i > 0 {
                out.push(delimiter);
            }
            out.push('"');
            out.push_str(&value.replace('"', "\"\""));
            out.push('"');
        }
        out.push_str(eol);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locators_round_trip_and_match_the_docs_example() {
        assert_eq!(encode_locator(10_000), "MTAwMDA");
        assert_eq!(decode_locator("MTAwMDA"), Some(10_000));
        assert_eq!(decode_locator("not a locator!"), None);
    }

    #[test]
    fn csv_quotes_every_value_and_doubles_quotes() {
        let job = Job {
            info: JobInfo {
                id: "750000000000001AAA".into(),
                operation: "query".into(),
                object: "Contact".into(),
                created_by_id: String::new(),
                created_date: String::new(),
                system_modstamp: String::new(),
                state: "JobComplete",
                concurrency_mode: "Parallel",
                content_type: "CSV",
                api_version: 62.0,
                job_type: "V2Query",
                line_ending: "CRLF".into(),
                column_delimiter: "COMMA".into(),
                number_records_processed: 1,
                retries: 0,
                total_processing_time: 0,
                error_message: None,
            },
            header: vec!["Id".into(), "Title".into()],
            rows: vec![],
            polls_left: 0,
            fail: false,
            version: "62.0".into(),
        };
        let rows = vec![vec![
            "003A".to_owned(),
            "say \"hi\", then\nleave".to_owned(),
        ]];
        assert_eq!(
            csv(&job, &rows),
            "\"Id\",\"Title\"\r\n\"003A\",\"say \"\"hi\"\", then\nleave\"\r\n"
        );
    }
}
