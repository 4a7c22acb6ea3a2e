//! What the API accepted: the expected final state of every contact the load created.
//!
//! A change enters the model only once the API answered `202`; a contact's changes are sent
//! one at a time, so the last accepted change is its final state.

use std::collections::BTreeMap;

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

/// One contact's expected state.
#[derive(Clone, Debug)]
pub struct Expected {
    /// `None` once a delete was accepted.
    pub live: Option<Fields>,
    /// The e-mail address it was created with (kept after a delete, to find leftovers).
    pub email: String,
    /// Made permanently invalid for Salesforce on purpose.
    pub invalid_for_salesforce: bool,
}

/// Every contact the load created, by id.
#[derive(Default)]
pub struct Model {
    pub contacts: BTreeMap<Uuid, Expected>,
    /// Changes the API accepted (creates, updates, deletes).
    pub accepted: u64,
    /// Requests answered 503 or not answered, then sent again.
    pub resent: u64,
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
                email: fields.email.clone(),
                live: Some(fields),
                invalid_for_salesforce: invalid,
            },
        );
    }

    pub fn replaced(&mut self, id: Uuid, doc: &Value) {
        self.accepted += 1;
        if let Some(c) = self.contacts.get_mut(&id) {
            c.live = Some(Fields::from_document(doc));
        }
    }

    pub fn patched(&mut self, id: Uuid, patch: &Map<String, Value>) {
        self.accepted += 1;
        if let Some(Some(f)) = self.contacts.get_mut(&id).map(|c| c.live.as_mut()) {
            f.merge(patch);
        }
    }

    pub fn deleted(&mut self, id: Uuid) {
        self.accepted += 1;
        if let Some(c) = self.contacts.get_mut(&id) {
            c.live = None;
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
