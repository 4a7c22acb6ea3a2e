//! The fault schedule: what goes wrong, and when, while the load runs.
//!
//! Times are fractions of the load's duration with seeded jitter, so a seed replays the same
//! schedule.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use syncroot_testkit::Control;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::cluster::{Cluster, FORWARDERS};
use crate::services;

#[derive(Debug, Clone)]
pub enum Fault {
    /// SIGKILL a process, start it again after the pause.
    Kill(&'static str, Duration),
    /// Stop RabbitMQ (`crash`: SIGKILL its node), start it again after the pause.
    RestartRabbitmq { down: Duration, crash: bool },
    /// Restart Postgres (`crash`: immediate shutdown, crash recovery at start).
    RestartPostgres { crash: bool },
    /// A fault setting for the HubSpot sandbox.
    Hubspot(Value),
    /// A fault setting for the Salesforce sandbox.
    Salesforce(Value),
}

/// Knobs of the schedule.
pub struct FaultPlan {
    pub seed: u64,
    pub load: Duration,
    pub forwarder_kills: usize,
    pub salesforce_outage: Duration,
    pub hubspot_error_rate: f64,
    /// Stop and crash RabbitMQ and Postgres (they are shared: off when other work uses them).
    pub service_faults: bool,
}

/// The events of a run, in time order.
pub fn schedule(plan: &FaultPlan) -> Vec<(Duration, Fault)> {
    let mut rng = StdRng::seed_from_u64(plan.seed ^ 0xfa17);
    let at = |rng: &mut StdRng, fraction: f64| {
        let jitter = rng.random_range(-0.03..0.03);
        plan.load.mul_f64((fraction + jitter).clamp(0.01, 0.99))
    };
    let pause = |rng: &mut StdRng| Duration::from_millis(rng.random_range(300..3000));
    let mut events = vec![
        (
            at(&mut rng, 0.05),
            Fault::Hubspot(json!({"error_rate": plan.hubspot_error_rate, "error_status": 503})),
        ),
        (
            at(&mut rng, 0.12),
            Fault::Salesforce(json!({"outage": true})),
        ),
        (at(&mut rng, 0.25), Fault::Hubspot(json!({"force_429": 40}))),
        // The CRM commits a write but SyncRoot never hears so: the connection drops, the
        // answer comes after SyncRoot gave up (CHAOS's CRM timeout is 5 s), or it is a 5xx.
        (
            at(&mut rng, 0.18),
            Fault::Hubspot(json!({"after_write": "drop", "after_write_count": 4})),
        ),
        (
            at(&mut rng, 0.30),
            Fault::Salesforce(json!({"after_write": "error", "after_write_count": 4})),
        ),
        (
            at(&mut rng, 0.48),
            Fault::Hubspot(json!({"after_write": "stall", "after_write_count": 2,
                                  "after_write_stall_ms": 6000})),
        ),
        (
            at(&mut rng, 0.58),
            Fault::Salesforce(json!({"after_write": "drop", "after_write_rate": 0.05})),
        ),
        (
            at(&mut rng, 0.68),
            Fault::Salesforce(json!({"after_write": "stall", "after_write_rate": 0.02,
                                     "after_write_stall_ms": 6000})),
        ),
        (
            at(&mut rng, 0.78),
            Fault::Salesforce(json!({"after_write": "off", "after_write_rate": 0.0})),
        ),
        (at(&mut rng, 0.35), Fault::Kill("delivery", pause(&mut rng))),
        (
            at(&mut rng, 0.45),
            Fault::RestartRabbitmq {
                down: Duration::from_secs(3),
                crash: false,
            },
        ),
        (
            at(&mut rng, 0.55),
            Fault::Kill("dlq-worker", pause(&mut rng)),
        ),
        (
            at(&mut rng, 0.60),
            Fault::Hubspot(json!({"force_429": 40, "error_status": 500})),
        ),
        (
            at(&mut rng, 0.66),
            Fault::RestartRabbitmq {
                down: Duration::from_secs(1),
                crash: true,
            },
        ),
        (at(&mut rng, 0.72), Fault::RestartPostgres { crash: false }),
        (at(&mut rng, 0.88), Fault::RestartPostgres { crash: true }),
        (at(&mut rng, 0.80), Fault::Kill("api", pause(&mut rng))),
    ];
    let outage_end = events[1].0 + plan.salesforce_outage;
    events.push((outage_end, Fault::Salesforce(json!({"outage": false}))));
    for i in 0..plan.forwarder_kills {
        let fraction = (i as f64 + 0.5) / plan.forwarder_kills as f64;
        let who = FORWARDERS.choose(&mut rng).unwrap();
        events.push((at(&mut rng, fraction), Fault::Kill(who, pause(&mut rng))));
    }
    if !plan.service_faults {
        events.retain(|(_, f)| {
            !matches!(
                f,
                Fault::RestartRabbitmq { .. } | Fault::RestartPostgres { .. }
            )
        });
    }
    events.sort_by_key(|(t, _)| *t);
    events
}

/// Sets sandbox faults through their control API.
pub async fn set_faults(control: &Control, base: &str, body: &Value) -> anyhow::Result<()> {
    control
        .put(base, "faults", body)
        .await
        .map_err(|e| e.context(format!("faults {body}")))?;
    Ok(())
}

/// What the schedule did, for the report.
#[derive(Default, Debug)]
pub struct Applied {
    pub kills: usize,
    pub rabbitmq_restarts: usize,
    pub rabbitmq_crashes: usize,
    pub postgres_restarts: usize,
    pub postgres_crashes: usize,
    /// Each CRM fault setting applied ("HubSpot force_429"), with how often.
    pub crm_faults: std::collections::BTreeMap<String, usize>,
    pub failures: Vec<String>,
}

impl Applied {
    /// Counts the settings that turn a fault on (an `outage: false`, a zero rate or an
    /// `after_write: "off"` ends one; a count, a stall length or a status only shapes one).
    fn count_crm_fault(&mut self, crm: &str, body: &Value) {
        let Some(settings) = body.as_object() else {
            return;
        };
        for (name, value) in settings {
            let family = match value {
                Value::Bool(true) => name.clone(),
                Value::Number(n) if n.as_f64().is_some_and(|n| n > 0.0) => name.clone(),
                Value::String(mode) if mode != "off" => format!("{name} {mode}"),
                _ => continue,
            };
            // How many, how long, which status: parts of the `after_write` or error fault.
            if name == "error_status" || name.starts_with("after_write_") {
                continue;
            }
            *self
                .crm_faults
                .entry(format!("{crm} {family}"))
                .or_default() += 1;
        }
    }

    /// One line per fault family and how often it happened.
    pub fn families(&self) -> Vec<(String, usize)> {
        let mut out = vec![
            ("SIGKILL of a SyncRoot process".to_owned(), self.kills),
            (
                "RabbitMQ stopped and started".to_owned(),
                self.rabbitmq_restarts,
            ),
            (
                "RabbitMQ killed (SIGKILL)".to_owned(),
                self.rabbitmq_crashes,
            ),
            (
                "Postgres restarted (fast)".to_owned(),
                self.postgres_restarts,
            ),
            (
                "Postgres crashed (immediate)".to_owned(),
                self.postgres_crashes,
            ),
        ];
        out.extend(self.crm_faults.iter().map(|(k, v)| (k.clone(), *v)));
        out
    }
}

/// Plays the schedule from `start`, checking every half second that no process died on its own.
pub async fn play(
    events: Vec<(Duration, Fault)>,
    cluster: Arc<Mutex<Cluster>>,
    control: Control,
    start: Instant,
) -> Applied {
    let mut applied = Applied::default();
    for (at, fault) in events {
        while start.elapsed() < at {
            cluster.lock().await.check(start.elapsed());
            tokio::time::sleep(Duration::from_millis(500).min(at - start.elapsed().min(at))).await;
        }
        println!("chaos: {:>6.1}s {fault:?}", start.elapsed().as_secs_f64());
        let result = match &fault {
            Fault::Kill(name, pause) => {
                cluster.lock().await.kill(name).await;
                tokio::time::sleep(*pause).await;
                cluster.lock().await.start(name);
                applied.kills += 1;
                Ok(())
            }
            Fault::RestartRabbitmq { down, crash } => {
                match crash {
                    true => applied.rabbitmq_crashes += 1,
                    false => applied.rabbitmq_restarts += 1,
                }
                services::restart_rabbitmq(*down, *crash).await
            }
            Fault::RestartPostgres { crash } => {
                match crash {
                    true => applied.postgres_crashes += 1,
                    false => applied.postgres_restarts += 1,
                }
                services::restart_postgres(*crash).await
            }
            Fault::Hubspot(body) => {
                applied.count_crm_fault("HubSpot", body);
                let base = cluster.lock().await.hubspot.clone();
                set_faults(&control, &base, body).await
            }
            Fault::Salesforce(body) => {
                applied.count_crm_fault("Salesforce", body);
                let base = cluster.lock().await.salesforce.clone();
                set_faults(&control, &base, body).await
            }
        };
        if let Err(e) = result {
            println!("chaos: fault {fault:?} failed: {e:#}");
            applied.failures.push(format!("{fault:?}: {e:#}"));
            services::ensure_up().await;
        }
        cluster.lock().await.check(start.elapsed());
    }
    applied
}
