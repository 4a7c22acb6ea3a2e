//! The admin API's data transfer objects and the documentation of its query parameters.
//!
//! `DeadLetterOut` is what an operator sees of an entry: never a credential (error messages are
//! stored without them, and a kept message is its body, not its headers).

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::store::dead_letters::{DeadLetter, RawMessage, Status};

/// A dead-letter entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterOut {
    pub id: Uuid,
    pub kind: EntryKind,
    /// `hubspot` or `salesforce`; null for a message that names no CRM.
    pub crm: Option<String>,
    pub contact_id: Option<Uuid>,
    /// The newest contact version that failed.
    pub version: Option<i64>,
    /// For deliveries: whether the failed change wrote or deleted the contact.
    pub operation: Option<EntryOperation>,
    pub status: EntryStatus,
    /// Why it is here: `permanent`, `retries_exhausted`, `rejected`, `delivery_limit`, …
    pub reason: String,
    /// The last error: the CRM's code (`REQUIRED_FIELD_MISSING`) or SyncRoot's (`UNAVAILABLE`).
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Failed delivery attempts in total.
    pub attempts: i32,
    /// Rounds of the dead-letter worker's slower schedule so far.
    pub rounds: i32,
    /// Every error, oldest first. Only in `GET /dlq/{id}`; a list carries the last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub errors: Option<Vec<AttemptErrorOut>>,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    /// When the dead-letter worker sends it through again (status `retrying`).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// A kept message as it was (kind `message`); null for deliveries.
    pub source: Option<SourceOut>,
}

/// What failed: a contact's delivery to one CRM, or any other message, kept raw.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Delivery,
    Message,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryOperation {
    Upsert,
    Delete,
}

/// `retrying`: waiting for the dead-letter worker's next round; `replayed`: sent through again,
/// outcome pending; `parked`: waiting for a person to replay or discard it.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryStatus {
    Retrying,
    Replayed,
    Parked,
}

/// A CRM SyncRoot delivers to.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CrmName {
    Hubspot,
    Salesforce,
}

/// One failed attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptErrorOut {
    pub at: DateTime<Utc>,
    pub code: String,
    /// Human-readable, without credentials.
    pub message: String,
    /// Whether trying again could help.
    pub retryable: bool,
}

/// A dead-lettered message as it was, and where it came from.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceOut {
    /// The queue it was dead-lettered from.
    pub queue: Option<String>,
    /// The exchange and routing key it was first published with (a replay uses them).
    pub exchange: Option<String>,
    pub routing_key: Option<String>,
    pub content_type: Option<String>,
    /// The AMQP `type` property.
    pub message_type: Option<String>,
    /// The body: text when it is UTF-8, else base64. Only in `GET /dlq/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub body: Option<String>,
    /// How `body` is encoded; present with `body`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub body_encoding: Option<BodyEncoding>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    Utf8,
    Base64,
}

/// One page of entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterPage {
    pub items: Vec<DeadLetterOut>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The answer to a replay: how many entries were sent through the normal path again.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayedOut {
    pub replayed: u64,
}

/// The answer to a bulk replay.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkReplayedOut {
    /// Entries sent through the normal path again.
    pub replayed: u64,
    /// Matching entries that cannot be sent anywhere (a message kept without its origin, or no
    /// queue for it, e.g. a CRM that is no longer enabled), left as they were: discard them,
    /// or fix the cause and replay again.
    pub skipped: u64,
}

/// The answer to a bulk discard.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiscardedOut {
    pub discarded: u64,
}

/// How much of an entry to show.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// A list item: without the error history and the kept body, which can be large.
    Summary,
    Full,
}

impl DeadLetterOut {
    pub fn new(e: DeadLetter, detail: Detail) -> Self {
        let full = detail == Detail::Full;
        Self {
            id: e.id,
            kind: if e.kind == "delivery" {
                EntryKind::Delivery
            } else {
                EntryKind::Message
            },
            crm: e.crm,
            contact_id: e.contact_id,
            version: e.version,
            operation: e.operation.as_deref().and_then(|o| match o {
                "upsert" => Some(EntryOperation::Upsert),
                "delete" => Some(EntryOperation::Delete),
                _ => None,
            }),
            status: match e.status {
                Status::Retrying => EntryStatus::Retrying,
                Status::Replayed => EntryStatus::Replayed,
                Status::Parked => EntryStatus::Parked,
            },
            reason: e.reason,
            error_code: e.error_code,
            error_message: e.error_message,
            attempts: e.attempts,
            rounds: e.rounds,
            errors: full.then(|| {
                e.errors
                    .into_iter()
                    .map(|a| AttemptErrorOut {
                        at: a.at,
                        code: a.code,
                        message: a.message,
                        retryable: a.retryable,
                    })
                    .collect()
            }),
            first_failed_at: e.first_failed_at,
            last_failed_at: e.last_failed_at,
            next_attempt_at: e.next_attempt_at,
            source: e.source.map(|raw| SourceOut::new(raw, full)),
        }
    }
}

impl SourceOut {
    fn new(raw: RawMessage, with_body: bool) -> Self {
        let (body, body_encoding) = if with_body {
            match String::from_utf8(raw.body) {
                Ok(text) => (Some(text), Some(BodyEncoding::Utf8)),
                Err(e) => (
                    Some(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
                    Some(BodyEncoding::Base64),
                ),
            }
        } else {
            (None, None)
        };
        Self {
            queue: raw.queue,
            exchange: raw.exchange,
            routing_key: raw.routing_key,
            content_type: raw.content_type,
            message_type: raw.message_type,
            body,
            body_encoding,
        }
    }
}

// The query parameters, for the document only: `params.rs` parses them by hand so that every
// bad value is reported with its parameter's name (as `GET /contacts` does).

/// Which entries an operation applies to; every filter is optional and they combine with AND.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct FilterParams {
    /// Only entries of this CRM.
    #[param(inline, nullable = false)]
    crm: Option<CrmName>,
    /// Only entries whose last error has this code (exact match).
    #[param(
        nullable = false,
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F]*$"
    )]
    error_code: Option<String>,
    /// Only entries with this status.
    #[param(inline, nullable = false)]
    status: Option<EntryStatus>,
    /// Only entries of this contact.
    #[param(nullable = false)]
    contact_id: Option<Uuid>,
    /// Only entries that last failed at or after this time (RFC 3339).
    #[param(nullable = false)]
    since: Option<DateTime<Utc>>,
    /// Only entries that last failed before this time (RFC 3339).
    #[param(nullable = false)]
    until: Option<DateTime<Utc>>,
}

/// Paging of `GET /dlq`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// Page size (default 100).
    #[param(nullable = false, minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page (opaque).
    #[param(nullable = false)]
    cursor: Option<Uuid>,
}

/// The guard of `POST /dlq/discard`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DiscardParams {
    /// `true` allows a discard without filters, i.e. of every entry. Without it, at least one
    /// filter is required (400 otherwise).
    #[param(nullable = false)]
    all: Option<bool>,
}
