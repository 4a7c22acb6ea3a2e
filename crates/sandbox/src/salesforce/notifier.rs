//! The delivery task for change notifications: batches queued events (up to
//! `notify_batch_max`, waiting at most `notify_linger_ms` for a batch to fill) and delivers each
//! batch to the targets that are set: the signed webhook (signed afresh on each attempt, 2xx is
//! success) and the Outbound Message endpoint (success is `<Ack>true</Ack>`). Failures (non-2xx,
//! no Ack, timeouts, connection errors) are retried with exponential back-off. Batches go out
//! one at a time, in commit order; a pause (`webhooks_paused`) holds them.
//!
//! What it is not: event building or signing (`notify.rs`), the SOAP envelope
//! (`outbound_message.rs`). The conventions are written down in docs/salesforce-webhooks.md and
//! docs/salesforce-outbound-messages.md.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::notify::{Queued, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use super::outbound_message as om;
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
    async fn next_batch(&mut self, shutdown: &CancellationToken) -> Option<Vec<Queued>> {
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
            let current: Vec<Queued> = batch
                .into_iter()
                .filter(|q| self.sb.outbox.is_current(q))
                .collect();
            if !current.is_empty() {
                return Some(current);
            }
        }
    }

    /// Delivers a batch to each target that is set: the signed webhook, then Outbound Messages.
    async fn deliver(&mut self, batch: Vec<Queued>, shutdown: &CancellationToken) {
        let mut events = Vec::with_capacity(batch.len());
        let mut notifications = Vec::new();
        for q in batch {
            events.push(q.event);
            notifications.extend(q.notification);
        }
        let count = events.len() as u64;
        match serde_json::to_vec(&json!({ "events": events })) {
            Ok(body) => self.retry(&Payload::Signed(body), count, shutdown).await,
            Err(e) => tracing::error!(error = %e, "cannot serialise change events"),
        }
        let target = self.sb.outbox.outbound_target();
        if target.url.is_some() && !notifications.is_empty() {
            let body = om::envelope(&self.sb.base_url, &notifications, &target.fields);
            let count = notifications.len() as u64;
            self.retry(&Payload::OutboundMessage(body), count, shutdown)
                .await;
        }
    }

    /// Attempts one payload until it is delivered, its target is unset, or attempts run out.
    async fn retry(&mut self, payload: &Payload, count: u64, shutdown: &CancellationToken) {
        for attempt in 1..=self.settings.max_attempts.max(1) {
            if !self.wait_unpaused(shutdown).await {
                return;
            }
            let Some(url) = self.url(payload) else {
                return tracing::debug!(count, "no target; notifications dropped");
            };
            let delivered = self.attempt(&url, payload).await;
            {
                let mut c = lock(&self.sb.counters);
                match (payload, delivered) {
                    (Payload::Signed(_), true) => {
                        c.webhooks_sent += 1;
                        c.webhook_events_sent += count;
                    }
                    (Payload::Signed(_), false) => c.webhook_failures += 1,
                    (Payload::OutboundMessage(_), true) => {
                        c.outbound_messages_sent += 1;
                        c.outbound_notifications_sent += count;
                    }
                    (Payload::OutboundMessage(_), false) => c.outbound_message_failures += 1,
                }
            }
            if delivered {
                return;
            }
            if attempt == self.settings.max_attempts {
                return tracing::warn!(count, attempts = attempt, %url, "giving up on a notification batch");
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

    /// The payload's target as it is now (it may be changed or unset between attempts).
    fn url(&self, payload: &Payload) -> Option<String> {
        match payload {
            Payload::Signed(_) => self.sb.outbox.target().url,
            Payload::OutboundMessage(_) => self.sb.outbox.outbound_target().url,
        }
    }

    /// Waits while notifications are paused; false when shutting down.
    async fn wait_unpaused(&mut self, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            _ = shutdown.cancelled() => false,
            r = self.paused.wait_for(|p| !p) => r.is_ok(),
        }
    }

    /// One POST; true on 2xx (signed) or a 2xx holding `<Ack>true</Ack>` (Outbound Message).
    async fn attempt(&self, url: &str, payload: &Payload) -> bool {
        let request = self.http.post(url).timeout(self.settings.timeout);
        let request = match payload {
            Payload::Signed(body) => {
                let timestamp = chrono::Utc::now().timestamp_millis().to_string();
                let secret = self.sb.outbox.target().secret;
                request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(TIMESTAMP_HEADER, &timestamp)
                    .header(SIGNATURE_HEADER, sign(&secret, &timestamp, body))
                    .body(body.clone())
            }
            Payload::OutboundMessage(body) => request
                .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
                .header("SOAPAction", "\"\"")
                .body(body.clone()),
        };
        match request.send().await {
            Ok(resp) if resp.status().is_success() => match payload {
                Payload::Signed(_) => true,
                Payload::OutboundMessage(_) => {
                    let acked = resp.bytes().await.is_ok_and(|b| om::is_ack(&b));
                    if !acked {
                        tracing::debug!(%url, "outbound message answered without <Ack>true</Ack>");
                    }
                    acked
                }
            },
            Ok(resp) => {
                tracing::debug!(status = %resp.status(), %url, "notification refused");
                false
            }
            Err(e) => {
                tracing::debug!(error = %e, %url, "notification failed");
                false
            }
        }
    }
}

/// A batch as one target receives it, built once: every attempt sends the same bytes.
enum Payload {
    /// `{"events": [...]}`, signed per attempt.
    Signed(Vec<u8>),
    /// The SOAP `notifications` envelope.
    OutboundMessage(String),
}
