//! The dead-letter worker: consumes `{prefix}.dead-letter` and turns every message into an
//! entry people can see (`dead_letters`), then, on a slower schedule than the retry tiers,
//! sends retryable deliveries through again until they succeed or run out of rounds.
//!
//! ```text
//! delivery, retries_exhausted ──▶ entry "retrying", next round after backon's next wait ──┐
//!                                  (rounds left)                                          │ due
//!                                  else ──▶ "parked" + alert                              ▼
//! delivery, permanent ─────────────────────▶ "parked" + alert          fresh task in the CRM's queue
//! anything RabbitMQ dead-lettered (unreadable, unknown version,        ("replayed"; a success
//!   a change or task a worker kept failing on) ──▶ "parked", raw + alert  deletes the entry)
//! ```
//!
//! A message is acknowledged only once its entry is committed, so a crash means redelivery,
//! and redelivery is harmless: a delivery entry is one row per contact per CRM, a raw message
//! is keyed by its own id. Nothing here can fail on a message's content; Postgres trouble is
//! waited out holding the message.

use std::time::Duration;

use chrono::Utc;
use lapin::types::FieldTable;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

mod death;

use super::consumer::{Broker, Consume, Delivery, Session, SessionEnd, supervise, wait_out};
use super::disposition::DeadReason;
use crate::alerts::{Alerts, Event};
use crate::config::DeadLetterConfig;
use crate::domain::change::{AttemptError, DeliveryTask, MAX_ERROR_HISTORY};
use crate::queue::publisher::Publisher;
use crate::queue::{envelope, topology::Topology};
use crate::store::dead_letters::{self, DeadLetter, RawMessage, Status};
use crate::store::links;
use death::{Death, diagnose, text};

/// How often due rounds are looked for.
const SCHEDULER_TICK: Duration = Duration::from_millis(500);

/// What the dead-letter worker needs.
pub struct DeadLetterWorker {
    pub db: PgPool,
    pub topology: Topology,
    pub cfg: DeadLetterConfig,
    /// Sends due rounds through again.
    pub publisher: Publisher,
    pub alerts: Alerts,
}

impl Consume for DeadLetterWorker {
    fn name(&self) -> String {
        "dead-letter".to_owned()
    }

    fn role(&self) -> &'static str {
        "dlq-worker"
    }

    fn queues(&self) -> Vec<String> {
        vec![self.topology.dead_letter_queue()]
    }

    fn prefetch(&self) -> u16 {
        50
    }

    /// One message at a time: kept (committed) first, then acknowledged.
    async fn consume(
        &self,
        session: &mut Session,
        shutdown: &CancellationToken,
    ) -> Result<(), SessionEnd> {
        while let Some(delivery) = session.next(shutdown).await? {
            let span = tracing::info_span!("record dead letter", otel.kind = "consumer");
            crate::telemetry::context::follow_message(&span, &delivery.properties);
            let record = || self.record(&delivery).instrument(span.clone());
            let Ok(Some(event)) =
                wait_out(shutdown, "record a dead letter", record, |_| true).await
            else {
                return Ok(());
            };
            if let Some(event) = event {
                self.alerts.raise(event);
            }
            // Not acknowledged: redelivered, and keeping it again is harmless.
            super::settle::ack(&delivery.acker).await?;
        }
        Ok(())
    }
}

impl DeadLetterWorker {
    /// Runs the consumer, the round scheduler and the dead-letter gauges' collector until
    /// `shutdown`.
    pub async fn run(self, broker: Broker, shutdown: CancellationToken) {
        tokio::join!(
            supervise(&broker, &self, &shutdown),
            self.schedule(&shutdown),
            crate::metrics::collect::dead_letters(self.db.clone(), shutdown.clone()),
        );
        tracing::info!("dead-letter worker stopped");
    }

    /// Turns a dead-lettered message into an entry; returns the alert to raise, if any.
    async fn record(&self, delivery: &Delivery) -> Result<Option<Event>, sqlx::Error> {
        let headers = delivery.properties.headers().clone().unwrap_or_default();
        let reason = text(&headers, envelope::REASON_HEADER).and_then(|r| DeadReason::parse(&r));
        match (reason, envelope::decode_delivery(&delivery.data)) {
            (Some(reason), Ok(task)) => self.record_delivery(task, reason).await,
            (_, task) => self
                .record_message(delivery, &headers, task.ok())
                .await
                .map(Some),
        }
    }

    /// A delivery the delivery worker gave up on: schedule a round or park it — unless the CRM
    /// has caught up meanwhile (a newer change went through), which makes it moot.
    async fn record_delivery(
        &self,
        task: DeliveryTask,
        reason: DeadReason,
    ) -> Result<Option<Event>, sqlx::Error> {
        let crm = task.crm.as_str();
        let now = Utc::now();
        let state = links::load_deliverables(&self.db, task.crm, &[task.contact_id.0]).await?;
        let Some(state) = state.first() else {
            tracing::warn!(%crm, contact = %task.contact_id, "dead letter for an unknown contact dropped");
            return Ok(None);
        };
        if let Some(synced) = state.synced_version.filter(|v| *v >= task.version) {
            tracing::info!(%crm, contact = %task.contact_id, "dead letter superseded: the CRM already holds a newer version");
            dead_letters::resolve(&self.db, crm, &[(task.contact_id.0, synced)]).await?;
            return Ok(None);
        }
        let operation = Some(
            if state.contact.is_some() {
                "upsert"
            } else {
                "delete"
            }
            .to_owned(),
        );
        let existing = dead_letters::find_delivery(&self.db, crm, task.contact_id.0).await?;
        let rounds = existing.as_ref().map_or(0, |e| e.rounds.max(0) as u32);
        let wait = match reason {
            DeadReason::RetriesExhausted => self.round_wait(rounds),
            DeadReason::Permanent => None,
        };
        let mut errors = existing
            .as_ref()
            .map(|e| e.errors.clone())
            .unwrap_or_default();
        errors.extend(task.errors.iter().cloned());
        let excess = errors.len().saturating_sub(MAX_ERROR_HISTORY * 2);
        errors.drain(..excess);
        let last = errors.last().cloned();
        let entry = DeadLetter {
            id: existing.as_ref().map_or_else(Uuid::now_v7, |e| e.id),
            kind: "delivery".into(),
            crm: Some(crm.to_owned()),
            contact_id: Some(task.contact_id.0),
            version: Some(task.version),
            operation,
            status: if wait.is_some() {
                Status::Retrying
            } else {
                Status::Parked
            },
            reason: reason.as_str().into(),
            error_code: last.as_ref().map(|e| e.code.clone()),
            error_message: last.as_ref().map(|e| e.message.clone()),
            errors,
            attempts: existing.as_ref().map_or(0, |e| e.attempts) + task.attempt as i32,
            rounds: rounds as i32 + i32::from(wait.is_some()),
            next_attempt_at: wait.map(|w| now + w),
            source: None,
            first_failed_at: existing.as_ref().map_or(now, |e| e.first_failed_at),
            last_failed_at: now,
        };
        dead_letters::save_delivery(&self.db, &entry).await?;
        crate::metrics::dead_letter(reason.as_str());
        let what = format!(
            "{crm} contact {} v{}: {} ({})",
            task.contact_id,
            task.version,
            entry.error_code.as_deref().unwrap_or("unknown error"),
            entry.error_message.as_deref().unwrap_or(""),
        );
        if entry.status == Status::Parked {
            tracing::warn!(%crm, contact = %task.contact_id, reason = reason.as_str(), "delivery parked");
        } else {
            tracing::info!(%crm, contact = %task.contact_id, round = entry.rounds, wait_ms = wait.unwrap_or_default().num_milliseconds(), "delivery dead-lettered; next round scheduled");
        }
        Ok(Some(Event {
            parked: entry.status == Status::Parked,
            summary: what,
        }))
    }

    /// The wait before round `done + 1`, or `None` when every round is used.
    fn round_wait(&self, done: u32) -> Option<chrono::Duration> {
        let wait = crate::queue::nth_wait(
            self.cfg.retry_min,
            self.cfg.retry_max,
            Some(self.cfg.retry_times as usize),
            done as usize,
        )?;
        chrono::Duration::from_std(wait).ok()
    }

    /// A message RabbitMQ dead-lettered (rejected as unreadable or failing, or over the delivery
    /// limit): kept raw and parked.
    async fn record_message(
        &self,
        delivery: &Delivery,
        headers: &FieldTable,
        task: Option<DeliveryTask>,
    ) -> Result<Event, sqlx::Error> {
        let death = Death::read(headers);
        let props = &delivery.properties;
        let message_type = props.kind().as_ref().map(|t| t.to_string());
        let (code, message, contact) = diagnose(&delivery.data, message_type.as_deref(), &death);
        let now = Utc::now();
        let reason = death.reason.clone().unwrap_or_else(|| "unknown".into());
        // Redelivery must not make a second entry: a message with an id keeps it.
        let id = props
            .message_id()
            .as_ref()
            .and_then(|m| Uuid::parse_str(m.as_str()).ok())
            .map_or_else(Uuid::now_v7, |m| Uuid::new_v5(&m, b"dead-letter"));
        let entry = DeadLetter {
            id,
            kind: "message".into(),
            crm: task.as_ref().map(|t| t.crm.as_str().to_owned()),
            contact_id: contact.or(task.as_ref().map(|t| t.contact_id.0)),
            version: task.as_ref().map(|t| t.version),
            operation: None,
            status: Status::Parked,
            reason: reason.clone(),
            error_code: Some(code.clone()),
            error_message: Some(message.clone()),
            errors: vec![AttemptError {
                at: now,
                code: code.clone(),
                message: message.clone(),
                retryable: false,
            }],
            attempts: death.count as i32,
            rounds: 0,
            next_attempt_at: None,
            source: Some(RawMessage {
                queue: death.queue.clone(),
                exchange: death.exchange.clone(),
                routing_key: death.routing_key.clone(),
                content_type: props.content_type().as_ref().map(|c| c.to_string()),
                message_type,
                body: delivery.data.clone(),
            }),
            first_failed_at: now,
            last_failed_at: now,
        };
        dead_letters::insert_message(&self.db, &entry).await?;
        crate::metrics::dead_letter(&reason);
        tracing::warn!(queue = death.queue.as_deref().unwrap_or("?"), %reason, %code, "dead-lettered message parked");
        Ok(Event {
            parked: true,
            summary: format!(
                "message from {} ({reason}): {code}: {message}",
                death.queue.as_deref().unwrap_or("an unknown queue")
            ),
        })
    }

    /// Sends due rounds through again, until shutdown.
    async fn schedule(&self, shutdown: &CancellationToken) {
        let mut tick = tokio::time::interval(SCHEDULER_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if !crate::shutdown::next_tick(&mut tick, shutdown).await {
                return;
            }
            match crate::replay::replay_due(&self.db, &self.publisher).await {
                Ok(done) => {
                    if done.sent > 0 {
                        tracing::info!(
                            sent = done.sent,
                            "dead-letter round: deliveries sent through again"
                        );
                    }
                    if done.skipped > 0 {
                        tracing::warn!(
                            parked = done.skipped,
                            "dead-letter round: entries that cannot be sent anywhere parked"
                        );
                        self.alerts.raise(Event {
                            parked: true,
                            summary: format!(
                                "{} dead letter(s) parked: their round could not be sent anywhere ({})",
                                done.skipped,
                                crate::replay::NOT_REPLAYABLE
                            ),
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "dead-letter round failed; trying again"),
            }
        }
    }
}
