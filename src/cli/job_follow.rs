//! Following an admin job from the terminal (`syncroot drift`, `syncroot backfill`): asks for
//! it through `POST /admin/jobs`, shows its progress on one line of stderr until it ends, then
//! prints its result (JSON) on stdout; an error when it failed or was cancelled.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use reqwest::Method;
use serde_json::Value;

use super::dlq_client::Client;
use crate::config::Config;

/// Which SyncRoot to ask, and with which key.
#[derive(Debug, Args)]
pub struct Target {
    /// Base URL of the SyncRoot API [default: http://<api_listen>].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Admin key [default: the first of admin_keys (SYNCROOT_ADMIN_KEYS)].
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
}

impl Target {
    pub fn client(self, cfg: &Config) -> anyhow::Result<Client> {
        Client::new(cfg, self.url, self.key)
    }
}

/// How often the job is read while it runs.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// Starts the job `request` asks for and follows it to its end; `what` names it in messages.
pub async fn run(client: &Client, request: &Value, what: &str) -> anyhow::Result<()> {
    let job = client
        .send(Method::POST, "/admin/jobs", &[], Some(request))
        .await?;
    let id = job["id"]
        .as_str()
        .context("the API answered a job without an id")?
        .to_owned();
    eprintln!("{what} {id} queued");
    let path = format!("/admin/jobs/{id}");
    let job = loop {
        let job = client.call(Method::GET, &path, &[]).await?;
        let status = job["status"].as_str().unwrap_or("").to_owned();
        eprint!("\r\x1b[2K{}", progress_line(&job));
        let _ = std::io::stderr().flush();
        if !matches!(status.as_str(), "queued" | "running") {
            eprintln!();
            break job;
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    };
    match job["status"].as_str() {
        Some("succeeded") => {
            println!("{}", serde_json::to_string_pretty(&job["result"])?);
            Ok(())
        }
        Some(status) => bail!(
            "{what} {id} {status}{}",
            job["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        None => bail!("{what} {id}: the API answered a job without a status"),
    }
}

/// `running  120/400  checked 118 same 110 differing 8 … 35.2/s  eta 8s`
fn progress_line(job: &Value) -> String {
    let p = &job["progress"];
    let mut line = format!("{:<9}", job["status"].as_str().unwrap_or("?"));
    match p["total"].as_u64() {
        Some(total) => line.push_str(&format!(" {}/{total}", p["done"])),
        None => line.push_str(&format!(" {}", p["done"])),
    }
    for (name, n) in p["counters"].as_object().into_iter().flatten() {
        line.push_str(&format!("  {name} {n}"));
    }
    line.push_str(&format!("  {}/s", p["rate_per_sec"]));
    if let Some(eta) = p["eta_secs"].as_u64() {
        line.push_str(&format!("  eta {eta}s"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_progress_line_names_each_counter() {
        let job = json!({"status": "running", "progress": {"done": 3, "total": 10,
            "counters": {"differing": 1, "same": 2}, "rate_per_sec": 1.5, "eta_secs": 5}});
        assert_eq!(
            progress_line(&job),
            "running   3/10  differing 1  same 2  1.5/s  eta 5s"
        );
    }
}
