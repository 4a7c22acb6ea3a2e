//! The three write calls of a batch, each one sObject Collections request with
//! `allOrNone: false` whose per-record results become per-item outcomes.
//!
//! - link: `PATCH /composite/sobjects`, update by id, which also sets the external id;
//! - upsert: `PATCH /composite/sobjects/Contact/{external_id_field}`;
//! - delete: `DELETE /composite/sobjects?ids=…&allOrNone=false`.
//!
//! What it is not: deciding which items take which call (`plan.rs`, `mod.rs`).
//!
//! Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections.htm

use reqwest::Method;
use serde_json::{Map, Value};

use super::plan::Action;
use super::rest::Request;
use super::wire::{CONTACT, CollectionWrite, SaveResult};
use super::{SalesforceClient, errors, transformers};
use crate::providers::{ItemOutcome, ProviderError, SyncItem};

impl SalesforceClient {
    /// Writes the items at `links` to their records (linked ones, or ones found by e-mail).
    /// Returns the outcomes of the items still linked afterwards: a linked record that is gone
    /// is [`ItemOutcome::Gone`]; one matched by e-mail and deleted since the query becomes an
    /// [`Action::Upsert`] instead, and has no outcome here.
    pub(super) async fn link(
        &self,
        items: &[SyncItem],
        actions: &mut [Action],
        links: &[usize],
    ) -> Result<Vec<ItemOutcome>, ProviderError> {
        let mut records = Vec::with_capacity(links.len());
        for &i in links {
            if let (Action::Link(record_id), Some(contact)) = (&actions[i], &items[i].contact) {
                let item = &items[i];
                records.push(transformers::link_record(
                    self.shape(),
                    record_id,
                    item.contact_id,
                    contact,
                ));
            }
        }
        let results = self
            .write(Request::new(Method::PATCH, "composite/sobjects"), &records)
            .await?;
        let mut outcomes = Vec::with_capacity(results.len());
        for (&i, result) in links.iter().zip(results) {
            if !result.success && errors::record_gone(&result.errors) {
                // A linked record that is gone is reported so, not recreated; one matched by
                // e-mail and deleted since the query is simply not the one to take.
                if let Some(remote_id) = items[i].remote_id.clone() {
                    outcomes.push(ItemOutcome::Gone { remote_id });
                    continue;
                }
                tracing::debug!(contact = %items[i].contact_id, "matched record is gone; upserting instead");
                actions[i] = Action::Upsert;
                continue;
            }
            let record_id = match &actions[i] {
                Action::Link(id) => Some(id.clone()),
                _ => None,
            };
            outcomes.push(saved(result, record_id));
        }
        Ok(outcomes)
    }

    /// Upserts the items at `chosen` by external id.
    pub(super) async fn upsert(
        &self,
        items: &[SyncItem],
        chosen: &[usize],
    ) -> Result<Vec<ItemOutcome>, ProviderError> {
        let records: Vec<Map<String, Value>> = chosen
            .iter()
            .filter_map(|&i| {
                let item = &items[i];
                let contact = item.contact.as_ref()?;
                Some(transformers::contact_record(
                    self.shape(),
                    item.contact_id,
                    contact,
                ))
            })
            .collect();
        let path = format!(
            "composite/sobjects/{CONTACT}/{}",
            self.settings.external_id_field
        );
        let results = self
            .write(Request::new(Method::PATCH, path), &records)
            .await?;
        let created = results.iter().filter(|r| r.created == Some(true)).count();
        tracing::debug!(records = results.len(), created, "salesforce upsert");
        Ok(results.into_iter().map(|r| saved(r, None)).collect())
    }

    /// Deletes the records of the items at `chosen`; a record already gone counts as deleted.
    pub(super) async fn delete(
        &self,
        actions: &[Action],
        chosen: &[usize],
    ) -> Result<Vec<ItemOutcome>, ProviderError> {
        let ids: Vec<&str> = chosen
            .iter()
            .filter_map(|&i| match &actions[i] {
                Action::Delete(id) => Some(id.as_str()),
                _ => None,
            })
            .collect();
        let req = Request::new(Method::DELETE, "composite/sobjects")
            .param("ids", ids.join(","))
            .param("allOrNone", "false");
        let results: Vec<SaveResult> = self.rest.call(&req).await?;
        expect_results(results.len(), ids.len())?;
        Ok(ids
            .iter()
            .zip(results)
            .map(|(id, r)| {
                if r.success || errors::record_gone(&r.errors) {
                    ItemOutcome::Synced {
                        remote_id: Some((*id).to_owned()),
                    }
                } else {
                    ItemOutcome::Failed(errors::classify_item(&r.errors))
                }
            })
            .collect())
    }

    /// Sends a create/update/upsert collection and checks there is one result per record.
    async fn write(
        &self,
        req: Request,
        records: &[Map<String, Value>],
    ) -> Result<Vec<SaveResult>, ProviderError> {
        let body = CollectionWrite {
            all_or_none: false,
            records,
        };
        let results: Vec<SaveResult> = self.rest.call(&req.json(&body)?).await?;
        expect_results(results.len(), records.len())?;
        Ok(results)
    }
}

/// The outcome of a saved record; `known_id` is used when the result names none.
fn saved(result: SaveResult, known_id: Option<String>) -> ItemOutcome {
    if !result.success {
        return ItemOutcome::Failed(errors::classify_item(&result.errors));
    }
    match result.id.or(known_id) {
        Some(id) => ItemOutcome::Synced {
            remote_id: Some(id),
        },
        None => ItemOutcome::Failed(ProviderError::Decode(
            "a saved record came back without its id".into(),
        )),
    }
}

/// Salesforce answers one result per record, in order; anything else cannot be matched up.
fn expect_results(got: usize, sent: usize) -> Result<(), ProviderError> {
    if got == sent {
        Ok(())
    } else {
        Err(ProviderError::Decode(format!(
            "{got} results for {sent} records"
        )))
    }
}
