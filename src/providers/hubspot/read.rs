//! Reading records back: `batch/read` by record id, at most [`BATCH_MAX`] ids a call, for the
//! mapped properties and `lastmodifieddate`.
//!
//! HubSpot answers 200 with `results`, or 207 when some ids are missing (deleted, archived or
//! never there), listing them in one `OBJECT_NOT_FOUND` error; those ids are simply absent from
//! what this returns. Any other per-input error fails the call: leaving such a record out would
//! tell the caller it is gone. What it is not: the mapping of a record (`transformers`) or the
//! HTTP call (`transport`).
//! <https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/guide>
//! (crm-apis.md §1.2)

use super::batch::BATCH_MAX;
use super::errors::{self, Failure};
use super::transformers;
use super::transport::Transport;
use super::wire::{BatchResponse, IdInput, ReadRequest, Record};
use crate::providers::mapping::FieldMap;
use crate::providers::{ProviderError, RemoteRecord};

const PATH: &str = "/crm/v3/objects/contacts/batch/read";

/// The live records among `ids`. Ids that are not HubSpot record ids are skipped unsent.
pub async fn records(
    transport: &Transport,
    map: &FieldMap,
    ids: &[String],
) -> Result<Vec<RemoteRecord>, ProviderError> {
    let ids = record_ids(ids);
    let properties = transformers::read_properties(map);
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(BATCH_MAX) {
        for record in &live(transport, &properties, chunk, None).await? {
            out.push(transformers::remote_record(record, map).map_err(ProviderError::Decode)?);
        }
    }
    Ok(out)
}

/// The ids of the live records with these e-mail addresses (`batch/read` with `idProperty`
/// `email`, which reads the record itself, unlike `search`, whose index lags behind writes),
/// by lower-cased address.
pub async fn ids_by_email(
    transport: &Transport,
    emails: &[String],
) -> Result<std::collections::HashMap<String, String>, ProviderError> {
    let properties = vec!["email".to_owned()];
    let mut out = std::collections::HashMap::new();
    for chunk in emails.chunks(BATCH_MAX) {
        for record in live(transport, &properties, chunk, Some("email")).await? {
            if let Some(Some(email)) = record.properties.get("email") {
                out.insert(email.to_lowercase(), record.id.clone());
            }
        }
    }
    Ok(out)
}

/// One `batch/read` call: the live records among `keys` (record ids, or values of
/// `id_property`); keys HubSpot does not find are left out, any other per-input error fails.
async fn live(
    transport: &Transport,
    properties: &[String],
    keys: &[String],
    id_property: Option<&str>,
) -> Result<Vec<Record>, ProviderError> {
    let body = ReadRequest {
        properties,
        inputs: keys.iter().map(|k| IdInput { id: k.clone() }).collect(),
        id_property,
    };
    let bytes = transport
        .post(PATH, &body)
        .await
        .map_err(Failure::into_error)?;
    let answer: BatchResponse = serde_json::from_slice(&bytes)
        .map_err(|e| errors::undecodable("HubSpot's batch/read answer", &e).into_error())?;
    for err in &answer.errors {
        match errors::classify_item(err) {
            Failure::Gone => {}
            other => return Err(other.into_error()),
        }
    }
    Ok(answer.results.into_iter().filter(|r| !r.archived).collect())
}

/// The distinct ids that are HubSpot record ids (digits only), in first-seen order.
fn record_ids(ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        if !is_record_id(id) {
            tracing::warn!(id = ?id, "not a HubSpot record id; not read");
            continue;
        }
        if !out.contains(id) {
            out.push(id.clone());
        }
    }
    out
}

/// HubSpot record ids are strings of digits (crm-apis.md §1.2, "Record shape").
fn is_record_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_distinct_digit_ids_are_read() {
        let ids: Vec<String> = ["51", "x51", "", "52", "51", " 53", "-1", "54"]
            .map(String::from)
            .into();
        assert_eq!(record_ids(&ids), ["51", "52", "54"]);
    }
}
