//! Exchanges and queues, declared idempotently by every process at connect time.
//!
//! ```text
//! {prefix}.contacts (direct) ──routing key "0".."N-1"──▶ {prefix}.contacts.{i}  (quorum, single active consumer)
//!                                                            │ rejected / over delivery limit
//!                                                            ▼
//!                                    {prefix}.dead-letter (fanout) ──▶ {prefix}.dead-letter (quorum)
//!
//! {prefix}.deliveries (direct) ──routing key = CRM──▶ {prefix}.deliver.{crm}  (quorum, single active consumer)
//!        ▲                                                   │ failed, time may fix it: a copy with attempt + 1
//!        │ TTL expired (routing key = CRM)                   ▼
//!        └──────────────────────────────── {prefix}.retry.{crm}.{wait}  (quorum, x-message-ttl = wait, no consumer)
//!
//! failed for good, or after the last tier: published to {prefix}.dead-letter with the reason
//! ```
//!
//! **Retry tiers.** RabbitMQ 3.10 has no delayed retry, and a queue only expires the message at
//! its head, so one wait queue with mixed per-message TTLs would hold short waits behind long
//! ones. Each wait therefore has its own queue with a per-queue TTL, dead-lettering back to the
//! deliveries exchange under the CRM's routing key. The queue is named after its wait, so
//! changing the schedule declares new queues instead of clashing with the old ones' arguments;
//! old ones keep expiring into the work queue until empty.
//!
//! **One delivery path per CRM.** The forwarder, once it has persisted a change, publishes one
//! small delivery task per enabled CRM. Each CRM's queue is consumed by one active delivery
//! worker at a time, so a CRM that is down or rate-limited holds up only its own queue, and
//! pacing to that CRM's allowance happens in one place.
//!
//! **Per-contact order.** A contact's changes are routed by its id to one shard queue. Each
//! shard queue has `x-single-active-consumer`, so however many forwarders run, one consumes a
//! shard at a time and the others stand by; the queue is FIFO, and the API publishes a
//! contact's changes one after the other (it holds the contact's row lock until the broker
//! confirms). On top of that the database only ever replaces a contact with a newer sequence
//! number, so even a redelivery after a failover cannot move a contact backwards.
//!
//! **Nothing lost on the way to the dead-letter queue.** RabbitMQ 3.10 dead-letters at most
//! once unless the source quorum queue asks for `at-least-once` with `reject-publish` overflow,
//! and it has no default delivery limit; both are set here.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use crate::config::Config;
use crate::domain::{ContactId, Crm};

/// Names derived from the configured prefix and shard count.
#[derive(Clone, Debug)]
pub struct Topology {
    pub prefix: String,
    pub shards: u16,
    pub delivery_limit: u32,
    /// CRMs with a delivery queue.
    pub crms: Vec<Crm>,
    /// Waits of the retry tiers, shortest first.
    pub retry_tiers: Vec<Duration>,
}

impl Topology {
    pub fn new(cfg: &Config) -> Self {
        Self {
            prefix: cfg.queue.prefix.clone(),
            shards: cfg.queue.shards,
            delivery_limit: cfg.queue.delivery_limit,
            crms: cfg.delivery.crms.clone(),
            retry_tiers: cfg.delivery.retry_tiers.clone(),
        }
    }

    /// The wait queue of retry tier `tier` (0-based) for `crm`.
    pub fn retry_queue(&self, crm: Crm, tier: usize) -> String {
        let wait = self.retry_tiers.get(tier).copied().unwrap_or_default();
        format!("{}.retry.{crm}.{}ms", self.prefix, wait.as_millis())
    }

    pub fn deliveries_exchange(&self) -> String {
        format!("{}.deliveries", self.prefix)
    }

    pub fn delivery_queue(&self, crm: Crm) -> String {
        format!("{}.deliver.{crm}", self.prefix)
    }

    pub fn contacts_exchange(&self) -> String {
        format!("{}.contacts", self.prefix)
    }

    pub fn shard_queue(&self, shard: u16) -> String {
        format!("{}.contacts.{shard}", self.prefix)
    }

    /// Webhook batches from one CRM, for its webhook worker (published through the default
    /// exchange).
    pub fn inbound_queue(&self, crm: Crm) -> String {
        format!("{}.inbound.{crm}", self.prefix)
    }

    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dead-letter", self.prefix)
    }

    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead-letter", self.prefix)
    }

    /// The routing key of a contact's shard.
    pub fn routing_key(&self, id: ContactId) -> String {
        id.shard(self.shards).to_string()
    }

    /// Every queue this topology declares (for tests and tooling that clean up).
    pub fn queues(&self) -> Vec<String> {
        let mut q: Vec<String> = (0..self.shards).map(|s| self.shard_queue(s)).collect();
        for crm in &self.crms {
            q.push(self.delivery_queue(*crm));
            q.extend((0..self.retry_tiers.len()).map(|t| self.retry_queue(*crm, t)));
        }
        q.extend(self.crms.iter().map(|c| self.inbound_queue(*c)));
        q.push(self.dead_letter_queue());
        q.dedup();
        q
    }

    /// Declares everything; safe to call from every process, every time it connects.
    pub async fn declare(&self, ch: &Channel) -> Result<(), lapin::Error> {
        let dlx = self.dead_letter_exchange();
        declare_exchange(ch, &dlx, ExchangeKind::Fanout).await?;
        // One dead-letter worker at a time: it decides rounds per entry.
        let mut dlq_args = quorum_args();
        dlq_args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        bind_queue(ch, &self.dead_letter_queue(), dlq_args, &dlx, "").await?;

        let contacts = self.contacts_exchange();
        declare_exchange(ch, &contacts, ExchangeKind::Direct).await?;
        for shard in 0..self.shards {
            let key = shard.to_string();
            bind_queue(
                ch,
                &self.shard_queue(shard),
                self.work_args(),
                &contacts,
                &key,
            )
            .await?;
        }

        for crm in &self.crms {
            let queue = self.inbound_queue(*crm);
            ch.queue_declare(queue.as_str().into(), durable_queue(), self.work_args())
                .await?;
        }

        let deliveries = self.deliveries_exchange();
        declare_exchange(ch, &deliveries, ExchangeKind::Direct).await?;
        for crm in &self.crms {
            let queue = self.delivery_queue(*crm);
            bind_queue(ch, &queue, self.work_args(), &deliveries, crm.as_str()).await?;
            for tier in 0..self.retry_tiers.len() {
                let name = self.retry_queue(*crm, tier);
                ch.queue_declare(
                    name.as_str().into(),
                    durable_queue(),
                    self.retry_args(*crm, tier),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Arguments of a wait queue: quorum, the tier's TTL, and expiry back into the CRM's work
    /// queue (at-least-once, so a message is never lost on its way back).
    fn retry_args(&self, crm: Crm, tier: usize) -> FieldTable {
        let mut args = quorum_args();
        let ttl = self.retry_tiers.get(tier).copied().unwrap_or_default();
        let ttl = u32::try_from(ttl.as_millis()).unwrap_or(u32::MAX);
        args.insert("x-message-ttl".into(), AMQPValue::LongUInt(ttl));
        args.insert(
            "x-dead-letter-exchange".into(),
            long(&self.deliveries_exchange()),
        );
        args.insert("x-dead-letter-routing-key".into(), long(crm.as_str()));
        args.insert("x-dead-letter-strategy".into(), long("at-least-once"));
        args.insert("x-overflow".into(), long("reject-publish"));
        args
    }

    /// Arguments of every work queue: quorum, one active consumer, a delivery limit, and
    /// at-least-once dead-lettering.
    fn work_args(&self) -> FieldTable {
        let mut args = quorum_args();
        args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongUInt(self.delivery_limit),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            long(&self.dead_letter_exchange()),
        );
        args.insert("x-dead-letter-strategy".into(), long("at-least-once"));
        args.insert("x-overflow".into(), long("reject-publish"));
        args
    }
}

async fn declare_exchange(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(name.into(), kind, durable, FieldTable::default())
        .await
}

/// Declares a durable queue and binds it to `exchange` with `key`.
async fn bind_queue(
    ch: &Channel,
    queue: &str,
    args: FieldTable,
    exchange: &str,
    key: &str,
) -> Result<(), lapin::Error> {
    ch.queue_declare(queue.into(), durable_queue(), args)
        .await?;
    let opts = QueueBindOptions::default();
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        opts,
        FieldTable::default(),
    )
    .await
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long("quorum"));
    args
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}
