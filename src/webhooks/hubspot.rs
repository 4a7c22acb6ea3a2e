//! HubSpot's webhook payload: a JSON array of events, turned into [`InboundEvent`]s.
//!
//! <https://developers.hubspot.com/docs/api/webhooks> (payload fields, subscription types).
//! Contact events only: `contact.*`, and the generic `object.*` ones with `objectTypeId`
//! `0-1`. Other subscriptions (associations, companies, deals) are counted and ignored.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::inbound::{EventKind, InboundEvent};

/// One event as HubSpot sends it.
/// <https://developers.hubspot.com/docs/api/webhooks#webhook-payloads>
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HubspotEvent {
    /// Not guaranteed unique by HubSpot.
    event_id: serde_json::Number,
    /// Epoch milliseconds.
    occurred_at: i64,
    /// `contact.propertyChange`, …; the docs' table calls it `eventType`.
    #[serde(alias = "eventType")]
    subscription_type: String,
    /// Generic subscriptions: `0-1` is the contact object.
    #[serde(default)]
    object_type_id: Option<String>,
    #[serde(default)]
    object_id: Option<serde_json::Number>,
    #[serde(default)]
    property_name: Option<String>,
    #[serde(default)]
    change_source: Option<String>,
    /// The app id (as text) when `changeSource` is `INTEGRATION`.
    #[serde(default)]
    source_id: Option<String>,
    /// Merges: the record that survives and the ones merged into it.
    #[serde(default)]
    primary_object_id: Option<serde_json::Number>,
    #[serde(default)]
    merged_object_ids: Vec<serde_json::Number>,
}

/// A parsed webhook request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub events: Vec<InboundEvent>,
    /// Events of subscriptions a contact sync does not use.
    pub ignored: usize,
}

/// Why a body is not a HubSpot webhook payload.
#[derive(Debug, thiserror::Error)]
#[error("not a HubSpot webhook payload: {0}")]
pub struct ParseError(String);

/// Parses a verified body. `app_id` is SyncRoot's own HubSpot app id (empty: unknown).
pub fn parse(body: &[u8], app_id: &str) -> Result<Parsed, ParseError> {
    let raw: Vec<HubspotEvent> =
        serde_json::from_slice(body).map_err(|e| ParseError(e.to_string()))?;
    let mut out = Parsed::default();
    for e in raw {
        match event(&e, app_id) {
            Some(event) => out.events.push(event),
            None => out.ignored += 1,
        }
    }
    Ok(out)
}

fn event(e: &HubspotEvent, app_id: &str) -> Option<InboundEvent> {
    let (object, action) = e.subscription_type.split_once('.')?;
    let is_contact =
        object == "contact" || (object == "object" && e.object_type_id.as_deref() == Some("0-1"));
    if !is_contact {
        return None;
    }
    let kind = match action {
        "creation" | "propertyChange" | "restore" => EventKind::Changed,
        "deletion" => EventKind::Deleted,
        "privacyDeletion" => EventKind::PrivacyDeletion,
        "merge" => EventKind::Merged {
            merged_ids: e
                .merged_object_ids
                .iter()
                .map(ToString::to_string)
                .collect(),
        },
        _ => return None,
    };
    let remote_id = match &kind {
        EventKind::Merged { .. } => e.primary_object_id.as_ref().or(e.object_id.as_ref()),
        _ => e.object_id.as_ref(),
    }?
    .to_string();
    let ours = !app_id.is_empty()
        && e.change_source.as_deref() == Some("INTEGRATION")
        && e.source_id.as_deref() == Some(app_id);
    Some(InboundEvent {
        key: format!(
            "{}:{}:{}:{}:{}",
            e.event_id,
            e.subscription_type,
            remote_id,
            e.occurred_at,
            e.property_name.as_deref().unwrap_or("")
        ),
        kind,
        remote_id,
        occurred_at: DateTime::<Utc>::from_timestamp_millis(e.occurred_at).unwrap_or_default(),
        ours,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_batch_parses() {
        let body = br#"[
          { "eventId": 3816279340, "subscriptionId": 25, "portalId": 4242, "appId": 1160452,
            "occurredAt": 1709629200000, "subscriptionType": "contact.propertyChange",
            "attemptNumber": 0, "objectId": 51, "propertyName": "jobtitle",
            "propertyValue": "CTO", "changeSource": "CRM_UI", "sourceId": "userId:777" },
          { "eventId": 3816279480, "subscriptionId": 22, "portalId": 4242, "appId": 1160452,
            "occurredAt": 1709629201000, "subscriptionType": "contact.creation",
            "attemptNumber": 0, "objectId": 52, "changeFlag": "NEW",
            "changeSource": "INTEGRATION", "sourceId": "1160452" }
        ]"#;
        let p = parse(body, "1160452").unwrap();
        assert_eq!(p.ignored, 0);
        assert_eq!(p.events.len(), 2);
        assert_eq!(p.events[0].remote_id, "51");
        assert_eq!(p.events[0].kind, EventKind::Changed);
        assert!(!p.events[0].ours);
        assert!(p.events[1].ours, "INTEGRATION from our app id is ours");
        assert_eq!(
            p.events[0].key,
            "3816279340:contact.propertyChange:51:1709629200000:jobtitle"
        );
        assert!(!parse(body, "").unwrap().events[1].ours);
    }

    #[test]
    fn deletions_merges_and_generic_contact_events_are_understood_and_others_ignored() {
        let body = br#"[
          {"eventId": 1, "occurredAt": 1, "subscriptionType": "contact.deletion", "objectId": 7},
          {"eventId": 2, "occurredAt": 1, "subscriptionType": "contact.privacyDeletion", "objectId": 7},
          {"eventId": 3, "occurredAt": 1, "subscriptionType": "contact.merge", "objectId": 9,
           "primaryObjectId": 9, "mergedObjectIds": [7, 8], "newObjectId": 9},
          {"eventId": 4, "occurredAt": 1, "subscriptionType": "object.propertyChange", "objectTypeId": "0-1", "objectId": 5},
          {"eventId": 5, "occurredAt": 1, "subscriptionType": "object.propertyChange", "objectTypeId": "0-2", "objectId": 5},
          {"eventId": 6, "occurredAt": 1, "subscriptionType": "contact.associationChange", "objectId": 5},
          {"eventId": 7, "occurredAt": 1, "subscriptionType": "deal.creation", "objectId": 5}
        ]"#;
        let p = parse(body, "").unwrap();
        let kinds: Vec<_> = p
            .events
            .iter()
            .map(|e| (&e.kind, e.remote_id.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (&EventKind::Deleted, "7"),
                (&EventKind::PrivacyDeletion, "7"),
                (
                    &EventKind::Merged {
                        merged_ids: vec!["7".into(), "8".into()]
                    },
                    "9"
                ),
                (&EventKind::Changed, "5"),
            ]
        );
        assert_eq!(p.ignored, 3);
    }

    #[test]
    fn bodies_that_are_not_event_arrays_are_refused() {
        assert!(parse(b"{}", "").is_err());
        assert!(parse(b"[{\"eventId\": 1}]", "").is_err());
        assert!(parse(b"not json", "").is_err());
    }
}
