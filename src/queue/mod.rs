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

/// How long opening a connection may take: TCP, TLS and the AMQP handshake. A peer that accepts
/// the connection and then says nothing (a node still booting, a proxy, a load balancer whose
/// backend is gone) would otherwise hold a reconnect loop, and a shutdown waiting on it,
/// forever; once the connection is open, heartbeats find a peer that goes quiet.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Opens an AMQP connection, named after the process role so operators can tell connections
/// apart in the management UI. Over `amqps://` the broker's certificate is verified against the
/// system's CAs and the URL's `cacertfile`, if any. Fails with a timed-out I/O error when the
/// broker has not completed the handshake within [`CONNECT_TIMEOUT`].
pub async fn connect(cfg: &QueueConfig, role: &str) -> Result<Connection, lapin::Error> {
    connect_within(cfg, role, CONNECT_TIMEOUT).await
}

async fn connect_within(
    cfg: &QueueConfig,
    role: &str,
    limit: Duration,
) -> Result<Connection, lapin::Error> {
    let props =
        ConnectionProperties::default().with_connection_name(format!("syncroot-{role}").into());
    let opening = async {
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
    };
    tokio::time::timeout(limit, opening)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("RabbitMQ did not complete the AMQP handshake within {limit:?}"),
            )
            .into())
        })
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

    #[tokio::test]
    async fn a_peer_that_accepts_and_never_speaks_amqp_times_out_instead_of_holding_the_connect() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                open.push(socket);
            }
        });
        let cfg = QueueConfig {
            amqp_url: crate::secret::Secret::new(format!("amqp://u:p@{addr}/%2f")),
            amqp_ca: None,
            prefix: "t".into(),
            shards: 1,
            delivery_limit: 1,
            pack_changes: true,
        };
        let limit = Duration::from_millis(300);
        let outcome =
            tokio::time::timeout(Duration::from_secs(10), connect_within(&cfg, "test", limit))
                .await
                .expect("the connect returns on its own");
        let err = outcome.expect_err("a silent peer is not a broker");
        assert!(
            err.to_string().contains("AMQP handshake within"),
            "names the cause: {err}"
        );
        held.abort();
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
