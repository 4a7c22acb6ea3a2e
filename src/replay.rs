//! Sending dead letters through again, through the normal path: a delivery entry becomes a
//! fresh delivery task (attempt 0) in its CRM's queue, a kept message goes back where it came
//! from. Shared by the admin API (and so `syncroot dlq replay`) and the dead-letter worker's
//! rounds.
//!
//! A replay keeps every guarantee of the normal path because it *is* the normal path: the
//! delivery worker reads the contact's current state, links by record id or upserts by a stable
//! key, so a replay never writes a stale version or a second record. Entries are locked while
//! they are sent (`FOR UPDATE SKIP LOCKED`), so two replicas never send one twice at once; a
//! crash between the broker's confirm and the commit sends it again, which is harmless.

use lapin::BasicProperties;
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::Crm;
use crate::domain::change::{AttemptError, DeliveryTask};
use crate::queue::publisher::{PublishError, Publisher};
use crate::store::audit;
use crate::store::dead_letters::{self, DeadLetter, Filter};

/// Entries sent per transaction.
const CHUNK: i64 = 200;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Publish(#[from] PublishError),
    /// The entry cannot be sent anywhere (e.g. a message with no known origin).
    #[error("{0}")]
    Unroutable(String),
}

impl ReplayError {
    /// Why the entry cannot be sent anywhere, when that is the failure: trying again later will
    /// not help, so a bulk replay skips it and goes on.
    fn unsendable(&self) -> Option<String> {
        match self {
            Self::Unroutable(why) => Some(why.clone()),
            Self::Publish(PublishError::Unroutable) => Some("no queue is bound for it".into()),
            _ => None,
        }
    }
}

/// Replays one entry, whatever its status, recording it in the admin audit log as asked `by`
/// someone. `Ok(false)` when there is no such entry.
pub async fn replay_one(
    db: &PgPool,
    publisher: &Publisher,
    id: Uuid,
    by: &audit::Requested,
) -> Result<bool, ReplayError> {
    let mut tx = db.begin().await?;
    let Some(entry) = dead_letters::claim(&mut tx, id).await? else {
        return Ok(false);
    };
    send(publisher, &entry).await?;
    dead_letters::mark_replayed(&mut tx, &[entry.id]).await?;
    audit::record(&mut tx, by, audit::Action::Replay, &[entry.id]).await?;
    tx.commit().await?;
    Ok(true)
}

/// What a bulk replay or a dead-letter round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Entries sent through the normal path again.
    pub sent: u64,
    /// Entries that cannot be sent anywhere (a message kept without its origin, or no queue
    /// bound for it any more, e.g. a CRM that is no longer enabled). A bulk replay leaves them
    /// as they were; a round parks them.
    pub skipped: u64,
}

/// Replays every matching entry that is retrying or parked, walking forward in id order so
/// each is tried once. Each chunk's transaction records the entries it sent in the admin audit
/// log, as asked `by` someone.
pub async fn replay_matching(
    db: &PgPool,
    publisher: &Publisher,
    filter: &Filter,
    by: &audit::Requested,
) -> Result<Replayed, ReplayError> {
    let mut done = Replayed::default();
    let mut after = None;
    loop {
        let mut tx = db.begin().await?;
        let entries = dead_letters::claim_matching(&mut tx, filter, after, CHUNK).await?;
        if entries.is_empty() {
            return Ok(done);
        }
        let pass = send_all(&mut tx, publisher, &entries).await?;
        if !pass.sent.is_empty() {
            audit::record(&mut tx, by, audit::Action::ReplayMatching, &pass.sent).await?;
        }
        tx.commit().await?;
        let counts = pass.counts();
        done.sent += counts.sent;
        done.skipped += counts.skipped;
        after = pass.last;
    }
}

/// Sends the entries whose dead-letter round is due; one that cannot be sent anywhere is
/// parked with the reason.
pub async fn replay_due(db: &PgPool, publisher: &Publisher) -> Result<Replayed, ReplayError> {
    let mut tx = db.begin().await?;
    let entries = dead_letters::claim_due(&mut tx, CHUNK).await?;
    if entries.is_empty() {
        return Ok(Replayed::default());
    }
    let pass = send_all(&mut tx, publisher, &entries).await?;
    for (id, why) in &pass.skipped {
        let error = AttemptError {
            at: chrono::Utc::now(),
            code: NOT_REPLAYABLE.into(),
            message: format!("its round could not be sent: {why}"),
            retryable: false,
        };
        dead_letters::park_unsendable(&mut tx, *id, &error).await?;
    }
    tx.commit().await?;
    Ok(pass.counts())
}

/// The error code of an entry parked because it cannot be sent anywhere.
pub const NOT_REPLAYABLE: &str = "NOT_REPLAYABLE";

/// What one pass over claimed entries did.
struct Pass {
    sent: Vec<Uuid>,
    /// Entries that cannot be sent anywhere, with why.
    skipped: Vec<(Uuid, String)>,
    /// The last entry sent or skipped: where a walk goes on from.
    last: Option<Uuid>,
}

impl Pass {
    fn counts(&self) -> Replayed {
        Replayed {
            sent: self.sent.len() as u64,
            skipped: self.skipped.len() as u64,
        }
    }
}

/// Sends entries one after the other and marks each sent one, even when a later one fails;
/// fails only when the first entry it could not skip failed.
async fn send_all(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    publisher: &Publisher,
    entries: &[DeadLetter],
) -> Result<Pass, ReplayError> {
    let mut pass = Pass {
        sent: Vec::with_capacity(entries.len()),
        skipped: Vec::new(),
        last: None,
    };
    let mut failure = None;
    for entry in entries {
        match send(publisher, entry).await {
            Ok(()) => pass.sent.push(entry.id),
            Err(e) => match e.unsendable() {
                Some(why) => {
                    tracing::warn!(id = %entry.id, %why, "dead letter cannot be replayed");
                    pass.skipped.push((entry.id, why));
                }
                None => {
                    failure = Some(e);
                    break;
                }
            },
        }
        pass.last = Some(entry.id);
    }
    dead_letters::mark_replayed(tx, &pass.sent).await?;
    match failure {
        // What was sent stays marked: the caller's commit must still happen.
        Some(e) if pass.last.is_none() => Err(e),
        Some(e) => {
            tracing::warn!(error = %e, sent = pass.sent.len(), "replay stopped part-way");
            Ok(pass)
        }
        None => Ok(pass),
    }
}

/// Publishes one entry (confirmed) through the normal path.
async fn send(publisher: &Publisher, entry: &DeadLetter) -> Result<(), ReplayError> {
    if entry.kind == "delivery" {
        let (Some(crm), Some(contact), Some(version)) = (
            entry.crm.as_deref().and_then(|c| c.parse::<Crm>().ok()),
            entry.contact_id,
            entry.version,
        ) else {
            return Err(ReplayError::Unroutable(
                "delivery entry without a known CRM, contact or version".into(),
            ));
        };
        let task = DeliveryTask::new(crate::domain::ContactId(contact), version, crm);
        publisher.publish_delivery(&task).await?;
        return Ok(());
    }
    let Some(raw) = &entry.source else {
        return Err(ReplayError::Unroutable(
            "message kept without its content".into(),
        ));
    };
    // Back through the exchange it was first published to, else straight to its queue.
    let (exchange, key) = match (&raw.exchange, &raw.routing_key, &raw.queue) {
        (Some(x), Some(k), _) if !x.is_empty() => (x.clone(), k.clone()),
        (_, _, Some(q)) => (String::new(), q.clone()),
        _ => {
            return Err(ReplayError::Unroutable(
                "message without its original exchange or queue".into(),
            ));
        }
    };
    let mut props = BasicProperties::default().with_delivery_mode(2);
    if let Some(ct) = &raw.content_type {
        props = props.with_content_type(ct.as_str().into());
    }
    if let Some(t) = &raw.message_type {
        props = props.with_type(t.as_str().into());
    }
    publisher.publish(&exchange, &key, &raw.body, props).await?;
    Ok(())
}
