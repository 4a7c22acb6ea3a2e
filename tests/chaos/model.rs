//! What the API accepted: the expected final state of every contact the load created.
//!
//! A change enters the model only once the API answered `202`, with the version the API gave
//! it; a contact's final state is its changes replayed in version order (several writers may
//! change one contact at once).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use uuid::Uuid;

/// The optional fields SyncRoot stores besides `email`.
pub const FIELDS: [&str; 5] = ["first_name", "last_name", "phone", "company", "job_title"];

/// A live contact's fields (`None`: empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fields {
    pub email: String,
    pub values: BTreeMap<&'static str, Option<String>>,
}

impl Fields {
    /// The fields of a full document (create or replace).
    pub fn from_document(doc: &Value) -> Self {
        let mut values = BTreeMap::new();
        for f in FIELDS {
            values.insert(f, doc[f].as_str().map(str::to_owned));
        }
        Self {
            email: doc["email"].as_str().unwrap_or_default().to_lowercase(),
            values,
        }
    }

    /// Applies a JSON merge patch: a member sets a field, `null` clears it.
    pub fn merge(&mut self, patch: &Map<String, Value>) {
        for (k, v) in patch {
            if k == "email" {
                if let Some(e) = v.as_str() {
                    self.email = e.to_lowercase();
                }
            } else if let Some(f) = FIELDS.iter().find(|f| **f == k) {
                self.values.insert(f, v.as_str().map(str::to_owned));
            }
        }
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.values.get(field).and_then(|v| v.as_deref())
    }
}

/// One accepted change, as the client sent it.
#[derive(Clone, Debug)]
pub enum Change {
    /// A create or a full replacement.
    Document(Fields),
    Patch(Map<String, Value>),
    Delete,
}

/// One contact's expected state.
#[derive(Clone, Debug)]
pub struct Expected {
    /// `None` once a delete was accepted.
    pub live: Option<Fields>,
    /// Every address it had (a CRM record carrying one of them may be this contact's).
    pub emails: BTreeSet<String>,
    /// Made permanently invalid for Salesforce on purpose.
    pub invalid_for_salesforce: bool,
    /// Every accepted change with the version the API answered, in the order the answers came.
    /// Concurrent writers' answers may come out of order; the versions say the real order.
    pub changes: Vec<(i64, Change)>,
}

impl Expected {
    /// Replays the changes in version order: the state the last accepted change left. A change
    /// answered as a no-op carries the version it found, so it replays as a no-op after or
    /// before the change that made that version (its values equal that version's).
    fn settle(&mut self) {
        let mut changes = self.changes.clone();
        changes.sort_by_key(|(v, _)| *v);
        let mut live: Option<Fields> = None;
        for (_, change) in changes {
            match change {
                Change::Document(f) => live = Some(f),
                Change::Patch(p) => {
                    if let Some(f) = live.as_mut() {
                        f.merge(&p);
                    }
                }
                Change::Delete => live = None,
            }
        }
        if let Some(f) = &live {
            self.emails.insert(f.email.clone());
        }
        self.live = live;
    }
}

/// Every contact the load created, by id.
#[derive(Default)]
pub struct Model {
    pub contacts: BTreeMap<Uuid, Expected>,
    /// Changes the API accepted (creates, updates, deletes).
    pub accepted: u64,
    /// Requests answered 503 or not answered, then sent again.
    pub resent: u64,
    /// Requests that raced a delete of their contact and were answered 404, as they should be.
    pub raced_a_delete: u64,
    /// Answers no client should get for a well-formed request (status and body).
    pub unexpected: Vec<String>,
}

impl Model {
    pub fn created(&mut self, id: Uuid, doc: &Value, invalid: bool) {
        let fields = Fields::from_document(doc);
        self.accepted += 1;
        self.contacts.insert(
            id,
            Expected {
                emails: BTreeSet::from([fields.email.clone()]),
                live: Some(fields.clone()),
                invalid_for_salesforce: invalid,
                changes: vec![(1, Change::Document(fields))],
            },
        );
    }

    /// Records an accepted change of an existing contact at `version` and replays its state.
    pub fn changed(&mut self, id: Uuid, version: i64, change: Change) {
        self.accepted += 1;
        if let Some(c) = self.contacts.get_mut(&id) {
            if let Change::Patch(p) = &change
                && let Some(e) = p.get("email").and_then(Value::as_str)
            {
                c.emails.insert(e.to_lowercase());
            }
            if let Change::Document(f) = &change {
                c.emails.insert(f.email.clone());
            }
            c.changes.push((version, change));
            c.settle();
        }
    }

    pub fn invalid_ids(&self) -> Vec<Uuid> {
        self.contacts
            .iter()
            .filter(|(_, c)| c.invalid_for_salesforce && c.live.is_some())
            .map(|(id, _)| *id)
            .collect()
    }
}
