//! Acknowledging and rejecting deliveries, bounded in time, and counting each settlement
//! (`syncroot_messages_total`): the one place every consumer settles a message.
//!
//! lapin can wait forever on a frame it cannot send once the connection is gone (it reports
//! some broken connections only through the consumer stream, which a worker busy settling a
//! batch is not reading). A settle that does not finish within [`SETTLE_TIMEOUT`] is treated as
//! a lost connection: the caller ends its session, the broker requeues whatever was not
//! acknowledged, and redelivery is harmless because every worker is idempotent.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicRejectOptions};

use crate::metrics::{self, Settled};

/// Longest wait for one acknowledgement or rejection to be handed to the broker.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error("the broker connection did not take an acknowledgement within {0:?}")]
    Timeout(Duration),
}

/// Settles one delivery; knows the role and queue its settlement is counted under.
pub struct Acker {
    inner: lapin::Acker,
    role: &'static str,
    queue: Arc<str>,
}

impl Acker {
    pub fn new(inner: lapin::Acker, role: &'static str, queue: Arc<str>) -> Self {
        Self { inner, role, queue }
    }
}

/// Acknowledges one delivery that was handled.
pub async fn ack(acker: &Acker) -> Result<(), SettleError> {
    ack_as(acker, Settled::Acked).await
}

/// Acknowledges one delivery whose copy the caller has handed on (`Retried` into a retry tier,
/// `DeadLettered` to the dead-letter exchange), counted as that.
pub async fn ack_as(acker: &Acker, outcome: Settled) -> Result<(), SettleError> {
    bounded(acker.inner.ack(BasicAckOptions::default())).await?;
    metrics::message_settled(acker.role, &acker.queue, outcome);
    Ok(())
}

/// Rejects one delivery without requeueing: RabbitMQ dead-letters it.
pub async fn dead_letter(acker: &Acker) -> Result<(), SettleError> {
    bounded(acker.inner.reject(BasicRejectOptions { requeue: false })).await?;
    metrics::message_settled(acker.role, &acker.queue, Settled::DeadLettered);
    Ok(())
}

async fn bounded<T>(f: impl Future<Output = Result<T, lapin::Error>>) -> Result<(), SettleError> {
    match tokio::time::timeout(SETTLE_TIMEOUT, f).await {
        Ok(r) => r.map(|_| ()).map_err(SettleError::from),
        Err(_) => Err(SettleError::Timeout(SETTLE_TIMEOUT)),
    }
}
