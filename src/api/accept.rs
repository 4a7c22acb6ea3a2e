//! Accepting a write from the API: validated request → new state → `intake`'s transaction
//! (lock the head, publish with confirm, commit), shared with the other writes waiting in its
//! lane (`intake::group`), plus what only the API has: idempotency keys and the reply.

use chrono::Utc;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use super::AppState;
use super::auth::Principal;
use super::problem::ApiError;
use super::schema::{AcceptedOut, Operation};
use crate::domain::fields::{Field, FieldValue};
use crate::domain::merge::{FieldChange, Stamp, Stamps, changes};
use crate::domain::{ChangeOp, ContactFields, ContactId, Origin};
use crate::intake::group::{Job, Step};
use crate::intake::{Draft, IntakeError};
use crate::store::heads::{self, Head, HeadError, VersionNote};
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
    let ttl = state.idempotency_ttl;
    state
        .accept
        .submit(Accept::Create { id, doc, idem, ttl })
        .await
}

/// Accepts a replace, patch or delete of an existing contact.
pub async fn modify(state: &AppState, id: ContactId, m: Modification) -> Result<Reply, ApiError> {
    state.accept.submit(Accept::Modify { id, m }).await
}

/// A write the API accepts, in a transaction it may share with others (`intake::group`).
pub enum Accept {
    Create {
        id: ContactId,
        doc: ContactFields,
        idem: Option<(Principal, String)>,
        /// How long the idempotency key is remembered.
        ttl: std::time::Duration,
    },
    Modify {
        id: ContactId,
        m: Modification,
    },
}

type Ran = Result<Result<Step<Reply>, ApiError>, sqlx::Error>;

impl Job for Accept {
    type Output = Reply;
    type Refusal = ApiError;

    /// A contact's writes share a lane, chosen by the same bits of its id as its shard queue,
    /// so with lanes that divide the shards a lane's writes fall in few shards and its batch's
    /// changes go in few packs. Two creates of one address may meet in two lanes: the address's
    /// unique index makes the later one wait for the earlier one's commit, and it then fails
    /// the batch, which runs again one by one (the loser is answered as alone).
    fn lane_key(&self) -> u64 {
        let (Accept::Create { id, .. } | Accept::Modify { id, .. }) = self;
        id.0.as_u128() as u64
    }

    /// An idempotent create remembers its key before it may find the address taken.
    fn guarded(&self) -> bool {
        matches!(self, Accept::Create { idem: Some(_), .. })
    }

    async fn run(&self, conn: &mut PgConnection) -> Ran {
        match self {
            Accept::Create { id, doc, idem, ttl } => {
                create_in(conn, *id, doc, idem.as_ref(), *ttl).await
            }
            Accept::Modify { id, m } => modify_in(conn, *id, m).await,
        }
    }

    fn failed(&self, e: sqlx::Error) -> ApiError {
        e.into()
    }

    /// Creates without an idempotency key write nothing but their heads and history: several
    /// go in one statement.
    fn joins(&self) -> bool {
        matches!(self, Accept::Create { idem: None, .. })
    }

    async fn run_joined(
        jobs: &[&Self],
        conn: &mut PgConnection,
    ) -> Result<Vec<Result<Step<Reply>, ApiError>>, sqlx::Error> {
        let creates: Option<Vec<(ContactId, &ContactFields)>> = jobs
            .iter()
            .map(|job| match job {
                Accept::Create {
                    id,
                    doc,
                    idem: None,
                    ..
                } => Some((*id, doc)),
                _ => None,
            })
            .collect();
        let Some(creates) = creates else {
            let mut out = Vec::with_capacity(jobs.len());
            for job in jobs {
                out.push(job.run(&mut *conn).await?);
            }
            return Ok(out);
        };
        let made: Vec<Creation> = creates.iter().map(|(_, doc)| Creation::new(doc)).collect();
        let new_heads: Vec<_> = creates
            .iter()
            .zip(&made)
            .map(|((id, doc), c)| c.head(*id, doc))
            .collect();
        let inserted = heads::insert_many(conn, &new_heads).await?;
        drop(new_heads);
        let mut out = Vec::with_capacity(jobs.len());
        for ((result, (id, doc)), made) in inserted.into_iter().zip(creates).zip(made) {
            out.push(match result {
                Ok(()) => Ok(made.step(id, doc)),
                Err(HeadError::EmailTaken(existing)) => Err(ApiError::EmailTaken(existing)),
                Err(HeadError::Db(e)) => return Err(e),
            });
        }
        Ok(out)
    }
}

impl From<IntakeError> for ApiError {
    fn from(e: IntakeError) -> Self {
        match e {
            // The transaction rolled back, and the forwarder skips a change whose head did not
            // commit, even if the broker took it: the write was not accepted.
            IntakeError::NotConfirmed => ApiError::Unavailable(
                "the message broker did not confirm the change; nothing was accepted, retry shortly"
                    .into(),
            ),
            IntakeError::CommitFailed => ApiError::Unavailable(
                "the database failed while recording the change; nothing was accepted, retry shortly"
                    .into(),
            ),
            IntakeError::Database => {
                ApiError::Unavailable("the database is unavailable; retry shortly".into())
            }
            IntakeError::Interrupted => ApiError::internal(e),
        }
    }
}

/// A head that could not be written: the address taken is the client's problem, anything else
/// a failed statement.
fn refused(e: HeadError) -> Ran {
    match e {
        HeadError::EmailTaken(existing) => Ok(Err(ApiError::EmailTaken(existing))),
        HeadError::Db(e) => Err(e),
    }
}

/// What a new contact's acceptance decides before any statement: its stamps, history note,
/// message id and time.
struct Creation {
    now: chrono::DateTime<Utc>,
    message_id: Uuid,
    stamps: Stamps,
    changed: Vec<FieldChange>,
}

impl Creation {
    fn new(doc: &ContactFields) -> Self {
        let now = Utc::now();
        let mut stamps = Stamps::default();
        stamps.touch(None, doc, api_stamp(now));
        Self {
            now,
            message_id: Uuid::new_v4(),
            stamps,
            changed: changes(None, doc),
        }
    }

    fn accepted(&self, id: ContactId) -> AcceptedOut {
        AcceptedOut {
            id: id.0,
            version: 1,
            operation: Operation::Create,
            accepted_at: self.now,
        }
    }

    fn head<'a>(&'a self, id: ContactId, doc: &'a ContactFields) -> heads::NewHead<'a> {
        heads::NewHead {
            id,
            doc,
            stamps: &self.stamps,
            now: self.now,
            message_id: self.message_id,
            note: VersionNote::new(Origin::Api, &self.changed, &[]),
        }
    }

    /// What the create queues and answers once its head is in.
    fn step(self, id: ContactId, doc: &ContactFields) -> Step<Reply> {
        let draft = Draft {
            id,
            seq: 1,
            op: ChangeOp::Upsert,
            origin: Origin::Api,
            accepted_at: self.now,
            created_at: self.now,
            contact: doc.clone(),
        };
        let reply = Reply {
            accepted: self.accepted(id),
            replayed: false,
        };
        Step::Publish(Box::new(draft.into_change(self.message_id)), reply)
    }
}

async fn create_in(
    tx: &mut PgConnection,
    id: ContactId,
    doc: &ContactFields,
    idem: Option<&(Principal, String)>,
    ttl: std::time::Duration,
) -> Ran {
    let made = Creation::new(doc);
    if let Some((principal, key)) = idem {
        let body = match serde_json::to_value(made.accepted(id)) {
            Ok(body) => body,
            Err(e) => return Ok(Err(ApiError::internal(e))),
        };
        let outcome = Remembered {
            request_hash: request_hash(doc),
            status: 202,
            location: Some(location(id)),
            body,
        };
        if let Some(earlier) = idempotency::claim(tx, &principal.id, key, &outcome, ttl).await? {
            return Ok(replay(earlier, &outcome.request_hash).map(Step::Answer));
        }
    }
    let head = made.head(id, doc);
    if let Err(e) = heads::insert(
        tx,
        id,
        doc,
        head.stamps,
        head.now,
        head.message_id,
        &head.note,
    )
    .await
    {
        return refused(e);
    }
    Ok(Ok(made.step(id, doc)))
}

async fn modify_in(tx: &mut PgConnection, id: ContactId, m: &Modification) -> Ran {
    let head = match heads::lock(tx, id).await? {
        None => return Ok(Err(ApiError::NotFound(format!("no contact has id {id}")))),
        // Deleting again is a success that changes nothing, so clients can retry deletes.
        Some(h) if h.deleted_at.is_some() && matches!(m, Modification::Delete) => {
            let accepted = AcceptedOut {
                id: id.0,
                version: h.seq,
                operation: Operation::Delete,
                accepted_at: Utc::now(),
            };
            return Ok(Ok(Step::Answer(Reply {
                accepted,
                replayed: false,
            })));
        }
        Some(h) if h.deleted_at.is_some() => {
            return Ok(Err(ApiError::NotFound(format!("contact {id} was deleted"))));
        }
        Some(h) => h,
    };
    let now = Utc::now();
    let (op, operation, doc) = match m {
        Modification::Replace(doc) => (ChangeOp::Upsert, Operation::Update, doc.clone()),
        Modification::Patch(values) => {
            let mut doc = head.doc.clone();
            doc.apply(values.clone());
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
        return Ok(Ok(Step::Answer(Reply {
            accepted,
            replayed: false,
        })));
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
    if let Err(e) = heads::advance(tx, id, &next, message_id, &note).await {
        return refused(e);
    }
    let draft = Draft {
        id,
        seq: next.seq,
        op,
        origin: Origin::Api,
        accepted_at: now,
        created_at: head.created_at,
        contact: doc,
    };
    let reply = Reply {
        accepted: AcceptedOut {
            id: id.0,
            version: next.seq,
            operation,
            accepted_at: now,
        },
        replayed: false,
    };
    Ok(Ok(Step::Publish(
        Box::new(draft.into_change(message_id)),
        reply,
    )))
}

fn api_stamp(at: chrono::DateTime<Utc>) -> Stamp {
    Stamp {
        at,
        by: Origin::Api,
    }
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
