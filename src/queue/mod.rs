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
/// apart in the management UI. Over `amqps://` the broker's certificate is verified against the
/// system's CAs and the URL's `cacertfile`, if any.
pub async fn connect(cfg: &QueueConfig, role: &str) -> Result<Connection, lapin::Error> {
    let props =
        ConnectionProperties::default().with_connection_name(format!("syncroot-{role}").into());
    match &cfg.amqp_ca {
        None => Connection::connect(cfg.amqp_url.expose(), props).await,
        Some(pem) => {
            lapin::DefaultConnectionBuilder::new()?
                .with_uri_str(cfg.amqp_url.expose().to_owned())
                .with_properties(props)
                .with_tls_config(lapin::tcp::OwnedTLSConfig {
                    identity: None,
                    cert_chain: Some(pem.clone()),
                })
                .connect()
                .await
        }
    }
}

/// The waits between attempts at something that is away (a broker to reconnect to, a
/// database to retry): 100 ms doubling up to `cap`, with jitter so that replicas that lost the
/// same broker do not come back in lockstep; endless. Start a new one after a success.
pub fn backoff(cap: Duration) -> backon::ExponentialBackoff {
    use backon::BackoffBuilder as _;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_factor(2.0)
        .with_max_delay(cap)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100_ms_up_to_the_cap_with_bounded_jitter() {
        let cap = Duration::from_secs(5);
        let waits: Vec<Duration> = backoff(cap).take(12).collect();
        assert_eq!(waits.len(), 12, "endless");
        for (i, w) in waits.iter().enumerate() {
            let base = Duration::from_millis(100 * (1u64 << i.min(20))).min(cap);
            // Jitter adds up to the base delay again.
            assert!(
                *w >= base && *w <= base * 2,
                "wait {i}: {w:?} for base {base:?}"
            );
        }
        assert!(waits[11] <= cap * 2);
    }
}
