//! `crm_links`: each contact's record id and delivery state in each CRM.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row, postgres::PgRow};
use uuid::Uuid;

use crate::domain::{ContactFields, ContactId, Crm, Email};

/// A contact as the delivery worker needs it: its persisted state and its link to one CRM.
#[derive(Debug, Clone)]
pub struct Deliverable {
    pub id: ContactId,
    pub version: i64,
    /// `None` for a deleted contact (tombstone).
    pub contact: Option<ContactFields>,
    /// The last state of a deleted contact (to find an unlinked remote record).
    pub last_email: Option<Email>,
    pub remote_id: Option<String>,
    pub synced_version: Option<i64>,
}

/// Loads the contacts with these ids and their links to `crm`.
pub async fn load_deliverables(
    pool: &PgPool,
    crm: Crm,
    ids: &[Uuid],
) -> Result<Vec<Deliverable>, sqlx::Error> {
    sqlx::query(
        "SELECT c.id, c.version, c.email, c.first_name, c.last_name, c.phone, c.company, c.job_title, c.deleted_at,
                l.remote_id, l.synced_version
         FROM contacts c LEFT JOIN crm_links l ON l.crm = $1 AND l.contact_id = c.id
         WHERE c.id = ANY($2)",
    )
    .bind(crm.as_str())
    .bind(ids)
    .try_map(|r: PgRow| deliverable(&r))
    .fetch_all(pool)
    .await
}

fn deliverable(r: &PgRow) -> Result<Deliverable, sqlx::Error> {
    let email: String = r.try_get("email")?;
    // Stored addresses passed `Email::parse` at acceptance; a row that fails it now is corrupt.
    let email = Email::parse(&email).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let deleted: Option<DateTime<Utc>> = r.try_get("deleted_at")?;
    let fields = ContactFields {
        email: email.clone(),
        first_name: r.try_get("first_name")?,
        last_name: r.try_get("last_name")?,
        phone: r.try_get("phone")?,
        company: r.try_get("company")?,
        job_title: r.try_get("job_title")?,
    };
    Ok(Deliverable {
        id: ContactId(r.try_get("id")?),
        version: r.try_get("version")?,
        contact: deleted.is_none().then_some(fields),
        last_email: Some(email),
        remote_id: r.try_get("remote_id")?,
        synced_version: r.try_get("synced_version")?,
    })
}

/// The outcome of one attempt for one contact.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub contact_id: ContactId,
    pub version: i64,
    /// `Ok(remote id)` when the CRM now holds `version`; `Err((retryable, message))` otherwise.
    pub result: Result<Option<String>, (bool, String)>,
}

/// Records a batch of attempts in one statement.
pub async fn record(pool: &PgPool, crm: Crm, attempts: &[Attempt]) -> Result<(), sqlx::Error> {
    if attempts.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = attempts.iter().map(|a| a.contact_id.0).collect();
    let versions: Vec<i64> = attempts.iter().map(|a| a.version).collect();
    let remote: Vec<Option<String>> = attempts
        .iter()
        .map(|a| a.result.as_ref().ok().cloned().flatten())
        .collect();
    let states: Vec<&str> = attempts
        .iter()
        .map(|a| match &a.result {
            Ok(_) => "synced",
            Err((true, _)) => "retrying",
            Err((false, _)) => "failed",
        })
        .collect();
    let errors: Vec<Option<&str>> = attempts
        .iter()
        .map(|a| a.result.as_ref().err().map(|(_, m)| m.as_str()))
        .collect();
    sqlx::query(
        "INSERT INTO crm_links AS l (crm, contact_id, remote_id, synced_version, synced_at, attempt_version, state, attempts, last_attempt_at, last_error)
         SELECT $1, u.id, u.remote, CASE WHEN u.state = 'synced' THEN u.version END, CASE WHEN u.state = 'synced' THEN now() END,
                u.version, u.state, CASE WHEN u.state = 'synced' THEN 0 ELSE 1 END, now(), u.error
         FROM UNNEST($2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[]) AS u(id, version, remote, state, error)
         ON CONFLICT (crm, contact_id) DO UPDATE SET
             remote_id = COALESCE(EXCLUDED.remote_id, l.remote_id),
             synced_version = CASE WHEN EXCLUDED.state = 'synced'
                                   THEN GREATEST(COALESCE(l.synced_version, 0), EXCLUDED.attempt_version)
                                   ELSE l.synced_version END,
             synced_at = CASE WHEN EXCLUDED.state = 'synced' THEN now() ELSE l.synced_at END,
             attempt_version = EXCLUDED.attempt_version,
             state = EXCLUDED.state,
             attempts = CASE WHEN EXCLUDED.state = 'synced' THEN 0 ELSE l.attempts + 1 END,
             last_attempt_at = now(),
             last_error = EXCLUDED.last_error",
    )
    .bind(crm.as_str())
    .bind(&ids)
    .bind(&versions)
    .bind(&remote)
    .bind(&states)
    .bind(&errors)
    .execute(pool)
    .await?;
    Ok(())
}

/// A contact's link to one CRM, as the API shows it.
#[derive(Debug, Clone)]
pub struct LinkRow {
    pub crm: String,
    pub remote_id: Option<String>,
    pub synced_version: Option<i64>,
    pub attempt_version: i64,
    pub state: String,
    pub last_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

/// Every link of several contacts (for list pages).
pub async fn for_contacts(
    pool: &PgPool,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, LinkRow)>, sqlx::Error> {
    sqlx::query(
        "SELECT contact_id, crm, remote_id, synced_version, attempt_version, state, last_attempt_at, last_error
         FROM crm_links WHERE contact_id = ANY($1)",
    )
    .bind(ids)
    .try_map(|r: PgRow| {
        Ok((
            r.try_get("contact_id")?,
            LinkRow {
                crm: r.try_get("crm")?,
                remote_id: r.try_get("remote_id")?,
                synced_version: r.try_get("synced_version")?,
                attempt_version: r.try_get("attempt_version")?,
                state: r.try_get("state")?,
                last_attempt_at: r.try_get("last_attempt_at")?,
                last_error: r.try_get("last_error")?,
            },
        ))
    })
    .fetch_all(pool)
    .await
}
