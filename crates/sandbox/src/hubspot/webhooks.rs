//! Webhook events: turns store [`Change`]s into HubSpot's event objects and hands them to
//! the delivery task, which batches, signs and retries them (see `delivery`).
//!
//! It models one app with subscriptions to `contact.creation`, `contact.deletion`,
//! `contact.privacyDeletion`, `contact.merge` and `contact.propertyChange` for every property;
//! it does not serve HubSpot's subscription management API.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::seq::SliceRandom;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::state::lock;
use super::store::{Change, ChangeKind};

/// Who made a change, as HubSpot reports it in `changeSource` / `sourceId`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeSource {
    /// Through the API with the app's token: `INTEGRATION`, `sourceId` = app id.
    Integration,
    /// A person in the CRM UI: `CRM_UI`, `sourceId` = `userId:<id>`.
    CrmUi,
}

/// One event of a delivery's JSON array.
/// <https://developers.hubspot.com/docs/api/webhooks>
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEvent {
    /// Not guaranteed unique by HubSpot; unique here.
    pub event_id: u64,
    pub subscription_id: u64,
    pub portal_id: u64,
    pub app_id: u64,
    /// Epoch milliseconds.
    pub occurred_at: i64,
    pub subscription_type: &'static str,
    /// 0 on the first delivery, incremented on each retry.
    pub attempt_number: u32,
    pub object_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub property_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub property_value: Option<String>,
    pub change_source: &'static str,
    pub source_id: String,
    /// `NEW` on creation events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_flag: Option<&'static str>,
    /// Merge events: the surviving record, the records merged into it, the id the merged
    /// record goes by (the primary's here) and how many property values it took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_object_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_object_ids: Option<Vec<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_object_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_of_properties_moved: Option<usize>,
}

/// Delivery imperfections a test can ask for (see `faults`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Disorder {
    pub shuffle: bool,
    /// Fraction (0–1) of events queued twice, with the same `eventId`.
    pub duplicate_rate: f64,
}

/// Where deliveries go and the key they are signed with; changeable at run time.
#[derive(Clone, Debug)]
pub struct WebhookTarget {
    pub url: Option<String>,
    pub client_secret: String,
}

/// Messages from the API side to the delivery task.
#[derive(Debug)]
pub enum Command {
    Events(Vec<WebhookEvent>),
    /// Drop everything queued and not yet handed to a delivery (control-API reset).
    Clear,
}

/// The account/app identity stamped on every event.
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    pub portal_id: u64,
    pub app_id: u64,
    pub ui_user_id: u64,
}

/// Subscription ids of the modelled app; property-change subscriptions get one id per
/// property, derived from its name so it is stable across runs.
const CREATION_SUBSCRIPTION: u64 = 1001;
const DELETION_SUBSCRIPTION: u64 = 1002;
const PRIVACY_DELETION_SUBSCRIPTION: u64 = 1003;
const MERGE_SUBSCRIPTION: u64 = 1004;

pub struct Emitter {
    tx: mpsc::UnboundedSender<Command>,
    pub target: Arc<Mutex<WebhookTarget>>,
    paused: watch::Sender<bool>,
    next_event_id: AtomicU64,
    identity: Identity,
    property_events_on_create: bool,
}

impl Emitter {
    pub fn new(
        tx: mpsc::UnboundedSender<Command>,
        target: Arc<Mutex<WebhookTarget>>,
        paused: watch::Sender<bool>,
        identity: Identity,
        property_events_on_create: bool,
    ) -> Self {
        // Start ids in HubSpot's 10-digit range, randomly, so runs don't collide in logs.
        let first_id = 1_000_000_000 + rand::random::<u64>() % 1_000_000_000;
        Self {
            tx,
            target,
            paused,
            next_event_id: AtomicU64::new(first_id),
            identity,
            property_events_on_create,
        }
    }

    /// Queues the events for a committed write; a no-op while no webhook URL is set.
    pub fn publish(&self, changes: &[Change], source: ChangeSource, disorder: Disorder) {
        if lock(&self.target).url.is_none() || changes.is_empty() {
            return;
        }
        let mut events = Vec::with_capacity(changes.len());
        let mut created = None;
        for change in changes {
            if matches!(change.kind, ChangeKind::Created) {
                created = Some(change.object_id);
            }
            let initial = created == Some(change.object_id);
            let is_property = matches!(change.kind, ChangeKind::PropertyChanged { .. });
            if initial && is_property && !self.property_events_on_create {
                continue;
            }
            let event = self.event(change, source);
            if disorder.duplicate_rate > 0.0 && rand::random::<f64>() < disorder.duplicate_rate {
                events.push(event.clone());
            }
            events.push(event);
        }
        if disorder.shuffle {
            events.shuffle(&mut rand::rng());
        }
        // The receiving task only ends at shutdown, when losing events is expected.
        let _ = self.tx.send(Command::Events(events));
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
    }

    pub fn clear(&self) {
        let _ = self.tx.send(Command::Clear);
    }

    fn event(&self, change: &Change, source: ChangeSource) -> WebhookEvent {
        let (subscription_type, subscription_id, name, value, flag) = match &change.kind {
            ChangeKind::Created => (
                "contact.creation",
                CREATION_SUBSCRIPTION,
                None,
                None,
                Some("NEW"),
            ),
            ChangeKind::Deleted => ("contact.deletion", DELETION_SUBSCRIPTION, None, None, None),
            ChangeKind::PrivacyDeleted => (
                "contact.privacyDeletion",
                PRIVACY_DELETION_SUBSCRIPTION,
                None,
                None,
                None,
            ),
            ChangeKind::Merged { .. } => ("contact.merge", MERGE_SUBSCRIPTION, None, None, None),
            ChangeKind::PropertyChanged { name, value } => (
                "contact.propertyChange",
                property_subscription_id(name),
                Some(name.clone()),
                Some(value.clone()),
                None,
            ),
        };
        let (change_source, source_id) = match source {
            ChangeSource::Integration => ("INTEGRATION", self.identity.app_id.to_string()),
            ChangeSource::CrmUi => ("CRM_UI", format!("userId:{}", self.identity.ui_user_id)),
        };
        let mut event = WebhookEvent {
            event_id: self.next_event_id.fetch_add(1, Ordering::Relaxed),
            subscription_id,
            portal_id: self.identity.portal_id,
            app_id: self.identity.app_id,
            occurred_at: change.occurred_at.timestamp_millis(),
            subscription_type,
            attempt_number: 0,
            object_id: change.object_id,
            property_name: name,
            property_value: value,
            change_source,
            source_id,
            change_flag: flag,
            primary_object_id: None,
            merged_object_ids: None,
            new_object_id: None,
            number_of_properties_moved: None,
        };
        if let ChangeKind::Merged { merged_ids, moved } = &change.kind {
            event.primary_object_id = Some(change.object_id);
            event.merged_object_ids = Some(merged_ids.clone());
            event.new_object_id = Some(change.object_id);
            event.number_of_properties_moved = Some(*moved);
        }
        event
    }
}

/// FNV-1a of the property name folded into 2000..102000.
fn property_subscription_id(name: &str) -> u64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    2_000 + hash % 100_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn emitter(url: Option<&str>) -> (Emitter, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let target = WebhookTarget {
            url: url.map(str::to_owned),
            client_secret: "s".into(),
        };
        let identity = Identity {
            portal_id: 4242,
            app_id: 1_160_452,
            ui_user_id: 777,
        };
        let (paused, _) = watch::channel(false);
        (
            Emitter::new(tx, Arc::new(Mutex::new(target)), paused, identity, true),
            rx,
        )
    }

    fn changes() -> Vec<Change> {
        let now = Utc::now();
        let prop = ChangeKind::PropertyChanged {
            name: "email".into(),
            value: "a@b.io".into(),
        };
        vec![
            Change {
                object_id: 7,
                kind: ChangeKind::Created,
                occurred_at: now,
            },
            Change {
                object_id: 7,
                kind: prop,
                occurred_at: now,
            },
        ]
    }

    #[test]
    fn integration_changes_carry_the_app_id_and_creation_flag() {
        let (e, mut rx) = emitter(Some("http://127.0.0.1:1/hook"));
        e.publish(&changes(), ChangeSource::Integration, Disorder::default());
        let Ok(Command::Events(events)) = rx.try_recv() else {
            panic!("no events queued")
        };
        let json = serde_json::to_value(&events).unwrap_or_default();
        assert_eq!(json[0]["subscriptionType"], "contact.creation");
        assert_eq!(json[0]["changeFlag"], "NEW");
        assert_eq!(json[0]["changeSource"], "INTEGRATION");
        assert_eq!(json[0]["sourceId"], "1160452");
        assert_eq!(json[0]["objectId"], 7);
        assert_eq!(json[1]["propertyName"], "email");
        assert_eq!(json[1]["propertyValue"], "a@b.io");
        assert!(json[1].get("changeFlag").is_none());
    }

    #[test]
    fn ui_changes_name_the_user_and_nothing_is_queued_without_a_url() {
        let (e, mut rx) = emitter(Some("http://127.0.0.1:1/hook"));
        e.publish(&changes(), ChangeSource::CrmUi, Disorder::default());
        let Ok(Command::Events(events)) = rx.try_recv() else {
            panic!("no events queued")
        };
        assert_eq!(
            (events[0].change_source, events[0].source_id.as_str()),
            ("CRM_UI", "userId:777")
        );
        let (silent, mut rx) = emitter(None);
        silent.publish(&changes(), ChangeSource::Integration, Disorder::default());
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn duplicate_rate_one_sends_every_event_twice() {
        let (e, mut rx) = emitter(Some("http://127.0.0.1:1/hook"));
        let disorder = Disorder {
            shuffle: true,
            duplicate_rate: 1.0,
        };
        e.publish(&changes(), ChangeSource::Integration, disorder);
        let Ok(Command::Events(events)) = rx.try_recv() else {
            panic!("no events queued")
        };
        assert_eq!(events.len(), 4);
        let ids: std::collections::HashSet<_> = events.iter().map(|e| e.event_id).collect();
        assert_eq!(ids.len(), 2);
    }
}
