//! `make bench`: SyncRoot end to end on this machine, against the CRM sandboxes.
//!
//! Starts its own processes — `syncroot-sandbox` and SyncRoot itself (`syncroot all`, or the
//! roles separately) — each with a fresh database and queue prefix,
//! and measures:
//! 1. the API's accept rate at 64 concurrent clients (median of runs), beside RabbitMQ's own
//!    confirmed-publish rate on this machine, measured in the same run;
//! 2. end-to-end latency at light load: from the API's 202 until SyncRoot reports the contact
//!    synced in both CRMs (it records that right after each CRM answered);
//! 3. a burst of 10,000 creates: seconds until both sandboxes hold every record, CRM calls used
//!    against the minimum, and the same burst with batching switched off;
//! 4. delivery under HubSpot's Starter quota (100 requests per 10 s): contacts per second
//!    against the quota's ceiling, and 429s received;
//! 5. two-way sync at light load: from an edit in one sandbox's UI until the other sandbox
//!    holds it, p50/p99, CRM calls per edit and echo writes (writes back to the source);
//! 6. the SyncRoot process's peak memory.
//!
//! Prints a table and writes `bench-results/latest.json`. Needs Postgres and RabbitMQ running
//! (`make services`) and `target/release/syncroot` built (`make bench` does both).

mod harness;

use harness::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = Opts::from_env();
    let bin = Binaries::locate(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/syncroot"),
    )?;
    let mut report = Report::new(&opts);
    let sandboxes = Sandboxes::start(&bin).await?;

    if !opts.only_two_way {
        measure_one_way(&bin, &sandboxes, &opts, &mut report).await?;
        if opts.only_accept {
            sandboxes.stop().await;
            report.print();
            return Ok(());
        }
    }
    println!("5/5 two-way: edits in each CRM's UI until the other CRM holds them …");
    sandboxes.reset().await?;
    {
        let env = two_way_env();
        let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let sr = SyncRoot::start(&bin, &sandboxes, Mode::AllInOne, &extra).await?;
        report.two_way = two_way(&sr, &sandboxes, 50, 5, opts.light_seconds).await?;
        sr.stop().await;
    }

    sandboxes.stop().await;
    report.print();
    report.save()?;
    Ok(())
}

/// Steps 1–4: accept rate, light-load latency, bursts, quota.
async fn measure_one_way(
    bin: &Binaries,
    sandboxes: &Sandboxes,
    opts: &Opts,
    report: &mut Report,
) -> anyhow::Result<()> {
    println!("1/5 broker ceiling and API accept rate …");
    report.ceiling = median_of(opts.runs, || broker_ceiling(opts.seconds)).await?;
    // The API on its own (`syncroot api`), as the ceiling is the broker on its own …
    report.accept = accept_rates(bin, sandboxes, Mode::ApiOnly, opts).await?;
    // … and beside every worker in the same process, competing for the same two cores.
    report.accept_all_in_one = accept_rates(bin, sandboxes, Mode::AllInOne, opts).await?;
    if opts.only_accept {
        return Ok(());
    }

    println!("2/5 end-to-end latency at {} contacts/s …", opts.light_rate);
    sandboxes.reset().await?;
    {
        let sr = SyncRoot::start(bin, sandboxes, Mode::AllInOne, &[]).await?;
        report.latency_ms = light_load_latency(&sr, opts.light_rate, opts.light_seconds).await?;
        sr.stop().await;
    }

    println!("3/5 burst of {} creates, batching on …", opts.burst);
    sandboxes.reset().await?;
    {
        let sr = SyncRoot::start(bin, sandboxes, Mode::AllInOne, &[]).await?;
        report.burst = burst(&sr, sandboxes, opts.burst).await?;
        report.peak_rss_mb = sr.peak_rss_mb();
        sr.stop().await;
    }
    println!("   … and batching off");
    sandboxes.reset().await?;
    {
        let sr = SyncRoot::start(
            bin,
            sandboxes,
            Mode::AllInOne,
            &[("SYNCROOT_DELIVERY_BATCHING", "false")],
        )
        .await?;
        report.burst_unbatched = burst(&sr, sandboxes, opts.burst).await?;
        sr.stop().await;
    }

    println!("4/5 delivery under HubSpot's Starter quota (100 requests / 10 s) …");
    sandboxes.reset().await?;
    report.quota = quota(bin, sandboxes, opts.quota_backlog).await?;

    Ok(())
}
