//! The processes a benchmark run starts and stops: the CRM sandboxes and SyncRoot.

mod report;
mod scenarios;

pub use report::*;
pub use scenarios::*;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const KEY: &str = "bench-key-0123456789abcdef";
pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Knobs, from the environment (`BENCH_RUNS=5 make bench`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Opts {
    pub runs: usize,
    pub seconds: u64,
    pub burst: usize,
    pub light_rate: u64,
    pub light_seconds: u64,
    pub quota_backlog: usize,
    /// Measure only the accept rate (`BENCH_ONLY=accept`).
    pub only_accept: bool,
}

impl Opts {
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
            only_accept: std::env::var("BENCH_ONLY").is_ok_and(|v| v == "accept"),
        }
    }
}

/// `syncroot-sandbox` in its own process, so its memory is not SyncRoot's.
pub struct Sandboxes {
    child: Child,
    pub hubspot: String,
    pub salesforce: String,
    pub http: reqwest::Client,
}

impl Sandboxes {
    pub async fn start(bin: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(bin.with_file_name("syncroot-sandbox"))
            .env("SANDBOX_HUBSPOT_LISTEN", "127.0.0.1:0")
            .env("SANDBOX_SALESFORCE_LISTEN", "127.0.0.1:0")
            .env("SANDBOX_LOG", "warn")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stderr.take().context("sandbox stderr")?).lines();
        let (mut hubspot, mut salesforce) = (None, None);
        while hubspot.is_none() || salesforce.is_none() {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await??
                .context("sandbox exited")?;
            if let Some(u) = line.strip_prefix("HubSpot sandbox:") {
                hubspot = Some(u.trim().to_owned());
            } else if let Some(u) = line.strip_prefix("Salesforce sandbox:") {
                salesforce = Some(u.trim().to_owned());
            }
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let s = Self {
            child,
            hubspot: hubspot.unwrap_or_default(),
            salesforce: salesforce.unwrap_or_default(),
            http: reqwest::Client::new(),
        };
        s.set_limits(1_000_000).await?;
        Ok(s)
    }

    pub async fn control(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{base}/__sandbox/{path}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await?;
        if !r.status().is_success() {
            bail!("sandbox control {path}: {}", r.status());
        }
        Ok(r.json().await.unwrap_or(Value::Null))
    }

    /// HubSpot's rolling 10-second allowance; daily allowances out of the way.
    pub async fn set_limits(&self, hubspot_burst: u32) -> anyhow::Result<()> {
        let hs = json!({"burst_limit": hubspot_burst, "daily_limit": 2_000_000_000u64});
        self.control(&self.hubspot, reqwest::Method::PUT, "limits", Some(hs))
            .await?;
        let sf = json!({"daily_limit": 2_000_000_000u64, "used": 0});
        self.control(&self.salesforce, reqwest::Method::PUT, "limits", Some(sf))
            .await?;
        Ok(())
    }

    /// Empties both sandboxes and their counters; generous limits.
    pub async fn reset(&self) -> anyhow::Result<()> {
        for base in [&self.hubspot, &self.salesforce] {
            self.control(base, reqwest::Method::POST, "reset", None)
                .await?;
            self.control(base, reqwest::Method::POST, "counters/reset", None)
                .await?;
        }
        self.set_limits(1_000_000).await
    }

    pub async fn counters(&self, base: &str) -> anyhow::Result<Value> {
        self.control(base, reqwest::Method::GET, "counters", None)
            .await
    }

    pub async fn stop(mut self) {
        terminate(&mut self.child).await;
    }
}

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
    children: Vec<Child>,
    env: Vec<(String, String)>,
    bin: std::path::PathBuf,
    pub base: String,
    pub http: reqwest::Client,
    db_name: String,
    prefix: String,
}

impl SyncRoot {
    pub async fn start(
        bin: &Path,
        sb: &Sandboxes,
        mode: Mode,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let tag = format!("{}{}", std::process::id(), rand_suffix());
        let port = free_port()?;
        let db_name = format!("syncroot_bench_{tag}");
        let prefix = format!("bench{tag}");
        let mut env: Vec<(String, String)> = [
            ("SYNCROOT_API_LISTEN", format!("127.0.0.1:{port}")),
            ("SYNCROOT_API_KEYS", KEY.to_owned()),
            (
                "SYNCROOT_DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:5432/{db_name}"),
            ),
            ("SYNCROOT_QUEUE_PREFIX", prefix.clone()),
            ("SYNCROOT_HUBSPOT_BASE_URL", sb.hubspot.clone()),
            ("SYNCROOT_SALESFORCE_LOGIN_URL", sb.salesforce.clone()),
            ("SYNCROOT_HUBSPOT_RATE_LIMIT", "100000".to_owned()),
            ("SYNCROOT_LOG", "warn".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in extra {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        }
        let mut sr = Self {
            children: Vec::new(),
            env,
            bin: bin.to_path_buf(),
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(128)
                .build()?,
            db_name,
            prefix,
        };
        match mode {
            Mode::AllInOne => sr.spawn(&["all"])?,
            Mode::Roles | Mode::ApiOnly => {
                let status = Command::new(&sr.bin)
                    .arg("migrate")
                    .envs(sr.env.clone())
                    .status()
                    .await?;
                anyhow::ensure!(status.success(), "syncroot migrate failed");
                sr.spawn(&["api"])?;
                if mode == Mode::Roles {
                    sr.spawn(&["forwarder"])?;
                }
            }
        }
        sr.wait_ready().await?;
        Ok(sr)
    }

    fn spawn(&mut self, args: &[&str]) -> anyhow::Result<()> {
        let child = Command::new(&self.bin)
            .args(args)
            .envs(self.env.clone())
            .kill_on_drop(true)
            .spawn()?;
        self.children.push(child);
        Ok(())
    }

    /// Starts `syncroot delivery` (in [`Mode::Roles`]).
    pub fn start_delivery(&mut self) -> anyhow::Result<()> {
        self.spawn(&["delivery"])
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

    /// The first page of contacts (newest last), with their sync state.
    pub fn list(&self, limit: usize) -> reqwest::RequestBuilder {
        // The newest contacts are on the last page; the light-load run has under 200.
        self.http
            .get(format!("{}/contacts?limit={limit}", self.base))
            .bearer_auth(KEY)
    }

    #[allow(dead_code)]
    pub fn get(&self, id: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}/contacts/{id}", self.base))
            .bearer_auth(KEY)
    }

    pub fn queue(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// Peak resident memory of the first SyncRoot process (VmHWM), in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        let Some(pid) = self.children.first().and_then(Child::id) else {
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
        for child in self.children.iter_mut().rev() {
            terminate(child).await;
        }
        let _ = Command::new("psql")
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
            ])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        if let Ok(conn) = lapin::Connection::connect(AMQP, Default::default()).await
            && let Ok(ch) = conn.create_channel().await
        {
            let mut names: Vec<String> = (0..8)
                .map(|s| self.queue(&format!("contacts.{s}")))
                .collect();
            names.extend(
                ["deliver.hubspot", "deliver.salesforce", "dead-letter"].map(|q| self.queue(q)),
            );
            for q in names {
                let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
            }
            let _ = conn.close(200, "bye".into()).await;
        }
    }
}

async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(Duration::from_secs(40), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn rand_suffix() -> String {
    use rand::Rng as _;
    format!("{:06x}", rand::rng().random::<u32>() & 0xff_ffff)
}
