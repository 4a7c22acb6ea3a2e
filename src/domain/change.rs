//! `ContactChange`: one accepted write, as it travels from the API through RabbitMQ to the
//! forwarder.
//!
//! A change carries the contact's **complete** state at its sequence number, not a diff. The
//! forwarder therefore never needs the previous change to apply this one: applying the newest
//! sequence number is always right, a stale one is skipped, and a redelivery is a no-op.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::contact::{ContactFields, ContactId};
use super::crm::Crm;

/// The wire format's version; a consumer refuses versions it does not know.
pub const CHANGE_FORMAT_VERSION: u32 = 1;

/// What the change does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    /// Create or replace the contact with `contact`.
    Upsert,
    /// Delete the contact, keeping a tombstone; `contact` is its last state.
    Delete,
}

/// One accepted write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactChange {
    /// Wire format version, [`CHANGE_FORMAT_VERSION`].
    pub v: u32,
    /// Unique per change; also the AMQP `message-id`.
    pub message_id: Uuid,
    pub contact_id: ContactId,
    /// Per-contact sequence number, assigned under a row lock at acceptance: 1 for the create,
    /// +1 for each later change. Together with `accepted_at` it orders a contact's changes.
    pub seq: i64,
    pub op: ChangeOp,
    /// When the API accepted the change (the contact's `updated_at` once applied).
    pub accepted_at: DateTime<Utc>,
    /// When the contact was first accepted (its `created_at`).
    pub created_at: DateTime<Utc>,
    pub contact: ContactFields,
}

/// "Bring this contact up to date in this CRM": published by the forwarder once a change is
/// persisted, one per enabled CRM. It carries only ids; the delivery worker reads the contact's
/// current state, so several tasks for one contact coalesce into one write of the newest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryTask {
    /// Wire format version, [`CHANGE_FORMAT_VERSION`].
    pub v: u32,
    pub contact_id: ContactId,
    /// The contact version persisted when the task was published.
    pub version: i64,
    pub crm: Crm,
}
