//! `GET /query?q=` and `/queryAll?q=`: runs a SOQL query and pages the results 2,000 at a time
//! behind `nextRecordsUrl`, or `batchSize` at a time when the request carries
//! `Sforce-Query-Options: batchSize=N` (200 to 2,000; values outside are brought inside, as
//! Salesforce does not guarantee the size asked for anyway).
//!
//! `query` skips recycled records and `queryAll` includes them. What it is not: the grammar
//! (`soql.rs`) or the evaluation (`evaluate.rs`).
//!
//! Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_query.htm

use std::collections::VecDeque;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Serialize;

use super::dispatch::{Call, method_not_allowed};
use super::errors::{ErrorCode, SfError, SfErrors};
use super::evaluate::Plan;
use super::soql;
use super::state::lock;
use super::wire::Ordered;
use super::{ids, wire};

/// Records per page; Salesforce's default and largest batch size.
pub const PAGE_SIZE: usize = 2_000;
/// Smallest batch size `Sforce-Query-Options` can ask for.
const MIN_PAGE_SIZE: usize = 200;
/// Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_queryoptions.htm
const QUERY_OPTIONS_HEADER: &str = "sforce-query-options";
/// Open cursors kept; the oldest is forgotten beyond this.
const MAX_CURSORS: usize = 64;

/// Results not yet fetched, by query locator.
#[derive(Debug, Default)]
pub struct Cursors {
    next: u64,
    open: VecDeque<(String, Vec<Ordered>)>,
}

/// `GET /query` and `/queryAll`.
pub fn run(call: &Call<'_>, include_deleted: bool) -> Result<Response, SfErrors> {
    if *call.method != Method::GET {
        return Err(method_not_allowed(call.method, "GET,HEAD").into());
    }
    let q = call
        .param("q")
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| SfError::malformed_query("A query string has to be specified"))?;
    let query = soql::parse(&q)?;
    lock(&call.sb.counters).query(&query);
    let plan = Plan::new(&call.sb.schema, &query)?;
    let records = {
        let store = lock(&call.sb.store);
        plan.execute(&store, include_deleted, &call.version.text)
    };
    Ok(page(call, records, 0, None))
}

/// `GET /query/{locator}-{offset}`: the next page of an earlier query.
pub fn more(call: &Call<'_>, locator: &str) -> Result<Response, SfErrors> {
    let invalid = || SfError::new(ErrorCode::InvalidQueryLocator, "invalid query locator");
    let (id, offset) = locator.rsplit_once('-').ok_or_else(invalid)?;
    let offset: usize = offset.parse().map_err(|_| invalid())?;
    let records = {
        let cursors = lock(&call.sb.cursors);
        let (_, records) = cursors
            .open
            .iter()
            .find(|(l, _)| l == id)
            .ok_or_else(invalid)?;
        records.clone()
    };
    if offset > records.len() {
        return Err(invalid().into());
    }
    Ok(page(call, records, offset, Some(id.to_string())))
}

/// One page of query results. Vendor doc: see the module header.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueryOut<'a> {
    total_size: usize,
    done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_records_url: Option<String>,
    records: &'a [Ordered],
}

/// Answers one page; opens a cursor when more remain.
fn page(
    call: &Call<'_>,
    records: Vec<Ordered>,
    offset: usize,
    locator: Option<String>,
) -> Response {
    let total = records.len();
    let end = total.min(offset + page_size(call.headers));
    let slice = records[offset..end].to_vec();
    let next_records_url = (end < total).then(|| {
        let locator = locator.unwrap_or_else(|| open_cursor(call, records));
        format!(
            "/services/data/v{}/query/{locator}-{end}",
            call.version.text
        )
    });
    let body = QueryOut {
        total_size: total,
        done: end == total,
        next_records_url,
        records: &slice,
    };
    wire::json(StatusCode::OK, &body)
}

/// The batch size a request asks for with `Sforce-Query-Options: batchSize=N`, within
/// Salesforce's bounds; [`PAGE_SIZE`] when it asks for none.
fn page_size(headers: &axum::http::HeaderMap) -> usize {
    let asked = headers
        .get(QUERY_OPTIONS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .filter_map(|o| o.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("batchSize"))
                .and_then(|(_, n)| n.trim().parse::<usize>().ok())
        });
    asked.map_or(PAGE_SIZE, |n| n.clamp(MIN_PAGE_SIZE, PAGE_SIZE))
}

fn open_cursor(call: &Call<'_>, records: Vec<Ordered>) -> String {
    let mut cursors = lock(&call.sb.cursors);
    cursors.next += 1;
    let locator = ids::mint(ids::QUERY_LOCATOR_PREFIX, cursors.next);
    if cursors.open.len() == MAX_CURSORS {
        cursors.open.pop_front();
    }
    cursors.open.push_back((locator.clone(), records));
    locator
}
