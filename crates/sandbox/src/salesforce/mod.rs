//! A local Salesforce REST API sandbox: an HTTP server that speaks enough of Salesforce's wire
//! protocol for real clients (simple-salesforce, SyncRoot's own connector) to sync Contacts
//! against it unchanged but for the base URL.
//!
//! What it serves: the OAuth token endpoint (client credentials, JWT bearer), sessions with an
//! idle timeout, Contact sObject Rows and upsert by external id, sObject Collections, a small
//! SOQL subset, `/limits` with `Sforce-Limit-Info` and the daily allowance, signed CDC-style
//! change notifications to a webhook, and a control API under `/__sandbox/` for tests and
//! benchmarks (faults, usage, simulated human edits, validation rules, a duplicate rule on
//! Email, counters, the write log).
//!
//! What it is not: a Salesforce emulator. Only Contact exists; there is no sharing model,
//! describe, Bulk API, SOAP, Streaming/Pub-Sub, fuzzy duplicate matching (only an exact-Email
//! rule, see `duplicates`) or formula-based validation rules (only "field contains text", see
//! `validation`), and nothing is persisted. As in a real org, Contact.Email is not unique; only
//! the external id is. Where
//! Salesforce's behaviour is not documented the choice is marked
//! `[UNVERIFIED]` beside the code that makes it.
//!
//! Reading order: `routes` and `dispatch` (paths and the REST pipeline), `auth`/`jwt`,
//! `sobjects`, `composite`, `soql`/`evaluate`/`query`, `store`/`change`/`fields`/`record`,
//! `validation`, `duplicates`, `notify`/`notifier`, `control`; `tests/` drives it all over HTTP.

mod auth;
mod bulk;
mod change;
mod composite;
mod control;
mod counters;
mod dispatch;
mod duplicates;
mod errors;
mod evaluate;
mod faults;
mod fields;
mod ids;
mod jwt;
mod limits;
mod notifier;
mod notify;
mod outbound_message;
mod query;
mod record;
mod routes;
mod sobjects;
mod soql;
mod state;
mod store;
mod validation;
mod wire;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, post};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use errors::{ErrorCode, SfError};
pub use notify::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign as sign_notification};

use crate::kit::control::ControlToken;
use state::Sandbox;

/// Largest request body accepted, in bytes.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Settings of one sandbox org.
#[derive(Clone)]
pub struct SalesforceSandboxConfig {
    /// Connected-app consumer key for the client-credentials (and JWT `iss`) check.
    pub client_id: String,
    /// Connected-app consumer secret; also the key of the token response `signature`.
    pub client_secret: String,
    /// Newest API version offered (e.g. "62.0"). Requests may use any `vXX.X`; version-dependent
    /// behaviour (upsert 200 vs 204) follows the version in the request path.
    pub api_version: String,
    /// A token dies after this many seconds without an authenticated call.
    pub session_idle_timeout_secs: u64,
    /// API calls allowed before every call gets 403 `REQUEST_LIMIT_EXCEEDED`.
    pub daily_limit: u32,
    /// API name of the unique External ID text field on Contact.
    pub external_id_field: String,
    /// Where change notifications are POSTed; `None` drops them.
    pub notify_url: Option<String>,
    /// HMAC-SHA256 key of `X-Sync-Signature`.
    pub notify_secret: String,
    /// Most events in one notification.
    pub notify_batch_max: usize,
    /// How long the first event of a batch waits for more, in milliseconds.
    pub notify_linger_ms: u64,
    /// Delivery attempts per batch before it is dropped (and logged).
    pub notify_max_attempts: u32,
    /// Per-attempt timeout, in milliseconds.
    pub notify_timeout_ms: u64,
    /// Start with a few Contacts (and re-create them on `/__sandbox/reset`).
    pub seed_fixtures: bool,
    /// PEM certificate of the connected app; enables the JWT bearer flow. Also settable at run
    /// time through `PUT /__sandbox/jwt`.
    pub jwt_certificate_pem: Option<String>,
    /// The token every `/__sandbox/` request must carry; random unless set.
    pub control_token: ControlToken,
}

impl Default for SalesforceSandboxConfig {
    fn default() -> Self {
        Self {
            client_id: "sandbox-sf-client-id".to_string(),
            client_secret: "sandbox-sf-client-secret".to_string(),
            api_version: "62.0".to_string(),
            session_idle_timeout_secs: 7_200,
            daily_limit: 100_000,
            external_id_field: "SyncRoot_Id__c".to_string(),
            notify_url: None,
            notify_secret: "sandbox-sf-notify-secret".to_string(),
            notify_batch_max: 100,
            notify_linger_ms: 200,
            notify_max_attempts: 5,
            notify_timeout_ms: 5_000,
            seed_fixtures: false,
            jwt_certificate_pem: None,
            control_token: ControlToken::generate(),
        }
    }
}

impl std::fmt::Debug for SalesforceSandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const REDACTED: &str = "[redacted]";
        f.debug_struct("SalesforceSandboxConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &REDACTED)
            .field("api_version", &self.api_version)
            .field("session_idle_timeout_secs", &self.session_idle_timeout_secs)
            .field("daily_limit", &self.daily_limit)
            .field("external_id_field", &self.external_id_field)
            .field("notify_url", &self.notify_url)
            .field("notify_secret", &REDACTED)
            .field("notify_batch_max", &self.notify_batch_max)
            .field("notify_linger_ms", &self.notify_linger_ms)
            .field("notify_max_attempts", &self.notify_max_attempts)
            .field("notify_timeout_ms", &self.notify_timeout_ms)
            .field("seed_fixtures", &self.seed_fixtures)
            .field(
                "jwt_certificate_pem",
                &self.jwt_certificate_pem.as_ref().map(|_| "[set]"),
            )
            .field("control_token", &self.control_token)
            .finish()
    }
}

/// A running sandbox.
#[derive(Debug)]
pub struct SandboxHandle {
    /// The bound address; the base URL is `http://{addr}` (see [`SandboxHandle::base_url`]).
    pub addr: SocketAddr,
    /// The HTTP server; ends after `shutdown` is cancelled and in-flight requests finish.
    pub server: JoinHandle<()>,
    /// The change-notification sender; ends when `shutdown` is cancelled.
    pub notifier: JoinHandle<()>,
}

impl SandboxHandle {
    /// `http://127.0.0.1:PORT`, the `instance_url` the token endpoint hands out.
    pub fn base_url(&self) -> String {
        base_url(self.addr)
    }

    /// Waits for both tasks to end (cancel the shutdown token first).
    pub async fn join(self) {
        for (name, task) in [("server", self.server), ("notifier", self.notifier)] {
            if let Err(e) = task.await {
                tracing::error!(task = name, error = %e, "salesforce sandbox task failed");
            }
        }
    }
}

/// The base URL for a bound address; an unspecified address (0.0.0.0) is reached via loopback.
fn base_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        addr.ip()
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Serves the sandbox on `listener` until `shutdown` is cancelled.
pub async fn spawn(
    cfg: SalesforceSandboxConfig,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<SandboxHandle> {
    let addr = listener
        .local_addr()
        .context("reading the sandbox listener address")?;
    let (app, notifier) = build(&cfg, base_url(addr))?;
    let notifier = tokio::spawn(notifier.run(shutdown.clone()));
    let stop = shutdown.clone();
    let server = tokio::spawn(async move {
        let limits = syncroot_serve::Limits::default();
        syncroot_serve::serve("salesforce-sandbox", listener, app, limits, stop).await;
        tracing::info!(%addr, "salesforce sandbox stopped");
    });
    tracing::info!(%addr, "salesforce sandbox listening");
    Ok(SandboxHandle {
        addr,
        server,
        notifier,
    })
}

/// The sandbox as a router, for serving it in-process on a listener of the caller's choosing.
/// `base_url` is what the token endpoint returns as `instance_url`. Change notifications are
/// sent by a task spawned on the current Tokio runtime and stopped by `shutdown`; outside a
/// runtime the router still works but sends no notifications.
pub fn router(
    cfg: &SalesforceSandboxConfig,
    base_url: String,
    shutdown: CancellationToken,
) -> anyhow::Result<Router> {
    let (app, notifier) = build(cfg, base_url)?;
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => drop(rt.spawn(notifier.run(shutdown))),
        Err(_) => tracing::warn!("no Tokio runtime: salesforce sandbox notifications are disabled"),
    }
    Ok(app)
}

fn build(
    cfg: &SalesforceSandboxConfig,
    base_url: String,
) -> anyhow::Result<(Router, notifier::Notifier)> {
    let (sb, rx, paused) = Sandbox::new(cfg, base_url)?;
    let sb = Arc::new(sb);
    let http = reqwest::Client::builder()
        .user_agent(format!("SFDC-Callout/{}", cfg.api_version))
        // Notifications go to a local receiver; an HTTP(S)_PROXY meant for the internet must
        // not capture them.
        .no_proxy()
        .build()
        .context("building the notification HTTP client")?;
    let settings = notifier::Settings {
        batch_max: cfg.notify_batch_max.max(1),
        linger: Duration::from_millis(cfg.notify_linger_ms),
        max_attempts: cfg.notify_max_attempts.max(1),
        timeout: Duration::from_millis(cfg.notify_timeout_ms),
    };
    let notifier = notifier::Notifier {
        sb: sb.clone(),
        rx,
        paused,
        settings,
        http,
    };
    let app = Router::new()
        .route("/services/oauth2/token", post(auth::token))
        .route("/services/data", any(dispatch::handle))
        .route("/services/data/", any(dispatch::handle))
        .route("/services/data/{*rest}", any(dispatch::handle))
        .merge(control::routes(cfg.control_token.clone()))
        // axum's 2 MB default would refuse a full 200-record collection of long records.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(sb);
    Ok((app, notifier))
}
