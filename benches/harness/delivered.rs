//! What the sandboxes hold of a scenario's contacts, read from their own state: a scenario
//! waits here until every contact is held as sent (or the settle time has passed) and reads
//! each record's write time, the end of every delivery time and latency the bench reports.
//!
//! The sandboxes' write counters only say when to look: re-writes inflate them, so they never
//! decide that a contact arrived.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use syncroot_testkit::holdings::{Crm, Expected, Holdings};
use tokio::time::Instant;

use super::Sandboxes;

/// The contacts `create_many(…, n, tag)` sends: e-mail `{tag}{i}@bench.example`.
pub fn expected(tag: &str, n: usize, last_name: &str) -> Vec<Expected> {
    (0..n)
        .map(|i| Expected {
            email: format!("{tag}{i}@bench.example"),
            last_name: last_name.to_owned(),
        })
        .collect()
}

/// How often the write counters are read while waiting, and the dumps at most.
const COUNTERS_EVERY: Duration = Duration::from_millis(100);
const DUMPS_EVERY: Duration = Duration::from_millis(500);

/// Waits until each of `crms` holds every `expected` contact, or `settle` has passed; answers
/// what each holds, in the order of `crms`.
pub async fn wait_held(
    sb: &Sandboxes,
    crms: &[Crm],
    expected: &[Expected],
    settle: Duration,
) -> anyhow::Result<Vec<Holdings>> {
    let deadline = Instant::now() + settle;
    let mut last_dump: Option<Instant> = None;
    loop {
        let timed_out = Instant::now() >= deadline;
        let mut written_enough = true;
        for crm in crms {
            let c = sb.counters(sb.base(*crm)).await?;
            written_enough &= c["records_written"].as_u64().unwrap_or(0) >= expected.len() as u64;
        }
        let may_dump = last_dump.is_none_or(|t| t.elapsed() >= DUMPS_EVERY);
        if (written_enough && may_dump) || timed_out {
            last_dump = Some(Instant::now());
            let mut all = Vec::new();
            for crm in crms {
                all.push(sb.control.holdings(sb.base(*crm), *crm, expected).await?);
            }
            if timed_out || all.iter().all(Holdings::complete) {
                report_shortfall(crms, &all);
                return Ok(all);
            }
        }
        tokio::time::sleep(COUNTERS_EVERY).await;
    }
}

/// Says which contacts a sandbox lacks, so a miss is explained where it is seen.
fn report_shortfall(crms: &[Crm], all: &[Holdings]) {
    for (crm, h) in crms.iter().zip(all) {
        if !h.complete() {
            println!(
                "   {crm:?} does not hold {} contacts as sent ({} missing, {} wrong or duplicated; e.g. {:?})",
                h.missing.len() + h.wrong.len(),
                h.missing.len(),
                h.wrong.len(),
                h.missing.iter().chain(&h.wrong).take(3).collect::<Vec<_>>()
            );
        }
    }
}

/// When each contact held by every sandbox was there in all of them: the latest of its write
/// times.
pub fn held_by_all_at(all: &[Holdings]) -> HashMap<String, DateTime<Utc>> {
    let Some((first, rest)) = all.split_first() else {
        return HashMap::new();
    };
    first
        .written_at
        .iter()
        .filter_map(|(email, t)| {
            rest.iter()
                .try_fold(*t, |latest, h| {
                    h.written_at.get(email).map(|u| latest.max(*u))
                })
                .map(|t| (email.clone(), t))
        })
        .collect()
}

/// Seconds from `from` to `to` (wall clock: the sandboxes' timestamps are wall-clock times).
pub fn secs_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6
}
