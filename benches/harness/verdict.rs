//! The goals the bench is judged by (docs/benchmarks.md): each measured figure of this run
//! against its bound, with a PASS or MISS verdict. A goal whose scenario did not run
//! (`BENCH_ONLY`) is not judged; one whose figure could not be measured (contacts missing
//! from a sandbox) misses.

use syncroot_testkit::goals::{Bound, Goal};

use super::{Backfill, Burst, Quota, Report, TwoWay};

/// What the scale-out scenario adds to every sandbox call, ms.
pub const SCALE_OUT_LATENCY_MS: u64 = 150;

/// The burst size the burst goals are stated for; other sizes scale them in proportion.
pub const GOAL_BURST: usize = 10_000;

/// Every goal this run measured, judged.
pub fn goals(r: &Report) -> Vec<Goal> {
    let mut goals = Vec::new();
    if !r.ceiling.runs.is_empty() && !r.accept.runs.is_empty() {
        goals.push(Goal::new(
            "accept_ratio",
            "API accept rate ÷ broker confirmed-publish ceiling, same run",
            r.accept.median / r.ceiling.median,
            Bound::AtLeast(0.5),
        ));
    }
    if let Some(b) = &r.burst {
        goals.extend(burst_goals(b));
    }
    if !r.latency_ms.is_empty() {
        goals.push(
            Goal::new(
                "latency_p50",
                "light load: 202 → held by both sandboxes, p50",
                r.latency_p50_ms,
                Bound::AtMost(50.0),
            )
            .shown("ms", 1),
        );
        goals.push(
            Goal::new(
                "latency_p99",
                "light load: 202 → held by both sandboxes, p99",
                r.latency_p99_ms,
                Bound::AtMost(200.0),
            )
            .shown("ms", 1),
        );
    }
    if let Some(mb) = r.peak_rss_mb {
        goals.push(
            Goal::new(
                "peak_rss",
                "SyncRoot peak memory (RSS) after the burst",
                mb,
                Bound::AtMost(150.0),
            )
            .shown("MB", 0),
        );
    }
    if let Some(q) = &r.quota {
        goals.extend(quota_goals(q));
    }
    if let Some(t) = &r.two_way {
        goals.push(echo_goal(t));
    }
    if let Some((one, two)) = &r.scale_out {
        goals.push(
            Goal::new(
                "scale_out",
                "scale-out: backlog delivered with 2 calls in flight per CRM ÷ with 1 (+150 ms per call)",
                two.contacts_per_sec / one.contacts_per_sec,
                Bound::AtLeast(1.6),
            )
            .shown("×", 2),
        );
    }
    if let Some(b) = &r.backfill {
        goals.extend(backfill_goals(b));
    }
    goals
}

/// Each CRM's calls within 5 % of the least the population needs; the outcome correct.
fn backfill_goals(b: &Backfill) -> Vec<Goal> {
    let calls = |key, name: &str, ratio| {
        Goal::new(
            key,
            format!("backfill: {name} calls ÷ the minimum (pages, full batches)"),
            ratio,
            Bound::AtMost(1.05),
        )
        .shown("×", 2)
    };
    vec![
        calls("backfill_hubspot", "HubSpot", b.hubspot.ratio()),
        calls("backfill_salesforce", "Salesforce", b.salesforce.ratio()),
        Goal::new(
            "backfill_correct",
            "backfill: problems (anyone missing, doubled, with wrong values; counters)",
            b.problems.len() as f64,
            Bound::AtMost(0.0),
        )
        .shown("", 0),
    ]
}

/// A burst of `n`: the 10,000-contact goals scaled by `n / 10,000`.
fn burst_goals(b: &Burst) -> Vec<Goal> {
    let n = b.contacts;
    let scale = n as f64 / GOAL_BURST as f64;
    vec![
        Goal::new(
            "burst_held",
            format!("burst of {n}: contacts held as sent by both sandboxes"),
            100.0 * b.held_by_both as f64 / n.max(1) as f64,
            Bound::AtLeast(100.0),
        )
        .shown("%", 1),
        Goal::new(
            "burst_secs",
            format!("burst of {n}: seconds until both sandboxes hold all (5 s per 10,000)"),
            b.both_secs(),
            Bound::AtMost(5.0 * scale),
        )
        .shown("s", 2),
        Goal::new(
            "batch_fill",
            "burst: HubSpot batch fill (records per call ÷ 100)",
            100.0 * n as f64 / (b.hubspot_calls.max(1) as f64 * 100.0),
            Bound::AtLeast(95.0),
        )
        .shown("%", 0),
        Goal::new(
            "burst_calls",
            format!("burst of {n}: CRM calls, both CRMs (210 per 10,000)"),
            (b.hubspot_calls + b.salesforce_calls) as f64,
            Bound::AtMost((210 * n).div_ceil(GOAL_BURST) as f64),
        )
        .shown("calls", 0),
        Goal::new(
            "burst_429s",
            "burst: 429s received",
            b.rate_limited as f64,
            Bound::AtMost(0.0),
        )
        .shown("", 0),
    ]
}

/// The sustained rate (after the first 10-s window) when the backlog lasted that long, else
/// the rate over the whole backlog.
fn quota_goals(q: &Quota) -> Vec<Goal> {
    let (name, rate) = if q.sustained_contacts_per_sec.is_nan() {
        (
            "quota: contacts/s ÷ the quota's ceiling",
            q.contacts_per_sec,
        )
    } else {
        (
            "quota: contacts/s after the first 10 s ÷ the quota's ceiling",
            q.sustained_contacts_per_sec,
        )
    };
    vec![
        Goal::new(
            "quota_rate",
            name,
            100.0 * rate / q.ceiling_contacts_per_sec,
            Bound::AtLeast(95.0),
        )
        .shown("%", 0),
        Goal::new(
            "quota_429s",
            "quota: 429s received",
            q.rate_limited as f64,
            Bound::AtMost(0.0),
        )
        .shown("", 0),
    ]
}

fn echo_goal(t: &TwoWay) -> Goal {
    Goal::new(
        "echo_writes",
        "two-way: echo writes (written back to the CRM an edit came from)",
        t.echo_writes as f64,
        Bound::AtMost(0.0),
    )
    .shown("", 0)
}
