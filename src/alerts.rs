//! Alerts: a JSON POST to a configured URL when deliveries reach the dead-letter queue or are
//! parked, in the shape of a Slack incoming webhook (`{"text": …}`, plus a `syncroot` object with
//! the counts for other receivers).
//!
//! Rate-limited: the first event of a quiet period is reported after a short gathering pause
//! (so one alert describes the start of a burst, well within a minute), then at most one alert
//! per interval sums up everything that happened meanwhile. An outage that dead-letters
//! thousands of deliveries sends a handful of alerts, not thousands. A receiver that is down
//! loses nothing: the summary is kept and sent with the next one.
//!
//! Not here: deciding what is alert-worthy (the dead-letter worker raises events).

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::DeadLetterConfig;

/// Longest pause between the first event of a quiet period and its alert.
const GATHER: Duration = Duration::from_secs(5);
/// Examples quoted in one alert.
const EXAMPLES: usize = 5;

/// Something worth telling a person.
#[derive(Clone, Debug)]
pub struct Event {
    /// True when the entry waits for a person; false when the dead-letter worker will retry.
    pub parked: bool,
    /// One line: which CRM, contact, reason and error.
    pub summary: String,
}

/// Raises alerts; cheap to clone. Without a configured URL, events are dropped.
#[derive(Clone)]
pub struct Alerts {
    tx: Option<mpsc::UnboundedSender<Event>>,
}

impl Alerts {
    /// Starts the sender (when a URL is configured); it ends on `shutdown` after a last send.
    pub fn start(
        cfg: &DeadLetterConfig,
        shutdown: CancellationToken,
    ) -> (Self, Option<JoinHandle<()>>) {
        let Some(url) = cfg.alert_url.clone() else {
            return (Self { tx: None }, None);
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let sender = Sender {
            url: url.expose().to_owned(),
            interval: cfg.alert_interval,
            http: crate::providers::http_client(Duration::from_secs(10)),
        };
        let task = tokio::spawn(sender.run(rx, shutdown));
        (Self { tx: Some(tx) }, Some(task))
    }

    pub fn raise(&self, event: Event) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(event);
        }
    }
}

/// What happened since the last alert.
#[derive(Default)]
struct Pending {
    parked: u64,
    retrying: u64,
    examples: Vec<String>,
}

impl Pending {
    fn add(&mut self, e: Event) {
        if e.parked {
            self.parked += 1;
        } else {
            self.retrying += 1;
        }
        if self.examples.len() < EXAMPLES {
            self.examples.push(e.summary);
        }
    }

    fn is_empty(&self) -> bool {
        self.parked + self.retrying == 0
    }

    /// The alert body.
    fn body(&self) -> serde_json::Value {
        let mut text = format!(
            ":warning: SyncRoot dead-letter queue: {} deliver{} parked (waiting for a person), {} dead-lettered and being retried.",
            self.parked,
            if self.parked == 1 { "y" } else { "ies" },
            self.retrying
        );
        for e in &self.examples {
            text.push_str("\n• ");
            text.push_str(&slack_escape(e));
        }
        let more = (self.parked + self.retrying).saturating_sub(self.examples.len() as u64);
        if more > 0 {
            text.push_str(&format!(
                "\n…and {more} more. `syncroot dlq list` shows them all."
            ));
        }
        json!({
            "text": text,
            "syncroot": {"parked": self.parked, "retrying": self.retrying, "examples": self.examples},
        })
    }
}

/// Longest example line in an alert's text, in characters.
const EXAMPLE_MAX_CHARS: usize = 300;

/// A CRM's error text made inert for Slack's `text` (mrkdwn): `&`, `<` and `>` escaped as
/// Slack requires, so `<!channel>`, `<@user>` or `<https://evil|a link>` in a CRM's answer
/// neither pings anyone nor becomes a link; control characters (new lines that would fake
/// further lines of the alert) become spaces; long text is cut.
/// https://api.slack.com/reference/surfaces/formatting#escaping
fn slack_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        if i == EXAMPLE_MAX_CHARS {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if c.is_control() || crate::domain::fields::is_invisible_format(c) => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

struct Sender {
    url: String,
    interval: Duration,
    http: reqwest::Client,
}

impl Sender {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Event>, shutdown: CancellationToken) {
        let mut pending = Pending::default();
        // When the next alert may go; `None` until something happens.
        let mut due: Option<Instant> = None;
        let mut last_sent: Option<Instant> = None;
        loop {
            let wake = async {
                match due {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = rx.recv() => match event {
                    Some(e) => {
                        pending.add(e);
                        if due.is_none() {
                            let earliest = last_sent.map_or(Instant::now(), |t| t + self.interval);
                            due = Some(earliest.max(Instant::now() + GATHER.min(self.interval)));
                        }
                    }
                    None => break,
                },
                _ = wake => {
                    if self.send(&pending).await {
                        pending = Pending::default();
                        last_sent = Some(Instant::now());
                        due = None;
                    } else {
                        // Keep the summary; try again after another interval.
                        due = Some(Instant::now() + self.interval);
                    }
                }
            }
        }
        if !pending.is_empty() {
            self.send(&pending).await;
        }
    }

    async fn send(&self, pending: &Pending) -> bool {
        let result = self.http.post(&self.url).json(&pending.body()).send().await;
        match result {
            Ok(r) if r.status().is_success() => {
                tracing::info!(
                    parked = pending.parked,
                    retrying = pending.retrying,
                    "alert sent"
                );
                true
            }
            // The URL carries a token: never log it.
            Ok(r) => {
                tracing::warn!(status = %r.status(), "alert receiver refused the alert");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e.without_url(), "cannot send an alert");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_slack_compatible_and_sums_up() {
        let mut p = Pending::default();
        for i in 0..7 {
            p.add(Event {
                parked: i % 2 == 0,
                summary: format!("salesforce contact {i}: FIELD_CUSTOM_VALIDATION_EXCEPTION"),
            });
        }
        let body = p.body();
        let text = body["text"].as_str().unwrap();
        assert!(text.contains("4 deliveries parked"), "{text}");
        assert!(text.contains("3 dead-lettered"), "{text}");
        assert!(text.contains("…and 2 more"), "{text}");
        assert_eq!(body["syncroot"]["examples"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn crm_error_text_cannot_ping_link_or_add_lines_in_slack() {
        let mut p = Pending::default();
        p.add(Event {
            parked: true,
            summary: "hubspot: <!channel> see <https://evil.example|docs> & fix\n• fake line"
                .into(),
        });
        let body = p.body();
        let text = body["text"].as_str().unwrap();
        assert!(!text.contains("<!channel>"), "{text}");
        assert!(!text.contains("<https://"), "{text}");
        assert!(text.contains("&lt;!channel&gt;"), "{text}");
        assert!(text.contains("&amp; fix • fake line"), "{text}");
        assert_eq!(text.lines().count(), 2, "{text}");
        let long = slack_escape(&"x".repeat(1000));
        assert_eq!(long.chars().count(), EXAMPLE_MAX_CHARS + 1);
    }
}
