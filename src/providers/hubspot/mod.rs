//! HubSpot CRM v3 client: delivers contacts through the batch endpoints with a private-app token.

use std::time::Duration;

use crate::config::Secret;
use crate::domain::Crm;
use crate::domain::fields::Field;

use super::mapping::FieldMap;
use super::{CrmClient, ItemOutcome, ProviderError, SyncItem};

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
}

impl HubspotClient {
    pub fn new(settings: HubspotSettings) -> Self {
        Self { settings }
    }
}

impl CrmClient for HubspotClient {
    fn crm(&self) -> Crm {
        Crm::Hubspot
    }

    fn batch_cap(&self) -> usize {
        if self.settings.batching { 100 } else { 1 }
    }

    async fn sync(&self, _items: &[SyncItem]) -> Result<Vec<ItemOutcome>, ProviderError> {
        Err(ProviderError::Unavailable(
            "the HubSpot client is not implemented yet".into(),
        ))
    }

    fn paused(&self) -> Option<String> {
        None
    }
}
