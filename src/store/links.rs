//! `crm_links`: each contact's record id and delivery state in each CRM.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use uuid::Uuid;

use crate::domain::{ContactFields, ContactId, Crm, Email, FieldValues};

/// A contact as the delivery worker needs it: its persisted state and its link to one CRM.
#[derive(Debug, Clone)]
pub struct Deliverable {
    pub id: ContactId,
    pub version: i64,
    /// When `version` was accepted (the contact's `updated_at`).
    pub accepted_at: DateTime<Utc>,
    /// `None` for a deleted contact (tombstone).
    pub contact: Option<ContactFields>,
    /// Where records a lost create left may be found (see [`left_addresses`]), oldest first:
    /// every address written while no record was linked, and a deleted unlinked contact's last
    /// address. Empty for a live unlinked contact whose writes all went to its current address
    /// (an upsert by it finds such a record).
    pub left_emails: Vec<Email>,
    pub remote_id: Option<String>,
    pub synced_version: Option<i64>,
    /// The values the CRM's record is known to hold.
    pub remote_values: Option<FieldValues>,
    /// Why SyncRoot no longer writes this record (see [`detach`]).
    pub detached: Option<String>,
}

/// Loads the contacts with these ids and their links to `crm`.
pub async fn load_deliverables(
    pool: &PgPool,
    crm: Crm,
    ids: &[Uuid],
) -> Result<Vec<Deliverable>, sqlx::Error> {
    sqlx::query(
        "SELECT c.id, c.version, c.updated_at, c.email, c.first_name, c.last_name, c.phone, c.company, c.job_title, c.deleted_at,
                l.remote_id, l.synced_version, l.remote_values, l.detached,
                COALESCE(l.left_addresses, '{}') AS left_addresses
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
    let remote_id: Option<String> = r.try_get("remote_id")?;
    let written: Vec<String> = r.try_get("left_addresses")?;
    let left_emails = left_addresses(
        written
            .iter()
            .filter_map(|w| Email::parse(w).ok())
            .collect(),
        &email,
        remote_id.is_some(),
        deleted.is_some(),
    );
    Ok(Deliverable {
        id: ContactId(r.try_get("id")?),
        version: r.try_get("version")?,
        accepted_at: r.try_get("updated_at")?,
        contact: deleted.is_none().then_some(fields),
        left_emails,
        remote_id,
        synced_version: r.try_get("synced_version")?,
        remote_values: r
            .try_get::<Option<serde_json::Value>, _>("remote_values")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        detached: r.try_get("detached")?,
    })
}

/// Where records a lost create left may be found, given the addresses written while no record
/// was linked (`written`, oldest first) and the contact's address now (`current`). A linked
/// contact: the addresses written before it was linked (a record elsewhere is a duplicate). A
/// deleted unlinked one: those and its last address. A live unlinked one: none when every write
/// went to its current address (the upsert by that address finds the record), else all of
/// them, the current one last, so the record at the newest address is kept.
fn left_addresses(written: Vec<Email>, current: &Email, linked: bool, deleted: bool) -> Vec<Email> {
    let same = |a: &Email| a.as_str().eq_ignore_ascii_case(current.as_str());
    let mut out: Vec<Email> = written.into_iter().filter(|w| !same(w)).collect();
    if linked {
        return out;
    }
    if out.is_empty() && !deleted {
        return out;
    }
    out.push(current.clone());
    out
}

/// The outcome of one attempt for one contact.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub contact_id: ContactId,
    pub version: i64,
    /// `Ok(remote id)` when the CRM now holds `version`; `Err((retryable, message))` otherwise.
    pub result: Result<Option<String>, (bool, String)>,
    /// What the record holds after a successful write (`None` after a delete).
    pub values: Option<FieldValues>,
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
    let values: Vec<Option<serde_json::Value>> = attempts
        .iter()
        .map(|a| a.values.as_ref().and_then(|v| serde_json::to_value(v).ok()))
        .collect();
    sqlx::query(
        "INSERT INTO crm_links AS l (crm, contact_id, remote_id, synced_version, synced_at, attempt_version, state, attempts, last_attempt_at, last_error, remote_values)
         SELECT $1, u.id, u.remote, CASE WHEN u.state = 'synced' THEN u.version END, CASE WHEN u.state = 'synced' THEN now() END,
                u.version, u.state, CASE WHEN u.state = 'synced' THEN 0 ELSE 1 END, now(), u.error,
                CASE WHEN u.state = 'synced' THEN u.written END
         FROM UNNEST($2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::jsonb[]) AS u(id, version, remote, state, error, written)
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
             last_error = EXCLUDED.last_error,
             -- After a failure the write may still have happened: keep what was being written,
             -- so its echo is still recognised.
             remote_values = CASE WHEN EXCLUDED.state = 'synced' THEN EXCLUDED.remote_values ELSE l.remote_values END,
             written_values = CASE WHEN EXCLUDED.state = 'synced' THEN NULL ELSE l.written_values END,
             -- A successful write looked at every address first (see `left_addresses`).
             left_addresses = CASE WHEN EXCLUDED.state = 'synced' THEN '{}' ELSE l.left_addresses END",
    )
    .bind(crm.as_str())
    .bind(&ids)
    .bind(&versions)
    .bind(&remote)
    .bind(&states)
    .bind(&errors)
    .bind(&values)
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
    /// Why SyncRoot no longer writes this record, if it does not.
    pub detached: Option<String>,
}

/// Every link of several contacts (for list pages).
pub async fn for_contacts(
    pool: &PgPool,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, LinkRow)>, sqlx::Error> {
    sqlx::query(
        "SELECT contact_id, crm, remote_id, synced_version, attempt_version, state, last_attempt_at, last_error, detached
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
                detached: r.try_get("detached")?,
            },
        ))
    })
    .fetch_all(pool)
    .await
}

/// What SyncRoot knows of a contact's record in one CRM.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub remote_id: Option<String>,
    /// The values the record is known to hold (written by SyncRoot or read from the CRM).
    pub remote_values: Option<FieldValues>,
    /// The values of a write in flight.
    pub written_values: Option<FieldValues>,
}

impl Known {
    /// True when `values` is what SyncRoot knows the record holds or is writing: an event
    /// reporting it is SyncRoot's own write coming back.
    pub fn is_echo(&self, values: &FieldValues) -> bool {
        self.remote_values.as_ref() == Some(values) || self.written_values.as_ref() == Some(values)
    }
}

/// Of these contacts not yet linked in `crm` (with their addresses), the ones whose address a
/// record of another contact in `crm` may still carry: that contact was deleted or moved to
/// another address, and the CRM has not been told yet (its link is behind its version).
/// Written now, such a contact would be matched to that record by its address (HubSpot's
/// upsert by e-mail, Salesforce's matching) and adopt it, and the other contact's pending
/// deletion or change would then remove or rewrite it under this one.
pub async fn held_by_another(
    pool: &PgPool,
    crm: Crm,
    unlinked: &[(ContactId, &str)],
) -> Result<std::collections::HashSet<ContactId>, sqlx::Error> {
    if unlinked.is_empty() {
        return Ok(Default::default());
    }
    let ids: Vec<Uuid> = unlinked.iter().map(|(id, _)| id.0).collect();
    let emails: Vec<String> = unlinked.iter().map(|(_, e)| e.to_lowercase()).collect();
    let held: Vec<Uuid> = sqlx::query_scalar(
        // Written as correlated look-ups, each by an index, so the plan does not depend on
        // statistics: as joins, a table that grew since it was last analysed was scanned
        // whole for every address (over a second a batch in a burst into a fresh database).
        "SELECT u.id FROM UNNEST($2::uuid[], $3::text[]) AS u(id, email)
          WHERE EXISTS (
                  SELECT 1 FROM crm_links l
                   WHERE l.crm = $1 AND l.remote_id IS NOT NULL AND l.detached IS NULL
                     AND lower(COALESCE(l.remote_values->>'email', l.written_values->>'email')) = u.email
                     AND l.contact_id <> u.id
                     AND (l.synced_version IS NULL
                          OR l.synced_version < (SELECT c.version FROM contacts c WHERE c.id = l.contact_id)))
             OR EXISTS (
                  SELECT 1 FROM contacts c
                   WHERE c.email = u.email AND c.deleted_at IS NOT NULL AND c.id <> u.id
                     AND (SELECT l.remote_id IS NOT NULL AND l.detached IS NULL
                                 AND (l.synced_version IS NULL OR l.synced_version < c.version)
                            FROM crm_links l WHERE l.crm = $1 AND l.contact_id = c.id))",
    )
    .bind(crm.as_str())
    .bind(&ids)
    .bind(&emails)
    .fetch_all(pool)
    .await?;
    Ok(held.into_iter().map(ContactId).collect())
}

/// The contact linked to a CRM record, if any: a live contact before a deleted one (a record
/// adopted from a merged-away contact belongs to the survivor), detached links included (a
/// restored record finds its contact again).
pub async fn find_by_remote(
    conn: &mut PgConnection,
    crm: Crm,
    remote_id: &str,
) -> Result<Option<ContactId>, sqlx::Error> {
    let id: Option<Uuid> = sqlx::query_scalar(
        "SELECT l.contact_id FROM crm_links l JOIN contact_heads h ON h.id = l.contact_id
         WHERE l.crm = $1 AND l.remote_id = $2
         ORDER BY (h.deleted_at IS NULL) DESC, l.last_attempt_at DESC LIMIT 1",
    )
    .bind(crm.as_str())
    .bind(remote_id)
    .fetch_optional(conn)
    .await?;
    Ok(id.map(ContactId))
}

/// What is known of the contact's record in `crm` (all `None` without a link).
pub async fn known(
    conn: &mut PgConnection,
    crm: Crm,
    contact: ContactId,
) -> Result<Known, sqlx::Error> {
    let row = sqlx::query(
        "SELECT remote_id, remote_values, written_values FROM crm_links WHERE crm = $1 AND contact_id = $2",
    )
    .bind(crm.as_str())
    .bind(contact.0)
    .fetch_optional(conn)
    .await?;
    let Some(r) = row else {
        return Ok(Known::default());
    };
    let values = |name: &str| -> Result<Option<FieldValues>, sqlx::Error> {
        let v: Option<serde_json::Value> = r.try_get(name)?;
        v.map(serde_json::from_value)
            .transpose()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))
    };
    Ok(Known {
        remote_id: r.try_get("remote_id")?,
        remote_values: values("remote_values")?,
        written_values: values("written_values")?,
    })
}

/// Records what a CRM's record holds now, as read from the CRM. `stale` makes delivery write
/// the contact's current version again (the record lost a conflict and must be corrected).
/// A contact seen for the first time gets its link here.
pub async fn observe(
    conn: &mut PgConnection,
    crm: Crm,
    contact: ContactId,
    seen: &Observed<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO crm_links AS l (crm, contact_id, remote_id, attempt_version, state, last_attempt_at, remote_values, remote_modified_at)
         VALUES ($1, $2, $3, $4, 'synced', now(), $5, $6)
         ON CONFLICT (crm, contact_id) DO UPDATE SET
             remote_id = EXCLUDED.remote_id,
             remote_values = EXCLUDED.remote_values,
             remote_modified_at = EXCLUDED.remote_modified_at,
             detached = NULL,
             synced_version = CASE WHEN $7 THEN NULL ELSE l.synced_version END",
    )
    .bind(crm.as_str())
    .bind(contact.0)
    .bind(seen.remote_id)
    .bind(seen.version)
    .bind(sqlx::types::Json(seen.values))
    .bind(seen.modified_at)
    .bind(seen.stale)
    .execute(conn)
    .await?;
    Ok(())
}

/// A CRM record as read, for [`observe`].
pub struct Observed<'a> {
    pub remote_id: &'a str,
    pub values: &'a FieldValues,
    pub modified_at: DateTime<Utc>,
    /// The contact's current version (the attempt version of a new link).
    pub version: i64,
    /// The record holds values the contact does not: delivery must write it again.
    pub stale: bool,
}

/// Notes the values about to be written to each contact's record (and the version they
/// carry), before the call, so an event reporting them is recognised as SyncRoot's own even if
/// it arrives before the outcome is recorded. A contact without a link gets a row that still
/// reads as pending (no synced version). While no record is linked, the address written is
/// added to the link's `left_addresses`: a record this write creates is looked for there
/// should its answer be lost (see [`Deliverable::left_emails`]).
pub async fn note_writes(
    pool: &PgPool,
    crm: Crm,
    writes: &[(ContactId, i64, FieldValues)],
) -> Result<(), sqlx::Error> {
    if writes.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = writes.iter().map(|(id, _, _)| id.0).collect();
    let versions: Vec<i64> = writes.iter().map(|(_, v, _)| *v).collect();
    let values: Vec<serde_json::Value> = writes
        .iter()
        .map(|(_, _, v)| serde_json::to_value(v).unwrap_or_default())
        .collect();
    sqlx::query(
        "INSERT INTO crm_links AS l (crm, contact_id, attempt_version, state, last_attempt_at, written_values, left_addresses)
         SELECT $1, u.id, u.version, 'synced', now(), u.values,
                CASE WHEN jsonb_typeof(u.values->'email') = 'string' THEN ARRAY[lower(u.values->>'email')] ELSE '{}' END
         FROM UNNEST($2::uuid[], $3::bigint[], $4::jsonb[]) AS u(id, version, values)
         ON CONFLICT (crm, contact_id) DO UPDATE SET
             written_values = EXCLUDED.written_values,
             left_addresses = CASE
                 WHEN l.remote_id IS NULL AND NOT (EXCLUDED.left_addresses <@ l.left_addresses)
                 THEN l.left_addresses || EXCLUDED.left_addresses
                 ELSE l.left_addresses END",
    )
    .bind(crm.as_str())
    .bind(&ids)
    .bind(&versions)
    .bind(&values)
    .execute(pool)
    .await?;
    Ok(())
}

/// Stops SyncRoot writing the contact's record in `crm` (a contact without a record there gets
/// a link that says so, so no record is looked for either), and says why (shown as the link's
/// state). Reading the record again ([`observe`]) attaches it.
pub async fn detach(
    conn: &mut PgConnection,
    crm: Crm,
    contact: ContactId,
    why: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO crm_links (crm, contact_id, attempt_version, state, last_attempt_at, detached)
         VALUES ($1, $2, 0, 'synced', now(), $3)
         ON CONFLICT (crm, contact_id) DO UPDATE SET detached = EXCLUDED.detached",
    )
    .bind(crm.as_str())
    .bind(contact.0)
    .bind(why)
    .execute(conn)
    .await?;
    Ok(())
}

/// Every CRM record linked to a contact (detached ones too), by CRM.
pub async fn records_of(
    conn: &mut PgConnection,
    contact: ContactId,
) -> Result<Vec<(Crm, String)>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT crm, remote_id FROM crm_links WHERE contact_id = $1 AND remote_id IS NOT NULL",
    )
    .bind(contact.0)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(crm, id)| Some((crm.parse().ok()?, id)))
        .collect())
}

/// Gives `contact` the record `remote_id` in `crm` (a record its merged-away contact had, where
/// it had none): the link starts stale, so delivery writes the contact's values there.
pub async fn adopt(
    conn: &mut PgConnection,
    crm: Crm,
    contact: ContactId,
    remote_id: &str,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO crm_links AS l (crm, contact_id, remote_id, attempt_version, state, last_attempt_at)
         VALUES ($1, $2, $3, $4, 'synced', now())
         ON CONFLICT (crm, contact_id) DO UPDATE SET
             remote_id = EXCLUDED.remote_id, synced_version = NULL, remote_values = NULL,
             written_values = NULL, detached = NULL",
    )
    .bind(crm.as_str())
    .bind(contact.0)
    .bind(remote_id)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(())
}

/// Points the contact's link in `crm` at `remote_id` (the record that survived a merge there),
/// attached.
pub async fn relink(
    conn: &mut PgConnection,
    crm: Crm,
    contact: ContactId,
    remote_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE crm_links SET remote_id = $3, detached = NULL WHERE crm = $1 AND contact_id = $2",
    )
    .bind(crm.as_str())
    .bind(contact.0)
    .bind(remote_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets the contact's record in `crm` (it is gone there): the link reads as never written,
/// so the next delivery creates a record.
pub async fn forget_record(pool: &PgPool, crm: Crm, contact: ContactId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE crm_links SET remote_id = NULL, synced_version = NULL, remote_values = NULL, written_values = NULL
         WHERE crm = $1 AND contact_id = $2",
    )
    .bind(crm.as_str())
    .bind(contact.0)
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets what each CRM's record of a contact held (a privacy deletion).
pub async fn erase_values(conn: &mut PgConnection, contact: ContactId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE crm_links SET remote_values = NULL, written_values = NULL, left_addresses = '{}' WHERE contact_id = $1",
    )
    .bind(contact.0)
    .execute(conn)
    .await?;
    Ok(())
}

/// A record linked to a live contact (attached), with the contact's accepted state: what the
/// drift check compares.
#[derive(Debug, Clone, PartialEq)]
pub struct Linked {
    pub contact_id: ContactId,
    pub remote_id: String,
    /// The contact version the CRM is known to hold (`None`: a write is under way).
    pub synced_version: Option<i64>,
    /// The contact's accepted version.
    pub seq: i64,
    pub doc: ContactFields,
}

impl Linked {
    /// The record should hold the contact's values: nothing is on its way to it.
    pub fn is_settled(&self) -> bool {
        self.synced_version == Some(self.seq)
    }
}

const LINKED: &str = "SELECT l.contact_id, l.remote_id, l.synced_version, h.seq, h.doc
     FROM crm_links l JOIN contact_heads h ON h.id = l.contact_id
     WHERE l.crm = $1 AND l.remote_id IS NOT NULL AND l.detached IS NULL AND h.deleted_at IS NULL";

fn linked(r: &PgRow) -> Result<Linked, sqlx::Error> {
    Ok(Linked {
        contact_id: ContactId(r.try_get("contact_id")?),
        remote_id: r.try_get("remote_id")?,
        synced_version: r.try_get("synced_version")?,
        seq: r.try_get("seq")?,
        doc: serde_json::from_value(r.try_get("doc")?)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
    })
}

/// Linked records of `crm` in contact id order, after `after`, at most `limit`.
pub async fn linked_after(
    pool: &PgPool,
    crm: Crm,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Linked>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "{LINKED} AND ($2::uuid IS NULL OR l.contact_id > $2) ORDER BY l.contact_id LIMIT $3"
    )))
    .bind(crm.as_str())
    .bind(after)
    .bind(limit)
    .try_map(|r: PgRow| linked(&r))
    .fetch_all(pool)
    .await
}

/// The linked records of `crm` among `remote_ids`.
pub async fn linked_records(
    pool: &PgPool,
    crm: Crm,
    remote_ids: &[String],
) -> Result<Vec<Linked>, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "{LINKED} AND l.remote_id = ANY($2)"
    )))
    .bind(crm.as_str())
    .bind(remote_ids)
    .try_map(|r: PgRow| linked(&r))
    .fetch_all(pool)
    .await
}

/// How many records of `crm` are linked to live contacts.
pub async fn count_linked(pool: &PgPool, crm: Crm) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM ({LINKED}) AS linked"
    )))
    .bind(crm.as_str())
    .fetch_one(pool)
    .await
}
