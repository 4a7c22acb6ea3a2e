//! Configuration of the HubSpot sandbox: credentials it accepts, the identity it signs
//! webhooks with, its quotas and its webhook delivery tuning.
//!
//! This is plain data with HubSpot's documented defaults; it is not loaded from files or the
//! environment here — whoever starts the sandbox builds it.

use std::fmt;

use crate::kit::control::ControlToken;

/// A property the sandbox accepts beyond HubSpot's standard contact properties, the way an
/// account admin would add one in Settings → Properties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomProperty {
    /// Internal name, as used in `properties` and `idProperty`.
    pub name: String,
    /// "Require unique values": the property can then be used as an `idProperty` for
    /// reads, updates and upserts.
    pub unique: bool,
}

/// How the sandbox behaves; `Default` gives a Starter-tier private app.
#[derive(Clone)]
pub struct HubspotSandboxConfig {
    /// Private-app access token accepted as `Authorization: Bearer …`.
    pub access_token: String,
    /// HubSpot account id (`portalId` in webhook events).
    pub portal_id: u64,
    /// App id: `appId` of webhook events and `sourceId` of changes made with the token.
    pub app_id: u64,
    /// The app's client secret, the key of webhook signatures v1 and v3.
    pub client_secret: String,
    /// Full URL webhook batches are POSTed to; `None` drops events.
    pub webhook_url: Option<String>,
    /// Requests allowed per rolling 10 s window (Starter tier: 100).
    pub burst_limit: u32,
    /// Requests allowed per day, reset at midnight UTC (the sandbox account's time zone).
    pub daily_limit: u32,
    /// Search requests allowed per rolling second (HubSpot documents 5); 0 disables the limit.
    pub search_limit_per_second: u32,
    /// Most events in one webhook request; HubSpot sends "under 100".
    pub webhook_batch_max: usize,
    /// How long the first queued event waits for companions before a batch is sent, in ms.
    pub webhook_linger_ms: u64,
    /// Delivery attempts per batch, the first included.
    pub webhook_max_attempts: u32,
    /// Time a receiver has to answer one delivery before it counts as failed, in ms.
    pub webhook_timeout_ms: u64,
    /// First retry delay in ms; doubles per attempt, capped at one minute, plus jitter.
    pub webhook_retry_base_ms: u64,
    /// Deliveries in flight at once (HubSpot's default per installed account is 10).
    pub webhook_concurrency: usize,
    /// Whether a creation also emits one `contact.propertyChange` per property set on the new
    /// record, as subscribed apps observe in practice. [UNVERIFIED in the vendor docs.]
    pub webhook_property_events_on_create: bool,
    /// User id behind simulated CRM UI edits (`sourceId: "userId:<id>"`).
    pub ui_user_id: u64,
    /// Account-specific contact properties; `syncroot_id` (unique) by default.
    pub custom_properties: Vec<CustomProperty>,
    /// Load a few fixture contacts at start.
    pub seed_fixtures: bool,
    /// The token every `/__sandbox/` request must carry; random unless set.
    pub control_token: ControlToken,
}

impl Default for HubspotSandboxConfig {
    fn default() -> Self {
        Self {
            access_token: "pat-na1-sandbox-token".to_owned(),
            portal_id: 4242,
            app_id: 1_160_452,
            client_secret: "sandbox-hubspot-client-secret".to_owned(),
            webhook_url: None,
            burst_limit: 100,
            daily_limit: 250_000,
            search_limit_per_second: 5,
            webhook_batch_max: 99,
            webhook_linger_ms: 100,
            webhook_max_attempts: 10,
            webhook_timeout_ms: 5_000,
            webhook_retry_base_ms: 1_000,
            webhook_concurrency: 10,
            webhook_property_events_on_create: true,
            ui_user_id: 777,
            custom_properties: vec![CustomProperty {
                name: "syncroot_id".to_owned(),
                unique: true,
            }],
            seed_fixtures: false,
            control_token: ControlToken::generate(),
        }
    }
}

// Secrets never reach logs: Debug prints everything but the token and the client secret.
impl fmt::Debug for HubspotSandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubspotSandboxConfig")
            .field("access_token", &"<redacted>")
            .field("portal_id", &self.portal_id)
            .field("app_id", &self.app_id)
            .field("client_secret", &"<redacted>")
            .field("webhook_url", &self.webhook_url)
            .field("burst_limit", &self.burst_limit)
            .field("daily_limit", &self.daily_limit)
            .field("search_limit_per_second", &self.search_limit_per_second)
            .field("webhook_batch_max", &self.webhook_batch_max)
            .field("webhook_linger_ms", &self.webhook_linger_ms)
            .field("webhook_max_attempts", &self.webhook_max_attempts)
            .field("webhook_timeout_ms", &self.webhook_timeout_ms)
            .field("webhook_retry_base_ms", &self.webhook_retry_base_ms)
            .field("webhook_concurrency", &self.webhook_concurrency)
            .field(
                "webhook_property_events_on_create",
                &self.webhook_property_events_on_create,
            )
            .field("ui_user_id", &self.ui_user_id)
            .field("custom_properties", &self.custom_properties)
            .field("seed_fixtures", &self.seed_fixtures)
            .field("control_token", &self.control_token)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_token_and_client_secret() {
        let printed = format!("{:?}", HubspotSandboxConfig::default());
        assert!(!printed.contains("pat-na1-sandbox-token"));
        assert!(!printed.contains("sandbox-hubspot-client-secret"));
        let cfg = HubspotSandboxConfig::default();
        assert!(!format!("{cfg:?}").contains(cfg.control_token.expose()));
        assert!(printed.contains("<redacted>"));
    }
}
