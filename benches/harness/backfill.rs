//! The backfill at scale (`BENCH_ONLY=backfill`): both sandboxes seeded with a population
//! ([`Population`]), SyncRoot started on them (all-in-one, no webhooks, no poller), a backfill
//! job asked for and followed through the admin API to its end, then delivery waited for until
//! every person is once in each CRM.
//!
//! Measured: the job's wall time (its own start and finish times), the time from its start
//! until the last record was written, and each CRM's calls by kind against the least the
//! population needs (reading every record once, and full batches of the creates and updates
//! it calls for). Checked ([`super::backfill_checks`]): each CRM and SyncRoot hold everyone
//! once with the right values, the duplicates are left alone, the job's counters are the
//! population's; anything wrong is a problem that fails the run. What the population asks of
//! each CRM, and the least that costs, is [`super::backfill_plan`]. Only HTTP APIs are used,
//! so the scenario measures any implementation of the job.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};
use syncroot_testkit::ADMIN_KEY;
use syncroot_testkit::holdings::Crm;
use tokio::time::Instant;

use super::{
    BULK_PAGE, BULK_THRESHOLD, Binaries, CrmCost, Mode, Plan, Population, Sandboxes, SyncRoot,
    check_job, check_sandbox, check_syncroot, secs_between, winners,
};

/// How often the job is read while it runs, and a line printed about it.
const JOB_POLL: Duration = Duration::from_millis(500);
const PROGRESS_EVERY: Duration = Duration::from_secs(15);
/// How often the sandboxes are dumped and checked once they wrote enough records.
const DUMPS_EVERY: Duration = Duration::from_secs(2);

/// The backfill scenario's outcome.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Backfill {
    pub hubspot_records: usize,
    pub salesforce_records: usize,
    /// People in both; those of them whose records differ; pairs of Salesforce records
    /// sharing an address.
    pub shared: usize,
    pub differing: usize,
    pub duplicate_pairs: usize,
    /// From the runner taking the job up until it finished, s.
    pub job_secs: f64,
    /// From the job's start until the last record was written (at least the job's time), s;
    /// NaN unless everything settled.
    pub settled_secs: f64,
    pub hubspot: CrmCost,
    pub salesforce: CrmCost,
    /// The finished job's counters.
    pub counters: BTreeMap<String, u64>,
    /// The SyncRoot process's peak memory, MB.
    pub peak_rss_mb: f64,
    /// What was found wrong (empty: every check passed).
    pub problems: Vec<String>,
}

/// Seeds `hubspot` and `salesforce` records, runs a backfill and waits until delivery has
/// settled or `settle` has passed since the job finished.
pub async fn backfill(
    bin: &Binaries,
    sb: &Sandboxes,
    hubspot: usize,
    salesforce: usize,
    settle: Duration,
) -> anyhow::Result<Backfill> {
    let pop = Population::generate(hubspot, salesforce);
    seed(sb, &pop).await?;
    let plan = Plan {
        winners: winners(sb, &pop).await?,
        pop,
    };
    let sr = start(bin, sb).await?;
    let job = run_job(&sr, sb, settle).await?;
    let (started, finished) = (time(&job, "started_at")?, time(&job, "finished_at")?);
    let job_secs = secs_between(started, finished);
    let (last_write, mut problems) = wait_settled(sb, &plan, settle).await?;
    let settled_secs = match last_write {
        Some(t) if problems.is_empty() => secs_between(started, t).max(job_secs),
        _ => f64::NAN,
    };
    problems.extend(check_job(&job, &plan.pop, hubspot + salesforce));
    problems.extend(check_syncroot(&sr, &plan.pop).await?);
    let peak_rss_mb = sr.peak_rss_mb();
    sr.stop().await;
    Ok(Backfill {
        hubspot_records: hubspot,
        salesforce_records: salesforce,
        shared: plan.pop.shared(),
        differing: plan.winners.len(),
        duplicate_pairs: plan.pop.duplicates.len(),
        job_secs,
        settled_secs,
        hubspot: plan.cost(sb, Crm::HubSpot).await?,
        salesforce: plan.cost(sb, Crm::Salesforce).await?,
        counters: serde_json::from_value(job["result"]["counters"].clone()).unwrap_or_default(),
        peak_rss_mb,
        problems,
    })
}

/// The population in both sandboxes, emptied first, their webhooks off.
async fn seed(sb: &Sandboxes, pop: &Population) -> anyhow::Result<()> {
    sb.reset().await?;
    for crm in [Crm::HubSpot, Crm::Salesforce] {
        let base = sb.base(crm);
        sb.control
            .put(base, "webhook", &json!({"url": null}))
            .await?;
        let body = pop.seed_body(crm);
        let seeded = sb
            .control
            .call(base, Method::POST, "seed", Some(body))
            .await?;
        let n = body.as_array().map_or(0, Vec::len);
        ensure!(
            seeded["created"] == n,
            "{crm:?} seeded {}",
            seeded["created"]
        );
    }
    Ok(())
}

/// SyncRoot all-in-one with the admin API, the poller off (its reads are not the backfill's)
/// and the Bulk API read the minimum counts on; the sandboxes' counters zeroed once it is up.
async fn start(bin: &Binaries, sb: &Sandboxes) -> anyhow::Result<SyncRoot> {
    let threshold = BULK_THRESHOLD.to_string();
    let bulk_page = BULK_PAGE.to_string();
    let env = [
        ("SYNCROOT_ADMIN_KEYS", ADMIN_KEY),
        ("SYNCROOT_POLL_INTERVAL_SECS", "0"),
        (
            "SYNCROOT_SALESFORCE_BULK_READ_THRESHOLD",
            threshold.as_str(),
        ),
        (
            "SYNCROOT_SALESFORCE_BULK_READ_PAGE_RECORDS",
            bulk_page.as_str(),
        ),
    ];
    let sr = SyncRoot::start(bin, sb, Mode::AllInOne, &env).await?;
    for crm in [Crm::HubSpot, Crm::Salesforce] {
        sb.control.post(sb.base(crm), "counters/reset").await?;
    }
    Ok(sr)
}

/// Asks for a backfill and follows it to its end; fails when it neither advanced nor called a
/// CRM for `settle`.
async fn run_job(sr: &SyncRoot, sb: &Sandboxes, settle: Duration) -> anyhow::Result<Value> {
    let r = sr
        .http
        .post(format!("{}/admin/jobs", sr.base))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"kind": "backfill"}))
        .send()
        .await?;
    ensure!(
        r.status() == 202,
        "POST /admin/jobs answered {}",
        r.status()
    );
    let queued: Value = r.json().await?;
    let id = queued["id"].as_str().context("a job without an id")?;
    let (mut seen, mut since, mut said) = (Value::Null, Instant::now(), Instant::now());
    loop {
        let job: Value = sr
            .http
            .get(format!("{}/admin/jobs/{id}", sr.base))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await?
            .json()
            .await?;
        if !matches!(job["status"].as_str(), Some("queued" | "running")) {
            return Ok(job);
        }
        let calls = |c: &Value| c["calls_total"].as_u64().unwrap_or(0);
        let (hs, sf) = (
            calls(&sb.counters(&sb.hubspot).await?),
            calls(&sb.counters(&sb.salesforce).await?),
        );
        let now = json!([job["progress"], hs, sf]);
        if now != seen {
            (seen, since) = (now, Instant::now());
        } else if since.elapsed() > settle {
            bail!("the backfill made no progress and no CRM call for {settle:?}: {job}");
        }
        if said.elapsed() >= PROGRESS_EVERY {
            said = Instant::now();
            let done = &job["progress"]["done"];
            let status = job["status"].as_str().unwrap_or("?");
            println!("   job {status}: {done} records done; HubSpot {hs} calls, Salesforce {sf}");
        }
        tokio::time::sleep(JOB_POLL).await;
    }
}

/// Waits until each sandbox wrote at least the records the plan needs there and its dump
/// passes every check, or `settle` has passed; answers the last record write and the problems
/// left.
async fn wait_settled(
    sb: &Sandboxes,
    plan: &Plan,
    settle: Duration,
) -> anyhow::Result<(Option<DateTime<Utc>>, Vec<String>)> {
    let crms = [Crm::HubSpot, Crm::Salesforce];
    let deadline = Instant::now() + settle;
    let mut last_dump: Option<Instant> = None;
    loop {
        let timed_out = Instant::now() >= deadline;
        let mut written = true;
        for crm in crms {
            let c = sb.counters(sb.base(crm)).await?;
            written &= c["records_written"].as_u64().unwrap_or(0) >= plan.needed(crm);
        }
        if (written && last_dump.is_none_or(|t| t.elapsed() >= DUMPS_EVERY)) || timed_out {
            last_dump = Some(Instant::now());
            let (mut last, mut problems) = (None, Vec::new());
            for crm in crms {
                let dump = sb.control.sandbox_contacts(sb.base(crm)).await?;
                let (p, t) = check_sandbox(crm, &dump, &plan.pop, &plan.winners);
                problems.extend(p);
                last = last.max(t);
            }
            if problems.is_empty() || timed_out {
                return Ok((last, problems));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn time(job: &Value, field: &str) -> anyhow::Result<DateTime<Utc>> {
    let text = job[field].as_str();
    text.and_then(|t| t.parse().ok())
        .with_context(|| format!("the job's {field} is {:?}: {job}", job[field]))
}
