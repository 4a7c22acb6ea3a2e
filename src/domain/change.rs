//! `ContactChange`: one accepted write, as it travels from the API through RabbitMQ to the
//! forwarder.
//!
//! A change carries the contact's **complete** state at its sequence number, not a diff. The
//! forwarder therefore never needs the previous change to apply this one: applying the newest
//! sequence number is always right, a stale one is skipped, and a redelivery is a no-op.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::contact::{ContactFields, ContactId};
use super::crm::Crm;
use super::values::Origin;

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
    /// Where the change came from. Messages from builds before two-way sync carry none: they
    /// came from the API.
    #[serde(default)]
    pub origin: Origin,
    /// When the API accepted the change (the contact's `updated_at` once applied).
    pub accepted_at: DateTime<Utc>,
    /// When the contact was first accepted (its `created_at`).
    pub created_at: DateTime<Utc>,
    pub contact: ContactFields,
    /// Made by a job going through many records (a backfill, a drift repair): nobody waits
    /// for it, so its delivery may wait longer to fill calls ([`DeliveryTask::bulk`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bulk: bool,
}

/// Changes accepted together for one shard, in the order accepted: one message where each
/// would otherwise be its own (AMQP type `syncroot.contact.changes`). The forwarder reads both
/// forms; one change alone still travels as a plain [`ContactChange`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePack {
    /// Wire format version, [`CHANGE_FORMAT_VERSION`].
    pub v: u32,
    pub changes: Vec<PackedChange>,
}

/// One change of a [`ChangePack`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedChange {
    pub change: ContactChange,
    /// The trace context of the request that made the change (W3C `traceparent`,
    /// `tracestate`), so its processing continues that request's trace; empty without one.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub trace: HashMap<String, String>,
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
    /// Failed attempts so far (0 for a fresh task); decides the next retry tier.
    #[serde(default)]
    pub attempt: u32,
    /// Why each failed attempt failed, oldest first (at most [`MAX_ERROR_HISTORY`]); what the
    /// dead-letter queue shows a person.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<AttemptError>,
    /// For a change a job made ([`ContactChange::bulk`]): a batch of such tasks alone waits
    /// for many calls' worth, so a job's writes go out in full calls even when they trickle.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bulk: bool,
}

/// Delivery tasks for one CRM that the forwarder handed on together: one message where each
/// would otherwise be its own (AMQP type `syncroot.deliveries`). The delivery worker reads both
/// forms and settles each task on its own; one task alone still travels as a plain
/// [`DeliveryTask`], as do retries and dead letters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryPack {
    /// Wire format version, [`CHANGE_FORMAT_VERSION`].
    pub v: u32,
    pub tasks: Vec<PackedTask>,
}

/// One task of a [`DeliveryPack`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedTask {
    pub task: DeliveryTask,
    /// The trace context of the change the task hands on (as [`PackedChange::trace`]).
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub trace: HashMap<String, String>,
}

/// Most errors a task carries; older ones are dropped first.
pub const MAX_ERROR_HISTORY: usize = 20;

impl DeliveryTask {
    /// A fresh task: no attempts yet.
    pub fn new(contact_id: ContactId, version: i64, crm: Crm) -> Self {
        Self {
            v: CHANGE_FORMAT_VERSION,
            contact_id,
            version,
            crm,
            attempt: 0,
            errors: Vec::new(),
            bulk: false,
        }
    }

    /// The same task, marked as a job's ([`DeliveryTask::bulk`]) or not.
    pub fn in_bulk(mut self, bulk: bool) -> Self {
        self.bulk = bulk;
        self
    }

    /// Records a failed attempt's error, keeping the newest [`MAX_ERROR_HISTORY`].
    pub fn push_error(&mut self, error: AttemptError) {
        self.errors.push(error);
        let excess = self.errors.len().saturating_sub(MAX_ERROR_HISTORY);
        self.errors.drain(..excess);
    }
}

/// One failed delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    pub at: DateTime<Utc>,
    /// Machine-readable: the CRM's error code (`REQUIRED_FIELD_MISSING`) or SyncRoot's
    /// (`UNAVAILABLE`, `RATE_LIMITED`).
    pub code: String,
    /// Human-readable, without credentials.
    pub message: String,
    /// Whether trying again could help.
    pub retryable: bool,
}
