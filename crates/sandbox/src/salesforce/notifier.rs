//! The delivery task for change notifications: batches queued events (up to
//! `notify_batch_max`, waiting at most `notify_linger_ms` for a batch to fill), signs each attempt
//! and POSTs it, retrying non-2xx answers, timeouts and connection errors with exponential
//! back-off. Batches go out one at a time, in commit order; a pause (`webhooks_paused`) holds them.
//!
//! What it is not: event building or signing (`notify.rs`). The convention is written down in
//! docs/salesforce-webhooks.md.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::notify::{Queued, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use super::state::{Sandbox, lock};

/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Delivery settings from the sandbox configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub batch_max: usize,
    pub linger: Duration,
    pub max_attempts: u32,
    pub timeout: Duration,
}

/// The delivery task.
pub struct Notifier {
    pub(super) sb: Arc<Sandbox>,
    pub(super) rx: mpsc::UnboundedReceiver<Queued>,
    pub(super) paused: watch::Receiver<bool>,
    pub(super) settings: Settings,
    pub(super) http: reqwest::Client,
}

impl Notifier {
    /// Runs until `shutdown` is cancelled; undelivered events are dropped then.
    pub async fn run(mut self, shutdown: CancellationToken) {
        while let Some(batch) = self.next_batch(&shutdown).await {
            self.deliver(batch, &shutdown).await;
        }
        tracing::debug!("salesforce sandbox notifier stopped");
    }

    /// Waits for a first event, lingers for more, waits out a pause, and drops stale events.
    async fn next_batch(&mut self, shutdown: &CancellationToken) -> Option<Vec<Value>> {
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return None,
                q = self.rx.recv() => q?,
            };
            let mut batch = vec![first];
            let deadline = Instant::now() + self.settings.linger;
            while batch.len() < self.settings.batch_max {
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep_until(deadline) => break,
                    q = self.rx.recv() => batch.push(q?),
                }
            }
            if !self.wait_unpaused(shutdown).await {
                return None;
            }
            while batch.len() < self.settings.batch_max {
                match self.rx.try_recv() {
                    Ok(q) => batch.push(q),
                    Err(_) => break,
                }
            }
            let events: Vec<Value> = batch
                .into_iter()
                .filter(|q| self.sb.outbox.is_current(q))
                .map(|q| q.event)
                .collect();
            if !events.is_empty() {
                return Some(events);
            }
        }
    }

    async fn deliver(&mut self, events: Vec<Value>, shutdown: &CancellationToken) {
        let count = events.len() as u64;
        let body = match serde_json::to_vec(&json!({ "events": events })) {
            Ok(b) => b,
            Err(e) => return tracing::error!(error = %e, "cannot serialise change events"),
        };
        for attempt in 1..=self.settings.max_attempts.max(1) {
            if !self.wait_unpaused(shutdown).await {
                return;
            }
            let target = self.sb.outbox.target();
            let Some(url) = target.url else {
                return tracing::debug!(count, "no webhook target; change events dropped");
            };
            if self.attempt(&url, &target.secret, &body).await {
                let mut c = lock(&self.sb.counters);
                c.webhooks_sent += 1;
                c.webhook_events_sent += count;
                return;
            }
            lock(&self.sb.counters).webhook_failures += 1;
            if attempt == self.settings.max_attempts {
                return tracing::warn!(count, attempts = attempt, %url, "giving up on change notification batch");
            }
            let delay = BASE_BACKOFF
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(MAX_BACKOFF);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Waits while notifications are paused; false when shutting down.
    async fn wait_unpaused(&mut self, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            _ = shutdown.cancelled() => false,
            r = self.paused.wait_for(|p| !p) => r.is_ok(),
        }
    }

    /// One signed POST; true on 2xx.
    async fn attempt(&self, url: &str, secret: &str, body: &[u8]) -> bool {
        let timestamp = chrono::Utc::now().timestamp_millis().to_string();
        let result = self
            .http
            .post(url)
            .timeout(self.settings.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, sign(secret, &timestamp, body))
            .body(body.to_vec())
            .send()
            .await;
        match result {
            Ok(resp) if resp.status().is_success() => true,
            Ok(resp) => {
                tracing::debug!(status = %resp.status(), %url, "change notification refused");
                false
            }
            Err(e) => {
                tracing::debug!(error = %e, %url, "change notification failed");
                false
            }
        }
    }
}
