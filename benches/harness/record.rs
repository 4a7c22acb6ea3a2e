//! `BENCH_RECORD=1`: the run's verdicts appended as one row to the results table that ends
//! docs/benchmarks.md (date, commit, the run's size, each goal's figure and verdict). Only when
//! asked: a run never edits the docs on its own.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};
use syncroot_testkit::goals::{Goal, missed};

use super::Opts;

/// The table's goal columns: a goal's key and its header.
pub const COLUMNS: [(&str, &str); 16] = [
    ("accept_ratio", "Accept ÷ ceiling (≥ 0.50)"),
    ("burst_held", "Burst held (100 %)"),
    ("burst_secs", "Burst in both (≤ 5 s / 10k)"),
    ("batch_fill", "HubSpot fill (≥ 95 %)"),
    ("burst_calls", "Calls (≤ 210 / 10k)"),
    ("burst_429s", "Burst 429s (0)"),
    ("latency_p50", "p50 (≤ 50 ms)"),
    ("latency_p99", "p99 (≤ 200 ms)"),
    ("peak_rss", "RSS (≤ 150 MB)"),
    ("quota_rate", "Quota (≥ 95 %)"),
    ("quota_429s", "Quota 429s (0)"),
    ("echo_writes", "Echo writes (0)"),
    ("scale_out", "Scale-out (≥ 1.6×)"),
    ("backfill_hubspot", "Backfill HubSpot calls (≤ 1.05× min)"),
    (
        "backfill_salesforce",
        "Backfill Salesforce calls (≤ 1.05× min)",
    ),
    ("backfill_correct", "Backfill problems (0)"),
];

/// The table's header line, as docs/benchmarks.md must hold it.
pub fn header() -> String {
    let goals: Vec<&str> = COLUMNS.iter().map(|(_, h)| *h).collect();
    format!("| Date | Commit | Run | {} | Verdict |", goals.join(" | "))
}

/// One row: `—` for a goal this run did not measure.
pub fn row(date: &str, commit: &str, opts: &Opts, goals: &[Goal]) -> String {
    let cells: Vec<String> = COLUMNS
        .iter()
        .map(|(key, _)| {
            goals
                .iter()
                .find(|g| g.key == *key)
                .map_or("—".into(), |g| {
                    format!("{} {}", g.figure_text(), g.verdict)
                })
        })
        .collect();
    let run = format!(
        "{}×{} s; burst {}; {}/s × {} s; backlog {}; backfill {}/{}{}",
        opts.runs,
        opts.seconds,
        opts.burst,
        opts.light_rate,
        opts.light_seconds,
        opts.quota_backlog,
        opts.backfill_hubspot,
        opts.backfill_salesforce,
        if opts.only_accept {
            "; accept only"
        } else if opts.only_light {
            "; light only"
        } else if opts.only_burst {
            "; burst only"
        } else if opts.only_two_way {
            "; two-way only"
        } else if opts.only_scale_out {
            "; scale-out only"
        } else if opts.only_backfill {
            "; backfill only"
        } else {
            ""
        }
    );
    let verdict = match missed(goals) {
        0 => format!("all {} PASS", goals.len()),
        m => format!("{m} of {} MISS", goals.len()),
    };
    format!(
        "| {date} | {commit} | {run} | {} | {verdict} |",
        cells.join(" | ")
    )
}

/// Appends the row to docs/benchmarks.md, whose last lines must be the table.
pub fn record(date: &str, opts: &Opts, goals: &[Goal]) -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("docs/benchmarks.md");
    let mut text = std::fs::read_to_string(&path).context("reading docs/benchmarks.md")?;
    ensure!(
        text.lines().any(|l| l == header()),
        "docs/benchmarks.md has no results table headed\n{}",
        header()
    );
    ensure!(
        text.trim_end()
            .lines()
            .last()
            .is_some_and(|l| l.starts_with('|')),
        "docs/benchmarks.md must end with its results table"
    );
    let commit = commit(root)?;
    text.truncate(text.trim_end().len());
    text.push('\n');
    text.push_str(&row(date, &commit, opts, goals));
    text.push('\n');
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The short commit measured, `+dirty` when tracked files had changes.
fn commit(root: &Path) -> anyhow::Result<String> {
    let git = |args: &[&str]| -> anyhow::Result<String> {
        let out = Command::new("git").args(args).current_dir(root).output()?;
        ensure!(out.status.success(), "git {args:?} failed");
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty();
    Ok(if dirty { format!("{head}+dirty") } else { head })
}
