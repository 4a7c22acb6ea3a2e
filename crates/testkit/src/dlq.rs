//! Seeding the dead-letter queue directly in Postgres, and calling the admin API, for tests of
//! the admin API and CLI.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use syncroot::domain::change::AttemptError;
use syncroot::store::dead_letters::{self, DeadLetter, RawMessage, Status};
use uuid::Uuid;

/// Sends a request; returns its status and JSON body (null when there is none).
pub async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A delivery entry to seed; `DeliverySeed::new` gives a parked HubSpot one failing now.
pub struct DeliverySeed {
    pub crm: &'static str,
    pub contact_id: Uuid,
    pub version: i64,
    pub status: Status,
    pub code: &'static str,
    pub last_failed_at: DateTime<Utc>,
    /// When the dead-letter worker's next round is due (for a `retrying` entry).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl DeliverySeed {
    pub fn new(crm: &'static str, contact_id: Uuid) -> Self {
        Self {
            crm,
            contact_id,
            version: 1,
            status: Status::Parked,
            code: "INVALID_EMAIL",
            last_failed_at: Utc::now(),
            next_attempt_at: None,
        }
    }

    /// Saves the entry (two errors in its history); returns its id.
    pub async fn save(self, db: &PgPool) -> Uuid {
        let id = Uuid::now_v7();
        let first = self.last_failed_at - chrono::Duration::minutes(5);
        let errors = vec![
            AttemptError {
                at: first,
                code: "UNAVAILABLE".into(),
                message: "HubSpot answered 503".into(),
                retryable: true,
            },
            AttemptError {
                at: self.last_failed_at,
                code: self.code.into(),
                message: format!("{} from the CRM", self.code),
                retryable: false,
            },
        ];
        let entry = DeadLetter {
            id,
            kind: "delivery".into(),
            crm: Some(self.crm.into()),
            contact_id: Some(self.contact_id),
            version: Some(self.version),
            operation: Some("upsert".into()),
            status: self.status,
            reason: "permanent".into(),
            error_code: Some(self.code.into()),
            error_message: Some(format!("{} from the CRM", self.code)),
            errors,
            attempts: 3,
            rounds: 0,
            next_attempt_at: self.next_attempt_at,
            source: None,
            first_failed_at: first,
            last_failed_at: self.last_failed_at,
        };
        dead_letters::save_delivery(db, &entry)
            .await
            .expect("seeding a delivery entry");
        id
    }
}

/// Saves a parked `message` entry kept with `source`; returns its id.
pub async fn seed_message(db: &PgPool, source: RawMessage) -> Uuid {
    let id = Uuid::now_v7();
    let now = Utc::now();
    let entry = DeadLetter {
        id,
        kind: "message".into(),
        crm: None,
        contact_id: None,
        version: None,
        operation: None,
        status: Status::Parked,
        reason: "rejected".into(),
        error_code: Some("UNDECODABLE".into()),
        error_message: Some("not a message SyncRoot understands".into()),
        errors: vec![AttemptError {
            at: now,
            code: "UNDECODABLE".into(),
            message: "not a message SyncRoot understands".into(),
            retryable: false,
        }],
        attempts: 1,
        rounds: 0,
        next_attempt_at: None,
        source: Some(source),
        first_failed_at: now,
        last_failed_at: now,
    };
    dead_letters::insert_message(db, &entry)
        .await
        .expect("seeding a message entry");
    id
}
