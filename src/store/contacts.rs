//! `contacts`: the contact as the forwarder persisted it, and the API's reads of it.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
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

/// Whether the API committed `change`, by the contact's head (`seq`, `message_id`) read once
/// no acceptance of the contact is in progress: the head holds this change or a later one.
fn accepted(head: Option<(i64, Option<Uuid>)>, change: &ContactChange) -> bool {
    match head {
        None => false,
        Some((seq, _)) if seq < change.seq => false,
        Some((seq, Some(m))) if seq == change.seq => m == change.message_id,
        Some(_) => true,
    }
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
    if !accepted(head, change) {
        return Ok(Applied::NotAccepted);
    }
    let applied = write(&mut tx, &[change]).await?[0];
    tx.commit().await?;
    Ok(applied)
}

/// Waits until no acceptance of these contacts is in progress (the API holds a contact's lock
/// from before its publish until its commit), one contact at a time and never holding one
/// contact's lock while waiting for another's: each lock is taken shared and let go at once.
pub async fn wait_for_acceptances(pool: &PgPool, ids: &[ContactId]) -> Result<(), sqlx::Error> {
    let keys: Vec<i64> = ids.iter().map(|id| super::heads::lock_key(*id)).collect();
    sqlx::query(
        "SELECT pg_advisory_lock_shared(k), pg_advisory_unlock_shared(k)
         FROM UNNEST($1::bigint[]) WITH ORDINALITY AS u(k, n) ORDER BY n",
    )
    .bind(&keys)
    .execute(pool)
    .await?;
    Ok(())
}

/// [`apply`] for many changes of distinct contacts in one transaction and a few statements.
/// A change whose contact has an acceptance in progress (the API holds its lock) is not
/// waited for: its answer is `None`, and the caller applies it alone. So the transaction
/// never waits for a lock while it holds others, and cannot deadlock with the API's
/// acceptances, which take several contacts' locks in their own order.
pub async fn apply_many(
    pool: &PgPool,
    changes: &[&ContactChange],
) -> Result<Vec<Option<Applied>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let keys: Vec<i64> = changes
        .iter()
        .map(|c| super::heads::lock_key(c.contact_id))
        .collect();
    let locked: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock_shared(k)
         FROM UNNEST($1::bigint[]) WITH ORDINALITY AS u(k, n) ORDER BY n",
    )
    .bind(&keys)
    .fetch_all(&mut *tx)
    .await?;
    let ids: Vec<Uuid> = changes.iter().map(|c| c.contact_id.0).collect();
    let heads: HashMap<Uuid, (i64, Option<Uuid>)> = sqlx::query_as::<_, (Uuid, i64, Option<Uuid>)>(
        "SELECT id, seq, message_id FROM contact_heads WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|(id, seq, m)| (id, (seq, m)))
    .collect();
    let mut out: Vec<Option<Applied>> = vec![None; changes.len()];
    // The accepted changes.
    let mut apply: Vec<usize> = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        if !locked.get(i).copied().unwrap_or(false) {
            continue;
        }
        match accepted(heads.get(&change.contact_id.0).copied(), change) {
            true => apply.push(i),
            false => out[i] = Some(Applied::NotAccepted),
        }
    }
    let accepted: Vec<&ContactChange> = apply.iter().map(|&i| changes[i]).collect();
    for (i, applied) in apply.into_iter().zip(write(&mut tx, &accepted).await?) {
        out[i] = Some(applied);
    }
    tx.commit().await?;
    Ok(out)
}

/// Writes accepted changes of distinct contacts into `contacts`, each unless the row holds it
/// or a newer one: what each did, in order. Rows are written in the order of their ids, so two
/// transactions writing some of the same rows never wait for each other in a cycle.
async fn write(
    tx: &mut PgConnection,
    changes: &[&ContactChange],
) -> Result<Vec<Applied>, sqlx::Error> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let mut sorted = changes.to_vec();
    sorted.sort_by_key(|c| c.contact_id.0);
    let pick = |f: &dyn Fn(&ContactChange) -> Option<String>| -> Vec<Option<String>> {
        sorted.iter().map(|c| f(c)).collect()
    };
    let emails = pick(&|c| Some(c.contact.email.as_str().to_owned()));
    let first = pick(&|c| c.contact.first_name.clone());
    let last = pick(&|c| c.contact.last_name.clone());
    let phone = pick(&|c| c.contact.phone.clone());
    let company = pick(&|c| c.contact.company.clone());
    let title = pick(&|c| c.contact.job_title.clone());
    let ids: Vec<Uuid> = sorted.iter().map(|c| c.contact_id.0).collect();
    let seqs: Vec<i64> = sorted.iter().map(|c| c.seq).collect();
    let created: Vec<DateTime<Utc>> = sorted.iter().map(|c| c.created_at).collect();
    let updated: Vec<DateTime<Utc>> = sorted.iter().map(|c| c.accepted_at).collect();
    let deleted: Vec<Option<DateTime<Utc>>> = sorted
        .iter()
        .map(|c| (c.op == ChangeOp::Delete).then_some(c.accepted_at))
        .collect();
    let messages: Vec<Uuid> = sorted.iter().map(|c| c.message_id).collect();
    let written: HashSet<Uuid> = sqlx::query_scalar(
        "INSERT INTO contacts AS t (id, version, email, first_name, last_name, phone, company, job_title,
                                    created_at, updated_at, deleted_at, last_message_id)
         SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                              $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[],
                              $11::timestamptz[], $12::uuid[])
         ON CONFLICT (id) DO UPDATE SET
             version = EXCLUDED.version, email = EXCLUDED.email, first_name = EXCLUDED.first_name,
             last_name = EXCLUDED.last_name, phone = EXCLUDED.phone, company = EXCLUDED.company,
             job_title = EXCLUDED.job_title, updated_at = EXCLUDED.updated_at,
             deleted_at = EXCLUDED.deleted_at, last_message_id = EXCLUDED.last_message_id,
             persisted_at = now()
         WHERE (t.version, t.updated_at) < (EXCLUDED.version, EXCLUDED.updated_at)
         RETURNING id",
    )
    .bind(&ids)
    .bind(&seqs)
    .bind(&emails)
    .bind(&first)
    .bind(&last)
    .bind(&phone)
    .bind(&company)
    .bind(&title)
    .bind(&created)
    .bind(&updated)
    .bind(&deleted)
    .bind(&messages)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let unwritten: Vec<Uuid> = ids
        .iter()
        .filter(|id| !written.contains(id))
        .copied()
        .collect();
    // Whose change each row not written holds: this one (a redelivery) or a newer one.
    let holders: HashMap<Uuid, Option<Uuid>> = match unwritten.is_empty() {
        true => HashMap::new(),
        false => sqlx::query_as::<_, (Uuid, Option<Uuid>)>(
            "SELECT id, last_message_id FROM contacts WHERE id = ANY($1)",
        )
        .bind(&unwritten)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect(),
    };
    Ok(changes
        .iter()
        .map(|c| {
            if written.contains(&c.contact_id.0) {
                Applied::New
            } else if holders.get(&c.contact_id.0) == Some(&Some(c.message_id)) {
                Applied::Already
            } else {
                Applied::Stale
            }
        })
        .collect())
}
