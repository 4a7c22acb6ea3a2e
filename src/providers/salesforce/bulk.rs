//! Bulk API 2.0 query jobs, for reading a large org: create a job for a SOQL query, wait for
//! it to complete (polling its state with exponential backoff), and read its CSV results one
//! set at a time by locator.
//!
//! Every call goes through [`Rest`] (pacing, session, `Sforce-Limit-Info`, error
//! classification) like any other. CSV is parsed with the `csv` crate (RFC 4180: quoted
//! values, doubled quotes, line breaks inside quotes); an empty value is null, as Salesforce
//! writes nulls (it keeps an empty text as null, so nothing is lost). What it is not: deciding
//! when to use a job rather than SOQL pages (`reader.rs`).
//!
//! Vendor docs: https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/query_create_job.htm ,
//! …/query_get_one_job.htm , …/query_get_job_results.htm

use std::time::Duration;

use backon::BackoffBuilder as _;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};

use super::rest::{Request, Rest};
use super::wire::{LOCATOR_HEADER, NUMBER_OF_RECORDS_HEADER, QueryJobIn, QueryJobInfo};
use crate::providers::ProviderError;

/// How long to wait for a job, between state reads and in all.
#[derive(Clone, Copy, Debug)]
pub struct Polling {
    /// First wait after creating the job; doubles up to `max_interval`.
    pub first_interval: Duration,
    pub max_interval: Duration,
    /// Longest wait in all before giving up (a retryable `Unavailable`).
    pub max_wait: Duration,
}

/// Creates a `query` job (live records only) for `soql`; returns its id.
pub async fn create(rest: &Rest, soql: &str) -> Result<String, ProviderError> {
    let body = QueryJobIn {
        operation: "query",
        query: soql,
        content_type: "CSV",
        column_delimiter: "COMMA",
        line_ending: "LF",
    };
    let req = Request::new(Method::POST, "jobs/query").json(&body)?;
    let job: QueryJobInfo = rest.call(&req).await?;
    Ok(job.id)
}

/// Waits until job `id` is `JobComplete`, reading its state after each backoff step. A
/// `Failed` or `Aborted` job is a non-retryable [`ProviderError::Rejected`]
/// (`BULK_QUERY_FAILED`, `BULK_QUERY_ABORTED`): the read starts over with a new job.
pub async fn wait_complete(rest: &Rest, id: &str, polling: Polling) -> Result<(), ProviderError> {
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(polling.first_interval)
        .with_max_delay(polling.max_interval)
        .with_total_delay(Some(polling.max_wait))
        .without_max_times()
        .build();
    let path = format!("jobs/query/{id}");
    loop {
        let delay = delays.next();
        let Some(delay) = delay else {
            return Err(ProviderError::Unavailable(format!(
                "Bulk API query job {id} did not complete within {:?}",
                polling.max_wait
            )));
        };
        tokio::time::sleep(delay).await;
        let job: QueryJobInfo = rest.call(&Request::new(Method::GET, &path)).await?;
        match job.state.as_str() {
            "JobComplete" => {
                tracing::debug!(job = %id, records = job.number_records_processed, "Bulk API query job complete");
                return Ok(());
            }
            "Failed" | "Aborted" => {
                let why = job.error_message.unwrap_or_default();
                return Err(ProviderError::Rejected {
                    code: format!("BULK_QUERY_{}", job.state.to_uppercase()),
                    message: format!("Bulk API query job {id} ended {}: {why}", job.state),
                    retryable: false,
                });
            }
            _ => {}
        }
    }
}

/// One set of a job's results.
#[derive(Debug)]
pub struct ResultSet {
    /// Rows by column name; an empty value is null.
    pub records: Vec<Map<String, Value>>,
    /// The next set's locator; `None` after the last set.
    pub next_locator: Option<String>,
}

/// The results set at `locator` (`None`: the first) of completed job `id`, at most
/// `max_records` rows.
pub async fn results(
    rest: &Rest,
    id: &str,
    locator: Option<&str>,
    max_records: usize,
) -> Result<ResultSet, ProviderError> {
    let mut req = Request::new(Method::GET, format!("jobs/query/{id}/results"))
        .param("maxRecords", max_records.to_string());
    if let Some(locator) = locator {
        req = req.param("locator", locator);
    }
    let (headers, body) = rest.call_raw(&req).await?;
    let records = parse_csv(&body)?;
    if let Some(n) = header(&headers, NUMBER_OF_RECORDS_HEADER)
        && n.parse::<usize>().ok() != Some(records.len())
    {
        return Err(ProviderError::Decode(format!(
            "Bulk API results of job {id} announce {n} records in {NUMBER_OF_RECORDS_HEADER} but hold {}",
            records.len()
        )));
    }
    let next_locator = header(&headers, LOCATOR_HEADER)
        .filter(|l| !l.is_empty() && *l != "null")
        .map(str::to_owned);
    Ok(ResultSet {
        records,
        next_locator,
    })
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

/// Rows of comma-separated CSV with a header row, by column name; an empty value is null.
pub fn parse_csv(body: &[u8]) -> Result<Vec<Map<String, Value>>, ProviderError> {
    let undecodable =
        |e: csv::Error| ProviderError::Decode(format!("unreadable Bulk API CSV results: {e}"));
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body);
    let columns = reader.headers().map_err(undecodable)?.clone();
    let mut rows = Vec::new();
    for row in reader.records() {
        let row = row.map_err(undecodable)?;
        let record = columns
            .iter()
            .zip(row.iter())
            .map(|(name, value)| {
                let value = match value {
                    "" => Value::Null,
                    v => Value::String(v.to_owned()),
                };
                (name.to_owned(), value)
            })
            .collect();
        rows.push(record);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_values_are_unquoted_nulls_are_empty_and_quoted_breaks_stay_inside_a_value() {
        let body = b"\"Id\",\"Email\",\"Title\"\n\"003A\",\"a@x.com\",\"\"\n\"003B\",\"\",\"say \"\"hi\"\",\nthen, leave\"\n";
        let rows = parse_csv(body).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["Id"], json!("003A"));
        assert_eq!(rows[0]["Title"], Value::Null);
        assert_eq!(rows[1]["Email"], Value::Null);
        assert_eq!(rows[1]["Title"], json!("say \"hi\",\nthen, leave"));
    }

    #[test]
    fn a_header_alone_is_no_rows_and_crlf_line_endings_read_the_same() {
        assert!(parse_csv(b"\"Id\",\"Email\"\n").unwrap().is_empty());
        let rows = parse_csv(b"Id,Email\r\n003A,a@x.com\r\n").unwrap();
        assert_eq!(rows[0]["Email"], json!("a@x.com"));
    }

    #[test]
    fn a_row_with_a_missing_or_extra_value_is_refused() {
        for body in [
            &b"\"Id\",\"Email\"\n\"003A\"\n"[..],
            &b"\"Id\",\"Email\"\n\"003A\",\"a\",\"b\"\n"[..],
        ] {
            let e = parse_csv(body).unwrap_err();
            assert_eq!(e.code(), "DECODE", "{e}");
        }
    }
}
