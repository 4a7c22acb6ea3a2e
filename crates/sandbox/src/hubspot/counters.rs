//! Usage counters the control API exposes, so a benchmark can see how the client used the
//! API: calls per route template, records carried per call, every batch call (refused ones
//! too, see [`crate::kit::batches`]), refusals and webhook deliveries.
//!
//! Only API traffic is counted; control-API calls never are.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::kit::batches::BatchCalls;

/// How many records the successful calls of one route carried (batch inputs, or 1 for
/// single-record writes). What a client sent, refused calls included, is [`BatchCalls`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RecordsTally {
    pub count: u64,
    pub sum: u64,
    pub max: u64,
}

/// Response extension a handler sets to report how many records its call carried.
#[derive(Clone, Copy, Debug)]
pub struct RecordsCarried(pub usize);

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Counters {
    /// `"<METHOD> <route template>"` → calls, including refused ones.
    pub calls: BTreeMap<String, u64>,
    pub calls_total: u64,
    /// Records accepted by successful create, update, upsert and archive calls.
    pub records_written: u64,
    /// Per route, for calls their handler answered with success.
    pub records_per_call: BTreeMap<String, RecordsTally>,
    /// Every call of a batch endpoint that passed the gate, refused or not.
    pub batches: BatchCalls,
    /// 429s, whether from the quotas or from `force_429`.
    pub rate_limited: u64,
    /// Failures injected by `error_rate` or `outage`.
    pub errors_injected: u64,
    /// 401s for a missing or wrong token.
    pub unauthorized: u64,
    /// Webhook requests answered with a 2xx.
    pub webhooks_sent: u64,
    /// Events inside those requests.
    pub webhook_events_sent: u64,
    /// Delivery attempts that failed (non-2xx, timeout, connection error).
    pub webhook_failures: u64,
    /// Events given up on after the last attempt.
    pub webhook_events_dropped: u64,
    /// Committed writes whose answer was dropped, stalled or replaced by an error.
    pub after_write_faults: crate::kit::after_write::Injected,
}

impl Counters {
    pub fn count_call(&mut self, route: &str) {
        *self.calls.entry(route.to_owned()).or_default() += 1;
        self.calls_total += 1;
    }

    pub fn count_records(&mut self, route: &str, records: usize) {
        let n = u64::try_from(records).unwrap_or(u64::MAX);
        let tally = self.records_per_call.entry(route.to_owned()).or_default();
        tally.count += 1;
        tally.sum += n;
        tally.max = tally.max.max(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_per_call_tracks_sum_and_maximum() {
        let mut c = Counters::default();
        c.count_records("POST /x", 100);
        c.count_records("POST /x", 50);
        let t = &c.records_per_call["POST /x"];
        assert_eq!((t.count, t.sum, t.max), (2, 150, 100));
    }
}
