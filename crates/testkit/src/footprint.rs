//! What an installation holds, to prove a refused request changed nothing: every contact
//! table's rows (count and a digest of their content, so an updated row shows too) and the
//! messages ready in every queue of the app's topology.
//!
//! Ready counts come from the broker's answer to a passive declare, which is exact; the
//! unacknowledged counts of `rabbitmqctl` are not (a quorum queue publishes them on a timer,
//! every few seconds), so they are left out. A test proving that nothing was queued therefore
//! runs without forwarders (`Options { forwarders: 0, .. }`): what the API publishes stays
//! ready and countable, where a forwarder could hold it unacknowledged, not yet persisted.
//!
//! With forwarders running, [`TestApp::wait_forwarded`] waits for their acknowledgements
//! (counted in the process's metrics) before a footprint is read.
//!
//! Not here: the CRMs' side; the sandboxes' own counters tell what reached them.

use std::collections::BTreeMap;

use lapin::options::QueueDeclareOptions;
use lapin::{Connection, ConnectionProperties};

use crate::{AMQP, TestApp, eventually};

/// The tables a write to a contact can touch: the accepted heads, the applied contacts, the
/// idempotency records, the history, the CRM links and the dead letters.
const TABLES: [&str; 6] = [
    "contact_heads",
    "contacts",
    "idempotency_keys",
    "contact_versions",
    "crm_links",
    "dead_letters",
];

/// A table's rows: how many, and an md5 of all of them in a stable order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rows {
    pub count: i64,
    pub digest: String,
}

/// The rows of the contact tables and the messages ready in the app's queues, at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// Queue name → messages ready.
    pub messages: BTreeMap<String, u64>,
    /// Table name → its rows.
    pub tables: BTreeMap<&'static str, Rows>,
}

impl Footprint {
    /// Messages in every queue together.
    pub fn messages_total(&self) -> u64 {
        self.messages.values().sum()
    }
}

/// Every queue on the broker → messages ready plus unacknowledged, as `rabbitmqctl` counts
/// them (AMQP itself reports only ready ones, so a message a consumer is still working on
/// would look gone). A quorum queue updates these figures on a timer, so they can lag by
/// seconds: fit for waiting until they reach a value, not for comparing two moments.
pub async fn broker_queues() -> BTreeMap<String, u64> {
    let out = tokio::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "list_queues",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ])
        .output()
        .await
        .expect("rabbitmqctl runs (make services installs RabbitMQ)");
    assert!(out.status.success(), "rabbitmqctl list_queues failed");
    let listing = String::from_utf8_lossy(&out.stdout);
    listing
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let count = |i: usize| cols.get(i)?.trim().parse::<u64>().ok();
            Some((cols.first()?.to_string(), count(1)? + count(2)?))
        })
        .collect()
}

impl TestApp {
    /// The installation's footprint now (see the module docs).
    pub async fn footprint(&self) -> Footprint {
        let messages = self.ready_messages().await;
        let mut tables = BTreeMap::new();
        for table in TABLES {
            let sql = format!(
                "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') \
                 FROM {table} t"
            );
            // Safe: `table` is one of the constant names above.
            let (count, digest): (i64, String) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_one(&self.db)
                .await
                .unwrap_or_else(|e| panic!("reading {table}: {e}"));
            tables.insert(table, Rows { count, digest });
        }
        Footprint { messages, tables }
    }

    /// Messages ready in every queue of the topology that exists (a passive declare of a
    /// missing queue would close the channel with an error).
    async fn ready_messages(&self) -> BTreeMap<String, u64> {
        let existing = broker_queues().await;
        let conn = Connection::connect(AMQP, ConnectionProperties::default())
            .await
            .expect("RabbitMQ must be running on 127.0.0.1:5672 (make services)");
        let ch = conn.create_channel().await.expect("an AMQP channel");
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let mut ready = BTreeMap::new();
        let queues = self.topology().queues();
        for queue in queues.into_iter().filter(|q| existing.contains_key(q)) {
            let q = ch
                .queue_declare(queue.as_str().into(), passive, Default::default())
                .await
                .unwrap_or_else(|e| panic!("passive declare of {queue}: {e}"));
            ready.insert(queue, u64::from(q.message_count()));
        }
        let _ = conn.close(200, "bye".into()).await;
        ready
    }

    /// Panics, naming what changed, unless the installation is as it was at `before`.
    pub async fn assert_unchanged(&self, before: &Footprint, what: &str) {
        let now = self.footprint().await;
        assert_eq!(
            now.messages, before.messages,
            "{what}: messages were queued"
        );
        for (table, rows) in &before.tables {
            assert_eq!(
                now.tables.get(table),
                Some(rows),
                "{what}: table {table} changed"
            );
        }
    }
}

impl TestApp {
    /// Messages of this app's queues that its in-process forwarders have settled (acknowledged
    /// after applying or skipping them, sent to a retry tier or dead-lettered), from the
    /// process's metrics: a settlement is counted once the broker took the acknowledgement, and
    /// the queue label carries this app's prefix, so other tests' apps do not count.
    pub fn forwarded(&self) -> u64 {
        let queue = format!("queue=\"{}.", self.cfg.queue.prefix);
        let total: f64 = syncroot::metrics::render()
            .lines()
            .filter(|l| l.starts_with(syncroot::metrics::MESSAGES))
            .filter(|l| l.contains("role=\"forwarder\"") && l.contains(&queue))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        total as u64
    }

    /// Waits until the forwarders have settled `n` messages of this app in all.
    pub async fn wait_forwarded(&self, n: u64) {
        eventually(
            &format!("the forwarders to settle {n} messages"),
            || async { (self.forwarded() >= n).then_some(()) },
        )
        .await;
    }
}
