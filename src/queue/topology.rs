//! Exchanges and queues, declared idempotently by every process at connect time.
//!
//! ```text
//! {prefix}.contacts (direct) ──routing key "0".."N-1"──▶ {prefix}.contacts.{i}  (quorum, single active consumer)
//!                                                            │ rejected / over delivery limit
//!                                                            ▼
//!                                    {prefix}.dead-letter (fanout) ──▶ {prefix}.dead-letter (quorum)
//! ```
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
use crate::domain::ContactId;

/// Names derived from the configured prefix and shard count.
#[derive(Clone, Debug)]
pub struct Topology {
    pub prefix: String,
    pub shards: u16,
    pub delivery_limit: u32,
}

impl Topology {
    pub fn new(cfg: &QueueConfig) -> Self {
        Self {
            prefix: cfg.prefix.clone(),
            shards: cfg.shards,
            delivery_limit: cfg.delivery_limit,
        }
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
        q.push(self.dead_letter_queue());
        q
    }

    /// Declares everything; safe to call from every process, every time it connects.
    pub async fn declare(&self, ch: &Channel) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let dlx = self.dead_letter_exchange();
        ch.exchange_declare(
            dlx.as_str().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
        let dlq = self.dead_letter_queue();
        ch.queue_declare(dlq.as_str().into(), durable_queue(), quorum_args())
            .await?;
        ch.queue_bind(
            dlq.as_str().into(),
            dlx.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

        let exchange = self.contacts_exchange();
        ch.exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
        for shard in 0..self.shards {
            let q = self.shard_queue(shard);
            ch.queue_declare(q.as_str().into(), durable_queue(), self.shard_args())
                .await?;
            let key = shard.to_string();
            ch.queue_bind(
                q.as_str().into(),
                exchange.as_str().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        Ok(())
    }

    fn shard_args(&self) -> FieldTable {
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
