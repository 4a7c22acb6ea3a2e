//! Prometheus metrics: the one table of what SyncRoot exports ([`FAMILIES`], the contract the
//! Helm chart's alerts and dashboard read), the functions that record each event, and `/metrics`
//! in the Prometheus text exposition format (version 0.0.4).
//!
//! One recorder per **process** (the `metrics` facade's global recorder, rendered by
//! `metrics-exporter-prometheus`): every part of a role records into it without a handle being
//! passed around, and a process is what Prometheus scrapes. The black-box tests that run many
//! applications in one test process therefore share it; a test that counts exactly runs the
//! roles as processes of their own (`tests/it/metrics.rs`).
//!
//! Labels are low-cardinality by construction: route templates (never raw paths), queue names,
//! CRM names, fixed outcome words. Histograms have explicit buckets (never summaries).
//!
//! Not here: the periodic look at Postgres ([`collect`]) and at RabbitMQ (`worker::consumer`),
//! which feed the gauges through the functions below.

pub mod backlog;
pub mod collect;
mod http;

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use http::{scrape, track};

/// What kind of metric a family is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Counter,
    Gauge,
    /// A histogram with these upper bounds (`le`), in the family's unit.
    Histogram(&'static [f64]),
}

/// One metric family of the contract.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

pub const HTTP_REQUESTS: &str = "syncroot_http_requests_total";
pub const HTTP_DURATION: &str = "syncroot_http_request_duration_seconds";
pub const MESSAGES: &str = "syncroot_messages_total";
pub const DELIVERY_ATTEMPTS: &str = "syncroot_delivery_attempts_total";
pub const DELIVERY_DURATION: &str = "syncroot_delivery_duration_seconds";
pub const BATCH_RECORDS: &str = "syncroot_crm_batch_records";
pub const QUOTA_REMAINING: &str = "syncroot_crm_quota_remaining";
pub const QUOTA_LIMIT: &str = "syncroot_crm_quota_limit";
pub const DEAD_LETTERS_TOTAL: &str = "syncroot_dead_letters_total";
pub const DEAD_LETTERS: &str = "syncroot_dead_letters";
pub const QUEUE_MESSAGES: &str = "syncroot_queue_messages";
pub const QUEUE_AGE: &str = "syncroot_queue_oldest_message_age_seconds";
pub const SYNC_LATENCY: &str = "syncroot_sync_latency_seconds";
pub const WEBHOOK_EVENTS: &str = "syncroot_webhook_events_total";
pub const SUBSCRIPTION_DELIVERIES: &str = "syncroot_subscription_deliveries_total";

/// Request latencies, in seconds: a fast read to a slow publish confirm.
const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// One delivery call, in seconds, pacer waits included (HTTP timeouts are 30 s by default).
const CALL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Records per call: one, a handful, up to HubSpot's 100 and Salesforce's 200.
const RECORD_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 150.0, 200.0];
/// Accept to synced, in seconds: a linger, retry tiers (minutes), dead-letter rounds (hours).
const SYNC_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0,
];

/// Every metric SyncRoot exports. `charts/syncroot/templates/prometheusrule.yaml` repeats it
/// in its opening comment; a unit test holds the two, the alerts and the dashboard together.
pub const FAMILIES: &[Family] = &[
    Family {
        name: HTTP_REQUESTS,
        kind: Kind::Counter,
        labels: &["route", "method", "status"],
        help: "HTTP requests answered, by matched route template, method and status",
    },
    Family {
        name: HTTP_DURATION,
        kind: Kind::Histogram(HTTP_BUCKETS),
        labels: &["route", "method"],
        help: "Time to answer an HTTP request, in seconds",
    },
    Family {
        name: MESSAGES,
        kind: Kind::Counter,
        labels: &["role", "queue", "outcome"],
        help: "Queue messages settled by a consumer: acked, retried (a copy went to a retry tier), dead_lettered",
    },
    Family {
        name: DELIVERY_ATTEMPTS,
        kind: Kind::Counter,
        labels: &["crm", "outcome"],
        help: "Contacts sent to a CRM, by outcome: success, retryable, permanent",
    },
    Family {
        name: DELIVERY_DURATION,
        kind: Kind::Histogram(CALL_BUCKETS),
        labels: &["crm"],
        help: "One delivery call to a CRM (a batch, pacing waits included), in seconds",
    },
    Family {
        name: BATCH_RECORDS,
        kind: Kind::Histogram(RECORD_BUCKETS),
        labels: &["crm"],
        help: "Contacts per delivery call to a CRM (batch fill)",
    },
    Family {
        name: QUOTA_REMAINING,
        kind: Kind::Gauge,
        labels: &["crm"],
        help: "Calls left of the CRM's daily API allowance, as its last answer reported",
    },
    Family {
        name: QUOTA_LIMIT,
        kind: Kind::Gauge,
        labels: &["crm"],
        help: "The CRM's daily API allowance, as its last answer reported",
    },
    Family {
        name: DEAD_LETTERS_TOTAL,
        kind: Kind::Counter,
        labels: &["reason"],
        help: "Entries that reached the dead-letter queue, by reason",
    },
    Family {
        name: DEAD_LETTERS,
        kind: Kind::Gauge,
        labels: &["status"],
        help: "Dead-letter entries now, by status: retrying, replayed, parked",
    },
    Family {
        name: QUEUE_MESSAGES,
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "Messages ready in a consumed queue (not yet handed to a consumer)",
    },
    Family {
        name: QUEUE_AGE,
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "Upper bound of the age of a consumed queue's oldest ready message, in seconds (0 when empty)",
    },
    Family {
        name: SYNC_LATENCY,
        kind: Kind::Histogram(SYNC_BUCKETS),
        labels: &["crm"],
        help: "From accepting a contact's version (API or webhook worker) to a CRM holding it, in seconds",
    },
    Family {
        name: WEBHOOK_EVENTS,
        kind: Kind::Counter,
        labels: &["crm", "outcome"],
        help: "CRM change notifications: accepted, rejected (requests refused), duplicate, echo",
    },
    Family {
        name: SUBSCRIPTION_DELIVERIES,
        kind: Kind::Counter,
        labels: &["outcome"],
        help: "Change-feed entries POSTed to subscribers, by outcome: success (2xx), refused (another status), unreachable (timeout, connection)",
    },
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The recorder's settings: every histogram of [`FAMILIES`] with its buckets.
fn builder() -> PrometheusBuilder {
    let with_buckets = FAMILIES
        .iter()
        .try_fold(PrometheusBuilder::new(), |b, f| match f.kind {
            Kind::Histogram(buckets) => {
                b.set_buckets_for_metric(Matcher::Full(f.name.to_owned()), buckets)
            }
            _ => Ok(b),
        });
    // Only an empty bucket list is refused, and the table has none (a unit test renders every
    // histogram with its buckets).
    with_buckets.unwrap_or_else(|e| {
        tracing::error!(error = %e, "metric buckets refused; histograms render as summaries");
        PrometheusBuilder::new()
    })
}

/// Installs the process's recorder (once; later calls return the same handle). Every role
/// calls it before it starts work, so nothing is recorded into the facade's no-op recorder.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            // Another recorder was installed first (only an embedding program would): what it
            // records is not ours to render, so ours stays empty rather than lying.
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        for f in FAMILIES {
            match f.kind {
                Kind::Counter => metrics::describe_counter!(f.name, f.help),
                Kind::Gauge => metrics::describe_gauge!(f.name, f.help),
                Kind::Histogram(_) => metrics::describe_histogram!(f.name, f.help),
            }
        }
        handle
    })
}

/// The process's metrics in the Prometheus text format.
pub fn render() -> String {
    install().render()
}

/// Drains recorded histogram samples into their buckets; without it a process nobody scrapes
/// would keep every sample. Run by each role's periodic collector.
pub fn upkeep() {
    install().run_upkeep();
}

/// How often the collectors look at Postgres and RabbitMQ, and upkeep runs.
pub const COLLECT_EVERY: Duration = Duration::from_secs(5);

/// A consumer's settlement of one message.
/// Ordered from the least to the most serious (a pack counts as its items' most serious).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Settled {
    Acked,
    /// A copy went to a retry tier, then the message was acknowledged.
    Retried,
    /// Rejected to RabbitMQ's dead-letter exchange, or a copy published there then acknowledged.
    DeadLettered,
}

impl Settled {
    pub const ALL: [Settled; 3] = [Self::Acked, Self::Retried, Self::DeadLettered];

    fn as_str(self) -> &'static str {
        match self {
            Self::Acked => "acked",
            Self::Retried => "retried",
            Self::DeadLettered => "dead_lettered",
        }
    }
}

/// Counts one settled message of `queue`, consumed by `role`.
pub fn message_settled(role: &'static str, queue: &str, outcome: Settled) {
    metrics::counter!(MESSAGES, "role" => role, "queue" => queue.to_owned(), "outcome" => outcome.as_str())
        .increment(1);
}

/// Creates a consumer's message counters at zero, so the first settlement is an increase.
pub fn messages_known(role: &'static str, queue: &str) {
    for outcome in Settled::ALL {
        metrics::counter!(MESSAGES, "role" => role, "queue" => queue.to_owned(), "outcome" => outcome.as_str())
            .absolute(0);
    }
}

/// How a contact's delivery attempt ended, for [`DELIVERY_ATTEMPTS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    Success,
    /// Failed; trying again may work (the task goes to a retry tier).
    Retryable,
    /// Failed for good (the task goes to the dead-letter queue).
    Permanent,
}

impl AttemptOutcome {
    pub const ALL: [AttemptOutcome; 3] = [Self::Success, Self::Retryable, Self::Permanent];

    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Retryable => "retryable",
            Self::Permanent => "permanent",
        }
    }
}

/// Counts one contact's attempt at a CRM.
pub fn delivery_attempt(crm: &'static str, outcome: AttemptOutcome) {
    metrics::counter!(DELIVERY_ATTEMPTS, "crm" => crm, "outcome" => outcome.as_str()).increment(1);
}

/// Creates a CRM's attempt counters at zero (a delivery worker starting).
pub fn attempts_known(crm: &'static str) {
    for outcome in AttemptOutcome::ALL {
        metrics::counter!(DELIVERY_ATTEMPTS, "crm" => crm, "outcome" => outcome.as_str())
            .absolute(0);
    }
}

/// One delivery call to a CRM: how long it took and how many contacts it carried.
pub fn delivery_call(crm: &'static str, took: Duration, records: usize) {
    metrics::histogram!(DELIVERY_DURATION, "crm" => crm).record(took.as_secs_f64());
    metrics::histogram!(BATCH_RECORDS, "crm" => crm).record(records as f64);
}

/// What a CRM's answer said of its daily allowance.
pub fn crm_quota(crm: &'static str, remaining: u64, limit: u64) {
    metrics::gauge!(QUOTA_REMAINING, "crm" => crm).set(remaining as f64);
    metrics::gauge!(QUOTA_LIMIT, "crm" => crm).set(limit as f64);
}

/// Counts one entry that reached the dead-letter queue.
pub fn dead_letter(reason: &str) {
    metrics::counter!(DEAD_LETTERS_TOTAL, "reason" => reason.to_owned()).increment(1);
}

/// The dead-letter entries with `status` now.
pub fn dead_letters_now(status: &'static str, count: i64) {
    metrics::gauge!(DEAD_LETTERS, "status" => status).set(count as f64);
}

/// A consumed queue's depth and the upper bound of its oldest ready message's age.
pub fn queue_observed(queue: &str, ready: u32, age: Option<Duration>) {
    metrics::gauge!(QUEUE_MESSAGES, "queue" => queue.to_owned()).set(f64::from(ready));
    if let Some(age) = age {
        metrics::gauge!(QUEUE_AGE, "queue" => queue.to_owned()).set(age.as_secs_f64());
    }
}

/// A CRM now holds a contact version accepted `took` ago.
pub fn synced(crm: &'static str, took: Duration) {
    metrics::histogram!(SYNC_LATENCY, "crm" => crm).record(took.as_secs_f64());
}

/// What became of CRM change notifications.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Verified and queued (counted per event).
    Accepted,
    /// A request refused: bad signature, stale, or not the CRM's format (counted per request:
    /// its events cannot be trusted to be counted).
    Rejected,
    /// An event handled before (a CRM's redelivery).
    Duplicate,
    /// An event about a write SyncRoot made itself.
    Echo,
}

impl WebhookOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Duplicate => "duplicate",
            Self::Echo => "echo",
        }
    }
}

/// Counts `n` webhook events (or rejected requests) of `crm`.
pub fn webhook_events(crm: &'static str, outcome: WebhookOutcome, n: usize) {
    metrics::counter!(WEBHOOK_EVENTS, "crm" => crm, "outcome" => outcome.as_str())
        .increment(n as u64);
}

/// How one POST to a subscriber ended, for [`SUBSCRIPTION_DELIVERIES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionOutcome {
    /// A 2xx: the cursor moves on.
    Success,
    /// Any other status (redirects included: they are not followed).
    Refused,
    /// No answer: a timeout, a refused or dropped connection.
    Unreachable,
}

impl SubscriptionOutcome {
    pub const ALL: [SubscriptionOutcome; 3] = [Self::Success, Self::Refused, Self::Unreachable];

    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Refused => "refused",
            Self::Unreachable => "unreachable",
        }
    }
}

/// Counts one POST to a subscriber.
pub fn subscription_delivery(outcome: SubscriptionOutcome) {
    metrics::counter!(SUBSCRIPTION_DELIVERIES, "outcome" => outcome.as_str()).increment(1);
}

/// Creates the subscription counters at zero (a sender starting).
pub fn subscription_outcomes_known() {
    for outcome in SubscriptionOutcome::ALL {
        metrics::counter!(SUBSCRIPTION_DELIVERIES, "outcome" => outcome.as_str()).absolute(0);
    }
}

#[cfg(test)]
mod contract_tests;
