//! `inbound_events`: webhook events already handled, so a CRM's redelivery costs nothing.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::PgPool;

use crate::domain::Crm;

/// The keys among `keys` that were handled before.
pub async fn seen(
    pool: &PgPool,
    crm: Crm,
    keys: &[String],
) -> Result<HashSet<String>, sqlx::Error> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT event_key FROM inbound_events WHERE provider = $1 AND event_key = ANY($2)",
    )
    .bind(crm.as_str())
    .bind(keys)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Remembers handled events.
pub async fn remember(pool: &PgPool, crm: Crm, keys: &[String]) -> Result<(), sqlx::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO inbound_events (provider, event_key) SELECT $1, k FROM UNNEST($2::text[]) AS k
         ON CONFLICT DO NOTHING",
    )
    .bind(crm.as_str())
    .bind(keys)
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets events older than `age` (past every CRM's redelivery window).
pub async fn prune(pool: &PgPool, age: Duration) -> Result<u64, sqlx::Error> {
    let secs = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
    let done = sqlx::query(
        "DELETE FROM inbound_events WHERE received_at < now() - make_interval(secs => $1)",
    )
    .bind(secs as f64)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
