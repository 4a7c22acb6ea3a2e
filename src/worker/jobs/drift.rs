//! The drift check (`kind: drift`): finds CRM records that no longer hold what SyncRoot holds
//! (a lost webhook, a bulk import with notifications off, an edit while sync was paused) and,
//! with `repair`, resolves them.
//!
//! ```text
//! per enabled CRM, a page at a time:
//!   full:        the next 100 linked records (contact id order) ─▶ read them by id (batched)
//!   incremental: the next page of records the CRM modified since the last completed check
//!                started (less the pollers' overlap) ─▶ the linked ones among them
//!   per record:  a delivery is under way ─▶ pending (not compared)
//!                checksum(contact mapped to the CRM's fields) = checksum(record) ─▶ same
//!                otherwise differing (the names of the fields that differ), or missing
//!   repair:      differing ─▶ the record as a change from its CRM (`via` drift) through the
//!                inbound apply path: the policy picks each field's winner, a new version
//!                carries the CRM's winners to the other systems, a CRM that lost is corrected
//!                missing   ─▶ what the inbound path does with a deletion made in the CRM
//! ```
//!
//! A record that differs is read from the links table again before it counts: a delivery that
//! finished between reading the contact and reading the record is not drift. Reads go through
//! the CRM clients the webhook workers use, so they are paced within each CRM's allowance with
//! everything else. Results and logs name records and fields, never values.
//!
//! Incremental checks find edits; a deletion made in a CRM leaves nothing to find by
//! modification time, so only a full check reports missing records.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::{JobError, Step};
use crate::domain::inbound::DeletePolicy;
use crate::domain::job::{DriftParams, JobKind, Progress};
use crate::domain::merge::Policy;
use crate::domain::{ContactFields, Crm, FieldValues};
use crate::providers::hubspot::HubspotClient;
use crate::providers::salesforce::SalesforceClient;
use crate::providers::{CrmClient, RemoteRecord};
use crate::queue::publisher::Publisher;
use crate::store::jobs::{self, JobRow};
use crate::store::links::{self, Linked};
use crate::worker::inbound::apply::{self, Applied};
use crate::worker::inbound::poll;

/// What the drift check needs: the enabled CRMs' clients (shared with the webhook workers and
/// pollers, so one pacer per CRM), and what the inbound apply path needs.
pub struct Drift {
    pub db: PgPool,
    pub publisher: Publisher,
    pub policy: Policy,
    pub deletes: DeletePolicy,
    pub hubspot: Option<Arc<HubspotClient>>,
    pub salesforce: Option<Arc<SalesforceClient>>,
}

/// Linked records compared per page in a full check (HubSpot's batch/read cap).
const PAGE: i64 = 100;
/// Differing and missing records listed in the result.
pub const SAMPLE: usize = 50;

/// The checkpoint: where a resumed check continues.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct State {
    /// The CRMs still to check; the first is in hand.
    todo: Vec<Crm>,
    /// Every linked record, or only those modified since `since`.
    full: bool,
    /// Incremental: where each CRM's reading starts.
    since: Option<DateTime<Utc>>,
    /// Incremental: where the next page of the CRM in hand starts, and the records read at
    /// exactly that time (read again there, counted once).
    from: Option<DateTime<Utc>>,
    at_from: Vec<String>,
    /// Full: the last contact id of the CRM in hand compared.
    after: Option<Uuid>,
    sample: Vec<Sample>,
}

/// A differing or missing record, by name only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Sample {
    contact_id: Uuid,
    crm: Crm,
    remote_id: String,
    /// The fields (SyncRoot's names) whose values differ; empty when the record is missing.
    fields: Vec<String>,
    missing: bool,
}

/// One page of a CRM: linked records and what the CRM holds of them.
struct Page {
    rows: Vec<Linked>,
    records: Vec<RemoteRecord>,
    /// The CRM in hand has no more pages.
    last: bool,
}

impl Drift {
    /// One page of the check; the first call plans it.
    pub async fn step(
        &self,
        job: &JobRow,
        checkpoint: Option<&Value>,
        progress: &mut Progress,
    ) -> Result<Step, JobError> {
        let (params, state): (DriftParams, Option<State>) = super::read_job(job, checkpoint)?;
        let mut state = match state {
            Some(s) => s,
            None => self.plan(params, progress).await?,
        };
        if let Some(&crm) = state.todo.first() {
            let last = match crm {
                Crm::Hubspot => {
                    self.crm_page(self.hubspot.as_deref(), params, &mut state, progress)
                        .await?
                }
                Crm::Salesforce => {
                    self.crm_page(self.salesforce.as_deref(), params, &mut state, progress)
                        .await?
                }
            };
            if last {
                state.todo.remove(0);
                state.after = None;
                state.from = state.since;
                state.at_from.clear();
            }
        }
        if state.todo.is_empty() {
            return Ok(Step::Done(report(params, &state, progress)));
        }
        let checkpoint = serde_json::to_value(&state).map_err(|e| JobError::unreadable(&e))?;
        Ok(Step::More(checkpoint))
    }

    /// Which CRMs, full or incremental, and (full) how many records in all.
    async fn plan(&self, params: DriftParams, progress: &mut Progress) -> Result<State, JobError> {
        let mut todo = Vec::new();
        if self.hubspot.is_some() {
            todo.push(Crm::Hubspot);
        }
        if self.salesforce.is_some() {
            todo.push(Crm::Salesforce);
        }
        let last = jobs::last_succeeded_start(&self.db, JobKind::Drift).await?;
        let overlap = chrono::Duration::from_std(poll::OVERLAP).unwrap_or_default();
        let since = last.map(|t| t - overlap);
        let full = params.full || since.is_none();
        if full {
            let mut total = 0;
            for crm in &todo {
                total += links::count_linked(&self.db, *crm).await?.max(0) as u64;
            }
            progress.total = Some(total);
        }
        for counter in [
            "checked",
            "same",
            "differing",
            "missing",
            "pending",
            "errors",
        ] {
            progress.add(counter, 0);
        }
        Ok(State {
            todo,
            full,
            since,
            from: since,
            ..State::default()
        })
    }

    /// Compares (and repairs) one page of `client`'s CRM; true when it was that CRM's last.
    async fn crm_page<C: CrmClient>(
        &self,
        client: Option<&C>,
        params: DriftParams,
        state: &mut State,
        progress: &mut Progress,
    ) -> Result<bool, JobError> {
        let Some(client) = client else {
            return Ok(true);
        };
        let page = if state.full {
            self.linked_page(client, state).await?
        } else {
            self.changed_page(client, state).await?
        };
        self.compare(client, params, &page, state, progress).await?;
        Ok(page.last)
    }

    /// Full: the next linked records, read from the CRM by id.
    async fn linked_page<C: CrmClient>(
        &self,
        client: &C,
        state: &mut State,
    ) -> Result<Page, JobError> {
        let rows = links::linked_after(&self.db, client.crm(), state.after, PAGE).await?;
        state.after = rows.last().map(|r| r.contact_id.0).or(state.after);
        let ids: Vec<String> = rows
            .iter()
            .filter(|r| r.is_settled())
            .map(|r| r.remote_id.clone())
            .collect();
        let records = if ids.is_empty() {
            Vec::new()
        } else {
            client
                .fetch(&ids)
                .await
                .map_err(|e| JobError::crm_read(client.crm(), &e))?
        };
        let last = rows.len() < PAGE as usize;
        Ok(Page {
            rows,
            records,
            last,
        })
    }

    /// Incremental: the next page of records the CRM modified, and the linked ones among them.
    async fn changed_page<C: CrmClient>(
        &self,
        client: &C,
        state: &mut State,
    ) -> Result<Page, JobError> {
        let crm = client.crm();
        let from = state.from.unwrap_or_else(Utc::now);
        let mut records = client
            .changed_since(from, poll::PAGE)
            .await
            .map_err(|e| JobError::crm_read(crm, &e))?;
        let next = poll::next_page(crm, &records, from, poll::PAGE);
        // Records at the page boundary were compared with the page before.
        let before = std::mem::take(&mut state.at_from);
        if let Some(t) = next {
            state.from = Some(t);
            state.at_from = records
                .iter()
                .filter(|r| r.modified_at == t)
                .map(|r| r.remote_id.clone())
                .collect();
        }
        records.retain(|r| !before.contains(&r.remote_id));
        let ids: Vec<String> = records.iter().map(|r| r.remote_id.clone()).collect();
        let rows = links::linked_records(&self.db, crm, &ids).await?;
        Ok(Page {
            rows,
            records,
            last: next.is_none(),
        })
    }

    async fn compare<C: CrmClient>(
        &self,
        client: &C,
        params: DriftParams,
        page: &Page,
        state: &mut State,
        progress: &mut Progress,
    ) -> Result<(), JobError> {
        let crm = client.crm();
        let held: HashMap<&str, &RemoteRecord> = page
            .records
            .iter()
            .map(|r| (r.remote_id.as_str(), r))
            .collect();
        let mut suspects: Vec<(&Linked, Option<&RemoteRecord>, Vec<String>)> = Vec::new();
        for row in &page.rows {
            progress.done += 1;
            if !row.is_settled() {
                progress.add("pending", 1);
                continue;
            }
            match held.get(row.remote_id.as_str()) {
                None if state.full => suspects.push((row, None, Vec::new())),
                None => {}
                Some(record) => match differing_fields(&client.project(&row.doc), &record.values) {
                    None => {
                        progress.add("checked", 1);
                        progress.add("same", 1);
                    }
                    Some(fields) => suspects.push((row, Some(record), fields)),
                },
            }
        }
        if suspects.is_empty() {
            return Ok(());
        }
        // A delivery may have finished (or a new version come) since the rows were read.
        let ids: Vec<String> = suspects.iter().map(|(r, ..)| r.remote_id.clone()).collect();
        let now: Vec<Linked> = links::linked_records(&self.db, crm, &ids).await?;
        let project = |c: &ContactFields| client.project(c);
        let ctx = apply::Ctx {
            db: &self.db,
            publisher: &self.publisher,
            crm,
            policy: &self.policy,
            project: &project,
            via: "drift",
            bulk: true,
        };
        for (row, record, fields) in suspects {
            let unchanged = now
                .iter()
                .any(|n| n.contact_id == row.contact_id && n.seq == row.seq && n.is_settled());
            if !unchanged {
                progress.add("pending", 1);
                continue;
            }
            progress.add("checked", 1);
            progress.add(
                if record.is_some() {
                    "differing"
                } else {
                    "missing"
                },
                1,
            );
            tracing::info!(%crm, contact = %row.contact_id, record = %row.remote_id, ?fields,
                missing = record.is_none(), "drift found");
            if state.sample.len() < SAMPLE {
                state.sample.push(Sample {
                    contact_id: row.contact_id.0,
                    crm,
                    remote_id: row.remote_id.clone(),
                    fields,
                    missing: record.is_none(),
                });
            }
            if params.repair {
                self.repair(&ctx, &row.remote_id, record, progress).await?;
            }
        }
        Ok(())
    }

    /// Resolves one record as the inbound path resolves a change (or deletion) made in its CRM.
    async fn repair(
        &self,
        ctx: &apply::Ctx<'_>,
        remote_id: &str,
        record: Option<&RemoteRecord>,
        progress: &mut Progress,
    ) -> Result<(), JobError> {
        let applied = match (record, self.deletes) {
            (Some(r), _) => apply::apply(ctx, r).await,
            (None, DeletePolicy::Propagate) => apply::delete(ctx, remote_id).await,
            (None, DeletePolicy::Mark) => apply::detach_deleted(ctx, remote_id, Utc::now()).await,
            (None, DeletePolicy::Ignore) => Ok(Applied::Skipped("deletions are ignored (policy)")),
        };
        match applied {
            Ok(outcome) => progress.add(&format!("repair_{}", outcome_name(&outcome)), 1),
            // The page is done again; what was repaired reads as the same (or pending) then.
            Err(e) if e.is_transient() => {
                return Err(JobError {
                    message: format!("repairing {} record {remote_id}: {e}", ctx.crm),
                    transient: true,
                });
            }
            Err(e) => {
                tracing::warn!(crm = %ctx.crm, record = remote_id, error = %e, "drift repair failed");
                progress.add("errors", 1);
            }
        }
        Ok(())
    }
}

/// The result of a finished check.
fn report(params: DriftParams, state: &State, progress: &Progress) -> Value {
    json!({
        "mode": if state.full { "full" } else { "incremental" },
        "since": state.since,
        "repair": params.repair,
        "counters": progress.counters,
        "sample": state.sample,
    })
}

fn outcome_name(a: &Applied) -> &'static str {
    match a {
        Applied::Echo => "echo",
        Applied::Unchanged => "unchanged",
        Applied::Kept => "kept",
        Applied::Updated(_) => "updated",
        Applied::Created(_) => "created",
        Applied::Deleted(_) => "deleted",
        Applied::Detached(_) => "detached",
        Applied::Erased(_) => "erased",
        Applied::MergedAway(_) => "merged_away",
        Applied::Skipped(_) => "skipped",
    }
}

/// A digest of a CRM's view of a contact: equal values give equal digests.
fn checksum(values: &FieldValues) -> [u8; 32] {
    // Serialised as a JSON object of sorted field names: canonical.
    Sha256::digest(serde_json::to_vec(values).unwrap_or_default()).into()
}

/// `None` when the record holds what SyncRoot expects there; otherwise the names of the fields
/// that differ (a field only one side has counts).
fn differing_fields(expected: &FieldValues, held: &FieldValues) -> Option<Vec<String>> {
    if checksum(expected) == checksum(held) {
        return None;
    }
    let fields: BTreeSet<_> = expected.fields().chain(held.fields()).collect();
    Some(
        fields
            .into_iter()
            .filter(|f| expected.get(*f) != held.get(*f))
            .map(|f| f.spec().name.to_owned())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fields::Field;

    fn values(pairs: &[(Field, Option<&str>)]) -> FieldValues {
        let mut v = FieldValues::default();
        for (f, x) in pairs {
            v.set_reported(*f, *x);
        }
        v
    }

    #[test]
    fn equal_values_do_not_differ_and_differing_ones_are_named() {
        let ours = values(&[
            (Field::Email, Some("a@example.com")),
            (Field::Phone, Some("+1 555")),
            (Field::Company, None),
        ]);
        assert_eq!(differing_fields(&ours, &ours.clone()), None);
        let theirs = values(&[
            (Field::Email, Some("A@Example.com")),
            (Field::Phone, Some("+1 666")),
            (Field::Company, Some("Acme")),
        ]);
        assert_eq!(
            differing_fields(&ours, &theirs),
            Some(vec!["phone".to_owned(), "company".to_owned()])
        );
    }

    #[test]
    fn a_field_only_one_side_holds_differs() {
        let ours = values(&[(Field::Email, Some("a@example.com"))]);
        let theirs = values(&[
            (Field::Email, Some("a@example.com")),
            (Field::JobTitle, Some("CTO")),
        ]);
        assert_eq!(
            differing_fields(&ours, &theirs),
            Some(vec!["job_title".to_owned()])
        );
    }
}
