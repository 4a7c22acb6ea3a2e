//! Group commit: acceptances that arrive together share one transaction, one batch of
//! publishes and one commit, with the same promise as one at a time (`intake`).
//!
//! ```text
//! lane (a contact's jobs always land in the same lane, so they keep their order)
//!   take every job waiting, up to the batch size      -- no timer: a lone job goes at once
//!   BEGIN
//!     job 1 … job n, each in turn                     -- locks, new states, history rows
//!                                                        (jobs that join: one statement)
//!   publish the changes on one channel, in order      -- those for one shard as one message
//!   wait for all confirms                                (`Publisher::publish_changes`)
//!   ── the lane takes its next batch from here on ──
//!   COMMIT                                            -- every change in the batch is accepted
//!   answer each job
//! ```
//!
//! While a lane waits for the broker and Postgres, the next jobs queue up behind it and form
//! the next batch, so batches grow with the load and a lone job waits for nobody. Under load
//! the lane also begins the next batch's transaction meanwhile, so a cycle does not wait for
//! a pooled connection and `BEGIN`, and a batch's commit overlaps the next batch: that batch's
//! writes to the same contacts (or addresses, or idempotency keys) wait for the commit on their
//! row locks, so they still see it, and a batch that then fails to commit refuses only its own
//! jobs, as it would have without the overlap. Lanes run side by side; jobs are spread over them by a key
//! (the API's: the contact's shard bits), so two lanes never hold the same contact's lock.
//!
//! When the batch cannot be accepted together, nothing of it is: a statement fails (a lost
//! race for an address, a deadlock with another process) or the broker refuses one of the
//! messages, the transaction rolls back, and each job runs again alone (`single`), with the
//! answer it would have had by itself. A broker that is away or silent, or a commit that
//! fails, gets every job of the batch the same refusal, as it would have alone: nothing is
//! run twice once a commit was attempted.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use super::IntakeError;
use crate::domain::ContactChange;
use crate::queue::publisher::{PublishError, Publisher};

/// What a job decided, inside the transaction.
pub enum Step<O> {
    /// A new version: publish this change, then answer `O` once committed.
    Publish(Box<ContactChange>, O),
    /// Nothing to queue (an unchanged write, a replayed idempotent request): answer `O`.
    Answer(O),
}

/// One acceptance: the statements it runs in the shared transaction, and how it answers.
///
/// `run` may be called twice (together, then alone), so it must not consume the job.
pub trait Job: Send + Sync + 'static {
    type Output: Send + 'static;
    /// A refusal the client sees; batch-wide failures arrive as an [`IntakeError`].
    type Refusal: From<IntakeError> + Send + 'static;

    /// Jobs with the same key run in the same lane, in the order submitted.
    fn lane_key(&self) -> u64;

    /// True when the job may write and then refuse: in a shared transaction it runs inside a
    /// savepoint, so its writes roll back without the others'.
    fn guarded(&self) -> bool {
        false
    }

    /// Runs the job's statements. The outer error is a failed statement (the transaction is
    /// then unusable); the inner one a refusal that wrote nothing (or only under a guard).
    fn run<'a>(
        &'a self,
        conn: &'a mut PgConnection,
    ) -> impl Future<Output = Result<Result<Step<Self::Output>, Self::Refusal>, sqlx::Error>> + Send + 'a;

    /// A failed statement, as the client sees it when the job ran alone.
    fn failed(&self, e: sqlx::Error) -> Self::Refusal;

    /// True when the job can share its statements with the jobs beside it in a batch that
    /// also say so ([`Job::run_joined`]).
    fn joins(&self) -> bool {
        false
    }

    /// Runs jobs that [`Job::joins`] in as few statements as it can, with the outcome each
    /// would have had run one after another, in order. The error is a failed statement.
    fn run_joined<'a>(
        jobs: &'a [&'a Self],
        conn: &'a mut PgConnection,
    ) -> impl Future<Output = Result<Vec<Outcome<Self>>, sqlx::Error>> + Send + 'a {
        async move {
            let mut out = Vec::with_capacity(jobs.len());
            for job in jobs {
                out.push(job.run(&mut *conn).await?);
            }
            Ok(out)
        }
    }
}

/// What a job decided, or why it refused.
pub type Outcome<J> = Result<Step<<J as Job>::Output>, <J as Job>::Refusal>;

/// How acceptances are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupSettings {
    /// Lanes running side by side (each holds one database connection while it works).
    pub lanes: usize,
    /// Most jobs in one transaction.
    pub max_batch: usize,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            lanes: 2,
            max_batch: 256,
        }
    }
}

struct Pending<J: Job> {
    job: J,
    /// The submitter's span: the job's statements and publish are traced under it.
    span: tracing::Span,
    reply: oneshot::Sender<Result<J::Output, J::Refusal>>,
}

struct Ctx {
    db: PgPool,
    publisher: Publisher,
}

/// The lanes. Cheap to clone; the lanes stop when the last clone is dropped.
pub struct GroupCommit<J: Job> {
    lanes: Arc<[mpsc::Sender<Pending<J>>]>,
}

impl<J: Job> Clone for GroupCommit<J> {
    fn clone(&self) -> Self {
        Self {
            lanes: self.lanes.clone(),
        }
    }
}

impl<J: Job> GroupCommit<J> {
    /// Starts the lanes (on the current runtime).
    pub fn start(db: PgPool, publisher: Publisher, settings: GroupSettings) -> Self {
        let ctx = Arc::new(Ctx { db, publisher });
        let max_batch = settings.max_batch.max(1);
        let lanes: Vec<_> = (0..settings.lanes.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(max_batch * 4);
                tokio::spawn(lane(ctx.clone(), rx, max_batch));
                tx
            })
            .collect();
        Self {
            lanes: lanes.into(),
        }
    }

    /// Jobs submitted and not yet taken into a batch, over all lanes.
    pub fn waiting(&self) -> usize {
        self.lanes
            .iter()
            .map(|l| l.max_capacity() - l.capacity())
            .sum()
    }

    /// Accepts `job` with whatever else is waiting in its lane; answers once it is committed
    /// (or refused).
    pub async fn submit(&self, job: J) -> Result<J::Output, J::Refusal> {
        let lane = &self.lanes[(job.lane_key() % self.lanes.len() as u64) as usize];
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            job,
            span: tracing::Span::current(),
            reply,
        };
        if lane.send(pending).await.is_err() {
            return Err(IntakeError::Interrupted.into());
        }
        // No answer means the batch's task panicked; whether it committed is unknown.
        answer
            .await
            .unwrap_or_else(|_| Err(IntakeError::Interrupted.into()))
    }
}

/// An acceptance transaction.
type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// Batches of one lane in flight at once: one running, one committing.
const IN_FLIGHT: usize = 2;

/// How long a lane keeps a transaction it began ahead while no job comes.
const AHEAD_HOLD: std::time::Duration = std::time::Duration::from_millis(20);

/// One lane: takes whatever is waiting, runs it as one batch, and again. Under load (the batch
/// had company, or more jobs are already waiting) the next batch's transaction is begun while
/// this one waits for the broker, so taking a pooled connection and `BEGIN` leave the cycle.
/// The batch never waits for it: one not begun by the batch's end is given back once it is,
/// as is one that no job comes for within [`AHEAD_HOLD`].
async fn lane<J: Job>(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Pending<J>>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut ahead: Option<Tx> = None;
    // The batch running and those still committing (at most [`IN_FLIGHT`] in all).
    let mut committing = tokio::task::JoinSet::new();
    // A begin ahead under way (at most one, even when the pool is slow to give connections).
    let beginning = Arc::new(AtomicBool::new(false));
    loop {
        if ahead.is_some() {
            match tokio::time::timeout(AHEAD_HOLD, rx.recv_many(&mut batch, max_batch)).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => ahead = None,
            }
        }
        if batch.is_empty() && rx.recv_many(&mut batch, max_batch).await == 0 {
            break;
        }
        let jobs = std::mem::replace(&mut batch, Vec::with_capacity(max_batch));
        let under_load = jobs.len() > 1 || !rx.is_empty();
        // In its own task, so a panic loses this batch's answers, not the lane.
        let (release, released) = oneshot::channel();
        while committing.len() >= IN_FLIGHT {
            if let Some(Err(e)) = committing.join_next().await {
                tracing::error!(error = %e, "an acceptance batch failed");
            }
        }
        committing.spawn(run_batch(ctx.clone(), jobs, ahead.take(), release));
        let next = (under_load && !beginning.swap(true, Ordering::AcqRel)).then(|| {
            let (db, beginning) = (ctx.db.clone(), beginning.clone());
            tokio::spawn(async move {
                // One that cannot be begun now is begun with its batch.
                let tx = db.begin().await.ok();
                beginning.store(false, Ordering::Release);
                tx
            })
        });
        // The batch lets the lane go on once the broker confirmed its changes (or it ended).
        let _ = released.await;
        while let Some(done) = committing.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "an acceptance batch failed");
            }
        }
        // Not begun yet: left to finish on its own, and its transaction then dropped.
        ahead = match next {
            Some(begun) if begun.is_finished() => begun.await.ok().flatten(),
            _ => None,
        };
    }
    while committing.join_next().await.is_some() {}
}

/// Runs a batch and answers its jobs. `release` lets the lane go on: sent once the broker has
/// confirmed a batch accepted together, so its commit overlaps the next batch; otherwise
/// dropped when the batch ends.
async fn run_batch<J: Job>(
    ctx: Arc<Ctx>,
    mut batch: Vec<Pending<J>>,
    ahead: Option<Tx>,
    release: oneshot::Sender<()>,
) {
    // A lone job goes alone, unless a transaction was begun for it: then as a batch of one,
    // which runs it again alone should that transaction have gone bad meanwhile.
    if batch.len() == 1 && ahead.is_none() {
        let pending = batch.remove(0);
        return single(&ctx, pending).await;
    }
    match together(&ctx, &batch, ahead, release).await {
        Together::Done(answers) => {
            for (pending, answer) in batch.into_iter().zip(answers) {
                let _ = pending.reply.send(answer);
            }
        }
        Together::Refused(e) => {
            for pending in batch {
                let _ = pending.reply.send(Err(e.into()));
            }
        }
        Together::Alone => {
            for pending in batch {
                single(&ctx, pending).await;
            }
        }
    }
}

enum Together<O, R> {
    /// Committed: each job's answer, in order.
    Done(Vec<Result<O, R>>),
    /// Nothing accepted, and running the jobs alone would fail the same way.
    Refused(IntakeError),
    /// Nothing accepted: run each job alone.
    Alone,
}

async fn together<J: Job>(
    ctx: &Ctx,
    batch: &[Pending<J>],
    ahead: Option<Tx>,
    release: oneshot::Sender<()>,
) -> Together<J::Output, J::Refusal> {
    // The transaction begun ahead, or a new one.
    let begun = match ahead {
        Some(tx) => Ok(tx),
        None => ctx.db.begin().await,
    };
    let mut tx = match begun {
        Ok(tx) => tx,
        Err(e) => {
            tracing::warn!(error = %e, jobs = batch.len(), "cannot begin an acceptance batch");
            return Together::Refused(IntakeError::Database);
        }
    };
    let mut answers = Vec::with_capacity(batch.len());
    let mut changes = Vec::with_capacity(batch.len());
    let mut rest = batch;
    while let Some(first) = rest.first() {
        // Jobs that join run in one go with those beside them that join too.
        let n = match first.job.joins() {
            true => rest.iter().take_while(|p| p.job.joins()).count(),
            false => 1,
        };
        let (these, after) = rest.split_at(n);
        rest = after;
        let ran = match these {
            [one] => run_in(&mut tx, &one.job)
                .instrument(one.span.clone())
                .await
                .map(|r| vec![r]),
            _ => {
                let jobs: Vec<&J> = these.iter().map(|p| &p.job).collect();
                J::run_joined(&jobs, &mut tx)
                    .instrument(first.span.clone())
                    .await
            }
        };
        let ran = match ran {
            Ok(ran) if ran.len() == these.len() => ran,
            Ok(_) => {
                tracing::error!(
                    jobs = these.len(),
                    "joined jobs answered for a different number of jobs; run one by one"
                );
                return Together::Alone;
            }
            Err(e) => {
                tracing::debug!(error = %e, jobs = batch.len(), "an acceptance batch is run again one by one");
                return Together::Alone;
            }
        };
        for (pending, ran) in these.iter().zip(ran) {
            match ran {
                Ok(Step::Publish(change, out)) => {
                    changes.push((change, &pending.span));
                    answers.push(Ok(out));
                }
                Ok(Step::Answer(out)) => answers.push(Ok(out)),
                Err(refusal) => answers.push(Err(refusal)),
            }
        }
    }
    if !changes.is_empty() {
        let refs: Vec<_> = changes.iter().map(|(c, s)| (&**c, *s)).collect();
        match ctx.publisher.publish_changes(&refs).await {
            Ok(()) => {}
            // One message refused: the others may well be taken alone.
            Err(e @ (PublishError::Nacked | PublishError::Unroutable)) => {
                tracing::debug!(error = %e, jobs = batch.len(), "an acceptance batch is run again one by one");
                return Together::Alone;
            }
            Err(e) => {
                tracing::warn!(error = %e, jobs = batch.len(), "publish not confirmed; changes refused");
                return Together::Refused(IntakeError::NotConfirmed);
            }
        }
    }
    // Every change is in the broker and every lock still held: the lane may take its next batch,
    // whose writes to these contacts wait for this commit.
    let _ = release.send(());
    if let Err(e) = tx.commit().await {
        tracing::error!(error = %e, jobs = batch.len(), "commit failed after the broker confirmed");
        return Together::Refused(IntakeError::CommitFailed);
    }
    Together::Done(answers)
}

/// Runs a job in the shared transaction, inside a savepoint when it is guarded.
async fn run_in<J: Job>(
    tx: &mut PgConnection,
    job: &J,
) -> Result<Result<Step<J::Output>, J::Refusal>, sqlx::Error> {
    if !job.guarded() {
        return job.run(tx).await;
    }
    sqlx::query("SAVEPOINT job").execute(&mut *tx).await?;
    let ran = job.run(tx).await?;
    let end = match ran {
        Ok(_) => "RELEASE SAVEPOINT job",
        Err(_) => "ROLLBACK TO SAVEPOINT job",
    };
    sqlx::query(end).execute(&mut *tx).await?;
    Ok(ran)
}

/// One job in its own transaction: the answer it gets when nothing else is waiting, or when
/// its batch could not be accepted together.
async fn single<J: Job>(ctx: &Ctx, pending: Pending<J>) {
    let Pending { job, span, reply } = pending;
    let answer = async {
        let mut tx = ctx.db.begin().await.map_err(|e| job.failed(e))?;
        match job.run(&mut tx).await.map_err(|e| job.failed(e))?? {
            // Committed as it would be in a batch; an answer usually wrote nothing.
            Step::Answer(out) => {
                tx.commit().await.map_err(|e| job.failed(e))?;
                Ok(out)
            }
            Step::Publish(change, out) => {
                super::publish_and_commit(&ctx.publisher, tx, &change).await?;
                Ok(out)
            }
        }
    }
    .instrument(span)
    .await;
    let _ = reply.send(answer);
}
