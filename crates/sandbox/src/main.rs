//! `syncroot-sandbox`: runs the local HubSpot and Salesforce sandboxes until SIGTERM or SIGINT.
//! Settings come from `SANDBOX_*` variables (`--help` lists them).

use anyhow::Context as _;
use syncroot_sandbox::settings::{self, Settings};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("syncroot-sandbox: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        print!(
            "Local HubSpot and Salesforce sandboxes that speak the CRMs' wire protocols.\n\n\
             Usage: syncroot-sandbox\n\n{}",
            settings::describe()
        );
        return Ok(());
    }
    let settings = Settings::from_env()
        .map_err(|problems| anyhow::anyhow!("invalid settings:\n  {}", problems.join("\n  ")))?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&settings.log))
        .with_writer(std::io::stderr)
        .init();
    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signal(stop.clone()));
    warn_when_not_loopback(&settings);
    let running = syncroot_sandbox::start(&settings, stop).await?;
    // Scripts read these three lines to find the sandboxes when they listen on port 0, and to
    // learn the control token when it was generated.
    eprintln!(
        "HubSpot sandbox:    {}\nSalesforce sandbox: {}\nSandbox control token: {}",
        running.hubspot_url(),
        running.salesforce_url(),
        running.control_token.expose()
    );
    if settings.control_token_generated {
        eprintln!(
            "(generated for this run: send it as X-Sandbox-Token on /__sandbox/ requests; \
             SANDBOX_CONTROL_TOKEN sets one)"
        );
    }
    running.task.await.context("sandbox task")
}

/// A banner when a sandbox listens beyond loopback (`SANDBOX_ALLOW_NON_LOOPBACK=true`): its
/// CRM routes take well-known test credentials and its control API is one token away.
fn warn_when_not_loopback(s: &Settings) {
    let wide: Vec<String> = [s.hubspot_listen, s.salesforce_listen]
        .iter()
        .filter(|a| !a.ip().is_loopback())
        .map(ToString::to_string)
        .collect();
    if !wide.is_empty() {
        eprintln!(
            "\n*** WARNING: the CRM sandboxes listen beyond loopback ({}).\n*** Anyone who \
             reaches them can use their well-known test credentials, and anyone with the \
             control\n*** token can read every contact and redirect webhooks. Only for a \
             private network (docker-compose).\n",
            wide.join(", ")
        );
    }
}

async fn stop_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    stop.cancel();
}
