//! Salesforce's signed change notifications (SyncRoot's convention, `docs/salesforce-webhooks.md`):
//! `{"events": [...]}` with Change Data Capture's `ChangeEventHeader`, turned into
//! [`InboundEvent`]s.
//!
//! <https://developer.salesforce.com/docs/atlas.en-us.change_data_capture.meta/change_data_capture/cdc_event_fields_header.htm>
//! A `DELETE` that names a `MasterRecordId` is the losing side of a merge.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::inbound::{EventKind, InboundEvent};

#[derive(Debug, Deserialize)]
struct Notification {
    events: Vec<ChangeEvent>,
}

#[derive(Debug, Deserialize)]
struct ChangeEvent {
    #[serde(rename = "ChangeEventHeader")]
    header: Header,
    /// Set on the losers of a merge.
    #[serde(rename = "MasterRecordId", default)]
    master_record_id: Option<String>,
}

/// CDC's `ChangeEventHeader`, the fields SyncRoot reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    entity_name: String,
    record_ids: Vec<String>,
    /// `CREATE`, `UPDATE`, `DELETE`, `UNDELETE`.
    change_type: String,
    /// `com/salesforce/api/rest/62.0;client=syncroot`; empty when the sender cannot tell.
    #[serde(default)]
    change_origin: String,
    transaction_key: String,
    sequence_number: i64,
    /// Epoch milliseconds.
    commit_timestamp: i64,
    #[serde(default)]
    commit_user: String,
}

/// A parsed notification.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub events: Vec<InboundEvent>,
    /// Events about other objects, or change types a contact sync does not use.
    pub ignored: usize,
}

/// Why a body is not a notification.
#[derive(Debug, thiserror::Error)]
#[error("not a Salesforce change notification: {0}")]
pub struct ParseError(String);

/// Who SyncRoot is in Salesforce's change events.
pub struct Identity<'a> {
    /// The `client=` name SyncRoot sends in `Sforce-Call-Options`.
    pub client_name: &'a str,
    /// The user id SyncRoot writes as (empty: unknown).
    pub integration_user: &'a str,
}

/// Parses a verified body.
pub fn parse(body: &[u8], me: &Identity<'_>) -> Result<Parsed, ParseError> {
    let n: Notification = serde_json::from_slice(body).map_err(|e| ParseError(e.to_string()))?;
    let mut out = Parsed::default();
    for e in n.events {
        let h = &e.header;
        let kind = match (h.entity_name.as_str(), h.change_type.as_str()) {
            ("Contact", "CREATE" | "UPDATE" | "UNDELETE") => EventKind::Changed,
            ("Contact", "DELETE") => EventKind::Deleted,
            _ => {
                out.ignored += 1;
                continue;
            }
        };
        let ours = (!me.client_name.is_empty()
            && h.change_origin
                .split(';')
                .any(|part| part.trim() == format!("client={}", me.client_name)))
            || (!me.integration_user.is_empty() && h.commit_user == me.integration_user);
        let occurred_at =
            DateTime::<Utc>::from_timestamp_millis(h.commit_timestamp).unwrap_or_default();
        for id in &h.record_ids {
            let (kind, remote_id) = match (&kind, &e.master_record_id) {
                (EventKind::Deleted, Some(master)) if !master.is_empty() => (
                    EventKind::Merged {
                        merged_ids: vec![id.clone()],
                    },
                    master.clone(),
                ),
                _ => (kind.clone(), id.clone()),
            };
            out.events.push(InboundEvent {
                key: format!("{}:{}:{id}", h.transaction_key, h.sequence_number),
                kind,
                remote_id,
                occurred_at,
                ours,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Identity<'static> = Identity {
        client_name: "syncroot",
        integration_user: "0058d000000001AAAA",
    };

    fn event(change_type: &str, origin: &str, user: &str, extra: &str) -> String {
        format!(
            r#"{{"ChangeEventHeader": {{"entityName": "Contact", "recordIds": ["0038d000000001aAAA"],
              "changeType": "{change_type}", "changeOrigin": "{origin}", "transactionKey": "tk-1",
              "sequenceNumber": 1, "commitTimestamp": 1709629200000, "commitNumber": 42,
              "commitUser": "{user}", "changedFields": ["Title"], "nulledFields": []}},
              "Title": "CTO"{extra}}}"#
        )
    }

    #[test]
    fn the_documented_example_is_an_update_by_someone_else() {
        let body = format!(
            r#"{{"events": [{}]}}"#,
            event("UPDATE", "", "0058d0000000099AAA", "")
        );
        let p = parse(body.as_bytes(), &ME).unwrap();
        assert_eq!(p.events.len(), 1);
        let e = &p.events[0];
        assert_eq!(
            (e.kind.clone(), e.remote_id.as_str(), e.key.as_str(), e.ours),
            (
                EventKind::Changed,
                "0038d000000001aAAA",
                "tk-1:1:0038d000000001aAAA",
                false
            )
        );
        assert_eq!(e.occurred_at.timestamp_millis(), 1709629200000);
    }

    #[test]
    fn our_client_name_or_integration_user_marks_an_event_ours() {
        let by_client = event(
            "UPDATE",
            "com/salesforce/api/rest/62.0;client=syncroot",
            "",
            "",
        );
        let by_user = event("CREATE", "", "0058d000000001AAAA", "");
        let other_client = event(
            "UPDATE",
            "com/salesforce/api/rest/62.0;client=syncrootx",
            "",
            "",
        );
        let body = format!(r#"{{"events": [{by_client}, {by_user}, {other_client}]}}"#);
        let ours: Vec<bool> = parse(body.as_bytes(), &ME)
            .unwrap()
            .events
            .iter()
            .map(|e| e.ours)
            .collect();
        assert_eq!(ours, vec![true, true, false]);
    }

    #[test]
    fn deletes_merges_and_other_objects() {
        let deleted = event("DELETE", "", "", "");
        let merged = event(
            "DELETE",
            "",
            "",
            r#", "MasterRecordId": "0038d000000002bBBB""#,
        );
        let account = event("UPDATE", "", "", "").replace("\"Contact\"", "\"Account\"");
        let body = format!(r#"{{"events": [{deleted}, {merged}, {account}]}}"#);
        let p = parse(body.as_bytes(), &ME).unwrap();
        assert_eq!(p.ignored, 1);
        assert_eq!(p.events[0].kind, EventKind::Deleted);
        assert_eq!(
            (p.events[1].kind.clone(), p.events[1].remote_id.as_str()),
            (
                EventKind::Merged {
                    merged_ids: vec!["0038d000000001aAAA".into()]
                },
                "0038d000000002bBBB"
            )
        );
    }

    #[test]
    fn other_shapes_are_refused() {
        assert!(parse(b"[]", &ME).is_err());
        assert!(parse(br#"{"events": [{"Title": "x"}]}"#, &ME).is_err());
    }
}
