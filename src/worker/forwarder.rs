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
//! Shutdown: cancel the consumers, let in-flight changes finish within the grace period, close.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::SelectAll;
use lapin::Consumer;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{ForwarderConfig, QueueConfig};
use crate::domain::change::DeliveryTask;
use crate::domain::{ContactChange, Crm};
use crate::queue::publisher::Publisher;
use crate::queue::{self, envelope, topology::Topology};
use crate::store::contacts::{self, Applied};

/// Why a consuming session ended other than by shutdown.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error("the broker closed the consumers")]
    ConsumerClosed,
}

/// What a forwarder needs.
#[derive(Clone)]
pub struct Forwarder {
    pub db: PgPool,
    pub queue: QueueConfig,
    pub cfg: ForwarderConfig,
    pub grace: Duration,
    pub topology: Topology,
    /// Publishes delivery tasks; its own connection, confirm mode.
    pub publisher: Publisher,
    /// Where this worker reports whether it is attached to RabbitMQ.
    pub readiness: crate::probe::Readiness,
}

/// What one change's handler needs.
struct Ctx {
    db: PgPool,
    publisher: Publisher,
    crms: Vec<Crm>,
}

impl Forwarder {
    /// Runs until `shutdown` is cancelled, reconnecting to RabbitMQ with capped backoff.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut attempt = 0u32;
        while !shutdown.is_cancelled() {
            match self.session(&shutdown).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "forwarder lost RabbitMQ; reconnecting")
                }
            }
            let delay = queue::reconnect_delay(attempt, Duration::from_secs(5));
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        tracing::info!("forwarder stopped");
    }

    /// One connection's life: consume until shutdown (`Ok`) or a broker error (`Err`).
    async fn session(&self, shutdown: &CancellationToken) -> Result<(), SessionEnd> {
        let conn = queue::connect(&self.queue, "forwarder").await?;
        let channel = conn.create_channel().await?;
        self.topology.declare(&channel).await?;
        channel
            .basic_qos(self.cfg.prefetch, BasicQosOptions { global: false })
            .await?;
        let mut consumers = SelectAll::new();
        let mut tags = Vec::new();
        for shard in 0..self.topology.shards {
            let queue = self.topology.shard_queue(shard);
            let opts = BasicConsumeOptions::default();
            let c = channel
                .basic_consume(
                    queue.as_str().into(),
                    "".into(),
                    opts,
                    FieldTable::default(),
                )
                .await?;
            tags.push(c.tag());
            consumers.push(c);
        }
        tracing::info!(shards = self.topology.shards, "forwarder consuming");
        self.readiness.set("forwarder", true);
        let (outcome, tasks) = self.consume(&mut consumers, shutdown).await;
        self.readiness.set("forwarder", false);
        if outcome.is_ok() {
            // Stop deliveries first, so the broker stops handing over messages that would only
            // be requeued (each requeue counts toward the delivery limit).
            for tag in tags {
                let _ = channel
                    .basic_cancel(tag, BasicCancelOptions::default())
                    .await;
            }
        }
        drain(tasks, self.grace).await;
        let _ = channel.close(200, "bye".into()).await;
        let _ = conn.close(200, "bye".into()).await;
        outcome
    }

    async fn consume(
        &self,
        consumers: &mut SelectAll<Consumer>,
        shutdown: &CancellationToken,
    ) -> (Result<(), SessionEnd>, JoinSet<()>) {
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
            let next = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                next = consumers.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    let (ctx, stop) = (ctx.clone(), shutdown.clone());
                    tasks.spawn(async move {
                        handle(ctx, delivery, stop).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => break Err(SessionEnd::Amqp(e)),
                None => break Err(SessionEnd::ConsumerClosed),
            }
            while tasks.try_join_next().is_some() {}
        };
        (result, tasks)
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
            let _ = delivery
                .acker
                .reject(BasicRejectOptions { requeue: false })
                .await;
            return;
        }
    };
    let (contact, seq) = (change.contact_id, change.seq);
    // Processed in its own task, so a panic is caught here and the message dead-lettered
    // rather than redelivered to crash the next worker too.
    let settled = match tokio::spawn(process(ctx, change, shutdown)).await {
        Ok(Ok(Some(applied))) => {
            tracing::debug!(%contact, seq, ?applied, "change processed");
            delivery.acker.ack(BasicAckOptions::default()).await
        }
        // Shutting down before a dependency came back: leave it to be redelivered.
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::error!(%contact, seq, error = %e, "dead-lettering a change Postgres refuses");
            delivery
                .acker
                .reject(BasicRejectOptions { requeue: false })
                .await
        }
        Err(e) => {
            tracing::error!(%contact, seq, error = %e, "dead-lettering a change whose handler failed");
            delivery
                .acker
                .reject(BasicRejectOptions { requeue: false })
                .await
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
    let Some(applied) = persistently(
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
        let task = DeliveryTask::new(change.contact_id, change.seq, crm);
        let publish = || ctx.publisher.publish_delivery(&task);
        let published =
            persistently(&shutdown, "hand a change to delivery", publish, |_| true).await;
        if matches!(published, Ok(None)) {
            return Ok(None);
        }
    }
    Ok(Some(applied))
}

/// Runs `op` until it succeeds or fails permanently, waiting with capped backoff between
/// transient failures. `Ok(None)` if `shutdown` comes first.
async fn persistently<T, E, F, Fut>(
    shutdown: &CancellationToken,
    what: &str,
    mut op: F,
    transient: impl Fn(&E) -> bool,
) -> Result<Option<T>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut attempt = 0u32;
    loop {
        match op().await {
            Ok(v) => return Ok(Some(v)),
            Err(e) if transient(&e) => {
                tracing::warn!(error = %e, attempt, "cannot {what} yet; retrying")
            }
            Err(e) => return Err(e),
        }
        let delay = queue::reconnect_delay(attempt, Duration::from_secs(10));
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
