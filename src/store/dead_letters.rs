//! `dead_letters`: what could not be delivered or processed, as people see it (list, show,
//! replay, discard) and as the dead-letter worker schedules it.
//!
//! Not here: deciding what goes in (the dead-letter worker) or publishing a replay (the
//! `dead_letter` module); this is rows only.

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Row, Transaction, postgres::PgRow};
use uuid::Uuid;

use crate::domain::change::AttemptError;

/// Where an entry stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the dead-letter worker's next round, at `next_attempt_at`.
    Retrying,
    /// Sent through the normal path again; its outcome is pending.
    Replayed,
    /// Waiting for a person: replay it (after fixing the cause) or discard it.
    Parked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retrying => "retrying",
            Self::Replayed => "replayed",
            Self::Parked => "parked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "retrying" => Some(Self::Retrying),
            "replayed" => Some(Self::Replayed),
            "parked" => Some(Self::Parked),
            _ => None,
        }
    }
}

/// One entry.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    pub id: Uuid,
    /// `delivery` or `message` (see the migration).
    pub kind: String,
    pub crm: Option<String>,
    pub contact_id: Option<Uuid>,
    pub version: Option<i64>,
    /// `upsert` or `delete`, for deliveries.
    pub operation: Option<String>,
    pub status: Status,
    pub reason: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub errors: Vec<AttemptError>,
    pub attempts: i32,
    pub rounds: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub source: Option<RawMessage>,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
}

/// A dead-lettered message kept as it was, to replay where it came from.
#[derive(Clone, Debug, Default)]
pub struct RawMessage {
    pub queue: Option<String>,
    pub exchange: Option<String>,
    pub routing_key: Option<String>,
    pub content_type: Option<String>,
    pub message_type: Option<String>,
    pub body: Vec<u8>,
}

/// Which entries a list, replay or discard applies to; `None` matches everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub crm: Option<String>,
    pub error_code: Option<String>,
    pub status: Option<Status>,
    pub contact_id: Option<Uuid>,
    /// Last failure at or after / before.
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, kind, crm, contact_id, version, operation, status, reason, error_code, error_message, errors,
     attempts, rounds, next_attempt_at, source_queue, exchange, routing_key, content_type, message_type, body,
     first_failed_at, last_failed_at";

/// The filter as SQL over parameters $1..$6 (in [`bind_filter`]'s order).
const MATCHES: &str = "($1::text IS NULL OR crm = $1)
     AND ($2::text IS NULL OR error_code = $2)
     AND ($3::text IS NULL OR status = $3)
     AND ($4::uuid IS NULL OR contact_id = $4)
     AND ($5::timestamptz IS NULL OR last_failed_at >= $5)
     AND ($6::timestamptz IS NULL OR last_failed_at < $6)";

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

fn bind_filter<'q>(q: PgQuery<'q>, f: &'q Filter) -> PgQuery<'q> {
    q.bind(f.crm.as_deref())
        .bind(f.error_code.as_deref())
        .bind(f.status.map(Status::as_str))
        .bind(f.contact_id)
        .bind(f.since)
        .bind(f.until)
}

fn row(r: &PgRow) -> Result<DeadLetter, sqlx::Error> {
    let status: String = r.try_get("status")?;
    let status = Status::parse(&status)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown status {status}").into()))?;
    let Json(errors): Json<Vec<AttemptError>> = r.try_get("errors")?;
    let body: Option<Vec<u8>> = r.try_get("body")?;
    let source = body.map(|body| -> Result<RawMessage, sqlx::Error> {
        Ok(RawMessage {
            queue: r.try_get("source_queue")?,
            exchange: r.try_get("exchange")?,
            routing_key: r.try_get("routing_key")?,
            content_type: r.try_get("content_type")?,
            message_type: r.try_get("message_type")?,
            body,
        })
    });
    Ok(DeadLetter {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        crm: r.try_get("crm")?,
        contact_id: r.try_get("contact_id")?,
        version: r.try_get("version")?,
        operation: r.try_get("operation")?,
        status,
        reason: r.try_get("reason")?,
        error_code: r.try_get("error_code")?,
        error_message: r.try_get("error_message")?,
        errors,
        attempts: r.try_get("attempts")?,
        rounds: r.try_get("rounds")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        source: source.transpose()?,
        first_failed_at: r.try_get("first_failed_at")?,
        last_failed_at: r.try_get("last_failed_at")?,
    })
}

pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<DeadLetter>, sqlx::Error> {
    sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE id = $1"
    )))
    .bind(id)
    .try_map(|r: PgRow| row(&r))
    .fetch_optional(pool)
    .await
}

/// The entry of a contact's delivery to one CRM, if there is one.
pub async fn find_delivery(
    pool: &PgPool,
    crm: &str,
    contact_id: Uuid,
) -> Result<Option<DeadLetter>, sqlx::Error> {
    sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE kind = 'delivery' AND crm = $1 AND contact_id = $2"
    )))
    .bind(crm)
    .bind(contact_id)
    .try_map(|r: PgRow| row(&r))
    .fetch_optional(pool)
    .await
}

/// A page of matching entries, oldest first (ids are time-ordered UUIDv7), after `after`.
pub async fn list(
    pool: &PgPool,
    filter: &Filter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE {MATCHES} AND ($7::uuid IS NULL OR id > $7)
         ORDER BY id LIMIT $8"
    );
    bind_filter(sqlx::query(AssertSqlSafe(sql)), filter)
        .bind(after)
        .bind(limit)
        .try_map(|r: PgRow| row(&r))
        .fetch_all(pool)
        .await
}

/// Entries per status (for alerts and metrics).
pub async fn depth(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query("SELECT status, count(*) FROM dead_letters GROUP BY status ORDER BY status")
        .try_map(|r: PgRow| Ok((r.try_get(0)?, r.try_get(1)?)))
        .fetch_all(pool)
        .await
}

/// Creates or updates a contact's delivery entry for one CRM (one per contact per CRM).
/// `first_failed_at` and `id` of an existing entry are kept.
pub async fn save_delivery(pool: &PgPool, e: &DeadLetter) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO dead_letters (id, kind, crm, contact_id, version, operation, status, reason, error_code,
             error_message, errors, attempts, rounds, next_attempt_at, first_failed_at, last_failed_at)
         VALUES ($1, 'delivery', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (crm, contact_id) WHERE kind = 'delivery' DO UPDATE SET
             version = GREATEST(dead_letters.version, EXCLUDED.version),
             operation = EXCLUDED.operation, status = EXCLUDED.status, reason = EXCLUDED.reason,
             error_code = EXCLUDED.error_code, error_message = EXCLUDED.error_message,
             errors = EXCLUDED.errors, attempts = EXCLUDED.attempts, rounds = EXCLUDED.rounds,
             next_attempt_at = EXCLUDED.next_attempt_at, last_failed_at = EXCLUDED.last_failed_at",
    )
    .bind(e.id)
    .bind(&e.crm)
    .bind(e.contact_id)
    .bind(e.version)
    .bind(&e.operation)
    .bind(e.status.as_str())
    .bind(&e.reason)
    .bind(&e.error_code)
    .bind(&e.error_message)
    .bind(Json(&e.errors))
    .bind(e.attempts)
    .bind(e.rounds)
    .bind(e.next_attempt_at)
    .bind(e.first_failed_at)
    .bind(e.last_failed_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Stores a dead-lettered message as it was (parked).
pub async fn insert_message(pool: &PgPool, e: &DeadLetter) -> Result<(), sqlx::Error> {
    let raw = e.source.clone().unwrap_or_default();
    sqlx::query(
        "INSERT INTO dead_letters (id, kind, crm, contact_id, version, status, reason, error_code, error_message,
             errors, source_queue, exchange, routing_key, content_type, message_type, body, first_failed_at, last_failed_at)
         VALUES ($1, 'message', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(e.id)
    .bind(&e.crm)
    .bind(e.contact_id)
    .bind(e.version)
    .bind(e.status.as_str())
    .bind(&e.reason)
    .bind(&e.error_code)
    .bind(&e.error_message)
    .bind(Json(&e.errors))
    .bind(raw.queue)
    .bind(raw.exchange)
    .bind(raw.routing_key)
    .bind(raw.content_type)
    .bind(raw.message_type)
    .bind(raw.body)
    .bind(e.first_failed_at)
    .bind(e.last_failed_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Locks up to `limit` retrying entries whose next round is due (other replicas skip them).
pub async fn claim_due(
    tx: &mut Transaction<'_, Postgres>,
    limit: i64,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE status = 'retrying' AND next_attempt_at <= now()
         ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED"
    )))
    .bind(limit)
    .try_map(|r: PgRow| row(&r))
    .fetch_all(&mut **tx)
    .await
}

/// Locks up to `limit` matching entries that are retrying or parked (not already replayed),
/// in id order after `after`: a bulk replay walks forward, so an entry it left as it was is
/// not claimed again by the same replay.
pub async fn claim_matching(
    tx: &mut Transaction<'_, Postgres>,
    filter: &Filter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE {MATCHES} AND status <> 'replayed'
             AND ($8::uuid IS NULL OR id > $8)
         ORDER BY id LIMIT $7 FOR UPDATE SKIP LOCKED"
    );
    bind_filter(sqlx::query(AssertSqlSafe(sql)), filter)
        .bind(limit)
        .bind(after)
        .try_map(|r: PgRow| row(&r))
        .fetch_all(&mut **tx)
        .await
}

/// Locks one entry, whatever its status.
pub async fn claim(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
) -> Result<Option<DeadLetter>, sqlx::Error> {
    sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE id = $1 FOR UPDATE"
    )))
    .bind(id)
    .try_map(|r: PgRow| row(&r))
    .fetch_optional(&mut **tx)
    .await
}

/// Marks entries as sent through again. Messages (kept raw) are gone from the database once
/// replayed: if they fail again, they come back as new entries.
pub async fn mark_replayed(
    tx: &mut Transaction<'_, Postgres>,
    ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM dead_letters WHERE id = ANY($1) AND kind = 'message'")
        .bind(ids)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE dead_letters SET status = 'replayed', next_attempt_at = NULL WHERE id = ANY($1)",
    )
    .bind(ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Parks an entry whose round could not be sent anywhere (its CRM is no longer enabled, say),
/// with that error added to its history, so it waits for a person instead of coming due again
/// at every tick.
pub async fn park_unsendable(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    error: &AttemptError,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE dead_letters SET status = 'parked', next_attempt_at = NULL, error_code = $2,
             error_message = $3, errors = errors || $4, last_failed_at = $5
         WHERE id = $1",
    )
    .bind(id)
    .bind(&error.code)
    .bind(&error.message)
    .bind(Json([error]))
    .bind(error.at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes one entry; false when there was none.
pub async fn discard(tx: &mut Transaction<'_, Postgres>, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM dead_letters WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes every matching entry; returns their ids.
pub async fn discard_matching(
    tx: &mut Transaction<'_, Postgres>,
    filter: &Filter,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let sql = format!("DELETE FROM dead_letters WHERE {MATCHES} RETURNING id");
    bind_filter(sqlx::query(AssertSqlSafe(sql)), filter)
        .try_map(|r: PgRow| r.try_get("id"))
        .fetch_all(&mut **tx)
        .await
}

/// Resolves delivery entries the CRM has caught up with: `synced` pairs a contact with the
/// version the CRM now holds; an entry for that version or an older one is done.
pub async fn resolve(pool: &PgPool, crm: &str, synced: &[(Uuid, i64)]) -> Result<u64, sqlx::Error> {
    if synced.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = synced.iter().map(|(id, _)| *id).collect();
    let versions: Vec<i64> = synced.iter().map(|(_, v)| *v).collect();
    let done = sqlx::query(
        "DELETE FROM dead_letters d USING UNNEST($2::uuid[], $3::bigint[]) AS s(id, version)
         WHERE d.kind = 'delivery' AND d.crm = $1 AND d.contact_id = s.id AND d.version <= s.version",
    )
    .bind(crm)
    .bind(&ids)
    .bind(&versions)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Drops the contact's dead letters (a privacy deletion: their errors and bodies may carry its
/// values, and the contact is gone, so there is nothing left to deliver).
pub async fn erase_contact(
    conn: &mut sqlx::PgConnection,
    contact: crate::domain::ContactId,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM dead_letters WHERE contact_id = $1")
        .bind(contact.0)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
