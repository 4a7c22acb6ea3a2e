//! SyncRoot as separate processes: the CRM sandboxes, the API, two forwarders, the delivery
//! worker and the dead-letter worker, each started from the built binary with its own
//! environment and log file, and killable with SIGKILL. Starting, killing and stopping are the
//! testkit's ([`syncroot_testkit::process`]); this is the chaos run's cast and its watch for
//! processes that exit on their own.

use std::path::PathBuf;
use std::time::Duration;

use syncroot_testkit::Control;
use syncroot_testkit::process::{Binaries, Processes};

/// The processes, by name; `sandbox` is the `syncroot-sandbox` binary, the others are
/// `syncroot` subcommands: the name up to the first `-<digit>`.
pub const PROCESSES: [&str; 6] = [
    "sandbox",
    "api",
    "forwarder-1",
    "forwarder-2",
    "delivery",
    "dlq-worker",
];

pub const FORWARDERS: [&str; 2] = ["forwarder-1", "forwarder-2"];

pub struct Cluster {
    processes: Processes,
    /// Processes that exited without being killed, with their exit status.
    pub unexpected_exits: Vec<String>,
    pub api: String,
    pub hubspot: String,
    pub salesforce: String,
    /// The sandboxes' control token (`SANDBOX_CONTROL_TOKEN` of the run).
    pub control_token: String,
}

fn subcommand(name: &str) -> &str {
    name.trim_end_matches(|c: char| c.is_ascii_digit())
        .trim_end_matches('-')
}

impl Cluster {
    /// The configuration every process shares; `env` carries the run's own settings.
    pub fn new(env: Vec<(String, String)>, logs: PathBuf) -> anyhow::Result<Self> {
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        // `make chaos` builds `syncroot-sandbox` beside `syncroot` (cargo build -p syncroot-sandbox).
        let bins = Binaries::locate(env!("CARGO_BIN_EXE_syncroot"))?;
        Ok(Self {
            api: format!("http://{}", get("SYNCROOT_API_LISTEN")),
            hubspot: format!("http://{}", get("SANDBOX_HUBSPOT_LISTEN")),
            salesforce: format!("http://{}", get("SANDBOX_SALESFORCE_LISTEN")),
            control_token: get("SANDBOX_CONTROL_TOKEN"),
            processes: Processes::new(bins, env, Some(logs)),
            unexpected_exits: Vec::new(),
        })
    }

    /// Runs `syncroot migrate` (creates the database).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.processes.run("migrate", &["migrate"]).await
    }

    /// Starts (or restarts) one process.
    pub fn start(&mut self, name: &'static str) {
        self.processes
            .start(name, &[subcommand(name)])
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    pub fn start_all(&mut self) {
        for p in PROCESSES {
            self.start(p);
        }
    }

    /// SIGKILL: no shutdown, no acks, no flush.
    pub async fn kill(&mut self, name: &'static str) {
        self.processes.kill(name).await;
    }

    /// Records and restarts any process that exited on its own: a worker must ride out a
    /// broker or database restart, not exit.
    pub fn check(&mut self, elapsed: Duration) {
        for (name, status) in self.processes.exited() {
            self.unexpected_exits
                .push(format!("{name} exited on its own at {elapsed:?}: {status}"));
            self.processes
                .restart(&name)
                .unwrap_or_else(|e| panic!("{e:#}"));
        }
    }

    /// Waits until the API says it is ready (Postgres and RabbitMQ reachable).
    pub async fn wait_ready(&self, http: &reqwest::Client, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            let ok = async {
                let api = http.get(format!("{}/readyz", self.api)).send().await.ok()?;
                let sb = Control::new(http.clone(), &self.control_token)
                    .request(&self.salesforce, reqwest::Method::GET, "state")
                    .send()
                    .await
                    .ok()?;
                (api.status() == 200 && sb.status() == 200).then_some(())
            };
            if ok.await.is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// Stops every process (SIGTERM, then SIGKILL after `grace`).
    pub async fn stop(&mut self, grace: Duration) {
        self.processes.stop(grace).await;
    }
}
