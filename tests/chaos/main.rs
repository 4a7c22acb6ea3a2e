//! `make chaos`: SyncRoot as separate processes under thousands of changes while its
//! processes are killed, RabbitMQ and Postgres restart and the CRMs fail; then every side
//! must agree with what the API accepted.
//!
//! Bounded and self-stopping. Knobs (environment): `CHAOS_SEED` (replays a schedule and a
//! load), `CHAOS_LOAD_SECS` (120), `CHAOS_RATE` (changes per second, 30), `CHAOS_WRITERS` (6),
//! `CHAOS_RACERS` (writers sending several changes of one contact at once, 2),
//! `CHAOS_SERVICE_FAULTS` (stop and crash RabbitMQ and Postgres, true),
//! `CHAOS_INVALID` (contacts made invalid for Salesforce, 8), `CHAOS_FORWARDER_KILLS` (5),
//! `CHAOS_OUTAGE_SECS` (Salesforce outage, 20), `CHAOS_SETTLE_SECS` (how long the system may
//! take to converge afterwards, 300).
//!
//! Restarts the shared RabbitMQ and Postgres: run it alone, after the rest of the suite.
//! Process logs go to `target/chaos/<run>/`.

mod alerts;
mod cluster;
mod faults;
mod history;
mod load;
mod model;
mod services;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use tokio::time::Instant;

use cluster::Cluster;
use syncroot_sandbox::kit::control::ControlToken;
use syncroot_testkit::{Control, Installation, free_port};
use verify::{Findings, Sources};

const API_KEY: &str = "chaos-api-key-0123456789";
const ADMIN_KEY: &str = "chaos-admin-key-0123456789";

fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a valid value")),
        Err(_) => default,
    }
}

struct Knobs {
    seed: u64,
    load: Duration,
    rate: f64,
    writers: usize,
    racers: usize,
    service_faults: bool,
    invalid: usize,
    forwarder_kills: usize,
    outage: Duration,
    settle: Duration,
}

impl Knobs {
    fn from_env() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        Self {
            seed: knob("CHAOS_SEED", now),
            load: Duration::from_secs(knob("CHAOS_LOAD_SECS", 120)),
            rate: knob("CHAOS_RATE", 30.0),
            writers: knob("CHAOS_WRITERS", 6),
            racers: knob("CHAOS_RACERS", 2),
            service_faults: knob("CHAOS_SERVICE_FAULTS", true),
            invalid: knob("CHAOS_INVALID", 8),
            forwarder_kills: knob("CHAOS_FORWARDER_KILLS", 5),
            outage: Duration::from_secs(knob("CHAOS_OUTAGE_SECS", 20)),
            settle: Duration::from_secs(knob("CHAOS_SETTLE_SECS", 300)),
        }
    }
}

/// The installation every process of the run shares: the testkit's environment with the
/// chaos run's keys, shards, retry tiers, alerts and sandbox ports.
fn installation(alert_url: &str) -> anyhow::Result<Installation> {
    let port = || free_port().map(|p| format!("127.0.0.1:{p}"));
    let hubspot = port()?;
    let salesforce = port()?;
    let mut install = Installation::for_tests("chaos");
    install.set_all([
        ("SYNCROOT_API_LISTEN", port()?),
        ("SYNCROOT_API_KEYS", API_KEY.into()),
        ("SYNCROOT_ADMIN_KEYS", ADMIN_KEY.into()),
        ("SYNCROOT_QUEUE_SHARDS", "4".into()),
        ("SYNCROOT_DELIVERY_RETRY_TIERS", "500ms,1s,2s,4s,8s".into()),
        ("SYNCROOT_DLQ_RETRY_MIN_MS", "1000".into()),
        ("SYNCROOT_DLQ_RETRY_MAX_MS", "8000".into()),
        ("SYNCROOT_DLQ_RETRY_TIMES", "15".into()),
        ("SYNCROOT_ALERT_URL", alert_url.into()),
        ("SYNCROOT_ALERT_INTERVAL_SECS", "10".into()),
        ("SYNCROOT_CRM_TIMEOUT_MS", "5000".into()),
        ("SANDBOX_HUBSPOT_LISTEN", hubspot.clone()),
        ("SANDBOX_SALESFORCE_LISTEN", salesforce.clone()),
        (
            "SANDBOX_CONTROL_TOKEN",
            ControlToken::generate().expose().to_owned(),
        ),
        ("SYNCROOT_HUBSPOT_BASE_URL", format!("http://{hubspot}")),
        (
            "SYNCROOT_SALESFORCE_LOGIN_URL",
            format!("http://{salesforce}"),
        ),
    ]);
    Ok(install)
}

fn main() -> ExitCode {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    match rt.block_on(run(Knobs::from_env())) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chaos: could not run: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Verifies until everything agrees or `within` has passed; returns the last findings.
async fn converge(
    src: &Sources<'_>,
    model: &model::Model,
    invalid_parked: bool,
    within: Duration,
    cluster: &tokio::sync::Mutex<Cluster>,
    start: Instant,
) -> anyhow::Result<Findings> {
    let deadline = Instant::now() + within;
    let mut last_report = Instant::now();
    loop {
        cluster.lock().await.check(start.elapsed());
        let f = match verify::check(src, model, invalid_parked).await {
            Ok(f) => f,
            // A sandbox or the API answering late is not a finding; try again.
            Err(e) if Instant::now() < deadline => {
                println!("chaos: check failed, retrying: {e:#}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if f.problems.is_empty() || Instant::now() > deadline {
            return Ok(f);
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            println!(
                "chaos: {:>6.1}s converging: {} differences left, e.g. {}",
                start.elapsed().as_secs_f64(),
                f.problems.len(),
                f.problems[0]
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

fn print_problems(phase: &str, f: &Findings) {
    if f.problems.is_empty() {
        return;
    }
    println!("chaos: {phase}: {} differences:", f.problems.len());
    for p in f.problems.iter().take(40) {
        println!("  {p}");
    }
    if f.problems.len() > 40 {
        println!("  … and {} more", f.problems.len() - 40);
    }
}

async fn run(k: Knobs) -> anyhow::Result<bool> {
    let alerts = alerts::Receiver::start().await?;
    let install = installation(&alerts.url)?;
    let (db_name, prefix) = (install.db_name.clone(), install.prefix.clone());
    let tag = prefix.trim_start_matches("chaos");
    let logs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/chaos/{tag}"));
    std::fs::create_dir_all(&logs)?;
    println!(
        "chaos: seed {} (CHAOS_SEED={} replays it), load {:?} at {}/s, database {db_name}, \
         queue prefix {prefix}, logs {}",
        k.seed,
        k.seed,
        k.load,
        k.rate,
        logs.display()
    );

    let mut cluster = Cluster::new(install.env().to_vec(), logs.clone())?;
    cluster.migrate().await?;
    cluster.start_all();
    let http = syncroot_testkit::http_client()
        .timeout(Duration::from_secs(30))
        .build()?;
    anyhow::ensure!(
        cluster.wait_ready(&http, Duration::from_secs(60)).await,
        "SyncRoot did not become ready within a minute (logs in {})",
        logs.display()
    );
    let (api, hubspot, salesforce) = (
        cluster.api.clone(),
        cluster.hubspot.clone(),
        cluster.salesforce.clone(),
    );
    let rule = json!([{"name": "NoInvalidLastName", "field": "LastName",
                       "contains": load::INVALID_MARK,
                       "message": "Last name must not say it is invalid"}]);
    let control = Control::new(http.clone(), cluster.control_token.clone());
    control.put(&salesforce, "validation-rules", &rule).await?;

    let cluster = Arc::new(tokio::sync::Mutex::new(cluster));
    let stop_reading = tokio_util::sync::CancellationToken::new();
    let write_logs = history::collect(
        control.clone(),
        hubspot.clone(),
        salesforce.clone(),
        stop_reading.clone(),
    );
    let start = Instant::now();
    let events = faults::schedule(&faults::FaultPlan {
        seed: k.seed,
        load: k.load,
        forwarder_kills: k.forwarder_kills,
        salesforce_outage: k.outage,
        hubspot_error_rate: 0.1,
        service_faults: k.service_faults,
    });
    let play = tokio::spawn(faults::play(
        events,
        cluster.clone(),
        control.clone(),
        start,
    ));
    let model = load::run(load::LoadPlan {
        api: api.clone(),
        key: API_KEY.into(),
        seed: k.seed,
        duration: k.load,
        writers: k.writers,
        racers: k.racers,
        rate: k.rate,
        invalid: k.invalid,
    })
    .await;
    let applied = play.await?;
    let model = Arc::try_unwrap(model)
        .map_err(|_| anyhow::anyhow!("load still running"))?
        .into_inner()
        .unwrap();
    println!(
        "chaos: {:>6.1}s load done: {} changes accepted; faults off, waiting for quiescence",
        start.elapsed().as_secs_f64(),
        model.accepted
    );
    let off = json!({"error_rate": 0.0, "force_429": 0, "outage": false,
                     "after_write": "off", "after_write_count": 0, "after_write_rate": 0.0});
    faults::set_faults(&control, &hubspot, &off).await?;
    faults::set_faults(&control, &salesforce, &off).await?;

    let db = PgPoolOptions::new()
        .max_connections(2)
        .connect(&install.db_url())
        .await?;
    let src = Sources {
        db: &db,
        control: &control,
        hubspot: &hubspot,
        salesforce: &salesforce,
    };
    let settled = converge(&src, &model, true, k.settle, &cluster, start).await?;
    print_problems("after the load", &settled);
    let hs_counters = control.counters(&hubspot).await.unwrap_or(Value::Null);
    let sf_counters = control.counters(&salesforce).await.unwrap_or(Value::Null);

    // Fix what Salesforce refused (its rule goes), then replay the parked entries.
    let mut replayed = 0;
    let mut after_replay = Findings::default();
    if settled.problems.is_empty() {
        control
            .put(&salesforce, "validation-rules", &json!([]))
            .await?;
        let r: Value = http
            .post(format!("{api}/dlq/replay"))
            .bearer_auth(ADMIN_KEY)
            .query(&[("crm", "salesforce")])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        replayed = r["replayed"].as_u64().unwrap_or(0);
        println!(
            "chaos: {:>6.1}s replayed {replayed} parked entries after removing the validation rule",
            start.elapsed().as_secs_f64()
        );
        after_replay = converge(
            &src,
            &model,
            false,
            Duration::from_secs(120),
            &cluster,
            start,
        )
        .await?;
        print_problems("after the replay", &after_replay);
    }

    stop_reading.cancel();
    let logs_read = write_logs.await?;
    let history = history::check_both(&logs_read, &model, &verify::links(&db).await?);
    print_problems(
        "history",
        &Findings {
            problems: history.problems.clone(),
            ..Findings::default()
        },
    );
    if !settled.problems.is_empty() || !after_replay.problems.is_empty() {
        // The sandboxes stop with the cluster: keep what they held for inspection.
        for (name, base) in [("hubspot", &hubspot), ("salesforce", &salesforce)] {
            if let Ok(state) = control.get(base, "state").await {
                let path = logs.join(format!("{name}-state.json"));
                std::fs::write(&path, serde_json::to_vec_pretty(&state)?)?;
            }
        }
    }
    let mut cluster = Arc::try_unwrap(cluster)
        .map_err(|_| anyhow::anyhow!("cluster still shared"))?
        .into_inner();
    cluster.stop(Duration::from_secs(10)).await;
    let alerts_received = alerts.count();

    let retried = |c: &Value| {
        c["rate_limited"].as_u64().unwrap_or(0) + c["errors_injected"].as_u64().unwrap_or(0)
    };
    let row = |name: &str, value: String| println!("  {name:<34} {value}");
    println!("chaos: results (seed {})", k.seed);
    row("changes accepted by the API", model.accepted.to_string());
    row("contacts", model.contacts.len().to_string());
    row(
        "requests resent after 503/no answer",
        model.resent.to_string(),
    );
    row(
        "racing changes that found a delete",
        format!("{} (answered 404)", model.raced_a_delete),
    );
    row(
        "contact×CRM pairs in agreement",
        format!("{} of {}", after_replay.delivered, 2 * model.contacts.len()),
    );
    row(
        "CRM calls refused, then retried",
        format!(
            "{} (HubSpot {}, Salesforce {})",
            retried(&hs_counters) + retried(&sf_counters),
            retried(&hs_counters),
            retried(&sf_counters)
        ),
    );
    row(
        "parked (invalid on purpose)",
        format!("{} ({})", settled.parked, model.invalid_ids().len()),
    );
    row("replayed after the fix", replayed.to_string());
    row("alerts received", alerts_received.to_string());
    row(
        "duplicates",
        (settled.duplicates + after_replay.duplicates).to_string(),
    );
    row(
        "orphans",
        (settled.orphans + after_replay.orphans).to_string(),
    );
    row("lost", (settled.lost + after_replay.lost).to_string());
    row(
        "CRM writes checked in version order",
        format!(
            "{} ({} out of order or unknown)",
            history.writes,
            history.problems.len()
        ),
    );
    println!("chaos: faults (seed {})", k.seed);
    for (family, count) in applied.families() {
        row(&family, count.to_string());
    }
    for (crm, c) in [("HubSpot", &hs_counters), ("Salesforce", &sf_counters)] {
        let injected = &c["after_write_faults"];
        row(
            &format!("{crm} writes answered badly"),
            format!(
                "{} dropped, {} stalled, {} 5xx (after committing)",
                injected["drop"], injected["stall"], injected["error"]
            ),
        );
    }

    let mut failures = Vec::new();
    if !settled.problems.is_empty() {
        failures.push(format!(
            "did not converge within {:?} after the load",
            k.settle
        ));
    } else if !after_replay.problems.is_empty() {
        failures.push("did not converge after the replay".to_owned());
    }
    failures.extend(
        model
            .unexpected
            .iter()
            .take(20)
            .map(|u| format!("API: {u}")),
    );
    failures.extend(
        history
            .problems
            .iter()
            .take(20)
            .map(|p| format!("history: {p}")),
    );
    failures.extend(cluster.unexpected_exits.iter().cloned());
    failures.extend(applied.failures.iter().map(|f| format!("fault: {f}")));
    if alerts_received == 0 && settled.parked > 0 {
        failures.push("entries were parked but no alert arrived".to_owned());
    }
    if failures.is_empty() {
        println!("chaos: PASS in {:.0}s", start.elapsed().as_secs_f64());
        install.cleanup().await;
        let _ = std::fs::remove_dir_all(&logs);
        Ok(true)
    } else {
        println!("chaos: FAIL");
        for f in &failures {
            println!("  {f}");
        }
        println!(
            "chaos: left for inspection: database {db_name}, queues {prefix}.*, logs {}",
            logs.display()
        );
        Ok(false)
    }
}
