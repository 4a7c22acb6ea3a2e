//! The processes a benchmark run starts and stops: the CRM sandboxes and SyncRoot.

mod backfill;
mod backfill_checks;
mod backfill_plan;
mod bursts;
mod delivered;
mod population;
mod record;
mod report;
mod scenarios;
mod two_way;
mod verdict;

pub use backfill::*;
pub use backfill_checks::*;
pub use backfill_plan::*;
pub use bursts::*;
pub use delivered::*;
pub use population::*;
pub use record::*;
pub use report::*;
pub use scenarios::*;
pub use two_way::*;
pub use verdict::*;

use std::time::Duration;

use anyhow::bail;
use serde_json::{Value, json};
use syncroot_testkit::holdings::Crm;
pub use syncroot_testkit::process::Binaries;
use syncroot_testkit::process::{self, Processes};
pub use syncroot_testkit::{AMQP, KEY};
use syncroot_testkit::{Control, Installation, free_port};
use tokio::process::Child;

/// Knobs, from the environment (`BENCH_RUNS=5 make bench`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Opts {
    pub runs: usize,
    pub seconds: u64,
    pub burst: usize,
    pub light_rate: u64,
    pub light_seconds: u64,
    pub quota_backlog: usize,
    /// How long a scenario waits, after its last create was accepted, for the sandboxes to
    /// hold every contact; what is not there by then is missing (`BENCH_SETTLE_SECONDS`).
    pub settle_seconds: u64,
    /// Measure only the accept rate (`BENCH_ONLY=accept`).
    pub only_accept: bool,
    /// Measure only light-load latency (`BENCH_ONLY=light`).
    pub only_light: bool,
    /// Measure only the burst, batching on (`BENCH_ONLY=burst`).
    pub only_burst: bool,
    /// Measure only two-way sync (`BENCH_ONLY=two-way`).
    pub only_two_way: bool,
    /// Measure only the scale-out of delivery (`BENCH_ONLY=scale-out`).
    pub only_scale_out: bool,
    /// The backlog the scale-out scenario delivers (`BENCH_SCALE_BACKLOG`).
    pub scale_backlog: usize,
    /// Measure only the backfill (`BENCH_ONLY=backfill`).
    pub only_backfill: bool,
    /// Records the backfill scenario seeds into HubSpot and Salesforce
    /// (`BENCH_BACKFILL_HUBSPOT`, `BENCH_BACKFILL_SALESFORCE`).
    pub backfill_hubspot: usize,
    pub backfill_salesforce: usize,
    /// Print the verdicts but exit 0 when goals are missed (`BENCH_REPORT_ONLY=1`).
    pub report_only: bool,
    /// Append the results to docs/benchmarks.md (`BENCH_RECORD=1`).
    pub record: bool,
}

impl Opts {
    /// How long a scenario waits for the sandboxes to hold what it sent.
    pub fn settle(&self) -> Duration {
        Duration::from_secs(self.settle_seconds)
    }

    /// No `BENCH_ONLY`: every scenario runs.
    pub fn all(&self) -> bool {
        !(self.only_accept
            || self.only_light
            || self.only_burst
            || self.only_two_way
            || self.only_scale_out
            || self.only_backfill)
    }

    pub fn from_env() -> Self {
        let get = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        Self {
            runs: get("BENCH_RUNS", 3) as usize,
            seconds: get("BENCH_SECONDS", 5),
            burst: get("BENCH_BURST", 10_000) as usize,
            light_rate: get("BENCH_LIGHT_RATE", 20),
            light_seconds: get("BENCH_LIGHT_SECONDS", 10),
            quota_backlog: get("BENCH_QUOTA_BACKLOG", 30_000) as usize,
            settle_seconds: get("BENCH_SETTLE_SECONDS", 120),
            only_accept: std::env::var("BENCH_ONLY").is_ok_and(|v| v == "accept"),
            only_light: std::env::var("BENCH_ONLY").is_ok_and(|v| v == "light"),
            only_burst: std::env::var("BENCH_ONLY").is_ok_and(|v| v == "burst"),
            only_two_way: std::env::var("BENCH_ONLY").is_ok_and(|v| v == "two-way"),
            only_scale_out: std::env::var("BENCH_ONLY").is_ok_and(|v| v == "scale-out"),
            scale_backlog: get("BENCH_SCALE_BACKLOG", 6_000) as usize,
            only_backfill: std::env::var("BENCH_ONLY").is_ok_and(|v| v == "backfill"),
            backfill_hubspot: get("BENCH_BACKFILL_HUBSPOT", 50_000) as usize,
            backfill_salesforce: get("BENCH_BACKFILL_SALESFORCE", 30_000) as usize,
            report_only: get("BENCH_REPORT_ONLY", 0) == 1,
            record: get("BENCH_RECORD", 0) == 1,
        }
    }
}

/// `syncroot-sandbox` in its own process, so its memory is not SyncRoot's.
pub struct Sandboxes {
    child: Child,
    pub hubspot: String,
    pub salesforce: String,
    pub control: Control,
}

impl Sandboxes {
    pub async fn start(bins: &Binaries) -> anyhow::Result<Self> {
        let env = [
            ("SANDBOX_HUBSPOT_LISTEN", "127.0.0.1:0"),
            ("SANDBOX_SALESFORCE_LISTEN", "127.0.0.1:0"),
            ("SANDBOX_LOG", "warn"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let (child, addresses) = bins.start_sandbox(&env).await?;
        let s = Self {
            child,
            hubspot: addresses.hubspot,
            salesforce: addresses.salesforce,
            control: Control::new(reqwest::Client::new(), addresses.control_token),
        };
        s.set_limits(1_000_000).await?;
        Ok(s)
    }

    /// HubSpot's rolling 10-second allowance; daily allowances out of the way.
    pub async fn set_limits(&self, hubspot_burst: u32) -> anyhow::Result<()> {
        let hs = json!({"burst_limit": hubspot_burst, "daily_limit": 2_000_000_000u64});
        self.control.put(&self.hubspot, "limits", &hs).await?;
        let sf = json!({"daily_limit": 2_000_000_000u64, "used": 0});
        self.control.put(&self.salesforce, "limits", &sf).await?;
        Ok(())
    }

    /// Empties both sandboxes and their counters; generous limits.
    /// Adds `ms` to every API call of both sandboxes (0: none).
    pub async fn set_latency(&self, ms: u64) -> anyhow::Result<()> {
        for base in [&self.hubspot, &self.salesforce] {
            self.control
                .put(base, "faults", &json!({"latency_ms": ms}))
                .await?;
        }
        Ok(())
    }

    pub async fn reset(&self) -> anyhow::Result<()> {
        for base in [&self.hubspot, &self.salesforce] {
            self.control.reset(base).await?;
        }
        self.set_limits(1_000_000).await
    }

    /// The base URL of `crm`'s sandbox.
    pub fn base(&self, crm: Crm) -> &str {
        match crm {
            Crm::HubSpot => &self.hubspot,
            Crm::Salesforce => &self.salesforce,
        }
    }

    pub async fn counters(&self, base: &str) -> anyhow::Result<Value> {
        self.control.counters(base).await
    }

    pub async fn stop(mut self) {
        process::stop(&mut self.child, STOP_GRACE).await;
    }
}

/// How long a process may take to shut down after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(40);

/// How SyncRoot runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One process: `syncroot all`.
    AllInOne,
    /// `syncroot api` and `syncroot forwarder`; delivery started later with
    /// [`SyncRoot::start_delivery`].
    Roles,
    /// `syncroot api` alone: accepted changes wait in the queues.
    ApiOnly,
}

/// A SyncRoot installation under test: its processes, database and queue prefix.
pub struct SyncRoot {
    processes: Processes,
    install: Installation,
    pub base: String,
    pub http: reqwest::Client,
}

impl SyncRoot {
    pub async fn start(
        bins: &Binaries,
        sb: &Sandboxes,
        mode: Mode,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut install = Installation::new("bench");
        install.set_all([
            ("SYNCROOT_API_LISTEN", format!("127.0.0.1:{port}")),
            ("SYNCROOT_HUBSPOT_BASE_URL", sb.hubspot.clone()),
            ("SYNCROOT_SALESFORCE_LOGIN_URL", sb.salesforce.clone()),
            ("SYNCROOT_HUBSPOT_RATE_LIMIT", "100000".to_owned()),
            // The bench's one key sends everything: its own limits (500/s by default, a burst
            // of 1,000) would be measured instead of SyncRoot, and would refuse a burst.
            ("SYNCROOT_API_KEY_RATE_PER_SEC", "1000000".to_owned()),
            ("SYNCROOT_API_KEY_BURST", "1000000".to_owned()),
        ]);
        install.set_all(extra.iter().copied());
        let mut sr = Self {
            processes: Processes::new(bins.clone(), install.env().to_vec(), None),
            install,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(128)
                .build()?,
        };
        match mode {
            Mode::AllInOne => sr.processes.start("all", &["all"])?,
            Mode::Roles | Mode::ApiOnly => {
                sr.processes.run("migrate", &["migrate"]).await?;
                sr.processes.start("api", &["api"])?;
                if mode == Mode::Roles {
                    sr.processes.start("forwarder", &["forwarder"])?;
                }
            }
        }
        sr.wait_ready().await?;
        Ok(sr)
    }

    /// Waits until the forwarder has applied `n` contacts, then stops it (in [`Mode::Roles`]).
    /// Once it has exited, every delivery task it owed is queued, however many a message
    /// carries: it hands a change's tasks on before acknowledging the change, and finishes
    /// the changes in hand when stopped.
    pub async fn forward_then_stop_forwarder(&mut self, n: usize) -> anyhow::Result<()> {
        let db = sqlx::PgPool::connect(&self.install.db_url()).await?;
        let mut applied = 0;
        for _ in 0..3000 {
            applied = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM contacts")
                .fetch_one(&db)
                .await? as usize;
            if applied >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        db.close().await;
        anyhow::ensure!(
            applied >= n,
            "the forwarder applied {applied} of {n} contacts"
        );
        self.processes.stop_one("forwarder", STOP_GRACE).await;
        Ok(())
    }

    /// Starts `syncroot delivery` (in [`Mode::Roles`]).
    pub fn start_delivery(&mut self) -> anyhow::Result<()> {
        self.processes.start("delivery", &["delivery"])
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        for _ in 0..300 {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await
                && r.status() == 200
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("SyncRoot did not become ready")
    }

    pub fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/contacts", self.base))
            .bearer_auth(KEY)
            .json(body)
    }

    #[allow(dead_code)]
    pub fn get(&self, id: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}/contacts/{id}", self.base))
            .bearer_auth(KEY)
    }

    /// Peak resident memory of the first SyncRoot process (`all` or `api`; VmHWM), in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        let Some(pid) = self
            .processes
            .pid("all")
            .or_else(|| self.processes.pid("api"))
        else {
            return f64::NAN;
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    /// Stops every process (SIGTERM, as an operator would), then drops the database and queues.
    pub async fn stop(mut self) {
        self.processes.stop(STOP_GRACE).await;
        self.install.cleanup().await;
    }
}
