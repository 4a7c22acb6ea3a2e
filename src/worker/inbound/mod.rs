//! The webhook worker: consumes one CRM's webhook batches and applies what changed there.
//!
//! ```text
//! batch ──▶ drop events SyncRoot made (the CRM says so) and events handled before
//!       ──▶ read the changed records' current state from the CRM (batched)
//!       ──▶ apply each record (`apply`: echo check, conflict policy, new version)
//!       ──▶ remember the events ──▶ ack
//! ```
//!
//! Reading current state rather than the values an event carries makes late, duplicated and
//! reordered events harmless: every event about a record leads to the same read. A batch is
//! applied whole or not at all as far as the broker is concerned: Postgres, broker or CRM
//! trouble holds the batch and tries again (every step is idempotent); a batch this build
//! cannot read, or that Postgres refuses, is dead-lettered.
//!
//! Deletions made in a CRM follow the configured policy: `mark` (the default) keeps the contact
//! and detaches the deleted record (SyncRoot stops writing it there until it is restored),
//! `propagate` deletes the contact, and so its records in the other CRMs, and `ignore` keeps
//! the contact (the next change SyncRoot delivers recreates the record). A privacy deletion
//! erases the contact (`apply::erase`) unless configured to count as a deletion. A merge
//! merges the records' contacts (`apply::merge`) and then reads the surviving record.

pub(crate) mod apply;
pub mod poll;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::consumer::{Consume, Delivery, Session, SessionEnd, wait_out};
use super::settle;
use crate::domain::ContactFields;
use crate::domain::inbound::{DeletePolicy, EventKind, InboundBatch, PrivacyPolicy};
use crate::domain::merge::Policy;
use crate::providers::{CrmClient, ProviderError};
use crate::queue::publisher::Publisher;
use crate::queue::{envelope, topology::Topology};
use crate::store::inbound;
pub use apply::{Applied, ApplyError};

/// One CRM's webhook worker.
pub struct InboundWorker<C: CrmClient> {
    pub db: PgPool,
    pub topology: Topology,
    pub client: Arc<C>,
    /// Publishes new versions and corrections (its own connection, confirm mode).
    pub publisher: Publisher,
    pub policy: Policy,
    /// What a record deleted in the CRM does to its contact.
    pub deletes: DeletePolicy,
    /// What a privacy deletion in the CRM does.
    pub privacy: PrivacyPolicy,
}

/// Batches a worker holds unacknowledged.
const PREFETCH: u16 = 8;

impl<C: CrmClient> Consume for InboundWorker<C> {
    fn name(&self) -> String {
        format!("webhooks-{}", self.client.crm())
    }

    fn role(&self) -> &'static str {
        "webhooks"
    }

    fn queues(&self) -> Vec<String> {
        vec![self.topology.inbound_queue(self.client.crm())]
    }

    fn prefetch(&self) -> u16 {
        PREFETCH
    }

    async fn consume(
        &self,
        session: &mut Session,
        shutdown: &CancellationToken,
    ) -> Result<(), SessionEnd> {
        while let Some(delivery) = session.next(shutdown).await? {
            let crm = self.client.crm();
            let span = tracing::info_span!("apply webhooks", otel.kind = "consumer", crm = %crm);
            crate::telemetry::context::follow_message(&span, &delivery.properties);
            self.handle(delivery, shutdown).instrument(span).await?;
        }
        Ok(())
    }
}

/// Why a batch (or a poll) could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("reading the records from the CRM: {0}")]
    Crm(#[from] ProviderError),
}

impl BatchError {
    fn is_transient(&self) -> bool {
        match self {
            Self::Apply(e) => e.is_transient(),
            Self::Crm(e) => e.is_retryable(),
        }
    }
}

impl From<sqlx::Error> for BatchError {
    fn from(e: sqlx::Error) -> Self {
        Self::Apply(ApplyError::Db(e))
    }
}

/// What a batch came to, for the log.
#[derive(Debug, Default)]
struct Tally {
    ours: usize,
    repeated: usize,
    read: usize,
    missing: usize,
    unhandled: usize,
    outcomes: Vec<Applied>,
}

impl Tally {
    /// Counts the batch's duplicate and echo events (accepted ones were counted by the API).
    fn count(&self, crm: crate::domain::Crm) {
        use crate::metrics::{WebhookOutcome, webhook_events};
        let echoes = self
            .outcomes
            .iter()
            .filter(|o| matches!(o, Applied::Echo))
            .count();
        webhook_events(crm.as_str(), WebhookOutcome::Duplicate, self.repeated);
        webhook_events(crm.as_str(), WebhookOutcome::Echo, self.ours + echoes);
    }
}

impl<C: CrmClient> InboundWorker<C> {
    async fn handle(
        &self,
        delivery: Delivery,
        shutdown: &CancellationToken,
    ) -> Result<(), SessionEnd> {
        let batch = match envelope::decode_inbound(&delivery.data) {
            Ok(b) if b.crm == self.client.crm() => b,
            Ok(b) => {
                tracing::error!(crm = %b.crm, "dead-lettering a webhook batch of another CRM");
                return Ok(settle::dead_letter(&delivery.acker).await?);
            }
            Err(e) => {
                tracing::error!(error = %e, "dead-lettering an unreadable webhook batch");
                return Ok(settle::dead_letter(&delivery.acker).await?);
            }
        };
        let crm = self.client.crm();
        let run = || self.process(&batch);
        match wait_out(
            shutdown,
            "apply a webhook batch",
            run,
            BatchError::is_transient,
        )
        .await
        {
            Ok(Some(tally)) => {
                tracing::info!(%crm, events = batch.events.len(), ours = tally.ours, repeated = tally.repeated,
                    read = tally.read, missing = tally.missing, unhandled = tally.unhandled,
                    outcomes = ?tally.outcomes, "webhook batch applied");
                tally.count(crm);
                Ok(settle::ack(&delivery.acker).await?)
            }
            // Shutting down: the broker redelivers it.
            Ok(None) => Ok(()),
            Err(e) => {
                tracing::error!(%crm, error = %e, "dead-lettering a webhook batch that cannot be applied");
                Ok(settle::dead_letter(&delivery.acker).await?)
            }
        }
    }

    /// Applies a batch; safe to run again after any failure.
    async fn process(&self, batch: &InboundBatch) -> Result<Tally, BatchError> {
        let crm = self.client.crm();
        let keys: Vec<String> = batch.events.iter().map(|e| e.key.clone()).collect();
        let seen = inbound::seen(&self.db, crm, &keys).await?;
        let mut tally = Tally::default();
        // Per changed record, the latest time an event reports for it.
        let mut changed: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        let mut deleted: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        let mut erased: BTreeSet<String> = BTreeSet::new();
        let mut merges: Vec<(String, Vec<String>)> = Vec::new();
        let note = |map: &mut BTreeMap<String, DateTime<Utc>>, id: &str, at: DateTime<Utc>| {
            let t = map.entry(id.to_owned()).or_insert(at);
            *t = (*t).max(at);
        };
        // A CRM may send an event twice in one batch as well as again later.
        let mut in_batch: BTreeSet<&str> = BTreeSet::new();
        for e in &batch.events {
            if e.ours {
                tally.ours += 1;
                continue;
            }
            if seen.contains(&e.key) || !in_batch.insert(e.key.as_str()) {
                tally.repeated += 1;
                continue;
            }
            match (&e.kind, self.privacy) {
                (EventKind::Changed, _) => note(&mut changed, &e.remote_id, e.occurred_at),
                (EventKind::PrivacyDeletion, PrivacyPolicy::Erase) => {
                    erased.insert(e.remote_id.clone());
                }
                (EventKind::Deleted | EventKind::PrivacyDeletion, _)
                    if self.deletes != DeletePolicy::Ignore =>
                {
                    note(&mut deleted, &e.remote_id, e.occurred_at)
                }
                (EventKind::Deleted | EventKind::PrivacyDeletion, _) => {
                    tracing::info!(%crm, record = %e.remote_id, "a deletion made in the CRM is ignored (policy)");
                    tally.unhandled += 1;
                }
                (EventKind::Merged { merged_ids }, _) => {
                    merges.push((e.remote_id.clone(), merged_ids.clone()));
                    // The surviving record holds the merged values: read it.
                    note(&mut changed, &e.remote_id, e.occurred_at);
                }
            }
        }
        // A record deleted and restored (or changed and deleted) within one batch: the latest
        // event decides. An erasure is final.
        deleted.retain(|id, at| changed.get(id).is_none_or(|c| c <= at) && !erased.contains(id));
        changed.retain(|id, at| deleted.get(id).is_none_or(|d| d < at) && !erased.contains(id));
        let project = |c: &ContactFields| self.client.project(c);
        let ctx = apply::Ctx {
            db: &self.db,
            publisher: &self.publisher,
            crm,
            policy: &self.policy,
            project: &project,
            via: "webhook",
            bulk: false,
        };
        for (survivor, losers) in &merges {
            tally
                .outcomes
                .extend(apply::merge(&ctx, survivor, losers).await?);
        }
        let ids: Vec<String> = changed.keys().cloned().collect();
        if !ids.is_empty() {
            let mut records = self.client.fetch(&ids).await?;
            // Salesforce reports modification times to the second; an event's own time is
            // precise to the millisecond. The record changed no earlier than either.
            for r in &mut records {
                if let Some(at) = changed.get(&r.remote_id) {
                    r.modified_at = r.modified_at.max(*at);
                }
            }
            tally.read = records.len();
            tally.missing = ids.len().saturating_sub(records.len());
            for record in &records {
                let outcome = apply::apply(&ctx, record).await?;
                if let Applied::Skipped(why) = &outcome {
                    tracing::warn!(%crm, record = %record.remote_id, why, "webhook record not applied");
                }
                tally.outcomes.push(outcome);
            }
        }
        for (remote_id, at) in &deleted {
            let outcome = match self.deletes {
                DeletePolicy::Propagate => apply::delete(&ctx, remote_id).await?,
                _ => apply::detach_deleted(&ctx, remote_id, *at).await?,
            };
            tally.outcomes.push(outcome);
        }
        for remote_id in &erased {
            tally.outcomes.push(apply::erase(&ctx, remote_id).await?);
        }
        inbound::remember(&self.db, crm, &keys).await?;
        Ok(tally)
    }
}

/// How long handled webhook events are remembered: past HubSpot's 24-hour redelivery window.
pub const REMEMBER_EVENTS: Duration = Duration::from_secs(3 * 24 * 3600);
