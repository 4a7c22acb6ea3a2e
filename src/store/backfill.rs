//! `backfill_records`: every live record a backfill read, with its values, kept until the job
//! has read every CRM and matched them (each CRM is read once). Addresses are kept as digests
//! of their normalised form; a job's rows go when it finishes.
//!
//! What it is not: the lasting address index a finished read leaves behind
//! ([`super::address_index`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{Crm, FieldValues};
use crate::providers::RemoteRecord;

pub use super::address_index::Digest;

/// Keeps these records of a page (a page read again changes nothing).
pub async fn keep(
    db: &PgPool,
    job: Uuid,
    crm: Crm,
    records: &[(Option<Digest>, &RemoteRecord)],
) -> Result<(), sqlx::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(records.len());
    let mut addresses = Vec::with_capacity(records.len());
    let mut values = Vec::with_capacity(records.len());
    let mut modified = Vec::with_capacity(records.len());
    let mut external = Vec::with_capacity(records.len());
    for (digest, r) in records {
        ids.push(r.remote_id.clone());
        addresses.push(digest.map(|d| d.to_vec()));
        values.push(serde_json::to_value(&r.values).map_err(|e| sqlx::Error::Encode(e.into()))?);
        modified.push(r.modified_at);
        external.push(r.external_id.clone());
    }
    sqlx::query(
        "INSERT INTO backfill_records (job_id, crm, remote_id, address, record, modified_at, external_id)
         SELECT $1, $2, r, a, v, m, x
         FROM UNNEST($3::text[], $4::bytea[], $5::jsonb[], $6::timestamptz[], $7::text[]) AS t(r, a, v, m, x)
         ON CONFLICT DO NOTHING",
    )
    .bind(job)
    .bind(crm.as_str())
    .bind(&ids)
    .bind(&addresses)
    .bind(&values)
    .bind(&modified)
    .bind(&external)
    .execute(db)
    .await?;
    Ok(())
}

/// How many records the job read, all CRMs together.
pub async fn count(db: &PgPool, job: Uuid) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM backfill_records WHERE job_id = $1")
        .bind(job)
        .fetch_one(db)
        .await?;
    Ok(n.max(0) as u64)
}

/// A kept record, its address, and whether an earlier CRM's apply pass merged it.
pub struct Pending {
    pub address: Option<Digest>,
    pub record: RemoteRecord,
    pub merged: bool,
}

/// Up to `limit` of the records read from `crm`, in record-id order, after `after`.
pub async fn page(
    db: &PgPool,
    job: Uuid,
    crm: Crm,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Pending>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT remote_id, address, record, modified_at, external_id, merged FROM backfill_records
         WHERE job_id = $1 AND crm = $2 AND ($3::text IS NULL OR remote_id > $3)
         ORDER BY remote_id LIMIT $4",
    )
    .bind(job)
    .bind(crm.as_str())
    .bind(after)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(db)
    .await?;
    rows.into_iter().map(pending).collect()
}

/// The records of `crm` with these ids.
pub async fn by_id(
    db: &PgPool,
    job: Uuid,
    crm: Crm,
    ids: &[String],
) -> Result<Vec<Pending>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT remote_id, address, record, modified_at, external_id, merged FROM backfill_records
         WHERE job_id = $1 AND crm = $2 AND remote_id = ANY($3)",
    )
    .bind(job)
    .bind(crm.as_str())
    .bind(ids)
    .fetch_all(db)
    .await?;
    rows.into_iter().map(pending).collect()
}

/// Notes that an earlier CRM's apply pass merged this record into its contact.
pub async fn merged(db: &PgPool, job: Uuid, crm: Crm, remote_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE backfill_records SET merged = true WHERE job_id = $1 AND crm = $2 AND remote_id = $3",
    )
    .bind(job)
    .bind(crm.as_str())
    .bind(remote_id)
    .execute(db)
    .await?;
    Ok(())
}

type Row = (
    String,
    Option<Vec<u8>>,
    serde_json::Value,
    DateTime<Utc>,
    Option<String>,
    bool,
);

fn pending(
    (remote_id, address, record, modified_at, external_id, merged): Row,
) -> Result<Pending, sqlx::Error> {
    let values: FieldValues =
        serde_json::from_value(record).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Pending {
        address: address.and_then(|a| Digest::try_from(a.as_slice()).ok()),
        record: RemoteRecord {
            remote_id,
            values,
            modified_at,
            external_id,
        },
        merged,
    })
}

/// Which records of each CRM carry these addresses: per address, per CRM, the records' ids
/// (sorted).
pub async fn holders(
    db: &PgPool,
    job: Uuid,
    addresses: &[Digest],
) -> Result<BTreeMap<Digest, BTreeMap<Crm, Vec<String>>>, sqlx::Error> {
    let wanted: Vec<Vec<u8>> = addresses.iter().map(|d| d.to_vec()).collect();
    let rows: Vec<(Vec<u8>, String, Vec<String>)> = sqlx::query_as(
        "SELECT address, crm, array_agg(remote_id ORDER BY remote_id)
         FROM backfill_records
         WHERE job_id = $1 AND address = ANY($2)
         GROUP BY address, crm",
    )
    .bind(job)
    .bind(&wanted)
    .fetch_all(db)
    .await?;
    let mut out: BTreeMap<Digest, BTreeMap<Crm, Vec<String>>> = BTreeMap::new();
    for (address, crm, ids) in rows {
        let (Ok(digest), Some(crm)) = (
            Digest::try_from(address.as_slice()),
            crm.parse::<Crm>().ok(),
        ) else {
            continue;
        };
        out.entry(digest).or_default().insert(crm, ids);
    }
    Ok(out)
}

/// Forgets a finished job's records.
pub async fn forget(db: &PgPool, job: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM backfill_records WHERE job_id = $1")
        .bind(job)
        .execute(db)
        .await?;
    Ok(())
}

/// Refreshes the planner's statistics of the tables a backfill fills (contacts, their heads and
/// links). A backfill can grow them from nothing to tens of thousands of rows faster than
/// autovacuum analyses them, and statements planned (and cached) while they were small then
/// scan them whole: one look-up a record took tens of milliseconds.
pub async fn analyze_growing(db: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("ANALYZE contact_heads, contacts, crm_links")
        .execute(db)
        .await
        .map(|_| ())
}
