//! `backfill_addresses`: which records of a CRM carry which address (as a digest), noted by a
//! backfill's first pass so its second pass can tell an address several records share.

use std::collections::BTreeMap;

use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::Crm;

/// A normalised address's digest: what the table keeps instead of the address.
pub type Digest = [u8; 32];

/// Notes that these records carry these addresses (again: nothing changes).
pub async fn note(
    db: &PgPool,
    job: Uuid,
    crm: Crm,
    records: &[(Digest, String)],
) -> Result<(), sqlx::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let (addresses, ids): (Vec<Vec<u8>>, Vec<String>) = records
        .iter()
        .map(|(d, id)| (d.to_vec(), id.clone()))
        .unzip();
    sqlx::query(
        "INSERT INTO backfill_addresses (job_id, crm, address, remote_id)
         SELECT $1, $2, a, r FROM UNNEST($3::bytea[], $4::text[]) AS t(a, r)
         ON CONFLICT DO NOTHING",
    )
    .bind(job)
    .bind(crm.as_str())
    .bind(&addresses)
    .bind(&ids)
    .execute(db)
    .await?;
    Ok(())
}

/// Which records of each CRM were noted with these addresses: per address, per CRM, the
/// records' ids (sorted).
pub async fn noted(
    db: &PgPool,
    job: Uuid,
    addresses: &[Digest],
) -> Result<BTreeMap<Digest, BTreeMap<Crm, Vec<String>>>, sqlx::Error> {
    let wanted: Vec<Vec<u8>> = addresses.iter().map(|d| d.to_vec()).collect();
    let rows: Vec<(Vec<u8>, String, Vec<String>)> = sqlx::query_as(
        "SELECT address, crm, array_agg(remote_id ORDER BY remote_id)
         FROM backfill_addresses
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

/// Forgets a finished job's notes.
pub async fn forget(db: &PgPool, job: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM backfill_addresses WHERE job_id = $1")
        .bind(job)
        .execute(db)
        .await?;
    Ok(())
}
