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
    pub version: i64,
    /// `api`, `hubspot` or `salesforce`.
    pub origin: String,
    /// `create`, `update` or `delete`.
    pub operation: String,
    pub changes: Vec<FieldChange>,
    pub conflicts: Vec<Conflict>,
    pub accepted_at: DateTime<Utc>,
}

/// A contact's versions, oldest first, after `after` (a version number), at most `limit`.
pub async fn list(
    pool: &PgPool,
    id: ContactId,
    after: i64,
    limit: i64,
) -> Result<Vec<VersionRow>, sqlx::Error> {
    sqlx::query(
        "SELECT version, origin, operation, changes, conflicts, accepted_at FROM contact_versions
         WHERE contact_id = $1 AND version > $2 ORDER BY version LIMIT $3",
    )
    .bind(id.0)
    .bind(after)
    .bind(limit)
    .try_map(|r: PgRow| {
        let decode = |e: serde_json::Error| sqlx::Error::Decode(Box::new(e));
        Ok(VersionRow {
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
