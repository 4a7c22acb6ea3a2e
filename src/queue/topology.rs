//! Exchanges and queues, declared idempotently by every process at connect time.
//!
//! ```text
//! {prefix}.contacts (direct) ──routing key "0".."N-1"──▶ {prefix}.contacts.{i}  (quorum, single active consumer)
//!                                                            │ rejected / over delivery limit
//!                                                            ▼
//!                                    {prefix}.dead-letter (fanout) ──▶ {prefix}.dead-letter (quorum)
//!
//! {prefix}.deliveries (direct) ──routing key = CRM──▶ {prefix}.deliver.{crm}  (quorum, single active consumer)
//! ```
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

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use crate::config::QueueConfig;
use crate::domain::{ContactId, Crm};

/// Names derived from the configured prefix and shard count.
#[derive(Clone, Debug)]
pub struct Topology {
    pub prefix: String,
    pub shards: u16,
    pub delivery_limit: u32,
    /// CRMs with a delivery queue.
    pub crms: Vec<Crm>,
}

impl Topology {
    pub fn new(cfg: &QueueConfig, crms: &[Crm]) -> Self {
        Self {
            prefix: cfg.prefix.clone(),
            shards: cfg.shards,
            delivery_limit: cfg.delivery_limit,
            crms: crms.to_vec(),
        }
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
        q.extend(self.crms.iter().map(|c| self.delivery_queue(*c)));
        q.push(self.dead_letter_queue());
        q
    }

    /// Declares everything; safe to call from every process, every time it connects.
    pub async fn declare(&self, ch: &Channel) -> Result<(), lapin::Error> {
        let dlx = self.dead_letter_exchange();
        declare_exchange(ch, &dlx, ExchangeKind::Fanout).await?;
        bind_queue(ch, &self.dead_letter_queue(), quorum_args(), &dlx, "").await?;

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

        let deliveries = self.deliveries_exchange();
        declare_exchange(ch, &deliveries, ExchangeKind::Direct).await?;
        for crm in &self.crms {
            let queue = self.delivery_queue(*crm);
            bind_queue(ch, &queue, self.work_args(), &deliveries, crm.as_str()).await?;
        }
        Ok(())
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
