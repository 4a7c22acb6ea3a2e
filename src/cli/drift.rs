//! `syncroot drift`: starts a drift check through the admin API (`POST /admin/jobs`) of a
//! running SyncRoot, follows its progress on stderr until it ends, then prints its result
//! (JSON) on stdout. Exits non-zero when the job failed or was cancelled.

use clap::Args;
use serde_json::json;

use super::job_follow;
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
    #[command(flatten)]
    pub target: job_follow::Target,
}

pub async fn run(cfg: &Config, args: DriftArgs) -> anyhow::Result<()> {
    let request = json!({"kind": "drift", "params": {"repair": args.repair, "full": args.full}});
    if args.dry_run {
        println!("POST /admin/jobs {request}");
        return Ok(());
    }
    let client = args.target.client(cfg)?;
    job_follow::run(&client, &request, "drift check").await
}
