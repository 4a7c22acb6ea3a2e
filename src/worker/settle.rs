//! Acknowledging and rejecting deliveries, bounded in time.
//!
//! lapin can wait forever on a frame it cannot send once the connection is gone (it reports
//! some broken connections only through the consumer stream, which a worker busy settling a
//! batch is not reading). A settle that does not finish within [`SETTLE_TIMEOUT`] is treated as
//! a lost connection: the caller ends its session, the broker requeues whatever was not
//! acknowledged, and redelivery is harmless because every worker is idempotent.

use std::time::Duration;

use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicRejectOptions};

/// Longest wait for one acknowledgement or rejection to be handed to the broker.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error("the broker connection did not take an acknowledgement within {0:?}")]
    Timeout(Duration),
}

/// Acknowledges one delivery.
pub async fn ack(acker: &Acker) -> Result<(), SettleError> {
    bounded(acker.ack(BasicAckOptions::default())).await
}

/// Rejects one delivery without requeueing: RabbitMQ dead-letters it.
pub async fn dead_letter(acker: &Acker) -> Result<(), SettleError> {
    bounded(acker.reject(BasicRejectOptions { requeue: false })).await
}

async fn bounded<T>(f: impl Future<Output = Result<T, lapin::Error>>) -> Result<(), SettleError> {
    match tokio::time::timeout(SETTLE_TIMEOUT, f).await {
        Ok(r) => r.map(|_| ()).map_err(SettleError::from),
        Err(_) => Err(SettleError::Timeout(SETTLE_TIMEOUT)),
    }
}
