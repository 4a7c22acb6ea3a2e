//! Black-box test harness: the real application on port 0 against the real Postgres and
//! RabbitMQ, with a fresh database and queue prefix per test so tests run in parallel.
//!
//! Services must be running (`make services`); a missing service fails the test loudly.
//!
//! A test double like the sandboxes: a dev-dependency of the product, never part of it.

pub mod calls;
pub mod control;
pub mod dlq;
pub mod footprint;
pub mod goals;
pub mod holdings;
pub mod install;
pub mod process;
pub mod proxy;
pub mod roles;

pub use control::{Control, free_port, http_client};
pub use footprint::Footprint;
pub use install::Installation;

use std::future::Future;
use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::Value;
use sqlx::PgPool;
use syncroot::config::Config;
use syncroot::queue::envelope;
use syncroot::queue::publisher::Publisher;
use syncroot::queue::topology::Topology;
use syncroot::secret::Secret;
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "test-key-0123456789abcdef";
pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Options for [`TestApp::spawn`].
pub struct Options {
    pub forwarders: usize,
    pub shards: u16,
    /// Overrides the AMQP URL (e.g. through a [`proxy::Proxy`]).
    pub amqp_url: Option<String>,
    pub extra_env: Vec<(String, String)>,
    /// Start both CRM sandboxes in-process and a delivery worker per CRM, delivering to them.
    pub delivery: bool,
    /// With `delivery`: also start the webhook workers and point both sandboxes' webhooks at
    /// the app, signed with secrets the app is configured to accept.
    pub two_way: bool,
    /// Subscription senders to start (each as a `syncroot subscriptions` process would run).
    pub subscription_senders: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            forwarders: 1,
            shards: 2,
            amqp_url: None,
            extra_env: Vec::new(),
            delivery: false,
            two_way: false,
            subscription_senders: 0,
        }
    }
}

pub struct TestApp {
    /// Base URLs of the HubSpot and Salesforce sandboxes, when delivery runs.
    pub sandboxes: Option<(String, String)>,
    /// A client of their control API (with their control token).
    pub sandbox_control: Option<Control>,
    pub base: String,
    pub cfg: Config,
    pub db: PgPool,
    pub http: reqwest::Client,
    pub db_name: String,
    /// The database, queue prefix and environment this app runs with.
    pub install: Installation,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(opts: Options) -> Self {
        let mut install = Installation::for_tests("t");
        install.set_all([
            ("SYNCROOT_QUEUE_SHARDS", opts.shards.to_string()),
            (
                "SYNCROOT_AMQP_URL",
                opts.amqp_url.clone().unwrap_or_else(|| AMQP.to_owned()),
            ),
        ]);
        // Short retry tiers and dead-letter rounds, so tests that inject CRM faults finish
        // quickly.
        install.set_all([
            (
                "SYNCROOT_DELIVERY_RETRY_TIERS",
                "50ms,100ms,200ms,400ms,500ms",
            ),
            ("SYNCROOT_DLQ_RETRY_MIN_MS", "200"),
            ("SYNCROOT_DLQ_RETRY_MAX_MS", "1000"),
            ("SYNCROOT_DLQ_RETRY_TIMES", "20"),
        ]);
        if !opts.delivery {
            install.set("SYNCROOT_CRMS", "");
        }
        install.set_all(opts.extra_env);
        let mut cfg = install.config().expect("test configuration is valid");
        // `TEST_LOG=info,syncroot=debug` shows more of what the app does.
        syncroot::telemetry::init(&syncroot::config::LogConfig {
            filter: std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
            json: false,
        });
        syncroot::store::migrate(&cfg.database)
            .await
            .expect("Postgres must be running on 127.0.0.1:5432 (make services)");
        let db = syncroot::store::connect_lazy(&cfg.database).unwrap();
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        let mut sandboxes = None;
        let mut sandbox_control = None;
        let http = http_client().build().expect("an HTTP client");
        if opts.delivery {
            let running = syncroot_sandbox::start(&sandbox_settings(), shutdown.clone())
                .await
                .expect("sandboxes start");
            point_delivery_at(&mut cfg, &running);
            sandboxes = Some((running.hubspot_url(), running.salesforce_url()));
            let token = running.control_token.expose();
            sandbox_control = Some(Control::new(http.clone(), token));
            tasks.push(running.task);
            let ready = syncroot::probe::Readiness::default();
            tasks.extend(syncroot::app::start_delivery(&cfg, &ready, shutdown.clone()).unwrap());
            tasks.push(
                syncroot::app::start_dead_letter_worker(&cfg, &ready, shutdown.clone()).unwrap(),
            );
            if opts.two_way {
                accept_sandbox_webhooks(&mut cfg);
                tasks.extend(syncroot::app::start_inbound(&cfg, &ready, shutdown.clone()).unwrap());
            }
        }
        for _ in 0..opts.subscription_senders {
            tasks.push(syncroot::app::start_subscriptions(&cfg, shutdown.clone()).unwrap());
        }
        let api = syncroot::app::start_api(&cfg, shutdown.clone())
            .await
            .expect("API starts");
        tasks.push(api.task);
        for _ in 0..opts.forwarders {
            let ready = syncroot::probe::Readiness::default();
            tasks.push(syncroot::app::start_forwarder(&cfg, &ready, shutdown.clone()).unwrap());
        }
        let app = Self {
            sandboxes,
            sandbox_control,
            base: format!("http://{}", api.addr),
            cfg,
            db,
            http,
            db_name: install.db_name.clone(),
            install,
            shutdown,
            tasks,
        };
        if opts.amqp_url.is_none() {
            app.wait_ready().await;
        }
        if opts.two_way {
            app.point_sandbox_webhooks_here().await;
        }
        app
    }

    /// Points both sandboxes' webhooks at this app's receivers.
    pub async fn point_sandbox_webhooks_here(&self) {
        let s = sandbox_settings();
        let hooks = [
            (self.hubspot(), "hubspot", s.hubspot.client_secret),
            (self.salesforce(), "salesforce", s.salesforce.notify_secret),
        ];
        for (base, crm, secret) in hooks {
            let url = format!("{}/webhooks/{crm}", self.base);
            let body = serde_json::json!({"url": url, "secret": secret});
            self.control(base, reqwest::Method::PUT, "webhook", Some(body))
                .await;
        }
    }

    /// Waits until `/readyz` says ready (RabbitMQ connected, Postgres answering).
    pub async fn wait_ready(&self) {
        self.wait_readyz(200, "the API to become ready").await;
    }

    /// Waits until `/readyz` says not ready: the app has seen a dependency go. A proxy's cut
    /// reaches the app's connections a moment after it is made; a request sent in between
    /// still gets through.
    pub async fn wait_unready(&self) {
        self.wait_readyz(503, "the API to report not ready").await;
    }

    async fn wait_readyz(&self, status: u16, what: &str) {
        eventually(what, || async {
            let r = self.http.get(self.url("/readyz")).send().await.ok()?;
            (r.status() == status).then_some(())
        })
        .await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn authed(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(KEY)
    }

    pub async fn post_contact(&self, body: &Value) -> reqwest::Response {
        self.authed(reqwest::Method::POST, "/contacts")
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Waits until the contact is at `version` and both CRMs hold it (each in the state
    /// `synced` at that version); returns the contact.
    pub async fn wait_synced(&self, id: &str, version: i64) -> Value {
        eventually(&format!("{id} v{version} synced to both CRMs"), || async {
            let c: Value = self.get_contact(id).await.json().await.ok()?;
            let both = ["hubspot", "salesforce"].iter().all(|crm| {
                c["sync"][crm]["state"] == "synced" && c["sync"][crm]["synced_version"] == version
            });
            (c["version"] == version && both).then_some(c)
        })
        .await
    }

    /// Records the sandbox at `base` was asked to write (its `records_written` counter).
    pub async fn records_written(&self, base: &str) -> u64 {
        let counters = self
            .control(base, reqwest::Method::GET, "counters", None)
            .await;
        counters["records_written"].as_u64().unwrap_or(0)
    }

    /// Merge-patches a contact (RFC 7396) and checks it was accepted.
    pub async fn patch_contact(&self, id: &str, patch: Value) {
        let r = self
            .authed(reqwest::Method::PATCH, &format!("/contacts/{id}"))
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            202,
            "patch failed: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Creates a contact and waits until it is persisted; returns its id.
    pub async fn create(&self, body: Value) -> String {
        let r = self.post_contact(&body).await;
        assert_eq!(
            r.status(),
            202,
            "create failed: {}",
            r.text().await.unwrap_or_default()
        );
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        self.wait_version(&id, 1).await;
        id
    }

    pub async fn get_contact(&self, id: &str) -> reqwest::Response {
        self.authed(reqwest::Method::GET, &format!("/contacts/{id}"))
            .send()
            .await
            .unwrap()
    }

    /// Waits until the persisted contact has at least `version`; returns it.
    pub async fn wait_version(&self, id: &str, version: i64) -> Value {
        eventually(
            &format!("contact {id} to reach version {version}"),
            || async {
                let r = self.get_contact(id).await;
                if r.status() != 200 {
                    return None;
                }
                let v: Value = r.json().await.ok()?;
                (v["version"].as_i64()? >= version).then_some(v)
            },
        )
        .await
    }

    /// Waits until `links` CRM links (a contact's in each CRM) hold their contact's current
    /// version.
    pub async fn wait_links_current(&self, links: i64) {
        eventually(
            &format!("{links} links at their contact's current version"),
            || async {
                let current: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM crm_links l JOIN contacts c ON c.id = l.contact_id
                      WHERE l.synced_version = c.version",
                )
                .fetch_one(&self.db)
                .await
                .ok()?;
                (current == links).then_some(())
            },
        )
        .await
    }

    /// Waits until the forwarder has persisted the contact at `version` or later (the applied
    /// state in the `contacts` table, which delivery reads); returns that row as JSON.
    pub async fn wait_applied(&self, id: &str, version: i64) -> Value {
        let id: uuid::Uuid = id.parse().unwrap();
        eventually(
            &format!("contact {id} applied at version {version}"),
            || async {
                let row: Option<sqlx::types::Json<Value>> =
                    sqlx::query_scalar("SELECT row_to_json(c) FROM contacts c WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.db)
                        .await
                        .ok()?;
                let row = row?.0;
                (row["version"].as_i64()? >= version).then_some(row)
            },
        )
        .await
    }

    pub fn topology(&self) -> Topology {
        Topology::new(&self.cfg)
    }

    pub fn hubspot(&self) -> &str {
        &self.sandboxes.as_ref().expect("started with delivery").0
    }

    pub fn salesforce(&self) -> &str {
        &self.sandboxes.as_ref().expect("started with delivery").1
    }

    /// The client of the sandboxes' control API.
    pub fn sandbox_control(&self) -> &Control {
        self.sandbox_control
            .as_ref()
            .expect("started with delivery")
    }

    /// Calls a sandbox's control API (`/__sandbox/...`); fails the test unless it answers 2xx.
    pub async fn control(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        self.sandbox_control()
            .call(base, method, path, body.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The live contacts a sandbox holds.
    pub async fn sandbox_contacts(&self, base: &str) -> Vec<Value> {
        self.sandbox_control()
            .sandbox_contacts(base)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// A sandbox's record with this id (HubSpot `id`, Salesforce `Id`); `Null` if it has none.
    pub async fn sandbox_record(&self, base: &str, remote_id: &str) -> Value {
        self.sandbox_contacts(base)
            .await
            .into_iter()
            .find(|c| c["id"].as_str() == Some(remote_id) || c["Id"].as_str() == Some(remote_id))
            .unwrap_or(Value::Null)
    }

    /// Publishes raw bytes to a shard queue through the default exchange, as a foreign or
    /// broken producer would.
    pub async fn publish_raw(&self, queue: &str, body: &[u8]) {
        let conn = Connection::connect(AMQP, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(Default::default()).await.unwrap();
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        let _ = conn.close(200, "bye".into()).await;
    }

    /// A publisher of its own on the app's broker and topology, connected, as the API and the
    /// workers hold one.
    pub async fn publisher(&self, confirm_timeout: Duration) -> Publisher {
        let (p, _) = Publisher::start(
            self.cfg.queue.clone(),
            self.topology(),
            confirm_timeout,
            "test",
            CancellationToken::new(),
        );
        eventually("the publisher to connect", || async {
            p.is_connected().await.then_some(())
        })
        .await;
        p
    }

    /// Messages ready in a queue.
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let conn = Connection::connect(AMQP, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let q = ch
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .unwrap();
        let _ = conn.close(200, "bye".into()).await;
        q.message_count()
    }

    /// The contacts of the changes waiting in a shard queue, or of the tasks waiting in a
    /// delivery queue, one per change or task: each ready message is read without being taken
    /// (one may carry a pack of several). Only while nothing consumes the queue.
    pub async fn queued_contacts(&self, queue: &str) -> Vec<String> {
        use futures_util::StreamExt as _;
        let ready = self.queue_depth(queue).await;
        let conn = Connection::connect(AMQP, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        // Taken, not acknowledged: closing the connection puts every one back. (A quorum
        // queue with a single active consumer refuses `basic.get`.)
        let mut messages = ch
            .basic_consume(
                queue.into(),
                "queued-contacts".into(),
                Default::default(),
                Default::default(),
            )
            .await
            .unwrap();
        let mut contacts = Vec::new();
        for _ in 0..ready {
            let m = tokio::time::timeout(Duration::from_secs(10), messages.next())
                .await
                .unwrap_or_else(|_| panic!("{queue} handed over fewer than {ready} messages"))
                .expect("the consumer stays open")
                .unwrap();
            let kind = m.properties.kind().as_ref().map(|k| k.to_string());
            match kind.as_deref() {
                Some(envelope::DELIVERY_TYPE | envelope::DELIVERY_PACK_TYPE) => {
                    let pack = envelope::decode_deliveries(kind.as_deref(), &m.data)
                        .unwrap_or_else(|e| panic!("a message in {queue} is not a task: {e}"));
                    contacts.extend(pack.tasks.iter().map(|p| p.task.contact_id.to_string()));
                }
                _ => {
                    let pack = envelope::decode_changes(kind.as_deref(), &m.data)
                        .unwrap_or_else(|e| panic!("a message in {queue} is not a change: {e}"));
                    contacts.extend(pack.changes.iter().map(|p| p.change.contact_id.to_string()));
                }
            }
        }
        let _ = conn.close(200, "bye".into()).await;
        contacts
    }

    /// Stops the application (as SIGTERM would) and waits for every task to finish.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // Give the cancelled tasks a moment to let go of their connections.
        std::thread::sleep(Duration::from_millis(200));
        self.install.cleanup_blocking();
    }
}

/// The sandboxes' default settings on port 0, so tests run side by side.
pub fn sandbox_settings() -> syncroot_sandbox::settings::Settings {
    let mut s = syncroot_sandbox::settings::Settings::default();
    s.hubspot_listen = "127.0.0.1:0".parse().expect("a socket address");
    s.salesforce_listen = s.hubspot_listen;
    s
}

/// Points delivery at running sandboxes: their URLs and the credentials they accept.
pub fn point_delivery_at(cfg: &mut Config, running: &syncroot_sandbox::RunningSandboxes) {
    let s = sandbox_settings();
    let d = &mut cfg.delivery;
    d.hubspot.base_url = running.hubspot_url();
    d.hubspot.token = Secret::new(s.hubspot.access_token);
    d.salesforce.login_url = running.salesforce_url();
    d.salesforce.client_id = s.salesforce.client_id;
    d.salesforce.client_secret = Secret::new(s.salesforce.client_secret);
}

/// Makes the app accept the sandboxes' webhooks: their signing secrets, and SyncRoot's own
/// identity in them (HubSpot app id) so its echoes are recognised.
pub fn accept_sandbox_webhooks(cfg: &mut Config) {
    let s = sandbox_settings();
    let i = &mut cfg.inbound;
    i.hubspot_secrets = vec![Secret::new(s.hubspot.client_secret)];
    i.salesforce_secrets = vec![Secret::new(s.salesforce.notify_secret)];
    i.hubspot_app_id = s.hubspot.app_id.to_string();
}

/// A contact's record id in a CRM, from its `sync` section.
pub fn remote_id(contact: &Value, crm: &str) -> String {
    contact["sync"][crm]["remote_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no {crm} record id in {contact}"))
        .to_owned()
}

/// Polls `check` every 25 ms until it yields a value, failing the test after 60 s (a bound for a broken run, not a speed check).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The admin key of apps started with [`admin_options`].
pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef";

/// Options that configure [`ADMIN_KEY`] as the admin key (for `/dlq`).
pub fn admin_options(delivery: bool) -> Options {
    Options {
        delivery,
        extra_env: vec![("SYNCROOT_ADMIN_KEYS".to_owned(), ADMIN_KEY.to_owned())],
        ..Options::default()
    }
}

impl TestApp {
    /// A request with the admin key.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(ADMIN_KEY)
    }
}
