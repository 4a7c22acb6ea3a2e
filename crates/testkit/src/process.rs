//! SyncRoot and the sandboxes as child processes of a harness: `syncroot <subcommand>` and
//! `syncroot-sandbox`, each with an environment and a log file, killed with SIGKILL, restarted,
//! or stopped as an operator would (SIGTERM, then SIGKILL after a grace period).
//!
//! Not the in-process application: that is [`crate::TestApp`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The built binaries; `syncroot-sandbox` is always the sibling of `syncroot`.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub syncroot: PathBuf,
    pub sandbox: PathBuf,
}

impl Binaries {
    /// Locates both binaries beside `syncroot`; errors, saying how to build them, when one is
    /// missing.
    pub fn locate(syncroot: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let syncroot = syncroot.into();
        let sandbox = syncroot.with_file_name("syncroot-sandbox");
        for bin in [&syncroot, &sandbox] {
            anyhow::ensure!(
                bin.exists(),
                "{} is missing: build it first (cargo build --workspace --bins, with --release \
                 for the benchmark)",
                bin.display()
            );
        }
        Ok(Self { syncroot, sandbox })
    }

    /// `syncroot <args>` (or `syncroot-sandbox` when `args` is `["sandbox"]`) with only `env`
    /// among the `SYNCROOT_*` variables: an unknown one is a configuration error. Output goes
    /// to `log` (appended), or to the harness's own when there is none.
    pub fn command(
        &self,
        args: &[&str],
        env: &[(String, String)],
        log: Option<&Path>,
    ) -> anyhow::Result<Command> {
        let mut cmd = if args == ["sandbox"] {
            Command::new(&self.sandbox)
        } else {
            let mut c = Command::new(&self.syncroot);
            c.args(args);
            c
        };
        for (k, _) in std::env::vars() {
            if k.starts_with("SYNCROOT_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        if let Some(path) = log {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("log file {}", path.display()))?;
            cmd.stdout(file.try_clone()?).stderr(file);
        }
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        Ok(cmd)
    }

    /// Runs `syncroot <args>` to completion (`migrate`); errors unless it succeeds.
    pub async fn run(
        &self,
        args: &[&str],
        env: &[(String, String)],
        log: Option<&Path>,
    ) -> anyhow::Result<()> {
        let status = self.command(args, env, log)?.status().await?;
        anyhow::ensure!(status.success(), "syncroot {args:?} failed: {status}");
        Ok(())
    }

    /// Starts `syncroot-sandbox` and reads the addresses and the control token it prints
    /// ("HubSpot sandbox: http://…", "Sandbox control token: …"), so it may listen on port 0
    /// and generate its token; the rest of its output is discarded.
    pub async fn start_sandbox(
        &self,
        env: &[(String, String)],
    ) -> anyhow::Result<(Child, SandboxAddresses)> {
        let mut child = self
            .command(&["sandbox"], env, None)?
            .stderr(Stdio::piped())
            .spawn()
            .context("start syncroot-sandbox")?;
        let mut lines = BufReader::new(child.stderr.take().context("sandbox stderr")?).lines();
        let (mut hubspot, mut salesforce, mut control_token) = (None, None, None);
        while hubspot.is_none() || salesforce.is_none() || control_token.is_none() {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await??
                .context("sandbox exited")?;
            if let Some(u) = line.strip_prefix("HubSpot sandbox:") {
                hubspot = Some(u.trim().to_owned());
            } else if let Some(u) = line.strip_prefix("Salesforce sandbox:") {
                salesforce = Some(u.trim().to_owned());
            } else if let Some(t) = line.strip_prefix("Sandbox control token:") {
                control_token = Some(t.trim().to_owned());
            }
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let addresses = SandboxAddresses {
            hubspot: hubspot.unwrap_or_default(),
            salesforce: salesforce.unwrap_or_default(),
            control_token: control_token.unwrap_or_default(),
        };
        Ok((child, addresses))
    }
}

/// The base URLs a running `syncroot-sandbox` serves, and its control token.
#[derive(Clone, Debug)]
pub struct SandboxAddresses {
    pub hubspot: String,
    pub salesforce: String,
    pub control_token: String,
}

/// SIGKILL: no shutdown, no acks, no flush.
pub async fn kill(child: &mut Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Sends SIGTERM, as an operator would.
fn signal_term(child: &Child) {
    if let Some(pid) = child.id() {
        // `kill(1)` rather than a signal binding: the workspace forbids unsafe code.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
}

/// SIGTERM, then SIGKILL if the process has not exited within `grace`.
pub async fn stop(child: &mut Child, grace: Duration) {
    signal_term(child);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        kill(child).await;
    }
}

/// Named processes of one installation, each restartable under its name with the same
/// arguments and log file.
pub struct Processes {
    bins: Binaries,
    env: Vec<(String, String)>,
    /// Where `<name>.log` files go; none: the harness's own output.
    logs: Option<PathBuf>,
    /// The arguments each name was last started with, running or not.
    args: BTreeMap<String, Vec<String>>,
    /// A name's own environment, where it was started with one ([`Processes::start_with`]).
    envs: BTreeMap<String, Vec<(String, String)>>,
    /// The processes running (or exited on their own), by name; a killed one is removed.
    children: BTreeMap<String, Child>,
}

impl Processes {
    pub fn new(bins: Binaries, env: Vec<(String, String)>, logs: Option<PathBuf>) -> Self {
        Self {
            bins,
            env,
            logs,
            args: BTreeMap::new(),
            envs: BTreeMap::new(),
            children: BTreeMap::new(),
        }
    }

    pub fn bins(&self) -> &Binaries {
        &self.bins
    }

    fn log(&self, name: &str) -> Option<PathBuf> {
        self.logs.as_ref().map(|d| d.join(format!("{name}.log")))
    }

    /// Runs `syncroot <args>` to completion, logging as `name`.
    pub async fn run(&self, name: &str, args: &[&str]) -> anyhow::Result<()> {
        self.bins
            .run(args, &self.env, self.log(name).as_deref())
            .await
    }

    /// Starts `syncroot <args>` (or the sandbox, `["sandbox"]`) as `name`, replacing a process
    /// of that name.
    pub fn start(&mut self, name: &str, args: &[&str]) -> anyhow::Result<()> {
        let env = self.envs.get(name).unwrap_or(&self.env).clone();
        self.spawn(name, args, &env)
    }

    /// [`Processes::start`] with an environment of `name`'s own instead of the shared one (a
    /// worker's own probe port, say), kept for its restarts.
    pub fn start_with(
        &mut self,
        name: &str,
        args: &[&str],
        env: &[(String, String)],
    ) -> anyhow::Result<()> {
        self.envs.insert(name.to_owned(), env.to_vec());
        self.spawn(name, args, env)
    }

    fn spawn(&mut self, name: &str, args: &[&str], env: &[(String, String)]) -> anyhow::Result<()> {
        let child = self
            .bins
            .command(args, env, self.log(name).as_deref())?
            .spawn()
            .with_context(|| format!("start {name}"))?;
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        self.args.insert(name.to_owned(), args);
        self.children.insert(name.to_owned(), child);
        Ok(())
    }

    /// The names started so far, running or not.
    pub fn names(&self) -> Vec<String> {
        self.args.keys().cloned().collect()
    }

    /// Starts `name` again with the arguments it was last started with.
    pub fn restart(&mut self, name: &str) -> anyhow::Result<()> {
        let args = self
            .args
            .get(name)
            .cloned()
            .with_context(|| format!("{name} was never started"))?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.start(name, &args)
    }

    /// SIGKILL to `name`; [`Processes::restart`] brings it back.
    pub async fn kill(&mut self, name: &str) {
        if let Some(mut child) = self.children.remove(name) {
            kill(&mut child).await;
        }
    }

    /// Processes that have exited since they were started, with their exit status.
    pub fn exited(&mut self) -> Vec<(String, std::process::ExitStatus)> {
        self.children
            .iter_mut()
            .filter_map(|(name, child)| child.try_wait().ok().flatten().map(|s| (name.clone(), s)))
            .collect()
    }

    /// The process id of `name`, while it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children.get(name).and_then(Child::id)
    }

    /// Stops `name` as [`Processes::stop`] stops every process.
    pub async fn stop_one(&mut self, name: &str, grace: Duration) {
        if let Some(mut child) = self.children.remove(name) {
            stop(&mut child, grace).await;
        }
    }

    /// Stops every process: SIGTERM to all, then SIGKILL to any still running after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        for child in self.children.values() {
            signal_term(child);
        }
        for (_, mut child) in std::mem::take(&mut self.children).into_iter().rev() {
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                kill(&mut child).await;
            }
        }
    }
}
