//! `contact_versions`: every accepted version of a contact, with where it came from, what it
//! changed and which conflicts were resolved. Written by `heads` in the accepting statement;
//! read here for `GET /contacts/{id}/history`.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row, postgres::PgRow};

use crate::domain::ContactId;
use crate::domain::merge::{Conflict, FieldChange};

/// One version as the history shows it.
#[derive(Debug, Clone)]
pub struct VersionRow {
    /// Position in the history (increasing); the page cursor.
    pub entry: i64,
    pub version: i64,
    /// `api`, `hubspot` or `salesforce`.
    pub origin: String,
    /// `create`, `update`, `delete`, or `kept` (a CRM's change lost every field).
    pub operation: String,
    pub changes: Vec<FieldChange>,
    pub conflicts: Vec<Conflict>,
    pub accepted_at: DateTime<Utc>,
}

/// Records a CRM change that changed nothing because every field lost to the policy.
pub async fn record_kept(
    tx: &mut sqlx::PgConnection,
    id: ContactId,
    version: i64,
    origin: crate::domain::Origin,
    conflicts: &[Conflict],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO contact_versions (contact_id, version, origin, operation, changes, conflicts, accepted_at)
         VALUES ($1, $2, $3, 'kept', '[]', $4, now())",
    )
    .bind(id.0)
    .bind(version)
    .bind(origin.as_str())
    .bind(sqlx::types::Json(conflicts))
    .execute(tx)
    .await?;
    Ok(())
}

/// A contact's history entries, oldest first, after entry `after`, at most `limit`.
pub async fn list(
    pool: &PgPool,
    id: ContactId,
    after: i64,
    limit: i64,
) -> Result<Vec<VersionRow>, sqlx::Error> {
    sqlx::query(
        "SELECT entry, version, origin, operation, changes, conflicts, accepted_at FROM contact_versions
         WHERE contact_id = $1 AND entry > $2 ORDER BY entry LIMIT $3",
    )
    .bind(id.0)
    .bind(after)
    .bind(limit)
    .try_map(|r: PgRow| {
        let decode = |e: serde_json::Error| sqlx::Error::Decode(Box::new(e));
        Ok(VersionRow {
            entry: r.try_get("entry")?,
            version: r.try_get("version")?,
            origin: r.try_get("origin")?,
            operation: r.try_get("operation")?,
            changes: serde_json::from_value(r.try_get("changes")?).map_err(decode)?,
            conflicts: serde_json::from_value(r.try_get("conflicts")?).map_err(decode)?,
            accepted_at: r.try_get("accepted_at")?,
        })
    })
    .fetch_all(pool)
    .await
}
