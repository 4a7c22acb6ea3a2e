//! RabbitMQ: the topology SyncRoot declares, the confirmed publisher the API uses, and the
//! encoding of a [`ContactChange`](crate::domain::ContactChange) as an AMQP message.
//!
//! Not here: consuming (that is `worker`).

pub mod envelope;
pub mod publisher;
pub mod topology;

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

use crate::config::QueueConfig;

/// Opens an AMQP connection, named after the process role so operators can tell connections
/// apart in the management UI.
pub async fn connect(cfg: &QueueConfig, role: &str) -> Result<Connection, lapin::Error> {
    let props =
        ConnectionProperties::default().with_connection_name(format!("syncroot-{role}").into());
    Connection::connect(cfg.amqp_url.expose(), props).await
}

/// Capped exponential backoff for reconnect loops: 100 ms doubling to `cap`.
pub fn reconnect_delay(attempt: u32, cap: Duration) -> Duration {
    let ms = 100u64.saturating_mul(1u64 << attempt.min(16));
    Duration::from_millis(ms).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_doubles_and_caps() {
        let cap = Duration::from_secs(5);
        assert_eq!(reconnect_delay(0, cap), Duration::from_millis(100));
        assert_eq!(reconnect_delay(3, cap), Duration::from_millis(800));
        assert_eq!(reconnect_delay(40, cap), cap);
    }
}
