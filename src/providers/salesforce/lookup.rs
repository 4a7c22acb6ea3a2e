//! The read-only queries: those a batch runs before it writes — Contacts that already have a
//! batch's e-mail addresses (so a person is linked, not duplicated), and Contacts that carry a
//! deleted contact's external id (a record written before its id could be recorded) — and
//! reading Contacts back: by record id ([`by_record_id`], for two-way sync) and by modification
//! time ([`changed_since`], for the poller that catches lost change notifications).
//!
//! What it is not: the decisions taken from the answers (`plan.rs`), or what a record means
//! (`transformers.rs`).
//!
//! Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_query.htm

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::rest::Rest;
use super::soql::{self, QUERY_BUDGET};
use super::transformers::SYSTEM_MODSTAMP;
use super::wire::text_field;
use crate::providers::ProviderError;

/// A Contact whose e-mail matches one in the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailMatch {
    /// Salesforce record id.
    pub id: String,
    /// The SyncRoot contact id it is linked to, if any.
    pub external_id: Option<String>,
}

/// Contacts by lower-cased e-mail, each list in the order Salesforce returned it. One query,
/// more only when the addresses would make the URL too long.
pub async fn by_email(
    rest: &Rest,
    external_id_field: &str,
    emails: &[&str],
) -> Result<HashMap<String, Vec<EmailMatch>>, ProviderError> {
    let head = format!("SELECT Id, Email, {external_id_field} FROM Contact WHERE Email");
    let mut matches: HashMap<String, Vec<EmailMatch>> = HashMap::new();
    for q in soql::in_queries(&head, distinct(emails), QUERY_BUDGET) {
        for record in rest.query(&q).await? {
            let (Some(id), Some(email)) = (text_field(&record, "Id"), text_field(&record, "Email"))
            else {
                continue;
            };
            // SOQL compares e-mails case-insensitively; SyncRoot stores them lower-cased.
            matches
                .entry(email.to_lowercase())
                .or_default()
                .push(EmailMatch {
                    id: id.to_owned(),
                    external_id: text_field(&record, external_id_field).map(str::to_owned),
                });
        }
    }
    Ok(matches)
}

/// Live Contacts' record ids by lower-cased external id value.
pub async fn by_external_id(
    rest: &Rest,
    external_id_field: &str,
    values: &[&str],
) -> Result<HashMap<String, String>, ProviderError> {
    let head = format!("SELECT Id, {external_id_field} FROM Contact WHERE {external_id_field}");
    let mut found = HashMap::new();
    for q in soql::in_queries(&head, distinct(values), QUERY_BUDGET) {
        for record in rest.query(&q).await? {
            if let (Some(id), Some(value)) = (
                text_field(&record, "Id"),
                text_field(&record, external_id_field),
            ) {
                found.insert(value.to_lowercase(), id.to_owned());
            }
        }
    }
    Ok(found)
}

/// The live Contacts among `ids`, with the `fields` named (see `transformers::read_fields`).
/// Ids that are not record ids ([`soql::is_record_id`]) are skipped: they never reach the
/// query text, so a value such as `003' OR Name != '` cannot change what is asked. Recycled
/// and unknown ids are simply not found. One query, more only when the ids would make the
/// URL too long; none at all without a valid id.
pub async fn by_record_id(
    rest: &Rest,
    fields: &[String],
    ids: &[String],
) -> Result<Vec<Map<String, Value>>, ProviderError> {
    let valid: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|id| {
            let ok = soql::is_record_id(id);
            if !ok {
                tracing::warn!(id = ?id, "not a Salesforce record id; not read");
            }
            ok
        })
        .collect();
    let head = format!("SELECT {} FROM Contact WHERE Id", fields.join(", "));
    let mut records = Vec::new();
    for q in soql::in_queries(&head, distinct(&valid), QUERY_BUDGET) {
        records.append(&mut rest.query(&q).await?);
    }
    Ok(records)
}

/// Live Contacts whose `SystemModstamp` is at or after `since` (to the second), oldest first,
/// at most `limit`, with the `fields` named (see `transformers::read_fields`). One query; none
/// for a `limit` of 0. The `query` resource leaves recycled records out.
pub async fn changed_since(
    rest: &Rest,
    fields: &[String],
    since: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Map<String, Value>>, ProviderError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut records = rest
        .query(&changed_since_query(fields, since, limit))
        .await?;
    // `LIMIT` bounds the answer already; this only guards against a server that ignores it.
    records.truncate(limit);
    Ok(records)
}

/// `SELECT <fields> FROM Contact WHERE SystemModstamp >= <since> ORDER BY SystemModstamp ASC LIMIT <limit>`.
fn changed_since_query(fields: &[String], since: DateTime<Utc>, limit: usize) -> String {
    format!(
        "SELECT {} FROM Contact WHERE {SYSTEM_MODSTAMP} >= {} ORDER BY {SYSTEM_MODSTAMP} ASC LIMIT {limit}",
        fields.join(", "),
        soql::datetime_literal(since),
    )
}

/// The values once each, in first-seen order.
fn distinct<'v>(values: &[&'v str]) -> Vec<&'v str> {
    let mut out: Vec<&str> = Vec::with_capacity(values.len());
    for v in values {
        if !out.contains(v) {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_asked_for_by_system_modstamp_from_a_formatted_date_time() {
        let fields = ["Id", "Email", "SystemModstamp"].map(String::from);
        let since: DateTime<Utc> = "2024-03-05T08:00:07.654Z".parse().unwrap();
        assert_eq!(
            changed_since_query(&fields, since, 50),
            "SELECT Id, Email, SystemModstamp FROM Contact WHERE SystemModstamp >= \
             2024-03-05T08:00:07Z ORDER BY SystemModstamp ASC LIMIT 50"
        );
    }
}
