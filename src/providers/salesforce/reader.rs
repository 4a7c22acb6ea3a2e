//! Reading every live Contact, page by page, with a position a job can store.
//!
//! The read starts with one SOQL page, `SELECT <read fields> FROM Contact ORDER BY Id` (2,000
//! records). Its `totalSize` says how large the org is: up to the Bulk threshold the read goes
//! on with `queryMore` along `nextRecordsUrl`; above it, the first page is set aside and a Bulk
//! API 2.0 query job reads the org instead (`bulk.rs`), its results paged by locator, which
//! costs one call per [`ReadSettings::bulk_page_records`] records instead of one per 2,000.
//!
//! Positions:
//! * `soql:<last Id read>:<nextRecordsUrl>`. A query locator expires after about 15 minutes
//!   idle (`INVALID_QUERY_LOCATOR`); the read then resumes with
//!   `… WHERE Id > '<last Id>' ORDER BY Id`, which is why the SOQL path orders by `Id`.
//! * `bulk:<job id>:<locator>`: the job's next results set; a job lives about 7 days.
//!
//! The `query` resource and `query` jobs leave recycled records out. What it is not: the
//! calls themselves (`rest.rs`, `bulk.rs`) or what a record means (`transformers.rs`).
//!
//! Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_query.htm

use std::time::Duration;

use serde_json::{Map, Value};

use super::bulk::{self, Polling};
use super::rest::Rest;
use super::soql;
use super::transformers::{self, RecordShape};
use super::wire::{QueryPage, text_field};
use crate::providers::ProviderError;
use crate::providers::reading::{ReadPage, ReadPosition, invalid_position};

/// How a full read reads an org.
#[derive(Clone, Debug)]
pub struct ReadSettings {
    /// Above this many live Contacts, read with a Bulk API 2.0 query job; `None` reads with
    /// SOQL pages whatever the size.
    pub bulk_threshold: Option<u64>,
    /// Records per Bulk API results set (`maxRecords`). Each set is read whole into memory,
    /// and a response body is capped at 8 MiB, so keep it at a size those fit comfortably.
    pub bulk_page_records: usize,
    /// Waiting for a query job to complete.
    pub bulk_polling: Polling,
}

impl Default for ReadSettings {
    fn default() -> Self {
        Self {
            bulk_threshold: Some(100_000),
            bulk_page_records: 10_000,
            bulk_polling: Polling {
                first_interval: Duration::from_secs(1),
                max_interval: Duration::from_secs(30),
                max_wait: Duration::from_secs(30 * 60),
            },
        }
    }
}

/// Where a read stands, as its text says.
#[derive(Debug, PartialEq, Eq)]
enum Position<'p> {
    Start,
    Soql { last_id: &'p str, next: &'p str },
    Bulk { job: &'p str, locator: &'p str },
}

/// The page at `from` (`None`: the first).
pub async fn page(
    rest: &Rest,
    shape: RecordShape<'_>,
    settings: &ReadSettings,
    from: Option<&ReadPosition>,
) -> Result<ReadPage, ProviderError> {
    let fields = transformers::read_fields(shape);
    match from.map(parse).transpose()?.unwrap_or(Position::Start) {
        Position::Start => {
            let first = rest.query_page(&select(&fields, None)).await?;
            match settings.bulk_threshold {
                Some(limit) if first.total_size > limit => {
                    let soql = format!("SELECT {} FROM Contact", fields.join(", "));
                    let job = bulk::create(rest, &soql).await?;
                    bulk::wait_complete(rest, &job, settings.bulk_polling).await?;
                    bulk_page(rest, shape, settings, &job, None).await
                }
                _ => soql_page(shape, first),
            }
        }
        Position::Soql { last_id, next } => match rest.query_more(next).await {
            Err(ProviderError::Rejected { code, .. }) if code == "INVALID_QUERY_LOCATOR" => {
                tracing::info!(%last_id, "query locator expired; resuming after the last Id read");
                let again = rest.query_page(&select(&fields, Some(last_id))).await?;
                soql_page(shape, again)
            }
            answer => soql_page(shape, answer?),
        },
        Position::Bulk { job, locator } => {
            bulk_page(rest, shape, settings, job, Some(locator)).await
        }
    }
}

/// `SELECT <fields> FROM Contact [WHERE Id > '<after>'] ORDER BY Id`. `after` has been
/// checked to be a record id, and is quoted as a literal besides.
fn select(fields: &[String], after: Option<&str>) -> String {
    let filter = after.map_or(String::new(), |id| {
        format!(" WHERE Id > {}", soql::literal(id))
    });
    format!(
        "SELECT {} FROM Contact{filter} ORDER BY Id",
        fields.join(", ")
    )
}

fn soql_page(shape: RecordShape<'_>, page: QueryPage) -> Result<ReadPage, ProviderError> {
    let records = map_records(shape, &page.records)?;
    let last_id = page.records.last().and_then(|r| text_field(r, "Id"));
    let next = match (page.done, page.next_records_url.as_deref(), last_id) {
        (false, Some(next), Some(last_id)) => {
            Some(ReadPosition::new(format!("soql:{last_id}:{next}")))
        }
        (false, _, _) => {
            return Err(ProviderError::Decode(
                "a query page that is not done has no nextRecordsUrl or no records".into(),
            ));
        }
        (true, _, _) => None,
    };
    Ok(ReadPage { records, next })
}

async fn bulk_page(
    rest: &Rest,
    shape: RecordShape<'_>,
    settings: &ReadSettings,
    job: &str,
    locator: Option<&str>,
) -> Result<ReadPage, ProviderError> {
    let set = bulk::results(rest, job, locator, settings.bulk_page_records).await?;
    let records = map_records(shape, &set.records)?;
    let next = set
        .next_locator
        .map(|l| ReadPosition::new(format!("bulk:{job}:{l}")));
    Ok(ReadPage { records, next })
}

fn map_records(
    shape: RecordShape<'_>,
    records: &[Map<String, Value>],
) -> Result<Vec<crate::providers::RemoteRecord>, ProviderError> {
    records
        .iter()
        .map(|r| transformers::remote_record(shape, r).map_err(ProviderError::Decode))
        .collect()
}

/// Reads a position this module wrote. Ids must be record ids and the next-page URL a query
/// path, so nothing else ever reaches a query or a URL.
fn parse(position: &ReadPosition) -> Result<Position<'_>, ProviderError> {
    let text = position.as_str();
    let parsed = if let Some(rest) = text.strip_prefix("soql:") {
        rest.split_once(':')
            .filter(|(id, next)| soql::is_record_id(id) && is_query_path(next))
            .map(|(last_id, next)| Position::Soql { last_id, next })
    } else if let Some(rest) = text.strip_prefix("bulk:") {
        rest.split_once(':')
            .filter(|(job, locator)| soql::is_record_id(job) && is_locator(locator))
            .map(|(job, locator)| Position::Bulk { job, locator })
    } else {
        None
    };
    parsed.ok_or_else(|| invalid_position(position, "is not a Salesforce read position"))
}

/// `/services/data/vXX.X/query/<locator>`, as `nextRecordsUrl` is.
fn is_query_path(path: &str) -> bool {
    path.strip_prefix("/services/data/v")
        .and_then(|p| p.split_once("/query/"))
        .is_some_and(|(version, locator)| {
            !version.is_empty()
                && version.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && !locator.is_empty()
                && locator
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A Bulk API locator: an opaque, non-empty base64-like string.
fn is_locator(locator: &str) -> bool {
    !locator.is_empty()
        && locator
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "003000000000001AAA";

    #[test]
    fn positions_round_trip_and_anything_else_is_refused() {
        let soql = ReadPosition::new(format!(
            "soql:{ID}:/services/data/v62.0/query/01g000000000001-2000"
        ));
        assert_eq!(
            parse(&soql).unwrap(),
            Position::Soql {
                last_id: ID,
                next: "/services/data/v62.0/query/01g000000000001-2000"
            }
        );
        let bulk = ReadPosition::new(format!("bulk:{ID}:MTAwMDA"));
        assert_eq!(
            parse(&bulk).unwrap(),
            Position::Bulk {
                job: ID,
                locator: "MTAwMDA"
            }
        );
        for foreign in [
            "hubspot-after:1001".to_owned(),
            format!("soql:{ID}:/services/data/v62.0/sobjects/Contact"),
            "soql:003' OR Name != ':/services/data/v62.0/query/01g-1".to_owned(),
            format!("soql:{ID}:https://evil.example/services/data/v62.0/query/01g-1"),
            format!("bulk:{ID}:"),
            format!("bulk:{ID}:a&maxRecords=1"),
            "bulk:750:MTAwMDA".to_owned(),
        ] {
            let e = parse(&ReadPosition::new(foreign.clone())).unwrap_err();
            assert_eq!(e.code(), "INVALID_READ_POSITION", "{foreign}");
        }
    }

    #[test]
    fn soql_reads_in_id_order_and_resumes_after_the_last_id_quoted() {
        let fields = ["Id", "Email"].map(String::from);
        assert_eq!(
            select(&fields, None),
            "SELECT Id, Email FROM Contact ORDER BY Id"
        );
        assert_eq!(
            select(&fields, Some(ID)),
            format!("SELECT Id, Email FROM Contact WHERE Id > '{ID}' ORDER BY Id")
        );
    }
}
