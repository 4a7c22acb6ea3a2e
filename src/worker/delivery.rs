//! The delivery worker: consumes one CRM's delivery queue and brings that CRM up to date.
//!
//! ```text
//! tasks ──▶ batch (distinct contacts, ≤ cap, linger) ──▶ load state + links ──▶ CrmClient::sync
//!                                                                        │ outcome per contact
//!                                                                        ▼
//!                                             crm_links (remote id, synced version, state) ──▶ ack
//! ```
//!
//! Under load a batch fills to the CRM's cap (HubSpot 100, Salesforce 200) before the linger
//! ends; a lone change waits at most the linger. Several tasks for one contact coalesce, and a
//! contact the CRM already holds at its current version is acknowledged without a call.
//!
//! Outcomes: a synced contact or one the CRM refuses for good is recorded and acknowledged; a
//! contact that failed for a reason time can fix (and a whole call that failed: outage, 429, a
//! spent allowance) is recorded as `retrying` and tried again after a backoff that honours the
//! CRM's `Retry-After`, holding its tasks meanwhile. Only this CRM's queue waits; the other
//! CRM's worker is unaffected. Shutdown during a wait leaves the tasks to be redelivered.

use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use futures_util::StreamExt;
use lapin::Consumer;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::batch::{Batch, Entry};
use crate::config::QueueConfig;
use crate::providers::{CrmClient, ItemOutcome, ProviderError, SyncItem};
use crate::queue::{self, envelope, topology::Topology};
use crate::store::links::{self, Attempt, Deliverable};

/// One CRM's delivery worker.
pub struct DeliveryWorker<C: CrmClient> {
    pub db: PgPool,
    pub queue: QueueConfig,
    pub topology: Topology,
    pub client: Arc<C>,
    /// How long the first task of a batch waits for companions.
    pub linger: Duration,
    /// Unacknowledged tasks held; at least a batch.
    pub prefetch: u16,
    /// Backoff bounds between attempts.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// On shutdown, how long a CRM call in progress may go on.
    pub grace: Duration,
}

impl<C: CrmClient> DeliveryWorker<C> {
    /// Runs until `shutdown`, reconnecting to RabbitMQ with capped backoff.
    pub async fn run(self, shutdown: CancellationToken) {
        let crm = self.client.crm();
        let mut attempt = 0u32;
        while !shutdown.is_cancelled() {
            match self.session(&shutdown).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(%crm, error = %e, attempt, "delivery worker lost RabbitMQ; reconnecting")
                }
            }
            let delay = queue::reconnect_delay(attempt, Duration::from_secs(5));
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        tracing::info!(%crm, "delivery worker stopped");
    }

    async fn session(&self, shutdown: &CancellationToken) -> Result<(), lapin::Error> {
        let crm = self.client.crm();
        let conn = queue::connect(&self.queue, &format!("deliver-{crm}")).await?;
        let channel = conn.create_channel().await?;
        self.topology.declare(&channel).await?;
        let prefetch = self.prefetch.max(self.client.batch_cap() as u16);
        channel
            .basic_qos(prefetch, BasicQosOptions { global: false })
            .await?;
        let queue = self.topology.delivery_queue(crm);
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::info!(%crm, "delivery worker consuming");
        let tag = consumer.tag();
        let result = loop {
            let batch = match self.collect(&mut consumer, shutdown).await {
                Ok(Some(b)) => b,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            self.deliver(batch, shutdown).await;
        };
        let _ = channel
            .basic_cancel(tag, BasicCancelOptions::default())
            .await;
        let _ = channel.close(200, "bye".into()).await;
        let _ = conn.close(200, "bye".into()).await;
        result
    }

    /// Waits for a first task, then gathers more until the batch is full or the linger ends.
    /// `None` on shutdown before any task arrived.
    async fn collect(
        &self,
        consumer: &mut Consumer,
        shutdown: &CancellationToken,
    ) -> Result<Option<Batch>, lapin::Error> {
        let cap = self.client.batch_cap();
        let mut batch = Batch::default();
        let mut deadline = None;
        while batch.len() < cap {
            let linger = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                _ = shutdown.cancelled(), if batch.is_empty() => return Ok(None),
                _ = linger => break,
                next = consumer.next() => next,
            };
            let delivery = match next {
                Some(Ok(d)) => d,
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(lapin::ErrorKind::InvalidChannelState(
                        lapin::ChannelState::Closed,
                        "consumer ended",
                    )
                    .into());
                }
            };
            match envelope::decode_delivery(&delivery.data) {
                Ok(task) => batch.add(task.contact_id, task.version, delivery.acker),
                Err(e) => {
                    tracing::error!(error = %e, "dead-lettering an unreadable delivery task");
                    let _ = delivery
                        .acker
                        .reject(BasicRejectOptions { requeue: false })
                        .await;
                }
            }
            if deadline.is_none() && !batch.is_empty() {
                deadline = Some(tokio::time::Instant::now() + self.linger);
            }
        }
        Ok(Some(batch))
    }

    /// Delivers a batch until every contact is synced or failed for good (or shutdown).
    async fn deliver(&self, mut batch: Batch, shutdown: &CancellationToken) {
        let crm = self.client.crm();
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(self.retry_min)
            .with_max_delay(self.retry_max.max(self.retry_min))
            .with_jitter()
            .without_max_times()
            .build();
        while !batch.is_empty() {
            let attempt = self.attempt(&mut batch);
            let ending = async {
                shutdown.cancelled().await;
                tokio::time::sleep(self.grace).await;
            };
            let outcome = tokio::select! {
                r = attempt => r,
                // Abandoned mid-call: the tasks are redelivered, and writing again is harmless.
                _ = ending => return,
            };
            let wait = match outcome {
                Ok(None) => continue,
                Ok(Some(asked)) => asked,
                Err(e) => {
                    tracing::warn!(%crm, error = %e, "cannot read or record delivery state; retrying");
                    None
                }
            };
            let delay = wait.unwrap_or_else(|| backoff.next().unwrap_or(self.retry_max));
            if let Some(reason) = self.client.paused() {
                tracing::warn!(%crm, %reason, "delivery paused");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One attempt at the batch. Settles every contact that is done; returns `Ok(None)` when
    /// nothing is left, `Ok(Some(wait))` when some must be retried (after `wait` if the CRM
    /// said how long).
    async fn attempt(&self, batch: &mut Batch) -> Result<Option<Option<Duration>>, sqlx::Error> {
        let crm = self.client.crm();
        let ids: Vec<uuid::Uuid> = batch.entries.iter().map(|e| e.contact_id.0).collect();
        let rows = links::load_deliverables(&self.db, crm, &ids).await?;
        let items: Vec<SyncItem> = rows
            .iter()
            .filter(|r| needs_sync(r))
            .map(sync_item)
            .collect();
        // Contacts the CRM already holds at their current version (or unknown ids) are done.
        let pending: std::collections::HashSet<_> = items.iter().map(|i| i.contact_id).collect();
        settle(batch.take_where(|e| !pending.contains(&e.contact_id))).await;
        if items.is_empty() {
            return Ok(None);
        }
        let (attempts, wait) = match self.client.sync(&items).await {
            Ok(outcomes) => outcome_attempts(&items, outcomes),
            Err(e) => {
                tracing::warn!(%crm, contacts = items.len(), error = %e, "delivery call failed; will retry");
                let msg = self.client.paused().unwrap_or_else(|| e.to_string());
                let all = items.iter().map(|i| failed(i, true, msg.clone())).collect();
                (all, Some(e.retry_after()))
            }
        };
        links::record(&self.db, crm, &attempts).await?;
        let retry: std::collections::HashSet<_> = attempts
            .iter()
            .filter(|a| matches!(a.result, Err((true, _))))
            .map(|a| a.contact_id)
            .collect();
        settle(batch.take_where(|e| !retry.contains(&e.contact_id))).await;
        Ok(if batch.is_empty() {
            None
        } else {
            Some(wait.flatten())
        })
    }
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
    }
}

fn failed(item: &SyncItem, retryable: bool, message: String) -> Attempt {
    Attempt {
        contact_id: item.contact_id,
        version: item.version,
        result: Err((retryable, message)),
    }
}

/// Pairs items with their outcomes; also returns the longest wait any item's error asked for.
fn outcome_attempts(
    items: &[SyncItem],
    outcomes: Vec<ItemOutcome>,
) -> (Vec<Attempt>, Option<Option<Duration>>) {
    let mut wait: Option<Duration> = None;
    let mut attempts = Vec::with_capacity(items.len());
    let mut outcomes = outcomes.into_iter();
    for item in items {
        let attempt = match outcomes.next() {
            Some(ItemOutcome::Synced { remote_id }) => Attempt {
                contact_id: item.contact_id,
                version: item.version,
                result: Ok(remote_id),
            },
            Some(ItemOutcome::Failed(e)) => {
                if let Some(w) = e.retry_after() {
                    wait = Some(wait.map_or(w, |cur| cur.max(w)));
                }
                failed(item, e.is_retryable(), describe(&e))
            }
            // A client that answers fewer outcomes than items broke its contract: retry those.
            None => failed(item, true, "no outcome reported for this contact".into()),
        };
        attempts.push(attempt);
    }
    (attempts, Some(wait))
}

fn describe(e: &ProviderError) -> String {
    e.to_string()
}

/// Acknowledges every task of finished contacts.
async fn settle(done: Vec<Entry>) {
    for entry in done {
        for acker in entry.ackers {
            if let Err(e) = acker.ack(BasicAckOptions::default()).await {
                // The channel is gone; the task comes back and is skipped as already synced.
                tracing::warn!(contact = %entry.contact_id, error = %e, "could not acknowledge a delivery task");
            }
        }
    }
}
