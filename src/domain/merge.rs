//! The conflict policy: which value a field takes when a CRM reports a change.
//!
//! ```text
//! for each field the CRM holds:
//!   CRM value == what SyncRoot last knew the CRM held (base)  → the CRM did not change it
//!   CRM value == the contact's value                          → agreement, nothing to do
//!   CRM value is not a valid value for the field              → keep ours (conflict: invalid)
//!   the field has an owner                                    → the owner's value wins
//!   otherwise, last writer wins: the CRM's modification time against the field's stamp;
//!   equal times go to the origin ranked first in the tie-break order
//! ```
//!
//! A conflict is recorded when both sides had changed the field since SyncRoot last knew the
//! CRM's value (or that value is unknown), whichever won, and whenever the CRM's value loses.
//! The CRM's modification time is the record's (HubSpot `lastmodifieddate`, Salesforce
//! `SystemModstamp`): it is when the record last changed, so for one field it can only be
//! later than the field's real change, never earlier; comparing against the base first keeps a
//! field the CRM did not change from winning on another field's edit. Salesforce reports that
//! time to the second only, so the webhook worker passes the later of it and the webhook
//! event's own (millisecond) time.
//!
//! Pure: no I/O. Not here: finding the contact, echo detection, persisting (`worker::inbound`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::contact::ContactFields;
use super::fields::{FIELDS, Field, FieldValue, validate_members};
use super::values::{FieldValues, Origin};

/// How one field's conflicts are decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The newer change wins, by the source's own modification time.
    LastWriterWins,
    /// This origin's value always wins; the others' changes to the field are undone.
    Owner(Origin),
}

/// The policy for every field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Fields with an owner; the rest are last-writer-wins.
    pub owners: BTreeMap<Field, Origin>,
    /// Who wins when two changes carry the same time, first wins.
    pub tie_break: Vec<Origin>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            owners: BTreeMap::new(),
            tie_break: vec![Origin::Api, Origin::Salesforce, Origin::Hubspot],
        }
    }
}

impl Policy {
    pub fn rule(&self, field: Field) -> Rule {
        self.owners
            .get(&field)
            .map_or(Rule::LastWriterWins, |o| Rule::Owner(*o))
    }

    /// Position in the tie-break order; unlisted origins come last.
    fn rank(&self, origin: Origin) -> usize {
        self.tie_break
            .iter()
            .position(|o| *o == origin)
            .unwrap_or(usize::MAX)
    }
}

/// When a field last changed, and where the change came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub at: DateTime<Utc>,
    pub by: Origin,
}

/// Every field's stamp, stored as a JSON object keyed by field name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Stamps(pub BTreeMap<String, Stamp>);

impl Stamps {
    pub fn get(&self, field: Field) -> Option<Stamp> {
        self.0.get(field.spec().name).copied()
    }

    pub fn set(&mut self, field: Field, stamp: Stamp) {
        self.0.insert(field.spec().name.to_owned(), stamp);
    }

    /// Stamps every field that differs between `before` (all fields, for a create: `None`)
    /// and `after`.
    pub fn touch(&mut self, before: Option<&ContactFields>, after: &ContactFields, stamp: Stamp) {
        for spec in &FIELDS {
            if before.is_none_or(|b| b.get(spec.field) != after.get(spec.field)) {
                self.set(spec.field, stamp);
            }
        }
    }
}

/// One field a version changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl Merged {
    /// Undoes the taking of the CRM's e-mail address (another contact has it).
    pub fn refuse_email(&mut self, before: &ContactFields, stamps: &Stamps, source: Origin) {
        let Some(pos) = self.changes.iter().position(|c| c.field == "email") else {
            return;
        };
        let lost = self.changes.remove(pos);
        let kept = stamps.get(Field::Email);
        self.doc.set_email(before.email.clone());
        match kept {
            Some(stamp) => self.stamps.set(Field::Email, stamp),
            None => {
                self.stamps.0.remove("email");
            }
        }
        self.conflicts.retain(|c| c.field != "email");
        self.conflicts.push(Conflict {
            field: lost.field,
            kept: kept.map_or(Origin::Api, |s| s.by),
            kept_value: lost.old,
            lost: source,
            lost_value: lost.new,
            reason: ConflictReason::Taken,
        });
    }
}

/// The fields that differ between `before` (a create: every field that has a value) and
/// `after`, for the history.
pub fn changes(before: Option<&ContactFields>, after: &ContactFields) -> Vec<FieldChange> {
    FIELDS
        .iter()
        .filter_map(|spec| {
            let old = before.and_then(|b| b.get(spec.field));
            let new = after.get(spec.field);
            (old != new).then(|| FieldChange {
                field: spec.name.to_owned(),
                old: old.map(str::to_owned),
                new: new.map(str::to_owned),
            })
        })
        .collect()
}

/// Why a value lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictReason {
    /// Both changed it; the other change is newer (or won the tie-break).
    Older,
    /// Both changed it at the same time; the tie-break order decided.
    TieBreak,
    /// The field's owner decides.
    Owner,
    /// The CRM's value is not valid for the field (SyncRoot's rules), so it cannot be taken.
    Invalid,
    /// The CRM's e-mail address belongs to another live contact.
    Taken,
}

/// A field on which two sides disagreed, and how it was resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub field: String,
    pub kept: Origin,
    pub kept_value: Option<String>,
    pub lost: Origin,
    pub lost_value: Option<String>,
    pub reason: ConflictReason,
}

/// A CRM's record, as the merge sees it.
#[derive(Clone, Debug)]
pub struct Incoming<'a> {
    pub source: Origin,
    /// The CRM's values now (its mapped fields).
    pub values: &'a FieldValues,
    /// What SyncRoot last knew the CRM held; `None` when it never knew.
    pub base: Option<&'a FieldValues>,
    /// When the CRM last modified the record.
    pub modified_at: DateTime<Utc>,
}

/// The contact after the merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merged {
    pub doc: ContactFields,
    pub stamps: Stamps,
    /// Fields that took the CRM's value; empty: the contact does not change.
    pub changes: Vec<FieldChange>,
    pub conflicts: Vec<Conflict>,
}

/// Merges a CRM's record into the contact. `fallback` is the stamp of a field that has none
/// (the head's acceptance by the API).
pub fn merge(
    doc: &ContactFields,
    stamps: &Stamps,
    fallback: Stamp,
    incoming: &Incoming<'_>,
    policy: &Policy,
) -> Merged {
    let mut out = Merged {
        doc: doc.clone(),
        stamps: stamps.clone(),
        changes: Vec::new(),
        conflicts: Vec::new(),
    };
    let theirs = Stamp {
        at: incoming.modified_at,
        by: incoming.source,
    };
    for (&field, value) in &incoming.values.0 {
        let ours = doc.get(field).map(str::to_owned);
        let base = incoming.base.and_then(|b| b.get(field));
        if base == Some(value) || ours == *value {
            continue;
        }
        let ours_stamp = stamps.get(field).unwrap_or(fallback);
        // Both sides moved since the last known CRM value (or it is unknown).
        let contested = base != Some(&ours);
        let conflict = |kept: Stamp, kept_value: &Option<String>, lost: Stamp, reason| {
            let (field, kept_value) = (field.spec().name.to_owned(), kept_value.clone());
            let lost_value = if lost.by == incoming.source {
                value.clone()
            } else {
                ours.clone()
            };
            Conflict {
                field,
                kept: kept.by,
                kept_value,
                lost: lost.by,
                lost_value,
                reason,
            }
        };
        let Some(valid) = validate(field, value) else {
            out.conflicts
                .push(conflict(ours_stamp, &ours, theirs, ConflictReason::Invalid));
            continue;
        };
        let (take, reason) = match policy.rule(field) {
            Rule::Owner(owner) => (owner == incoming.source, ConflictReason::Owner),
            Rule::LastWriterWins if theirs.at == ours_stamp.at => (
                policy.rank(theirs.by) < policy.rank(ours_stamp.by),
                ConflictReason::TieBreak,
            ),
            Rule::LastWriterWins => (theirs.at > ours_stamp.at, ConflictReason::Older),
        };
        if take {
            if contested {
                out.conflicts
                    .push(conflict(theirs, value, ours_stamp, reason));
            }
            out.doc.apply(vec![(field, valid)]);
            out.stamps.set(field, theirs);
            out.changes.push(FieldChange {
                field: field.spec().name.to_owned(),
                old: ours,
                new: value.clone(),
            });
        } else {
            out.conflicts
                .push(conflict(ours_stamp, &ours, theirs, reason));
        }
    }
    out
}

/// The CRM's value as a valid value of the field, by the API's own rules; `None` if invalid.
fn validate(field: Field, value: &Option<String>) -> Option<FieldValue> {
    let name = field.spec().name;
    let doc = serde_json::json!({ name: value });
    let mut values = validate_members(&doc).ok()?;
    values.pop().map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Email;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn doc() -> ContactFields {
        ContactFields {
            email: Email::parse("ada@example.com").unwrap(),
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            phone: None,
            company: None,
            job_title: Some("Analyst".into()),
        }
    }

    fn values(pairs: &[(Field, Option<&str>)]) -> FieldValues {
        FieldValues(
            pairs
                .iter()
                .map(|(f, v)| (*f, v.map(str::to_owned)))
                .collect(),
        )
    }

    fn api(s: i64) -> Stamp {
        Stamp {
            at: at(s),
            by: Origin::Api,
        }
    }

    fn run(
        incoming_values: &FieldValues,
        base: Option<&FieldValues>,
        modified: i64,
        policy: &Policy,
    ) -> Merged {
        let incoming = Incoming {
            source: Origin::Hubspot,
            values: incoming_values,
            base,
            modified_at: at(modified),
        };
        merge(&doc(), &Stamps::default(), api(10), &incoming, policy)
    }

    #[test]
    fn a_newer_crm_edit_of_an_untouched_field_is_taken_without_conflict() {
        let base = values(&[(Field::JobTitle, Some("Analyst"))]);
        let theirs = values(&[(Field::JobTitle, Some("CTO"))]);
        let m = run(&theirs, Some(&base), 20, &Policy::default());
        assert_eq!(m.doc.job_title.as_deref(), Some("CTO"));
        assert_eq!(
            m.changes,
            vec![FieldChange {
                field: "job_title".into(),
                old: Some("Analyst".into()),
                new: Some("CTO".into())
            }]
        );
        assert!(m.conflicts.is_empty());
        assert_eq!(
            m.stamps.get(Field::JobTitle),
            Some(Stamp {
                at: at(20),
                by: Origin::Hubspot
            })
        );
    }

    #[test]
    fn a_field_the_crm_did_not_change_never_wins_on_another_fields_time() {
        // The CRM still holds the old title (our newer one is on its way there); its record
        // changed later because a person edited the phone.
        let base = values(&[(Field::JobTitle, Some("Intern")), (Field::Phone, None)]);
        let theirs = values(&[
            (Field::JobTitle, Some("Intern")),
            (Field::Phone, Some("+1 555")),
        ]);
        let m = run(&theirs, Some(&base), 99, &Policy::default());
        assert_eq!(m.doc.job_title.as_deref(), Some("Analyst"));
        assert_eq!(m.doc.phone.as_deref(), Some("+1 555"));
        assert_eq!(m.changes.len(), 1);
    }

    #[test]
    fn an_older_crm_edit_loses_and_the_conflict_says_so() {
        let base = values(&[(Field::JobTitle, Some("Intern"))]);
        let theirs = values(&[(Field::JobTitle, Some("CTO"))]);
        let m = run(&theirs, Some(&base), 5, &Policy::default());
        assert_eq!(m.doc, doc());
        assert!(m.changes.is_empty());
        assert_eq!(
            m.conflicts,
            vec![Conflict {
                field: "job_title".into(),
                kept: Origin::Api,
                kept_value: Some("Analyst".into()),
                lost: Origin::Hubspot,
                lost_value: Some("CTO".into()),
                reason: ConflictReason::Older
            }]
        );
    }

    #[test]
    fn a_newer_crm_edit_of_a_contested_field_wins_and_records_what_lost() {
        let base = values(&[(Field::JobTitle, Some("Intern"))]);
        let theirs = values(&[(Field::JobTitle, Some("CTO"))]);
        let m = run(&theirs, Some(&base), 11, &Policy::default());
        assert_eq!(m.doc.job_title.as_deref(), Some("CTO"));
        assert_eq!(m.conflicts[0].kept, Origin::Hubspot);
        assert_eq!(m.conflicts[0].lost_value.as_deref(), Some("Analyst"));
    }

    #[test]
    fn equal_times_go_to_the_first_origin_of_the_tie_break_order() {
        let theirs = values(&[(Field::JobTitle, Some("CTO"))]);
        let m = run(&theirs, None, 10, &Policy::default());
        assert_eq!(m.doc.job_title.as_deref(), Some("Analyst"));
        assert_eq!(m.conflicts[0].reason, ConflictReason::TieBreak);
        let hubspot_first = Policy {
            tie_break: vec![Origin::Hubspot, Origin::Api],
            ..Policy::default()
        };
        let m = run(&theirs, None, 10, &hubspot_first);
        assert_eq!(m.doc.job_title.as_deref(), Some("CTO"));
    }

    #[test]
    fn an_owner_wins_whatever_the_times() {
        let theirs = values(&[
            (Field::JobTitle, Some("CTO")),
            (Field::Email, Some("ada@new.example")),
        ]);
        let policy = Policy {
            owners: [
                (Field::JobTitle, Origin::Hubspot),
                (Field::Email, Origin::Api),
            ]
            .into(),
            ..Policy::default()
        };
        let m = run(&theirs, None, 1, &policy);
        assert_eq!(m.doc.job_title.as_deref(), Some("CTO"));
        assert_eq!(m.doc.email.as_str(), "ada@example.com");
        let lost: Vec<_> = m
            .conflicts
            .iter()
            .map(|c| (c.field.as_str(), c.reason))
            .collect();
        assert_eq!(
            lost,
            vec![
                ("email", ConflictReason::Owner),
                ("job_title", ConflictReason::Owner)
            ]
        );
    }

    #[test]
    fn invalid_crm_values_are_never_taken() {
        let theirs = values(&[(Field::Phone, Some("call me")), (Field::Email, None)]);
        let m = run(&theirs, None, 99, &Policy::default());
        assert_eq!(m.doc, doc());
        assert!(
            m.conflicts
                .iter()
                .all(|c| c.reason == ConflictReason::Invalid)
        );
        assert_eq!(m.conflicts.len(), 2);
    }

    #[test]
    fn a_cleared_crm_field_clears_ours_when_newer() {
        let base = values(&[(Field::JobTitle, Some("Analyst"))]);
        let theirs = values(&[(Field::JobTitle, None)]);
        let m = run(&theirs, Some(&base), 20, &Policy::default());
        assert_eq!(m.doc.job_title, None);
    }

    #[test]
    fn touch_stamps_only_changed_fields() {
        let mut stamps = Stamps::default();
        let mut after = doc();
        after.job_title = Some("CTO".into());
        stamps.touch(Some(&doc()), &after, api(3));
        assert_eq!(stamps.0.keys().collect::<Vec<_>>(), vec!["job_title"]);
        let mut all = Stamps::default();
        all.touch(None, &after, api(3));
        assert_eq!(all.0.len(), FIELDS.len());
    }
}
