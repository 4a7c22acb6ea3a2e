//! The forwarder: consumes contact changes from every shard queue, persists them, and hands
//! each persisted change to every enabled CRM's delivery queue.
//!
//! A delivery is acknowledged only after its change is committed in Postgres **and** its
//! delivery tasks are confirmed by the broker, so a crash at any point means redelivery, and
//! redelivery is harmless: the database keeps the newest `(version, updated_at)` and ignores
//! anything older or equal, and a redelivered change that is still the newest publishes its
//! delivery tasks again (the delivery worker skips what a CRM already holds).
//!
//! A message carries one change, or a pack of the changes one acceptance batch made for the
//! shard (`ChangePack`); a pack is acknowledged once every change in it is settled, so a crash
//! part-way redelivers it whole, which is as harmless.
//!
//! Dispositions, decided in [`handle_one`] (and for changes applied together in
//! [`apply_group`]):
//! - applied (or already applied) and handed on → ack; stale → ack;
//! - not a message this build can read (malformed, unknown version), a change Postgres
//!   refuses, or a handler that panicked → reject without requeue: RabbitMQ dead-letters it
//!   (at-least-once) with the reason. A change of a pack that Postgres refuses or whose
//!   handler panics is first sent on alone to its shard queue (the rest of the pack goes on),
//!   so that if it fails again it alone is dead-lettered; should a newer change of its
//!   contact come first, it is stale by then and skipped;
//! - Postgres or the broker unavailable → keep the message and retry with capped backoff until
//!   it works or the process shuts down (then the broker requeues it), so an outage never burns
//!   the delivery limit.
//!
//! Runs under the consumer supervisor (`consumer`). Shutdown: cancel the consumers, let
//! in-flight changes finish within the grace period, close.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::consumer::{Consume, Delivery, Session, SessionEnd, wait_out};
use super::settle;
use crate::config::ForwarderConfig;
use crate::domain::change::DeliveryTask;
use crate::domain::{ContactChange, Crm};
use crate::metrics::Settled;
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

impl Ctx {
    /// The delivery tasks of an applied change, one per CRM, each traced under `span`.
    fn tasks<'a>(
        &self,
        change: &ContactChange,
        span: &'a tracing::Span,
    ) -> impl Iterator<Item = (DeliveryTask, &'a tracing::Span)> {
        let (id, seq, bulk) = (change.contact_id, change.seq, change.bulk);
        self.crms
            .clone()
            .into_iter()
            .map(move |crm| (DeliveryTask::new(id, seq, crm).in_bulk(bulk), span))
    }

    /// Publishes delivery tasks, waiting out a broker that is away; false when shutting down
    /// first.
    async fn hand_on(
        &self,
        tasks: &[(DeliveryTask, &tracing::Span)],
        shutdown: &CancellationToken,
    ) -> bool {
        if tasks.is_empty() {
            return true;
        }
        let publish = || self.publisher.publish_deliveries(tasks);
        let published = wait_out(shutdown, "hand changes to delivery", publish, |_| true).await;
        !matches!(published, Ok(None))
    }
}

/// Says why a change is skipped when its acceptance rolled back.
fn note_not_accepted(change: &ContactChange, applied: Option<Applied>) {
    if applied == Some(Applied::NotAccepted) {
        tracing::warn!(contact = %change.contact_id, seq = change.seq, "skipping a change whose acceptance rolled back");
    }
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

    /// Handles up to `concurrency` changes at once, those at hand together ([`handle_group`]);
    /// on shutdown stops the consumers first, then lets the changes in flight finish within the
    /// grace period.
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
        // When the last group was gathered.
        let mut last: Option<tokio::time::Instant> = None;
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
            // Whatever else the broker has handed over joins it, each with a permit of its own.
            let mut group = vec![(delivery, permit)];
            // A change that came within a linger of the last group's is part of a stream: its
            // group waits that long for more. One after a quiet spell goes at once.
            let now = tokio::time::Instant::now();
            let linger = self.cfg.linger;
            let streaming = last.is_some_and(|last| now < last + linger);
            let until = streaming.then_some(now + linger);
            let ended = gather(session, &permits, &mut group, until, shutdown).await;
            last = Some(tokio::time::Instant::now());
            let (ctx, stop) = (ctx.clone(), shutdown.clone());
            tasks.spawn(async move {
                let (deliveries, permits): (Vec<_>, Vec<_>) = group.into_iter().unzip();
                handle_group(ctx, deliveries, stop).await;
                drop(permits);
            });
            while tasks.try_join_next().is_some() {}
            if let Some(e) = ended {
                break Err(e);
            }
        };
        if result.is_ok() {
            // Each requeue counts toward the delivery limit, so stop deliveries first.
            session.cancel().await;
        }
        drain(tasks, self.grace).await;
        result
    }
}

/// A delivery taken, with its share of the forwarder's concurrency.
type Taken = (Delivery, OwnedSemaphorePermit);

/// Adds to `group` whatever else the broker has handed over, each with a permit of its own,
/// up to [`GROUP_MAX`]; with `until`, also what arrives before then. The session's end, if it
/// came meanwhile.
async fn gather(
    session: &mut Session,
    permits: &Arc<Semaphore>,
    group: &mut Vec<Taken>,
    until: Option<tokio::time::Instant>,
    shutdown: &CancellationToken,
) -> Option<SessionEnd> {
    while group.len() < GROUP_MAX {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            return None;
        };
        let next = match (session.try_recv(), until) {
            (Some(next), _) => next,
            (None, None) => return None,
            (None, Some(until)) => {
                match tokio::time::timeout_at(until, session.next(shutdown)).await {
                    Ok(Ok(Some(d))) => Ok(d),
                    Ok(Ok(None)) | Err(_) => return None,
                    Ok(Err(e)) => Err(e),
                }
            }
        };
        match next {
            Ok(d) => group.push((d, permit)),
            Err(e) => return Some(e),
        }
    }
    None
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

/// Most changes applied together (one transaction, one batch of publishes).
const GROUP_MAX: usize = 64;

/// One change received, in the span that follows its message (or, packed, its request).
struct Received {
    change: ContactChange,
    /// Its message, acknowledged once every change it carries is settled.
    from: Arc<settle::Parts>,
    /// Its message carries several changes ([`envelope::PACK_TYPE`]).
    packed: bool,
    span: tracing::Span,
}

/// Processes deliveries the broker handed over together, and settles each: changes of
/// distinct contacts are applied in one transaction ([`contacts::apply_many`]) and their
/// delivery tasks published together, then each is acknowledged. A change that cannot join
/// (another of its contact's changes is in the group, an acceptance of its contact is in
/// progress) or a group Postgres refuses goes one change at a time ([`handle_one`]), whose
/// answers are what each would have had alone.
async fn handle_group(ctx: Arc<Ctx>, deliveries: Vec<Delivery>, shutdown: CancellationToken) {
    let mut joined: Vec<Received> = Vec::with_capacity(deliveries.len());
    let mut alone: Vec<Received> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for delivery in deliveries {
        let kind = delivery.properties.kind().as_ref().map(|k| k.to_string());
        let pack = match envelope::decode_changes(kind.as_deref(), &delivery.data) {
            Ok(pack) => pack,
            Err(e) => {
                let span = tracing::info_span!("forward", otel.kind = "consumer");
                crate::telemetry::context::follow_message(&span, &delivery.properties);
                tracing::error!(parent: &span, error = %e, "dead-lettering an unreadable message");
                if let Err(e) = settle::dead_letter(&delivery.acker).await {
                    tracing::warn!(parent: &span, error = %e, "could not settle a delivery");
                }
                continue;
            }
        };
        let packed = kind.as_deref() == Some(envelope::PACK_TYPE);
        if pack.changes.is_empty() {
            if let Err(e) = settle::ack(&delivery.acker).await {
                tracing::warn!(error = %e, "could not settle a delivery");
            }
            continue;
        }
        let from = settle::Parts::new(delivery.acker, pack.changes.len());
        for item in pack.changes {
            let change = item.change;
            let span = tracing::info_span!(
                "forward",
                otel.kind = "consumer",
                contact = %change.contact_id,
                seq = change.seq,
            );
            crate::telemetry::context::follow_item(
                &span,
                packed,
                &item.trace,
                &delivery.properties,
            );
            let received = Received {
                change,
                from: from.clone(),
                packed,
                span,
            };
            match seen.insert(received.change.contact_id) {
                true => joined.push(received),
                false => alone.push(received),
            }
        }
    }
    // Changes whose contact's acceptance was still in progress wait for it to end, then try
    // together once more.
    for round in 0..2 {
        if joined.len() <= 1 {
            break;
        }
        let Some(left) = apply_group(&ctx, &joined, &shutdown).await else {
            // Shutting down before a dependency came back: left to be redelivered.
            return;
        };
        joined = joined
            .into_iter()
            .zip(left)
            .filter_map(|(received, left)| left.then_some(received))
            .collect();
        if round == 0 && !joined.is_empty() {
            let ids: Vec<_> = joined.iter().map(|r| r.change.contact_id).collect();
            if let Err(e) = contacts::wait_for_acceptances(&ctx.db, &ids).await {
                tracing::debug!(error = %e, "could not wait for acceptances in progress");
            }
        }
    }
    alone.splice(0..0, joined);
    for received in alone {
        let span = received.span.clone();
        handle_one(ctx.clone(), received, shutdown.clone())
            .instrument(span)
            .await;
    }
}

/// Applies changes of distinct contacts together, publishes their delivery tasks and
/// acknowledges them. Which of them are left to be handled alone (in order), or `None` when
/// shutting down before a dependency came back.
async fn apply_group(
    ctx: &Arc<Ctx>,
    group: &[Received],
    shutdown: &CancellationToken,
) -> Option<Vec<bool>> {
    let span =
        tracing::info_span!(parent: group[0].span.id(), "forward group", changes = group.len());
    for received in &group[1..] {
        crate::telemetry::context::link(&span, &received.span);
    }
    let all_alone = Some(vec![true; group.len()]);
    let apply = || {
        let db = ctx.db.clone();
        let changes: Vec<ContactChange> = group.iter().map(|r| r.change.clone()).collect();
        // In its own task (below), so a panic is caught and the changes go one at a time,
        // where the one that causes it is dead-lettered.
        async move {
            let refs: Vec<&ContactChange> = changes.iter().collect();
            contacts::apply_many(&db, &refs).await
        }
    };
    let applied = wait_out(
        shutdown,
        "persist changes",
        || async {
            match tokio::spawn(apply().in_current_span()).await {
                Ok(r) => r.map(Some),
                Err(_) => Ok(None),
            }
        },
        crate::store::is_transient,
    )
    .instrument(span.clone())
    .await;
    let applied = match applied {
        Ok(Some(Some(applied))) => applied,
        Ok(Some(None)) | Err(_) => return all_alone,
        Ok(None) => return None,
    };
    let mut tasks = Vec::new();
    for (received, applied) in group.iter().zip(&applied) {
        if matches!(applied, Some(Applied::New | Applied::Already)) {
            tasks.extend(ctx.tasks(&received.change, &received.span));
        }
        received
            .span
            .in_scope(|| note_not_accepted(&received.change, *applied));
    }
    if !ctx.hand_on(&tasks, shutdown).instrument(span.clone()).await {
        return None;
    }
    let mut done = Vec::with_capacity(group.len());
    for (received, applied) in group.iter().zip(&applied) {
        if let Some(applied) = applied {
            let change = &received.change;
            tracing::debug!(parent: &received.span, contact = %change.contact_id, seq = change.seq, ?applied, "change processed");
            done.extend(received.from.settled(Settled::Acked));
        }
    }
    if let Err(e) = settle::ack_all(done).await {
        // The channel is gone; the broker will redeliver, which is harmless.
        tracing::warn!(parent: &span, error = %e, "could not settle deliveries");
    }
    Some(applied.iter().map(Option::is_none).collect())
}

/// Processes one change and settles its delivery with the broker.
async fn handle_one(ctx: Arc<Ctx>, received: Received, shutdown: CancellationToken) {
    let Received {
        change,
        from,
        packed,
        ..
    } = received;
    let (contact, seq) = (change.contact_id, change.seq);
    // A packed change that fails is sent on alone, so that only it is dead-lettered.
    let alone = packed.then(|| change.clone());
    // Processed in its own task, so a panic is caught here and the message dead-lettered
    // rather than redelivered to crash the next worker too.
    let failed = match tokio::spawn(
        process(ctx.clone(), change, shutdown.clone()).in_current_span(),
    )
    .await
    {
        Ok(Ok(Some(applied))) => {
            tracing::debug!(%contact, seq, ?applied, "change processed");
            None
        }
        // Shutting down before a dependency came back: leave it to be redelivered.
        Ok(Ok(None)) => return,
        Ok(Err(e)) => Some(format!("Postgres refuses it: {e}")),
        Err(e) => Some(format!("its handler failed: {e}")),
    };
    let settled = match (failed, alone) {
        (None, _) => settle_part(&from).await,
        (Some(why), None) => {
            tracing::error!(%contact, seq, "dead-lettering a change: {why}");
            settle::dead_letter(from.acker()).await
        }
        (Some(why), Some(change)) => {
            tracing::error!(%contact, seq, "sending a change of a pack on alone, to be dead-lettered by itself if it fails again: {why}");
            let publish = || ctx.publisher.publish_change(&change);
            match wait_out(&shutdown, "send a change on alone", publish, |_| true).await {
                Ok(Some(())) => settle_part(&from).await,
                // Shutting down first: the pack is redelivered.
                _ => return,
            }
        }
    };
    if let Err(e) = settled {
        // The channel is gone; the broker will redeliver, which is harmless.
        tracing::warn!(%contact, seq, error = %e, "could not settle a delivery");
    }
}

/// Counts one change of a message settled, and acknowledges the message with its last.
async fn settle_part(from: &settle::Parts) -> Result<(), settle::SettleError> {
    settle::ack_all(from.settled(Settled::Acked)).await
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
        note_not_accepted(&change, Some(applied));
        return Ok(Some(applied));
    }
    let span = tracing::Span::current();
    let tasks: Vec<_> = ctx.tasks(&change, &span).collect();
    Ok(ctx.hand_on(&tasks, &shutdown).await.then_some(applied))
}
