//! The webhook delivery task: gathers queued events into batches (under 100 events, after a
//! short linger), POSTs each batch signed v1 and v3, and retries failures with backoff,
//! incrementing `attemptNumber`, as HubSpot's Webhooks API does.
//!
//! It does not build events (see `webhooks`) and stops when the shutdown token fires,
//! abandoning whatever is still queued.
//! <https://developers.hubspot.com/docs/api/webhooks>

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::counters::Counters;
use super::signature::{decode_uri_for_v3, sign_v1, sign_v3};
use super::state::lock;
use super::webhooks::{Command, WebhookEvent, WebhookTarget};

/// As observed on real deliveries.
const USER_AGENT: &str = "HubSpot Connect 2.0 (http://dev.hubspot.com/) - WebhooksExecutorDaemon";
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Batching and retry tuning, from the sandbox configuration.
#[derive(Clone, Copy, Debug)]
pub struct DeliverySettings {
    pub batch_max: usize,
    pub linger: Duration,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub retry_base: Duration,
    pub concurrency: usize,
}

/// Everything a delivery needs, shared by all in-flight deliveries.
pub struct DeliveryContext {
    pub settings: DeliverySettings,
    pub target: Arc<Mutex<WebhookTarget>>,
    pub counters: Arc<Mutex<Counters>>,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
}

/// Runs until shutdown: queues events, and while not paused flushes them in batches once
/// the oldest has lingered long enough or a batch is full.
pub async fn run(
    ctx: Arc<DeliveryContext>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    mut paused: watch::Receiver<bool>,
) {
    let client = match reqwest::Client::builder()
        .timeout(ctx.settings.timeout)
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "webhook HTTP client unavailable; events will be dropped");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(ctx.settings.concurrency.max(1)));
    let mut queue: VecDeque<WebhookEvent> = VecDeque::new();
    let mut deadline: Option<Instant> = None;
    loop {
        let is_paused = *paused.borrow();
        if !is_paused && !queue.is_empty() {
            let due = *deadline.get_or_insert_with(|| Instant::now() + ctx.settings.linger);
            if queue.len() >= ctx.settings.batch_max || Instant::now() >= due {
                flush(&ctx, &client, &permits, &mut queue);
                deadline = None;
                continue;
            }
        }
        let wake = if is_paused { None } else { deadline };
        tokio::select! {
            () = ctx.cancel.cancelled() => break,
            command = rx.recv() => match command {
                Some(Command::Events(events)) => queue.extend(events),
                Some(Command::Clear) => { queue.clear(); deadline = None; }
                None => break,
            },
            changed = paused.changed() => if changed.is_err() { break },
            () = sleep_until(wake) => {}
        }
    }
    tracing::info!(abandoned = queue.len(), "webhook delivery stopped");
}

/// Hands every queued event to deliveries of at most `batch_max` events each.
fn flush(
    ctx: &Arc<DeliveryContext>,
    client: &reqwest::Client,
    permits: &Arc<Semaphore>,
    queue: &mut VecDeque<WebhookEvent>,
) {
    while !queue.is_empty() {
        let take = queue.len().min(ctx.settings.batch_max);
        let batch: Vec<_> = queue.drain(..take).collect();
        let (ctx, client, permits) = (Arc::clone(ctx), client.clone(), Arc::clone(permits));
        ctx.tracker
            .clone()
            .spawn(async move { deliver(&ctx, &client, &permits, batch).await });
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Delivers one batch, retrying until a 2xx, the attempt budget or shutdown.
async fn deliver(
    ctx: &DeliveryContext,
    client: &reqwest::Client,
    permits: &Semaphore,
    mut batch: Vec<WebhookEvent>,
) {
    let attempts = ctx.settings.max_attempts.max(1);
    for attempt in 0..attempts {
        batch.iter_mut().for_each(|e| e.attempt_number = attempt);
        let outcome = tokio::select! {
            () = ctx.cancel.cancelled() => return,
            outcome = send_once(ctx, client, permits, &batch) => outcome,
        };
        match outcome {
            Ok(()) => {
                let mut counters = lock(&ctx.counters);
                counters.webhooks_sent += 1;
                counters.webhook_events_sent += batch.len() as u64;
                return;
            }
            Err(reason) => {
                lock(&ctx.counters).webhook_failures += 1;
                tracing::warn!(attempt, %reason, "webhook delivery failed");
            }
        }
        if attempt + 1 < attempts {
            let delay = backoff(ctx.settings.retry_base, attempt);
            tokio::select! {
                () = ctx.cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
    lock(&ctx.counters).webhook_events_dropped += batch.len() as u64;
}

/// One signed POST of the batch; `Err` carries why it did not count as delivered.
async fn send_once(
    ctx: &DeliveryContext,
    client: &reqwest::Client,
    permits: &Semaphore,
    batch: &[WebhookEvent],
) -> Result<(), String> {
    let target = lock(&ctx.target).clone();
    let Some(raw_url) = target.url else {
        return Err("no webhook URL configured".into());
    };
    let url = reqwest::Url::parse(&raw_url).map_err(|e| format!("bad webhook URL: {e}"))?;
    // Serialise once and sign exactly the bytes that go on the wire.
    let body = serde_json::to_vec(batch).map_err(|e| e.to_string())?;
    let request = signed_request(
        client,
        url,
        body,
        &target.client_secret,
        ctx.settings.timeout,
    );
    let _permit = permits.acquire().await.map_err(|e| e.to_string())?;
    let response = request.send().await.map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("receiver answered {}", response.status()))
    }
}

/// The POST with HubSpot's headers: v1 and v3 signatures over `body`, and the timestamp.
fn signed_request(
    client: &reqwest::Client,
    url: reqwest::Url,
    body: Vec<u8>,
    secret: &str,
    timeout: Duration,
) -> reqwest::RequestBuilder {
    let timestamp = Utc::now().timestamp_millis().to_string();
    // The receiver sees the URL as sent and applies the v3 decoding table to it.
    let signed_uri = decode_uri_for_v3(url.as_str());
    let v3 = sign_v3(secret, "POST", &signed_uri, &body, &timestamp);
    let v1 = sign_v1(secret, &body);
    client
        .post(url)
        .header("Content-Type", "application/json")
        .header("User-Agent", USER_AGENT)
        .header("X-HubSpot-Signature", v1)
        .header("X-HubSpot-Signature-Version", "v1")
        .header("X-HubSpot-Signature-v3", v3)
        .header("X-HubSpot-Request-Timestamp", timestamp)
        .header("X-HubSpot-Timeout-Millis", timeout.as_millis().to_string())
        .body(body)
}

/// `base · 2^attempt`, capped at a minute, plus up to 20 % jitter so retries spread out.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(MAX_BACKOFF);
    let jitter_ms = (exp.as_millis() / 5).min(u128::from(u64::MAX)) as u64;
    exp + Duration::from_millis(rand::random_range(0..=jitter_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(100);
        let first = backoff(base, 0);
        assert!(first >= base && first <= Duration::from_millis(120));
        let third = backoff(base, 2);
        assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(480));
        let late = backoff(base, 30);
        assert!(late >= MAX_BACKOFF && late <= MAX_BACKOFF + MAX_BACKOFF / 5);
    }
}
