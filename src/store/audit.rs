//! `admin_audit`: the admin actions that changed the dead-letter queue, a push subscription or
//! the jobs — who (a key id, never the key), what, which entries, subscription or job, when — for
//! admins to read back (`GET /admin/audit`).
//!
//! A row is written in the same transaction as the change it records, so a committed replay or
//! discard always has its row and a rolled-back one never has. Failed authentications and the
//! start-up configuration are log events (target `audit`), not rows: they change nothing.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Row, Transaction, postgres::PgRow};
use uuid::Uuid;

/// What an admin did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `POST /dlq/{id}/replay`.
    Replay,
    /// `POST /dlq/replay`.
    ReplayMatching,
    /// `DELETE /dlq/{id}`.
    Discard,
    /// `POST /dlq/discard`.
    DiscardMatching,
    /// `POST /admin/subscriptions`.
    SubscriptionCreate,
    /// `PATCH /admin/subscriptions/{id}`.
    SubscriptionUpdate,
    /// `DELETE /admin/subscriptions/{id}`.
    SubscriptionDelete,
    /// `POST /admin/subscriptions/{id}/replay`.
    SubscriptionReplay,
    /// `POST /admin/subscriptions/{id}/rotate-secret`.
    SubscriptionRotateSecret,
    /// `POST /admin/jobs`.
    JobCreate,
    /// `POST /admin/jobs/{id}/cancel`.
    JobCancel,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replay => "replay",
            Self::ReplayMatching => "replay_matching",
            Self::Discard => "discard",
            Self::DiscardMatching => "discard_matching",
            Self::SubscriptionCreate => "subscription_create",
            Self::SubscriptionUpdate => "subscription_update",
            Self::SubscriptionDelete => "subscription_delete",
            Self::SubscriptionReplay => "subscription_replay",
            Self::SubscriptionRotateSecret => "subscription_rotate_secret",
            Self::JobCreate => "job_create",
            Self::JobCancel => "job_cancel",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Replay,
            Self::ReplayMatching,
            Self::Discard,
            Self::DiscardMatching,
            Self::SubscriptionCreate,
            Self::SubscriptionUpdate,
            Self::SubscriptionDelete,
            Self::SubscriptionReplay,
            Self::SubscriptionRotateSecret,
            Self::JobCreate,
            Self::JobCancel,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// Who asked for an admin action and how: what each of its rows records besides the entries.
#[derive(Clone, Debug)]
pub struct Requested {
    /// The key's id (the first 16 hex digits of its SHA-256).
    pub key_id: String,
    /// A bulk action's query string as given (`crm=hubspot&status=parked`), what a subscription
    /// action asked for (`enabled=false`, `since=…`), or a job's kind; `None` for an action on
    /// one entry.
    pub filter: Option<String>,
}

/// Records that `by` did `action` to `entry_ids`, inside the caller's transaction.
pub async fn record(
    tx: &mut Transaction<'_, Postgres>,
    by: &Requested,
    action: Action,
    entry_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO admin_audit (id, key_id, action, filter, entry_ids) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::now_v7())
    .bind(&by.key_id)
    .bind(action.as_str())
    .bind(by.filter.as_deref())
    .bind(entry_ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One recorded action.
#[derive(Clone, Debug)]
pub struct AuditRow {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub key_id: String,
    pub action: Action,
    pub filter: Option<String>,
    pub entry_ids: Vec<Uuid>,
}

/// A page of actions, newest first (ids are time-ordered UUIDv7), older than `before`.
pub async fn list(
    pool: &PgPool,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query(
        "SELECT id, at, key_id, action, filter, entry_ids FROM admin_audit
         WHERE ($1::uuid IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
    )
    .bind(before)
    .bind(limit)
    .try_map(|r: PgRow| {
        let action: String = r.try_get("action")?;
        let action = Action::parse(&action)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown audit action {action}").into()))?;
        Ok(AuditRow {
            id: r.try_get("id")?,
            at: r.try_get("at")?,
            key_id: r.try_get("key_id")?,
            action,
            filter: r.try_get("filter")?,
            entry_ids: r.try_get("entry_ids")?,
        })
    })
    .fetch_all(pool)
    .await
}
