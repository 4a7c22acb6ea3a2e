//! `contact_heads`: the accept side's per-contact row (sequence number and accepted state).
//!
//! All writes happen inside the API's accept transaction, which holds the row lock until the
//! broker has confirmed the change; see `api::accept`. The API also reads contacts from here:
//! what it has accepted is durable and will be applied, so a client reads its own writes.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use super::contacts::ContactRow;

use crate::domain::merge::{Conflict, FieldChange, Stamps};
use crate::domain::{ContactFields, ContactId, Origin};

/// The accepted state of a contact.
#[derive(Debug, Clone)]
pub struct Head {
    pub seq: i64,
    pub doc: ContactFields,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// When each field last changed and where the change came from.
    pub stamps: Stamps,
    /// When the current version was accepted.
    pub accepted_at: DateTime<Utc>,
}

/// What the history keeps of a version, written with the head in one statement.
#[derive(Debug, Clone)]
pub struct VersionNote<'a> {
    pub origin: Origin,
    pub changes: &'a [FieldChange],
    pub conflicts: &'a [Conflict],
    /// The history's operation when it is not plain `create`/`update`/`delete` (`merge`,
    /// `erase`), with a remark in words.
    pub special: Option<(&'static str, &'a str)>,
    /// How a CRM's change arrived: `webhook` or `poller` (`None` for the API).
    pub via: Option<&'static str>,
}

impl<'a> VersionNote<'a> {
    pub fn new(origin: Origin, changes: &'a [FieldChange], conflicts: &'a [Conflict]) -> Self {
        Self {
            origin,
            changes,
            conflicts,
            special: None,
            via: None,
        }
    }

    /// The same note, for a change that arrived `via` a webhook or the poller.
    pub fn via(self, via: &'static str) -> Self {
        Self {
            via: Some(via),
            ..self
        }
    }

    /// The same note, recorded as `operation` with `remark`.
    pub fn special(self, operation: &'static str, remark: &'a str) -> Self {
        Self {
            special: Some((operation, remark)),
            ..self
        }
    }

    fn remark(&self) -> Option<&'a str> {
        self.special.map(|(_, r)| r)
    }

    fn json(
        &self,
    ) -> (
        sqlx::types::Json<&[FieldChange]>,
        sqlx::types::Json<&[Conflict]>,
    ) {
        (
            sqlx::types::Json(self.changes),
            sqlx::types::Json(self.conflicts),
        )
    }
}

/// Why a head could not be written.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// Another live contact already has this e-mail address (its id, when known).
    #[error("e-mail address already used by another contact")]
    EmailTaken(Option<ContactId>),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

const LIVE_EMAIL_INDEX: &str = "contact_heads_live_email";

/// Locks and returns the head, or `None` if the id was never accepted.
pub async fn lock(tx: &mut PgConnection, id: ContactId) -> Result<Option<Head>, sqlx::Error> {
    guard(tx, id).await?;
    let row = sqlx::query(
        "SELECT seq, doc, created_at, deleted_at, stamps, accepted_at FROM contact_heads WHERE id = $1 FOR UPDATE",
    )
    .bind(id.0)
    .fetch_optional(tx)
    .await?;
    row.map(|r| {
        Ok(Head {
            seq: r.try_get("seq")?,
            doc: serde_json::from_value(r.try_get("doc")?)
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            created_at: r.try_get("created_at")?,
            deleted_at: r.try_get("deleted_at")?,
            stamps: serde_json::from_value(r.try_get("stamps")?)
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            accepted_at: r.try_get("accepted_at")?,
        })
    })
    .transpose()
}

/// The key of a contact's advisory lock. Only the low 64 bits of the id (random in a UUIDv7):
/// a collision just makes two contacts wait for each other briefly.
pub fn lock_key(id: ContactId) -> i64 {
    id.0.as_u128() as u64 as i64
}

/// Takes the contact's acceptance lock until the transaction ends. The forwarder takes the
/// same lock in shared mode before it decides whether a change was accepted, so it never
/// looks while an acceptance is still between the broker's confirm and the commit.
async fn guard(tx: &mut PgConnection, id: ContactId) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key(id))
        .execute(tx)
        .await
        .map(|_| ())
}

/// Inserts the head of a new contact (sequence 1), accepted as `message_id`, with its first
/// history entry.
pub async fn insert(
    tx: &mut PgConnection,
    id: ContactId,
    doc: &ContactFields,
    stamps: &Stamps,
    now: DateTime<Utc>,
    message_id: uuid::Uuid,
    note: &VersionNote<'_>,
) -> Result<(), HeadError> {
    let head = NewHead {
        id,
        doc,
        stamps,
        now,
        message_id,
        note: note.clone(),
    };
    let mut done = insert_many(tx, std::slice::from_ref(&head)).await?;
    done.pop().unwrap_or(Ok(()))
}

/// A new contact's head, for [`insert_many`].
pub struct NewHead<'a> {
    pub id: ContactId,
    pub doc: &'a ContactFields,
    pub stamps: &'a Stamps,
    pub now: DateTime<Utc>,
    pub message_id: uuid::Uuid,
    pub note: VersionNote<'a>,
}

/// Inserts several new contacts' heads with their first history entries in one statement, as
/// [`insert`] would one after another (each takes its acceptance lock first; of two with one
/// address, the earlier wins): for each, `Ok` or why it was refused.
pub async fn insert_many(
    tx: &mut PgConnection,
    heads: &[NewHead<'_>],
) -> Result<Vec<Result<(), HeadError>>, sqlx::Error> {
    let col = |f: &dyn Fn(&NewHead<'_>) -> serde_json::Value| -> Vec<serde_json::Value> {
        heads.iter().map(f).collect()
    };
    let ids: Vec<uuid::Uuid> = heads.iter().map(|h| h.id.0).collect();
    let emails: Vec<&str> = heads.iter().map(|h| h.doc.email.as_str()).collect();
    let docs = col(&|h| serde_json::to_value(h.doc).unwrap_or_default());
    let stamps = col(&|h| serde_json::to_value(h.stamps).unwrap_or_default());
    let changes = col(&|h| serde_json::to_value(h.note.changes).unwrap_or_default());
    let conflicts = col(&|h| serde_json::to_value(h.note.conflicts).unwrap_or_default());
    let nows: Vec<DateTime<Utc>> = heads.iter().map(|h| h.now).collect();
    let messages: Vec<uuid::Uuid> = heads.iter().map(|h| h.message_id).collect();
    let keys: Vec<i64> = heads.iter().map(|h| lock_key(h.id)).collect();
    let origins: Vec<&str> = heads.iter().map(|h| h.note.origin.as_str()).collect();
    let vias: Vec<Option<&str>> = heads.iter().map(|h| h.note.via).collect();
    let inserted: Vec<uuid::Uuid> = sqlx::query_scalar(
        "WITH u AS (
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[], $4::jsonb[], $5::timestamptz[],
                                  $6::uuid[], $7::bigint[], $8::text[], $9::jsonb[], $10::jsonb[], $11::text[])
                 WITH ORDINALITY AS u(id, email, doc, stamps, now, message_id, lock_key, origin, changes, conflicts, via, n)),
         head AS (
             INSERT INTO contact_heads (id, seq, email, doc, created_at, accepted_at, message_id, stamps)
             SELECT u.id, 1, u.email, u.doc, u.now, u.now, u.message_id, u.stamps
             FROM u CROSS JOIN LATERAL (SELECT pg_advisory_xact_lock(u.lock_key)) AS acceptance_lock
             ORDER BY u.n
             ON CONFLICT (email) WHERE deleted_at IS NULL DO NOTHING
             RETURNING id)
         INSERT INTO contact_versions (contact_id, version, origin, operation, changes, conflicts, accepted_at, via)
         SELECT u.id, 1, u.origin, 'create', u.changes, u.conflicts, u.now, u.via
         FROM head JOIN u ON u.id = head.id
         RETURNING contact_id",
    )
    .bind(&ids)
    .bind(&emails)
    .bind(&docs)
    .bind(&stamps)
    .bind(&nows)
    .bind(&messages)
    .bind(&keys)
    .bind(&origins)
    .bind(&changes)
    .bind(&conflicts)
    .bind(&vias)
    .fetch_all(&mut *tx)
    .await?;
    let inserted: std::collections::HashSet<uuid::Uuid> = inserted.into_iter().collect();
    let mut out = Vec::with_capacity(heads.len());
    for h in heads {
        out.push(match inserted.contains(&h.id.0) {
            true => Ok(()),
            false => Err(HeadError::EmailTaken(
                find_live_by_email(tx, h.doc.email.as_str()).await?,
            )),
        });
    }
    Ok(out)
}

/// Moves a head to its next sequence number with a new state (or marks it deleted), accepted
/// as `message_id`, and records the version in the history. The caller holds the row through
/// [`lock`].
pub async fn advance(
    tx: &mut PgConnection,
    id: ContactId,
    head: &Head,
    message_id: uuid::Uuid,
    note: &VersionNote<'_>,
) -> Result<(), HeadError> {
    if head.deleted_at.is_none()
        && let Some(other) = find_live_by_email(tx, head.doc.email.as_str()).await?
        && other != id
    {
        return Err(HeadError::EmailTaken(Some(other)));
    }
    let operation = match note.special {
        Some((operation, _)) => operation,
        None if head.deleted_at.is_some() => "delete",
        None => "update",
    };
    let (changes, conflicts) = note.json();
    sqlx::query(
        "WITH head AS (
             UPDATE contact_heads SET seq = $2, email = $3, doc = $4, accepted_at = $5, deleted_at = $6, message_id = $7, stamps = $8
             WHERE id = $1 RETURNING id)
         INSERT INTO contact_versions (contact_id, version, origin, operation, changes, conflicts, accepted_at, note, via)
         SELECT id, $2, $9, $10, $11, $12, $5, $13, $14 FROM head",
    )
        .bind(id.0)
        .bind(head.seq)
        .bind(head.doc.email.as_str())
        .bind(sqlx::types::Json(&head.doc))
        .bind(head.accepted_at)
        .bind(head.deleted_at)
        .bind(message_id)
        .bind(sqlx::types::Json(&head.stamps))
        .bind(note.origin.as_str())
        .bind(operation)
        .bind(changes)
        .bind(conflicts)
        .bind(note.remark())
        .bind(note.via)
        .execute(tx)
        .await
        .map_err(|e| {
            // A concurrent transaction took the address between the check and the update.
            if super::is_unique_violation(&e, LIVE_EMAIL_INDEX) { HeadError::EmailTaken(None) } else { HeadError::Db(e) }
        })?;
    Ok(())
}

/// The live contact with this e-mail address, if any.
pub async fn find_live(pool: &PgPool, email: &str) -> Result<Option<ContactId>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    find_live_by_email(&mut conn, email).await
}

pub async fn find_live_by_email(
    tx: &mut PgConnection,
    email: &str,
) -> Result<Option<ContactId>, sqlx::Error> {
    let id: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM contact_heads WHERE email = $1 AND deleted_at IS NULL")
            .bind(email)
            .fetch_optional(tx)
            .await?;
    Ok(id.map(ContactId))
}

const READ_COLUMNS: &str = "id, seq, doc, created_at, accepted_at, deleted_at";

/// The accepted contact (deleted ones included), as the API shows it.
pub async fn find(pool: &PgPool, id: ContactId) -> Result<Option<ContactRow>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {READ_COLUMNS} FROM contact_heads WHERE id = $1"
    ));
    sqlx::query(sql)
        .bind(id.0)
        .try_map(|r: PgRow| read_row(&r))
        .fetch_optional(pool)
        .await
}

/// Live contacts in id (= creation) order after `after`, optionally with one e-mail address.
pub async fn list(
    pool: &PgPool,
    email: Option<&str>,
    after: Option<ContactId>,
    limit: i64,
) -> Result<Vec<ContactRow>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {READ_COLUMNS} FROM contact_heads
         WHERE deleted_at IS NULL AND ($1::text IS NULL OR email = $1) AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3"
    ));
    sqlx::query(sql)
        .bind(email)
        .bind(after.map(|a| a.0))
        .bind(limit)
        .try_map(|r: PgRow| read_row(&r))
        .fetch_all(pool)
        .await
}

fn read_row(r: &PgRow) -> Result<ContactRow, sqlx::Error> {
    let doc: ContactFields =
        serde_json::from_value(r.try_get("doc")?).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(ContactRow {
        id: ContactId(r.try_get("id")?),
        version: r.try_get("seq")?,
        email: doc.email.as_str().to_owned(),
        first_name: doc.first_name,
        last_name: doc.last_name,
        phone: doc.phone,
        company: doc.company,
        job_title: doc.job_title,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("accepted_at")?,
        deleted_at: r.try_get("deleted_at")?,
    })
}
