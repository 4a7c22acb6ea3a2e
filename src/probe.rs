//! Health probes of the worker processes (`forwarder`, `delivery`, `webhooks`, `dlq-worker`),
//! for Kubernetes and load balancers: `/healthz` (the process runs) and `/readyz` (Postgres
//! answers and every consumer of the process is attached to RabbitMQ), and the process's
//! Prometheus metrics at `/metrics`. While a worker is reconnecting after losing the broker, it
//! reports not-ready.
//!
//! Not here: the API's own probes (`api::health`), which also check its publisher.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Which consumers are attached; cheap to clone, shared by a process's workers.
#[derive(Clone, Default)]
pub struct Readiness {
    consumers: Arc<Mutex<BTreeMap<String, bool>>>,
    /// The role uses no broker (`subscriptions`): ready with Postgres alone.
    without_broker: Arc<std::sync::atomic::AtomicBool>,
}

impl Readiness {
    /// Says the process's role consumes no queue, so readiness does not wait for one.
    pub fn without_broker(&self) {
        self.without_broker
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Marks a consumer attached (`true`) or reconnecting (`false`).
    pub fn set(&self, consumer: &str, attached: bool) {
        self.lock().insert(consumer.to_owned(), attached);
    }

    /// Each consumer and whether it is attached.
    pub fn consumers(&self) -> BTreeMap<String, bool> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, bool>> {
        // A poisoned lock only means a panic mid-insert of a plain flag.
        self.consumers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Clone)]
struct Probe {
    db: PgPool,
    readiness: Readiness,
}

/// Serves the probes on `listen` until `shutdown`, bounded like every listener (`limits`).
pub async fn serve(
    listen: SocketAddr,
    db: PgPool,
    readiness: Readiness,
    limits: syncroot_serve::Limits,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the health probes to {listen}"))?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::scrape))
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .with_state(Probe { db, readiness });
    let task = tokio::spawn(syncroot_serve::serve(
        "probes", listener, app, limits, shutdown,
    ));
    tracing::info!(%addr, "health probes listening");
    Ok((addr, task))
}

async fn readyz(State(p): State<Probe>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let mut checks = BTreeMap::new();
    checks.insert("postgres".to_owned(), crate::store::readiness(&p.db).await);
    let consumers = p.readiness.consumers();
    let without_broker = p
        .readiness
        .without_broker
        .load(std::sync::atomic::Ordering::Relaxed);
    if consumers.is_empty() && !without_broker {
        checks.insert("rabbitmq".to_owned(), "error: not consuming yet".to_owned());
    }
    for (name, attached) in consumers {
        let v = if attached {
            "ok"
        } else {
            "error: reconnecting to RabbitMQ"
        };
        checks.insert(format!("rabbitmq:{name}"), v.to_owned());
    }
    let ready = checks.values().all(|v| v == "ok");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"status": if ready { "ready" } else { "not_ready" }, "checks": checks});
    (status, axum::Json(body))
}
