//! `syncroot backfill`: starts a backfill through the admin API (`POST /admin/jobs`) of a
//! running SyncRoot, follows its progress on stderr until it ends, then prints its result
//! (JSON) on stdout. Exits non-zero when the job failed or was cancelled.

use clap::Args;
use serde_json::json;

use super::dlq_client::Client;
use super::job_follow;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Count what the backfill would do (matched, linked, created, updated, conflicts,
    /// duplicates) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Base URL of the SyncRoot API [default: http://<api_listen>].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Admin key [default: the first of admin_keys (SYNCROOT_ADMIN_KEYS)].
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
}

pub async fn run(cfg: &Config, args: BackfillArgs) -> anyhow::Result<()> {
    let request = json!({"kind": "backfill", "params": {"dry_run": args.dry_run}});
    let client = Client::new(cfg, args.url, args.key)?;
    job_follow::run(&client, &request, "backfill").await
}
