//! Local CRM sandboxes: a HubSpot CRM v3 server and a Salesforce REST server that speak the
//! vendors' wire protocols, so SyncRoot runs and is tested without CRM credentials.
//!
//! They are test doubles, not CRMs: state lives in memory. Each has a control API under
//! `/__sandbox/` (simulated UI edits, fault injection, counters). `syncroot sandbox` runs
//! both; `syncroot all` starts them beside SyncRoot.

pub mod hubspot;
pub mod salesforce;

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::SandboxSettings;

/// Both sandboxes, running.
pub struct RunningSandboxes {
    pub hubspot: SocketAddr,
    pub salesforce: SocketAddr,
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

/// The HubSpot sandbox's configuration from SyncRoot's settings.
pub fn hubspot_config(s: &SandboxSettings) -> hubspot::HubspotSandboxConfig {
    hubspot::HubspotSandboxConfig {
        access_token: s.hubspot_token.expose().to_owned(),
        app_id: s.hubspot_app_id,
        client_secret: s.hubspot_client_secret.expose().to_owned(),
        webhook_url: s.hubspot_webhook_url.clone(),
        burst_limit: s.hubspot_burst_limit,
        daily_limit: s.hubspot_daily_limit,
        seed_fixtures: s.seed_fixtures,
        ..Default::default()
    }
}

/// The Salesforce sandbox's configuration from SyncRoot's settings.
pub fn salesforce_config(s: &SandboxSettings) -> salesforce::SalesforceSandboxConfig {
    salesforce::SalesforceSandboxConfig {
        client_id: s.salesforce_client_id.clone(),
        client_secret: s.salesforce_client_secret.expose().to_owned(),
        session_idle_timeout_secs: s.salesforce_session_idle.as_secs(),
        daily_limit: s.salesforce_daily_limit,
        notify_url: s.salesforce_notify_url.clone(),
        notify_secret: s.salesforce_notify_secret.expose().to_owned(),
        seed_fixtures: s.seed_fixtures,
        ..Default::default()
    }
}

/// Binds and starts both sandboxes; they stop when `shutdown` is cancelled.
pub async fn start(
    s: &SandboxSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningSandboxes> {
    let hs_listener = tokio::net::TcpListener::bind(s.hubspot_listen)
        .await
        .with_context(|| format!("binding the HubSpot sandbox to {}", s.hubspot_listen))?;
    let sf_listener = tokio::net::TcpListener::bind(s.salesforce_listen)
        .await
        .with_context(|| format!("binding the Salesforce sandbox to {}", s.salesforce_listen))?;
    let hs = hubspot::spawn(hubspot_config(s), hs_listener, shutdown.clone()).await?;
    let sf = salesforce::spawn(salesforce_config(s), sf_listener, shutdown).await?;
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
        task,
    })
}

/// Points delivery at running sandboxes: their URLs and the credentials they accept.
pub fn point_delivery_at(cfg: &mut crate::config::Config, running: &RunningSandboxes) {
    let (s, d) = (&cfg.sandbox, &mut cfg.delivery);
    d.hubspot.base_url = running.hubspot_url();
    d.hubspot.token = s.hubspot_token.clone();
    d.salesforce.login_url = running.salesforce_url();
    d.salesforce.client_id = s.salesforce_client_id.clone();
    d.salesforce.client_secret = s.salesforce_client_secret.clone();
}
