//! `subscriptions` and `subscription_deliveries`: push subscriptions to the change feed, their
//! cursors and leases, and the log of every delivery attempt.
//!
//! A subscription's cursor is a [`FeedPosition`]: the sender reads [`history::feed`] after it
//! and moves it on only once the subscriber answered 2xx. A sender takes a subscription with a
//! lease (a token and an expiry, set in a short statement) rather than a row lock held across
//! HTTP calls: an open transaction would hold the feed's `xmin`, and every feed reader with it.
//! Every write of the sender names its lease token, so an admin's change that drops the lease
//! (disable, replay, delete) stops a sender that is mid-way. The sender's queries are in
//! [`sending`]; the admins' here.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use super::history::FeedPosition;

mod sending;
pub use sending::{
    AfterFailure, Attempt, Claimed, claim, delivered, failed, next_entries, prune_deliveries,
    release,
};

/// Where a new subscription starts, or a replay goes back to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// After every entry committed so far: only what comes next.
    Now,
    /// Before the feed's first entry.
    Beginning,
    /// Before the first entry (in feed order) accepted at or after this time.
    At(DateTime<Utc>),
}

/// One subscription as admins see it (the secret is not read here).
#[derive(Clone, Debug)]
pub struct SubscriptionRow {
    pub id: Uuid,
    pub url: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub cursor: FeedPosition,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub consecutive_failures: i32,
    pub failing_since: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
    /// When the secret a rotation replaced stops signing deliveries; `None` without one. It
    /// may lie in the past until the sender next takes the subscription and forgets it.
    pub previous_secret_until: Option<DateTime<Utc>>,
}

/// The columns [`subscription_row`] reads (a macro, so queries stay static strings).
macro_rules! columns {
    () => {
        "id, url, description, enabled, disabled_reason, cursor_txid::text AS cursor_txid,
         cursor_entry, created_at, updated_at, last_success_at, last_failure_at, last_error,
         consecutive_failures, failing_since, next_attempt_at, previous_secret_until"
    };
}

fn position(r: &PgRow, txid: &str, entry: &str) -> Result<FeedPosition, sqlx::Error> {
    let t: String = r.try_get(txid)?;
    Ok(FeedPosition {
        txid: t.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        entry: r.try_get(entry)?,
    })
}

fn subscription_row(r: PgRow) -> Result<SubscriptionRow, sqlx::Error> {
    Ok(SubscriptionRow {
        id: r.try_get("id")?,
        url: r.try_get("url")?,
        description: r.try_get("description")?,
        enabled: r.try_get("enabled")?,
        disabled_reason: r.try_get("disabled_reason")?,
        cursor: position(&r, "cursor_txid", "cursor_entry")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        last_success_at: r.try_get("last_success_at")?,
        last_failure_at: r.try_get("last_failure_at")?,
        last_error: r.try_get("last_error")?,
        consecutive_failures: r.try_get("consecutive_failures")?,
        failing_since: r.try_get("failing_since")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        previous_secret_until: r.try_get("previous_secret_until")?,
    })
}

/// The feed position `start` names. `Now` is the oldest transaction still running (the
/// snapshot's `xmin`), entry 0: every entry of a finished transaction is before it, and every
/// entry of one still running (which the feed does not serve yet) after it.
pub async fn position_at(pool: &PgPool, start: Start) -> Result<FeedPosition, sqlx::Error> {
    let now = || async {
        let xmin: String =
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
                .fetch_one(pool)
                .await?;
        Ok::<_, sqlx::Error>(FeedPosition {
            txid: xmin.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            entry: 0,
        })
    };
    match start {
        Start::Beginning => Ok(FeedPosition::default()),
        Start::Now => now().await,
        Start::At(at) => {
            let first = sqlx::query(
                "SELECT txid::text AS txid, entry FROM contact_versions
                  WHERE accepted_at >= $1 AND txid < pg_snapshot_xmin(pg_current_snapshot())
                  ORDER BY txid, entry LIMIT 1",
            )
            .bind(at)
            .try_map(|r: PgRow| position(&r, "txid", "entry"))
            .fetch_optional(pool)
            .await?;
            match first {
                // Just before it: entry numbers are positive, and nothing lies between
                // (txid, entry - 1) and (txid, entry).
                Some(p) => Ok(FeedPosition {
                    txid: p.txid,
                    entry: p.entry - 1,
                }),
                None => now().await,
            }
        }
    }
}

/// A subscription to create.
pub struct NewSubscription<'a> {
    pub id: Uuid,
    pub url: &'a str,
    pub description: Option<&'a str>,
    pub secret: &'a str,
    pub cursor: FeedPosition,
}

pub async fn create(
    tx: &mut PgConnection,
    new: &NewSubscription<'_>,
) -> Result<SubscriptionRow, sqlx::Error> {
    sqlx::query(concat!(
        "INSERT INTO subscriptions (id, url, description, secret, cursor_txid, cursor_entry)
         VALUES ($1, $2, $3, $4, $5::text::xid8, $6) RETURNING ",
        columns!(),
        ""
    ))
    .bind(new.id)
    .bind(new.url)
    .bind(new.description)
    .bind(new.secret)
    .bind(new.cursor.txid.to_string())
    .bind(new.cursor.entry)
    .try_map(subscription_row)
    .fetch_one(tx)
    .await
}

/// Every subscription, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<SubscriptionRow>, sqlx::Error> {
    sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM subscriptions ORDER BY created_at, id"
    ))
    .try_map(subscription_row)
    .fetch_all(pool)
    .await
}

pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<SubscriptionRow>, sqlx::Error> {
    sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM subscriptions WHERE id = $1"
    ))
    .bind(id)
    .try_map(subscription_row)
    .fetch_optional(pool)
    .await
}

/// What a PATCH changes; `None` leaves a column as it is.
#[derive(Debug, Default)]
pub struct Patch {
    pub enabled: Option<bool>,
    pub url: Option<String>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
}

/// Applies `patch`. Any change drops a sender's lease, so the next attempt uses the new URL
/// at once; enabling clears the failure run and the reason, and the subscription resumes from
/// its cursor.
pub async fn update(
    tx: &mut PgConnection,
    id: Uuid,
    patch: &Patch,
) -> Result<Option<SubscriptionRow>, sqlx::Error> {
    sqlx::query(concat!(
        "UPDATE subscriptions SET
             url = COALESCE($2, url),
             description = CASE WHEN $3 THEN $4 ELSE description END,
             enabled = COALESCE($5, enabled),
             disabled_reason = CASE WHEN $5 IS NULL THEN disabled_reason ELSE NULL END,
             consecutive_failures = CASE WHEN $5 THEN 0 ELSE consecutive_failures END,
             failing_since = CASE WHEN $5 THEN NULL ELSE failing_since END,
             next_attempt_at = CASE WHEN $5 THEN now() ELSE next_attempt_at END,
             lease_token = NULL, lease_until = NULL, updated_at = now()
         WHERE id = $1 RETURNING ",
        columns!(),
        ""
    ))
    .bind(id)
    .bind(patch.url.as_deref())
    .bind(patch.description.is_some())
    .bind(patch.description.clone().flatten())
    .bind(patch.enabled)
    .try_map(subscription_row)
    .fetch_optional(tx)
    .await
}

/// Deletes a subscription and its delivery log; false if there was none.
pub async fn delete(tx: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM subscriptions WHERE id = $1")
        .bind(id)
        .execute(tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces the signing secret with `secret`. The secret it replaces keeps signing beside it
/// for `overlap` (none when zero); a previous secret kept from an earlier rotation is dropped.
/// Drops a sender's lease, so the next delivery is signed with the new secret.
pub async fn rotate_secret(
    tx: &mut PgConnection,
    id: Uuid,
    secret: &str,
    overlap: Duration,
) -> Result<Option<SubscriptionRow>, sqlx::Error> {
    // The right-hand sides read the row as it was: `previous_secret = secret` keeps the one
    // being replaced.
    sqlx::query(concat!(
        "UPDATE subscriptions SET secret = $2,
                previous_secret = CASE WHEN $3 > 0 THEN secret END,
                previous_secret_until = CASE WHEN $3 > 0 THEN now() + $3 * interval '1 millisecond' END,
                lease_token = NULL, lease_until = NULL, updated_at = now()
          WHERE id = $1 RETURNING ",
        columns!(),
        ""
    ))
    .bind(id)
    .bind(secret)
    .bind(overlap.as_millis() as f64)
    .try_map(subscription_row)
    .fetch_optional(tx)
    .await
}

/// Moves the cursor to `cursor` (a replay) and drops a sender's lease, so a sender mid-way
/// cannot move it forward again; the next attempt is due at once.
pub async fn rewind(
    tx: &mut PgConnection,
    id: Uuid,
    cursor: FeedPosition,
) -> Result<Option<SubscriptionRow>, sqlx::Error> {
    sqlx::query(concat!(
        "UPDATE subscriptions SET cursor_txid = $2::text::xid8, cursor_entry = $3,
                next_attempt_at = now(), lease_token = NULL, lease_until = NULL, updated_at = now()
          WHERE id = $1 RETURNING ",
        columns!(),
        ""
    ))
    .bind(id)
    .bind(cursor.txid.to_string())
    .bind(cursor.entry)
    .try_map(subscription_row)
    .fetch_optional(tx)
    .await
}

/// Most feed entries [`pending`] counts.
pub const PENDING_MAX: i64 = 10_000;

/// Entries the feed serves after `cursor`, counted up to [`PENDING_MAX`].
pub async fn pending(pool: &PgPool, cursor: FeedPosition) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM contact_versions
          WHERE (txid, entry) > ($1::text::xid8, $2)
            AND txid < pg_snapshot_xmin(pg_current_snapshot()) LIMIT $3) AS p",
    )
    .bind(cursor.txid.to_string())
    .bind(cursor.entry)
    .bind(PENDING_MAX)
    .fetch_one(pool)
    .await
}

/// One attempt in the delivery log.
#[derive(Clone, Debug)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub event_id: String,
    pub contact_id: Uuid,
    pub version: i64,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub took_ms: i64,
    pub at: DateTime<Utc>,
}

/// A page of a subscription's delivery log, newest first, older than `before`.
pub async fn deliveries(
    pool: &PgPool,
    id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query(
        "SELECT id, event_id, contact_id, version, attempt, status_code, error, took_ms, at
           FROM subscription_deliveries
          WHERE subscription_id = $1 AND ($2::uuid IS NULL OR id < $2)
          ORDER BY id DESC LIMIT $3",
    )
    .bind(id)
    .bind(before)
    .bind(limit)
    .try_map(|r: PgRow| {
        Ok(DeliveryRow {
            id: r.try_get("id")?,
            event_id: r.try_get("event_id")?,
            contact_id: r.try_get("contact_id")?,
            version: r.try_get("version")?,
            attempt: r.try_get("attempt")?,
            status_code: r.try_get("status_code")?,
            error: r.try_get("error")?,
            took_ms: r.try_get("took_ms")?,
            at: r.try_get("at")?,
        })
    })
    .fetch_all(pool)
    .await
}
