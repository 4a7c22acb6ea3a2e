//! Reading every live contact: `GET /crm/v3/objects/contacts?limit=100&after=…&properties=…`,
//! HubSpot's list endpoint, page by page along its `paging.next.after` cursor, asking for the
//! mapped properties and `lastmodifieddate`.
//!
//! The list pages in record-id order and leaves archived records out (`archived=false`), so a
//! read from the start meets every live record once; a record created during the read shows up
//! on a later page if its id is past the cursor. A position is `hubspot-after:<after>`, the
//! cursor HubSpot gave; HubSpot keeps no state for it, so it never expires. What it is not: the
//! mapping of a record (`transformers`) or the HTTP call (`transport`).
//! <https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/guide>
//! (crm-apis.md §1.2, "Paging (list)")

use super::errors::{self, Failure};
use super::transformers;
use super::transport::Transport;
use super::wire::ListResponse;
use crate::providers::ProviderError;
use crate::providers::mapping::FieldMap;
use crate::providers::reading::{ReadPage, ReadPosition, invalid_position};

const PATH: &str = "/crm/v3/objects/contacts";
/// Most records one list page returns (crm-apis.md §1.2).
pub const PAGE_MAX: usize = 100;
/// What every position this reader writes starts with.
const PREFIX: &str = "hubspot-after:";

/// The page at `from` (`None`: the first), [`PAGE_MAX`] records.
pub async fn page(
    transport: &Transport,
    map: &FieldMap,
    from: Option<&ReadPosition>,
) -> Result<ReadPage, ProviderError> {
    let after = from.map(after_of).transpose()?;
    let properties = transformers::read_properties(map).join(",");
    let mut query = vec![
        ("limit", PAGE_MAX.to_string()),
        ("archived", "false".to_owned()),
        ("properties", properties),
    ];
    if let Some(after) = after {
        query.push(("after", after.to_owned()));
    }
    let bytes = transport
        .get(PATH, &query)
        .await
        .map_err(Failure::into_error)?;
    let answer: ListResponse = serde_json::from_slice(&bytes)
        .map_err(|e| errors::undecodable("HubSpot's contact list", &e).into_error())?;
    let records = answer
        .results
        .iter()
        .filter(|r| !r.archived)
        .map(|r| transformers::remote_record(r, map).map_err(ProviderError::Decode))
        .collect::<Result<_, _>>()?;
    let next = answer
        .paging
        .and_then(|p| p.next)
        .map(|n| n.after)
        .filter(|a| !a.is_empty())
        .map(|a| ReadPosition::new(format!("{PREFIX}{a}")));
    Ok(ReadPage { records, next })
}

/// The `after` cursor a position holds.
fn after_of(position: &ReadPosition) -> Result<&str, ProviderError> {
    position
        .as_str()
        .strip_prefix(PREFIX)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| invalid_position(position, "is not a HubSpot list position"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_carry_the_after_cursor_and_foreign_ones_are_refused() {
        let p = ReadPosition::new("hubspot-after:1101");
        assert_eq!(after_of(&p).unwrap(), "1101");
        for foreign in [
            "1101",
            "hubspot-after:",
            "soql:/services/data/v62.0/query/01g-2000",
        ] {
            let e = after_of(&ReadPosition::new(foreign)).unwrap_err();
            assert_eq!(e.code(), "INVALID_READ_POSITION", "{foreign}");
            assert!(!e.is_retryable());
        }
    }
}
