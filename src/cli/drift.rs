//! `syncroot drift`: starts a drift check through the admin API (`POST /admin/jobs`) of a
//! running SyncRoot, follows its progress on stderr until it ends, then prints its result
//! (JSON) on stdout. Exits non-zero when the job failed or was cancelled.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};

use super::dlq_client::Client;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct DriftArgs {
    /// Resolve each differing record by the conflict policy (as a change made in its CRM), and
    /// handle records missing in their CRM as deletions made there. Without it: report only.
    #[arg(long)]
    pub repair: bool,
    /// Check every linked record, not only those the CRMs modified since the last completed
    /// check started.
    #[arg(long)]
    pub full: bool,
    /// Print the job request and create nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Base URL of the SyncRoot API [default: http://<api_listen>].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Admin key [default: the first of admin_keys (SYNCROOT_ADMIN_KEYS)].
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
}

/// How often the job is read while it runs.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

pub async fn run(cfg: &Config, args: DriftArgs) -> anyhow::Result<()> {
    let request = json!({"kind": "drift", "params": {"repair": args.repair, "full": args.full}});
    if args.dry_run {
        println!("POST /admin/jobs {request}");
        return Ok(());
    }
    let client = Client::new(cfg, args.url, args.key)?;
    let job = client
        .send(Method::POST, "/admin/jobs", &[], Some(&request))
        .await?;
    let id = job["id"]
        .as_str()
        .context("the API answered a job without an id")?
        .to_owned();
    eprintln!("drift check {id} queued");
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
            "drift check {id} {status}{}",
            job["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        None => bail!("drift check {id}: the API answered a job without a status"),
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
