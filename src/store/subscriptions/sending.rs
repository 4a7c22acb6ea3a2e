//! The sender's side of `subscriptions`: taking a subscription's lease, reading the feed after
//! its cursor, recording each attempt (a success moves the cursor; a failure counts, waits and
//! may disable), giving the lease back, pruning the delivery log.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use super::position;
use crate::store::history::{self, FeedPosition};

/// A subscription a sender holds the lease of.
#[derive(Debug)]
pub struct Claimed {
    pub id: Uuid,
    pub url: String,
    pub secret: String,
    /// The secret a rotation replaced and when it stops signing, during the overlap.
    pub previous_secret: Option<(String, DateTime<Utc>)>,
    pub cursor: FeedPosition,
    pub consecutive_failures: i32,
    pub lease: Uuid,
}

/// Takes the lease of one enabled subscription that is due and not leased (or whose lease ran
/// out: its sender died), for `lease`. `SKIP LOCKED` keeps replicas from waiting on each other.
/// A previous secret whose overlap has ended is forgotten on the way: it is kept no longer
/// than it signs.
pub async fn claim(pool: &PgPool, lease: Duration) -> Result<Option<Claimed>, sqlx::Error> {
    let token = Uuid::new_v4();
    sqlx::query(
        "UPDATE subscriptions SET lease_token = $1, lease_until = now() + $2 * interval '1 millisecond',
                previous_secret = CASE WHEN previous_secret_until > now() THEN previous_secret END,
                previous_secret_until = CASE WHEN previous_secret_until > now() THEN previous_secret_until END
          WHERE id = (SELECT id FROM subscriptions
                       WHERE enabled AND next_attempt_at <= now()
                         AND (lease_until IS NULL OR lease_until < now())
                       ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id, url, secret, previous_secret, previous_secret_until,
                   cursor_txid::text AS cursor_txid, cursor_entry, consecutive_failures",
    )
    .bind(token)
    .bind(lease.as_millis() as f64)
    .try_map(|r: PgRow| {
        Ok(Claimed {
            id: r.try_get("id")?,
            url: r.try_get("url")?,
            secret: r.try_get("secret")?,
            previous_secret: r
                .try_get::<Option<String>, _>("previous_secret")?
                .zip(r.try_get("previous_secret_until")?),
            cursor: position(&r, "cursor_txid", "cursor_entry")?,
            consecutive_failures: r.try_get("consecutive_failures")?,
            lease: token,
        })
    })
    .fetch_optional(pool)
    .await
}

/// The feed entries after a claimed subscription's cursor (the feed's own query and order).
pub async fn next_entries(
    pool: &PgPool,
    claimed: &Claimed,
    limit: i64,
) -> Result<Vec<history::FeedRow>, sqlx::Error> {
    history::feed(pool, claimed.cursor, limit).await
}

/// One attempt, as the sender logs it.
pub struct Attempt<'a> {
    pub event_id: &'a str,
    pub contact_id: Uuid,
    pub version: i64,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<&'a str>,
    pub took: Duration,
}

async fn log(tx: &mut PgConnection, id: Uuid, a: &Attempt<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO subscription_deliveries
             (id, subscription_id, event_id, contact_id, version, attempt, status_code, error, took_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(Uuid::now_v7())
    .bind(id)
    .bind(a.event_id)
    .bind(a.contact_id)
    .bind(a.version)
    .bind(a.attempt)
    .bind(a.status_code)
    .bind(a.error)
    .bind(a.took.as_millis() as i64)
    .execute(tx)
    .await?;
    Ok(())
}

/// The subscriber took the entry at `position`: logs it, moves the cursor there, ends the
/// failure run and extends the lease. False when the lease is gone (an admin disabled,
/// rewound or deleted the subscription meanwhile): the sender stops, nothing is written.
pub async fn delivered(
    pool: &PgPool,
    claimed: &Claimed,
    position: FeedPosition,
    attempt: &Attempt<'_>,
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let moved = sqlx::query(
        "UPDATE subscriptions SET cursor_txid = $3::text::xid8, cursor_entry = $4,
                last_success_at = now(), consecutive_failures = 0, failing_since = NULL,
                last_error = NULL, lease_until = now() + $5 * interval '1 millisecond'
          WHERE id = $1 AND lease_token = $2",
    )
    .bind(claimed.id)
    .bind(claimed.lease)
    .bind(position.txid.to_string())
    .bind(position.entry)
    .bind(lease.as_millis() as f64)
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() == 0 {
        return Ok(false);
    }
    log(&mut tx, claimed.id, attempt).await?;
    tx.commit().await?;
    Ok(true)
}

/// What became of a subscription after a failed attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Retried after the wait.
    Retrying,
    /// Failing for longer than allowed: disabled with a reason.
    Disabled,
    /// The lease was gone (an admin changed it meanwhile); nothing written.
    LeaseLost,
}

/// The subscriber did not take the entry: logs the attempt, counts the failure, releases the
/// lease with the next attempt `retry_in` from now, and disables the subscription when its
/// failures began more than `disable_after` ago.
pub async fn failed(
    pool: &PgPool,
    claimed: &Claimed,
    attempt: &Attempt<'_>,
    retry_in: Duration,
    disable_after: Duration,
) -> Result<AfterFailure, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let error = attempt
        .error
        .map(str::to_owned)
        .or_else(|| attempt.status_code.map(|s| format!("HTTP {s}")));
    let enabled: Option<bool> = sqlx::query_scalar(
        "UPDATE subscriptions SET
             consecutive_failures = consecutive_failures + 1,
             failing_since = COALESCE(failing_since, now()),
             last_failure_at = now(), last_error = $3,
             next_attempt_at = now() + $4 * interval '1 millisecond',
             enabled = COALESCE(failing_since, now()) > now() - $5 * interval '1 millisecond',
             disabled_reason = CASE WHEN COALESCE(failing_since, now()) > now() - $5 * interval '1 millisecond'
                                    THEN NULL
                                    ELSE 'failing since ' || COALESCE(failing_since, now())::text
                                         || ' (' || (consecutive_failures + 1)::text || ' attempts); last error: ' || $3
                               END,
             lease_token = NULL, lease_until = NULL
          WHERE id = $1 AND lease_token = $2
         RETURNING enabled",
    )
    .bind(claimed.id)
    .bind(claimed.lease)
    .bind(error)
    .bind(retry_in.as_millis() as f64)
    .bind(disable_after.as_millis() as f64)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(enabled) = enabled else {
        return Ok(AfterFailure::LeaseLost);
    };
    log(&mut tx, claimed.id, attempt).await?;
    tx.commit().await?;
    Ok(if enabled {
        AfterFailure::Retrying
    } else {
        AfterFailure::Disabled
    })
}

/// Gives the lease back; the subscription is due again `next_in` from now.
pub async fn release(
    pool: &PgPool,
    claimed: &Claimed,
    next_in: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE subscriptions SET lease_token = NULL, lease_until = NULL,
                next_attempt_at = now() + $3 * interval '1 millisecond'
          WHERE id = $1 AND lease_token = $2",
    )
    .bind(claimed.id)
    .bind(claimed.lease)
    .bind(next_in.as_millis() as f64)
    .execute(pool)
    .await?;
    Ok(())
}

/// Removes delivery-log rows older than `age`; returns how many.
pub async fn prune_deliveries(pool: &PgPool, age: Duration) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM subscription_deliveries WHERE at < now() - $1 * interval '1 millisecond'",
    )
    .bind(age.as_millis() as f64)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
