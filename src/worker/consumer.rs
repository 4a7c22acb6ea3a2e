//! The one consumer supervisor every consuming role runs under (forwarder, delivery workers,
//! dead-letter worker).
//!
//! ```text
//! supervise ──▶ Session::open (connection, topology, a channel per queue: qos, basic_consume; ready)
//!    ▲              │
//!    │              ▼ role.consume(&mut session, shutdown)
//!    │          Ok  → shutdown: cancel the consumers, close, stop
//!    └─ backoff ◀── Err → not ready, close, reconnect after backoff (cancellable)
//! ```
//!
//! A role is its message handling ([`Consume::consume`]) and three facts: its name, its queues
//! and its prefetch. The session owns the connection and the readiness flag: readiness is set
//! once consumers are attached and cleared when the session drops, whichever way it ends.
//! [`wait_out`] is the one way a role holds a message while a dependency (Postgres, the
//! broker's confirm) is away, so an outage never burns retry tiers or the delivery limit.
//!
//! Each session also watches its queues for metrics: every [`crate::metrics::COLLECT_EVERY`]
//! it reads their depth (a passive `queue.declare` on a channel of its own), and every message
//! received notes its timestamp, which bounds the age of what still waits
//! (`metrics::backlog`). Every delivery carries what its settlement is counted under (the
//! role and the queue), so `settle` counts each message once, where it is settled.
//!
//! Not here: what to do with a message (the roles), publishing (`queue::publisher`), settling
//! (`settle`).

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::{BoxStream, SelectAll};
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::settle::{self, SettleError};
use crate::config::QueueConfig;
use crate::probe::Readiness;
use crate::queue::publisher::PublishError;
use crate::queue::{self, topology::Topology};

/// Longest wait between reconnect attempts.
const RECONNECT_CAP: Duration = Duration::from_secs(5);
/// Longest wait between attempts while a dependency is away.
const WAIT_OUT_CAP: Duration = Duration::from_secs(10);

/// Why a consuming session ended other than by shutdown; the supervisor reconnects.
#[derive(Debug, thiserror::Error)]
pub enum SessionEnd {
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error("the broker closed the consumers")]
    ConsumerClosed,
    #[error("cannot hand a message on: {0}")]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Settle(#[from] SettleError),
}

/// A consuming role: what it consumes, and what it does with what it receives.
pub trait Consume: Sync {
    /// Names the connection (`syncroot-<name>` in the management UI), the readiness flag and
    /// the logs.
    fn name(&self) -> String;
    /// The process role it runs in (`forwarder`, `delivery`, `webhooks`, `dlq-worker`): the
    /// `role` label of its messages' metrics.
    fn role(&self) -> &'static str;
    /// The queues consumed; their deliveries arrive as one stream.
    fn queues(&self) -> Vec<String>;
    /// Unacknowledged deliveries the broker may hand over at once (per consumer).
    fn prefetch(&self) -> u16;
    /// Consumes until `shutdown` (`Ok`) or a broker failure (`Err`). It may call
    /// [`Session::cancel`] before draining work in flight, so the broker stops handing over
    /// messages that would only be requeued.
    fn consume(
        &self,
        session: &mut Session,
        shutdown: &CancellationToken,
    ) -> impl Future<Output = Result<(), SessionEnd>> + Send;
}

/// Where consumers connect, and where they report readiness.
#[derive(Clone)]
pub struct Broker {
    pub queue: QueueConfig,
    pub topology: Topology,
    pub readiness: Readiness,
}

/// Runs `role` until `shutdown`, reconnecting with capped, jittered backoff.
pub async fn supervise<R: Consume>(broker: &Broker, role: &R, shutdown: &CancellationToken) {
    let name = role.name();
    let mut backoff = queue::backoff(RECONNECT_CAP);
    while !shutdown.is_cancelled() {
        // A connect in progress is abandoned at shutdown: it holds no work.
        let opened = tokio::select! {
            _ = shutdown.cancelled() => break,
            opened = Session::open(broker, role) => opened,
        };
        let ended = match opened {
            Ok(mut session) => {
                backoff = queue::backoff(RECONNECT_CAP);
                let ended = role.consume(&mut session, shutdown).await;
                session.close().await;
                ended
            }
            Err(e) => Err(e.into()),
        };
        match ended {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(role = %name, error = %e, "consumer lost RabbitMQ; reconnecting")
            }
        }
        let delay = backoff.next().unwrap_or(RECONNECT_CAP);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    tracing::info!(role = %name, "consumer stopped");
}

/// A message the broker handed over, with what its settlement is counted under.
pub struct Delivery {
    pub data: Vec<u8>,
    pub properties: BasicProperties,
    pub acker: settle::Acker,
}

/// Deliveries tagged with the queue they came from and the ledger of their channel.
type Tagged = BoxStream<
    'static,
    (
        Arc<str>,
        Arc<settle::Ledger>,
        Result<lapin::message::Delivery, lapin::Error>,
    ),
>;

/// One queue's consumer, on a channel of its own.
struct Consumer {
    channel: Channel,
    tag: lapin::types::ShortString,
}

/// One connection's consumers. Readiness is cleared when it drops.
///
/// Each queue is consumed on its own channel: delivery tags count per channel, and a consumer
/// stream hands its deliveries over in tag order, so a channel's ledger knows every delivery
/// below the newest one taken ([`settle::ack_all`] folds acknowledgements over them). Several
/// consumers on one channel would interleave their tags, and a fold could pass a delivery still
/// waiting in another consumer's buffer.
pub struct Session {
    conn: Connection,
    consumers: Vec<Consumer>,
    deliveries: SelectAll<Tagged>,
    role: &'static str,
    /// Stops the queue watch when the session ends, whichever way.
    _watch: DropGuard,
    cancelled: bool,
    name: String,
    readiness: Readiness,
}

impl Session {
    async fn open<R: Consume>(broker: &Broker, role: &R) -> Result<Self, lapin::Error> {
        let name = role.name();
        let conn = queue::connect(&broker.queue, &name).await?;
        // Declares the topology, then watches the queues' depth for the session.
        let setup = conn.create_channel().await?;
        broker.topology.declare(&setup).await?;
        let mut deliveries = SelectAll::new();
        let mut consumers = Vec::new();
        let queues = role.queues();
        for queue in &queues {
            let channel = conn.create_channel().await?;
            channel
                .basic_qos(role.prefetch(), BasicQosOptions { global: false })
                .await?;
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            consumers.push(Consumer {
                channel,
                tag: consumer.tag(),
            });
            crate::metrics::messages_known(role.role(), queue);
            let queue: Arc<str> = queue.as_str().into();
            let ledger = Arc::new(settle::Ledger::default());
            let tagged: Tagged = consumer
                .map(move |d| (queue.clone(), ledger.clone(), d))
                .boxed();
            deliveries.push(tagged);
        }
        // Owned by the session through `_watch`: the task ends when the session drops.
        let watch = CancellationToken::new();
        tokio::spawn(watch_queues(setup, queues, watch.clone()));
        tracing::info!(role = %name, queues = consumers.len(), "consuming");
        broker.readiness.set(&name, true);
        Ok(Self {
            conn,
            consumers,
            deliveries,
            role: role.role(),
            _watch: watch.drop_guard(),
            cancelled: false,
            name,
            readiness: broker.readiness.clone(),
        })
    }

    /// The next delivery; the end of the consumer stream is [`SessionEnd::ConsumerClosed`].
    /// Either failure reports the role not ready at once, while it drains what it holds.
    pub async fn recv(&mut self) -> Result<Delivery, SessionEnd> {
        let ended = match self.deliveries.next().await {
            Some((queue, ledger, Ok(d))) => {
                crate::metrics::backlog::received(&queue, *d.properties.timestamp());
                return Ok(Delivery {
                    data: d.data,
                    properties: d.properties,
                    acker: settle::Acker::new(d.acker, d.delivery_tag, ledger, self.role, queue),
                });
            }
            Some((_, _, Err(e))) => e.into(),
            None => SessionEnd::ConsumerClosed,
        };
        self.readiness.set(&self.name, false);
        Err(ended)
    }

    /// A delivery the broker has already handed over, without waiting for one: `None` when
    /// there is none at hand.
    pub fn try_recv(&mut self) -> Option<Result<Delivery, SessionEnd>> {
        use futures_util::FutureExt as _;
        // Polled once; dropping it while pending loses nothing (the stream keeps its place).
        self.recv().now_or_never()
    }

    /// The next delivery, or `None` once `shutdown` is cancelled.
    pub async fn next(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Delivery>, SessionEnd> {
        tokio::select! {
            _ = shutdown.cancelled() => Ok(None),
            d = self.recv() => d.map(Some),
        }
    }

    /// Stops the broker handing over more deliveries; those held can still be settled.
    pub async fn cancel(&mut self) {
        if std::mem::replace(&mut self.cancelled, true) {
            return;
        }
        for c in &self.consumers {
            let _ = c
                .channel
                .basic_cancel(c.tag.clone(), BasicCancelOptions::default())
                .await;
        }
    }

    async fn close(mut self) {
        self.readiness.set(&self.name, false);
        self.cancel().await;
        for c in &self.consumers {
            let _ = c.channel.close(200, "bye".into()).await;
        }
        let _ = self.conn.close(200, "bye".into()).await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.readiness.set(&self.name, false);
    }
}

/// Reads the depth of a session's queues for metrics until the session ends, on a channel of
/// its own (a failed passive declare closes only that channel). A channel that fails ends the
/// watch: the session notices a lost connection on its own.
async fn watch_queues(channel: Channel, queues: Vec<String>, stop: CancellationToken) {
    crate::metrics::collect::every_tick(&stop, || async {
        for queue in &queues {
            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            match channel
                .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                .await
            {
                Ok(q) => crate::metrics::backlog::observed(queue, q.message_count()),
                Err(e) => {
                    tracing::debug!(%queue, error = %e, "could not read a queue's depth");
                    stop.cancel();
                    return;
                }
            }
        }
    })
    .await;
    let _ = channel.close(200, "bye".into()).await;
}

/// Runs `op` until it succeeds or fails for good, waiting with capped backoff between
/// transient failures (a dependency that is away). `Ok(None)` if `shutdown` comes first.
pub async fn wait_out<T, E, F, Fut>(
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
    let mut backoff = queue::backoff(WAIT_OUT_CAP);
    let mut attempt = 0u32;
    loop {
        match op().await {
            Ok(v) => return Ok(Some(v)),
            Err(e) if transient(&e) => {
                tracing::warn!(error = %e, attempt, "cannot {what} yet; retrying")
            }
            Err(e) => return Err(e),
        }
        attempt = attempt.saturating_add(1);
        let delay = backoff.next().unwrap_or(WAIT_OUT_CAP);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wait_out_retries_transient_failures_and_stops_on_a_permanent_one() {
        let stop = CancellationToken::new();
        let mut calls = 0;
        let r: Result<Option<u32>, String> = wait_out(
            &stop,
            "count",
            || {
                calls += 1;
                let n = calls;
                async move {
                    match n {
                        1 | 2 => Err("away".to_owned()),
                        3 => Err("refused".to_owned()),
                        _ => Ok(n),
                    }
                }
            },
            |e| e == "away",
        )
        .await;
        assert_eq!(r, Err("refused".to_owned()));
        assert_eq!(calls, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_out_gives_up_quietly_on_shutdown() {
        let stop = CancellationToken::new();
        stop.cancel();
        let r: Result<Option<()>, String> =
            wait_out(&stop, "wait", || async { Err("away".to_owned()) }, |_| true).await;
        assert_eq!(r, Ok(None));
    }
}
