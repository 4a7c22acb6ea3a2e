//! HubSpot CRM v3 client: delivers contacts through the batch endpoints with a private-app
//! token.
//!
//! One [`CrmClient::sync`] call makes at most one call per kind of write in the normal case:
//! `batch/archive` for deleted contacts, `batch/update` (by record id) for linked ones and
//! `batch/upsert` (by e-mail or a custom unique property) for the rest, in that order, so an
//! e-mail freed by a delete or an update is free before an upsert claims it. A contact written
//! while no record was linked is first looked for at every address written (`find_left`), in
//! case lost answers left records there: one is kept, the others archived (`discard`). A
//! linked record a person deleted in HubSpot is upserted afresh in the same upsert call; with a
//! custom id property, a create that meets a person's record with the same e-mail links to it
//! with one more update call.
//!
//! [`CrmClient::fetch`] reads records back with `batch/read` (`read`);
//! [`CrmClient::changed_since`] finds changed records with one `search` page (`changes`);
//! [`ContactReader::read_page`] reads every live record along the list endpoint's cursor
//! (`list`).
//!
//! Here: the client and that algorithm. Elsewhere in this folder: pacing and the HTTP call
//! (`transport`), splitting refused batches (`batch`), per-call bookkeeping (`run`), reading
//! records (`read`), finding changed ones (`changes`), failure classification (`errors`), wire types (`wire`) and field mapping
//! (`transformers`). Not here: retries and the decision to dead-letter, which belong to
//! delivery.
//! <https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/guide>

mod batch;
mod changes;
mod errors;
mod list;
mod read;
mod run;
pub mod transformers;
mod transport;
mod wire;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::domain::fields::Field;
use crate::domain::{ContactFields, Crm, FieldValues};
use crate::secret::Secret;

use super::mapping::FieldMap;
use super::reading::{ContactReader, ReadPage, ReadPosition};
use super::{CrmClient, ItemOutcome, ProviderError, RemoteRecord, SyncItem};
use batch::{Endpoint, Key, Pending};
use errors::Failure;
use run::Run;
use transport::Transport;
use wire::{IdInput, WriteInput};

/// How to reach and write to a HubSpot account.
#[derive(Clone, Debug)]
pub struct HubspotSettings {
    /// API base URL, `https://api.hubapi.com` for HubSpot itself.
    pub base_url: String,
    /// Private-app access token.
    pub token: Secret,
    /// The property that identifies a contact before it is linked: `email`, or a custom
    /// unique-value property.
    pub id_property: String,
    pub fields: FieldMap,
    /// Requests per rolling 10 s SyncRoot allows itself until HubSpot's headers say more.
    pub rate_limit: u32,
    /// False sends one contact per call (for comparison; HubSpot's batch cap is 100).
    pub batching: bool,
    pub timeout: Duration,
}

/// HubSpot's standard contact properties for each unified field.
pub fn default_fields() -> [(Field, Option<&'static str>); 6] {
    [
        (Field::Email, Some("email")),
        (Field::FirstName, Some("firstname")),
        (Field::LastName, Some("lastname")),
        (Field::Phone, Some("phone")),
        (Field::Company, Some("company")),
        (Field::JobTitle, Some("jobtitle")),
    ]
}

pub struct HubspotClient {
    settings: HubspotSettings,
    transport: Transport,
}

impl HubspotClient {
    pub fn new(settings: HubspotSettings) -> Self {
        let transport = Transport::new(&settings);
        Self {
            settings,
            transport,
        }
    }
}

impl CrmClient for HubspotClient {
    fn crm(&self) -> Crm {
        Crm::Hubspot
    }

    fn batch_cap(&self) -> usize {
        if self.settings.batching {
            batch::BATCH_MAX
        } else {
            1
        }
    }

    async fn sync(&self, items: &[SyncItem]) -> Result<Vec<ItemOutcome>, ProviderError> {
        if let Some(wait) = self.transport.daily_allowance_spent() {
            return Err(ProviderError::QuotaExhausted { retry_after: wait });
        }
        let mut run = Run::new(items.len());
        let (mut archives, mut updates, mut upserts) = (Vec::new(), Vec::new(), Vec::new());
        let mut left = Vec::new();
        for (i, item) in items.iter().enumerate() {
            // A create whose answer was lost (a crash, a timeout, a dropped connection) may
            // have left a record SyncRoot never linked, at the address it wrote: looked for
            // first. A live contact's upsert by its id property finds such a record itself,
            // unless that property is the e-mail and the contact has moved since.
            let look =
                !item.left_emails.is_empty() && (item.contact.is_none() || self.keyed_by_email());
            match (&item.contact, &item.remote_id) {
                _ if look => left.push(i),
                (None, Some(id)) => archives.push((i, id.clone())),
                (None, None) => run.settle(i, ItemOutcome::Synced { remote_id: None }),
                (Some(_), Some(id)) => updates.push((i, id.clone())),
                (Some(_), None) => upserts.push(i),
            }
        }
        let mut found = Vec::new();
        for (i, record) in self.find_left(&mut run, items, left).await {
            match (&items[i].contact, record) {
                (None, Some(id)) => archives.push((i, id)),
                (None, None) => run.settle(i, ItemOutcome::Synced { remote_id: None }),
                (Some(_), Some(id)) => {
                    if items[i].remote_id.is_none() {
                        found.push(i);
                    }
                    updates.push((i, id));
                }
                (Some(_), None) => upserts.push(i),
            }
        }
        self.archive(&mut run, items, archives).await;
        self.update(&mut run, items, updates, &found).await;
        let taken = self.upsert(&mut run, items, upserts).await;
        self.link(&mut run, items, taken).await;
        run.finish()
    }

    async fn fetch(&self, remote_ids: &[String]) -> Result<Vec<RemoteRecord>, ProviderError> {
        if let Some(wait) = self.transport.daily_allowance_spent() {
            return Err(ProviderError::QuotaExhausted { retry_after: wait });
        }
        read::records(&self.transport, &self.settings.fields, remote_ids).await
    }

    async fn changed_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<RemoteRecord>, ProviderError> {
        if let Some(wait) = self.transport.daily_allowance_spent() {
            return Err(ProviderError::QuotaExhausted { retry_after: wait });
        }
        changes::records(&self.transport, &self.settings.fields, since, limit).await
    }

    fn project(&self, contact: &ContactFields) -> FieldValues {
        self.settings.fields.project(contact)
    }

    fn paused(&self) -> Option<String> {
        self.transport.paused()
    }
}

impl ContactReader for HubspotClient {
    async fn read_page(&self, from: Option<&ReadPosition>) -> Result<ReadPage, ProviderError> {
        if let Some(wait) = self.transport.daily_allowance_spent() {
            return Err(ProviderError::QuotaExhausted { retry_after: wait });
        }
        list::page(&self.transport, &self.settings.fields, from).await
    }
}

impl HubspotClient {
    /// The records lost creates may have left at the items' [`SyncItem::left_emails`] (one
    /// read for all): each item with the one record it keeps (its linked record, else the
    /// one at its newest address) or `None`. The others are archived first, so the contact
    /// ends with one record; an item whose read or archive failed is settled as failed and
    /// left out. A record linked to another item, or kept by an earlier one, is never taken.
    async fn find_left(
        &self,
        run: &mut Run,
        items: &[SyncItem],
        which: Vec<usize>,
    ) -> Vec<(usize, Option<String>)> {
        let mut emails: Vec<String> = which
            .iter()
            .flat_map(|&i| items[i].left_emails.iter().map(|e| e.to_lowercase()))
            .collect();
        emails.sort();
        emails.dedup();
        let found = match read::ids_by_email(&self.transport, &emails).await {
            Ok(found) => found,
            Err(e) => {
                for i in which {
                    run.settle(i, ItemOutcome::Failed(e.clone()));
                }
                return Vec::new();
            }
        };
        let mut claimed: HashSet<&str> = items
            .iter()
            .filter_map(|i| i.remote_id.as_deref())
            .collect();
        let (mut out, mut extras) = (Vec::new(), Vec::new());
        for i in which {
            let item = &items[i];
            let mut records: Vec<&String> = Vec::new();
            for email in &item.left_emails {
                let record = found.get(&email.to_lowercase());
                let free = record.filter(|r| !claimed.contains(r.as_str()));
                if let Some(r) = free.filter(|r| !records.contains(r)) {
                    records.push(r);
                }
            }
            let keep = item
                .remote_id
                .clone()
                .or(records.last().map(|r| (*r).clone()));
            for r in records {
                claimed.insert(r);
                if Some(r) != keep.as_ref() {
                    extras.push((i, r.clone()));
                }
            }
            out.push((i, keep));
        }
        let failed = self.discard(run, extras).await;
        out.retain(|(i, _)| !failed.contains(i));
        out
    }

    /// Archives the extra records lost creates left (see `find_left`): the items whose
    /// archive did not succeed (settled as failed when the reason is known).
    async fn discard(&self, run: &mut Run, extras: Vec<(usize, String)>) -> HashSet<usize> {
        let mut owed: HashMap<usize, usize> = HashMap::new();
        for (i, _) in &extras {
            *owed.entry(*i).or_default() += 1;
        }
        let inputs: Vec<_> = extras
            .into_iter()
            .map(|(i, id)| Pending {
                item: i,
                key: id.clone(),
                input: IdInput { id },
            })
            .collect();
        if let Some(report) = run
            .write(&self.transport, Endpoint::Archive, Key::RecordId, inputs)
            .await
        {
            for (i, result) in report.done {
                match result {
                    Ok(_) | Err(Failure::Gone) => {
                        owed.entry(i).and_modify(|n| *n -= 1);
                    }
                    Err(failure) => run.settle(i, ItemOutcome::Failed(failure.into_error())),
                }
            }
        }
        // Items with an extra not archived: failed above, or left for the failure that
        // stopped the run.
        owed.into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(i, _)| i)
            .collect()
    }

    /// Archives the records of deleted contacts; a record already gone counts as deleted.
    async fn archive(&self, run: &mut Run, items: &[SyncItem], which: Vec<(usize, String)>) {
        let inputs: Vec<_> = which
            .into_iter()
            .map(|(i, id)| {
                let input = IdInput { id: id.clone() };
                Pending {
                    item: i,
                    key: id,
                    input,
                }
            })
            .collect();
        let Some(report) = run
            .write(&self.transport, Endpoint::Archive, Key::RecordId, inputs)
            .await
        else {
            return;
        };
        for (i, result) in report.done {
            let outcome = match result {
                Ok(id) => ItemOutcome::Synced {
                    remote_id: Some(id),
                },
                Err(Failure::Gone) => ItemOutcome::Synced {
                    remote_id: items[i].remote_id.clone(),
                },
                Err(failure) => ItemOutcome::Failed(failure.into_error()),
            };
            run.settle(i, outcome);
        }
    }

    /// Updates records by id: linked ones, and the `found` items' records found where a lost
    /// create left them. A linked record that is gone is reported so, not recreated; a found
    /// one gone since is looked for again on the retry.
    async fn update(
        &self,
        run: &mut Run,
        items: &[SyncItem],
        which: Vec<(usize, String)>,
        found: &[usize],
    ) {
        let inputs: Vec<_> = which
            .into_iter()
            .filter_map(|(i, id)| self.update_input(i, &items[i], id))
            .collect();
        if let Some(report) = run
            .write(&self.transport, Endpoint::Update, Key::RecordId, inputs)
            .await
        {
            for (i, result) in report.done {
                let outcome = match result {
                    Err(Failure::Gone) if found.contains(&i) => {
                        ItemOutcome::Failed(ProviderError::Unavailable(
                            "the record found at the contact's earlier address was deleted before it could be written".into(),
                        ))
                    }
                    Err(Failure::Gone) => ItemOutcome::Gone {
                        remote_id: items[i].remote_id.clone().unwrap_or_default(),
                    },
                    result => written(result),
                };
                run.settle(i, outcome);
            }
        }
    }

    /// Upserts unlinked contacts by the id property. Returns the items whose create met
    /// another record's e-mail (custom id property only), with that record's id.
    async fn upsert(
        &self,
        run: &mut Run,
        items: &[SyncItem],
        which: Vec<usize>,
    ) -> Vec<(usize, String)> {
        let id_property = self.settings.id_property.as_str();
        let inputs: Vec<_> = which
            .into_iter()
            .filter_map(|i| self.upsert_input(i, &items[i]))
            .collect();
        let key = Key::Property(id_property);
        let mut taken = Vec::new();
        if let Some(report) = run
            .write(&self.transport, Endpoint::Upsert, key, inputs)
            .await
        {
            for (i, result) in report.done {
                match result {
                    // Only a custom id property can miss a record that has the e-mail: that
                    // record is the same person (often entered by hand), so link to it.
                    Err(Failure::Taken {
                        existing: Some(id), ..
                    }) if !self.keyed_by_email() => taken.push((i, id)),
                    result => run.settle(i, written(result)),
                }
            }
        }
        taken
    }

    /// Links items to the records that hold their e-mail, by updating those records by id.
    async fn link(&self, run: &mut Run, items: &[SyncItem], taken: Vec<(usize, String)>) {
        let inputs: Vec<_> = taken
            .into_iter()
            .filter_map(|(i, id)| self.update_input(i, &items[i], id))
            .collect();
        if let Some(report) = run
            .write(&self.transport, Endpoint::Update, Key::RecordId, inputs)
            .await
        {
            for (i, result) in report.done {
                run.settle(i, written(result));
            }
        }
    }

    /// An upsert of the item's contact by the id property.
    fn upsert_input(&self, item: usize, sync: &SyncItem) -> Option<Pending<WriteInput>> {
        let contact = sync.contact.as_ref()?;
        let key = self.id_value(sync, contact);
        let mut properties = transformers::to_properties(contact, &self.settings.fields);
        // The id property travels in the properties too: HubSpot then sets it on a create
        // and returns it, which is how results are matched to inputs.
        properties.insert(self.settings.id_property.clone(), key.clone());
        let input = WriteInput {
            id: key.clone(),
            id_property: Some(self.settings.id_property.clone()),
            properties,
            object_write_trace_id: sync.contact_id.to_string(),
        };
        Some(Pending { item, key, input })
    }

    /// An update of record `id` with the item's contact. With a custom id property the
    /// record also gets (or keeps) the contact's id, so a later upsert finds it.
    fn update_input(
        &self,
        item: usize,
        sync: &SyncItem,
        id: String,
    ) -> Option<Pending<WriteInput>> {
        let contact = sync.contact.as_ref()?;
        let mut properties = transformers::to_properties(contact, &self.settings.fields);
        if !self.keyed_by_email() {
            properties.insert(
                self.settings.id_property.clone(),
                self.id_value(sync, contact),
            );
        }
        let input = WriteInput {
            id: id.clone(),
            id_property: None,
            properties,
            object_write_trace_id: sync.contact_id.to_string(),
        };
        Some(Pending {
            item,
            key: id,
            input,
        })
    }

    /// The id property's value for a contact: its e-mail (already normalised), or its
    /// SyncRoot id for a custom property.
    fn id_value(&self, sync: &SyncItem, contact: &ContactFields) -> String {
        if self.keyed_by_email() {
            contact.email.as_str().to_owned()
        } else {
            sync.contact_id.to_string()
        }
    }

    fn keyed_by_email(&self) -> bool {
        self.settings.id_property.eq_ignore_ascii_case("email")
    }
}

/// The outcome of an item whose write ended here.
fn written(result: Result<String, Failure>) -> ItemOutcome {
    match result {
        Ok(id) => ItemOutcome::Synced {
            remote_id: Some(id),
        },
        Err(failure) => ItemOutcome::Failed(failure.into_error()),
    }
}
