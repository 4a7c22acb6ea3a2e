//! A local HubSpot CRM v3 sandbox: an HTTP server that speaks HubSpot's contacts wire
//! protocol (single-record, batch and search endpoints, error bodies, rate-limit headers and
//! 429s) closely enough that HubSpot's own client libraries work against it by changing only
//! the base URL, and that delivers signed webhooks (v1 and v3) for every change.
//!
//! It is a test double, not a CRM: records live in memory, only contacts exist, there are
//! no associations, owners, property history or OAuth flows, and the webhook subscription
//! API is not served. A control API under `/__sandbox/` (see [`control`]), open only with the
//! control token, lets tests simulate CRM UI edits, inject faults and read usage counters.
//!
//! Behaviour follows the team's reference (`crm-apis.md`, Part 1); where that marks a
//! detail unverified, the choice made is noted beside the code.

mod batch;
pub mod config;
mod control;
mod counters;
mod delivery;
mod errors;
mod extract;
mod faults;
mod filter;
mod gate;
mod objects;
mod properties;
mod ratelimit;
mod schema;
mod search;
pub mod signature;
mod state;
mod store;
mod webhooks;
mod wire;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{CustomProperty, HubspotSandboxConfig};

use errors::ApiError;
use state::{AppState, Shared};

/// A running sandbox.
#[derive(Debug)]
pub struct SandboxHandle {
    /// Where the sandbox listens; the base URL is `http://{addr}`.
    pub addr: SocketAddr,
    server: JoinHandle<()>,
    tasks: TaskTracker,
}

impl SandboxHandle {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the server and the webhook tasks have stopped (after the shutdown
    /// token passed to [`spawn`] was cancelled).
    pub async fn join(self) -> anyhow::Result<()> {
        self.server
            .await
            .context("HubSpot sandbox server task failed")?;
        self.tasks.close();
        self.tasks.wait().await;
        Ok(())
    }
}

/// Serves the sandbox on `listener` until `shutdown` is cancelled, then stops accepting,
/// finishes in-flight requests and stops webhook delivery.
pub async fn spawn(
    cfg: HubspotSandboxConfig,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<SandboxHandle> {
    let addr = listener
        .local_addr()
        .context("HubSpot sandbox listener has no local address")?;
    let tasks = TaskTracker::new();
    let app = build(&cfg, shutdown.clone(), &tasks);
    let server = tokio::spawn(async move {
        let limits = syncroot_serve::Limits::default();
        syncroot_serve::serve("hubspot-sandbox", listener, app, limits, shutdown).await;
        tracing::info!(%addr, "HubSpot sandbox stopped");
    });
    tracing::info!(%addr, "HubSpot sandbox listening");
    Ok(SandboxHandle {
        addr,
        server,
        tasks,
    })
}

/// The sandbox as a router, for serving in-process. Must be called inside a Tokio runtime:
/// it starts the webhook delivery task, which stops when `shutdown` is cancelled.
pub fn router(cfg: &HubspotSandboxConfig, shutdown: CancellationToken) -> Router {
    build(cfg, shutdown, &TaskTracker::new())
}

fn build(cfg: &HubspotSandboxConfig, shutdown: CancellationToken, tasks: &TaskTracker) -> Router {
    let state = Shared::start(cfg, shutdown, tasks);
    api_routes(&state)
        .merge(control::routes(cfg.control_token.clone()))
        .fallback(|| async { ApiError::not_found() })
        .with_state(state)
}

/// The HubSpot API surface, behind the gate (auth, quotas, faults, counting). Every path
/// exists under both `contacts` and its object type id `0-1`.
fn api_routes(state: &AppState) -> Router<AppState> {
    let mut routes = Router::new();
    for object in ["contacts", "0-1"] {
        let base = format!("/crm/v3/objects/{object}");
        routes = routes
            .route(&base, get(objects::list).post(objects::create))
            .route(
                &format!("{base}/{{contactId}}"),
                get(objects::read)
                    .patch(objects::update)
                    .delete(objects::archive),
            )
            .route(&format!("{base}/search"), post(search::search))
            .route(&format!("{base}/batch/read"), post(batch::read))
            .route(&format!("{base}/batch/create"), post(batch::create))
            .route(&format!("{base}/batch/update"), post(batch::update))
            .route(&format!("{base}/batch/upsert"), post(batch::upsert))
            .route(&format!("{base}/batch/archive"), post(batch::archive))
            .route(
                &format!("/crm/v3/properties/{object}"),
                get(properties::list),
            );
    }
    routes.route_layer(from_fn_with_state(state.clone(), gate::gate))
}
