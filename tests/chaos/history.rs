//! The history check: not only the final state, but every version each CRM was written, read
//! from the sandboxes' own write logs. Every write SyncRoot made to a contact's record must
//! carry the state of a version the API accepted, and the versions written must never go
//! backwards: a lost intermediate change hidden by a later one is fine (it was superseded), an
//! older state written over a newer one is a lost update even if a later write repairs it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use syncroot_testkit::Control;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::model::{Change, Fields, Model};
use crate::verify::{Crm, Links, differences, read_record};

/// Every entry of one sandbox's write log, read as the run goes (the log keeps only the
/// newest entries).
#[derive(Default)]
pub struct Log {
    pub entries: Vec<Value>,
    /// Entries the sandbox dropped before they were read (the check is then incomplete).
    pub missed: u64,
    last: u64,
}

impl Log {
    async fn read(&mut self, control: &Control, base: &str) -> anyhow::Result<()> {
        let new = control.writes(base, self.last).await?;
        if let Some(first) = new.first().and_then(|e| e["seq"].as_u64())
            && first > self.last + 1
        {
            self.missed += first - self.last - 1;
        }
        if let Some(last) = new.last().and_then(|e| e["seq"].as_u64()) {
            self.last = last;
        }
        self.entries.extend(new);
        Ok(())
    }
}

/// Reads both sandboxes' write logs every second until `stop`, then once more.
pub fn collect(
    control: Control,
    hubspot: String,
    salesforce: String,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<(Log, Log)> {
    tokio::spawn(async move {
        let (mut hs, mut sf) = (Log::default(), Log::default());
        loop {
            let stopping = stop.is_cancelled();
            // A sandbox restarting or slow to answer is read again on the next round.
            let _ = hs.read(&control, &hubspot).await;
            let _ = sf.read(&control, &salesforce).await;
            if stopping {
                return (hs, sf);
            }
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    })
}

/// What the history check found.
#[derive(Default, Debug)]
pub struct History {
    /// Writes of a contact's record by SyncRoot that were checked.
    pub writes: usize,
    /// Writes of an older state over a newer one, or of a state no accepted version had.
    pub problems: Vec<String>,
}

/// The state after each accepted version of a contact (`None`: deleted), oldest first.
fn versions(changes: &[(i64, Change)]) -> Vec<(i64, Option<Fields>)> {
    let mut changes = changes.to_vec();
    changes.sort_by_key(|(v, _)| *v);
    let mut out: Vec<(i64, Option<Fields>)> = Vec::new();
    let mut state: Option<Fields> = None;
    for (v, change) in changes {
        match change {
            Change::Document(f) => state = Some(f),
            Change::Patch(p) => {
                if let Some(f) = state.as_mut() {
                    f.merge(&p);
                }
            }
            Change::Delete => state = None,
        }
        match out.last_mut() {
            Some((last, s)) if *last == v => *s = state.clone(),
            _ => out.push((v, state.clone())),
        }
    }
    out
}

/// Checks one CRM's write log against the model. A write is a contact's when SyncRoot's link
/// names its record, or it carries the contact's SyncRoot id.
pub fn check(crm: Crm, log: &Log, model: &Model, links: &Links) -> History {
    let mut h = History::default();
    if log.missed > 0 {
        h.problems.push(format!(
            "{crm:?}: the write log dropped {} entries before they were read; the history check is incomplete",
            log.missed
        ));
    }
    let crm_name = crm.name();
    // A record can be linked to more than one contact (a deleted contact's record taken over
    // by a new contact with the same address): a write is then the contact's whose state it
    // carries.
    let mut by_record: BTreeMap<&str, Vec<Uuid>> = BTreeMap::new();
    for ((contact, c), remote) in links {
        if c == crm_name {
            by_record.entry(remote.as_str()).or_default().push(*contact);
        }
    }
    let carries = |contact: &Uuid, w: &Value| {
        model.contacts.get(contact).is_some_and(|expected| {
            let written = written_state(crm, w);
            versions(&expected.changes)
                .iter()
                .any(|(_, s)| same(crm, s, &written))
        })
    };
    let mut per_contact: BTreeMap<Uuid, Vec<&Value>> = BTreeMap::new();
    for e in &log.entries {
        if e["source"] != "integration" {
            continue;
        }
        let record = e["record_id"].as_str().unwrap_or_default();
        let carried = e["values"]["SyncRoot_Id__c"]
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok());
        let linked = by_record.get(record).cloned().unwrap_or_default();
        // A record a lost create left (never linked to its writer) may be taken over by a
        // contact that has its address now, and is then linked to that one: the create is
        // still its writer's, the contact whose accepted state it carries at one of its
        // addresses. Only a create: a new record has no earlier owner, so this never hides one
        // contact's values written over another's record.
        let creator = || {
            let email = written_state(crm, e).map(|f| f.email.to_lowercase())?;
            model
                .contacts
                .iter()
                .find(|(id, c)| c.emails.contains(&email) && carries(id, e))
                .map(|(id, _)| *id)
        };
        let created = e["kind"] == "created";
        let contact = match linked.as_slice() {
            [] => carried,
            [one] if created && !carries(one, e) => creator().or(Some(*one)),
            [one] => Some(*one),
            many => many
                .iter()
                .find(|c| carries(c, e))
                .or(many.first())
                .copied(),
        };
        let Some(contact) = contact else {
            continue;
        };
        per_contact.entry(contact).or_default().push(e);
    }
    for (contact, writes) in per_contact {
        let Some(expected) = model.contacts.get(&contact) else {
            continue;
        };
        let states = versions(&expected.changes);
        let mut floor = 0i64;
        for w in writes {
            h.writes += 1;
            let written = written_state(crm, w);
            let matches = |state: &Option<Fields>| same(crm, state, &written);
            let candidates: Vec<i64> = states
                .iter()
                .filter(|(_, s)| matches(s))
                .map(|(v, _)| *v)
                .collect();
            match candidates.iter().find(|v| **v >= floor) {
                Some(v) => floor = *v,
                None if candidates.is_empty() => h.problems.push(format!(
                    "{crm:?}: {contact}: write #{} holds a state no accepted version had",
                    w["seq"]
                )),
                None => h.problems.push(format!(
                    "{crm:?}: {contact}: write #{} went back to v{:?} after v{floor} was written",
                    w["seq"], candidates
                )),
            }
        }
    }
    h
}

/// The contact state a write left (`None`: the record was deleted).
fn written_state(crm: Crm, w: &Value) -> Option<Fields> {
    match w["kind"].as_str() {
        Some("deleted") => None,
        _ => {
            let shaped = match crm {
                Crm::Hubspot => json!({"properties": w["values"]}),
                Crm::Salesforce => w["values"].clone(),
            };
            Some(read_record(crm, &shaped))
        }
    }
}

/// Whether an accepted state and a written one agree on every field the CRM holds.
fn same(crm: Crm, state: &Option<Fields>, written: &Option<Fields>) -> bool {
    match (state, written) {
        (None, None) => true,
        (Some(want), Some(got)) => differences(Some(crm), want, got).is_empty(),
        _ => false,
    }
}

/// Both CRMs' verdicts.
pub fn check_both(logs: &(Log, Log), model: &Model, links: &Links) -> History {
    let mut all = check(Crm::Hubspot, &logs.0, model, links);
    let sf = check(Crm::Salesforce, &logs.1, model, links);
    all.writes += sf.writes;
    all.problems.extend(sf.problems);
    all
}
