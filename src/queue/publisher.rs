//! The API's publisher: persistent messages on a confirm-mode channel, answered only once the
//! broker has confirmed them.
//!
//! A background task owns the connection: it connects (with capped backoff), declares the
//! topology, and reconnects when the connection fails. While there is no connection,
//! [`Publisher::publish`] fails at once with [`PublishError::Unavailable`], which the API turns
//! into a 503; nothing waits on a broker that is away. A nack is tried again while the confirm
//! timeout lasts, since a quorum queue without a running leader nacks for a moment.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation, Connection, Event};
use tokio::sync::{Notify, RwLock};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::envelope;
use super::topology::Topology;
use crate::config::QueueConfig;
use crate::domain::ContactChange;
use crate::domain::change::{
    CHANGE_FORMAT_VERSION, ChangePack, DeliveryPack, DeliveryTask, PackedChange, PackedTask,
};

/// Why a change was not confirmed; in every case the caller must treat it as not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("not connected to RabbitMQ")]
    Unavailable,
    #[error("RabbitMQ did not confirm within {0:?}")]
    Timeout(Duration),
    #[error("RabbitMQ refused the message (nack)")]
    Nacked,
    #[error("no queue is bound for the message's routing key")]
    Unroutable,
    #[error("AMQP error: {0}")]
    Amqp(#[from] lapin::Error),
}

/// Confirm-mode channels per connection. Publishes spread over them, so one channel's frame
/// handling is not the bottleneck. Order is unaffected: the API publishes a contact's next
/// change only after the previous one was confirmed.
const CHANNELS: usize = 4;

/// The first pause after a nack before the publish is tried again; it doubles up to
/// [`NACK_PAUSE_MAX`]. All tries together stay within the confirm timeout.
const NACK_PAUSE_MIN: Duration = Duration::from_millis(20);
const NACK_PAUSE_MAX: Duration = Duration::from_millis(500);

struct Link {
    conn: Connection,
    channels: Vec<Channel>,
    next: std::sync::atomic::AtomicUsize,
}

impl Link {
    fn channel(&self) -> &Channel {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.channels[i % self.channels.len()]
    }

    fn is_open(&self) -> bool {
        self.conn.status().connected() && self.channels.iter().all(|c| c.status().connected())
    }
}

struct Inner {
    cfg: QueueConfig,
    topology: Topology,
    role: &'static str,
    confirm_timeout: Duration,
    link: RwLock<Option<Link>>,
    /// Wakes the connection task when a publish saw the channel fail.
    broken: Notify,
}

/// Cheap to clone; all clones share one connection.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

impl Publisher {
    /// Starts the connection task; the publisher is usable as soon as it has connected.
    /// `role` names the connection (`api`, `forwarder`) in the broker's management UI.
    pub fn start(
        cfg: QueueConfig,
        topology: Topology,
        confirm_timeout: Duration,
        role: &'static str,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let inner = Arc::new(Inner {
            topology,
            role,
            cfg,
            confirm_timeout,
            link: RwLock::new(None),
            broken: Notify::new(),
        });
        let task = tokio::spawn(maintain(inner.clone(), shutdown));
        (Self { inner }, task)
    }

    /// True while a confirm-mode channel is open.
    pub async fn is_connected(&self) -> bool {
        self.inner
            .link
            .read()
            .await
            .as_ref()
            .is_some_and(Link::is_open)
    }

    /// Publishes a change to its contact's shard and waits for the broker's confirm.
    pub async fn publish_change(&self, change: &ContactChange) -> Result<(), PublishError> {
        let (body, props) = envelope::encode(change);
        let topology = &self.inner.topology;
        let key = topology.routing_key(change.contact_id);
        self.publish(&topology.contacts_exchange(), &key, &body, props)
            .await
    }

    /// Publishes a webhook batch to its CRM's webhook queue and waits for the confirm.
    pub async fn publish_inbound(
        &self,
        batch: &crate::domain::inbound::InboundBatch,
    ) -> Result<(), PublishError> {
        let (body, props) = envelope::encode_inbound(batch);
        let queue = self.inner.topology.inbound_queue(batch.crm);
        self.publish("", &queue, &body, props).await
    }

    /// Publishes a delivery task to its CRM's queue and waits for the broker's confirm.
    pub async fn publish_delivery(&self, task: &DeliveryTask) -> Result<(), PublishError> {
        let (body, props) = envelope::encode_delivery(task);
        let exchange = self.inner.topology.deliveries_exchange();
        self.publish(&exchange, task.crm.as_str(), &body, props)
            .await
    }

    /// Publishes delivery tasks on one channel and waits for all the broker's confirms. With
    /// `queue_pack_changes`, the tasks for one CRM go as one message ([`DeliveryPack`], each
    /// with the trace context of the span paired with it); a CRM's only task goes alone, under
    /// its span. A refused message is tried again alone ([`Publisher::publish`]: a copy the
    /// broker took after all is harmless, the delivery worker skips what a CRM already holds).
    pub async fn publish_deliveries(
        &self,
        tasks: &[(DeliveryTask, &tracing::Span)],
    ) -> Result<(), PublishError> {
        let exchange = self.inner.topology.deliveries_exchange();
        let outgoing = self.outgoing(
            &exchange,
            tasks,
            |task| task.crm.as_str().to_owned(),
            envelope::encode_delivery,
            |these| {
                envelope::encode_delivery_pack(&DeliveryPack {
                    v: CHANGE_FORMAT_VERSION,
                    tasks: these
                        .into_iter()
                        .map(|(task, trace)| PackedTask {
                            task: task.clone(),
                            trace,
                        })
                        .collect(),
                })
            },
        );
        match self.send_all(&outgoing, self.inner.confirm_timeout).await {
            Err(PublishError::Nacked) => {
                for out in outgoing {
                    self.send_confirmed(out).await?;
                }
                Ok(())
            }
            other => other,
        }
    }

    /// Publishes a delivery task into a retry tier's wait queue; when the wait is over, RabbitMQ
    /// moves it back into its CRM's delivery queue.
    pub async fn publish_retry(
        &self,
        task: &DeliveryTask,
        tier: usize,
    ) -> Result<(), PublishError> {
        let (body, props) = envelope::encode_delivery(task);
        let topology = &self.inner.topology;
        let wait = topology.retry_tiers.get(tier).copied().unwrap_or_default();
        // Stamped with when it will be ready in the delivery queue again, so the queue's
        // oldest-message age does not count the tier's wait (`metrics::backlog`).
        let props = props.with_timestamp(epoch_secs(wait));
        let queue = topology.retry_queue(task.crm, tier);
        // The default exchange routes to the queue of that name.
        self.publish("", &queue, &body, props).await
    }

    /// Publishes a delivery task to the dead-letter exchange with the reason.
    pub async fn publish_dead_delivery(
        &self,
        task: &DeliveryTask,
        reason: &str,
    ) -> Result<(), PublishError> {
        let (body, props) = envelope::encode_dead_delivery(task, reason);
        let exchange = self.inner.topology.dead_letter_exchange();
        self.publish(&exchange, "", &body, props).await
    }

    /// Publishes a message, persistent and mandatory, and waits for the broker's confirm.
    ///
    /// A nack is tried again within the confirm timeout: a quorum queue nacks while its leader
    /// is not running (just declared by another client, or during an election), which passes in
    /// milliseconds. The message carries its id, so a copy the broker did take after all is a
    /// duplicate the consumers already ignore.
    ///
    /// The message carries the trace context of its `publish` span (a child of the caller's),
    /// so its consumer continues the trace.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: lapin::BasicProperties,
    ) -> Result<(), PublishError> {
        let out = Outgoing::new(
            exchange,
            routing_key,
            body.to_vec(),
            props,
            &tracing::Span::current(),
        );
        self.send_confirmed(out).await
    }

    /// Sends one message and waits for its confirm, trying a nack again within the confirm
    /// timeout ([`Publisher::publish`]).
    async fn send_confirmed(&self, out: Outgoing) -> Result<(), PublishError> {
        let span = out.span.clone();
        let deadline = tokio::time::Instant::now() + self.inner.confirm_timeout;
        let mut pause = NACK_PAUSE_MIN;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self
                .send_all(std::slice::from_ref(&out), left)
                .instrument(span.clone())
                .await
            {
                Err(PublishError::Nacked) if pause < left => {
                    let (exchange, routing_key) = (&out.exchange, &out.routing_key);
                    tracing::debug!(target: "syncroot::queue", %exchange, %routing_key, ?pause, "publish nacked; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(NACK_PAUSE_MAX);
                }
                other => return other,
            }
        }
    }

    /// Publishes several changes on one channel, in the order given (so one contact's changes
    /// enter its shard queue in that order), and waits for all the broker's confirms. With
    /// `queue_pack_changes`, the changes for one shard go as one message ([`ChangePack`], in
    /// their order, each with the trace context of the span paired with it); a shard's only
    /// change goes alone. Each message's `publish` span is a child of the span paired with its
    /// (first) change, and linked to the others'. Any refusal fails the whole call and nothing
    /// is tried again: the caller decides (see `intake::group`).
    pub async fn publish_changes(
        &self,
        changes: &[(&ContactChange, &tracing::Span)],
    ) -> Result<(), PublishError> {
        let topology = &self.inner.topology;
        let outgoing = self.outgoing(
            &topology.contacts_exchange(),
            changes,
            |change| topology.routing_key(change.contact_id),
            |change| envelope::encode(change),
            |these| {
                envelope::encode_pack(&ChangePack {
                    v: CHANGE_FORMAT_VERSION,
                    changes: these
                        .into_iter()
                        .map(|(change, trace)| PackedChange {
                            change: (*change).clone(),
                            trace,
                        })
                        .collect(),
                })
            },
        );
        self.send_all(&outgoing, self.inner.confirm_timeout).await
    }

    /// The messages that carry `items` to `exchange` under the routing key `key` gives each:
    /// one an item, or with `queue_pack_changes` one a key, made by `pack` from its items (in
    /// order, each with the trace context of the span paired with it); a key's only item still
    /// goes alone, made by `single`. A message's `publish` span is a child of the span paired
    /// with its (first) item, and linked to the others'.
    fn outgoing<T>(
        &self,
        exchange: &str,
        items: &[(T, &tracing::Span)],
        key: impl Fn(&T) -> String,
        single: impl Fn(&T) -> (Vec<u8>, lapin::BasicProperties),
        pack: impl Fn(Vec<(&T, Trace)>) -> (Vec<u8>, lapin::BasicProperties),
    ) -> Vec<Outgoing> {
        let alone = |(item, parent): &(T, &tracing::Span)| {
            let (body, props) = single(item);
            Outgoing::new(exchange, &key(item), body, props, parent)
        };
        if !self.inner.cfg.pack_changes {
            return items.iter().map(alone).collect();
        }
        grouped(items, |(item, _)| key(item))
            .into_iter()
            .map(|(k, these)| match these.as_slice() {
                [one] => alone(one),
                _ => {
                    let traced = these
                        .iter()
                        .map(|(item, parent)| (item, crate::telemetry::context::to_map(parent)))
                        .collect();
                    let (body, props) = pack(traced);
                    let parents = these.iter().map(|(_, parent)| *parent);
                    Outgoing::packed(exchange, &k, body, props, parents)
                }
            })
            .collect()
    }

    /// Sends the messages on one channel in order, then waits for every confirm, all within
    /// `timeout`. The first failure is the result.
    async fn send_all(&self, msgs: &[Outgoing], timeout: Duration) -> Result<(), PublishError> {
        let guard = self.inner.link.read().await;
        let link = guard.as_ref().ok_or(PublishError::Unavailable)?;
        // `mandatory` turns a missing binding into a returned message instead of a silent drop.
        let opts = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let channel = link.channel();
        // lapin can hang on a publish while the broker shuts down, so the whole exchange with
        // the broker is bounded by the timeout.
        let outcome = tokio::time::timeout(timeout, async {
            let mut confirms = Vec::with_capacity(msgs.len());
            for m in msgs {
                let confirm = channel
                    .basic_publish(
                        m.exchange.as_str().into(),
                        m.routing_key.as_str().into(),
                        opts,
                        &m.body,
                        m.props.clone(),
                    )
                    .await?;
                confirms.push(confirm);
            }
            let mut answers = Vec::with_capacity(confirms.len());
            for confirm in confirms {
                answers.push(confirm.await?);
            }
            Ok::<_, lapin::Error>(answers)
        })
        .await;
        drop(guard);
        let result = match outcome {
            Err(_) => Err(PublishError::Timeout(self.inner.confirm_timeout)),
            Ok(Err(e)) => Err(PublishError::Amqp(e)),
            Ok(Ok(answers)) => answers.into_iter().try_for_each(|a| match a {
                Confirmation::Ack(None) => Ok(()),
                Confirmation::Ack(Some(_)) => Err(PublishError::Unroutable),
                Confirmation::Nack(_) | Confirmation::NotRequested => Err(PublishError::Nacked),
            }),
        };
        if matches!(
            result,
            Err(PublishError::Amqp(_) | PublishError::Timeout(_))
        ) {
            self.inner.broken.notify_one();
        }
        result
    }
}

/// A packed item's trace context (W3C `traceparent`, `tracestate`).
type Trace = std::collections::HashMap<String, String>;

/// A message ready to send, with its `publish` span (whose trace context it carries).
struct Outgoing {
    exchange: String,
    routing_key: String,
    body: Vec<u8>,
    props: lapin::BasicProperties,
    span: tracing::Span,
}

impl Outgoing {
    fn new(
        exchange: &str,
        routing_key: &str,
        body: Vec<u8>,
        props: lapin::BasicProperties,
        parent: &tracing::Span,
    ) -> Self {
        // Every message says when it became ready, which bounds a queue's oldest-message age
        // (`metrics::backlog`); changes carry their acceptance time already.
        let props = match props.timestamp() {
            Some(_) => props,
            None => props.with_timestamp(epoch_secs(Duration::ZERO)),
        };
        let destination = if exchange.is_empty() {
            routing_key
        } else {
            exchange
        };
        let span = tracing::info_span!(
            parent: parent,
            "publish",
            otel.name = %format_args!("publish {destination}"),
            otel.kind = "producer",
            messaging.destination.name = %destination,
            messaging.rabbitmq.destination.routing_key = %routing_key,
        );
        let props = span.in_scope(|| crate::telemetry::context::inject_message(props));
        Self {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            body,
            props,
            span,
        }
    }
}

impl Outgoing {
    /// A message carrying the items of several parents: its span is a child of the first's
    /// and linked to the others'.
    fn packed<'a>(
        exchange: &str,
        routing_key: &str,
        body: Vec<u8>,
        props: lapin::BasicProperties,
        mut parents: impl Iterator<Item = &'a tracing::Span>,
    ) -> Self {
        let first = parents
            .next()
            .cloned()
            .unwrap_or_else(tracing::Span::current);
        let out = Self::new(exchange, routing_key, body, props, &first);
        for other in parents {
            crate::telemetry::context::link(&out.span, other);
        }
        out
    }
}

/// Keeps the publisher connected: the same capped, jittered backoff as the consumers'
/// supervisor between attempts.
async fn maintain(inner: Arc<Inner>, shutdown: CancellationToken) {
    const CAP: Duration = Duration::from_secs(5);
    let mut backoff = super::backoff(CAP);
    let mut attempt = 0u32;
    loop {
        // A connect in progress is abandoned at shutdown: it holds no message.
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return,
            opened = open(&inner) => opened,
        };
        match opened {
            Ok((link, mut events)) => {
                attempt = 0;
                backoff = super::backoff(CAP);
                tracing::info!(target: "syncroot::queue", "publisher connected to RabbitMQ");
                *inner.link.write().await = Some(link);
                let reason = tokio::select! {
                    _ = shutdown.cancelled() => None,
                    _ = inner.broken.notified() => Some("a publish failed".to_owned()),
                    e = wait_for_error(&mut events) => Some(e),
                };
                let old = inner.link.write().await.take();
                if let Some(old) = old {
                    let _ = old.conn.close(200, "bye".into()).await;
                }
                match reason {
                    None => return,
                    Some(r) => {
                        tracing::warn!(target: "syncroot::queue", reason = %r, "publisher lost RabbitMQ; reconnecting")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(target: "syncroot::queue", error = %e, attempt, "publisher cannot reach RabbitMQ");
            }
        }
        let delay = backoff.next().unwrap_or(CAP);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

type Events = std::pin::Pin<Box<dyn futures_util::Stream<Item = Event> + Send>>;

async fn open(inner: &Inner) -> Result<(Link, Events), lapin::Error> {
    let conn = super::connect(&inner.cfg, inner.role).await?;
    let events: Events = Box::pin(conn.events_listener());
    let mut channels = Vec::with_capacity(CHANNELS);
    for _ in 0..CHANNELS {
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channels.push(channel);
    }
    inner.topology.declare(&channels[0]).await?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    Ok((
        Link {
            conn,
            channels,
            next,
        },
        events,
    ))
}

async fn wait_for_error(events: &mut Events) -> String {
    while let Some(ev) = events.next().await {
        if let Event::Error(e) = ev {
            return e.to_string();
        }
    }
    "connection closed".to_owned()
}

/// Items grouped by `key`, each group in the order given, the groups in the order of their
/// first item.
fn grouped<I, K: PartialEq>(items: &[I], key: impl Fn(&I) -> K) -> Vec<(K, Vec<&I>)> {
    let mut groups: Vec<(K, Vec<&I>)> = Vec::new();
    for item in items {
        let k = key(item);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, these)) => these.push(item),
            None => groups.push((k, vec![item])),
        }
    }
    groups
}

/// Seconds since the Unix epoch, `ahead` from now: an AMQP `timestamp`.
fn epoch_secs(ahead: Duration) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now + ahead).as_secs()
}
