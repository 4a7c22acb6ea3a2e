//! `syncroot backfill`: starts a backfill through the admin API (`POST /admin/jobs`) of a
//! running SyncRoot, follows its progress on stderr until it ends, then prints its result
//! (JSON) on stdout. Exits non-zero when the job failed or was cancelled.

use clap::Args;
use serde_json::json;

use super::job_follow;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Count what the backfill would do (matched, linked, created, updated, conflicts,
    /// duplicates) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Read and match only this CRM's records (repeat for several; default every enabled
    /// CRM). The people it creates still go to every CRM.
    #[arg(long = "crm", value_name = "CRM")]
    pub crms: Vec<String>,
    #[command(flatten)]
    pub target: job_follow::Target,
}

pub async fn run(cfg: &Config, args: BackfillArgs) -> anyhow::Result<()> {
    let mut params = json!({"dry_run": args.dry_run});
    if !args.crms.is_empty() {
        // Checked by the server, which names a CRM it does not know or has not enabled.
        params["crms"] = json!(args.crms);
    }
    let request = json!({"kind": "backfill", "params": params});
    let client = args.target.client(cfg)?;
    job_follow::run(&client, &request, "backfill").await
}
