//! SyncRoot as separate processes: the CRM sandboxes, the API, two forwarders, the delivery
//! worker and the dead-letter worker, each started from the built binary with its own
//! environment and log file, and killable with SIGKILL.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

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
    bin: PathBuf,
    env: Vec<(String, String)>,
    logs: PathBuf,
    children: BTreeMap<&'static str, Child>,
    /// Processes that exited without being killed, with their exit status.
    pub unexpected_exits: Vec<String>,
    pub api: String,
    pub hubspot: String,
    pub salesforce: String,
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn subcommand(name: &str) -> &str {
    name.trim_end_matches(|c: char| c.is_ascii_digit())
        .trim_end_matches('-')
}

impl Cluster {
    /// The configuration every process shares; `env` carries the run's own settings.
    pub fn new(env: Vec<(String, String)>, logs: PathBuf) -> Self {
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        Self {
            bin: PathBuf::from(env!("CARGO_BIN_EXE_syncroot")),
            api: format!("http://{}", get("SYNCROOT_API_LISTEN")),
            hubspot: format!("http://{}", get("SANDBOX_HUBSPOT_LISTEN")),
            salesforce: format!("http://{}", get("SANDBOX_SALESFORCE_LISTEN")),
            env,
            logs,
            children: BTreeMap::new(),
            unexpected_exits: Vec::new(),
        }
    }

    fn command(&self, args: &[&str], log_name: &str) -> Command {
        let mut cmd = if args == ["sandbox"] {
            // Built beside `syncroot` by `make chaos` (cargo build -p syncroot-sandbox).
            Command::new(self.bin.with_file_name("syncroot-sandbox"))
        } else {
            let mut c = Command::new(&self.bin);
            c.args(args);
            c
        };
        // Only this run's settings: an unknown SYNCROOT_* variable is a configuration error.
        for (k, _) in std::env::vars() {
            if k.starts_with("SYNCROOT_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{log_name}.log")))
            .expect("log file");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .kill_on_drop(true);
        cmd
    }

    /// Runs `syncroot migrate` (creates the database).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let status = self.command(&["migrate"], "migrate").status().await?;
        anyhow::ensure!(status.success(), "syncroot migrate failed: {status}");
        Ok(())
    }

    /// Starts (or restarts) one process.
    pub fn start(&mut self, name: &'static str) {
        let child = self
            .command(&[subcommand(name)], name)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        self.children.insert(name, child);
    }

    pub fn start_all(&mut self) {
        for p in PROCESSES {
            self.start(p);
        }
    }

    /// SIGKILL: no shutdown, no acks, no flush.
    pub async fn kill(&mut self, name: &'static str) {
        if let Some(mut child) = self.children.remove(name) {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Records and restarts any process that exited on its own: a worker must ride out a
    /// broker or database restart, not exit.
    pub fn check(&mut self, elapsed: Duration) {
        let mut exited = Vec::new();
        for (name, child) in self.children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                exited.push((*name, status));
            }
        }
        for (name, status) in exited {
            self.unexpected_exits
                .push(format!("{name} exited on its own at {elapsed:?}: {status}"));
            self.start(name);
        }
    }

    /// Waits until the API says it is ready (Postgres and RabbitMQ reachable).
    pub async fn wait_ready(&self, http: &reqwest::Client, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            let ok = async {
                let api = http.get(format!("{}/readyz", self.api)).send().await.ok()?;
                let sb = http
                    .get(format!("{}/__sandbox/state", self.salesforce))
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
        for child in self.children.values() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
        }
        for (_, mut child) in std::mem::take(&mut self.children) {
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}
