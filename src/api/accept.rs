//! Accepting a write from the API: validated request → new state → `intake`'s transaction
//! (lock the head, publish with confirm, commit), plus what only the API has: idempotency keys
//! and the reply.

use chrono::Utc;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::AppState;
use super::auth::Principal;
use super::problem::ApiError;
use super::schema::{AcceptedOut, Operation};
use crate::domain::fields::{Field, FieldValue};
use crate::domain::merge::{Stamp, Stamps, changes};
use crate::domain::{ChangeOp, ContactFields, ContactId, Origin};
use crate::intake::{self, Draft, IntakeError};
use crate::store::heads::{self, Head, VersionNote};
use crate::store::idempotency::{self, Remembered};

/// A write's outcome, as the client sees it.
pub struct Reply {
    pub accepted: AcceptedOut,
    /// True when this is a replay of an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// What a request asks to do to an existing contact.
pub enum Modification {
    Replace(ContactFields),
    Patch(Vec<(Field, FieldValue)>),
    Delete,
}

/// Accepts a new contact. With an idempotency key, a retry of the same request gets the first
/// answer back and a different body under the same key is refused.
pub async fn create(
    state: &AppState,
    doc: ContactFields,
    idem: Option<(Principal, String)>,
) -> Result<Reply, ApiError> {
    let id = ContactId::new();
    let now = Utc::now();
    let accepted = AcceptedOut {
        id: id.0,
        version: 1,
        operation: Operation::Create,
        accepted_at: now,
    };
    let mut tx = state.db.begin().await?;
    if let Some((principal, key)) = idem {
        let outcome = Remembered {
            request_hash: request_hash(&doc),
            status: 202,
            location: Some(location(id)),
            body: serde_json::to_value(&accepted).map_err(ApiError::internal)?,
        };
        if let Some(earlier) = idempotency::claim(
            &mut tx,
            &principal.id,
            &key,
            &outcome,
            state.idempotency_ttl,
        )
        .await?
        {
            return replay(earlier, &outcome.request_hash);
        }
    }
    let message_id = Uuid::new_v4();
    let mut stamps = Stamps::default();
    stamps.touch(None, &doc, api_stamp(now));
    let changed = changes(None, &doc);
    let note = VersionNote::new(Origin::Api, &changed, &[]);
    heads::insert(&mut tx, id, &doc, &stamps, now, message_id, &note).await?;
    let draft = Draft {
        id,
        seq: 1,
        op: ChangeOp::Upsert,
        origin: Origin::Api,
        accepted_at: now,
        created_at: now,
        contact: doc,
    };
    publish_and_commit(state, tx, draft, message_id).await?;
    Ok(Reply {
        accepted,
        replayed: false,
    })
}

/// Accepts a replace, patch or delete of an existing contact.
pub async fn modify(state: &AppState, id: ContactId, m: Modification) -> Result<Reply, ApiError> {
    let mut tx = state.db.begin().await?;
    let head = match heads::lock(&mut tx, id).await? {
        None => return Err(ApiError::NotFound(format!("no contact has id {id}"))),
        // Deleting again is a success that changes nothing, so clients can retry deletes.
        Some(h) if h.deleted_at.is_some() && matches!(m, Modification::Delete) => {
            let accepted = AcceptedOut {
                id: id.0,
                version: h.seq,
                operation: Operation::Delete,
                accepted_at: Utc::now(),
            };
            return Ok(Reply {
                accepted,
                replayed: false,
            });
        }
        Some(h) if h.deleted_at.is_some() => {
            return Err(ApiError::NotFound(format!("contact {id} was deleted")));
        }
        Some(h) => h,
    };
    let now = Utc::now();
    let (op, operation, doc) = match m {
        Modification::Replace(doc) => (ChangeOp::Upsert, Operation::Update, doc),
        Modification::Patch(values) => {
            let mut doc = head.doc.clone();
            doc.apply(values);
            (ChangeOp::Upsert, Operation::Update, doc)
        }
        Modification::Delete => (ChangeOp::Delete, Operation::Delete, head.doc.clone()),
    };
    if op == ChangeOp::Upsert && doc == head.doc {
        // Nothing changes: answer as accepted at the current version without queueing a
        // change, so a repeated PUT or PATCH costs no CRM call.
        let accepted = AcceptedOut {
            id: id.0,
            version: head.seq,
            operation,
            accepted_at: now,
        };
        return Ok(Reply {
            accepted,
            replayed: false,
        });
    }
    let mut stamps = head.stamps.clone();
    stamps.touch(Some(&head.doc), &doc, api_stamp(now));
    let changed = match op {
        ChangeOp::Upsert => changes(Some(&head.doc), &doc),
        ChangeOp::Delete => Vec::new(),
    };
    let next = Head {
        seq: head.seq + 1,
        doc: doc.clone(),
        created_at: head.created_at,
        deleted_at: (op == ChangeOp::Delete).then_some(now),
        stamps,
        accepted_at: now,
    };
    let message_id = Uuid::new_v4();
    let note = VersionNote::new(Origin::Api, &changed, &[]);
    heads::advance(&mut tx, id, &next, message_id, &note).await?;
    let draft = Draft {
        id,
        seq: next.seq,
        op,
        origin: Origin::Api,
        accepted_at: now,
        created_at: head.created_at,
        contact: doc,
    };
    publish_and_commit(state, tx, draft, message_id).await?;
    Ok(Reply {
        accepted: AcceptedOut {
            id: id.0,
            version: next.seq,
            operation,
            accepted_at: now,
        },
        replayed: false,
    })
}

fn api_stamp(at: chrono::DateTime<Utc>) -> Stamp {
    Stamp {
        at,
        by: Origin::Api,
    }
}

async fn publish_and_commit(
    state: &AppState,
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    draft: Draft,
    message_id: Uuid,
) -> Result<(), ApiError> {
    let change = draft.into_change(message_id);
    intake::publish_and_commit(&state.publisher, tx, &change)
        .await
        .map_err(|e| match e {
            // Dropping the transaction rolled the head back, and the forwarder skips a change
            // whose head did not commit, even if the broker took it: the write was not accepted.
            IntakeError::NotConfirmed => ApiError::Unavailable(
                "the message broker did not confirm the change; nothing was accepted, retry shortly"
                    .into(),
            ),
            IntakeError::CommitFailed => ApiError::Unavailable(
                "the database failed while recording the change; nothing was accepted, retry shortly"
                    .into(),
            ),
        })
}

fn replay(earlier: Remembered, hash: &str) -> Result<Reply, ApiError> {
    if earlier.request_hash != hash {
        return Err(ApiError::IdempotencyMismatch);
    }
    let accepted = serde_json::from_value(earlier.body).map_err(ApiError::internal)?;
    Ok(Reply {
        accepted,
        replayed: true,
    })
}

/// Hash of the validated, normalised document, so formatting differences (spacing, key order,
/// e-mail case) do not count as a different request.
fn request_hash(doc: &ContactFields) -> String {
    let canonical = serde_json::to_vec(doc).unwrap_or_default();
    Sha256::digest(&canonical)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn location(id: ContactId) -> String {
    format!("/contacts/{id}")
}
