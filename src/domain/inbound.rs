//! `InboundBatch`: what a CRM's webhook said, normalised, as it travels from the receiver
//! through RabbitMQ to the webhook worker.
//!
//! Events carry record ids, not values: the worker reads each record's current state from the
//! CRM, so a late, duplicated or reordered event can never apply an old value.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::change::CHANGE_FORMAT_VERSION;
use super::crm::Crm;

/// One webhook request's events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundBatch {
    /// Wire format version, [`CHANGE_FORMAT_VERSION`].
    pub v: u32,
    pub crm: Crm,
    pub received_at: DateTime<Utc>,
    pub events: Vec<InboundEvent>,
}

impl InboundBatch {
    pub fn new(crm: Crm, events: Vec<InboundEvent>) -> Self {
        Self {
            v: CHANGE_FORMAT_VERSION,
            crm,
            received_at: Utc::now(),
            events,
        }
    }
}

/// What happened to a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum EventKind {
    /// Created, changed or restored: read its current state.
    Changed,
    /// Deleted (archived) in the CRM.
    Deleted,
    /// Erased for privacy (GDPR) in the CRM.
    PrivacyDeletion,
    /// Other records were merged into this one (`remote_id` survives).
    Merged { merged_ids: Vec<String> },
}

/// One event of a webhook request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundEvent {
    /// Unique per event and CRM, to recognise a redelivery (HubSpot: event id, subscription
    /// type, record and time, since HubSpot's event ids alone are not guaranteed unique;
    /// Salesforce: transaction key and sequence number).
    pub key: String,
    #[serde(flatten)]
    pub kind: EventKind,
    /// The CRM's record id.
    pub remote_id: String,
    pub occurred_at: DateTime<Utc>,
    /// The CRM says SyncRoot itself made this change (HubSpot `changeSource` INTEGRATION from
    /// SyncRoot's app; Salesforce `changeOrigin` naming SyncRoot's client, or its integration
    /// user). A hint: the worker also compares values, since not every sender can tell.
    pub ours: bool,
}

/// What a record deleted in a CRM does to its contact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletePolicy {
    /// Nothing: the contact stays, and SyncRoot's next write to it recreates the record.
    Ignore,
    /// The contact stays and SyncRoot stops writing it to that CRM (the link says so) until
    /// the record is restored there. Nothing is lost and nothing comes back unasked.
    #[default]
    Mark,
    /// The contact is deleted, and so its records in the other CRMs.
    Propagate,
}

/// What a CRM's privacy deletion (GDPR erasure) does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PrivacyPolicy {
    /// Erase the person: the contact is deleted with its records in the other CRMs, and its
    /// values are removed from SyncRoot's tables and history.
    #[default]
    Erase,
    /// Handle it like an ordinary deletion (the deletion policy decides).
    Delete,
}
