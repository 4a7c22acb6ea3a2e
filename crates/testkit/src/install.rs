//! An installation of SyncRoot under test: a fresh database, a random queue prefix and the one
//! `SYNCROOT_*` environment every harness starts it with, in process or as processes.
//!
//! Not a process manager (see [`crate::process`]); it only names what a run owns and removes
//! it again.

use lapin::options::QueueDeleteOptions;
use lapin::{Connection, ConnectionProperties};
use sqlx::{Connection as _, PgConnection};
use syncroot::config::{Config, Layers};
use syncroot::queue::topology::Topology;

use crate::{AMQP, KEY, PG_ADMIN};

/// A database name, a queue prefix and the environment that points SyncRoot at them.
#[derive(Clone, Debug)]
pub struct Installation {
    pub db_name: String,
    pub prefix: String,
    env: Vec<(String, String)>,
}

impl Installation {
    /// A fresh installation; `kind` (`t`, `bench`, `chaos`) starts its database name and queue
    /// prefix, so a leftover says which run left it.
    pub fn new(kind: &str) -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let tag = &tag[..12];
        let db_name = format!("syncroot_{kind}_{tag}");
        let prefix = format!("{kind}{tag}");
        let env = [
            ("SYNCROOT_API_LISTEN", "127.0.0.1:0".to_owned()),
            ("SYNCROOT_API_KEYS", KEY.to_owned()),
            ("SYNCROOT_DATABASE_URL", Self::database_url(&db_name)),
            ("SYNCROOT_AMQP_URL", AMQP.to_owned()),
            ("SYNCROOT_QUEUE_PREFIX", prefix.clone()),
            ("SYNCROOT_LOG", "warn".to_owned()),
            // The roles run as processes against the development services (trust-auth
            // Postgres, guest:guest RabbitMQ) and the CRM sandboxes: opt out of the
            // production refusals, as a developer running the roles locally would.
            ("SYNCROOT_ALLOW_INSECURE_BROKER", "true".to_owned()),
            ("SYNCROOT_ALLOW_INSECURE_DATABASE", "true".to_owned()),
            ("SYNCROOT_ALLOW_INSECURE_CRMS", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Self {
            db_name,
            prefix,
            env,
        }
    }

    /// Like [`Installation::new`], sized for tests and the chaos run: a small connection pool,
    /// a short shutdown grace and a short publisher-confirm wait.
    pub fn for_tests(kind: &str) -> Self {
        let mut i = Self::new(kind);
        i.set("SYNCROOT_DATABASE_MAX_CONNECTIONS", "8");
        i.set("SYNCROOT_SHUTDOWN_GRACE_SECS", "5");
        i.set("SYNCROOT_API_PUBLISH_TIMEOUT_MS", "2000");
        i
    }

    fn database_url(db_name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{db_name}")
    }

    /// Sets (or replaces) one variable.
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// Sets (or replaces) several variables.
    pub fn set_all<K: AsRef<str>, V: Into<String>>(
        &mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> &mut Self {
        for (k, v) in vars {
            self.set(k.as_ref(), v);
        }
        self
    }

    /// The value of one variable, when set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The environment, in the order it was set.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The database's URL.
    pub fn db_url(&self) -> String {
        Self::database_url(&self.db_name)
    }

    /// The configuration SyncRoot would load from this environment.
    pub fn config(&self) -> anyhow::Result<Config> {
        Layers::gather(None, self.env.clone())
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
    }

    /// Drops the database and deletes the queues and exchanges; best effort, so a run that
    /// failed half way still cleans what it can.
    pub async fn cleanup(&self) {
        if let Ok(mut c) = PgConnection::connect(PG_ADMIN).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            )))
            .execute(&mut c)
            .await;
        }
        let Ok(cfg) = self.config() else {
            return;
        };
        let topology = Topology::new(&cfg);
        let Ok(conn) = Connection::connect(AMQP, ConnectionProperties::default()).await else {
            return;
        };
        if let Ok(ch) = conn.create_channel().await {
            for q in topology.queues() {
                let _ = ch
                    .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
            for e in [
                topology.contacts_exchange(),
                topology.deliveries_exchange(),
                topology.dead_letter_exchange(),
            ] {
                let _ = ch
                    .exchange_delete(e.as_str().into(), Default::default())
                    .await;
            }
        }
        let _ = conn.close(200, "bye".into()).await;
    }

    /// [`Installation::cleanup`] from synchronous code such as `Drop`, on a runtime of its own.
    pub fn cleanup_blocking(&self) {
        let this = self.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(this.cleanup());
        })
        .join();
    }
}
