//! What a write produces: who made it ([`Actor`]) and the committed [`Change`] that the change
//! log and notifications are built from.
//!
//! What it is not: the event wire format (`notify.rs`).

use chrono::{DateTime, Utc};

use super::store::Contact;

/// `ChangeEventHeader.changeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Create,
    Update,
    Delete,
}

impl ChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }
}

/// Who writes, and through what.
#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    /// User id recorded in `CreatedById` / `LastModifiedById` and the event's `commitUser`.
    pub user_id: String,
    /// `client=` of `Sforce-Call-Options`, when the caller sent one.
    pub client: Option<String>,
    /// The event's `changeOrigin`, e.g. `com/salesforce/api/rest/62.0;client=syncroot`.
    pub origin: String,
}

/// One committed write.
#[derive(Debug, Clone)]
pub struct Change {
    pub change_type: ChangeType,
    /// The record after the write.
    pub record: Contact,
    /// Field names whose values changed (update only, as in CDC).
    pub changed_fields: Vec<String>,
    /// Fields set to null by this write (update only).
    pub nulled_fields: Vec<String>,
    /// Wall-clock commit time, millisecond precision.
    pub committed_at: DateTime<Utc>,
    pub actor: Actor,
}

pub(super) fn change(
    change_type: ChangeType,
    record: Contact,
    changed: Vec<String>,
    nulled: Vec<String>,
    actor: &Actor,
) -> Change {
    Change {
        change_type,
        record,
        changed_fields: changed,
        nulled_fields: nulled,
        committed_at: Utc::now(),
        actor: actor.clone(),
    }
}
