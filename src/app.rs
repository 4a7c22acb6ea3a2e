//! Wiring: builds the API server and the workers from a `Config`. `main` and the black-box
//! tests use exactly these functions (tests bind port 0).

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
use crate::worker::dead_letter::DeadLetterWorker;
use crate::worker::delivery::DeliveryWorker;
use crate::worker::forwarder::Forwarder;

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
    let db = store::connect_lazy(&cfg.database).context("configuring the Postgres pool")?;
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
    let app = crate::api::router(db.clone(), publisher, &cfg.api, &cfg.delivery.crms);
    let pruner = tokio::spawn(prune_idempotency_keys(
        db,
        cfg.api.idempotency_ttl,
        shutdown.clone(),
    ));
    let grace = cfg.shutdown_grace;
    let task = tokio::spawn(async move {
        let stop = shutdown.clone();
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await });
        let served = async {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "API server failed");
            }
        };
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
        tracing::info!("API stopped");
    });
    tracing::info!(%addr, "API listening");
    Ok(RunningApi { addr, task })
}

/// Starts a forwarder; the handle ends after shutdown once in-flight changes are settled.
pub fn start_forwarder(
    cfg: &Config,
    readiness: &Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let db = store::connect_lazy(&cfg.database).context("configuring the Postgres pool")?;
    let topology = Topology::new(cfg);
    // The delivery publisher outlives consumption, so in-flight changes can finish handing on.
    let publisher_stop = CancellationToken::new();
    let (publisher, publisher_task) = Publisher::start(
        cfg.queue.clone(),
        topology.clone(),
        cfg.api.publish_timeout,
        "forwarder",
        publisher_stop.clone(),
    );
    let fwd = Forwarder {
        db,
        queue: cfg.queue.clone(),
        cfg: cfg.forwarder.clone(),
        grace: cfg.shutdown_grace,
        topology,
        publisher,
        readiness: readiness.clone(),
    };
    Ok(tokio::spawn(async move {
        fwd.run(shutdown).await;
        publisher_stop.cancel();
        let _ = publisher_task.await;
    }))
}

/// Starts one delivery worker per enabled CRM; each handle ends after shutdown.
pub fn start_delivery(
    cfg: &Config,
    readiness: &Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let db = store::connect_lazy(&cfg.database).context("configuring the Postgres pool")?;
    let topology = Topology::new(cfg);
    let d = &cfg.delivery;
    // Retries and dead letters go out on one confirmed connection shared by the CRMs' workers;
    // it outlives them so a batch in flight at shutdown can still settle.
    let publisher_stop = CancellationToken::new();
    let (publisher, publisher_task) = Publisher::start(
        cfg.queue.clone(),
        topology.clone(),
        cfg.api.publish_timeout,
        "delivery",
        publisher_stop.clone(),
    );
    let ctx = WorkerCtx {
        cfg,
        db,
        topology,
        publisher,
        readiness: readiness.clone(),
    };
    let mut tasks = Vec::new();
    for crm in &d.crms {
        let task = match crm {
            Crm::Hubspot => {
                let client = HubspotClient::new(d.hubspot.clone());
                tokio::spawn(ctx.worker(client).run(shutdown.clone()))
            }
            Crm::Salesforce => {
                let client = SalesforceClient::new(d.salesforce.clone());
                tokio::spawn(ctx.worker(client).run(shutdown.clone()))
            }
        };
        tasks.push(task);
    }
    let workers = futures_util::future::join_all(tasks);
    Ok(vec![tokio::spawn(async move {
        workers.await;
        publisher_stop.cancel();
        let _ = publisher_task.await;
    })])
}

/// Starts the dead-letter worker (and the alert sender); the handle ends after shutdown.
pub fn start_dead_letter_worker(
    cfg: &Config,
    readiness: &Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let db = store::connect_lazy(&cfg.database).context("configuring the Postgres pool")?;
    let topology = Topology::new(cfg);
    let publisher_stop = CancellationToken::new();
    let (publisher, publisher_task) = Publisher::start(
        cfg.queue.clone(),
        topology.clone(),
        cfg.api.publish_timeout,
        "dead-letter",
        publisher_stop.clone(),
    );
    let alerts_stop = CancellationToken::new();
    let (alerts, alerts_task) = Alerts::start(&cfg.dead_letter, alerts_stop.clone());
    let worker = DeadLetterWorker {
        db,
        queue: cfg.queue.clone(),
        topology,
        cfg: cfg.dead_letter.clone(),
        publisher,
        alerts,
        readiness: readiness.clone(),
    };
    Ok(tokio::spawn(async move {
        worker.run(shutdown).await;
        publisher_stop.cancel();
        alerts_stop.cancel();
        let _ = publisher_task.await;
        if let Some(t) = alerts_task {
            let _ = t.await;
        }
    }))
}

/// What every delivery worker shares.
struct WorkerCtx<'a> {
    cfg: &'a Config,
    db: sqlx::PgPool,
    topology: Topology,
    publisher: Publisher,
    readiness: Readiness,
}

impl WorkerCtx<'_> {
    fn worker<C: CrmClient>(&self, client: C) -> DeliveryWorker<C> {
        DeliveryWorker {
            db: self.db.clone(),
            queue: self.cfg.queue.clone(),
            topology: self.topology.clone(),
            client: std::sync::Arc::new(client),
            linger: self.cfg.delivery.linger,
            prefetch: self.cfg.delivery.prefetch,
            publisher: self.publisher.clone(),
            tiers: self.cfg.delivery.retry_tiers.clone(),
            grace: self.cfg.shutdown_grace,
            readiness: self.readiness.clone(),
        }
    }
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
        let (_, probe) = crate::probe::serve(listen, db, readiness, shutdown).await?;
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
    tasks.push(start_dead_letter_worker(cfg, &readiness, shutdown)?);
    futures_util::future::join_all(tasks).await;
    Ok(())
}

async fn prune_idempotency_keys(db: sqlx::PgPool, ttl: Duration, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match store::idempotency::prune(&db, ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "pruned expired idempotency keys"),
            Err(e) => tracing::warn!(error = %e, "could not prune idempotency keys"),
        }
    }
}
