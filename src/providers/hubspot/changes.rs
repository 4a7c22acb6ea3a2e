//! Finding records that changed: one `POST /crm/v3/objects/contacts/search` page of the
//! contacts whose `lastmodifieddate` is at or after a time, oldest change first, for a poller
//! that catches changes whose webhooks were lost.
//!
//! HubSpot keeps `lastmodifieddate` to the millisecond and filters date properties by epoch
//! milliseconds, so `since` is rounded down to its millisecond. Search never returns archived
//! records, and its index lags writes by "a few moments" (crm-apis.md §1.5): a change may show
//! up only in a later call, which is the caller's to allow for. What it is not: the mapping of
//! a record (`transformers`, shared with `batch/read`) or the HTTP call (`transport`).
//! <https://developers.hubspot.com/docs/api-reference/legacy/crm/search-the-crm>

use chrono::{DateTime, Utc};

use super::errors::{self, Failure};
use super::transformers::{self, LAST_MODIFIED};
use super::transport::Transport;
use super::wire::{Filter, FilterGroup, SearchRequest, SearchResponse, Sort};
use crate::providers::mapping::FieldMap;
use crate::providers::{ProviderError, RemoteRecord};

const PATH: &str = "/crm/v3/objects/contacts/search";
/// Most records one search page returns (crm-apis.md §1.5).
pub const PAGE_MAX: usize = 200;

/// Live records modified at or after `since`, oldest first, at most `limit` (and at most
/// [`PAGE_MAX`]). No call for a `limit` of 0.
pub async fn records(
    transport: &Transport,
    map: &FieldMap,
    since: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<RemoteRecord>, ProviderError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let properties = transformers::read_properties(map);
    let body = request(&properties, since, limit);
    let bytes = transport
        .search(PATH, &body)
        .await
        .map_err(Failure::into_error)?;
    let answer: SearchResponse = serde_json::from_slice(&bytes)
        .map_err(|e| errors::undecodable("HubSpot's search answer", &e).into_error())?;
    answer
        .results
        .iter()
        // Search leaves archived records out; should one slip through, it is not a change to
        // take (its removal is for another path to notice).
        .filter(|r| !r.archived)
        .take(limit)
        .map(|r| transformers::remote_record(r, map).map_err(ProviderError::Decode))
        .collect()
}

/// The search body: `lastmodifieddate` GTE `since` in epoch ms, ascending by it, the read
/// properties, `limit` capped at [`PAGE_MAX`].
fn request(properties: &[String], since: DateTime<Utc>, limit: usize) -> SearchRequest<'_> {
    SearchRequest {
        filter_groups: vec![FilterGroup {
            filters: vec![Filter {
                property_name: LAST_MODIFIED.to_owned(),
                operator: "GTE",
                // `timestamp_millis` rounds down (towards the past), so a record modified in
                // the same millisecond as `since` still matches.
                value: since.timestamp_millis().to_string(),
            }],
        }],
        sorts: vec![Sort {
            property_name: LAST_MODIFIED.to_owned(),
            direction: "ASCENDING",
        }],
        properties,
        limit: limit.min(PAGE_MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(since: &str, limit: usize) -> serde_json::Value {
        let properties = ["email".to_owned(), LAST_MODIFIED.to_owned()];
        let since: DateTime<Utc> = since.parse().unwrap();
        serde_json::to_value(request(&properties, since, limit)).unwrap()
    }

    #[test]
    fn the_search_filters_lastmodifieddate_gte_since_in_epoch_ms_and_sorts_ascending() {
        assert_eq!(
            body("2024-03-01T00:00:00.123Z", 50),
            json!({
                "filterGroups": [{"filters": [
                    {"propertyName": "lastmodifieddate", "operator": "GTE", "value": "1709251200123"}
                ]}],
                "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
                "properties": ["email", "lastmodifieddate"],
                "limit": 50
            })
        );
    }

    #[test]
    fn since_is_rounded_down_to_its_millisecond() {
        let value = &body("2024-03-01T00:00:00.123999999Z", 1)["filterGroups"][0]["filters"][0];
        assert_eq!(value["value"], "1709251200123");
    }

    #[test]
    fn the_page_size_is_capped_at_two_hundred() {
        assert_eq!(body("2024-03-01T00:00:00Z", 5000)["limit"], 200);
        assert_eq!(body("2024-03-01T00:00:00Z", 200)["limit"], 200);
        assert_eq!(body("2024-03-01T00:00:00Z", 1)["limit"], 1);
    }
}
