//! The delivery worker: consumes one CRM's delivery queue and brings that CRM up to date.
//!
//! ```text
//! tasks ──▶ batch (distinct contacts, ≤ cap, linger) ──▶ load state + links ──▶ CrmClient::sync
//!                                                                        │ outcome per contact
//!                                                                        ▼
//!                                             crm_links (remote id, synced version, state) ──▶ ack
//! ```
//!
//! A batch gathers up to `GATHER_CALLS` calls' worth of tasks; those the CRM does not hold yet
//! go out grouped by the kind of write (deletions, updates, creates) in calls of its cap
//! (HubSpot 100, Salesforce 200), each call's results recorded as it returns. Under load a
//! batch fills: when tasks lately came fast enough to fill one within `linger_max`, a batch
//! waits until it is full (at most `linger_max`); otherwise it waits a linger past its latest
//! task, so a lone change waits one linger ([`Gathering`]). A batch of a stream keeps the
//! part-empty last call of each kind that also filled a call for the next batch, where the
//! stream fills it. A batch of a job's tasks alone gathers more, and when it fills up keeps
//! each kind's part-empty last call for the next batch. Several tasks for one contact
//! coalesce, and a contact the CRM already holds at its current version is acknowledged
//! without a call.
//!
//! Every contact of a batch is attempted once, its outcome recorded in `crm_links`, and its
//! tasks settled by [`disposition::decide`]: acknowledged when synced; otherwise a copy goes to a
//! retry tier's wait queue (time may fix it) or to the dead-letter queue (refused for good, or
//! out of tiers) **before** the tasks are acknowledged, so a failure never holds up the
//! contacts behind it and nothing is lost in between. Only Postgres trouble is waited out in
//! place (it is not the contact's fault and would burn every tier). A successful delivery
//! resolves the contact's dead-letter entry. Shutdown mid-call leaves the tasks to be
//! redelivered.
//!
//! A message may carry a pack of tasks (`DeliveryPack`, the forwarder's for changes it applied
//! together): each task joins a batch on its own (those beyond a full batch wait for the next),
//! is settled as if it had come alone, and the message is acknowledged with its last task.

use std::sync::Arc;
use std::time::Duration;

use std::collections::{HashMap, HashSet};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::batch::{BULK_WAIT, Batch, Entry, Gathering};
use super::consumer::{Consume, Session, SessionEnd, wait_out};
use super::disposition::{self, Disposition, Outcome};
use super::settle;
use crate::domain::change::DeliveryTask;
use crate::domain::{ContactId, Crm, FieldValues};
use crate::metrics::{self, AttemptOutcome, Settled};
use crate::providers::{CrmClient, ItemOutcome, ProviderError, SyncItem, WriteKind};
use crate::queue::publisher::Publisher;
use crate::queue::{envelope, topology::Topology};
use crate::store::links::{self, Attempt, Deliverable};
use crate::store::{address_index, dead_letters, heads};

/// A batch gathers at most this many calls' worth of tasks, so tasks that need no call (the
/// CRM already holds their version) do not leave calls part empty.
const GATHER_CALLS: usize = 4;

/// A batch of a job's tasks alone (a backfill's, a drift repair's; [`Batch::bulk`]) gathers
/// up to this many calls' worth. One that fills up keeps each kind of write's part-empty last
/// call for the next batch ([`part_empty_tails`]), so a job's writes go in full calls
/// whatever the size of its batches.
const BULK_GATHER_CALLS: usize = 10;

/// One CRM's delivery worker.
pub struct DeliveryWorker<C: CrmClient> {
    pub db: PgPool,
    pub topology: Topology,
    pub client: Arc<C>,
    /// How long a batch waits for the next companion.
    pub linger: Duration,
    /// Longest a batch waits for companions while they keep coming (at least `linger`).
    pub linger_max: Duration,
    /// Unacknowledged tasks held; at least a batch.
    pub prefetch: u16,
    /// Batches in flight at once, never two holding one contact.
    pub concurrency: usize,
    /// How long what a complete read found at an address is used instead of asking the CRM
    /// ([`address_index`]).
    pub address_trust: Duration,
    /// Publishes retries and dead letters (its own connection, confirm mode).
    pub publisher: Publisher,
    /// Waits of the retry tiers, shortest first.
    pub tiers: Vec<Duration>,
    /// On shutdown, how long a CRM call in progress may go on.
    pub grace: Duration,
    /// A linked record that is gone from the CRM is created anew (the `ignore` deletion
    /// policy); otherwise the link is detached: SyncRoot stops writing the contact there.
    pub recreate_gone: bool,
}

impl<C: CrmClient> Consume for DeliveryWorker<C> {
    fn name(&self) -> String {
        format!("deliver-{}", self.client.crm())
    }

    fn role(&self) -> &'static str {
        "delivery"
    }

    fn queues(&self) -> Vec<String> {
        vec![self.topology.delivery_queue(self.client.crm())]
    }

    fn prefetch(&self) -> u16 {
        // A bulk batch is the largest a batch gets, and the tasks the last one kept back for
        // the next (a part-empty call of each kind) are still unacknowledged.
        let kept = self.client.batch_cap() * WriteKind::ALL.len();
        self.prefetch
            .max(u16::try_from(self.bulk_cap() + kept).unwrap_or(u16::MAX))
    }

    /// Collects a batch, delivers it and settles every task, until shutdown; with a
    /// concurrency above one, collects the next batch while earlier ones are in flight.
    async fn consume(
        &self,
        session: &mut Session,
        shutdown: &CancellationToken,
    ) -> Result<(), SessionEnd> {
        metrics::attempts_known(self.client.crm().as_str());
        let mut flights = Flights::default();
        let cap = self.client.batch_cap();
        let mut gathering = Gathering::new(self.linger, self.linger_max, cap);
        let me = Arc::new(self.clone());
        let result = loop {
            if let Err(e) = flights.land_finished() {
                break Err(e);
            }
            if flights.len() >= self.concurrency.max(1) {
                if let Err(e) = flights.land_next().await {
                    break Err(e);
                }
                continue;
            }
            let batch = match self
                .collect(session, shutdown, &mut flights, &mut gathering)
                .await
            {
                Ok(Some(batch)) => batch,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            if batch.is_empty() {
                continue;
            }
            let (me, stop) = (me.clone(), shutdown.clone());
            let streaming = gathering.streaming(tokio::time::Instant::now());
            flights.start(batch, async move |batch| {
                me.deliver(batch, streaming, &stop).await
            });
        };
        // The batches in flight finish (each within its own grace) before the session ends.
        let drained = flights.drain().await;
        result.and(drained)
    }
}

impl<C: CrmClient> Clone for DeliveryWorker<C> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            topology: self.topology.clone(),
            client: self.client.clone(),
            linger: self.linger,
            linger_max: self.linger_max,
            prefetch: self.prefetch,
            concurrency: self.concurrency,
            address_trust: self.address_trust,
            publisher: self.publisher.clone(),
            tiers: self.tiers.clone(),
            grace: self.grace,
            recreate_gone: self.recreate_gone,
        }
    }
}

/// What a batch in flight ends with: its contacts, and the entries it kept for a later batch
/// (or why the session ends).
type Landing = (Vec<ContactId>, Result<Vec<Entry>, SessionEnd>);

/// Batches in flight, the contacts they hold, and the tasks of those contacts that arrived
/// meanwhile or that a batch kept back (held for a later batch, so a contact is never in two
/// calls at once), or that a pack brought beyond a full batch.
#[derive(Default)]
struct Flights {
    running: tokio::task::JoinSet<Landing>,
    busy: std::collections::HashSet<ContactId>,
    held: Batch,
    /// Wakes a collector waiting with an empty batch when a flight lands.
    landed: Arc<tokio::sync::Notify>,
}

impl Flights {
    fn len(&self) -> usize {
        self.running.len()
    }

    fn start<F>(&mut self, batch: Batch, deliver: impl FnOnce(Batch) -> F + Send + 'static)
    where
        F: std::future::Future<Output = Result<Vec<Entry>, SessionEnd>> + Send,
    {
        let ids: Vec<ContactId> = batch.entries.iter().map(|e| e.contact_id).collect();
        self.busy.extend(ids.iter().copied());
        let landed = self.landed.clone();
        self.running.spawn(async move {
            let result = deliver(batch).await;
            landed.notify_one();
            (ids, result)
        });
    }

    fn land(&mut self, done: Result<Landing, tokio::task::JoinError>) -> Result<(), SessionEnd> {
        let (ids, result) = match done {
            Ok(done) => done,
            // A panic goes on up, as it would have without the task.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return Err(SessionEnd::ConsumerClosed),
        };
        for id in ids {
            self.busy.remove(&id);
        }
        for entry in result? {
            self.held.absorb(entry);
        }
        Ok(())
    }

    fn land_finished(&mut self) -> Result<(), SessionEnd> {
        while let Some(done) = self.running.try_join_next() {
            self.land(done)?;
        }
        Ok(())
    }

    async fn land_next(&mut self) -> Result<(), SessionEnd> {
        match self.running.join_next().await {
            Some(done) => self.land(done),
            None => Ok(()),
        }
    }

    async fn drain(&mut self) -> Result<(), SessionEnd> {
        let mut result = Ok(());
        while let Some(done) = self.running.join_next().await {
            result = result.and(self.land(done));
        }
        result
    }

    /// Adds a task to `batch`, or holds it back for a later batch while its contact is in
    /// flight, or when `full` and its contact is not in the batch already.
    fn add(
        &mut self,
        batch: &mut Batch,
        task: DeliveryTask,
        from: Arc<settle::Parts>,
        span: tracing::Span,
        full: bool,
    ) {
        if self.busy.contains(&task.contact_id) || (full && !batch.contains(task.contact_id)) {
            self.held.add(task, from, span);
        } else {
            batch.add(task, from, span);
        }
    }

    /// Moves held tasks whose contacts are no longer in flight into `batch`, up to `cap`.
    fn release_into(&mut self, batch: &mut Batch, cap: usize) {
        let busy = &self.busy;
        let mut free = self.held.take_where(|e| !busy.contains(&e.contact_id));
        let keep = free.split_off(free.len().min(cap.saturating_sub(batch.len())));
        for entry in free {
            batch.absorb(entry);
        }
        for entry in keep {
            self.held.absorb(entry);
        }
    }
}

impl<C: CrmClient> DeliveryWorker<C> {
    /// Waits for a first task, then gathers more until the batch is full or its
    /// [`Gathering::deadline`].
    /// `None` on shutdown before any task arrived.
    /// Tasks of contacts in flight are held back in `flights`; held tasks whose contacts have
    /// landed come first. An empty batch when a flight lands before any task could be taken.
    async fn collect(
        &self,
        session: &mut Session,
        shutdown: &CancellationToken,
        flights: &mut Flights,
        gathering: &mut Gathering,
    ) -> Result<Option<Batch>, SessionEnd> {
        let cap = |batch: &Batch| match batch.bulk() {
            true => self.bulk_cap(),
            false => self.gather_cap(),
        };
        let until = |g: &Gathering, batch: &Batch, first, now| match batch.bulk() {
            true => g.bulk_deadline(first, now),
            false => g.deadline(first, now),
        };
        let mut batch = Batch::default();
        flights.release_into(&mut batch, self.gather_cap());
        // When the batch got its first task, and until when it waits for more.
        let mut first = (!batch.is_empty()).then(tokio::time::Instant::now);
        let mut deadline = first.map(|f| until(gathering, &batch, f, f));
        let landed = flights.landed.clone();
        while batch.len() < cap(&batch) {
            let linger = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let delivery = tokio::select! {
                _ = shutdown.cancelled(), if batch.is_empty() => return Ok(None),
                _ = landed.notified(), if batch.is_empty() && !flights.held.is_empty() => break,
                _ = linger => break,
                next = session.recv() => next?,
            };
            let kind = delivery.properties.kind().as_ref().map(|k| k.to_string());
            let mut tasks = 0;
            match envelope::decode_deliveries(kind.as_deref(), &delivery.data) {
                Ok(pack) if pack.tasks.is_empty() => settle::ack(&delivery.acker).await?,
                Ok(pack) => {
                    tasks = pack.tasks.len();
                    let packed = kind.as_deref() == Some(envelope::DELIVERY_PACK_TYPE);
                    let from = settle::Parts::new(delivery.acker, pack.tasks.len());
                    for item in pack.tasks {
                        let span = task_span(&item.task);
                        crate::telemetry::context::follow_item(
                            &span,
                            packed,
                            &item.trace,
                            &delivery.properties,
                        );
                        // A pack may bring more contacts than the batch has room for.
                        let full = batch.len() >= cap(&batch);
                        flights.add(&mut batch, item.task, from.clone(), span, full);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "dead-lettering an unreadable delivery task");
                    settle::dead_letter(&delivery.acker).await?;
                }
            }
            let now = tokio::time::Instant::now();
            gathering.arrived(now, tasks);
            if !batch.is_empty() {
                let since = *first.get_or_insert(now);
                deadline = Some(until(gathering, &batch, since, now));
            }
        }
        Ok(Some(batch))
    }

    /// Attempts a batch once and settles every task: acknowledged when synced, otherwise
    /// handed to a retry tier or the dead-letter queue first (see [`disposition`]). Postgres
    /// trouble is waited out holding the tasks, so an outage never burns retry tiers. An error
    /// means the broker would not take a retry or dead letter: the session ends and the tasks
    /// come back. A full batch of a job's tasks keeps the part-empty last call of each kind of
    /// write for the next batch: those entries are returned, unsettled.
    async fn deliver(
        &self,
        batch: Batch,
        streaming: bool,
        shutdown: &CancellationToken,
    ) -> Result<Vec<Entry>, SessionEnd> {
        let crm = self.client.crm();
        let tails = match batch.bulk() {
            // Full: more of the job's tasks are waiting, and they will fill those calls.
            true if batch.len() >= self.bulk_cap() => Tails::Bulk,
            true => Tails::Send,
            false if streaming => Tails::Stream,
            false => Tails::Send,
        };
        let attempt = || async {
            let ending = async {
                shutdown.cancelled().await;
                tokio::time::sleep(self.grace).await;
            };
            tokio::select! {
                r = self.attempt(&batch, tails).instrument(batch_span(crm, &batch)) => r.map(Some),
                // Abandoned mid-call: the tasks are redelivered, and writing again is harmless.
                _ = ending => Ok(None),
            }
        };
        let what = format!("read or record {crm} delivery state");
        let Ok(Some(Some((outcomes, kept)))) = wait_out(shutdown, &what, attempt, |_| true).await
        else {
            return Ok(Vec::new());
        };
        let (kept, settling): (Vec<Entry>, Vec<Entry>) = batch
            .entries
            .into_iter()
            .partition(|e| kept.contains(&e.contact_id));
        if !kept.is_empty() {
            tracing::debug!(%crm, kept = kept.len(), "a job's part-empty calls kept for the next batch");
        }
        let now = chrono::Utc::now();
        let settled = settling.into_iter().map(|entry| {
            let outcome = outcomes
                .get(&entry.contact_id)
                .cloned()
                .unwrap_or(Outcome::Synced);
            let disposition = disposition::decide(entry.task.clone(), &outcome, &self.tiers, now);
            let span = entry.span.clone();
            self.settle(entry, disposition).instrument(span)
        });
        let results = futures_util::future::join_all(settled).await;
        let settled = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        // If the channel is gone the tasks come back, and are skipped as already synced or
        // tried again, which upserts harmlessly.
        let mut ackers = Vec::new();
        for (entry, outcome) in &settled {
            ackers.extend(entry.ackers.iter().filter_map(|a| a.settled(*outcome)));
        }
        settle::ack_all(ackers).await?;
        Ok(kept)
    }

    /// Carries out one contact's disposition: publish (confirmed) where needed. Returns the
    /// entry with what its tasks' acknowledgement counts as.
    async fn settle(
        &self,
        entry: Entry,
        disposition: Disposition,
    ) -> Result<(Entry, Settled), SessionEnd> {
        let crm = self.client.crm();
        let settled = match &disposition {
            Disposition::Ack => {
                tracing::debug!("delivery settled");
                Settled::Acked
            }
            Disposition::Retry { tier, task } => {
                tracing::debug!(%crm, contact = %entry.contact_id, attempt = task.attempt, tier, "delivery will be retried");
                self.publisher.publish_retry(task, *tier).await?;
                Settled::Retried
            }
            Disposition::DeadLetter { reason, task } => {
                tracing::warn!(%crm, contact = %entry.contact_id, attempts = task.attempt, reason = reason.as_str(),
                    error = task.errors.last().map(|e| e.message.as_str()).unwrap_or(""), "delivery dead-lettered");
                self.publisher
                    .publish_dead_delivery(task, reason.as_str())
                    .await?;
                Settled::DeadLettered
            }
        };
        Ok((entry, settled))
    }

    /// One attempt at the batch: each contact's outcome (contacts not in the map were already
    /// up to date), recorded in `crm_links`; dead-letter entries the CRM has now caught up with
    /// are resolved. The contacts of the part-empty last calls `tails` keeps are not written
    /// but listed, for a later batch ([`part_empty_tails`]).
    async fn attempt(
        &self,
        batch: &Batch,
        tails: Tails,
    ) -> Result<(HashMap<ContactId, Outcome>, HashSet<ContactId>), sqlx::Error> {
        let crm = self.client.crm();
        let ids: Vec<uuid::Uuid> = batch.entries.iter().map(|e| e.contact_id.0).collect();
        let rows = links::load_deliverables(&self.db, crm, &ids).await?;
        // A detached record (deleted or merged away in this CRM) is not written again.
        let rows = rows.into_iter().filter(|r| r.detached.is_none());
        // A record that already holds the contact's values (the change came from this CRM, or
        // lost nothing there) is brought up to the version without a call: no echo write.
        let (held, rows): (Vec<_>, Vec<_>) = rows.partition(|r| needs_sync(r) && self.holds(r));
        let held: Vec<Attempt> = held.iter().map(|r| self.held(r)).collect();
        links::record(&self.db, crm, &held).await?;
        let mut items: Vec<SyncItem> = rows
            .iter()
            .filter(|r| needs_sync(r))
            .map(sync_item)
            .collect();
        self.keep_others_records(&mut items).await?;
        let accepted: HashMap<ContactId, chrono::DateTime<chrono::Utc>> =
            rows.iter().map(|r| (r.id, r.accepted_at)).collect();
        let mut outcomes = HashMap::new();
        let mut caught_up: Vec<(uuid::Uuid, i64)> = rows
            .iter()
            .filter(|r| !needs_sync(r))
            .filter_map(|r| Some((r.id.0, r.synced_version?)))
            .chain(held.iter().map(|a| (a.contact_id.0, a.version)))
            .collect();
        // A contact not yet linked whose address another contact's record may still carry
        // waits (see `links::held_by_another`): written now, it would adopt that record.
        let unlinked: Vec<(ContactId, &str)> = items
            .iter()
            .filter(|i| i.remote_id.is_none())
            .filter_map(|i| Some((i.contact_id, i.contact.as_ref()?.email.as_str())))
            .collect();
        let held_back = links::held_by_another(&self.db, crm, &unlinked).await?;
        let (mut items, waiting): (Vec<SyncItem>, Vec<SyncItem>) = items
            .into_iter()
            .partition(|i| !held_back.contains(&i.contact_id));
        self.add_known(&mut items).await?;
        // A CRM takes each kind of write in its own calls: grouped (arrival order kept within
        // a kind), only the last call of each kind is part empty. Deletions go first, freeing
        // their addresses before a create claims one.
        items.sort_by_key(|i| self.client.write_kind(i));
        let kept = self.keep_tails(batch, &mut items, tails);
        if !items.is_empty() || !waiting.is_empty() {
            let mut gone = Vec::new();
            let mut results = self.call(&items, &mut gone).await?;
            let held: Vec<_> = waiting.iter().map(|_| Err(address_held(crm))).collect();
            self.record_attempts(waiting.iter().zip(&held)).await?;
            results.extend(held);
            items.extend(waiting);
            self.handle_gone(&gone).await?;
            let now = chrono::Utc::now();
            for (item, result) in items.iter().zip(results) {
                count_attempt(crm, &result, accepted.get(&item.contact_id), now);
                let outcome = match result {
                    Ok(_) => {
                        caught_up.push((item.contact_id.0, item.version));
                        Outcome::Synced
                    }
                    Err(e) => Outcome::from_error(e),
                };
                outcomes.insert(item.contact_id, outcome);
            }
        }
        let resolved = dead_letters::resolve(&self.db, crm.as_str(), &caught_up).await?;
        if resolved > 0 {
            tracing::info!(%crm, resolved, "dead-letter entries resolved by a successful delivery");
        }
        Ok((outcomes, kept))
    }
}

impl<C: CrmClient> DeliveryWorker<C> {
    /// Takes the part-empty last calls `tails` asks for out of `items` (grouped by kind),
    /// unless one of their tasks has waited long enough already: the contacts kept for the
    /// next batch.
    fn keep_tails(
        &self,
        batch: &Batch,
        items: &mut Vec<SyncItem>,
        tails: Tails,
    ) -> HashSet<ContactId> {
        let (wait, full_calls) = match tails {
            Tails::Send => return HashSet::new(),
            Tails::Bulk => (BULK_WAIT, 0),
            Tails::Stream => (self.linger_max, 1),
        };
        let since: HashMap<ContactId, tokio::time::Instant> = batch
            .entries
            .iter()
            .map(|e| (e.contact_id, e.since))
            .collect();
        let may_wait = |i: &SyncItem| {
            since
                .get(&i.contact_id)
                .is_some_and(|since| since.elapsed() < wait)
        };
        let kind = |i: &SyncItem| self.client.write_kind(i);
        let cap = self.client.batch_cap();
        part_empty_tails(items, kind, cap, full_calls, may_wait)
            .into_iter()
            .map(|i| i.contact_id)
            .collect()
    }

    /// Tasks gathered into one batch: several calls' worth, since some of them need no call
    /// (the CRM already holds the version, as a record a change came from does); those that
    /// do go out in calls of the CRM's cap.
    fn gather_cap(&self) -> usize {
        self.client.batch_cap() * GATHER_CALLS
    }

    /// Tasks gathered into a batch of a job's tasks alone (one call's worth is one task with
    /// batching off: nothing to gather for).
    fn bulk_cap(&self) -> usize {
        match self.client.batch_cap() {
            0 | 1 => self.gather_cap(),
            cap => cap * BULK_GATHER_CALLS,
        }
    }

    /// What a recent complete read of the CRM found at the addresses of the contacts not yet
    /// linked (their record, or none), so the CRM need not be asked.
    async fn add_known(&self, items: &mut [SyncItem]) -> Result<(), sqlx::Error> {
        let unlinked: Vec<(ContactId, &crate::domain::Email)> = items
            .iter()
            .filter(|i| i.remote_id.is_none())
            .filter_map(|i| Some((i.contact_id, &i.contact.as_ref()?.email)))
            .collect();
        let crm = self.client.crm();
        let mut known = address_index::known(&self.db, crm, &unlinked, self.address_trust).await?;
        if !known.is_empty() {
            tracing::debug!(%crm, known = known.len(), "linked or created by a recent complete read");
        }
        for item in items.iter_mut() {
            item.known = known.remove(&item.contact_id);
        }
        Ok(())
    }

    /// Records a lost create may have left are looked for at every address the contact's
    /// writes went to (see [`SyncItem::left_emails`]); but an address another live contact
    /// has now is not looked at: a record with it is (or will be) that contact's, never this
    /// one's to delete or take.
    async fn keep_others_records(&self, items: &mut [SyncItem]) -> Result<(), sqlx::Error> {
        // One connection for every look-up, taken only when there is one to make.
        let mut conn = None;
        for item in items.iter_mut().filter(|i| !i.left_emails.is_empty()) {
            let conn = match &mut conn {
                Some(conn) => conn,
                None => conn.insert(self.db.acquire().await?),
            };
            let mut kept = Vec::with_capacity(item.left_emails.len());
            for email in std::mem::take(&mut item.left_emails) {
                let other = heads::find_live_by_email(conn, &email).await?;
                if other.is_none_or(|other| other == item.contact_id) {
                    kept.push(email);
                }
            }
            // A live unlinked contact left with only its current address: the upsert by it
            // finds what there is.
            let only_current = item.remote_id.is_none()
                && item.contact.as_ref().is_some_and(|c| {
                    kept.iter()
                        .all(|e| e.eq_ignore_ascii_case(c.email.as_str()))
                });
            item.left_emails = if only_current { Vec::new() } else { kept };
        }
        Ok(())
    }

    /// Notes what is about to be written, makes the CRM calls (each of one kind of write, at
    /// most the batch cap) and records each call's results as it returns: each item's result,
    /// in order (records found gone are listed in `gone`). Items come grouped by kind.
    async fn call(
        &self,
        items: &[SyncItem],
        gone: &mut Vec<(ContactId, i64, String)>,
    ) -> Result<Vec<Result<Option<String>, ProviderError>>, sqlx::Error> {
        let mut results = Vec::with_capacity(items.len());
        let kind = |i: &SyncItem| self.client.write_kind(i);
        let calls = items
            .chunk_by(|a, b| kind(a) == kind(b))
            .flat_map(|same| same.chunks(self.client.batch_cap().max(1)));
        for chunk in calls {
            let known_gone = gone.len();
            let chunk_results = self.call_once(chunk, gone).await?;
            // A record found gone that is to be created anew is not recorded as written:
            // `handle_gone` unlinks it, and until then the contact reads as pending.
            let recreated: Vec<ContactId> = match self.recreate_gone {
                true => gone[known_gone..].iter().map(|(id, _, _)| *id).collect(),
                false => Vec::new(),
            };
            let written = chunk
                .iter()
                .zip(&chunk_results)
                .filter(|(item, _)| !recreated.contains(&item.contact_id));
            // On record before the next call: a crash during it does not lose what this one
            // created (a record created but not linked is looked for again, at a cost).
            self.record_attempts(written).await?;
            results.extend(chunk_results);
        }
        Ok(results)
    }

    /// Records each item's result in `crm_links`.
    async fn record_attempts<'a>(
        &self,
        results: impl Iterator<Item = (&'a SyncItem, &'a Result<Option<String>, ProviderError>)>,
    ) -> Result<(), sqlx::Error> {
        let attempts: Vec<Attempt> = results
            .map(|(item, r)| {
                let values = item.contact.as_ref().map(|c| self.client.project(c));
                attempt_row(item, r, self.client.paused(), values)
            })
            .collect();
        links::record(&self.db, self.client.crm(), &attempts).await
    }

    /// One CRM call for at most its batch cap of items.
    async fn call_once(
        &self,
        items: &[SyncItem],
        gone: &mut Vec<(ContactId, i64, String)>,
    ) -> Result<Vec<Result<Option<String>, ProviderError>>, sqlx::Error> {
        let crm = self.client.crm();
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let writes: Vec<_> = items
            .iter()
            .filter_map(|i| {
                let values = self.client.project(i.contact.as_ref()?);
                Some((i.contact_id, i.version, values))
            })
            .collect();
        links::note_writes(&self.db, crm, &writes).await?;
        let started = std::time::Instant::now();
        let synced = self.client.sync(items).await;
        // A spent daily allowance is answered without a call: nothing to time.
        if !matches!(synced, Err(ProviderError::QuotaExhausted { .. })) {
            metrics::delivery_call(crm.as_str(), started.elapsed(), items.len());
        }
        Ok(match synced {
            Ok(outcomes) => pair(items, outcomes, gone),
            Err(e) => {
                tracing::warn!(%crm, contacts = items.len(), error = %e, "delivery call failed");
                items.iter().map(|_| Err(e.clone())).collect()
            }
        })
    }

    /// Linked records the CRM no longer has (deleted or merged away there, perhaps with the
    /// webhook saying so still on its way): detached, so SyncRoot does not bring back a record
    /// someone removed, or, when deletions are ignored, unlinked and written again (a new one).
    async fn handle_gone(&self, gone: &[(ContactId, i64, String)]) -> Result<(), sqlx::Error> {
        let crm = self.client.crm();
        for (id, version, record) in gone {
            if self.recreate_gone {
                tracing::info!(%crm, contact = %id, record, "linked record gone; creating a new one");
                links::forget_record(&self.db, crm, *id).await?;
                let task = DeliveryTask::new(*id, *version, crm);
                if let Err(e) = self.publisher.publish_delivery(&task).await {
                    // The link now reads as pending; the next change or a replay writes it.
                    tracing::warn!(%crm, contact = %id, error = %e, "could not queue the re-creation");
                }
            } else {
                tracing::info!(%crm, contact = %id, record, "linked record gone; detached");
                let why = format!(
                    "record {record} was not found in {crm} (deleted or merged there); SyncRoot no longer writes this contact there until the record is restored"
                );
                let mut conn = self.db.acquire().await?;
                links::detach(&mut conn, crm, *id, &why).await?;
            }
        }
        Ok(())
    }

    /// True when the linked record is known to hold the live contact's values already.
    fn holds(&self, r: &Deliverable) -> bool {
        match (&r.contact, &r.remote_id, &r.remote_values) {
            (Some(c), Some(_), Some(known)) => *known == self.client.project(c),
            _ => false,
        }
    }

    /// The attempt row of a record that already holds the contact's version.
    fn held(&self, r: &Deliverable) -> Attempt {
        Attempt {
            contact_id: r.id,
            version: r.version,
            result: Ok(r.remote_id.clone()),
            values: r.remote_values.clone(),
        }
    }
}

/// The span of one delivery task, continuing the trace its message carries.
/// The span a task is processed in; its caller makes it follow the task's message or, packed,
/// the task's own trace context.
fn task_span(task: &DeliveryTask) -> tracing::Span {
    tracing::info_span!(
        "deliver",
        otel.name = %format_args!("deliver {}", task.crm),
        otel.kind = "consumer",
        crm = %task.crm,
        contact = %task.contact_id,
        version = task.version,
        // This attempt's number: 1 for a fresh task.
        attempt = task.attempt + 1,
    )
}

/// The span of one attempt at a batch: a child of its first task's span, so a change's trace
/// shows the CRM call that carried it, and linked to the others'.
fn batch_span(crm: Crm, batch: &Batch) -> tracing::Span {
    let first = batch.entries.first().map(|e| &e.span);
    let span = tracing::info_span!(parent: first.and_then(|s| s.id()), "sync", crm = %crm, contacts = batch.len());
    for entry in batch.entries.iter().skip(1) {
        crate::telemetry::context::link(&span, &entry.span);
    }
    span
}

/// Which part-empty last calls a batch keeps back for the next batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tails {
    /// None: every call goes now.
    Send,
    /// A full batch of a job's tasks: each kind's, for up to [`BULK_WAIT`].
    Bulk,
    /// A batch of a stream ([`Gathering::streaming`]): each kind's that follows a full call of
    /// its kind, for up to `linger_max`. A batch of less than a call goes whole, so a lone
    /// change and the end of a burst wait for nothing.
    Stream,
}

/// Takes out of `items` (grouped by `kind`) the part-empty last call of each kind that follows
/// at least `full_calls` full calls of its kind, when every item of it `may_wait`: the
/// contacts kept for the next batch, where more tasks of that kind fill the call. An item that
/// has waited long enough (a kind that comes too seldom to fill a call) goes now, and with it
/// its call.
fn part_empty_tails(
    items: &mut Vec<SyncItem>,
    kind: impl Fn(&SyncItem) -> WriteKind,
    cap: usize,
    full_calls: usize,
    may_wait: impl Fn(&SyncItem) -> bool,
) -> Vec<SyncItem> {
    if cap <= 1 {
        return Vec::new();
    }
    let mut keep = vec![false; items.len()];
    let mut end = 0;
    for same in items.chunk_by(|a, b| kind(a) == kind(b)) {
        end += same.len();
        let tail = same.len() % cap;
        let follows = same.len() / cap >= full_calls;
        if tail > 0 && follows && same[same.len() - tail..].iter().all(&may_wait) {
            keep[end - tail..end].fill(true);
        }
    }
    let (kept, rest): (Vec<_>, Vec<_>) = std::mem::take(items)
        .into_iter()
        .zip(keep)
        .partition(|(_, keep)| *keep);
    *items = rest.into_iter().map(|(item, _)| item).collect();
    kept.into_iter().map(|(item, _)| item).collect()
}

/// True when the CRM does not yet hold the contact's current version.
fn needs_sync(r: &Deliverable) -> bool {
    r.synced_version.is_none_or(|v| v < r.version)
}

fn sync_item(r: &Deliverable) -> SyncItem {
    SyncItem {
        contact_id: r.id,
        version: r.version,
        contact: r.contact.clone(),
        remote_id: r.remote_id.clone(),
        left_emails: r
            .left_emails
            .iter()
            .map(|e| e.as_str().to_owned())
            .collect(),
        known: None,
    }
}

/// Pairs items with their outcomes: `Ok` when the CRM now holds the item's version (its
/// remote id recorded), the error otherwise.
/// A record that is gone counts as done here (nothing more can be written to it) and is
/// listed in `gone` with the contact and version.
fn pair(
    items: &[SyncItem],
    outcomes: Vec<ItemOutcome>,
    gone: &mut Vec<(ContactId, i64, String)>,
) -> Vec<Result<Option<String>, ProviderError>> {
    let mut outcomes = outcomes.into_iter();
    items
        .iter()
        .map(|item| match outcomes.next() {
            Some(ItemOutcome::Synced { remote_id }) => Ok(remote_id),
            Some(ItemOutcome::Gone { remote_id }) => {
                gone.push((item.contact_id, item.version, remote_id.clone()));
                Ok(Some(remote_id))
            }
            Some(ItemOutcome::Failed(e)) => Err(e),
            // A client that answers fewer outcomes than items broke its contract: retry those.
            None => Err(ProviderError::Unavailable(
                "no outcome reported for this contact".into(),
            )),
        })
        .collect()
}

/// Counts one contact's attempt, and when it synced, how long after its version was accepted.
/// A spent allowance (no call made) is not an attempt.
fn count_attempt(
    crm: crate::domain::Crm,
    result: &Result<Option<String>, ProviderError>,
    accepted: Option<&chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) {
    let outcome = match result {
        Ok(_) => {
            if let Some(took) = accepted.and_then(|at| (now - *at).to_std().ok()) {
                metrics::synced(crm.as_str(), took);
            }
            AttemptOutcome::Success
        }
        Err(ProviderError::QuotaExhausted { .. }) => return,
        Err(e) if e.is_retryable() => AttemptOutcome::Retryable,
        Err(_) => AttemptOutcome::Permanent,
    };
    metrics::delivery_attempt(crm.as_str(), outcome);
}

/// The `crm_links` row of one attempt; a spent allowance shows the pause's reason.
/// Why a contact not yet linked waits: a record of another contact in `crm` still carries
/// its address, and that contact's deletion (or change of address) has not reached `crm` yet.
/// Retried like a transient refusal, so a wait that never ends is dead-lettered with this
/// reason.
fn address_held(crm: crate::domain::Crm) -> ProviderError {
    ProviderError::Rejected {
        code: "ADDRESS_HELD".into(),
        message: format!(
            "a record in {crm} still carries this e-mail address for another contact whose deletion or change of address has not reached {crm} yet; waiting for it"
        ),
        retryable: true,
    }
}

fn attempt_row(
    item: &SyncItem,
    result: &Result<Option<String>, ProviderError>,
    paused: Option<String>,
    values: Option<FieldValues>,
) -> Attempt {
    let result = match result {
        Ok(remote_id) => Ok(remote_id.clone()),
        Err(e @ ProviderError::QuotaExhausted { .. }) => {
            Err((true, paused.unwrap_or_else(|| e.to_string())))
        }
        Err(e) => Err((e.is_retryable(), e.to_string())),
    };
    Attempt {
        contact_id: item.contact_id,
        version: item.version,
        result,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ContactFields, Email};

    /// An item of `kind`, numbered `n` (its version) so the test can follow it.
    fn item(kind: WriteKind, n: i64) -> SyncItem {
        let contact = ContactFields {
            email: Email::parse(&format!("p{n}@example.com")).expect("valid"),
            first_name: None,
            last_name: None,
            phone: None,
            company: None,
            job_title: None,
        };
        SyncItem {
            contact_id: ContactId::new(),
            version: n,
            contact: (kind != WriteKind::Delete).then_some(contact),
            remote_id: (kind != WriteKind::Create).then(|| format!("r{n}")),
            left_emails: Vec::new(),
            known: None,
        }
    }

    /// Items numbered from 0: `deletes`, then `updates`, then `creates`.
    fn grouped(deletes: i64, updates: i64, creates: i64) -> Vec<SyncItem> {
        let kinds = [
            (WriteKind::Delete, deletes),
            (WriteKind::Update, updates),
            (WriteKind::Create, creates),
        ];
        let mut n = 0;
        let mut items = Vec::new();
        for (kind, count) in kinds {
            for _ in 0..count {
                items.push(item(kind, n));
                n += 1;
            }
        }
        items
    }

    fn numbers(items: &[SyncItem]) -> Vec<i64> {
        items.iter().map(|i| i.version).collect()
    }

    #[test]
    fn each_kinds_part_empty_last_call_is_kept_and_full_calls_go() {
        // Cap 10: 3 deletions (no full call), 25 updates (2 full, 5 over), 20 creates (full).
        let mut items = grouped(3, 25, 20);
        let kept = part_empty_tails(&mut items, WriteKind::of, 10, 0, |_| true);
        assert_eq!(numbers(&kept), [0, 1, 2, 23, 24, 25, 26, 27]);
        let expected: Vec<i64> = (3..23).chain(28..48).collect();
        assert_eq!(numbers(&items), expected, "the full calls, in order");
    }

    #[test]
    fn a_tail_with_an_item_that_waited_long_enough_goes_whole() {
        let mut items = grouped(0, 15, 15);
        // Update 12 has waited its longest: its call goes, and the creates' tail is kept.
        let kept = part_empty_tails(&mut items, WriteKind::of, 10, 0, |i| i.version != 12);
        assert_eq!(numbers(&kept), (25..30).collect::<Vec<_>>());
        assert_eq!(numbers(&items), (0..25).collect::<Vec<_>>());
    }

    #[test]
    fn a_stream_keeps_only_tails_that_follow_a_full_call() {
        // Cap 10: 3 deletions (no full call: they go), 25 updates (kept: 5), 7 creates (go).
        let mut items = grouped(3, 25, 7);
        let kept = part_empty_tails(&mut items, WriteKind::of, 10, 1, |_| true);
        assert_eq!(numbers(&kept), (23..28).collect::<Vec<_>>());
        let expected: Vec<i64> = (0..23).chain(28..35).collect();
        assert_eq!(numbers(&items), expected);
        // Less than a call in all: the batch goes whole.
        let mut items = grouped(0, 0, 9);
        assert!(part_empty_tails(&mut items, WriteKind::of, 10, 1, |_| true).is_empty());
    }

    #[test]
    fn calls_of_one_keep_nothing() {
        let mut items = grouped(1, 1, 1);
        assert!(part_empty_tails(&mut items, WriteKind::of, 1, 0, |_| true).is_empty());
        assert_eq!(items.len(), 3);
    }
}
