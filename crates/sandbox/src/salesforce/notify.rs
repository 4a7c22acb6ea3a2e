//! Signed change notifications: CDC-shaped events POSTed to a webhook, SyncRoot's own
//! convention for Salesforce (docs/salesforce-webhooks.md; crm-apis.md §2.10 "Typical custom
//! pattern").
//!
//! What it is: turning committed [`Change`]s into `ChangeEventHeader` events, the signature, and
//! the outbox that queues events for the delivery task (`notifier.rs`). What it is not: Change
//! Data Capture itself (no Pub/Sub or CometD channel, no replay ids).
//!
//! Signature scheme: `X-Sync-Signature = base64(HMAC-SHA256(secret, timestamp + "." + body))`
//! with `X-Sync-Timestamp` in epoch milliseconds; the body is serialised once per batch and
//! re-signed with a fresh timestamp on each attempt, so retries stay inside a receiver's replay
//! window. Vendor doc for the event shape: https://developer.salesforce.com/docs/atlas.en-us.change_data_capture.meta/change_data_capture/cdc_event_fields_header.htm

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{mpsc, watch};

use super::fields::Schema;
use super::ids;
use super::outbound_message as om;
use super::record::{self, Flavour};
use super::state::lock;
use super::store::{Change, ChangeType};
use super::wire::Ordered;

pub const TIMESTAMP_HEADER: &str = "X-Sync-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Sync-Signature";

/// `base64(HMAC-SHA256(secret, timestamp + "." + body))`.
pub fn sign(secret: &str, timestamp_ms: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp_ms.as_bytes());
    mac.update(b".");
    mac.update(body);
    B64.encode(mac.finalize().into_bytes())
}

/// Where notifications go.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub url: Option<String>,
    pub secret: String,
}

/// An event waiting for delivery, tagged with the outbox generation it was published in.
#[derive(Debug)]
pub struct Queued {
    generation: u64,
    pub(super) event: Value,
    /// The same change as an Outbound Message notification (creates and updates only).
    pub(super) notification: Option<om::Notification>,
}

/// The sending side, owned by the sandbox state.
#[derive(Debug)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Queued>,
    target: Mutex<Target>,
    /// Where Outbound Messages go (none by default).
    outbound: Mutex<om::Target>,
    paused: watch::Sender<bool>,
    /// Bumped by `/__sandbox/reset` so that events queued before it are dropped.
    generation: AtomicU64,
    /// CDC `commitNumber`: one per committed transaction.
    commit_number: AtomicU64,
    /// Numbers Outbound Message notification ids.
    notification_number: AtomicU64,
}

impl Outbox {
    pub fn new(target: Target) -> (Self, mpsc::UnboundedReceiver<Queued>, watch::Receiver<bool>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (paused, paused_rx) = watch::channel(false);
        let outbox = Self {
            tx,
            target: Mutex::new(target),
            outbound: Mutex::new(om::Target::default()),
            paused,
            generation: AtomicU64::new(0),
            commit_number: AtomicU64::new(0),
            notification_number: AtomicU64::new(0),
        };
        (outbox, rx, paused_rx)
    }

    /// Queues the events of one committed transaction.
    pub fn publish(&self, changes: &[Change], schema: &Schema) {
        if changes.is_empty() {
            return;
        }
        let commit_number = self.commit_number.fetch_add(1, Ordering::Relaxed) + 1;
        let generation = self.generation.load(Ordering::Relaxed);
        for (event, ch) in events_for(changes, schema, commit_number)
            .into_iter()
            .zip(changes)
        {
            // A Flow or workflow rule fires on create and edit, not on delete.
            let notification = (ch.change_type != ChangeType::Delete).then(|| {
                let n = self.notification_number.fetch_add(1, Ordering::Relaxed) + 1;
                om::Notification::of(ids::mint(om::NOTIFICATION_PREFIX, n), &ch.record, schema)
            });
            // A send error means the notifier has stopped (shutdown); nothing is left to notify.
            let _ = self.tx.send(Queued {
                generation,
                event,
                notification,
            });
        }
    }

    pub fn target(&self) -> Target {
        lock(&self.target).clone()
    }

    pub fn set_target(&self, url: Option<Option<String>>, secret: Option<String>) {
        let mut t = lock(&self.target);
        if let Some(url) = url {
            t.url = url;
        }
        if let Some(secret) = secret {
            t.secret = secret;
        }
    }

    pub fn outbound_target(&self) -> om::Target {
        lock(&self.outbound).clone()
    }

    pub fn set_outbound_target(&self, target: om::Target) {
        *lock(&self.outbound) = target;
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
    }

    /// Drops everything queued so far.
    pub fn discard_pending(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// False for events queued before the last `discard_pending`.
    pub(super) fn is_current(&self, q: &Queued) -> bool {
        q.generation == self.generation.load(Ordering::Relaxed)
    }
}

/// One CDC-style event per change; the changes share a `transactionKey`, numbered in order.
pub fn events_for(changes: &[Change], schema: &Schema, commit_number: u64) -> Vec<Value> {
    let transaction_key = random_uuid();
    changes
        .iter()
        .enumerate()
        .map(|(i, ch)| {
            let header = json!({
                "entityName": "Contact",
                "recordIds": [ch.record.id],
                "changeType": ch.change_type.as_str(),
                "changeOrigin": ch.actor.origin,
                "transactionKey": transaction_key,
                "sequenceNumber": i + 1,
                "commitTimestamp": ch.committed_at.timestamp_millis(),
                "commitNumber": commit_number,
                "commitUser": ch.actor.user_id,
                "changedFields": ch.changed_fields,
                "nulledFields": ch.nulled_fields,
            });
            let mut event = Ordered::default();
            event.push("ChangeEventHeader", header);
            for name in event_fields(ch, schema) {
                if let Some(def) = schema.find(&name) {
                    event.push(
                        def.name.clone(),
                        record::value(&ch.record, def, Flavour::Event),
                    );
                }
            }
            serde_json::to_value(event).unwrap_or_default()
        })
        .collect()
}

/// Fields carried in the event body: every set field on create (as CDC does), the changed
/// ones on update, none on delete.
fn event_fields(ch: &Change, schema: &Schema) -> Vec<String> {
    match ch.change_type {
        ChangeType::Create => {
            let mut names: Vec<String> = schema
                .fields()
                .iter()
                .filter(|d| d.writable && ch.record.values.contains_key(&d.name))
                .map(|d| d.name.clone())
                .collect();
            names.extend(
                [
                    "CreatedDate",
                    "CreatedById",
                    "LastModifiedDate",
                    "LastModifiedById",
                ]
                .map(String::from),
            );
            names
        }
        ChangeType::Update => ch.changed_fields.clone(),
        // The losing side of a merge names the record it was merged into.
        ChangeType::Delete if ch.record.values.contains_key("MasterRecordId") => {
            vec!["MasterRecordId".to_string()]
        }
        ChangeType::Delete => Vec::new(),
    }
}

fn random_uuid() -> String {
    let mut rng = rand::rng();
    let (a, b, c, d, e): (u32, u16, u16, u16, u64) = (
        rng.random(),
        rng.random(),
        rng.random(),
        rng.random(),
        rng.random(),
    );
    format!(
        "{a:08x}-{b:04x}-{:04x}-{:04x}-{:012x}",
        (c & 0x0fff) | 0x4000,
        (d & 0x3fff) | 0x8000,
        e & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::store::{Actor, Store, Undo};

    #[test]
    fn signature_matches_known_vector() {
        // printf '%s' '1700000000000.{"events":[]}' | openssl dgst -sha256 -hmac secret -binary | base64
        assert_eq!(
            sign("secret", "1700000000000", br#"{"events":[]}"#),
            "zIvSZV7a0yTcTK3rgyVWMy/qKOUmT6wbdVJqsrbS8Wo="
        );
    }

    #[test]
    fn events_carry_cdc_header_and_changed_values() {
        let schema = Schema::contact("Ext__c");
        let mut store = Store::new("Ext__c");
        let actor = Actor {
            user_id: "005X".into(),
            client: Some("sync".into()),
            origin: "com/salesforce/api/rest/62.0;client=sync".into(),
        };
        let mut undo = Undo::default();
        let created = store
            .create(vec![("LastName".into(), json!("A"))], &actor, &mut undo)
            .unwrap();
        let key = created.record.id[..15].to_string();
        let updated = store
            .update(
                &key,
                vec![("Title".into(), json!("CTO"))],
                &actor,
                &mut undo,
            )
            .unwrap();
        let events = events_for(&[created, updated], &schema, 7);
        let h = &events[1]["ChangeEventHeader"];
        assert_eq!(h["changeType"], "UPDATE");
        assert_eq!(
            h["changeOrigin"],
            "com/salesforce/api/rest/62.0;client=sync"
        );
        assert_eq!(h["sequenceNumber"], 2);
        assert_eq!(h["commitNumber"], 7);
        assert_eq!(
            h["transactionKey"],
            events[0]["ChangeEventHeader"]["transactionKey"]
        );
        assert_eq!(h["changedFields"], json!(["Title", "LastModifiedDate"]));
        assert_eq!(events[1]["Title"], "CTO");
        assert_eq!(events[0]["LastName"], "A");
        assert!(events[1].get("LastName").is_none());
    }
}
