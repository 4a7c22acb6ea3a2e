//! The forwarder: consumes contact changes from every shard queue, persists them, and hands
//! each persisted change to every enabled CRM's delivery queue.
//!
//! A delivery is acknowledged only after its change is committed in Postgres **and** its
//! delivery tasks are confirmed by the broker, so a crash at any point means redelivery, and
//! redelivery is harmless: the database keeps the newest `(version, updated_at)` and ignores
//! anything older or equal, and a redelivered change that is still the newest publishes its
//! delivery tasks again (the delivery worker skips what a CRM already holds).
//!
//! Dispositions, decided in [`handle`]:
//! - applied (or already applied) and handed on → ack; stale → ack;
//! - not a change this build can read (malformed, unknown version), a change Postgres refuses,
//!   or a handler that panicked → reject without requeue: RabbitMQ dead-letters it
//!   (at-least-once) with the reason;
//! - Postgres or the broker unavailable → keep the message and retry with capped backoff until
//!   it works or the process shuts down (then the broker requeues it), so an outage never burns
//!   the delivery limit.
//!
//! Runs under the consumer supervisor (`consumer`). Shutdown: cancel the consumers, let
//! in-flight changes finish within the grace period, close.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::consumer::{Consume, Delivery, Session, SessionEnd, wait_out};
use super::settle;
use crate::config::ForwarderConfig;
use crate::domain::change::DeliveryTask;
use crate::domain::{ContactChange, Crm};
use crate::queue::publisher::Publisher;
use crate::queue::{envelope, topology::Topology};
use crate::store::contacts::{self, Applied};

/// What a forwarder needs.
#[derive(Clone)]
pub struct Forwarder {
    pub db: PgPool,
    pub cfg: ForwarderConfig,
    pub grace: Duration,
    pub topology: Topology,
    /// Publishes delivery tasks; its own connection, confirm mode.
    pub publisher: Publisher,
}

/// What one change's handler needs.
struct Ctx {
    db: PgPool,
    publisher: Publisher,
    crms: Vec<Crm>,
}

impl Consume for Forwarder {
    fn name(&self) -> String {
        "forwarder".to_owned()
    }

    fn role(&self) -> &'static str {
        "forwarder"
    }

    fn queues(&self) -> Vec<String> {
        (0..self.topology.shards)
            .map(|shard| self.topology.shard_queue(shard))
            .collect()
    }

    fn prefetch(&self) -> u16 {
        self.cfg.prefetch
    }

    /// Handles up to `concurrency` changes at once; on shutdown stops the consumers first,
    /// then lets the changes in flight finish within the grace period.
    async fn consume(
        &self,
        session: &mut Session,
        shutdown: &CancellationToken,
    ) -> Result<(), SessionEnd> {
        let ctx = Arc::new(Ctx {
            db: self.db.clone(),
            publisher: self.publisher.clone(),
            crms: self.topology.crms.clone(),
        });
        let permits = Arc::new(Semaphore::new(self.cfg.concurrency));
        let mut tasks = JoinSet::new();
        let result = loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                p = permits.clone().acquire_owned() => p,
            };
            let Ok(permit) = permit else { break Ok(()) };
            let delivery = match session.next(shutdown).await {
                Ok(Some(d)) => d,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            let (ctx, stop) = (ctx.clone(), shutdown.clone());
            let span = tracing::info_span!(
                "forward",
                otel.kind = "consumer",
                contact = tracing::field::Empty,
                seq = tracing::field::Empty,
            );
            crate::telemetry::context::follow_message(&span, &delivery.properties);
            tasks.spawn(
                async move {
                    handle(ctx, delivery, stop).await;
                    drop(permit);
                }
                .instrument(span),
            );
            while tasks.try_join_next().is_some() {}
        };
        if result.is_ok() {
            // Each requeue counts toward the delivery limit, so stop deliveries first.
            session.cancel().await;
        }
        drain(tasks, self.grace).await;
        result
    }
}

/// Waits for in-flight changes, up to the grace period.
async fn drain(mut tasks: JoinSet<()>, grace: Duration) {
    while tasks.try_join_next().is_some() {}
    if !tasks.is_empty() {
        tracing::info!(
            in_flight = tasks.len(),
            "forwarder finishing in-flight changes"
        );
    }
    let all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all).await.is_err() {
        tracing::warn!(
            ?grace,
            "in-flight changes did not finish in time; they will be redelivered"
        );
    }
}

/// Processes one delivery and settles it with the broker.
async fn handle(ctx: Arc<Ctx>, delivery: Delivery, shutdown: CancellationToken) {
    let change = match envelope::decode(&delivery.data) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "dead-lettering an unreadable message");
            if let Err(e) = settle::dead_letter(&delivery.acker).await {
                tracing::warn!(error = %e, "could not settle a delivery");
            }
            return;
        }
    };
    let (contact, seq) = (change.contact_id, change.seq);
    let span = tracing::Span::current();
    span.record("contact", tracing::field::display(contact));
    span.record("seq", seq);
    // Processed in its own task, so a panic is caught here and the message dead-lettered
    // rather than redelivered to crash the next worker too.
    let settled = match tokio::spawn(process(ctx, change, shutdown).in_current_span()).await {
        Ok(Ok(Some(applied))) => {
            tracing::debug!(%contact, seq, ?applied, "change processed");
            settle::ack(&delivery.acker).await
        }
        // Shutting down before a dependency came back: leave it to be redelivered.
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::error!(%contact, seq, error = %e, "dead-lettering a change Postgres refuses");
            settle::dead_letter(&delivery.acker).await
        }
        Err(e) => {
            tracing::error!(%contact, seq, error = %e, "dead-lettering a change whose handler failed");
            settle::dead_letter(&delivery.acker).await
        }
    };
    if let Err(e) = settled {
        // The channel is gone; the broker will redeliver, which is harmless.
        tracing::warn!(%contact, seq, error = %e, "could not settle a delivery");
    }
}

/// Persists a change and, unless it is stale, publishes its delivery tasks. `Ok(None)` if
/// shut down while waiting for a dependency; `Err` for an error retrying cannot fix.
async fn process(
    ctx: Arc<Ctx>,
    change: ContactChange,
    shutdown: CancellationToken,
) -> Result<Option<Applied>, sqlx::Error> {
    let apply = || contacts::apply(&ctx.db, &change);
    let Some(applied) = wait_out(
        &shutdown,
        "persist a change",
        apply,
        crate::store::is_transient,
    )
    .await?
    else {
        return Ok(None);
    };
    if matches!(applied, Applied::Stale | Applied::NotAccepted) {
        if applied == Applied::NotAccepted {
            tracing::warn!(contact = %change.contact_id, seq = change.seq, "skipping a change whose acceptance rolled back");
        }
        return Ok(Some(applied));
    }
    for &crm in &ctx.crms {
        let task = DeliveryTask::new(change.contact_id, change.seq, crm).in_bulk(change.bulk);
        let publish = || ctx.publisher.publish_delivery(&task);
        let published = wait_out(&shutdown, "hand a change to delivery", publish, |_| true).await;
        if matches!(published, Ok(None)) {
            return Ok(None);
        }
    }
    Ok(Some(applied))
}
