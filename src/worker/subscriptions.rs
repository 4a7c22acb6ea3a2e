//! The sender of push subscriptions (`syncroot subscriptions`): follows the change feed for
//! every enabled subscription and POSTs each entry to its URL, signed by the Standard Webhooks
//! scheme (`push::signature`): with its secret, and during a rotation's overlap with the
//! secret that rotation replaced too.
//!
//! ```text
//! each of `concurrency` loops, until shutdown:
//!   take the lease of a due subscription (none: sleep the poll interval)
//!   read the feed after its cursor (store::history::feed, a page)
//!   POST each entry in feed order; 2xx: log, move the cursor, extend the lease; next entry
//!   anything else: log, count the failure, retry after the backoff (or disable when it has
//!   failed for longer than disable_after), give the lease back
//!   page done: give the lease back, due again at once (page was full) or after the poll interval
//! ```
//!
//! One subscription is delivered by one sender at a time (its lease), one entry after another,
//! and its cursor moves only past what the subscriber acknowledged, so each contact's versions
//! arrive in version order and nothing is skipped. An entry can arrive twice (a 2xx whose
//! cursor write was lost, a replay): receivers drop duplicates by `webhook-id`.
//!
//! Not here: what subscriptions exist (the admin API) or the feed's order (`store::history`).

use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::SubscriptionConfig;
use crate::metrics::SubscriptionOutcome;
use crate::push::event::Event;
use crate::push::signature::{Signer, SigningKey};
use crate::store::history::FeedRow;
use crate::store::subscriptions::{self as store, AfterFailure, Attempt, Claimed};

/// Feed entries read per lease.
const PAGE: i64 = 100;
/// Most bytes of a subscriber's answer read (it is not used; reading lets the connection be
/// reused).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest error text kept in the log.
const MAX_ERROR_CHARS: usize = 500;

/// The sender of one process.
#[derive(Clone)]
pub struct Sender {
    pub db: PgPool,
    pub cfg: SubscriptionConfig,
    pub http: reqwest::Client,
}

/// How one POST ended.
struct Answer {
    status: Option<u16>,
    error: Option<String>,
    took: Duration,
}

impl Answer {
    fn outcome(&self) -> SubscriptionOutcome {
        match self.status {
            Some(s) if (200..300).contains(&s) => SubscriptionOutcome::Success,
            Some(_) => SubscriptionOutcome::Refused,
            None => SubscriptionOutcome::Unreachable,
        }
    }
}

impl Sender {
    pub fn new(db: PgPool, cfg: SubscriptionConfig) -> Self {
        let http = crate::providers::http_client(cfg.timeout);
        Self { db, cfg, http }
    }

    /// A lease outlives one delivery's timeout with room to spare; each success extends it.
    fn lease(&self) -> Duration {
        self.cfg.timeout + Duration::from_secs(30)
    }

    /// Runs `concurrency` delivery loops and the log pruner until shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        crate::metrics::subscription_outcomes_known();
        let mut loops: Vec<_> = (0..self.cfg.concurrency)
            .map(|_| {
                let (me, stop) = (self.clone(), shutdown.clone());
                tokio::spawn(async move { me.deliver_loop(stop).await })
            })
            .collect();
        let (me, stop) = (self.clone(), shutdown.clone());
        loops.push(tokio::spawn(async move { me.prune_loop(stop).await }));
        futures_util::future::join_all(loops).await;
        tracing::info!("subscription sender stopped");
    }

    async fn deliver_loop(&self, shutdown: CancellationToken) {
        let mut away = crate::queue::backoff(Duration::from_secs(30));
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let wait = match store::claim(&self.db, self.lease()).await {
                Ok(Some(claimed)) => {
                    away = crate::queue::backoff(Duration::from_secs(30));
                    // A delivery in flight at shutdown finishes (within its timeout): its
                    // outcome is written, so nothing is sent twice for want of a cursor.
                    if let Err(e) = self.deliver(&claimed, &shutdown).await {
                        tracing::warn!(subscription = %claimed.id, error = %e, "subscription delivery interrupted; its lease runs out and it is taken again");
                    }
                    continue;
                }
                Ok(None) => self.cfg.poll,
                Err(e) => {
                    let wait = away.next().unwrap_or(Duration::from_secs(30));
                    tracing::warn!(error = %e, ?wait, "cannot read subscriptions; trying again");
                    wait
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Delivers a page of the feed to a claimed subscription, in feed order, stopping at the
    /// first failure or at shutdown (between two entries).
    async fn deliver(
        &self,
        claimed: &Claimed,
        shutdown: &CancellationToken,
    ) -> Result<(), sqlx::Error> {
        let entries = store::next_entries(&self.db, claimed, PAGE).await?;
        let full = entries.len() as i64 == PAGE;
        let Some(signer) = signer(claimed) else {
            return store::release(&self.db, claimed, self.cfg.retry_max).await;
        };
        let mut failures = claimed.consecutive_failures.max(0);
        for entry in &entries {
            if shutdown.is_cancelled() {
                // Stopping: what was taken is recorded; the next sender goes on from there.
                return store::release(&self.db, claimed, Duration::ZERO).await;
            }
            let answer = self.post(claimed, &signer, entry).await;
            crate::metrics::subscription_delivery(answer.outcome());
            let event_id = entry.position.cursor();
            let attempt = Attempt {
                event_id: &event_id,
                contact_id: entry.contact_id,
                version: entry.row.version,
                attempt: failures + 1,
                status_code: answer.status.map(i32::from),
                error: answer.error.as_deref(),
                took: answer.took,
            };
            if answer.outcome() == SubscriptionOutcome::Success {
                if !store::delivered(&self.db, claimed, entry.position, &attempt, self.lease())
                    .await?
                {
                    tracing::info!(subscription = %claimed.id, "subscription changed by an admin while delivering; stopping");
                    return Ok(());
                }
                failures = 0;
                continue;
            }
            let retry_in = crate::queue::nth_wait(
                self.cfg.retry_min,
                self.cfg.retry_max,
                None,
                failures as usize,
            )
            .unwrap_or(self.cfg.retry_max);
            let after = store::failed(
                &self.db,
                claimed,
                &attempt,
                retry_in,
                self.cfg.disable_after,
            )
            .await?;
            match after {
                AfterFailure::Disabled => tracing::warn!(
                    subscription = %claimed.id, failures = failures + 1, error = ?answer.error, status = ?answer.status,
                    "subscription disabled: its deliveries have failed for longer than subscription_disable_after_secs"
                ),
                AfterFailure::Retrying => tracing::info!(
                    subscription = %claimed.id, failures = failures + 1, error = ?answer.error, status = ?answer.status,
                    retry_in_ms = retry_in.as_millis() as u64, "subscription delivery failed; retrying"
                ),
                AfterFailure::LeaseLost => {}
            }
            return Ok(());
        }
        let next = if full { Duration::ZERO } else { self.cfg.poll };
        store::release(&self.db, claimed, next).await
    }

    /// One signed POST: the timeout, no redirects (the shared client), the answer's body read
    /// up to a cap and dropped.
    async fn post(&self, claimed: &Claimed, signer: &Signer, entry: &FeedRow) -> Answer {
        let id = entry.position.cursor();
        let body = Event::of(entry).to_body();
        let now = chrono::Utc::now();
        let timestamp = now.timestamp();
        let signature = signer.header(&id, now, &body);
        let started = Instant::now();
        let sent = self
            .http
            .post(&claimed.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let (status, error) = match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let _ = crate::providers::read_body_within(resp, MAX_ANSWER_BYTES).await;
                (Some(status), None)
            }
            Err(e) => (None, Some(describe(&e))),
        };
        Answer {
            status,
            error,
            took: started.elapsed(),
        }
    }

    async fn prune_loop(&self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            if !crate::shutdown::next_tick(&mut every, &shutdown).await {
                return;
            }
            match store::prune_deliveries(&self.db, self.cfg.log_retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "pruned subscription delivery log"),
                Err(e) => tracing::warn!(error = %e, "could not prune subscription delivery log"),
            }
        }
    }
}

/// The signer of a claimed subscription's deliveries; `None` when its secret cannot be read.
/// Only SyncRoot writes secrets: one it cannot read is a broken row, said loudly. A previous
/// secret it cannot read is left out (the new one still signs).
fn signer(claimed: &Claimed) -> Option<Signer> {
    let unreadable = |which: &str| {
        tracing::error!(subscription = %claimed.id, which, "subscription secret is not whsec_<base64>; rotate it");
    };
    let Some(current) = SigningKey::parse(&claimed.secret) else {
        unreadable("current");
        return None;
    };
    let previous = claimed
        .previous_secret
        .as_ref()
        .and_then(|(secret, until)| {
            let key = SigningKey::parse(secret);
            if key.is_none() {
                unreadable("previous");
            }
            key.map(|k| (k, *until))
        });
    Some(Signer::new(current, previous))
}

/// A transport error in words for the delivery log: what kind, then the chain of causes.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text.chars().take(MAX_ERROR_CHARS).collect()
}
