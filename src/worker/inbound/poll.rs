//! The poller: finds changes whose webhooks were lost (misconfiguration, an outage longer than
//! the CRM's retry window) by asking each CRM for the records modified since its checkpoint,
//! and applies them exactly as the webhook worker does (a record SyncRoot already holds is an
//! echo or unchanged, and costs no write).
//!
//! ```text
//! every interval: take the CRM's advisory lock (one poller per CRM across replicas)
//!   first time: checkpoint = now (history before that is a backfill's job)
//!   read records modified since checkpoint − overlap, oldest first, a page at a time
//!   apply each; checkpoint = newest modification time read
//! ```
//!
//! The overlap covers HubSpot search's indexing lag, Salesforce's second-precision times and
//! clock skew; re-reading a record costs a read, never a write.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::BatchError;
use super::apply::{self, Applied};
use crate::domain::merge::Policy;
use crate::domain::{ContactFields, Crm};
use crate::providers::{CrmClient, RemoteRecord};
use crate::queue::publisher::Publisher;

/// How far before the checkpoint each poll starts reading again.
pub const OVERLAP: Duration = Duration::from_secs(60);
/// Records read per call.
pub const PAGE: usize = 200;

/// One CRM's poller.
pub struct Poller<C: CrmClient> {
    pub db: PgPool,
    pub client: Arc<C>,
    pub publisher: Publisher,
    pub policy: Policy,
    pub interval: Duration,
}

impl<C: CrmClient> Poller<C> {
    /// Polls every interval until shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        let crm = self.client.crm();
        let mut every = tokio::time::interval(self.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if !crate::shutdown::next_tick(&mut every, &shutdown).await {
                break;
            }
            let polled = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = self.poll() => p,
            };
            match polled {
                Ok(outcomes)
                    if outcomes
                        .iter()
                        .any(|o| !matches!(o, Applied::Echo | Applied::Unchanged)) =>
                {
                    tracing::info!(%crm, ?outcomes, "poll found changes webhooks did not bring");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%crm, error = %e, "poll failed; next interval tries again")
                }
            }
        }
        tracing::info!(%crm, "poller stopped");
    }

    /// One poll; nothing if another replica holds the CRM's poll lock.
    async fn poll(&self) -> Result<Vec<Applied>, BatchError> {
        let crm = self.client.crm();
        let mut lock = self.db.begin().await?;
        let mine: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(lock_key(crm))
            .fetch_one(&mut *lock)
            .await?;
        if !mine {
            return Ok(Vec::new());
        }
        let checkpoint: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT polled_until FROM poll_checkpoints WHERE crm = $1")
                .bind(crm.as_str())
                .fetch_optional(&mut *lock)
                .await?;
        let mut outcomes = Vec::new();
        let until = match checkpoint {
            None => Utc::now(),
            Some(since) => self.read_since(since, &mut outcomes).await?,
        };
        sqlx::query(
            "INSERT INTO poll_checkpoints (crm, polled_until) VALUES ($1, $2)
             ON CONFLICT (crm) DO UPDATE SET polled_until = EXCLUDED.polled_until, polled_at = now()",
        )
        .bind(crm.as_str())
        .bind(until)
        .execute(&mut *lock)
        .await?;
        lock.commit().await?;
        Ok(outcomes)
    }

    /// Reads and applies every record modified since `since` (less the overlap); the newest
    /// modification time read.
    async fn read_since(
        &self,
        since: DateTime<Utc>,
        outcomes: &mut Vec<Applied>,
    ) -> Result<DateTime<Utc>, BatchError> {
        let project = |c: &ContactFields| self.client.project(c);
        let ctx = apply::Ctx {
            db: &self.db,
            publisher: &self.publisher,
            crm: self.client.crm(),
            policy: &self.policy,
            project: &project,
            via: "poller",
            bulk: false,
        };
        let overlap = chrono::Duration::from_std(OVERLAP).unwrap_or_default();
        let (mut from, mut newest) = (since - overlap, since);
        loop {
            let records = self.client.changed_since(from, PAGE).await?;
            for record in &records {
                outcomes.push(apply::apply(&ctx, record).await?);
            }
            if let Some(last) = records.iter().map(|r| r.modified_at).max() {
                newest = newest.max(last);
            }
            match next_page(self.client.crm(), &records, from, PAGE) {
                Some(t) => from = t,
                None => break,
            }
        }
        Ok(newest)
    }
}

/// Where the next page of records modified since `from` starts, after `records` (a page read
/// from `from`, at most `page` long); `None` when they were the last. Records are read oldest
/// first, so the next page starts at the newest time read (that record is read again).
pub fn next_page(
    crm: Crm,
    records: &[RemoteRecord],
    from: DateTime<Utc>,
    page: usize,
) -> Option<DateTime<Utc>> {
    let last = records.iter().map(|r| r.modified_at).max()?;
    if records.len() < page {
        return None;
    }
    if last <= from {
        // A full page that all shares one time: the rest of that instant cannot be paged by
        // time. Move on; webhooks and the next change bring them.
        tracing::warn!(%crm, at = %last, "more records share one modification time than a page holds");
        return None;
    }
    Some(last)
}

/// The advisory lock one CRM's poller holds while it polls.
fn lock_key(crm: Crm) -> i64 {
    // Any constant distinct from the contacts' keys (random UUID bits) is fine.
    0x706f_6c6c_0000_0000 + crm as i64
}
