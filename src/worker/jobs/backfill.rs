//! The backfill (`kind: backfill`): going live on CRMs that already hold contacts. Every live
//! record of each enabled CRM is matched with SyncRoot's contacts by normalised e-mail.
//!
//! ```text
//! read:  every enabled CRM once with its full reader, a page at a time; each record is kept
//!        with its values (`backfill_records`), its address as a digest
//!        then (not in a dry run) the address index: per CRM, per address, its records there
//!        (none for an address only other CRMs hold), which lets delivery link or create
//!        without a matching query (`store::address_index`)
//! apply: the kept records, CRM by CRM, a page at a time:
//!          an address several records of one CRM share ─▶ duplicates: every record with it,
//!            in every CRM, is skipped (never guessed which is the person's)
//!          otherwise the record as a change from its CRM (`via` backfill) through the
//!          inbound apply path:
//!            linked, or a live contact with its address ─▶ linked if it was not; differing
//!              values merged by the conflict policy (a new version, or the CRM corrected)
//!            no contact ─▶ created from the record, linked to it; delivery pushes it to the
//!              other CRMs (the index tells it no record there has the address)
//!            a new version (created or updated) ─▶ the later CRMs' kept records of the
//!              address are merged into it by the policy at once, so its delivery there
//!              writes over nothing newer
//! dry run: the apply pass asks the apply path what it would do, in a transaction rolled
//!          back; an address an earlier CRM's record would have created a contact for counts
//!          as matched and linked
//! ```
//!
//! The CRMs are read once: the calls a backfill makes are its read pages, and the batch writes
//! delivery makes for what it changed. A record changed in its CRM after it was read reaches
//! SyncRoot through the webhook and poller paths, which the conflict policy orders by
//! modification time with what the backfill applied.
//!
//! The checkpoint is the pass, the CRM in hand and the position in it (the reader's, or the
//! last record applied), so a resumed job goes on from there (a page done again finds its
//! records kept, or linked: echoes, no writes). A second backfill writes nothing: every record
//! is linked and holds what SyncRoot knows. Reads go through the CRM clients the webhook
//! workers use, paced with everything else. Results and logs name records, never values.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{JobError, Step};
use crate::domain::job::{BackfillParams, Progress};
use crate::domain::merge::Policy;
use crate::domain::{ContactFields, Crm};
use crate::providers::hubspot::HubspotClient;
use crate::providers::reading::{ContactReader, ReadPosition};
use crate::providers::salesforce::SalesforceClient;
use crate::providers::{CrmClient, RemoteRecord};
use crate::queue::publisher::Publisher;
use crate::store::address_index;
use crate::store::backfill::{self, Digest};
use crate::store::jobs::JobRow;
use crate::worker::inbound::apply::{self, Applied, Preview};

/// What the backfill needs: the enabled CRMs' clients (shared with the webhook workers) and
/// what the inbound apply path needs.
pub struct Backfill {
    pub db: PgPool,
    pub publisher: Publisher,
    pub policy: Policy,
    pub hubspot: Option<Arc<HubspotClient>>,
    pub salesforce: Option<Arc<SalesforceClient>>,
    /// Records of a page matched at once (each holds a database connection meanwhile).
    pub concurrency: usize,
}

/// Addresses several records share, listed in the result.
pub const SAMPLE: usize = 50;

/// Kept records matched per page of the apply pass.
const APPLY_PAGE: usize = 500;

/// The counters, all shown from the start.
const COUNTERS: [&str; 9] = [
    "read",
    "matched",
    "linked",
    "created",
    "updated",
    "conflicts",
    "duplicates",
    "skipped",
    "errors",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Pass {
    Read,
    Apply,
}

/// The checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct State {
    /// The enabled CRMs, in the order they are read.
    crms: Vec<Crm>,
    /// The CRMs still to do in this pass; the first is in hand.
    todo: Vec<Crm>,
    pass: Pass,
    /// Read: the reader's position in the CRM in hand; apply: the last record id applied
    /// (`None`: its first page).
    position: Option<String>,
    /// When each CRM's read began.
    #[serde(default)]
    read_at: BTreeMap<Crm, DateTime<Utc>>,
    sample: Vec<Shared>,
}

/// Records of one CRM that share an address, by id only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Shared {
    crm: Crm,
    records: Vec<String>,
}

impl Backfill {
    /// One page of the backfill; the first call plans it. The job's kept records go when it
    /// finishes.
    pub async fn step(
        &self,
        job: &JobRow,
        checkpoint: Option<&Value>,
        progress: &mut Progress,
    ) -> Result<Step, JobError> {
        let (params, state): (BackfillParams, Option<State>) = super::read_job(job, checkpoint)?;
        let mut state = match state {
            Some(state) => state,
            None => self.plan(&params, progress)?,
        };
        if let Some(&crm) = state.todo.first() {
            let more = match (state.pass, crm) {
                (Pass::Read, Crm::Hubspot) => {
                    self.read(self.hubspot.as_deref(), job, &mut state, progress)
                        .await?
                }
                (Pass::Read, Crm::Salesforce) => {
                    self.read(self.salesforce.as_deref(), job, &mut state, progress)
                        .await?
                }
                (Pass::Apply, Crm::Hubspot) => {
                    let client = self.hubspot.as_deref();
                    self.apply(client, job, params.dry_run, &mut state, progress)
                        .await?
                }
                (Pass::Apply, Crm::Salesforce) => {
                    let client = self.salesforce.as_deref();
                    self.apply(client, job, params.dry_run, &mut state, progress)
                        .await?
                }
            };
            if !more {
                state.position = None;
                state.todo.remove(0);
                if state.todo.is_empty() && state.pass == Pass::Read {
                    self.all_read(job, params.dry_run, &mut state, progress)
                        .await?;
                }
            }
        }
        if state.todo.is_empty() {
            backfill::forget(&self.db, job.id).await?;
            return Ok(Step::Done(json!({
                "dry_run": params.dry_run,
                "counters": progress.counters,
                "duplicates": state.sample,
            })));
        }
        let checkpoint = serde_json::to_value(&state).map_err(|e| JobError::unreadable(&e))?;
        Ok(Step::More(checkpoint))
    }

    /// The CRMs to read, in order: those asked for (every enabled one by default). Asking for
    /// one that is not enabled fails the job.
    fn plan(&self, params: &BackfillParams, progress: &mut Progress) -> Result<State, JobError> {
        let enabled = |crm: Crm| match crm {
            Crm::Hubspot => self.hubspot.is_some(),
            Crm::Salesforce => self.salesforce.is_some(),
        };
        if let Some(off) = params.crms.iter().flatten().find(|c| !enabled(**c)) {
            return Err(JobError {
                message: format!("{off} is not enabled here, so it cannot be backfilled"),
                transient: false,
            });
        }
        let todo: Vec<Crm> = Crm::ALL
            .into_iter()
            .filter(|c| enabled(*c))
            .filter(|c| params.crms.as_ref().is_none_or(|wanted| wanted.contains(c)))
            .collect();
        for counter in COUNTERS {
            progress.add(counter, 0);
        }
        Ok(State {
            crms: todo.clone(),
            todo,
            pass: Pass::Read,
            position: None,
            read_at: BTreeMap::new(),
            sample: Vec::new(),
        })
    }

    /// One page of the CRM in hand, kept; false when it was the CRM's last.
    async fn read<C: CrmClient + ContactReader>(
        &self,
        client: Option<&C>,
        job: &JobRow,
        state: &mut State,
        progress: &mut Progress,
    ) -> Result<bool, JobError> {
        let Some(client) = client else {
            return Ok(false);
        };
        let crm = client.crm();
        let from = state.position.as_deref().map(ReadPosition::new);
        if from.is_none() {
            state.read_at.insert(crm, Utc::now());
        }
        let page = client
            .read_page(from.as_ref())
            .await
            .map_err(|e| JobError::crm_read(crm, &e))?;
        let kept: Vec<(Option<Digest>, &RemoteRecord)> =
            page.records.iter().map(|r| (address(r), r)).collect();
        backfill::keep(&self.db, job.id, crm, &kept).await?;
        progress.add("read", kept.len() as u64);
        state.position = page.next.map(|p| p.as_str().to_owned());
        Ok(state.position.is_some())
    }

    /// Every CRM is read: what the reads found becomes the address index (not in a dry run),
    /// and the apply pass begins.
    async fn all_read(
        &self,
        job: &JobRow,
        dry_run: bool,
        state: &mut State,
        progress: &mut Progress,
    ) -> Result<(), JobError> {
        if !dry_run {
            let reads: Vec<(Crm, DateTime<Utc>)> =
                state.read_at.iter().map(|(c, t)| (*c, *t)).collect();
            let rows = address_index::remember(&self.db, job.id, &reads).await?;
            tracing::info!(id = %job.id, rows, "address index updated from the backfill's reads");
        }
        progress.total = Some(backfill::count(&self.db, job.id).await?);
        state.pass = Pass::Apply;
        state.todo = state.crms.clone();
        Ok(())
    }

    /// Matches a page of the kept records of the CRM in hand; false when it was the last.
    async fn apply<C: CrmClient>(
        &self,
        client: Option<&C>,
        job: &JobRow,
        dry_run: bool,
        state: &mut State,
        progress: &mut Progress,
    ) -> Result<bool, JobError> {
        let Some(client) = client else {
            return Ok(false);
        };
        let crm = client.crm();
        // Statistics kept up with the tables the pass grows: after 1, 2, 4, 8… pages' worth of
        // records (a short page between CRMs may bring one about twice).
        let pages = progress.done as usize / APPLY_PAGE;
        if !dry_run && pages.is_power_of_two() {
            backfill::analyze_growing(&self.db).await?;
        }
        let kept =
            backfill::page(&self.db, job.id, crm, state.position.as_deref(), APPLY_PAGE).await?;
        let Some(last) = kept.last() else {
            return Ok(false);
        };
        state.position = Some(last.record.remote_id.clone());
        let digests: Vec<Digest> = kept.iter().filter_map(|k| k.address).collect();
        let holders = backfill::holders(&self.db, job.id, &digests).await?;
        let later: Vec<Crm> = state
            .crms
            .iter()
            .skip_while(|c| **c != crm)
            .skip(1)
            .copied()
            .collect();
        let others = if dry_run {
            HashMap::new()
        } else {
            self.others(job, &later, &holders).await?
        };
        let project = |c: &ContactFields| client.project(c);
        let ctx = apply::Ctx {
            db: &self.db,
            publisher: &self.publisher,
            crm,
            policy: &self.policy,
            project: &project,
            via: "backfill",
            bulk: true,
        };
        let mut work = Vec::new();
        for backfill::Pending {
            address: digest,
            record,
            merged,
        } in &kept
        {
            progress.done += 1;
            if *merged {
                // Applied when an earlier CRM's record made its contact's new version: the
                // record as read then is not news now (delivery may have written it since).
                progress.add("matched", 1);
                continue;
            }
            let held = digest
                .as_ref()
                .and_then(|d| holders.get(d))
                .cloned()
                .unwrap_or_default();
            if held.values().any(|ids| ids.len() > 1) {
                progress.add("duplicates", 1);
                for (&crm, records) in held.iter().filter(|(_, ids)| ids.len() > 1) {
                    let group = Shared {
                        crm,
                        records: records.clone(),
                    };
                    if !state.sample.contains(&group) && state.sample.len() < SAMPLE {
                        tracing::info!(%crm, ?records, "records share an address; skipped");
                        state.sample.push(group);
                    }
                }
                continue;
            }
            // In a dry run, what an earlier CRM's record would have created.
            let earlier = state
                .crms
                .iter()
                .take_while(|c| **c != crm)
                .any(|c| held.contains_key(c));
            work.push((record, held, dry_run.then_some(earlier)));
        }
        // Records of a page carry distinct addresses: they are matched side by side (a contact
        // two of them reach is locked by each in turn, as with webhooks).
        // `concurrency` at a time, the next starting as soon as one is done.
        let mut waiting = work.iter();
        let mut running = futures_util::stream::FuturesUnordered::new();
        let mut done = Vec::with_capacity(work.len());
        loop {
            while running.len() < self.concurrency.max(1) {
                let Some((record, held, preview)) = waiting.next() else {
                    break;
                };
                running.push(self.apply_one(&ctx, job, record, held, *preview, &others, &later));
            }
            match running.next().await {
                Some(counted) => done.push(counted),
                None => break,
            }
        }
        // A failed record fails the page, which is done again (what was done reads as linked).
        for counted in done {
            progress.absorb(&counted?);
        }
        Ok(kept.len() == APPLY_PAGE)
    }

    /// Matches one record of the apply pass; what it did, counted. A new version (created or
    /// updated) goes to the later CRMs too: their records of the address are merged into it
    /// first, by the policy, not written over.
    #[allow(clippy::too_many_arguments)]
    async fn apply_one(
        &self,
        ctx: &apply::Ctx<'_>,
        job: &JobRow,
        record: &RemoteRecord,
        held: &BTreeMap<Crm, Vec<String>>,
        preview: Option<bool>,
        others: &HashMap<(Crm, String), RemoteRecord>,
        later: &[Crm],
    ) -> Result<Progress, JobError> {
        let mut counted = Progress::default();
        let outcome = self.record(ctx, record, preview, &mut counted).await?;
        if !matches!(outcome, Some(Applied::Created(_) | Applied::Updated(_))) {
            return Ok(counted);
        }
        for (&other, ids) in held.iter().filter(|(c, _)| later.contains(c)) {
            if let Some(record) = others.get(&(other, ids[0].clone())) {
                self.merge_other(other, record, &mut counted).await?;
                backfill::merged(&self.db, job.id, other, &record.remote_id).await?;
            }
        }
        Ok(counted)
    }

    /// Matches one record, or, in a dry run (`Some(whether an earlier CRM's record would
    /// have created its contact)`), works out what matching it would do. What it did, in a
    /// real run that worked.
    async fn record(
        &self,
        ctx: &apply::Ctx<'_>,
        record: &RemoteRecord,
        dry_run: Option<bool>,
        progress: &mut Progress,
    ) -> Result<Option<Applied>, JobError> {
        let done = async {
            let Some(earlier) = dry_run else {
                return apply::apply_reported(ctx, record).await;
            };
            let preview = apply::preview(ctx, record).await?;
            Ok(match (earlier, &preview.outcome) {
                (true, Applied::Created(_)) => Preview {
                    outcome: Applied::Unchanged,
                    ..preview
                },
                _ => preview,
            })
        };
        match done.await {
            Ok(p) => {
                count(&p, progress);
                if dry_run.is_none() {
                    return Ok(Some(p.outcome));
                }
            }
            // The page is done again; what was done reads as linked then.
            Err(e) if e.is_transient() => {
                return Err(JobError {
                    message: format!("matching {} record {}: {e}", ctx.crm, record.remote_id),
                    transient: true,
                });
            }
            Err(e) => {
                tracing::warn!(crm = %ctx.crm, record = %record.remote_id, error = %e, "backfill of a record failed");
                progress.add("errors", 1);
            }
        }
        Ok(None)
    }

    /// The kept records of `crms` that carry one of these addresses, alone in their CRM.
    async fn others(
        &self,
        job: &JobRow,
        crms: &[Crm],
        holders: &BTreeMap<Digest, BTreeMap<Crm, Vec<String>>>,
    ) -> Result<HashMap<(Crm, String), RemoteRecord>, JobError> {
        let mut out = HashMap::new();
        for &crm in crms {
            let ids: Vec<String> = holders
                .values()
                .filter_map(|by_crm| by_crm.get(&crm).filter(|ids| ids.len() == 1))
                .map(|ids| ids[0].clone())
                .collect();
            if ids.is_empty() {
                continue;
            }
            let records = backfill::by_id(&self.db, job.id, crm, &ids).await?;
            out.extend(
                records
                    .into_iter()
                    .map(|p| ((crm, p.record.remote_id.clone()), p.record)),
            );
        }
        Ok(out)
    }

    /// Merges a later CRM's record into the contact it will be matched with, as that CRM's
    /// pass would, before the contact's new version reaches it. Counted (as matched) in that
    /// CRM's pass, which does not apply it again.
    async fn merge_other(
        &self,
        crm: Crm,
        record: &RemoteRecord,
        progress: &mut Progress,
    ) -> Result<(), JobError> {
        let applied = match crm {
            Crm::Hubspot => self.apply_as(self.hubspot.as_deref(), record).await,
            Crm::Salesforce => self.apply_as(self.salesforce.as_deref(), record).await,
        };
        match applied {
            Some(Ok(outcome)) => {
                tracing::info!(%crm, record = %record.remote_id, ?outcome, "merged before delivery reaches it");
            }
            Some(Err(e)) if e.is_transient() => {
                return Err(JobError {
                    message: format!("matching {crm} record {}: {e}", record.remote_id),
                    transient: true,
                });
            }
            Some(Err(e)) => {
                tracing::warn!(%crm, record = %record.remote_id, error = %e, "backfill of a record failed");
                progress.add("errors", 1);
            }
            None => {}
        }
        Ok(())
    }

    async fn apply_as<C: CrmClient>(
        &self,
        client: Option<&C>,
        record: &RemoteRecord,
    ) -> Option<Result<Applied, apply::ApplyError>> {
        let client = client?;
        let project = |c: &ContactFields| client.project(c);
        let ctx = apply::Ctx {
            db: &self.db,
            publisher: &self.publisher,
            crm: client.crm(),
            policy: &self.policy,
            project: &project,
            via: "backfill",
            bulk: true,
        };
        Some(apply::apply(&ctx, record).await)
    }
}

/// Counts what matching a record did (or would do).
fn count(p: &Preview, progress: &mut Progress) {
    match p.outcome {
        Applied::Created(_) => progress.add("created", 1),
        Applied::Skipped(why) => {
            tracing::info!(why, "backfill skipped a record");
            progress.add("skipped", 1);
            return;
        }
        Applied::Updated(_) => {
            progress.add("matched", 1);
            progress.add("updated", 1);
        }
        _ => progress.add("matched", 1),
    }
    if p.linking {
        progress.add("linked", 1);
    }
    if p.conflicts > 0 {
        progress.add("conflicts", 1);
    }
}

/// The digest of a record's normalised address; `None` without a valid one.
fn address(record: &RemoteRecord) -> Option<Digest> {
    record.address().map(|e| address_index::digest(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FieldValues;
    use crate::domain::fields::Field;

    fn record(email: Option<&str>) -> RemoteRecord {
        let mut values = FieldValues::default();
        values.set_reported(Field::Email, email);
        RemoteRecord {
            remote_id: "1".into(),
            values,
            modified_at: chrono::Utc::now(),
            external_id: None,
        }
    }

    #[test]
    fn addresses_match_whatever_their_case() {
        assert_eq!(
            address(&record(Some("Ada@Example.COM"))),
            address(&record(Some("ada@example.com")))
        );
        assert_ne!(
            address(&record(Some("ada@example.com"))),
            address(&record(Some("bob@example.com")))
        );
        assert_eq!(address(&record(Some("not an address"))), None);
        assert_eq!(address(&record(None)), None);
    }

    #[test]
    fn linking_a_record_whose_values_differ_counts_each_thing_once() {
        let mut progress = Progress::default();
        let p = Preview {
            outcome: Applied::Updated(2),
            linking: true,
            conflicts: 2,
        };
        count(&p, &mut progress);
        let created = Preview {
            outcome: Applied::Created(crate::domain::ContactId::new()),
            linking: true,
            conflicts: 0,
        };
        count(&created, &mut progress);
        let c = |n: &str| progress.counters.get(n).copied().unwrap_or(0);
        assert_eq!(
            (
                c("matched"),
                c("updated"),
                c("linked"),
                c("conflicts"),
                c("created")
            ),
            (1, 1, 2, 1, 1)
        );
    }
}
