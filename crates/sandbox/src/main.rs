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
    let running = syncroot_sandbox::start(&settings, stop).await?;
    // Scripts read these two lines to find the sandboxes when they listen on port 0.
    eprintln!(
        "HubSpot sandbox:    {}\nSalesforce sandbox: {}",
        running.hubspot_url(),
        running.salesforce_url()
    );
    running.task.await.context("sandbox task")
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
