//! Salesforce REST client: delivers contacts to Contact records through sObject Collections
//! under an OAuth 2.0 client-credentials session.
//!
//! Per batch: look up (one SOQL query each, only when needed) Contacts that already have a new
//! contact's e-mail and records of deleted contacts whose id was never recorded; then write —
//! link found people by id, upsert everyone else by external id (SyncRoot's contact id, so
//! retries and e-mail changes update the same record), delete tombstones. Each write is one
//! collection call of up to 200 records with per-record results.
//!
//! Reading back ([`CrmClient::fetch`]): one SOQL query by record id (more when the ids would
//! make the URL too long) for the mapped fields, the external id and `SystemModstamp`.
//! Finding changes ([`CrmClient::changed_since`]): one SOQL query by `SystemModstamp`, for
//! the same fields. Reading every Contact ([`ContactReader::read_page`]): SOQL pages, or a Bulk
//! API 2.0 query job above a threshold (`reader`, `bulk`).
//!
//! Reading order: this file, `plan` (what each item needs), `lookup` (the queries), `writes`
//! (the collection calls), `rest` (one call: pacing, session, limits), `auth`, `transformers`,
//! `errors`, `wire`, `soql`.
//! What it is not: deciding when to look for changes (webhooks and the poller do that), nor
//! Accounts or any object but Contact.

mod auth;
mod bulk;
mod errors;
mod lookup;
mod plan;
mod reader;
mod rest;
mod soql;
mod transformers;
mod wire;
mod writes;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::domain::fields::Field;
use crate::domain::{ContactFields, Crm, FieldValues};
use crate::secret::Secret;

use super::mapping::FieldMap;
use super::pacing::Pacer;
use super::reading::{ContactReader, ReadPage, ReadPosition};
use super::{
    CrmClient, ItemOutcome, Known, ProviderError, RemoteRecord, SyncItem, WriteKind, http_client,
};
use auth::Auth;
use plan::Action;
use rest::Rest;
use transformers::RecordShape;

pub use bulk::Polling as BulkPolling;
pub use reader::ReadSettings;
pub use transformers::UnifiedFields;

/// Records per sObject Collections write (crm-apis.md §2.5).
const COLLECTION_CAP: usize = 200;

/// How to reach and write to a Salesforce org.
#[derive(Clone, Debug)]
pub struct SalesforceSettings {
    /// Where `/services/oauth2/token` is: the org's My Domain URL. REST calls then go to the
    /// `instance_url` the token response names.
    pub login_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// REST API version, e.g. `62.0`.
    pub api_version: String,
    /// The Contact external-id field holding SyncRoot's contact id (unique, External ID).
    pub external_id_field: String,
    pub fields: FieldMap,
    /// `LastName` sent for contacts without a last name (Salesforce requires one).
    pub last_name_placeholder: String,
    /// Before the first write of an unlinked contact, look for a Contact with the same e-mail
    /// and link it instead of creating a second record (one query call per batch).
    pub match_by_email: bool,
    /// Sent as `Sforce-Call-Options: client=<name>` on every call, so Salesforce's change events
    /// name SyncRoot as the origin of its writes.
    pub client_name: String,
    /// Requests per second SyncRoot allows itself; 0 is unlimited (Salesforce limits per day).
    pub rate_limit_per_second: u32,
    /// False sends one contact per call (for comparison; the sObject Collections cap is 200).
    pub batching: bool,
    pub timeout: Duration,
    /// How a full read ([`ContactReader`]) reads the org.
    pub reads: ReadSettings,
}

/// Salesforce's standard Contact fields for each unified field. Contact has no company field
/// (companies are Accounts), so `company` is left out unless mapped to a custom field.
pub fn default_fields() -> [(Field, Option<&'static str>); 6] {
    [
        (Field::Email, Some("Email")),
        (Field::FirstName, Some("FirstName")),
        (Field::LastName, Some("LastName")),
        (Field::Phone, Some("Phone")),
        (Field::Company, None),
        (Field::JobTitle, Some("Title")),
    ]
}

pub struct SalesforceClient {
    settings: SalesforceSettings,
    rest: Rest,
}

impl SalesforceClient {
    pub fn new(settings: SalesforceSettings) -> Self {
        let http = http_client(settings.timeout);
        let auth = Auth::new(
            http.clone(),
            &settings.login_url,
            &settings.client_id,
            settings.client_secret.clone(),
        );
        let pacer = Pacer::new(settings.rate_limit_per_second, Duration::from_secs(1));
        let rest = Rest::new(
            http,
            auth,
            pacer,
            &settings.api_version,
            &settings.client_name,
        );
        Self { settings, rest }
    }

    /// The unified fields a Contact record (as REST or a change event renders it) carries,
    /// through this client's field mapping.
    pub fn unified_fields(&self, record: &Map<String, Value>) -> UnifiedFields {
        transformers::unified_fields(self.shape(), record)
    }

    fn shape(&self) -> RecordShape<'_> {
        RecordShape {
            fields: &self.settings.fields,
            external_id_field: &self.settings.external_id_field,
            last_name_placeholder: &self.settings.last_name_placeholder,
        }
    }
}

impl CrmClient for SalesforceClient {
    fn crm(&self) -> Crm {
        Crm::Salesforce
    }

    fn batch_cap(&self) -> usize {
        if self.settings.batching {
            COLLECTION_CAP
        } else {
            1
        }
    }

    /// A contact not yet linked whose record a recent complete read found is written onto
    /// that record by id, with the updates (see [`plan::actions`]).
    fn write_kind(&self, item: &SyncItem) -> WriteKind {
        match &item.known {
            Some(Known::Record(_)) if self.settings.match_by_email && item.contact.is_some() => {
                WriteKind::Update
            }
            _ => WriteKind::of(item),
        }
    }

    async fn sync(&self, items: &[SyncItem]) -> Result<Vec<ItemOutcome>, ProviderError> {
        if let Some(wait) = self.rest.allowance_spent() {
            return Err(ProviderError::QuotaExhausted { retry_after: wait });
        }
        // Callers send at most `batch_cap` items; more are split rather than refused.
        let mut outcomes = Vec::with_capacity(items.len());
        for (n, chunk) in items.chunks(self.batch_cap()).enumerate() {
            match self.sync_batch(chunk).await {
                Ok(mut done) => outcomes.append(&mut done),
                Err(e) if n == 0 => return Err(e),
                // Earlier chunks were written, so their outcomes must reach the caller.
                Err(e) => {
                    let failed = items.len() - outcomes.len();
                    outcomes.extend(std::iter::repeat_n(ItemOutcome::Failed(e), failed));
                    break;
                }
            }
        }
        Ok(outcomes)
    }

    async fn fetch(&self, remote_ids: &[String]) -> Result<Vec<RemoteRecord>, ProviderError> {
        if let Some(wait) = self.rest.allowance_spent() {
            return Err(ProviderError::QuotaExhausted { retry_after: wait });
        }
        let fields = transformers::read_fields(self.shape());
        let records = lookup::by_record_id(&self.rest, &fields, remote_ids).await?;
        records
            .iter()
            .map(|r| transformers::remote_record(self.shape(), r).map_err(ProviderError::Decode))
            .collect()
    }

    async fn changed_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<RemoteRecord>, ProviderError> {
        if let Some(wait) = self.rest.allowance_spent() {
            return Err(ProviderError::QuotaExhausted { retry_after: wait });
        }
        let fields = transformers::read_fields(self.shape());
        let records = lookup::changed_since(&self.rest, &fields, since, limit).await?;
        records
            .iter()
            .map(|r| transformers::remote_record(self.shape(), r).map_err(ProviderError::Decode))
            .collect()
    }

    fn project(&self, contact: &ContactFields) -> FieldValues {
        self.settings.fields.project(contact)
    }

    fn paused(&self) -> Option<String> {
        self.rest.paused()
    }
}

impl ContactReader for SalesforceClient {
    async fn read_page(&self, from: Option<&ReadPosition>) -> Result<ReadPage, ProviderError> {
        if let Some(wait) = self.rest.allowance_spent() {
            return Err(ProviderError::QuotaExhausted { retry_after: wait });
        }
        reader::page(&self.rest, self.shape(), &self.settings.reads, from).await
    }
}

/// A batch's outcomes as its calls settle them. After a call fails, later calls are not
/// made (the org is down, the session refused, or the allowance spent) and their items fail
/// with the same error.
struct Progress {
    outcomes: Vec<Option<ItemOutcome>>,
    /// A write call has succeeded, so the batch can no longer fail as a whole.
    written: bool,
    failed: Option<ProviderError>,
}

impl Progress {
    /// Items that need no call already have their outcome.
    fn new(actions: &[Action]) -> Self {
        let outcomes = actions
            .iter()
            .map(|a| match a {
                Action::Done(o) => Some(o.clone()),
                _ => None,
            })
            .collect();
        Self {
            outcomes,
            written: false,
            failed: None,
        }
    }

    fn settle(&mut self, indices: &[usize], result: Result<Vec<ItemOutcome>, ProviderError>) {
        match result {
            Ok(outcomes) => {
                self.written = true;
                for (i, o) in indices.iter().zip(outcomes) {
                    self.outcomes[*i] = Some(o);
                }
            }
            Err(e) => {
                for i in indices {
                    self.outcomes[*i] = Some(ItemOutcome::Failed(e.clone()));
                }
                self.failed = Some(e);
            }
        }
    }

    /// `Err` only when nothing was written; every item has an outcome otherwise.
    fn finish(self) -> Result<Vec<ItemOutcome>, ProviderError> {
        match self.failed {
            Some(e) if !self.written => Err(e),
            _ => Ok(self
                .outcomes
                .into_iter()
                // Every item takes exactly one step, so none is left without an outcome;
                // should one be, it is reported failed rather than claimed written.
                .map(|o| {
                    o.unwrap_or_else(|| {
                        ItemOutcome::Failed(ProviderError::Decode("no outcome recorded".into()))
                    })
                })
                .collect()),
        }
    }
}

impl SalesforceClient {
    /// One batch of at most [`COLLECTION_CAP`] items: look-ups, then links, upserts, deletes.
    async fn sync_batch(&self, items: &[SyncItem]) -> Result<Vec<ItemOutcome>, ProviderError> {
        // While the daily allowance is spent every call would be refused; don't spend a call
        // (or sleep in the pacer) to learn it again.
        if let Some(wait) = self.rest.allowance_spent_for() {
            return Err(ProviderError::QuotaExhausted { retry_after: wait });
        }
        let mut actions = self.plan(items).await?;
        let mut progress = Progress::new(&actions);
        // Links go first: a link whose record vanished since the query joins the upserts.
        let links = indices(&actions, |a| matches!(a, Action::Link(_)));
        if !links.is_empty() {
            let result = self.link(items, &mut actions, &links).await;
            let linked: Vec<usize> = links
                .into_iter()
                .filter(|i| !matches!(actions[*i], Action::Upsert))
                .collect();
            progress.settle(&linked, result);
        }
        for step in [Step::Upsert, Step::Delete] {
            let chosen = indices(&actions, |a| step.takes(a));
            if chosen.is_empty() {
                continue;
            }
            let result = match (&progress.failed, step) {
                (Some(e), _) => Err(e.clone()),
                (None, Step::Upsert) => self.upsert(items, &chosen).await,
                (None, Step::Delete) => self.delete(&actions, &chosen).await,
            };
            progress.settle(&chosen, result);
        }
        progress.finish()
    }

    /// The look-ups the batch needs (none, one or two queries), then each item's action.
    async fn plan(&self, items: &[SyncItem]) -> Result<Vec<Action>, ProviderError> {
        let ext = &self.settings.external_id_field;
        let unlinked: Vec<&str> = items
            .iter()
            .filter(|i| self.settings.match_by_email && i.remote_id.is_none() && i.known.is_none())
            .filter_map(|i| i.contact.as_ref().map(|c| c.email.as_str()))
            .collect();
        let matches = if unlinked.is_empty() {
            HashMap::new()
        } else {
            lookup::by_email(&self.rest, ext, &unlinked).await?
        };
        let orphan_ids: Vec<String> = items
            .iter()
            .filter(|i| i.contact.is_none() && i.remote_id.is_none())
            .map(|i| i.contact_id.to_string())
            .collect();
        let orphans = if orphan_ids.is_empty() {
            HashMap::new()
        } else {
            let ids: Vec<&str> = orphan_ids.iter().map(String::as_str).collect();
            lookup::by_external_id(&self.rest, ext, &ids).await?
        };
        Ok(plan::actions(
            items,
            self.settings.match_by_email,
            matches,
            &orphans,
        ))
    }
}

/// The write calls after the links, in order.
#[derive(Clone, Copy)]
enum Step {
    Upsert,
    Delete,
}

impl Step {
    fn takes(self, action: &Action) -> bool {
        matches!(
            (self, action),
            (Step::Upsert, Action::Upsert) | (Step::Delete, Action::Delete(_))
        )
    }
}

fn indices(actions: &[Action], wanted: impl Fn(&Action) -> bool) -> Vec<usize> {
    (0..actions.len())
        .filter(|i| wanted(&actions[*i]))
        .collect()
}
