//! Local CRM sandboxes: a HubSpot CRM v3 server and a Salesforce REST server that speak the
//! vendors' wire protocols, so SyncRoot runs and is tested without CRM credentials.
//!
//! They are test doubles, not CRMs: state lives in memory. Each has a control API under
//! `/__sandbox/` (simulated UI edits, fault injection, counters) that needs the control token
//! (`X-Sandbox-Token`, [`kit::control`]). They listen on loopback unless told otherwise. The `syncroot-sandbox`
//! binary runs both (`make run` starts it beside SyncRoot); the test harness starts them in
//! process. Nothing of this crate ships in the product.

pub mod hubspot;
pub mod kit;
pub mod salesforce;
pub mod settings;

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::kit::control::ControlToken;
use crate::settings::Settings;

/// Both sandboxes, running.
pub struct RunningSandboxes {
    pub hubspot: SocketAddr,
    pub salesforce: SocketAddr,
    /// What both control APIs require in `X-Sandbox-Token`.
    pub control_token: ControlToken,
    /// Ends once both have stopped after shutdown.
    pub task: JoinHandle<()>,
}

impl RunningSandboxes {
    pub fn hubspot_url(&self) -> String {
        format!("http://{}", self.hubspot)
    }
    pub fn salesforce_url(&self) -> String {
        format!("http://{}", self.salesforce)
    }
}

/// Binds and starts both sandboxes; they stop when `shutdown` is cancelled.
pub async fn start(s: &Settings, shutdown: CancellationToken) -> anyhow::Result<RunningSandboxes> {
    let hs_listener = tokio::net::TcpListener::bind(s.hubspot_listen)
        .await
        .with_context(|| format!("binding the HubSpot sandbox to {}", s.hubspot_listen))?;
    let sf_listener = tokio::net::TcpListener::bind(s.salesforce_listen)
        .await
        .with_context(|| format!("binding the Salesforce sandbox to {}", s.salesforce_listen))?;
    let hs = hubspot::spawn(s.hubspot.clone(), hs_listener, shutdown.clone()).await?;
    let sf = salesforce::spawn(s.salesforce.clone(), sf_listener, shutdown).await?;
    let (hubspot, salesforce) = (hs.addr, sf.addr);
    let task = tokio::spawn(async move {
        if let Err(e) = hs.join().await {
            tracing::error!(error = %e, "HubSpot sandbox failed");
        }
        sf.join().await;
    });
    Ok(RunningSandboxes {
        hubspot,
        salesforce,
        control_token: s.control_token.clone(),
        task,
    })
}
