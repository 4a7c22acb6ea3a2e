//! The periodic collectors of gauges that need a look elsewhere, each with a bounded cost:
//! the dead-letter entries by status (one `GROUP BY` over `dead_letters` every
//! [`COLLECT_EVERY`], in the dead-letter worker) and, for a role without consumers (the API),
//! only the recorder's upkeep. Queue depths are read by each consuming session
//! (`worker::consumer`), which knows its queues and holds a connection.

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::COLLECT_EVERY;
use crate::store::dead_letters::{self, Status};

const STATUSES: [Status; 3] = [Status::Retrying, Status::Replayed, Status::Parked];

/// Exports the dead-letter entries per status until `shutdown`; a status without entries is 0.
pub async fn dead_letters(db: PgPool, shutdown: CancellationToken) {
    every_tick(&shutdown, || async {
        match dead_letters::depth(&db).await {
            Ok(counts) => {
                for status in STATUSES {
                    let n = counts
                        .iter()
                        .find(|(s, _)| s == status.as_str())
                        .map_or(0, |(_, n)| *n);
                    super::dead_letters_now(status.as_str(), n);
                }
            }
            // Postgres away: the gauges keep their last value; readiness says the rest.
            Err(e) => tracing::debug!(error = %e, "could not count dead letters for metrics"),
        }
    })
    .await;
    tracing::info!("dead-letter metrics collector stopped");
}

/// Runs only the recorder's upkeep until `shutdown` (a role with no other collector).
pub async fn upkeep(shutdown: CancellationToken) {
    every_tick(&shutdown, || async {}).await;
}

/// Runs `collect` and the recorder's upkeep every [`COLLECT_EVERY`], first at once.
pub(crate) async fn every_tick<F, Fut>(shutdown: &CancellationToken, mut collect: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(COLLECT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !crate::shutdown::next_tick(&mut tick, shutdown).await {
            return;
        }
        collect().await;
        super::upkeep();
    }
}
