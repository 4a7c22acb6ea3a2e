//! The sandbox org's Contact records, in memory.
//!
//! What it is: create / update / delete with Salesforce's record rules (required `LastName`,
//! the org's validation rules, unique external id among live records (Email is not unique, as
//! in Salesforce; an optional duplicate rule in `duplicates.rs` blocks or flags it), recycle bin via
//! `IsDeleted`, audit fields), an undo
//! journal so an `allOrNone` collection request can be rolled back, and the [`Change`] each
//! write produces for notifications. What it is not: request parsing or field validation (see
//! `fields.rs`), nor persistence: a restart or `/__sandbox/reset` forgets everything.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::change::change;
pub use super::change::{Actor, Change, ChangeType};
use super::duplicates::DuplicateRule;
use super::errors::{ErrorCode, SfError};
use super::ids;
use super::validation::ValidationRules;
use super::wire;

/// One Contact as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    /// 18-character id.
    pub id: String,
    /// Writable fields by canonical API name; null values are absent.
    pub values: BTreeMap<String, Value>,
    /// True while the record sits in the recycle bin.
    pub is_deleted: bool,
    pub created_date: DateTime<Utc>,
    /// User id (`005…`) of the creator.
    pub created_by: String,
    pub last_modified_date: DateTime<Utc>,
    pub last_modified_by: String,
    /// Last change by anyone or anything, the replication watermark; also bumped by delete.
    pub system_modstamp: DateTime<Utc>,
}

/// How a key resolves.
pub enum Lookup<'a> {
    Live(&'a Contact),
    Deleted,
    Missing,
}

/// Prior versions of records touched by a request, newest last, so the request can be undone.
#[derive(Debug, Default)]
pub struct Undo(Vec<(String, Option<Contact>)>);

/// All Contacts of the org.
#[derive(Debug)]
pub struct Store {
    /// By canonical 15-character key; keys are minted in increasing order, so this iterates in
    /// creation order.
    records: BTreeMap<String, Contact>,
    /// Lower-cased external id value → key, live records only. Uniqueness is case-insensitive,
    /// Salesforce's default for a unique text field [UNVERIFIED for every org: it is an option].
    by_external: HashMap<String, String>,
    external_field: String,
    /// Last record number minted; survives `reset` so ids are never reused.
    next_number: u64,
    /// Checked on every create and update; set through the control API.
    rules: ValidationRules,
    /// The duplicate rule on Email, checked after the validation rules; off by default.
    pub duplicates: DuplicateRule,
    /// The next this many record saves in collection writes fail with `UNABLE_TO_LOCK_ROW`, as
    /// when another transaction holds the record; set through the control API.
    pub record_locks: u32,
}

impl Store {
    pub fn new(external_field: &str) -> Self {
        Self {
            records: BTreeMap::new(),
            by_external: HashMap::new(),
            external_field: external_field.to_string(),
            next_number: 0,
            rules: ValidationRules::default(),
            duplicates: DuplicateRule::default(),
            record_locks: 0,
        }
    }

    pub fn rules(&self) -> &ValidationRules {
        &self.rules
    }

    /// Replaces the validation rules; records already stored are not re-checked, as in
    /// Salesforce, where a new rule applies from the next save.
    pub fn set_rules(&mut self, rules: ValidationRules) {
        self.rules = rules;
    }

    pub fn reset(&mut self) {
        self.records.clear();
        self.by_external.clear();
    }

    pub fn lookup(&self, key: &str) -> Lookup<'_> {
        match self.records.get(key) {
            Some(c) if c.is_deleted => Lookup::Deleted,
            Some(c) => Lookup::Live(c),
            None => Lookup::Missing,
        }
    }

    /// The live record whose external id equals `value` (case-insensitively).
    pub fn find_by_external(&self, value: &str) -> Option<&Contact> {
        self.by_external
            .get(&value.to_lowercase())
            .and_then(|key| self.records.get(key))
    }

    /// Every record, recycled ones included, in creation order.
    pub fn all(&self) -> impl Iterator<Item = &Contact> {
        self.records.values()
    }

    pub fn create(
        &mut self,
        fields: Vec<(String, Value)>,
        actor: &Actor,
        undo: &mut Undo,
    ) -> Result<Change, SfError> {
        let values: BTreeMap<String, Value> =
            fields.into_iter().filter(|(_, v)| !v.is_null()).collect();
        if !values.contains_key("LastName") {
            return Err(SfError::required_missing(&["LastName"]));
        }
        self.rules.check(&values)?;
        self.check_unique(values.get(&self.external_field), None)?;
        self.duplicates
            .check(&values, None, self.records.values())?;
        self.next_number += 1;
        let id = ids::mint(ids::CONTACT_PREFIX, self.next_number);
        let now = wire::now_seconds();
        let record = Contact {
            id: id.clone(),
            values,
            is_deleted: false,
            created_date: now,
            created_by: actor.user_id.clone(),
            last_modified_date: now,
            last_modified_by: actor.user_id.clone(),
            system_modstamp: now,
        };
        undo.0.push((id[..15].to_string(), None));
        self.put(record.clone());
        Ok(change(
            ChangeType::Create,
            record,
            Vec::new(),
            Vec::new(),
            actor,
        ))
    }

    /// Creates a record for `POST /__sandbox/seed`: checked like an API create, but created at
    /// `created` and last modified at `modified` (both to the second, as Salesforce keeps them).
    pub fn seed(
        &mut self,
        fields: Vec<(String, Value)>,
        (created, modified): (DateTime<Utc>, DateTime<Utc>),
        actor: &Actor,
        undo: &mut Undo,
    ) -> Result<String, SfError> {
        let id = self.create(fields, actor, undo)?.record.id;
        if let Some(c) = self.records.get_mut(&id[..15]) {
            c.created_date = wire::to_second(created);
            c.last_modified_date = wire::to_second(modified);
            c.system_modstamp = c.last_modified_date;
        }
        Ok(id)
    }

    pub fn update(
        &mut self,
        key: &str,
        fields: Vec<(String, Value)>,
        actor: &Actor,
        undo: &mut Undo,
    ) -> Result<Change, SfError> {
        let current = self.live(key)?.clone();
        let mut next = current.clone();
        let (mut changed, mut nulled) = (Vec::new(), Vec::new());
        for (name, value) in fields {
            let old = next.values.get(&name);
            if value.is_null() {
                if old.is_some() {
                    next.values.remove(&name);
                    nulled.push(name.clone());
                    changed.push(name);
                }
            } else if old != Some(&value) {
                next.values.insert(name.clone(), value);
                changed.push(name);
            }
        }
        if !next.values.contains_key("LastName") {
            return Err(SfError::required_missing(&["LastName"]));
        }
        self.rules.check(&next.values)?;
        self.check_unique(next.values.get(&self.external_field), Some(key))?;
        self.duplicates
            .check(&next.values, Some(key), self.records.values())?;
        let now = wire::now_seconds();
        if next.last_modified_by != actor.user_id {
            changed.push("LastModifiedById".to_string());
        }
        changed.push("LastModifiedDate".to_string());
        next.last_modified_date = now;
        next.last_modified_by = actor.user_id.clone();
        next.system_modstamp = now;
        undo.0.push((key.to_string(), Some(current)));
        self.put(next.clone());
        Ok(change(ChangeType::Update, next, changed, nulled, actor))
    }

    /// Updates the live record whose external id is `value`, or (when `create` allows) creates
    /// one carrying it. Returns the change and whether it created.
    pub fn upsert_external(
        &mut self,
        value: &str,
        mut fields: Vec<(String, Value)>,
        create: bool,
        actor: &Actor,
        undo: &mut Undo,
    ) -> Result<(Change, bool), SfError> {
        match self.find_by_external(value).map(|c| c.id[..15].to_string()) {
            Some(key) => Ok((self.update(&key, fields, actor, undo)?, false)),
            None if !create => Err(SfError::not_found()),
            None => {
                fields.push((
                    self.external_field.clone(),
                    Value::String(value.to_string()),
                ));
                Ok((self.create(fields, actor, undo)?, true))
            }
        }
    }

    /// Moves a live record to the recycle bin.
    pub fn delete(&mut self, key: &str, actor: &Actor, undo: &mut Undo) -> Result<Change, SfError> {
        let current = self.live(key)?.clone();
        let mut next = current.clone();
        let now = wire::now_seconds();
        next.is_deleted = true;
        next.last_modified_date = now;
        next.last_modified_by = actor.user_id.clone();
        next.system_modstamp = now;
        undo.0.push((key.to_string(), Some(current)));
        self.put(next.clone());
        Ok(change(
            ChangeType::Delete,
            next,
            Vec::new(),
            Vec::new(),
            actor,
        ))
    }

    /// Merges `losers` into `master`, as a person does in Lightning (at most two others, as
    /// Salesforce allows): the master keeps its values and takes the losers' values for fields
    /// it leaves empty (the external id excepted: it stays unique); each loser goes to the
    /// recycle bin with `MasterRecordId` set. The changes: the master's update (if any field
    /// was taken), then one delete per loser.
    pub fn merge(
        &mut self,
        master: &str,
        losers: &[String],
        actor: &Actor,
        undo: &mut Undo,
    ) -> Result<Vec<Change>, SfError> {
        if losers.is_empty() || losers.len() > 2 {
            return Err(SfError::new(
                ErrorCode::InvalidField,
                "a merge takes a master record and one or two others",
            ));
        }
        let master_record = self.live(master)?.clone();
        let mut fill: Vec<(String, Value)> = Vec::new();
        for key in losers {
            if key[..15] == master[..15] {
                return Err(SfError::new(
                    ErrorCode::InvalidField,
                    "a record cannot be merged into itself",
                ));
            }
            for (name, value) in &self.live(key)?.values {
                let taken =
                    master_record.values.contains_key(name) || fill.iter().any(|(n, _)| n == name);
                if !taken && *name != self.external_field && name != "MasterRecordId" {
                    fill.push((name.clone(), value.clone()));
                }
            }
        }
        let mut changes = Vec::new();
        if !fill.is_empty() {
            changes.push(self.update(master, fill, actor, undo)?);
        }
        for key in losers {
            let mut change = self.delete(key, actor, undo)?;
            change.record.values.insert(
                "MasterRecordId".into(),
                Value::String(master_record.id.clone()),
            );
            self.put(change.record.clone());
            changes.push(change);
        }
        Ok(changes)
    }

    /// Restores every record touched under `undo` to its prior version, newest change first.
    pub fn rollback(&mut self, undo: Undo) {
        for (key, prior) in undo.0.into_iter().rev() {
            self.unindex(&key);
            match prior {
                Some(record) => self.put(record),
                None => {
                    self.records.remove(&key);
                }
            }
        }
    }

    fn live(&self, key: &str) -> Result<&Contact, SfError> {
        match self.lookup(key) {
            Lookup::Live(c) => Ok(c),
            Lookup::Deleted => Err(SfError::entity_is_deleted()),
            Lookup::Missing => Err(SfError::not_found()),
        }
    }

    fn check_unique(&self, value: Option<&Value>, except_key: Option<&str>) -> Result<(), SfError> {
        let Some(text) = value.and_then(Value::as_str) else {
            return Ok(());
        };
        match self.by_external.get(&text.to_lowercase()) {
            Some(owner) if Some(owner.as_str()) != except_key => {
                let owner_id = self
                    .records
                    .get(owner)
                    .map_or(owner.as_str(), |c| c.id.as_str());
                Err(SfError::new(
                    ErrorCode::DuplicateValue,
                    format!(
                        "duplicate value found: {} duplicates value on record with id: {owner_id}",
                        self.external_field
                    ),
                )
                .with_fields([self.external_field.as_str()]))
            }
            _ => Ok(()),
        }
    }

    fn unindex(&mut self, key: &str) {
        let old_value = self
            .records
            .get(key)
            .and_then(|c| c.values.get(&self.external_field))
            .and_then(Value::as_str)
            .map(str::to_lowercase);
        if let Some(v) = old_value
            && self.by_external.get(&v).map(String::as_str) == Some(key)
        {
            self.by_external.remove(&v);
        }
    }

    /// Inserts or replaces a record and keeps the external id index in step.
    fn put(&mut self, record: Contact) {
        let key = record.id[..15].to_string();
        self.unindex(&key);
        if !record.is_deleted
            && let Some(v) = record
                .values
                .get(&self.external_field)
                .and_then(Value::as_str)
        {
            self.by_external.insert(v.to_lowercase(), key.clone());
        }
        self.records.insert(key, record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn actor() -> Actor {
        Actor {
            user_id: "005A".into(),
            client: None,
            origin: "o".into(),
        }
    }

    fn fields(v: &[(&str, &str)]) -> Vec<(String, Value)> {
        v.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()
    }

    #[test]
    fn create_requires_last_name_and_unique_external_id() {
        let mut s = Store::new("Ext__c");
        let mut undo = Undo::default();
        assert_eq!(
            s.create(fields(&[("FirstName", "A")]), &actor(), &mut undo)
                .unwrap_err()
                .code,
            ErrorCode::RequiredFieldMissing
        );
        let a = s
            .create(
                fields(&[("LastName", "A"), ("Ext__c", "x1")]),
                &actor(),
                &mut undo,
            )
            .unwrap();
        let dup = s
            .create(
                fields(&[("LastName", "B"), ("Ext__c", "X1")]),
                &actor(),
                &mut undo,
            )
            .unwrap_err();
        assert_eq!(dup.code, ErrorCode::DuplicateValue);
        assert!(dup.message.ends_with(&a.record.id));
        assert_eq!(s.find_by_external("X1").unwrap().id, a.record.id);
    }

    #[test]
    fn deleted_records_free_their_external_id_and_refuse_writes() {
        let mut s = Store::new("Ext__c");
        let mut undo = Undo::default();
        let a = s
            .create(
                fields(&[("LastName", "A"), ("Ext__c", "x1")]),
                &actor(),
                &mut undo,
            )
            .unwrap();
        let key = &a.record.id[..15];
        s.delete(key, &actor(), &mut undo).unwrap();
        assert!(matches!(s.lookup(key), Lookup::Deleted));
        assert!(s.find_by_external("x1").is_none());
        assert_eq!(
            s.update(key, vec![], &actor(), &mut undo).unwrap_err().code,
            ErrorCode::EntityIsDeleted
        );
        assert!(
            s.create(
                fields(&[("LastName", "B"), ("Ext__c", "x1")]),
                &actor(),
                &mut undo
            )
            .is_ok()
        );
    }

    #[test]
    fn update_reports_changed_fields_and_rollback_restores() {
        let mut s = Store::new("Ext__c");
        let mut setup = Undo::default();
        let a = s
            .create(
                fields(&[("LastName", "A"), ("Title", "Eng")]),
                &actor(),
                &mut setup,
            )
            .unwrap();
        let key = a.record.id[..15].to_string();
        let mut undo = Undo::default();
        let ch = s
            .update(
                &key,
                vec![
                    ("Title".into(), Value::Null),
                    ("LastName".into(), json!("A")),
                    ("Ext__c".into(), json!("e")),
                ],
                &actor(),
                &mut undo,
            )
            .unwrap();
        assert_eq!(
            ch.changed_fields,
            vec!["Title", "Ext__c", "LastModifiedDate"]
        );
        assert_eq!(ch.nulled_fields, vec!["Title"]);
        s.create(fields(&[("LastName", "B")]), &actor(), &mut undo)
            .unwrap();
        s.rollback(undo);
        assert_eq!(s.all().count(), 1);
        assert!(s.find_by_external("e").is_none());
        let Lookup::Live(c) = s.lookup(&key) else {
            panic!("record missing")
        };
        assert_eq!(c.values.get("Title"), Some(&json!("Eng")));
    }

    #[test]
    fn a_merge_fills_the_masters_gaps_and_recycles_the_others_naming_the_master() {
        let mut s = Store::new("Ext__c");
        let mut undo = Undo::default();
        let mut make =
            |v: &[(&str, &str)]| s.create(fields(v), &actor(), &mut undo).unwrap().record.id;
        let master = make(&[("LastName", "Hopper"), ("Ext__c", "m")]);
        let loser = make(&[("LastName", "Hopper"), ("Phone", "555"), ("Ext__c", "l")]);
        let (mk, lk) = (master[..15].to_string(), loser[..15].to_string());
        let changes = s
            .merge(
                &mk,
                std::slice::from_ref(&lk),
                &actor(),
                &mut Undo::default(),
            )
            .unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].change_type, ChangeType::Update);
        assert_eq!(changes[0].record.values["Phone"], json!("555"));
        assert_eq!(
            changes[0].record.values["Ext__c"],
            json!("m"),
            "the external id stays"
        );
        assert_eq!(changes[1].change_type, ChangeType::Delete);
        assert_eq!(changes[1].record.values["MasterRecordId"], json!(master));
        assert!(matches!(s.lookup(&lk), Lookup::Deleted));
        let refused = s.merge(
            &mk,
            std::slice::from_ref(&mk),
            &actor(),
            &mut Undo::default(),
        );
        assert_eq!(refused.unwrap_err().code, ErrorCode::InvalidField);
    }
}
