//! In-memory contact records with HubSpot's write rules: unique email (and custom unique
//! properties), archive instead of delete, system properties kept by the store, and an undo
//! journal so a batch that fails part-way leaves nothing behind.
//!
//! It is not thread-safe by itself (callers hold it behind a mutex), knows nothing of HTTP,
//! and reports each write as [`Change`]s for the webhook emitter.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::schema::{PropertyIssue, Schema};

/// First id handed out; ids are never reused, not even after a reset, so a stale id held by
/// a client can never point at a different record.
const FIRST_ID: u64 = 1001;

/// One contact as the store keeps it. `properties` includes the system properties
/// (`hs_object_id`, `createdate`, `lastmodifieddate`); an absent key is an unset property.
#[derive(Clone, Debug, PartialEq)]
pub struct Contact {
    pub id: u64,
    pub properties: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set once archived (HubSpot's recycle bin); archived contacts free their unique values.
    pub archived_at: Option<DateTime<Utc>>,
}

/// What a write did to one record, in the order it happened.
#[derive(Clone, Debug, PartialEq)]
pub enum ChangeKind {
    Created,
    PropertyChanged {
        name: String,
        value: String,
    },
    Deleted,
    /// Erased for good (GDPR delete): not even archived.
    PrivacyDeleted,
    /// Others merged into this record; `moved` properties it took from them.
    Merged {
        merged_ids: Vec<u64>,
        moved: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub object_id: u64,
    pub kind: ChangeKind,
    pub occurred_at: DateTime<Utc>,
}

/// Why a write was refused; each maps to one HubSpot error body in `errors`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error("property values were not valid")]
    Invalid(Vec<PropertyIssue>),
    #[error("contact already exists: {existing}")]
    DuplicateEmail { existing: u64 },
    #[error("unique value of {property} already used by {existing}")]
    DuplicateUnique {
        property: String,
        value: String,
        existing: u64,
    },
    #[error("contact {0} not found")]
    NotFound(String),
    #[error("{0} is not a unique property")]
    NotIdProperty(String),
}

/// The result of a successful create or update.
#[derive(Clone, Debug)]
pub struct Written {
    pub contact: Contact,
    pub changes: Vec<Change>,
    /// Names of the properties the request set, for the response's property selection.
    pub touched: Vec<String>,
}

#[derive(Debug)]
pub struct Store {
    schema: Schema,
    records: BTreeMap<u64, Contact>,
    /// (property, lower-cased value) → id, for live contacts only.
    unique: HashMap<(String, String), u64>,
    unique_props: Vec<String>,
    next_id: u64,
    /// Prior state of every record touched since `begin`, oldest first.
    journal: Option<Vec<(u64, Option<Contact>)>>,
}

impl Store {
    pub fn new(schema: Schema) -> Self {
        let unique_props = schema.indexed_unique();
        Self {
            schema,
            records: BTreeMap::new(),
            unique: HashMap::new(),
            unique_props,
            next_id: FIRST_ID,
            journal: None,
        }
    }

    /// Drops every record; ids keep counting up.
    pub fn clear(&mut self) {
        self.records.clear();
        self.unique.clear();
        self.journal = None;
    }

    pub fn all(&self) -> impl Iterator<Item = &Contact> {
        self.records.values()
    }

    /// Records with id ≥ `from`, in id order (the list endpoint's cursor).
    pub fn range_from(&self, from: u64) -> impl Iterator<Item = &Contact> {
        self.records.range(from..).map(|(_, c)| c)
    }

    /// Finds a live (or, with `archived`, an archived) contact by id or unique property.
    pub fn find(
        &self,
        id_property: Option<&str>,
        key: &str,
        archived: bool,
    ) -> Result<Option<&Contact>, WriteError> {
        let id = match id_property {
            None | Some("hs_object_id") => key.parse::<u64>().ok(),
            Some(prop) if self.unique_props.iter().any(|p| p == prop) => {
                let probe = (prop.to_owned(), key.trim().to_lowercase());
                self.unique.get(&probe).copied()
            }
            Some(prop) => return Err(WriteError::NotIdProperty(prop.to_owned())),
        };
        let found = id.and_then(|id| self.records.get(&id));
        Ok(found.filter(|c| c.archived_at.is_some() == archived))
    }

    /// Starts recording undo information; `rollback` restores the state at this point.
    pub fn begin(&mut self) {
        self.journal = Some(Vec::new());
    }

    pub fn commit(&mut self) {
        self.journal = None;
    }

    pub fn rollback(&mut self) {
        let Some(journal) = self.journal.take() else {
            return;
        };
        for (id, prior) in journal.into_iter().rev() {
            self.unindex(id);
            match prior {
                Some(contact) => self.put(contact),
                None => {
                    self.records.remove(&id);
                }
            }
        }
    }

    pub fn create(
        &mut self,
        props: &BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<Written, WriteError> {
        let clean = self.schema.validate(props).map_err(WriteError::Invalid)?;
        self.check_unique(&clean, None)?;
        let id = self.next_id;
        self.next_id += 1;
        let mut properties: BTreeMap<String, String> = clean
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let stamp = format_timestamp(now);
        properties.insert("hs_object_id".into(), id.to_string());
        properties.insert("createdate".into(), stamp.clone());
        properties.insert("lastmodifieddate".into(), stamp);
        let mut changes = vec![change(id, ChangeKind::Created, now)];
        for (name, value) in clean.iter().filter(|(_, v)| !v.is_empty()) {
            let kind = ChangeKind::PropertyChanged {
                name: name.clone(),
                value: value.clone(),
            };
            changes.push(change(id, kind, now));
        }
        let contact = Contact {
            id,
            properties,
            created_at: now,
            updated_at: now,
            archived_at: None,
        };
        self.record_prior(id, None);
        self.put(contact.clone());
        Ok(Written {
            contact,
            changes,
            touched: clean.into_keys().collect(),
        })
    }

    /// Creates a record for `POST /__sandbox/seed`: validated like an API create, but
    /// created at `created` and last modified at `modified`, and reporting no changes.
    pub fn seed(
        &mut self,
        props: &BTreeMap<String, String>,
        created: DateTime<Utc>,
        modified: DateTime<Utc>,
    ) -> Result<u64, WriteError> {
        let id = self.create(props, created)?.contact.id;
        if let Some(c) = self.records.get_mut(&id) {
            c.updated_at = modified;
            c.properties
                .insert("lastmodifieddate".into(), format_timestamp(modified));
        }
        Ok(id)
    }

    /// Partial update: only the given properties change; an empty string clears one.
    pub fn update(
        &mut self,
        id: u64,
        props: &BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<Written, WriteError> {
        let clean = self.schema.validate(props).map_err(WriteError::Invalid)?;
        let Some(current) = self.records.get(&id).filter(|c| c.archived_at.is_none()) else {
            return Err(WriteError::NotFound(id.to_string()));
        };
        self.check_unique(&clean, Some(id))?;
        let mut next = current.clone();
        let mut changes = Vec::new();
        for (name, value) in &clean {
            let old = next.properties.get(name).map(String::as_str).unwrap_or("");
            if old == value {
                continue;
            }
            if value.is_empty() {
                next.properties.remove(name);
            } else {
                next.properties.insert(name.clone(), value.clone());
            }
            let kind = ChangeKind::PropertyChanged {
                name: name.clone(),
                value: value.clone(),
            };
            changes.push(change(id, kind, now));
        }
        // A write that changes nothing leaves the record (and its modification date) alone.
        if !changes.is_empty() {
            next.updated_at = now;
            next.properties
                .insert("lastmodifieddate".into(), format_timestamp(now));
            self.record_prior(id, Some(current.clone()));
            self.unindex(id);
            self.put(next.clone());
        }
        Ok(Written {
            contact: next,
            changes,
            touched: clean.into_keys().collect(),
        })
    }

    /// Moves a live contact to the recycle bin; `None` when there was nothing to archive.
    pub fn archive(&mut self, id: u64, now: DateTime<Utc>) -> Option<Change> {
        let current = self
            .records
            .get(&id)
            .filter(|c| c.archived_at.is_none())?
            .clone();
        let mut next = current.clone();
        next.archived_at = Some(now);
        next.updated_at = now;
        self.record_prior(id, Some(current));
        self.unindex(id);
        self.put(next);
        Some(change(id, ChangeKind::Deleted, now))
    }

    /// Merges `loser` into `primary`, as HubSpot's merge does: the primary keeps its id and
    /// its values and takes the loser's values for properties it leaves empty (unique ones
    /// excepted); the loser is archived.
    pub fn merge(
        &mut self,
        primary: u64,
        loser: u64,
        now: DateTime<Utc>,
    ) -> Result<Written, WriteError> {
        let live = |id: u64| {
            self.records
                .get(&id)
                .filter(|c| c.archived_at.is_none())
                .cloned()
                .ok_or_else(|| WriteError::NotFound(id.to_string()))
        };
        let (current, other) = (live(primary)?, live(loser)?);
        if primary == loser {
            return Err(WriteError::NotFound(loser.to_string()));
        }
        let mut next = current.clone();
        let mut moved = 0;
        for (name, value) in &other.properties {
            let system = matches!(
                name.as_str(),
                "hs_object_id" | "createdate" | "lastmodifieddate"
            );
            let unique = self.unique_props.iter().any(|p| p == name);
            if !system && !unique && !next.properties.contains_key(name) {
                next.properties.insert(name.clone(), value.clone());
                moved += 1;
            }
        }
        next.updated_at = now;
        next.properties
            .insert("lastmodifieddate".into(), format_timestamp(now));
        let mut archived = other.clone();
        archived.archived_at = Some(now);
        archived.updated_at = now;
        self.record_prior(loser, Some(other));
        self.unindex(loser);
        self.put(archived);
        self.record_prior(primary, Some(current));
        self.unindex(primary);
        self.put(next.clone());
        let kind = ChangeKind::Merged {
            merged_ids: vec![loser],
            moved,
        };
        Ok(Written {
            contact: next,
            changes: vec![change(primary, kind, now)],
            touched: Vec::new(),
        })
    }

    /// Erases a contact for good (GDPR delete); `None` when there was no such live contact.
    pub fn erase(&mut self, id: u64, now: DateTime<Utc>) -> Option<Change> {
        let current = self
            .records
            .get(&id)
            .filter(|c| c.archived_at.is_none())?
            .clone();
        self.record_prior(id, Some(current));
        self.unindex(id);
        self.records.remove(&id);
        Some(change(id, ChangeKind::PrivacyDeleted, now))
    }

    fn check_unique(
        &self,
        clean: &BTreeMap<String, String>,
        own_id: Option<u64>,
    ) -> Result<(), WriteError> {
        for prop in &self.unique_props {
            let Some(value) = clean.get(prop).filter(|v| !v.is_empty()) else {
                continue;
            };
            let probe = (prop.clone(), value.to_lowercase());
            match self.unique.get(&probe) {
                Some(&existing) if Some(existing) != own_id => {
                    return Err(if prop == "email" {
                        WriteError::DuplicateEmail { existing }
                    } else {
                        let (property, value) = (prop.clone(), value.clone());
                        WriteError::DuplicateUnique {
                            property,
                            value,
                            existing,
                        }
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn record_prior(&mut self, id: u64, prior: Option<Contact>) {
        if let Some(journal) = self.journal.as_mut() {
            journal.push((id, prior));
        }
    }

    fn put(&mut self, contact: Contact) {
        if contact.archived_at.is_none() {
            for prop in &self.unique_props {
                if let Some(value) = contact.properties.get(prop) {
                    self.unique
                        .insert((prop.clone(), value.to_lowercase()), contact.id);
                }
            }
        }
        self.records.insert(contact.id, contact);
    }

    fn unindex(&mut self, id: u64) {
        let Some(contact) = self.records.get(&id) else {
            return;
        };
        for prop in &self.unique_props {
            if let Some(value) = contact.properties.get(prop) {
                let key = (prop.clone(), value.to_lowercase());
                if self.unique.get(&key) == Some(&id) {
                    self.unique.remove(&key);
                }
            }
        }
    }
}

fn change(object_id: u64, kind: ChangeKind, occurred_at: DateTime<Utc>) -> Change {
    Change {
        object_id,
        kind,
        occurred_at,
    }
}

/// HubSpot's timestamp format: ISO-8601 UTC with milliseconds, e.g. `2024-03-01T10:15:30.123Z`.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
