//! The JSON body of a subscription's delivery: one change-feed entry, in the Standard Webhooks
//! payload shape (`type`, `timestamp`, `data`).
//!
//! ```json
//! {"type": "contact.updated", "timestamp": "2026-12-06T14:00:00.123Z",
//!  "data": {"cursor": "1234-56", "contact_id": "…", "version": 3, "origin": "api",
//!           "operation": "update", "changes": [{"field": "job_title", "old": "…", "new": "…"}],
//!           "accepted_at": "2026-12-06T14:00:00.123Z"}}
//! ```
//!
//! `data` is the entry as `GET /changes` shows it, plus its `cursor` (also the delivery's
//! `webhook-id`): the feed position a receiver can resume `GET /changes?after=` from.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::merge::FieldChange;
use crate::store::history::FeedRow;

/// One delivery's body.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    /// `contact.` and what happened: `created`, `updated`, `deleted`, `kept`, `detached`,
    /// `merged` or `erased`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the change was accepted (the Standard Webhooks payload's `timestamp`).
    pub timestamp: DateTime<Utc>,
    pub data: Data<'a>,
}

/// The feed entry.
#[derive(Debug, Serialize)]
pub struct Data<'a> {
    pub cursor: String,
    pub contact_id: uuid::Uuid,
    pub version: i64,
    pub origin: &'a str,
    pub operation: &'a str,
    pub changes: &'a [FieldChange],
    pub accepted_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<&'a str>,
}

/// The event type of a history operation.
pub fn event_type(operation: &str) -> String {
    let past = match operation {
        "create" => "created",
        "update" => "updated",
        "delete" => "deleted",
        "kept" => "kept",
        "detach" => "detached",
        "merge" => "merged",
        "erase" => "erased",
        other => other,
    };
    format!("contact.{past}")
}

impl<'a> Event<'a> {
    pub fn of(entry: &'a FeedRow) -> Self {
        let row = &entry.row;
        Self {
            kind: event_type(&row.operation),
            timestamp: row.accepted_at,
            data: Data {
                cursor: entry.position.cursor(),
                contact_id: entry.contact_id,
                version: row.version,
                origin: &row.origin,
                operation: &row.operation,
                changes: &row.changes,
                accepted_at: row.accepted_at,
                via: row.via.as_deref(),
            },
        }
    }

    /// The body as sent (and signed).
    pub fn to_body(&self) -> Vec<u8> {
        // Serialising plain strings, numbers and times cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::history::{FeedPosition, VersionRow};

    #[test]
    fn an_entry_becomes_a_typed_event_with_its_cursor() {
        let at = "2026-12-06T14:00:00Z".parse().unwrap();
        let entry = FeedRow {
            position: FeedPosition { txid: 9, entry: 4 },
            contact_id: uuid::Uuid::nil(),
            row: VersionRow {
                entry: 4,
                version: 2,
                origin: "api".into(),
                operation: "update".into(),
                changes: vec![FieldChange {
                    field: "job_title".into(),
                    old: None,
                    new: Some("CTO".into()),
                }],
                conflicts: vec![],
                accepted_at: at,
                note: None,
                via: None,
            },
        };
        let body: serde_json::Value = serde_json::from_slice(&Event::of(&entry).to_body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "contact.updated",
                "timestamp": "2026-12-06T14:00:00Z",
                "data": {
                    "cursor": "9-4",
                    "contact_id": "00000000-0000-0000-0000-000000000000",
                    "version": 2, "origin": "api", "operation": "update",
                    "changes": [{"field": "job_title", "old": null, "new": "CTO"}],
                    "accepted_at": "2026-12-06T14:00:00Z"
                }
            })
        );
    }

    #[test]
    fn operations_map_to_past_tense_types() {
        assert_eq!(event_type("create"), "contact.created");
        assert_eq!(event_type("delete"), "contact.deleted");
        assert_eq!(event_type("detach"), "contact.detached");
    }
}
