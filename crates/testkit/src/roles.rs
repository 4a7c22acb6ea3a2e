//! The production roles as separate processes (`syncroot api`, `forwarder`, `delivery`, …)
//! against the CRM sandboxes running in the test: what a test needs when something is per
//! process (a process's metrics, its log file, its exported spans), which the in-process
//! [`crate::TestApp`] cannot isolate.
//!
//! Only `syncroot` must be built (`CARGO_BIN_EXE_syncroot`); the sandboxes run in the test.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::process::{Binaries, Processes};
use crate::{Control, Installation, KEY, eventually, free_port, http_client, sandbox_settings};

/// Roles running as processes of one installation, each logging to `<role>.log`.
pub struct Roles {
    processes: Processes,
    pub install: Installation,
    /// The directory of the roles' log files.
    pub logs: PathBuf,
    /// The API's base URL (when `api` is among the roles).
    pub api: String,
    /// Each worker role's probe listener (`/healthz`, `/readyz`, `/metrics`), by role.
    pub probes: BTreeMap<String, String>,
    pub hubspot: String,
    pub salesforce: String,
    /// A client of the sandboxes' control routes.
    pub control: Control,
    pub http: reqwest::Client,
    sandboxes: CancellationToken,
}

impl Roles {
    /// Starts the sandboxes (in the test), migrates, and starts `syncroot` at `syncroot` as each
    /// of `roles` with `env` added to the test installation's; waits until each is ready.
    pub async fn start(syncroot: &str, roles: &[&str], env: &[(&str, String)]) -> Self {
        let sandboxes = CancellationToken::new();
        let running = syncroot_sandbox::start(&sandbox_settings(), sandboxes.clone())
            .await
            .expect("sandboxes start");
        let api_port = free_port().expect("a free port");
        let mut install = Installation::for_tests("t");
        install.set_all([
            ("SYNCROOT_API_LISTEN", format!("127.0.0.1:{api_port}")),
            ("SYNCROOT_HUBSPOT_BASE_URL", running.hubspot_url()),
            ("SYNCROOT_SALESFORCE_LOGIN_URL", running.salesforce_url()),
        ]);
        install.set_all(env.iter().map(|(k, v)| (*k, v.clone())));
        let logs = std::env::temp_dir().join(format!("syncroot-{}", install.prefix));
        std::fs::create_dir_all(&logs).expect("a log directory");
        let bins = Binaries {
            syncroot: syncroot.into(),
            sandbox: PathBuf::new(),
        };
        let mut processes = Processes::new(bins, install.env().to_vec(), Some(logs.clone()));
        processes
            .run("migrate", &["migrate"])
            .await
            .expect("migrate");
        let mut probes = BTreeMap::new();
        for &role in roles {
            if role == "api" {
                processes.start(role, &[role]).expect("a role starts");
                continue;
            }
            // A worker's probe port is its own: started with it in its environment.
            let port = free_port().expect("a free port");
            let mut own = install.clone();
            own.set("SYNCROOT_HEALTH_LISTEN", format!("127.0.0.1:{port}"));
            processes
                .start_with(role, &[role], own.env())
                .expect("a role starts");
            probes.insert(role.to_owned(), format!("http://127.0.0.1:{port}"));
        }
        let http = http_client().build().expect("an HTTP client");
        let roles = Self {
            processes,
            install,
            logs,
            api: format!("http://127.0.0.1:{api_port}"),
            probes,
            hubspot: running.hubspot_url(),
            salesforce: running.salesforce_url(),
            control: Control::new(http.clone(), running.control_token.expose()),
            http,
            sandboxes,
        };
        let started = roles.processes.names();
        let bases = started
            .iter()
            .map(|r| roles.base(r))
            .collect::<Vec<String>>();
        for base in bases {
            eventually(&format!("{base} ready"), || async {
                let r = roles.http.get(format!("{base}/readyz")).send().await.ok()?;
                (r.status() == 200).then_some(())
            })
            .await;
        }
        roles
    }

    /// The base URL of `role`'s listener: the API's, or a worker's probe listener.
    pub fn base(&self, role: &str) -> String {
        if role == "api" {
            self.api.clone()
        } else {
            self.probes[role].clone()
        }
    }

    /// `path` on the API.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// Creates `body` through the API (a `202` expected); returns the contact's id.
    pub async fn create(&self, body: &Value) -> String {
        let r = self
            .http
            .post(self.url("/contacts"))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .expect("the API answers");
        assert_eq!(r.status(), 202, "create");
        r.json::<Value>().await.expect("a JSON body")["id"]
            .as_str()
            .expect("an id")
            .to_owned()
    }

    /// The contact as the API shows it, if it answers with one.
    pub async fn contact(&self, id: &str) -> Option<Value> {
        let r = self
            .http
            .get(self.url(&format!("/contacts/{id}")))
            .bearer_auth(KEY)
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// Waits until the contact's state in `crm` is `state`.
    pub async fn wait_state(&self, id: &str, crm: &str, state: &str) {
        eventually(&format!("{crm} state of {id} to be {state}"), || async {
            let c = self.contact(id).await?;
            (c["sync"][crm]["state"] == state).then_some(())
        })
        .await;
    }

    /// The lines of `<role>.log`.
    pub fn log(&self, role: &str) -> Vec<String> {
        let text = std::fs::read_to_string(self.logs.join(format!("{role}.log")))
            .unwrap_or_else(|e| panic!("{role}.log: {e}"));
        text.lines().map(str::to_owned).collect()
    }

    /// SIGKILL to `role`, as a crash or an evicted pod would end it.
    pub async fn kill(&mut self, role: &str) {
        self.processes.kill(role).await;
    }

    /// Starts `role` again (a new process, as a replacement pod would be).
    pub fn restart(&mut self, role: &str) {
        self.processes.restart(role).expect("a role restarts");
    }

    /// Stops the roles as an operator would (SIGTERM), so they flush logs and traces.
    pub async fn stop(&mut self) {
        self.processes.stop(Duration::from_secs(15)).await;
    }

    /// Stops everything and drops the test's database, queues and log files.
    pub async fn cleanup(mut self) {
        self.stop().await;
        self.sandboxes.cancel();
        self.install.cleanup().await;
        let _ = std::fs::remove_dir_all(&self.logs);
    }
}
