//! One CRM record's current state, applied to SyncRoot: the webhook worker's transaction.
//!
//! ```text
//! find the contact: link (crm, record id) → external id the record carries → live e-mail
//! none   → create it from the record (origin: the CRM), linked to the record
//! found  → lock its head; the record equals what SyncRoot wrote or knew there → echo, done
//!          merge by the conflict policy; remember what the record holds
//!          fields changed → a new version (origin: the CRM) through `intake`
//!          nothing taken but the record differs → history says so; the CRM is corrected
//! ```
//!
//! A new version reaches every CRM through the forwarder; the delivery worker skips a record
//! that already holds its values, so the source CRM is written only where it lost a conflict.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::change::{ContactChange, DeliveryTask};
use crate::domain::fields::{FIELDS, Field, validate_members};
use crate::domain::merge::{self, Conflict, FieldChange, Incoming, Policy, Stamp, Stamps};
use crate::domain::{ChangeOp, ContactFields, ContactId, Crm, Email, FieldValues, Origin};
use crate::intake::{self, Draft, IntakeError};
use crate::providers::RemoteRecord;
use crate::queue::publisher::{PublishError, Publisher};
use crate::store::heads::{self, Head, HeadError, VersionNote};
use crate::store::links::{self, Observed};
use crate::store::{address_index, dead_letters, history, idempotency};

/// What applying a record did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The record holds what SyncRoot wrote or last saw there.
    Echo,
    /// The record agrees with the contact (nothing to take, nothing to correct).
    Unchanged,
    /// Every differing field lost to the policy; the CRM will be corrected.
    Kept,
    /// The contact has a new version with the CRM's values.
    Updated(i64),
    /// A contact was created from the record.
    Created(ContactId),
    /// The contact was deleted because its record was deleted in the CRM.
    Deleted(ContactId),
    /// The record was deleted in the CRM; the contact stays, detached from it.
    Detached(ContactId),
    /// The contact was erased (privacy deletion in the CRM).
    Erased(ContactId),
    /// The contact was merged into another because its record was merged in the CRM.
    MergedAway(ContactId),
    /// Not applied, and why (logged; never guessed).
    Skipped(&'static str),
}

/// Why a record could not be applied; [`ApplyError::is_transient`] says whether trying the
/// batch again can help.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error("cannot hand a correction to delivery: {0}")]
    Publish(#[from] PublishError),
    /// A contact took the record's e-mail address while this one was being created.
    #[error("the e-mail address was taken concurrently")]
    Raced,
}

impl ApplyError {
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Db(e) => crate::store::is_transient(e),
            Self::Intake(_) | Self::Publish(_) | Self::Raced => true,
        }
    }
}

impl From<HeadError> for ApplyError {
    fn from(e: HeadError) -> Self {
        match e {
            HeadError::EmailTaken(_) => Self::Raced,
            HeadError::Db(e) => Self::Db(e),
        }
    }
}

/// What applying needs.
pub struct Ctx<'a> {
    pub db: &'a PgPool,
    pub publisher: &'a Publisher,
    pub crm: Crm,
    pub policy: &'a Policy,
    /// The CRM's projection of a contact (its mapped fields).
    pub project: &'a (dyn Fn(&ContactFields) -> FieldValues + Sync),
    /// How the changes arrive, for the history: `webhook` or `poller`.
    pub via: &'static str,
    /// A job going through many records (a backfill, a drift repair): its changes' deliveries
    /// may wait to fill calls ([`ContactChange::bulk`]).
    pub bulk: bool,
}

impl Ctx<'_> {
    fn origin(&self) -> Origin {
        Origin::from(self.crm)
    }

    /// A draft as the change this context publishes.
    fn change(&self, draft: Draft, message_id: Uuid) -> ContactChange {
        ContactChange {
            bulk: self.bulk,
            ..draft.into_change(message_id)
        }
    }

    /// A delivery task this context publishes.
    fn task(&self, id: ContactId, version: i64, crm: Crm) -> DeliveryTask {
        DeliveryTask::new(id, version, crm).in_bulk(self.bulk)
    }

    /// A record seen changing after a backfill's read: what the address index holds of it
    /// goes (the backfill's own records are what the index was made of).
    async fn seen_changing(
        &self,
        remote_id: &str,
        email: Option<&Email>,
    ) -> Result<(), sqlx::Error> {
        if self.via == "backfill" {
            return Ok(());
        }
        address_index::forget_record(self.db, self.crm, remote_id, email).await
    }

    /// A history note of a change from this CRM.
    fn note<'n>(&self, changes: &'n [FieldChange], conflicts: &'n [Conflict]) -> VersionNote<'n> {
        VersionNote::new(self.origin(), changes, conflicts).via(self.via)
    }
}

/// Applies one record's current state.
pub async fn apply(ctx: &Ctx<'_>, record: &RemoteRecord) -> Result<Applied, ApplyError> {
    Ok(apply_reported(ctx, record).await?.outcome)
}

/// Applies one record's current state; what it did, told as [`preview`] tells what it would
/// do (worked out in the same transaction as the writes).
pub async fn apply_reported(ctx: &Ctx<'_>, record: &RemoteRecord) -> Result<Preview, ApplyError> {
    ctx.seen_changing(&record.remote_id, record.address().as_ref())
        .await?;
    let mut tx = ctx.db.begin().await?;
    match locate(&mut tx, ctx.crm, record).await? {
        Some(id) => update(ctx, tx, id, record).await,
        None => {
            let outcome = create(ctx, tx, record).await?;
            Ok(Preview::of_create(outcome))
        }
    }
}

/// A record deleted in the CRM: its contact is deleted too, through the normal path (the other
/// CRMs' records go; the source's is already gone). Only with the `propagate` policy.
pub async fn delete(ctx: &Ctx<'_>, remote_id: &str) -> Result<Applied, ApplyError> {
    ctx.seen_changing(remote_id, None).await?;
    let mut tx = ctx.db.begin().await?;
    let (id, head) = match linked_head(&mut tx, ctx.crm, remote_id).await? {
        Ok((id, head)) if head.deleted_at.is_none() => (id, head),
        Ok(_) => return Ok(Applied::Unchanged),
        Err(skipped) => return Ok(skipped),
    };
    let now = Utc::now();
    let next = Head {
        deleted_at: Some(now),
        accepted_at: now,
        seq: head.seq + 1,
        ..head
    };
    accept(ctx, tx, id, &next, ctx.note(&[], &[])).await?;
    Ok(Applied::Deleted(id))
}

/// The contact linked to a CRM record that is gone (deleted, erased), with its head locked;
/// `Err` with the outcome to report when there is none.
async fn linked_head(
    tx: &mut sqlx::PgConnection,
    crm: Crm,
    remote_id: &str,
) -> Result<Result<(ContactId, Head), Applied>, sqlx::Error> {
    let Some(id) = links::find_by_remote(tx, crm, remote_id).await? else {
        return Ok(Err(Applied::Skipped("no contact is linked to the record")));
    };
    match heads::lock(tx, id).await? {
        Some(head) => Ok(Ok((id, head))),
        None => Ok(Err(Applied::Skipped("the linked contact does not exist"))),
    }
}

/// Accepts a contact's next head (a new version, or its deletion) through `intake`: advances
/// the head with its history entry, publishes the change and commits.
async fn accept(
    ctx: &Ctx<'_>,
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    id: ContactId,
    next: &Head,
    note: VersionNote<'_>,
) -> Result<(), ApplyError> {
    let message_id = Uuid::new_v4();
    heads::advance(&mut tx, id, next, message_id, &note).await?;
    let draft = Draft {
        id,
        seq: next.seq,
        op: if next.deleted_at.is_some() {
            ChangeOp::Delete
        } else {
            ChangeOp::Upsert
        },
        origin: ctx.origin(),
        accepted_at: next.accepted_at,
        created_at: next.created_at,
        contact: next.doc.clone(),
    };
    intake::publish_and_commit(ctx.publisher, tx, &ctx.change(draft, message_id)).await?;
    Ok(())
}

/// A record deleted in the CRM, under the `mark` policy: the contact stays, SyncRoot stops
/// writing it to this CRM (until the record is restored there), and the history says so.
pub async fn detach_deleted(
    ctx: &Ctx<'_>,
    remote_id: &str,
    at: DateTime<Utc>,
) -> Result<Applied, ApplyError> {
    let mut tx = ctx.db.begin().await?;
    let (id, head) = match linked_head(&mut tx, ctx.crm, remote_id).await? {
        Ok((id, head)) if head.deleted_at.is_none() => (id, head),
        Ok(_) => return Ok(Applied::Unchanged),
        Err(skipped) => return Ok(skipped),
    };
    let why = format!(
        "record {remote_id} was deleted in {} at {}; SyncRoot no longer writes this contact there until the record is restored",
        ctx.crm,
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    links::detach(&mut tx, ctx.crm, id, &why).await?;
    let event = history::Event {
        version: head.seq,
        origin: ctx.origin(),
        operation: "detach",
        conflicts: &[],
        note: Some(&why),
        via: Some(ctx.via),
    };
    history::record(&mut tx, id, &event).await?;
    tx.commit().await?;
    Ok(Applied::Detached(id))
}

/// A privacy deletion (GDPR erasure) in the CRM: the contact is deleted (so are its records
/// in the other CRMs), and its values leave SyncRoot's tables: the head and the persisted
/// contact keep a placeholder address, the history keeps which fields changed but not their
/// values, the links forget what the records held, remembered API answers and dead letters
/// about it go.
pub async fn erase(ctx: &Ctx<'_>, remote_id: &str) -> Result<Applied, ApplyError> {
    let mut tx = ctx.db.begin().await?;
    let (id, head) = match linked_head(&mut tx, ctx.crm, remote_id).await? {
        Ok(found) => found,
        Err(skipped) => return Ok(skipped),
    };
    let doc = ContactFields::erased(id);
    if head.doc == doc {
        return Ok(Applied::Unchanged);
    }
    let now = Utc::now();
    let why = format!(
        "record {remote_id} was erased in {} (privacy deletion); the contact's values are removed",
        ctx.crm
    );
    history::erase_values(&mut tx, id).await?;
    links::erase_values(&mut tx, id).await?;
    links::detach(&mut tx, ctx.crm, id, &why).await?;
    idempotency::erase_contact(&mut tx, id).await?;
    dead_letters::erase_contact(&mut tx, id).await?;
    let next = Head {
        seq: head.seq + 1,
        doc,
        created_at: head.created_at,
        deleted_at: Some(head.deleted_at.unwrap_or(now)),
        stamps: Stamps::default(),
        accepted_at: now,
    };
    let note = ctx.note(&[], &[]).special("erase", &why);
    accept(ctx, tx, id, &next, note).await?;
    Ok(Applied::Erased(id))
}

/// Records merged in the CRM: `losers` were merged into `survivor`. Their contacts become one:
/// the survivor's contact (or, if it has none, the first loser's, which takes the surviving
/// record) absorbs the others, which are retired without touching any CRM. In each other CRM
/// the absorbed contact's record is adopted where the survivor has none; where both have one,
/// the absorbed one is detached and left for a person to merge there (never deleted, never
/// guessed), and the history and the link say so. The surviving record's values are applied
/// afterwards like any change (the caller reads it).
pub async fn merge(
    ctx: &Ctx<'_>,
    survivor: &str,
    losers: &[String],
) -> Result<Vec<Applied>, ApplyError> {
    let mut tx = ctx.db.begin().await?;
    let mut contacts: Vec<ContactId> = Vec::new();
    for remote_id in std::iter::once(survivor).chain(losers.iter().map(String::as_str)) {
        if let Some(id) = links::find_by_remote(&mut tx, ctx.crm, remote_id).await?
            && !contacts.contains(&id)
        {
            contacts.push(id);
        }
    }
    tracing::info!(crm = %ctx.crm, survivor, ?losers, ?contacts, "merging the contacts of records merged in the CRM");
    let Some((&keep, absorbed)) = contacts.split_first() else {
        return Ok(vec![Applied::Skipped(
            "no contact is linked to the merged records",
        )]);
    };
    // Heads are locked in id order, so two merges never wait on each other in a cycle.
    let mut order = contacts.clone();
    order.sort_by_key(|c| c.0);
    let mut heads_by_id = Vec::new();
    for id in order {
        if let Some(h) = heads::lock(&mut tx, id).await? {
            heads_by_id.push((id, h));
        }
    }
    let Some(keep_head) = heads_by_id
        .iter()
        .find(|(id, _)| *id == keep)
        .map(|(_, h)| h.clone())
    else {
        return Ok(vec![Applied::Skipped("the linked contact does not exist")]);
    };
    // The surviving record's contact may have been deleted in SyncRoot meanwhile (or merged
    // away itself): the others are merged into it all the same, and their records in the other
    // CRM are left for a person.
    let keep_live = keep_head.deleted_at.is_none();
    let mut outcomes = Vec::new();
    let mut kept_records: Vec<(Crm, String)> = links::records_of(&mut tx, keep).await?;
    let mut adopted: Vec<Crm> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for (id, head) in heads_by_id
        .into_iter()
        .filter(|(id, h)| absorbed.contains(id) && h.deleted_at.is_none())
    {
        let mut flagged = Vec::new();
        for (crm, record) in links::records_of(&mut tx, id).await? {
            if crm == ctx.crm {
                continue;
            }
            match kept_records.iter().find(|(c, _)| *c == crm) {
                None if keep_live => {
                    links::adopt(&mut tx, crm, keep, &record, keep_head.seq).await?;
                    notes.push(format!("took over {crm} record {record}"));
                    kept_records.push((crm, record));
                    adopted.push(crm);
                }
                None => flagged.push(format!(
                    "{crm} record {record} of merged contact {id} is left for a person: contact {keep}, which it was merged into, is deleted"
                )),
                Some((_, theirs)) if *theirs == record => {}
                Some((_, theirs)) => flagged.push(format!(
                    "{crm} record {record} of merged contact {id} awaits a merge by hand into {crm} record {theirs}"
                )),
            }
        }
        let why = format!(
            "merged into contact {keep} because {} merged their records",
            ctx.crm
        );
        for crm in Crm::ALL {
            let detail = flagged
                .iter()
                .find(|f| f.starts_with(crm.as_str()))
                .cloned()
                .unwrap_or_else(|| why.clone());
            links::detach(&mut tx, crm, id, &detail).await?;
        }
        let remark = std::iter::once(why.clone())
            .chain(flagged.iter().cloned())
            .collect::<Vec<_>>()
            .join("; ");
        let now = Utc::now();
        let next = Head {
            seq: head.seq + 1,
            deleted_at: Some(now),
            accepted_at: now,
            ..head
        };
        let message_id = Uuid::new_v4();
        let note = ctx.note(&[], &[]).special("merge", &remark);
        heads::advance(&mut tx, id, &next, message_id, &note).await?;
        let draft = Draft {
            id,
            seq: next.seq,
            op: ChangeOp::Delete,
            origin: ctx.origin(),
            accepted_at: now,
            created_at: next.created_at,
            contact: next.doc.clone(),
        };
        // Published inside the transaction, confirmed before the commit (like `intake`).
        ctx.publisher
            .publish_change(&ctx.change(draft, message_id))
            .await?;
        notes.push(format!("absorbed contact {id}"));
        notes.extend(flagged);
        outcomes.push(Applied::MergedAway(id));
    }
    let remark = format!(
        "{} merged records {} into {survivor}: {}",
        ctx.crm,
        losers.join(", "),
        notes.join("; ")
    );
    let event = history::Event {
        version: keep_head.seq,
        origin: ctx.origin(),
        operation: "merge",
        conflicts: &[],
        note: Some(&remark),
        via: Some(ctx.via),
    };
    history::record(&mut tx, keep, &event).await?;
    if keep_live {
        // The surviving record is now the kept contact's record in this CRM.
        links::relink(&mut tx, ctx.crm, keep, survivor).await?;
    }
    // Confirmed before the commit: once a link is stale, a task is on its way.
    for crm in adopted {
        ctx.publisher
            .publish_delivery(&ctx.task(keep, keep_head.seq, crm))
            .await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// The contact a record belongs to: its link, the SyncRoot id it carries, or its e-mail.
async fn locate(
    tx: &mut sqlx::PgConnection,
    crm: Crm,
    record: &RemoteRecord,
) -> Result<Option<ContactId>, sqlx::Error> {
    if let Some(id) = links::find_by_remote(tx, crm, &record.remote_id).await? {
        return Ok(Some(id));
    }
    if let Some(id) = record.external_id.as_deref().and_then(ContactId::parse) {
        let exists: Option<i64> = sqlx::query_scalar("SELECT seq FROM contact_heads WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Ok(Some(id));
        }
    }
    match record.values.get(Field::Email) {
        Some(Some(email)) => heads::find_live_by_email(tx, email).await,
        _ => Ok(None),
    }
}

/// What applying a record to a found contact comes to, worked out before anything is written.
enum Assessment {
    /// Nothing to merge: the outcome as it stands.
    Settled(Applied),
    Merge(Box<Assessed>),
}

struct Assessed {
    head: Head,
    merged: merge::Merged,
    /// The CRM's record will not hold the merged contact: it is to be corrected.
    stale: bool,
    /// The record is not linked to the contact yet.
    linking: bool,
}

/// Merges the record into the contact `id` by the conflict policy (its head locked in `tx`);
/// reads only.
async fn assess(
    ctx: &Ctx<'_>,
    tx: &mut sqlx::PgConnection,
    id: ContactId,
    record: &RemoteRecord,
) -> Result<Assessment, sqlx::Error> {
    let Some(head) = heads::lock(tx, id).await? else {
        return Ok(Assessment::Settled(Applied::Skipped(
            "the linked contact does not exist",
        )));
    };
    if head.deleted_at.is_some() {
        return Ok(Assessment::Settled(Applied::Skipped(
            "the contact was deleted in SyncRoot",
        )));
    }
    let known = links::known(tx, ctx.crm, id).await?;
    if known
        .remote_id
        .as_deref()
        .is_some_and(|r| r != record.remote_id)
    {
        // Two records in one CRM for one person: reported, never guessed.
        return Ok(Assessment::Settled(Applied::Skipped(
            "the contact is linked to another record of this CRM (a duplicate there)",
        )));
    }
    if known.is_echo(&record.values) {
        return Ok(Assessment::Settled(Applied::Echo));
    }
    let fallback = Stamp {
        at: head.accepted_at,
        by: Origin::Api,
    };
    let incoming = Incoming {
        source: ctx.origin(),
        values: &record.values,
        base: known.remote_values.as_ref(),
        modified_at: record.modified_at,
    };
    let mut merged = merge::merge(&head.doc, &head.stamps, fallback, &incoming, ctx.policy);
    if merged.doc.email != head.doc.email
        && heads::find_live_by_email(tx, merged.doc.email.as_str())
            .await?
            .is_some_and(|other| other != id)
    {
        merged.refuse_email(&head.doc, &head.stamps, ctx.origin());
    }
    let stale = (ctx.project)(&merged.doc) != record.values;
    Ok(Assessment::Merge(Box::new(Assessed {
        head,
        merged,
        stale,
        linking: known.remote_id.is_none(),
    })))
}

async fn update(
    ctx: &Ctx<'_>,
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    id: ContactId,
    record: &RemoteRecord,
) -> Result<Preview, ApplyError> {
    let assessment = assess(ctx, &mut tx, id, record).await?;
    let report = Preview::of(&assessment);
    let Assessed {
        head,
        merged,
        stale,
        ..
    } = match assessment {
        Assessment::Settled(_) => return Ok(report),
        Assessment::Merge(a) => *a,
    };
    let seen = Observed {
        remote_id: &record.remote_id,
        values: &record.values,
        modified_at: record.modified_at,
        version: head.seq,
        stale,
    };
    links::observe(&mut tx, ctx.crm, id, &seen).await?;
    if merged.changes.is_empty() {
        if !merged.conflicts.is_empty() {
            let kept = history::Event {
                version: head.seq,
                origin: ctx.origin(),
                operation: "kept",
                conflicts: &merged.conflicts,
                note: None,
                via: Some(ctx.via),
            };
            history::record(&mut tx, id, &kept).await?;
        }
        if stale {
            // Confirmed before the commit: once the link says "stale", a task is on its way.
            let task = ctx.task(id, head.seq, ctx.crm);
            ctx.publisher.publish_delivery(&task).await?;
        }
        tx.commit().await?;
        return Ok(report);
    }
    let next = Head {
        seq: head.seq + 1,
        doc: merged.doc.clone(),
        created_at: head.created_at,
        deleted_at: None,
        stamps: merged.stamps,
        accepted_at: Utc::now(),
    };
    let note = ctx.note(&merged.changes, &merged.conflicts);
    accept(ctx, tx, id, &next, note).await?;
    Ok(report)
}

/// What [`apply`] would do with a record, written nowhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preview {
    /// The outcome [`apply`] would report (a contact it would create has no id yet: nil).
    pub outcome: Applied,
    /// The record would be linked to a contact it is not linked to yet.
    pub linking: bool,
    /// Fields on which the record and the contact disagree, resolved by the policy.
    pub conflicts: usize,
}

impl Preview {
    /// A record no contact has: a new contact (`Created`), or nothing.
    fn of_create(outcome: Applied) -> Self {
        Self {
            linking: matches!(outcome, Applied::Created(_)),
            outcome,
            conflicts: 0,
        }
    }

    /// A record with a contact: what its assessment comes to.
    fn of(assessment: &Assessment) -> Self {
        match assessment {
            Assessment::Settled(outcome) => Self {
                outcome: outcome.clone(),
                linking: false,
                conflicts: 0,
            },
            Assessment::Merge(a) => Self {
                outcome: if !a.merged.changes.is_empty() {
                    Applied::Updated(a.head.seq + 1)
                } else if a.stale {
                    Applied::Kept
                } else {
                    Applied::Unchanged
                },
                linking: a.linking,
                conflicts: a.merged.conflicts.len(),
            },
        }
    }
}

/// What applying the record would do now, in a transaction that is rolled back.
pub async fn preview(ctx: &Ctx<'_>, record: &RemoteRecord) -> Result<Preview, ApplyError> {
    let mut tx = ctx.db.begin().await?;
    let Some(id) = locate(&mut tx, ctx.crm, record).await? else {
        return Ok(Preview::of_create(match document(&record.values) {
            Some(_) => Applied::Created(ContactId(Uuid::nil())),
            None => Applied::Skipped(NO_ADDRESS),
        }));
    };
    let preview = Preview::of(&assess(ctx, &mut tx, id, record).await?);
    tx.rollback().await?;
    Ok(preview)
}

const NO_ADDRESS: &str = "the record has no valid e-mail address, so it cannot become a contact";

async fn create(
    ctx: &Ctx<'_>,
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    record: &RemoteRecord,
) -> Result<Applied, ApplyError> {
    let Some(doc) = document(&record.values) else {
        return Ok(Applied::Skipped(NO_ADDRESS));
    };
    let id = ContactId::new();
    let now = Utc::now();
    let mut stamps = Stamps::default();
    stamps.touch(
        None,
        &doc,
        Stamp {
            at: record.modified_at,
            by: ctx.origin(),
        },
    );
    let changes = merge::changes(None, &doc);
    let note = ctx.note(&changes, &[]);
    let message_id = Uuid::new_v4();
    heads::insert(&mut tx, id, &doc, &stamps, now, message_id, &note).await?;
    let seen = Observed {
        remote_id: &record.remote_id,
        values: &record.values,
        modified_at: record.modified_at,
        version: 1,
        stale: (ctx.project)(&doc) != record.values,
    };
    links::observe(&mut tx, ctx.crm, id, &seen).await?;
    let draft = Draft {
        id,
        seq: 1,
        op: ChangeOp::Upsert,
        origin: ctx.origin(),
        accepted_at: now,
        created_at: now,
        contact: doc,
    };
    intake::publish_and_commit(ctx.publisher, tx, &ctx.change(draft, message_id)).await?;
    Ok(Applied::Created(id))
}

/// A contact from a record's values, by the API's rules: a field whose value breaks them is
/// left empty; `None` without a valid e-mail address.
fn document(values: &FieldValues) -> Option<ContactFields> {
    let mut valid = Vec::new();
    for spec in &FIELDS {
        let Some(value) = values.get(spec.field) else {
            continue;
        };
        let one = serde_json::json!({ spec.name: value });
        if let Ok(mut v) = validate_members(&one) {
            valid.append(&mut v);
        }
    }
    ContactFields::from_values(valid).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_becomes_a_contact_without_its_invalid_fields() {
        let mut v = FieldValues::default();
        v.set_reported(Field::Email, Some("Grace@Example.com"));
        v.set_reported(Field::Phone, Some("call me"));
        v.set_reported(Field::FirstName, Some("Grace"));
        let doc = document(&v).unwrap();
        assert_eq!(doc.email.as_str(), "grace@example.com");
        assert_eq!(doc.first_name.as_deref(), Some("Grace"));
        assert_eq!(doc.phone, None);
        v.set_reported(Field::Email, Some("not an address"));
        assert_eq!(document(&v), None);
    }
}
