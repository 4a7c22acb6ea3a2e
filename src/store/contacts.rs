//! `contacts`: the contact as the forwarder persisted it, and the API's reads of it.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{ChangeOp, ContactChange, ContactId};

/// A persisted contact (live or tombstone).
#[derive(Debug, Clone)]
pub struct ContactRow {
    pub id: ContactId,
    pub version: i64,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub job_title: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// What applying a change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The row now holds this change.
    New,
    /// The row already held this very change (a redelivery).
    Already,
    /// The row holds a newer change; this one is stale.
    Stale,
    /// The API never committed this change (its acceptance rolled back after the broker had
    /// confirmed the message), so it is not applied.
    NotAccepted,
}

/// Applies a change if the API committed it, unless the row already holds it or a newer one.
///
/// Acceptance: under the contact's advisory lock (shared; the API holds it exclusively from
/// before its publish until its commit), the head must hold this change or a later one. A
/// change whose acceptance rolled back is skipped, so a 503 never leaves a change behind.
///
/// Order is `(version, updated_at)`: the sequence number first, and the acceptance time as the
/// tie-break for the one case two messages share a number (one rolled back after the broker's
/// confirm, and the next accepted change reused the number; the later, accepted one wins).
pub async fn apply(pool: &PgPool, change: &ContactChange) -> Result<Applied, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
        .bind(super::heads::lock_key(change.contact_id))
        .execute(&mut *tx)
        .await?;
    let head: Option<(i64, Option<Uuid>)> =
        sqlx::query_as("SELECT seq, message_id FROM contact_heads WHERE id = $1")
            .bind(change.contact_id.0)
            .fetch_optional(&mut *tx)
            .await?;
    let accepted = match head {
        None => false,
        Some((seq, _)) if seq < change.seq => false,
        Some((seq, Some(m))) if seq == change.seq => m == change.message_id,
        Some(_) => true,
    };
    if !accepted {
        return Ok(Applied::NotAccepted);
    }
    let c = &change.contact;
    let deleted_at = (change.op == ChangeOp::Delete).then_some(change.accepted_at);
    let done = sqlx::query(
        "INSERT INTO contacts AS t (id, version, email, first_name, last_name, phone, company, job_title,
                                    created_at, updated_at, deleted_at, last_message_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (id) DO UPDATE SET
             version = EXCLUDED.version, email = EXCLUDED.email, first_name = EXCLUDED.first_name,
             last_name = EXCLUDED.last_name, phone = EXCLUDED.phone, company = EXCLUDED.company,
             job_title = EXCLUDED.job_title, updated_at = EXCLUDED.updated_at,
             deleted_at = EXCLUDED.deleted_at, last_message_id = EXCLUDED.last_message_id,
             persisted_at = now()
         WHERE (t.version, t.updated_at) < (EXCLUDED.version, EXCLUDED.updated_at)",
    )
    .bind(change.contact_id.0)
    .bind(change.seq)
    .bind(c.email.as_str())
    .bind(&c.first_name)
    .bind(&c.last_name)
    .bind(&c.phone)
    .bind(&c.company)
    .bind(&c.job_title)
    .bind(change.created_at)
    .bind(change.accepted_at)
    .bind(deleted_at)
    .bind(change.message_id)
    .execute(&mut *tx)
    .await?;
    let applied = if done.rows_affected() == 1 {
        Applied::New
    } else {
        let holder: Option<Uuid> =
            sqlx::query_scalar("SELECT last_message_id FROM contacts WHERE id = $1")
                .bind(change.contact_id.0)
                .fetch_optional(&mut *tx)
                .await?;
        if holder == Some(change.message_id) {
            Applied::Already
        } else {
            Applied::Stale
        }
    };
    tx.commit().await?;
    Ok(applied)
}
