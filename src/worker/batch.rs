//! Assembling a delivery batch: tasks for distinct contacts, up to the CRM's cap, with several
//! tasks for one contact coalesced into one entry (one write of the newest version).

use std::collections::HashMap;

use super::settle::Acker;

use crate::domain::ContactId;
use crate::domain::change::DeliveryTask;

/// One contact in a batch, with every queued task that asked for it.
pub struct Entry {
    pub contact_id: ContactId,
    /// The newest version any task asked for.
    pub version: i64,
    /// The task that has been tried most often (its attempt count and error history carry
    /// on), with `version` raised to the newest.
    pub task: DeliveryTask,
    /// The tasks' ackers; settled together once the contact's outcome is durable.
    pub ackers: Vec<Acker>,
    /// The span the entry is processed and settled in: the first task's, continuing the trace
    /// of the change it carries.
    pub span: tracing::Span,
}

/// Distinct contacts in arrival order.
#[derive(Default)]
pub struct Batch {
    pub entries: Vec<Entry>,
    index: HashMap<ContactId, usize>,
}

impl Batch {
    /// Adds a task; a contact already in the batch keeps one entry with the newest version
    /// (and its first task's span).
    pub fn add(&mut self, task: DeliveryTask, acker: Acker, span: tracing::Span) {
        self.absorb(Entry {
            contact_id: task.contact_id,
            version: task.version,
            task,
            ackers: vec![acker],
            span,
        });
    }

    /// Adds an entry (a new task's, or one taken from another batch), merged into the
    /// contact's entry if it has one.
    pub fn absorb(&mut self, entry: Entry) {
        match self.index.get(&entry.contact_id) {
            Some(&i) => {
                let e = &mut self.entries[i];
                e.version = e.version.max(entry.version);
                if entry.task.attempt > e.task.attempt {
                    e.task = entry.task;
                }
                e.task.version = e.version;
                e.ackers.extend(entry.ackers);
            }
            None => {
                self.index.insert(entry.contact_id, self.entries.len());
                self.entries.push(entry);
            }
        }
    }

    /// Distinct contacts.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes and returns the entries whose contacts `keep` rejects, keeping the others.
    pub fn take_where(&mut self, mut done: impl FnMut(&Entry) -> bool) -> Vec<Entry> {
        let (taken, kept): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|e| done(e));
        self.entries = kept;
        self.index = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.contact_id, i))
            .collect();
        taken
    }
}
