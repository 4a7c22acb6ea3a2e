//! The sandbox org's shared state: configuration-derived identities, the records, sessions,
//! usage, faults, counters and the notification outbox, plus the commit path every write takes.
//!
//! What it is not: request handling; handlers live in the resource modules and reach this
//! state through `Arc<Sandbox>`. Each part has its own mutex, held only for short, synchronous
//! sections and never across an `.await`.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::HeaderMap;
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::SalesforceSandboxConfig;
use super::auth::Sessions;
use super::composite::WRITE_CAP;
use super::counters::Counters;
use super::errors::SfError;
use super::faults::Faults;
use super::fields::Schema;
use super::limits::Meter;
use super::notify::{Outbox, Queued, Target};
use super::query::Cursors;
use super::store::{Actor, Change, ChangeType, Store, Undo};
use super::validation::ValidationRules;
use super::{bulk, ids, jwt};
use crate::kit::batches::BatchCap;
use crate::kit::writes::{Kind, Source, WriteLog, Written};

/// Most recent changes kept for `/__sandbox/state`.
const CHANGE_LOG_CAPACITY: usize = 10_000;

/// Locks a mutex, recovering the data if a previous holder panicked: every section that holds
/// one of these locks leaves the data consistent at each step, so a poisoned lock is still
/// safe to use.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct Sandbox {
    /// `http://127.0.0.1:PORT`, returned as `instance_url`.
    pub base_url: String,
    /// 18-character Organization id (`00D…`).
    pub org_id: String,
    /// Run-as user of the connected app: the `commitUser` of every API write.
    pub integration_user: String,
    /// The simulated person editing in Lightning through `/__sandbox/ui/…`.
    pub ui_user: String,
    /// API version used where a request carries none (UI edits, versions list).
    pub default_version: String,
    pub client_id: String,
    pub client_secret: String,
    /// The configured daily allowance, restored by `reset`.
    pub daily_limit: u32,
    /// A session dies after this long without an authenticated call.
    pub idle_timeout: Duration,
    pub seed_fixtures: bool,
    pub schema: Schema,
    pub store: Mutex<Store>,
    pub sessions: Mutex<Sessions>,
    pub meter: Mutex<Meter>,
    pub counters: Mutex<Counters>,
    pub faults: Mutex<Faults>,
    /// Records per collection write: Salesforce's 200, or lower for a test.
    pub batch_cap: Mutex<BatchCap>,
    pub cursors: Mutex<Cursors>,
    /// Bulk API 2.0 query jobs.
    pub bulk_jobs: Mutex<bulk::Jobs>,
    /// Committed changes, newest last, with the client that made each.
    pub changes: Mutex<VecDeque<Value>>,
    /// Certificate of the connected app for the JWT bearer flow; `None` disables the flow.
    pub jwt_certificate: Mutex<Option<CertificateDer<'static>>>,
    pub outbox: Outbox,
    /// Every record version written, for `GET /__sandbox/writes`.
    pub writes: Mutex<WriteLog>,
}

impl Sandbox {
    /// Builds the state and the receiving ends the notifier needs.
    pub fn new(
        cfg: &SalesforceSandboxConfig,
        base_url: String,
    ) -> anyhow::Result<(Self, mpsc::UnboundedReceiver<Queued>, watch::Receiver<bool>)> {
        let jwt_certificate = cfg
            .jwt_certificate_pem
            .as_deref()
            .map(jwt::parse_certificate)
            .transpose()?;
        let target = Target {
            url: cfg.notify_url.clone(),
            secret: cfg.notify_secret.clone(),
        };
        let (outbox, rx, paused) = Outbox::new(target);
        let sb = Self {
            base_url,
            org_id: ids::mint(ids::ORG_PREFIX, 1),
            integration_user: ids::mint(ids::USER_PREFIX, 1),
            ui_user: ids::mint(ids::USER_PREFIX, 2),
            default_version: cfg.api_version.clone(),
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            daily_limit: cfg.daily_limit,
            idle_timeout: Duration::from_secs(cfg.session_idle_timeout_secs),
            seed_fixtures: cfg.seed_fixtures,
            schema: Schema::contact(&cfg.external_id_field),
            store: Mutex::new(Store::new(&cfg.external_id_field)),
            sessions: Mutex::new(Sessions::default()),
            meter: Mutex::new(Meter::new(cfg.daily_limit)),
            counters: Mutex::new(Counters::default()),
            faults: Mutex::new(Faults::default()),
            batch_cap: Mutex::new(BatchCap::vendor(WRITE_CAP)),
            cursors: Mutex::new(Cursors::default()),
            bulk_jobs: Mutex::new(bulk::Jobs::default()),
            changes: Mutex::new(VecDeque::new()),
            jwt_certificate: Mutex::new(jwt_certificate),
            outbox,
            writes: Mutex::new(WriteLog::default()),
        };
        sb.seed();
        Ok((sb, rx, paused))
    }

    /// The actor of a REST write: the integration user, tagged with the `client=` of
    /// `Sforce-Call-Options` when present, as CDC's `changeOrigin` is.
    pub fn api_actor(&self, headers: &HeaderMap, version: &str) -> Actor {
        let client = headers
            .get("sforce-call-options")
            .and_then(|v| v.to_str().ok())
            .and_then(call_options_client);
        let origin = match &client {
            Some(c) => format!("com/salesforce/api/rest/{version};client={c}"),
            None => format!("com/salesforce/api/rest/{version}"),
        };
        Actor {
            user_id: self.integration_user.clone(),
            client,
            origin,
        }
    }

    /// The actor of a simulated Lightning edit: a human user and no client. Lightning saves
    /// through the UI API, so the origin is REST without a client [UNVERIFIED: the exact
    /// `changeOrigin` Lightning edits produce].
    pub fn ui_actor(&self) -> Actor {
        let origin = format!("com/salesforce/api/rest/{}", self.default_version);
        Actor {
            user_id: self.ui_user.clone(),
            client: None,
            origin,
        }
    }

    /// Runs one write under the store lock and commits its change before unlocking, so the
    /// change log and notifications follow commit order.
    pub fn write_one(
        &self,
        write: impl FnOnce(&mut Store, &mut Undo) -> Result<Change, SfError>,
    ) -> Result<Change, SfError> {
        let mut store = lock(&self.store);
        let change = write(&mut store, &mut Undo::default())?;
        self.commit(std::slice::from_ref(&change));
        Ok(change)
    }

    /// Records committed changes in the change log and queues their notifications. Call it
    /// while still holding the store lock that made them, to keep commit order.
    pub fn commit(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        self.log_writes(changes);
        {
            let mut log = lock(&self.changes);
            for ch in changes {
                if log.len() == CHANGE_LOG_CAPACITY {
                    log.pop_front();
                }
                log.push_back(json!({
                    "id": ch.record.id,
                    "changeType": ch.change_type.as_str(),
                    "commitTimestamp": ch.committed_at.timestamp_millis(),
                    "commitUser": ch.actor.user_id,
                    "client": ch.actor.client,
                    "changeOrigin": ch.actor.origin,
                    "changedFields": ch.changed_fields,
                }));
            }
        }
        self.outbox.publish(changes, &self.schema);
    }

    fn log_writes(&self, changes: &[Change]) {
        let mut log = lock(&self.writes);
        for ch in changes {
            let source = if ch.actor.user_id == self.ui_user {
                Source::Ui
            } else {
                Source::Integration
            };
            let kind = match ch.change_type {
                ChangeType::Create => Kind::Created,
                ChangeType::Update => Kind::Updated,
                ChangeType::Delete => Kind::Deleted,
            };
            let values = ch.record.values.iter().map(|(k, v)| (k.clone(), v.clone()));
            log.record(Written {
                source,
                record_id: ch.record.id.clone(),
                kind,
                values: values.collect(),
            });
        }
    }

    /// Forgets records, validation rules, the duplicate rule, pending record locks, usage (and a changed allowance), a
    /// lowered batch cap, faults, cursors, the change log, the write log and queued
    /// notifications;
    /// keeps sessions, counters, the webhook target and the id counter.
    pub fn reset(&self) {
        {
            let mut store = lock(&self.store);
            store.reset();
            store.set_rules(ValidationRules::default());
            store.duplicates = Default::default();
            store.record_locks = 0;
        }
        *lock(&self.meter) = Meter::new(self.daily_limit);
        *lock(&self.faults) = Faults::default();
        *lock(&self.batch_cap) = BatchCap::vendor(WRITE_CAP);
        *lock(&self.cursors) = Cursors::default();
        *lock(&self.bulk_jobs) = bulk::Jobs::default();
        lock(&self.changes).clear();
        lock(&self.writes).clear();
        self.outbox.discard_pending();
        self.outbox.set_paused(false);
        self.seed();
    }

    /// A few pre-existing Contacts, created by the human user, without notifications.
    fn seed(&self) {
        if !self.seed_fixtures {
            return;
        }
        let people = [
            ("Ada", "Lovelace", "ada.lovelace@example.com", "Analyst"),
            (
                "Grace",
                "Hopper",
                "grace.hopper@example.com",
                "Rear Admiral",
            ),
            (
                "Katherine",
                "Johnson",
                "katherine.johnson@example.com",
                "Mathematician",
            ),
        ];
        let actor = self.ui_actor();
        let mut store = lock(&self.store);
        for (first, last, email, title) in people {
            let fields = [
                ("FirstName", first),
                ("LastName", last),
                ("Email", email),
                ("Title", title),
            ]
            .map(|(k, v)| (k.to_string(), json!(v)))
            .to_vec();
            if let Err(e) = store.create(fields, &actor, &mut Undo::default()) {
                tracing::warn!(error = %e, "fixture contact rejected");
            }
        }
    }
}

/// `client` from `Sforce-Call-Options: client=SampleCaseSensitiveToken/100, defaultNamespace=x`.
pub fn call_options_client(header: &str) -> Option<String> {
    header
        .split(',')
        .filter_map(|part| part.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("client"))
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_options_client_is_extracted() {
        assert_eq!(
            call_options_client("client=syncroot").as_deref(),
            Some("syncroot")
        );
        assert_eq!(
            call_options_client("defaultNamespace=ns, client = a/1 ").as_deref(),
            Some("a/1")
        );
        assert_eq!(call_options_client("defaultNamespace=ns"), None);
    }

    #[test]
    fn reset_reseeds_fixtures_and_keeps_ids_fresh() {
        let cfg = SalesforceSandboxConfig {
            seed_fixtures: true,
            ..Default::default()
        };
        let (sb, _rx, _paused) = Sandbox::new(&cfg, "http://127.0.0.1:1".into()).unwrap();
        let first: Vec<String> = lock(&sb.store).all().map(|c| c.id.clone()).collect();
        assert_eq!(first.len(), 3);
        sb.reset();
        let second: Vec<String> = lock(&sb.store).all().map(|c| c.id.clone()).collect();
        assert_eq!(second.len(), 3);
        assert!(first.iter().all(|id| !second.contains(id)));
    }
}
