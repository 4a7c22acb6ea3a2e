//! `crm_address_index`: what a complete read of a CRM (a backfill's) found at each address —
//! the records carrying it, or none — so that delivery links a contact not yet linked, or
//! creates its record, without asking the CRM again.
//!
//! ```text
//! backfill read every CRM ─▶ remember(): per CRM, per address any CRM holds, its records there
//! delivery, contact not linked ─▶ known(): the read is recent (trust window) and
//!                                   no record found ─▶ Absent: create, no matching query
//!                                   one record, nobody else's link ─▶ Record: write onto it
//!                                   otherwise ─▶ nothing known: the CRM is asked, as ever
//! a change to a record seen since (webhook, poller) ─▶ forget_record(): its rows go
//! ```
//!
//! The index never claims more than the read found: rows only ever come from a complete read,
//! a newer read replaces an older one, and a record's later change drops its rows. Addresses
//! are digests of their normalised form, never kept in clear.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::domain::{ContactId, Crm, Email};
use crate::providers::Known;

/// A normalised address's digest: what the index keeps instead of the address.
pub type Digest = [u8; 32];

/// The digest of a normalised address.
pub fn digest(email: &Email) -> Digest {
    Sha256::digest(email.as_str().as_bytes()).into()
}

/// Records what a backfill's complete reads found: for each CRM read (with when its read
/// began), for every address any CRM's record of the job carries, that CRM's records with it.
/// An older read never replaces a newer one.
pub async fn remember(
    db: &PgPool,
    job: Uuid,
    reads: &[(Crm, DateTime<Utc>)],
) -> Result<u64, sqlx::Error> {
    let crms: Vec<&str> = reads.iter().map(|(c, _)| c.as_str()).collect();
    let times: Vec<DateTime<Utc>> = reads.iter().map(|(_, t)| *t).collect();
    let mut tx = db.begin().await?;
    // The job's records were just written: without fresh statistics the planner takes the
    // table for empty and joins it by nested loops, quadratic in a large backfill.
    sqlx::query("ANALYZE backfill_records")
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query(
        "WITH found AS (
             SELECT crm, address, array_agg(remote_id ORDER BY remote_id) AS records
             FROM backfill_records WHERE job_id = $1 AND address IS NOT NULL
             GROUP BY crm, address),
         addresses AS (SELECT DISTINCT address FROM found)
         INSERT INTO crm_address_index AS x (crm, address, records, read_at)
         SELECT c.crm, a.address, COALESCE(f.records, '{}'), c.read_at
         FROM UNNEST($2::text[], $3::timestamptz[]) AS c(crm, read_at)
         CROSS JOIN addresses a
         LEFT JOIN found f ON f.crm = c.crm AND f.address = a.address
         ON CONFLICT (crm, address) DO UPDATE SET records = EXCLUDED.records, read_at = EXCLUDED.read_at
         WHERE x.read_at <= EXCLUDED.read_at",
    )
    .bind(job)
    .bind(&crms)
    .bind(&times)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

/// What the index knows, from a read within `trust`, of these contacts' addresses in `crm`.
/// A record another contact is linked to is never offered (that contact's record is not this
/// one's to take over): the CRM is asked instead.
pub async fn known(
    db: &PgPool,
    crm: Crm,
    contacts: &[(ContactId, &Email)],
    trust: Duration,
) -> Result<HashMap<ContactId, Known>, sqlx::Error> {
    if contacts.is_empty() || trust.is_zero() {
        return Ok(HashMap::new());
    }
    let ids: Vec<Uuid> = contacts.iter().map(|(id, _)| id.0).collect();
    let addresses: Vec<Vec<u8>> = contacts.iter().map(|(_, e)| digest(e).to_vec()).collect();
    let rows: Vec<(Uuid, Vec<String>)> = sqlx::query_as(
        "SELECT u.id, x.records
         FROM UNNEST($2::uuid[], $3::bytea[]) AS u(id, address)
         JOIN crm_address_index x ON x.crm = $1 AND x.address = u.address
         WHERE x.read_at > now() - make_interval(secs => $4)
           AND cardinality(x.records) <= 1
           AND NOT EXISTS (SELECT 1 FROM crm_links l
                           WHERE l.crm = $1 AND l.remote_id = ANY(x.records) AND l.contact_id <> u.id)",
    )
    .bind(crm.as_str())
    .bind(&ids)
    .bind(&addresses)
    .bind(trust.as_secs_f64())
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, records)| {
            let known = match records.into_iter().next() {
                Some(record) => Known::Record(record),
                None => Known::Absent,
            };
            (ContactId(id), known)
        })
        .collect())
}

/// Drops what the index holds of a record of `crm` seen changing since (and of the address it
/// carries now): the read no longer tells the whole story there.
pub async fn forget_record(
    db: impl PgExecutor<'_>,
    crm: Crm,
    remote_id: &str,
    address: Option<&Email>,
) -> Result<(), sqlx::Error> {
    let address = address.map(|e| digest(e).to_vec());
    sqlx::query(
        "DELETE FROM crm_address_index
         WHERE crm = $1 AND (records @> ARRAY[$2::text] OR address = $3)",
    )
    .bind(crm.as_str())
    .bind(remote_id)
    .bind(address)
    .execute(db)
    .await?;
    Ok(())
}
