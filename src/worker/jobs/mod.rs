//! The job runner: runs the admin jobs of `admin_jobs` (`/admin/jobs`, the schedule), one at a
//! time per runner, each a page at a time.
//!
//! ```text
//! every few seconds (and right after a job): claim the oldest queued job, or a running one
//!   whose runner's lease ran out (FOR UPDATE SKIP LOCKED: replicas never take the same one)
//! a page of work ─▶ progress + checkpoint + lease, one statement ─▶ cancel asked? stop
//!              └─ meanwhile the lease is extended every third of its length
//! done ─▶ result; a permanent error ─▶ failed; a transient one ─▶ the page again, later
//! ```
//!
//! A runner that dies leaves its job `running` with a lease that runs out; the next runner to
//! look claims it and continues from its checkpoint (the page in hand when it died is done
//! again; every kind's page is safe to repeat). A runner that stalls past its lease and wakes
//! finds its writes refused (they name it as owner) and drops the job.
//!
//! The schedule (`drift_check_interval_secs`) queues a drift job when none was created within
//! the interval; see [`crate::store::jobs::enqueue_scheduled`].
//!
//! Which kinds there are: [`crate::domain::job`]. Each kind's page: its module (`drift`,
//! `backfill`).

pub mod backfill;
pub mod drift;

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::Crm;
use crate::domain::job::{DriftParams, JobKind, JobParams, JobStatus, Progress};
use crate::providers::ProviderError;
use crate::store::jobs::{self, JobRow, Outcome};

/// What a page of a job came to.
pub enum Step {
    /// More to do; the checkpoint to resume from.
    More(Value),
    /// Finished, with the job's report.
    Done(Value),
}

/// Why a page failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    pub message: String,
    /// Trying the page again later can help (a CRM or the database away for a while).
    pub transient: bool,
}

impl JobError {
    /// A CRM read that failed: transient where trying again can help.
    pub fn crm_read(crm: Crm, e: &ProviderError) -> Self {
        Self {
            message: format!("reading {crm} records: {e}"),
            transient: e.is_retryable(),
        }
    }

    /// A job's parameters or checkpoint that cannot be read: permanent.
    pub fn unreadable(e: &serde_json::Error) -> Self {
        Self {
            message: format!("the job's parameters or checkpoint cannot be read: {e}"),
            transient: false,
        }
    }
}

/// A job's parameters, and the checkpoint to resume from (`None`: its first page).
pub fn read_job<P: serde::de::DeserializeOwned, S: serde::de::DeserializeOwned>(
    job: &JobRow,
    checkpoint: Option<&Value>,
) -> Result<(P, Option<S>), JobError> {
    let params =
        serde_json::from_value(job.params.clone()).map_err(|e| JobError::unreadable(&e))?;
    let state = match checkpoint.filter(|c| !c.is_null()) {
        Some(c) => Some(serde_json::from_value(c.clone()).map_err(|e| JobError::unreadable(&e))?),
        None => None,
    };
    Ok((params, state))
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        Self {
            transient: crate::store::is_transient(&e),
            message: format!("database: {e}"),
        }
    }
}

/// Settings of the runner and the schedule.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// How long a claim holds without a heartbeat.
    pub lease: Duration,
    /// How often an idle runner looks for a job.
    pub idle: Duration,
    /// Queue a drift job when none was created within this long; `None`: never.
    pub drift_every: Option<Duration>,
    /// Whether scheduled drift jobs repair.
    pub drift_repair: bool,
}

/// One process's job runner.
pub struct Runner {
    pub db: PgPool,
    pub cfg: RunnerConfig,
    pub drift: drift::Drift,
    pub backfill: backfill::Backfill,
    /// Names this runner in the leases it holds.
    pub id: Uuid,
}

/// Longest wait before a page that failed transiently is tried again.
const RETRY_MAX: Duration = Duration::from_secs(30);

impl Runner {
    /// Runs jobs until shutdown. A job in hand at shutdown keeps its lease, which runs out, so
    /// a runner elsewhere (or after the restart) continues it.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(runner = %self.id, "job runner started");
        loop {
            if let Some(every) = self.cfg.drift_every {
                self.schedule(every).await;
            }
            let claimed = jobs::claim(&self.db, self.id, self.cfg.lease).await;
            let pause = match claimed {
                Ok(Some(job)) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = self.work(job) => {}
                    }
                    Duration::ZERO
                }
                Ok(None) => self.cfg.idle,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look for jobs; trying again");
                    self.cfg.idle
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        tracing::info!(runner = %self.id, "job runner stopped");
    }

    async fn schedule(&self, every: Duration) {
        let params = JobParams::Drift(DriftParams {
            repair: self.cfg.drift_repair,
            full: false,
        });
        match jobs::enqueue_scheduled(&self.db, &params, every).await {
            Ok(Some(id)) => tracing::info!(%id, "scheduled drift check queued"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot queue the scheduled drift check"),
        }
    }

    /// Works on a claimed job until it ends, is cancelled, or the lease is lost.
    async fn work(&self, job: JobRow) {
        let (id, kind) = (job.id, job.kind);
        tracing::info!(%id, kind = kind.as_str(), resumed = job.checkpoint.is_some(), "job claimed");
        let mut progress = job.progress.clone();
        let mut checkpoint = job.checkpoint.clone();
        let mut cancel = job.cancel_requested;
        let mut failures = 0u32;
        let end = loop {
            if cancel {
                break (JobStatus::Cancelled, None, None);
            }
            // What a page counts is kept only when it succeeds: a failed page is done again.
            let mut counted = progress.clone();
            let step = self.step_held(&job, checkpoint.as_ref(), &mut counted);
            let Some(result) = step.await else {
                tracing::warn!(%id, "lost the job's lease; another runner has it");
                return;
            };
            if result.is_ok() {
                progress = counted;
            }
            match result {
                Ok(Step::Done(report)) => break (JobStatus::Succeeded, Some(report), None),
                Ok(Step::More(next)) => {
                    failures = 0;
                    let saved =
                        jobs::save_page(&self.db, id, self.id, self.cfg.lease, &progress, &next)
                            .await;
                    match saved {
                        Ok(Some(asked)) => {
                            cancel = asked;
                            checkpoint = Some(next);
                        }
                        Ok(None) => {
                            tracing::warn!(%id, "lost the job's lease; another runner has it");
                            return;
                        }
                        // The page is done again from the last checkpoint.
                        Err(e) => match self.wait_out(id, &e.into(), &mut failures).await {
                            Some(asked) => cancel = asked,
                            None => return,
                        },
                    }
                }
                Err(e) if e.transient => match self.wait_out(id, &e, &mut failures).await {
                    Some(asked) => cancel = asked,
                    None => {
                        tracing::warn!(%id, "lost the job's lease; another runner has it");
                        return;
                    }
                },
                Err(e) => break (JobStatus::Failed, None, Some(e.message)),
            }
        };
        let (status, result, error) = end;
        let outcome = Outcome {
            status,
            progress: &progress,
            result: result.as_ref(),
            error: error.as_deref(),
        };
        match jobs::finish(&self.db, id, self.id, &outcome).await {
            Ok(true) => {
                tracing::info!(%id, kind = kind.as_str(), status = status.as_str(), ?progress, error, "job finished")
            }
            Ok(false) => tracing::warn!(%id, "lost the job's lease before finishing it"),
            // The lease runs out and the job is resumed; its last page is done again.
            Err(e) => tracing::warn!(%id, error = %e, "cannot record the job's end"),
        }
    }

    /// Waits before a failed page is tried again, holding the lease; then whether a cancel was
    /// asked meanwhile (`None`: the lease was lost).
    async fn wait_out(&self, id: Uuid, e: &JobError, failures: &mut u32) -> Option<bool> {
        *failures += 1;
        let wait = Duration::from_millis(250 * 2u64.saturating_pow(*failures)).min(RETRY_MAX);
        tracing::warn!(%id, error = %e, ?wait, "job page failed; trying it again");
        let mut left = wait;
        loop {
            let nap = left.min(self.cfg.lease / 3);
            tokio::time::sleep(nap).await;
            left = left.saturating_sub(nap);
            match jobs::heartbeat(&self.db, id, self.id, self.cfg.lease).await {
                Ok(None) => return None,
                Ok(Some(true)) => return Some(true),
                Ok(Some(false)) if left.is_zero() => return Some(false),
                Ok(Some(false)) => {}
                // The database is away too: try the page again (it fails again, or works).
                Err(_) if left.is_zero() => return Some(false),
                Err(_) => {}
            }
        }
    }

    /// One page of the job's kind, with the lease extended while it runs; `None` when the
    /// lease was lost meanwhile.
    async fn step_held(
        &self,
        job: &JobRow,
        checkpoint: Option<&Value>,
        progress: &mut Progress,
    ) -> Option<Result<Step, JobError>> {
        let page = async {
            match job.kind {
                JobKind::Drift => self.drift.step(job, checkpoint, progress).await,
                JobKind::Backfill => self.backfill.step(job, checkpoint, progress).await,
            }
        };
        tokio::pin!(page);
        let mut beat = tokio::time::interval(self.cfg.lease / 3);
        beat.tick().await;
        loop {
            tokio::select! {
                done = &mut page => return Some(done),
                _ = beat.tick() => {
                    match jobs::heartbeat(&self.db, job.id, self.id, self.cfg.lease).await {
                        Ok(None) => return None,
                        Ok(Some(_)) => {}
                        Err(e) => tracing::warn!(id = %job.id, error = %e, "cannot extend the job's lease"),
                    }
                }
            }
        }
    }
}
