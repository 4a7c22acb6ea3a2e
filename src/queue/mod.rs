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

/// Wait number `n` (from 0) of a schedule that starts at `min` and doubles up to `max`, with
/// jitter; `None` once `times` waits are used (endless without a `times`). The dead-letter
/// worker's rounds and a failing subscription's retries follow it.
pub fn nth_wait(min: Duration, max: Duration, times: Option<usize>, n: usize) -> Option<Duration> {
    use backon::BackoffBuilder as _;
    let builder = backon::ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter();
    let builder = match times {
        Some(t) => builder.with_max_times(t),
        None => builder.without_max_times(),
    };
    builder.build().nth(n)
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

    #[test]
    fn nth_wait_doubles_within_its_bounds_and_ends_after_its_times() {
        let (min, max) = (Duration::from_millis(10), Duration::from_millis(50));
        for n in 0..8 {
            let base = (min * (1 << n)).min(max);
            let w = nth_wait(min, max, None, n).unwrap();
            assert!(w >= base && w <= base * 2, "wait {n}: {w:?}");
        }
        assert!(nth_wait(min, max, Some(3), 2).is_some());
        assert_eq!(nth_wait(min, max, Some(3), 3), None);
    }
}
