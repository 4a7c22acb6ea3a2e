//! Process shutdown: one `CancellationToken` cancelled on SIGTERM or SIGINT.
//!
//! Every long-running loop selects on this token; each stops taking new work, finishes what it
//! has within the configured grace period, and returns.

use tokio_util::sync::CancellationToken;

/// Waits for the next tick of a periodic loop; `false` once `shutdown` is cancelled. Shutdown
/// wins over a tick that is also due, so a loop whose last round overran its interval stops
/// rather than going round again.
pub async fn next_tick(every: &mut tokio::time::Interval, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => false,
        _ = every.tick() => true,
    }
}

/// Returns a token cancelled on the first SIGTERM or SIGINT.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; finishing in-flight work");
        t.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn shutdown_wins_over_a_tick_that_is_due() {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        let stop = CancellationToken::new();
        assert!(
            next_tick(&mut every, &stop).await,
            "the first tick is at once"
        );
        tokio::time::advance(std::time::Duration::from_secs(5)).await;
        stop.cancel();
        for _ in 0..20 {
            assert!(!next_tick(&mut every, &stop).await);
        }
    }
}
