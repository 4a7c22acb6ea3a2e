//! `contact_versions`: every accepted version of a contact, with where it came from, what it
//! changed and which conflicts were resolved. Written by `heads` in the accepting statement;
//! read here for `GET /contacts/{id}/history` and for the change feed (`GET /changes`).

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row, postgres::PgRow};

use crate::domain::ContactId;
use crate::domain::merge::{Conflict, FieldChange};

/// One version as the history shows it.
#[derive(Debug, Clone)]
pub struct VersionRow {
    /// Position in the history (increasing); the page cursor.
    pub entry: i64,
    pub version: i64,
    /// `api`, `hubspot` or `salesforce`.
    pub origin: String,
    /// `create`, `update`, `delete`, `kept` (a CRM's change lost every field), `detach` (a
    /// record deleted in a CRM, kept here), `merge` or `erase`.
    pub operation: String,
    pub changes: Vec<FieldChange>,
    pub conflicts: Vec<Conflict>,
    pub accepted_at: DateTime<Utc>,
    /// What happened, in words, where the operation needs it.
    pub note: Option<String>,
    /// How a CRM's change arrived: `webhook` or `poller` (`None` for the API).
    pub via: Option<String>,
}

/// An entry that is not a new version: a CRM change that lost every field to the policy
/// (`kept`, with its conflicts), or a record detached from the contact (`detach`).
pub struct Event<'a> {
    pub version: i64,
    pub origin: crate::domain::Origin,
    pub operation: &'static str,
    pub conflicts: &'a [Conflict],
    pub note: Option<&'a str>,
    pub via: Option<&'static str>,
}

/// Records an entry that does not change the contact's version.
pub async fn record(
    tx: &mut sqlx::PgConnection,
    id: ContactId,
    event: &Event<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO contact_versions (contact_id, version, origin, operation, changes, conflicts, accepted_at, note, via)
         VALUES ($1, $2, $3, $4, '[]', $5, now(), $6, $7)",
    )
    .bind(id.0)
    .bind(event.version)
    .bind(event.origin.as_str())
    .bind(event.operation)
    .bind(sqlx::types::Json(event.conflicts))
    .bind(event.note)
    .bind(event.via)
    .execute(tx)
    .await?;
    Ok(())
}

/// Removes every value from a contact's history (a privacy deletion): which fields changed
/// and when stays, what they held does not.
pub async fn erase_values(tx: &mut sqlx::PgConnection, id: ContactId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE contact_versions SET
             changes = COALESCE((SELECT jsonb_agg(jsonb_build_object('field', c->'field', 'old', NULL, 'new', NULL))
                                 FROM jsonb_array_elements(changes) AS c), '[]'),
             conflicts = COALESCE((SELECT jsonb_agg(c || jsonb_build_object('kept_value', NULL, 'lost_value', NULL))
                                   FROM jsonb_array_elements(conflicts) AS c), '[]')
         WHERE contact_id = $1",
    )
    .bind(id.0)
    .execute(tx)
    .await?;
    Ok(())
}

/// A contact's history entries, oldest first, after entry `after`, at most `limit`.
pub async fn list(
    pool: &PgPool,
    id: ContactId,
    after: i64,
    limit: i64,
) -> Result<Vec<VersionRow>, sqlx::Error> {
    sqlx::query(
        "SELECT entry, version, origin, operation, changes, conflicts, accepted_at, note, via FROM contact_versions
         WHERE contact_id = $1 AND entry > $2 ORDER BY entry LIMIT $3",
    )
    .bind(id.0)
    .bind(after)
    .bind(limit)
    .try_map(|r: PgRow| version_row(&r))
    .fetch_all(pool)
    .await
}

fn version_row(r: &PgRow) -> Result<VersionRow, sqlx::Error> {
    let decode = |e: serde_json::Error| sqlx::Error::Decode(Box::new(e));
    Ok(VersionRow {
        entry: r.try_get("entry")?,
        version: r.try_get("version")?,
        origin: r.try_get("origin")?,
        operation: r.try_get("operation")?,
        changes: serde_json::from_value(r.try_get("changes")?).map_err(decode)?,
        conflicts: serde_json::from_value(r.try_get("conflicts")?).map_err(decode)?,
        accepted_at: r.try_get("accepted_at")?,
        note: r.try_get("note")?,
        via: r.try_get("via")?,
    })
}

/// A position in the change feed: the writing transaction's id and the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct FeedPosition {
    pub txid: u64,
    pub entry: i64,
}

impl FeedPosition {
    /// The feed's cursor of this position: `<transaction id>-<entry>`. The OpenAPI document
    /// publishes its shape (`^[0-9]{1,19}-[0-9]{1,18}$`) and every string of that shape is a
    /// position, so a schema-valid request is never refused (schemathesis checks it); a client
    /// should still only pass back what it was given. Subscriptions' deliveries carry it as
    /// their `webhook-id`.
    pub fn cursor(self) -> String {
        format!("{}-{}", self.txid, self.entry)
    }

    /// Reads a cursor made by [`FeedPosition::cursor`]; `None` for anything else.
    pub fn parse_cursor(cursor: &str) -> Option<Self> {
        let (txid, entry) = cursor.split_once('-')?;
        let digits = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !digits(txid, 19) || !digits(entry, 18) {
            return None;
        }
        Some(Self {
            txid: txid.parse().ok()?,
            entry: entry.parse().ok()?,
        })
    }
}

/// One entry of the change feed: a history entry and the contact it belongs to.
#[derive(Debug, Clone)]
pub struct FeedRow {
    pub position: FeedPosition,
    pub contact_id: uuid::Uuid,
    pub row: VersionRow,
}

/// The feed's entries after `after`, at most `limit`, in feed order.
///
/// Entry numbers come from a sequence, so a transaction can take a smaller number and commit
/// after a larger one: a reader that had moved past the larger would never see it. Ordering
/// by the writing transaction's id instead, and serving only transactions older than every
/// one still running (the snapshot's `xmin`), no entry can later appear before a position
/// already served. Each version takes its contact's head lock before its transaction writes
/// anything, so one contact's versions come in version order. A long-running transaction
/// anywhere on the server holds the feed back until it ends.
pub async fn feed(
    pool: &PgPool,
    after: FeedPosition,
    limit: i64,
) -> Result<Vec<FeedRow>, sqlx::Error> {
    sqlx::query(
        "SELECT txid::text AS txid, entry, contact_id, version, origin, operation, changes, conflicts,
                accepted_at, note, via
           FROM contact_versions
          WHERE (txid, entry) > ($1::text::xid8, $2)
            AND txid < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY txid, entry
          LIMIT $3",
    )
    .bind(after.txid.to_string())
    .bind(after.entry)
    .bind(limit)
    .try_map(|r: PgRow| {
        let txid: String = r.try_get("txid")?;
        let txid = txid
            .parse::<u64>()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let row = version_row(&r)?;
        Ok(FeedRow {
            position: FeedPosition {
                txid,
                entry: row.entry,
            },
            contact_id: r.try_get("contact_id")?,
            row,
        })
    })
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::FeedPosition;

    #[test]
    fn a_cursor_round_trips_and_anything_else_is_refused() {
        let p = FeedPosition {
            txid: 4_294_967_396,
            entry: 12,
        };
        assert_eq!(FeedPosition::parse_cursor(&p.cursor()), Some(p));
        assert_eq!(p.cursor(), "4294967396-12");
        for bad in [
            "",
            "x",
            "1-",
            "-1",
            "1--2",
            "1-2-3",
            "a-1",
            "1-99999999999999999999",
        ] {
            assert_eq!(FeedPosition::parse_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_published_shape_s_extremes_are_positions() {
        let max = format!("{}-{}", "9".repeat(19), "9".repeat(18));
        assert!(FeedPosition::parse_cursor(&max).is_some());
        assert!(FeedPosition::parse_cursor("0-0").is_some());
        assert_eq!(
            FeedPosition::parse_cursor(&format!("{}-0", "9".repeat(20))),
            None,
            "longer than published"
        );
    }
}
