//! Salesforce REST client: OAuth 2.0 client-credentials login, sObject Collections upserts by
//! external id.

use std::time::Duration;

use crate::config::Secret;
use crate::domain::Crm;
use crate::domain::fields::Field;

use super::mapping::FieldMap;
use super::{CrmClient, ItemOutcome, ProviderError, SyncItem};

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
}

impl SalesforceClient {
    pub fn new(settings: SalesforceSettings) -> Self {
        Self { settings }
    }
}

impl CrmClient for SalesforceClient {
    fn crm(&self) -> Crm {
        Crm::Salesforce
    }

    fn batch_cap(&self) -> usize {
        if self.settings.batching { 200 } else { 1 }
    }

    async fn sync(&self, _items: &[SyncItem]) -> Result<Vec<ItemOutcome>, ProviderError> {
        Err(ProviderError::Unavailable(
            "the Salesforce client is not implemented yet".into(),
        ))
    }

    fn paused(&self) -> Option<String> {
        None
    }
}
