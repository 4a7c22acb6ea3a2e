//! The forwarder: consumes contact changes from every shard queue and persists them.
//!
//! Each delivery is acknowledged only after its change is committed in Postgres, so a crash at
//! any point means redelivery, and redelivery is harmless: the database keeps the newest
//! `(version, updated_at)` and ignores anything older or equal.
//!
//! Dispositions, decided in [`handle`]:
//! - applied, or already applied → ack;
//! - not a change this build can read (malformed, unknown version) or the handler panicked →
//!   reject without requeue: RabbitMQ dead-letters it (at-least-once) with the reason;
//! - Postgres unavailable → keep the message and retry with capped backoff until it works or
//!   the process shuts down (then it is requeued by the broker), so an outage never burns the
//!   delivery limit.
//!
//! Shutdown: cancel the consumers, let in-flight changes finish within the grace period, close.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::SelectAll;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{ForwarderConfig, QueueConfig};
use crate::queue::{self, envelope, topology::Topology};
use crate::store::contacts;

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
    /// True while consuming; for readiness reporting.
    pub consuming: Arc<AtomicBool>,
}

impl Forwarder {
    pub fn new(db: PgPool, queue: QueueConfig, cfg: ForwarderConfig, grace: Duration) -> Self {
        Self {
            db,
            queue,
            cfg,
            grace,
            consuming: Arc::new(AtomicBool::new(false)),
        }
    }

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
            self.consuming.store(false, Ordering::Relaxed);
            let delay = queue::reconnect_delay(attempt, Duration::from_secs(5));
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        self.consuming.store(false, Ordering::Relaxed);
        tracing::info!("forwarder stopped");
    }

    /// One connection's life: consume until shutdown (`Ok`) or a broker error (`Err`).
    async fn session(&self, shutdown: &CancellationToken) -> Result<(), SessionEnd> {
        let conn = queue::connect(&self.queue, "forwarder").await?;
        let channel = conn.create_channel().await?;
        let topology = Topology::new(&self.queue);
        topology.declare(&channel).await?;
        channel
            .basic_qos(self.cfg.prefetch, BasicQosOptions { global: false })
            .await?;
        let mut consumers = SelectAll::new();
        let mut tags = Vec::new();
        for shard in 0..topology.shards {
            let c = channel
                .basic_consume(
                    topology.shard_queue(shard).as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            tags.push(c.tag());
            consumers.push(c);
        }
        self.consuming.store(true, Ordering::Relaxed);
        tracing::info!(shards = topology.shards, "forwarder consuming");
        let outcome = self.consume(&mut consumers, shutdown).await;
        self.stop(&channel, &conn, tags, outcome.is_ok()).await;
        outcome
    }

    async fn consume(
        &self,
        consumers: &mut SelectAll<Consumer>,
        shutdown: &CancellationToken,
    ) -> Result<(), SessionEnd> {
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
                    let db = self.db.clone();
                    let stop = shutdown.clone();
                    tasks.spawn(async move {
                        handle(db, delivery, stop).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => break Err(SessionEnd::Amqp(e)),
                None => break Err(SessionEnd::ConsumerClosed),
            }
            while tasks.try_join_next().is_some() {}
        };
        self.drain(tasks).await;
        result
    }

    /// Waits for in-flight changes, up to the grace period.
    async fn drain(&self, mut tasks: JoinSet<()>) {
        while tasks.try_join_next().is_some() {}
        let n = tasks.len();
        if n > 0 {
            tracing::info!(in_flight = n, "forwarder finishing in-flight changes");
        }
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(self.grace, all).await.is_err() {
            tracing::warn!(grace = ?self.grace, "in-flight changes did not finish in time; they will be redelivered");
        }
    }

    async fn stop(
        &self,
        channel: &Channel,
        conn: &Connection,
        tags: Vec<lapin::types::ShortString>,
        graceful: bool,
    ) {
        if graceful {
            for tag in tags {
                let _ = channel
                    .basic_cancel(tag, BasicCancelOptions::default())
                    .await;
            }
        }
        let _ = channel.close(200, "bye".into()).await;
        let _ = conn.close(200, "bye".into()).await;
    }
}

/// Applies one delivery and settles it with the broker.
async fn handle(db: PgPool, delivery: Delivery, shutdown: CancellationToken) {
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
    let contact = change.contact_id;
    let seq = change.seq;
    // Applied in its own task, so a panic is caught here and the message dead-lettered rather
    // than redelivered to crash the next worker too.
    let applied = tokio::spawn(apply_with_retry(db, change, shutdown)).await;
    let settled = match applied {
        Ok(Ok(Some(changed))) => {
            tracing::debug!(%contact, seq, changed, "change applied");
            delivery.acker.ack(BasicAckOptions::default()).await
        }
        // Shutting down before Postgres came back: leave it to be redelivered.
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

/// Applies a change, retrying while Postgres is unreachable. `Ok(None)` if shut down first;
/// `Err` for an error retrying cannot fix.
async fn apply_with_retry(
    db: PgPool,
    change: crate::domain::ContactChange,
    shutdown: CancellationToken,
) -> Result<Option<bool>, sqlx::Error> {
    let mut attempt = 0u32;
    loop {
        match contacts::apply(&db, &change).await {
            Ok(changed) => return Ok(Some(changed)),
            Err(e) if is_transient(&e) => {
                tracing::warn!(contact = %change.contact_id, error = %e, attempt, "cannot reach Postgres; retrying")
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

/// Errors that go away when Postgres comes back (connection trouble, restarts, failover).
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_) => true,
        // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 08xxx connection exceptions.
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || c.starts_with("57P") || c == "40001" || c == "40P01"
        }),
        _ => false,
    }
}
