//! Wiring: builds the API server and the workers from a `Config`. `main` and the black-box
//! tests use exactly these functions (tests bind port 0).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::alerts::Alerts;
use crate::config::Config;
use crate::domain::Crm;
use crate::probe::Readiness;
use crate::providers::CrmClient;
use crate::providers::hubspot::HubspotClient;
use crate::providers::salesforce::SalesforceClient;
use crate::queue::publisher::Publisher;
use crate::queue::topology::Topology;
use crate::store;
use crate::worker::consumer::{Broker, Consume, supervise};
use crate::worker::dead_letter::DeadLetterWorker;
use crate::worker::delivery::DeliveryWorker;
use crate::worker::forwarder::Forwarder;
use crate::worker::inbound::InboundWorker;
use crate::worker::inbound::poll::Poller;
use crate::worker::jobs::backfill::Backfill;
use crate::worker::jobs::drift::Drift;
use crate::worker::jobs::{Runner, RunnerConfig};

/// A running API server.
pub struct RunningApi {
    /// The bound address (useful when the configured port is 0).
    pub addr: SocketAddr,
    /// Ends after shutdown once in-flight requests are answered (or the grace period passed).
    pub task: JoinHandle<()>,
}

/// Binds the API listener and starts serving. Postgres and RabbitMQ are connected lazily, so the
/// server starts (and reports not-ready) while either is away.
pub async fn start_api(cfg: &Config, shutdown: CancellationToken) -> anyhow::Result<RunningApi> {
    crate::metrics::install();
    // Group commit shares transactions: a couple of connections carry light load.
    let db = store::connect_warm(&cfg.database, 2).context("configuring the Postgres pool")?;
    // The publisher outlives the HTTP server by the drain, so requests still in flight at
    // shutdown can finish publishing.
    let publisher_stop = CancellationToken::new();
    let topology = Topology::new(cfg);
    let (publisher, publisher_task) = Publisher::start(
        cfg.queue.clone(),
        topology,
        cfg.api.publish_timeout,
        "api",
        publisher_stop.clone(),
    );
    let listener = tokio::net::TcpListener::bind(cfg.api.listen)
        .await
        .with_context(|| format!("binding the API to {}", cfg.api.listen))?;
    let addr = listener.local_addr()?;
    let mut wired = cfg.clone();
    wired
        .inbound
        .public_url
        .get_or_insert_with(|| format!("http://{addr}"));
    let app = crate::api::router(db.clone(), publisher, &wired);
    let pruner = tokio::spawn(prune_idempotency_keys(
        db,
        cfg.api.idempotency_ttl,
        shutdown.clone(),
    ));
    let upkeep = tokio::spawn(crate::metrics::collect::upkeep(shutdown.clone()));
    let grace = cfg.shutdown_grace;
    let limits = cfg.http;
    let task = tokio::spawn(async move {
        let stop = shutdown.clone();
        let served = syncroot_serve::serve("api", listener, app, limits, stop);
        tokio::pin!(served);
        tokio::select! {
            _ = &mut served => {}
            _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(?grace, "API requests still running after the grace period; exiting anyway");
            }
        }
        publisher_stop.cancel();
        let _ = publisher_task.await;
        let _ = pruner.await;
        let _ = upkeep.await;
        tracing::info!("API stopped");
    });
    tracing::info!(%addr, "API listening");
    Ok(RunningApi { addr, task })
}

/// What every worker role shares: a pool, the topology, and a confirmed publisher that
/// outlives the role's consumers, so work in flight at shutdown can still hand messages on.
struct RoleParts {
    db: sqlx::PgPool,
    broker: Broker,
    publisher: Publisher,
    publisher_stop: CancellationToken,
    publisher_task: JoinHandle<()>,
}

impl RoleParts {
    /// `role` names the publisher's connection in the broker's management UI.
    /// `warm`: the connections its light-load work holds at once ([`store::connect_warm`]).
    fn new(
        cfg: &Config,
        readiness: &Readiness,
        role: &'static str,
        warm: u32,
    ) -> anyhow::Result<Self> {
        crate::metrics::install();
        let db =
            store::connect_warm(&cfg.database, warm).context("configuring the Postgres pool")?;
        let topology = Topology::new(cfg);
        let publisher_stop = CancellationToken::new();
        let (publisher, publisher_task) = Publisher::start(
            cfg.queue.clone(),
            topology.clone(),
            cfg.api.publish_timeout,
            role,
            publisher_stop.clone(),
        );
        let broker = Broker {
            queue: cfg.queue.clone(),
            topology,
            readiness: readiness.clone(),
        };
        Ok(Self {
            db,
            broker,
            publisher,
            publisher_stop,
            publisher_task,
        })
    }

    /// Runs `work` (the role's consumers), then stops the publisher: the role's one task.
    fn spawn(self, work: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        let (stop, task) = (self.publisher_stop, self.publisher_task);
        tokio::spawn(async move {
            work.await;
            stop.cancel();
            let _ = task.await;
        })
    }
}

/// Starts a forwarder; the handle ends after shutdown once in-flight changes are settled.
pub fn start_forwarder(
    cfg: &Config,
    readiness: &Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let parts = RoleParts::new(cfg, readiness, "forwarder", 2)?;
    let fwd = Forwarder {
        db: parts.db.clone(),
        cfg: cfg.forwarder.clone(),
        grace: cfg.shutdown_grace,
        topology: parts.broker.topology.clone(),
        publisher: parts.publisher.clone(),
    };
    let broker = parts.broker.clone();
    Ok(parts.spawn(async move { supervise(&broker, &fwd, &shutdown).await }))
}

/// The tasks of one role, all ending after shutdown.
type Tasks = Vec<futures_util::future::BoxFuture<'static, ()>>;

/// What a per-CRM role runs for one CRM, given that CRM's client.
trait PerCrm {
    fn tasks<C: CrmClient>(&self, client: std::sync::Arc<C>) -> Tasks;
}

/// Each enabled CRM's client, built once per role: the role's workers share it, and so its
/// pacer.
#[derive(Default)]
struct Clients {
    hubspot: Option<std::sync::Arc<HubspotClient>>,
    salesforce: Option<std::sync::Arc<SalesforceClient>>,
}

impl Clients {
    fn new(cfg: &Config) -> Self {
        let d = &cfg.delivery;
        let mut clients = Self::default();
        for crm in &d.crms {
            match crm {
                Crm::Hubspot => {
                    clients.hubspot =
                        Some(std::sync::Arc::new(HubspotClient::new(d.hubspot.clone())))
                }
                Crm::Salesforce => {
                    clients.salesforce = Some(std::sync::Arc::new(SalesforceClient::new(
                        d.salesforce.clone(),
                    )))
                }
            }
        }
        clients
    }

    /// Collects the role's tasks for each CRM.
    fn tasks(&self, role: &impl PerCrm) -> Tasks {
        let mut tasks = Tasks::new();
        if let Some(c) = &self.hubspot {
            tasks.extend(role.tasks(c.clone()));
        }
        if let Some(c) = &self.salesforce {
            tasks.extend(role.tasks(c.clone()));
        }
        tasks
    }
}

/// Runs a role's consumer under the supervisor until shutdown.
fn supervised<R: Consume + Send + 'static>(
    parts: &RoleParts,
    role: R,
    shutdown: &CancellationToken,
) -> futures_util::future::BoxFuture<'static, ()> {
    let (broker, stop) = (parts.broker.clone(), shutdown.clone());
    Box::pin(async move { supervise(&broker, &role, &stop).await })
}

/// Starts one delivery worker per enabled CRM (one task for all); it ends after shutdown.
pub fn start_delivery(
    cfg: &Config,
    readiness: &Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    struct Delivery<'a>(&'a Config, &'a RoleParts, CancellationToken);
    impl PerCrm for Delivery<'_> {
        fn tasks<C: CrmClient>(&self, client: std::sync::Arc<C>) -> Tasks {
            let Self(cfg, parts, shutdown) = self;
            let worker = DeliveryWorker {
                db: parts.db.clone(),
                topology: parts.broker.topology.clone(),
                client,
                linger: cfg.delivery.linger,
                linger_max: cfg.delivery.linger_max,
                prefetch: cfg.delivery.prefetch,
                concurrency: cfg.delivery.concurrency,
                address_trust: cfg.delivery.address_trust,
                publisher: parts.publisher.clone(),
                tiers: cfg.delivery.retry_tiers.clone(),
                grace: cfg.shutdown_grace,
                recreate_gone: cfg.inbound.deletes == crate::domain::inbound::DeletePolicy::Ignore,
            };
            vec![supervised(parts, worker, shutdown)]
        }
    }
    // Retries and dead letters go out on one confirmed connection shared by the CRMs' workers.
    // Each CRM's worker reads and records a batch's state on two connections at once.
    let warm = 2 * cfg.delivery.crms.len() as u32;
    let parts = RoleParts::new(cfg, readiness, "delivery", warm)?;
    let workers = Clients::new(cfg).tasks(&Delivery(cfg, &parts, shutdown));
    Ok(vec![parts.spawn(async move {
        futures_util::future::join_all(workers).await;
    })])
}

/// Starts one webhook worker (and, when polling is on, one poller) per enabled CRM, and the
/// admin job runner (which reads the CRMs through the same clients, so within the same
/// pacing), in one task that ends after shutdown. Handled webhook events are pruned once a
/// day.
pub fn start_inbound(
    cfg: &Config,
    readiness: &Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    struct Inbound<'a>(&'a Config, &'a RoleParts, CancellationToken);
    impl PerCrm for Inbound<'_> {
        fn tasks<C: CrmClient>(&self, client: std::sync::Arc<C>) -> Tasks {
            let Self(cfg, parts, shutdown) = self;
            let mut tasks = Tasks::new();
            if let Some(interval) = cfg.inbound.poll_interval {
                let poller = Poller {
                    db: parts.db.clone(),
                    client: client.clone(),
                    publisher: parts.publisher.clone(),
                    policy: cfg.inbound.policy.clone(),
                    interval,
                };
                tasks.push(Box::pin(poller.run(shutdown.clone())));
            }
            let worker = InboundWorker {
                db: parts.db.clone(),
                topology: parts.broker.topology.clone(),
                client,
                publisher: parts.publisher.clone(),
                policy: cfg.inbound.policy.clone(),
                deletes: cfg.inbound.deletes,
                privacy: cfg.inbound.privacy_deletions,
            };
            tasks.push(supervised(parts, worker, shutdown));
            tasks
        }
    }
    let parts = RoleParts::new(cfg, readiness, "webhooks", 2)?;
    let clients = Clients::new(cfg);
    let mut workers = clients.tasks(&Inbound(cfg, &parts, shutdown.clone()));
    workers.push(Box::pin(prune_inbound_events(
        parts.db.clone(),
        shutdown.clone(),
    )));
    workers.push(Box::pin(job_runner(cfg, &parts, clients).run(shutdown)));
    Ok(vec![parts.spawn(async move {
        futures_util::future::join_all(workers).await;
    })])
}

/// The webhooks role's job runner: it holds the CRM read clients and the inbound apply path the
/// drift check and the backfill need.
fn job_runner(cfg: &Config, parts: &RoleParts, clients: Clients) -> Runner {
    let j = &cfg.jobs;
    Runner {
        db: parts.db.clone(),
        cfg: RunnerConfig {
            lease: j.lease,
            idle: (j.lease / 4).clamp(Duration::from_millis(200), Duration::from_secs(5)),
            drift_every: j.drift_interval,
            drift_repair: j.drift_repair,
        },
        backfill: Backfill {
            db: parts.db.clone(),
            publisher: parts.publisher.clone(),
            policy: cfg.inbound.policy.clone(),
            hubspot: clients.hubspot.clone(),
            salesforce: clients.salesforce.clone(),
            // A quarter of the pool, which the process's other workers share.
            concurrency: (cfg.database.max_connections as usize / 4).clamp(1, 8),
        },
        drift: Drift {
            db: parts.db.clone(),
            publisher: parts.publisher.clone(),
            policy: cfg.inbound.policy.clone(),
            deletes: cfg.inbound.deletes,
            hubspot: clients.hubspot,
            salesforce: clients.salesforce,
        },
        id: uuid::Uuid::new_v4(),
    }
}

async fn prune_inbound_events(db: sqlx::PgPool, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(24 * 3600));
    loop {
        if !crate::shutdown::next_tick(&mut every, &shutdown).await {
            return;
        }
        let age = crate::worker::inbound::REMEMBER_EVENTS;
        match store::inbound::prune(&db, age).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "pruned handled webhook events"),
            Err(e) => tracing::warn!(error = %e, "could not prune handled webhook events"),
        }
    }
}

/// Starts the dead-letter worker (and the alert sender); the handle ends after shutdown.
pub fn start_dead_letter_worker(
    cfg: &Config,
    readiness: &Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let parts = RoleParts::new(cfg, readiness, "dead-letter", 1)?;
    let alerts_stop = CancellationToken::new();
    let (alerts, alerts_task) = Alerts::start(&cfg.dead_letter, alerts_stop.clone());
    let worker = DeadLetterWorker {
        db: parts.db.clone(),
        topology: parts.broker.topology.clone(),
        cfg: cfg.dead_letter.clone(),
        publisher: parts.publisher.clone(),
        alerts,
    };
    let broker = parts.broker.clone();
    Ok(parts.spawn(async move {
        worker.run(broker, shutdown).await;
        alerts_stop.cancel();
        if let Some(t) = alerts_task {
            let _ = t.await;
        }
    }))
}

/// Starts the subscription sender; the handle ends after shutdown, once deliveries in flight
/// have their outcome written. It reads Postgres only (no broker), so it has no readiness flag
/// of its own: its probe's `/readyz` is Postgres answering.
pub fn start_subscriptions(
    cfg: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    crate::metrics::install();
    let db = store::connect_warm(&cfg.database, 1).context("configuring the Postgres pool")?;
    let sender = crate::worker::subscriptions::Sender::new(db, cfg.subscriptions.clone());
    Ok(tokio::spawn(sender.run(shutdown)))
}

/// Runs a worker role: its health probes (when `health_listen` is set) and the workers `start`
/// returns, until shutdown.
pub async fn run_worker(
    cfg: &Config,
    shutdown: CancellationToken,
    start: impl FnOnce(&Config, &Readiness, CancellationToken) -> anyhow::Result<Vec<JoinHandle<()>>>,
) -> anyhow::Result<()> {
    let readiness = Readiness::default();
    let mut tasks = start(cfg, &readiness, shutdown.clone())?;
    if let Some(listen) = cfg.health_listen {
        let db = store::connect_lazy(&cfg.database).context("configuring the Postgres pool")?;
        let (_, probe) = crate::probe::serve(listen, db, readiness, cfg.http, shutdown).await?;
        tasks.push(probe);
    }
    futures_util::future::join_all(tasks).await;
    Ok(())
}

/// Everything in one process: migrations, the API and every worker.
pub async fn run_all(cfg: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    store::migrate(&cfg.database).await?;
    let mut tasks = vec![start_api(cfg, shutdown.clone()).await?.task];
    // The all-in-one process's API reports readiness; the workers' flags are not served.
    let readiness = Readiness::default();
    tasks.push(start_forwarder(cfg, &readiness, shutdown.clone())?);
    tasks.extend(start_delivery(cfg, &readiness, shutdown.clone())?);
    tasks.extend(start_inbound(cfg, &readiness, shutdown.clone())?);
    tasks.push(start_dead_letter_worker(cfg, &readiness, shutdown.clone())?);
    tasks.push(start_subscriptions(cfg, shutdown)?);
    futures_util::future::join_all(tasks).await;
    Ok(())
}

async fn prune_idempotency_keys(db: sqlx::PgPool, ttl: Duration, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        if !crate::shutdown::next_tick(&mut every, &shutdown).await {
            return;
        }
        match store::idempotency::prune(&db, ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "pruned expired idempotency keys"),
            Err(e) => tracing::warn!(error = %e, "could not prune idempotency keys"),
        }
    }
}
