//! `idempotency_keys`: remembered responses for `Idempotency-Key` on `POST /contacts`.
//!
//! A key is claimed inside the accept transaction, so it is stored only if the change is
//! accepted: a request that failed (say, RabbitMQ was down) leaves nothing behind and its retry
//! runs afresh. A concurrent request with the same key waits on the row until the first commits
//! or rolls back, then replays or runs.

use std::time::Duration;

use sqlx::{PgConnection, PgPool, Row};

/// The remembered outcome of a request.
#[derive(Debug, Clone)]
pub struct Remembered {
    pub request_hash: String,
    pub status: u16,
    pub location: Option<String>,
    pub body: serde_json::Value,
}

/// Claims `key` for a request with `outcome`; returns the earlier outcome if the key is taken.
/// A record older than `ttl` is forgotten and replaced.
pub async fn claim(
    tx: &mut PgConnection,
    principal: &str,
    key: &str,
    outcome: &Remembered,
    ttl: Duration,
) -> Result<Option<Remembered>, sqlx::Error> {
    let ttl_secs = ttl.as_secs_f64();
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys AS t (principal, key, request_hash, status, location, response)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (principal, key) DO UPDATE SET
             request_hash = EXCLUDED.request_hash, status = EXCLUDED.status, location = EXCLUDED.location,
             response = EXCLUDED.response, created_at = now()
         WHERE t.created_at < now() - make_interval(secs => $7)",
    )
    .bind(principal)
    .bind(key)
    .bind(&outcome.request_hash)
    .bind(outcome.status as i16)
    .bind(&outcome.location)
    .bind(&outcome.body)
    .bind(ttl_secs)
    .execute(&mut *tx)
    .await?;
    if claimed.rows_affected() == 1 {
        return Ok(None);
    }
    let row = sqlx::query("SELECT request_hash, status, location, response FROM idempotency_keys WHERE principal = $1 AND key = $2")
        .bind(principal)
        .bind(key)
        .fetch_one(tx)
        .await?;
    Ok(Some(Remembered {
        request_hash: row.try_get("request_hash")?,
        status: row.try_get::<i16, _>("status")? as u16,
        location: row.try_get("location")?,
        body: row.try_get("response")?,
    }))
}

/// Deletes records older than `ttl`; returns how many.
pub async fn prune(pool: &PgPool, ttl: Duration) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
    )
    .bind(ttl.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Forgets the contact's values in remembered answers (a privacy deletion): an answer keeps
/// only the contact's id, so a retried request still gets its id back.
pub async fn erase_contact(
    conn: &mut PgConnection,
    contact: crate::domain::ContactId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys SET response = jsonb_build_object('id', response->'id')
         WHERE response->>'id' = $1",
    )
    .bind(contact.to_string())
    .execute(conn)
    .await?;
    Ok(())
}
