//! Accepting a change: the one transaction that turns a contact's new state into a queued
//! change, used by the API (`api::accept`) and the webhook worker (`worker::inbound`) alike.
//!
//! ```text
//! BEGIN
//!   lock (or insert) the contact's head row      -- serialises writers of one contact
//!   compute the new state, stamps and sequence number; record the version's history
//!   publish the change, wait for the broker's confirm
//! COMMIT                                         -- only now is the change accepted
//! ```
//!
//! If the broker is away or does not confirm, the transaction rolls back and nothing is left
//! half-accepted. Holding the row lock until the confirm is what makes a contact's changes
//! enter the queue in sequence order, whichever process accepted them. The forwarder skips a
//! change whose head did not commit, even if the broker took it.
//!
//! Not here: deciding the new state (the API's request, or `domain::merge`).

pub mod group;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::change::CHANGE_FORMAT_VERSION;
use crate::domain::{ChangeOp, ContactChange, ContactFields, ContactId, Origin};
use crate::queue::publisher::Publisher;

/// Why a change could not be accepted (nothing was, except for [`IntakeError::Interrupted`]).
#[derive(Clone, Copy, Debug, thiserror::Error)]
pub enum IntakeError {
    /// The broker did not confirm the change.
    #[error("the message broker did not confirm the change")]
    NotConfirmed,
    /// The commit failed after the broker confirmed; the forwarder will skip the message.
    #[error("the database failed while recording the change")]
    CommitFailed,
    /// No transaction could be begun.
    #[error("the database is unavailable")]
    Database,
    /// The acceptance's task ended without an answer (a bug); it may or may not have committed.
    #[error("the acceptance was interrupted")]
    Interrupted,
}

/// A change about to be published.
pub struct Draft {
    pub id: ContactId,
    pub seq: i64,
    pub op: ChangeOp,
    pub origin: Origin,
    pub accepted_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub contact: ContactFields,
}

impl Draft {
    /// The queued form, under a fresh message id (also the head's `message_id`).
    pub fn into_change(self, message_id: Uuid) -> ContactChange {
        ContactChange {
            v: CHANGE_FORMAT_VERSION,
            message_id,
            contact_id: self.id,
            seq: self.seq,
            op: self.op,
            origin: self.origin,
            accepted_at: self.accepted_at,
            created_at: self.created_at,
            contact: self.contact,
            bulk: false,
        }
    }
}

/// Publishes the change (waiting for the broker's confirm), then commits the transaction that
/// advanced its head. On any error the transaction is rolled back (dropped).
pub async fn publish_and_commit(
    publisher: &Publisher,
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    change: &ContactChange,
) -> Result<(), IntakeError> {
    if let Err(e) = publisher.publish_change(change).await {
        tracing::warn!(error = %e, contact = %change.contact_id, origin = %change.origin, "publish not confirmed; change refused");
        return Err(IntakeError::NotConfirmed);
    }
    tx.commit().await.map_err(|e| {
        tracing::error!(error = %e, contact = %change.contact_id, seq = change.seq, "commit failed after the broker confirmed");
        IntakeError::CommitFailed
    })
}
