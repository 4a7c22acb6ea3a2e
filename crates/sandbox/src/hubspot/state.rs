//! The sandbox's shared state — records, quotas, faults, counters and the webhook emitter —
//! and the one write path every API and control-API change goes through.
//!
//! Locks are plain mutexes held only for in-memory work, never across an await.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::batch::BATCH_MAX_INPUTS;
use super::config::HubspotSandboxConfig;
use super::counters::Counters;
use super::delivery::{self, DeliveryContext, DeliverySettings};
use super::faults::Faults;
use super::ratelimit::{Limits, RateLimiter};
use super::schema::Schema;
use super::store::{Change, ChangeKind, Store};
use super::webhooks::{ChangeSource, Disorder, Emitter, Identity, WebhookTarget};
use crate::kit::batches::BatchCap;
use crate::kit::writes::{Kind, Source, WriteLog, Written};

pub type AppState = Arc<Shared>;

pub struct Shared {
    /// The Bearer token API calls must carry.
    pub access_token: String,
    pub schema: Schema,
    pub store: Mutex<Store>,
    pub limiter: Mutex<RateLimiter>,
    pub faults: Mutex<Faults>,
    /// Inputs per batch call: HubSpot's 100, or lower for a test.
    pub batch_cap: Mutex<BatchCap>,
    pub counters: Arc<Mutex<Counters>>,
    pub webhooks: Emitter,
    /// Every record version written, for `GET /__sandbox/writes`.
    pub writes: Mutex<WriteLog>,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every critical
/// section here leaves the data consistent at each step (the store journals its writes).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Builds the state and starts the webhook delivery task on `tracker`; must run inside
    /// a Tokio runtime.
    pub fn start(
        cfg: &HubspotSandboxConfig,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> AppState {
        let schema = Schema::new(&cfg.custom_properties);
        let mut store = Store::new(schema.clone());
        if cfg.seed_fixtures {
            seed(&mut store);
        }
        let limits = Limits {
            burst_limit: cfg.burst_limit,
            daily_limit: cfg.daily_limit,
            search_limit_per_second: cfg.search_limit_per_second,
        };
        let counters = Arc::new(Mutex::new(Counters::default()));
        let webhooks = start_webhooks(cfg, &counters, shutdown, tracker);
        Arc::new(Self {
            access_token: cfg.access_token.clone(),
            schema,
            store: Mutex::new(store),
            limiter: Mutex::new(RateLimiter::new(limits)),
            faults: Mutex::new(Faults::default()),
            batch_cap: Mutex::new(BatchCap::vendor(BATCH_MAX_INPUTS)),
            counters,
            webhooks,
            writes: Mutex::new(WriteLog::default()),
        })
    }

    /// After a committed write: count the records, log their versions and queue the webhook
    /// events.
    pub fn committed(&self, records: usize, changes: &[Change], source: ChangeSource) {
        if source == ChangeSource::Integration {
            lock(&self.counters).records_written += records as u64;
        }
        self.log_writes(changes, source);
        let faults = lock(&self.faults);
        let disorder = Disorder {
            shuffle: faults.webhook_shuffle,
            duplicate_rate: faults.webhook_duplicate_rate,
        };
        drop(faults);
        self.webhooks.publish(changes, source, disorder);
    }

    /// One write-log entry per record a write touched, with the record as stored now (the
    /// store lock is free here: every caller has released it).
    fn log_writes(&self, changes: &[Change], source: ChangeSource) {
        let mut touched: Vec<(u64, Kind)> = Vec::new();
        for change in changes {
            let kind = match change.kind {
                ChangeKind::Created => Kind::Created,
                ChangeKind::Deleted | ChangeKind::PrivacyDeleted => Kind::Deleted,
                ChangeKind::PropertyChanged { .. } | ChangeKind::Merged { .. } => Kind::Updated,
            };
            match touched.iter_mut().find(|(id, _)| *id == change.object_id) {
                Some((_, k)) if *k == Kind::Updated => *k = kind,
                Some(_) => {}
                None => touched.push((change.object_id, kind)),
            }
        }
        let source = match source {
            ChangeSource::Integration => Source::Integration,
            ChangeSource::CrmUi => Source::Ui,
        };
        let store = lock(&self.store);
        let versions: Vec<Written> = touched
            .into_iter()
            .map(|(id, kind)| {
                let found = store.all().find(|c| c.id == id);
                let values = found.map(|c| &c.properties).into_iter().flatten();
                Written {
                    source,
                    record_id: id.to_string(),
                    kind,
                    values: values.map(|(k, v)| (k.clone(), v.clone().into())).collect(),
                }
            })
            .collect();
        drop(store);
        let mut log = lock(&self.writes);
        versions.into_iter().for_each(|w| log.record(w));
    }

    /// Control-API reset: no records, counters, usage, faults, queued events or write log;
    /// HubSpot's batch cap.
    pub fn reset(&self) {
        lock(&self.writes).clear();
        lock(&self.store).clear();
        *lock(&self.counters) = Counters::default();
        lock(&self.limiter).reset();
        *lock(&self.faults) = Faults::default();
        *lock(&self.batch_cap) = BatchCap::vendor(BATCH_MAX_INPUTS);
        self.webhooks.set_paused(false);
        self.webhooks.clear();
    }
}

/// Starts the delivery task and returns the emitter that feeds it.
fn start_webhooks(
    cfg: &HubspotSandboxConfig,
    counters: &Arc<Mutex<Counters>>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Emitter {
    let target = WebhookTarget {
        url: cfg.webhook_url.clone(),
        client_secret: cfg.client_secret.clone(),
    };
    let target = Arc::new(Mutex::new(target));
    let (tx, rx) = mpsc::unbounded_channel();
    let (paused_tx, paused_rx) = watch::channel(false);
    let delivery = Arc::new(DeliveryContext {
        settings: delivery_settings(cfg),
        target: Arc::clone(&target),
        counters: Arc::clone(counters),
        cancel: shutdown,
        tracker: tracker.clone(),
    });
    tracker.spawn(delivery::run(delivery, rx, paused_rx));
    let identity = Identity {
        portal_id: cfg.portal_id,
        app_id: cfg.app_id,
        ui_user_id: cfg.ui_user_id,
    };
    let on_create = cfg.webhook_property_events_on_create;
    Emitter::new(tx, target, paused_tx, identity, on_create)
}

fn delivery_settings(cfg: &HubspotSandboxConfig) -> DeliverySettings {
    DeliverySettings {
        batch_max: cfg.webhook_batch_max.clamp(1, 100),
        linger: Duration::from_millis(cfg.webhook_linger_ms),
        max_attempts: cfg.webhook_max_attempts.max(1),
        timeout: Duration::from_millis(cfg.webhook_timeout_ms.max(1)),
        retry_base: Duration::from_millis(cfg.webhook_retry_base_ms),
        concurrency: cfg.webhook_concurrency.max(1),
    }
}

/// A few realistic contacts, dated in the past so date filters have something to split.
fn seed(store: &mut Store) {
    let fixtures = [
        (
            "ada@example.com",
            "Ada",
            "Lovelace",
            "Analytical Engines",
            "2024-03-01",
        ),
        (
            "grace@example.com",
            "Grace",
            "Hopper",
            "US Navy",
            "2024-03-02",
        ),
        (
            "alan@example.com",
            "Alan",
            "Turing",
            "Bletchley Park",
            "2024-03-03",
        ),
    ];
    for (day, (email, first, last, company, date)) in fixtures.into_iter().enumerate() {
        let props: BTreeMap<String, String> = [
            ("email", email),
            ("firstname", first),
            ("lastname", last),
            ("company", company),
            ("lifecyclestage", "lead"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let at = fixture_time(date, day);
        if let Err(err) = store.create(&props, at) {
            tracing::warn!(%email, error = %err, "fixture contact not loaded");
        }
    }
}

fn fixture_time(date: &str, offset: usize) -> DateTime<Utc> {
    let parsed = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(10, 15, 30))
        .map(|naive| Utc.from_utc_datetime(&naive));
    parsed.unwrap_or_else(|| Utc::now() - chrono::Duration::days(offset as i64 + 1))
}
