//! What a CRM sandbox holds of the contacts a run created, read from the sandbox's own state
//! (the control API's `GET /__sandbox/state` dump), never from SyncRoot's word or from a count
//! of writes, which re-writes inflate.
//!
//! A contact is held when the sandbox has exactly one live record with its e-mail and the
//! expected last name. The record's own last-modified time (HubSpot's `updatedAt`,
//! Salesforce's `LastModifiedDate`, both to the millisecond) is when the sandbox wrote it: the
//! end of an end-to-end latency.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::Control;

/// Which sandbox a dump comes from: the two shape their records differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crm {
    HubSpot,
    Salesforce,
}

impl Crm {
    fn email(self, r: &Value) -> Option<&str> {
        match self {
            Self::HubSpot => r["properties"]["email"].as_str(),
            Self::Salesforce => r["Email"].as_str(),
        }
    }

    fn last_name(self, r: &Value) -> Option<&str> {
        match self {
            Self::HubSpot => r["properties"]["lastname"].as_str(),
            Self::Salesforce => r["LastName"].as_str(),
        }
    }

    fn live(self, r: &Value) -> bool {
        match self {
            Self::HubSpot => r["archived"] == false,
            Self::Salesforce => r["IsDeleted"] == false,
        }
    }

    /// The live records of a dump, by lower-case e-mail (records without one left out).
    pub fn live_by_email(self, records: &[Value]) -> HashMap<String, Vec<&Value>> {
        let mut live: HashMap<String, Vec<&Value>> = HashMap::new();
        for r in records.iter().filter(|r| self.live(r)) {
            if let Some(email) = self.email(r) {
                live.entry(email.to_lowercase()).or_default().push(r);
            }
        }
        live
    }

    /// When the sandbox last wrote the record.
    fn written_at(self, r: &Value) -> Option<DateTime<Utc>> {
        match self {
            // `2024-03-05T09:00:00.000Z`
            Self::HubSpot => DateTime::parse_from_rfc3339(r["updatedAt"].as_str()?).ok(),
            // `2024-03-05T09:00:00.000+0000`
            Self::Salesforce => {
                DateTime::parse_from_str(r["LastModifiedDate"].as_str()?, "%Y-%m-%dT%H:%M:%S%.3f%z")
                    .ok()
            }
        }
        .map(|t| t.with_timezone(&Utc))
    }
}

/// A contact a run expects a CRM to hold.
#[derive(Clone, Debug)]
pub struct Expected {
    /// The key: e-mail addresses are compared without regard to case.
    pub email: String,
    pub last_name: String,
}

/// What a sandbox holds of the expected contacts.
#[derive(Clone, Debug, Default)]
pub struct Holdings {
    /// When the sandbox last wrote each held contact's record, by lower-case e-mail.
    pub written_at: HashMap<String, DateTime<Utc>>,
    /// Expected e-mails with no live record.
    pub missing: Vec<String>,
    /// Expected e-mails whose live record carries other values (or no readable write time),
    /// or that have more than one live record.
    pub wrong: Vec<String>,
}

impl Holdings {
    /// Reads `records` (a sandbox's state dump) against `expected`.
    pub fn of(crm: Crm, records: &[Value], expected: &[Expected]) -> Self {
        let live = crm.live_by_email(records);
        let mut h = Self::default();
        for e in expected {
            let email = e.email.to_lowercase();
            match live.get(&email).map(Vec::as_slice) {
                None | Some([]) => h.missing.push(email),
                Some([r]) if crm.last_name(r) == Some(e.last_name.as_str()) => {
                    match crm.written_at(r) {
                        Some(t) => {
                            h.written_at.insert(email, t);
                        }
                        None => h.wrong.push(email),
                    }
                }
                Some(_) => h.wrong.push(email),
            }
        }
        h
    }

    /// Every expected contact held, once, with the expected values.
    pub fn complete(&self) -> bool {
        self.missing.is_empty() && self.wrong.is_empty()
    }

    /// How many expected contacts are held as expected.
    pub fn held(&self) -> usize {
        self.written_at.len()
    }

    /// When the last held contact was written.
    pub fn last_written(&self) -> Option<DateTime<Utc>> {
        self.written_at.values().max().copied()
    }
}

impl Control {
    /// What the sandbox at `base` holds of `expected`, from its state dump.
    pub async fn holdings(
        &self,
        base: &str,
        crm: Crm,
        expected: &[Expected],
    ) -> anyhow::Result<Holdings> {
        Ok(Holdings::of(
            crm,
            &self.sandbox_contacts(base).await?,
            expected,
        ))
    }
}

#[cfg(test)]
#[path = "holdings_tests.rs"]
mod tests;
