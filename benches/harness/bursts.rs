//! Delivery of many contacts at once: a burst of creates (batching on or off), and a backlog
//! under HubSpot's Starter quota. Arrival is what the sandboxes hold, with each record's own
//! write time ([`super::delivered`]); the calls it took are the sandboxes' counters.

use std::time::Duration;

use chrono::Utc;
use syncroot_testkit::holdings::{Crm, Holdings};

use super::{
    Binaries, Mode, Sandboxes, SyncRoot, create_many, expected, held_by_all_at, secs_between,
    wait_held,
};

/// One burst's outcome.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Burst {
    pub contacts: usize,
    /// Seconds to get every create accepted.
    pub accept_secs: f64,
    /// Contacts each sandbox holds as sent, and both.
    pub hubspot_held: usize,
    pub salesforce_held: usize,
    pub held_by_both: usize,
    /// Seconds from the first create until each sandbox wrote the last of them; NaN unless it
    /// holds every one.
    pub hubspot_secs: f64,
    pub salesforce_secs: f64,
    pub hubspot_calls: u64,
    pub salesforce_calls: u64,
    pub hubspot_min_calls: u64,
    pub salesforce_min_calls: u64,
    pub rate_limited: u64,
}

impl Burst {
    /// Seconds until both sandboxes held every contact; NaN unless they do.
    pub fn both_secs(&self) -> f64 {
        // Not `f64::max`: it answers the other operand when one is NaN.
        if self.hubspot_secs.is_nan() || self.salesforce_secs.is_nan() {
            return f64::NAN;
        }
        self.hubspot_secs.max(self.salesforce_secs)
    }
}

/// `n` creates as fast as the API takes them; waits until both sandboxes hold all of them or
/// `settle` has passed since the last was accepted.
pub async fn burst(
    sr: &SyncRoot,
    sb: &Sandboxes,
    n: usize,
    settle: Duration,
) -> anyhow::Result<Burst> {
    let started = Utc::now();
    create_many(sr, n, "burst").await?;
    let accept_secs = secs_between(started, Utc::now());
    let crms = [Crm::HubSpot, Crm::Salesforce];
    let held = wait_held(sb, &crms, &expected("burst", n, "Bench"), settle).await?;
    let done_secs = |h: &Holdings| match h.last_written() {
        Some(t) if h.complete() => secs_between(started, t),
        _ => f64::NAN,
    };
    let hs = sb.counters(&sb.hubspot).await?;
    let sf = sb.counters(&sb.salesforce).await?;
    Ok(Burst {
        contacts: n,
        accept_secs,
        hubspot_held: held[0].held(),
        salesforce_held: held[1].held(),
        held_by_both: held_by_all_at(&held).len(),
        hubspot_secs: done_secs(&held[0]),
        salesforce_secs: done_secs(&held[1]),
        hubspot_calls: hs["calls_total"].as_u64().unwrap_or(0),
        salesforce_calls: sf["calls_total"].as_u64().unwrap_or(0),
        hubspot_min_calls: n.div_ceil(100) as u64,
        salesforce_min_calls: n.div_ceil(200) as u64,
        rate_limited: hs["rate_limited"].as_u64().unwrap_or(0)
            + sf["rate_limited"].as_u64().unwrap_or(0),
    })
}

/// Delivery under a quota.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Quota {
    pub backlog: usize,
    /// Contacts HubSpot holds as sent at the end.
    pub held: usize,
    pub burst_limit_per_10s: u64,
    pub seconds: f64,
    pub contacts_per_sec: f64,
    /// The rate once the first window has rolled: a rolling window lets a full allowance go
    /// at once at the start, which flatters a short run.
    pub sustained_contacts_per_sec: f64,
    /// What the quota allows at full batches: burst_limit / 10 s × 100 records.
    pub ceiling_contacts_per_sec: f64,
    pub calls: u64,
    pub calls_per_sec: f64,
    pub rate_limited: u64,
}

/// A backlog of creates delivered to HubSpot at the Starter tier's 100 requests per 10 s.
///
/// The rates come from the records' write times: from the first write to the last, leaving
/// out the contacts of the first write (they start the clock), and, sustained, those written
/// in the first 10 s. NaN unless HubSpot holds the whole backlog.
pub async fn quota(
    bin: &Binaries,
    sb: &Sandboxes,
    backlog: usize,
    settle: Duration,
) -> anyhow::Result<Quota> {
    let limit = 100u64;
    let mut sr = SyncRoot::start(
        bin,
        sb,
        Mode::Roles,
        &[
            ("SYNCROOT_CRMS", "hubspot"),
            ("SYNCROOT_HUBSPOT_RATE_LIMIT", "100"),
        ],
    )
    .await?;
    // Queue the backlog first (no delivery worker yet), so delivery starts with all of it.
    create_many(&sr, backlog, "quota").await?;
    sr.forward_then_stop_forwarder(backlog).await?;
    sb.set_limits(limit as u32).await?;
    sb.control.post(&sb.hubspot, "counters/reset").await?;
    sr.start_delivery()?;
    let expected = expected("quota", backlog, "Bench");
    // The backlog takes backlog / 1,000 s at the quota's ceiling; settle counts after that.
    let wait = Duration::from_secs(backlog as u64 / 1_000) + settle;
    let held = wait_held(sb, &[Crm::HubSpot], &expected, wait).await?;
    let h = &held[0];
    let c = sb.counters(&sb.hubspot).await?;
    sr.stop().await;

    let mut times: Vec<_> = h.written_at.values().copied().collect();
    times.sort();
    let (rate, sustained, secs) = match (times.first(), times.last()) {
        (Some(&first), Some(&last)) if h.complete() => {
            let secs = secs_between(first, last).max(1e-3);
            let at_first = times.iter().filter(|t| **t == first).count();
            let rolled = first + chrono::Duration::seconds(10);
            let by_rolled = times.iter().filter(|t| **t <= rolled).count();
            // A backlog gone within the first window has no sustained rate.
            let sustained = if last > rolled {
                (backlog - by_rolled) as f64 / secs_between(rolled, last)
            } else {
                f64::NAN
            };
            ((backlog - at_first) as f64 / secs, sustained, secs)
        }
        _ => (f64::NAN, f64::NAN, f64::NAN),
    };
    let calls = c["calls_total"].as_u64().unwrap_or(0);
    Ok(Quota {
        backlog,
        held: h.held(),
        burst_limit_per_10s: limit,
        seconds: secs,
        contacts_per_sec: rate,
        sustained_contacts_per_sec: sustained,
        ceiling_contacts_per_sec: limit as f64 / 10.0 * 100.0,
        calls,
        calls_per_sec: calls.saturating_sub(1) as f64 / secs,
        rate_limited: c["rate_limited"].as_u64().unwrap_or(0),
    })
}

/// Delivery of a backlog to both CRMs with every CRM call slowed down, at one concurrency.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ScaleOut {
    pub backlog: usize,
    /// CRM calls in flight per CRM (`SYNCROOT_DELIVERY_CONCURRENCY`).
    pub concurrency: usize,
    /// Added to every sandbox call, ms.
    pub latency_ms: u64,
    /// From the first record written to the last, both CRMs; NaN unless both hold all.
    pub seconds: f64,
    pub contacts_per_sec: f64,
}

/// Queues `backlog` creates with no delivery worker, slows every sandbox call by
/// `latency_ms`, then starts one delivery process with `concurrency` calls in flight per CRM
/// and times the backlog from the first record written to the last.
pub async fn scale_out(
    bin: &Binaries,
    sb: &Sandboxes,
    backlog: usize,
    concurrency: usize,
    latency_ms: u64,
    settle: Duration,
) -> anyhow::Result<ScaleOut> {
    let c = concurrency.to_string();
    let mut sr = SyncRoot::start(
        bin,
        sb,
        Mode::Roles,
        &[("SYNCROOT_DELIVERY_CONCURRENCY", c.as_str())],
    )
    .await?;
    let tag = format!("scale{concurrency}-");
    create_many(&sr, backlog, &tag).await?;
    sr.forward_then_stop_forwarder(backlog).await?;
    sb.set_latency(latency_ms).await?;
    sr.start_delivery()?;
    let crms = [Crm::HubSpot, Crm::Salesforce];
    let held = wait_held(sb, &crms, &expected(&tag, backlog, "Bench"), settle).await;
    sb.set_latency(0).await?;
    sr.stop().await;
    let held = held?;
    let times: Vec<_> = held
        .iter()
        .flat_map(|h| h.written_at.values().copied())
        .collect();
    let seconds = match (times.iter().min(), times.iter().max()) {
        (Some(&first), Some(&last)) if held.iter().all(|h| h.complete()) => {
            secs_between(first, last).max(1e-3)
        }
        _ => f64::NAN,
    };
    Ok(ScaleOut {
        backlog,
        concurrency,
        latency_ms,
        seconds,
        contacts_per_sec: backlog as f64 / seconds,
    })
}
