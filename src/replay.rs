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
use crate::domain::change::DeliveryTask;
use crate::queue::publisher::{PublishError, Publisher};
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

/// Replays one entry, whatever its status. `Ok(false)` when there is no such entry.
pub async fn replay_one(db: &PgPool, publisher: &Publisher, id: Uuid) -> Result<bool, ReplayError> {
    let mut tx = db.begin().await?;
    let Some(entry) = dead_letters::claim(&mut tx, id).await? else {
        return Ok(false);
    };
    send(publisher, &entry).await?;
    dead_letters::mark_replayed(&mut tx, &[entry.id]).await?;
    tx.commit().await?;
    Ok(true)
}

/// Replays every matching entry that is retrying or parked; returns how many were sent.
pub async fn replay_matching(
    db: &PgPool,
    publisher: &Publisher,
    filter: &Filter,
) -> Result<u64, ReplayError> {
    let mut sent = 0;
    loop {
        let mut tx = db.begin().await?;
        let entries = dead_letters::claim_matching(&mut tx, filter, CHUNK).await?;
        if entries.is_empty() {
            return Ok(sent);
        }
        sent += send_all(&mut tx, publisher, &entries).await?;
        tx.commit().await?;
    }
}

/// Sends the entries whose dead-letter round is due; returns how many.
pub async fn replay_due(db: &PgPool, publisher: &Publisher) -> Result<u64, ReplayError> {
    let mut tx = db.begin().await?;
    let entries = dead_letters::claim_due(&mut tx, CHUNK).await?;
    if entries.is_empty() {
        return Ok(0);
    }
    let sent = send_all(&mut tx, publisher, &entries).await?;
    tx.commit().await?;
    Ok(sent)
}

/// Sends entries one after the other and marks each sent one, even when a later one fails.
async fn send_all(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    publisher: &Publisher,
    entries: &[DeadLetter],
) -> Result<u64, ReplayError> {
    let mut sent = Vec::with_capacity(entries.len());
    let mut failure = None;
    for entry in entries {
        match send(publisher, entry).await {
            Ok(()) => sent.push(entry.id),
            // Nowhere to send it (no origin kept, or no queue bound any more, e.g. a CRM that was
            // disabled): left as it is, and the rest go on.
            Err(ReplayError::Unroutable(why)) => {
                tracing::warn!(id = %entry.id, %why, "dead letter left as it is: cannot replay it");
            }
            Err(ReplayError::Publish(PublishError::Unroutable)) => {
                tracing::warn!(id = %entry.id, "dead letter left as it is: no queue is bound for it");
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    dead_letters::mark_replayed(tx, &sent).await?;
    match failure {
        // What was sent stays marked: the caller's commit must still happen.
        Some(e) if sent.is_empty() => Err(e),
        Some(e) => {
            tracing::warn!(error = %e, sent = sent.len(), "replay stopped part-way");
            Ok(sent.len() as u64)
        }
        None => Ok(sent.len() as u64),
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
