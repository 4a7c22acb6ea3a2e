//! Batch calls as both sandboxes count them: the cap on records per batch call (the vendor's,
//! or lower for a test) and one tally of every batch call the sandbox received, refused or
//! not, so a test asserts what a client really sent rather than what was accepted.
//!
//! The cap is lowered with `PUT /__sandbox/limits {"batch_cap": n}` (1 up to the vendor's cap,
//! which stays the ceiling) and is restored by `POST /__sandbox/reset`. The tally is served in
//! `GET /__sandbox/counters` as `batches: {"<METHOD> <route>": {calls, records, max_records,
//! refused_oversized}}` and zeroed by `POST /__sandbox/counters/reset`.
//!
//! Not here: what a vendor answers an oversized batch with; each sandbox renders that.

use std::collections::BTreeMap;

use serde::Serialize;

/// Records per batch call a sandbox accepts: the vendor's cap or a lower one set by a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BatchCap {
    /// The cap in force now.
    pub batch_cap: usize,
    /// The vendor's own cap; `batch_cap` never exceeds it.
    pub batch_cap_ceiling: usize,
}

impl BatchCap {
    /// The vendor's cap, in force.
    pub fn vendor(ceiling: usize) -> Self {
        Self {
            batch_cap: ceiling,
            batch_cap_ceiling: ceiling,
        }
    }

    /// The problem with lowering the cap to `n`, if any.
    pub fn problem(&self, n: Option<usize>) -> Option<String> {
        let n = n?;
        (!(1..=self.batch_cap_ceiling).contains(&n)).then(|| {
            format!(
                "batch_cap must be within 1..={} (the vendor's cap), got {n}",
                self.batch_cap_ceiling
            )
        })
    }

    /// Sets the cap (already checked with [`BatchCap::problem`]); `None` keeps it.
    pub fn set(&mut self, n: Option<usize>) {
        if let Some(n) = n {
            self.batch_cap = n.clamp(1, self.batch_cap_ceiling);
        }
    }
}

/// Every batch call one route received.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BatchTally {
    /// Calls, refused ones included.
    pub calls: u64,
    /// Records in those calls, refused ones included.
    pub records: u64,
    /// The most records one call carried, refused calls included.
    pub max_records: u64,
    /// Calls refused for carrying more records than the cap.
    pub refused_oversized: u64,
}

/// The tally per `"<METHOD> <route template>"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct BatchCalls(BTreeMap<String, BatchTally>);

impl BatchCalls {
    /// Counts one batch call of `records` on `route`; false when it is over `cap` and must
    /// be refused.
    pub fn admit(&mut self, route: &str, records: usize, cap: usize) -> bool {
        let n = u64::try_from(records).unwrap_or(u64::MAX);
        let tally = self.0.entry(route.to_owned()).or_default();
        tally.calls += 1;
        tally.records += n;
        tally.max_records = tally.max_records.max(n);
        let within = records <= cap;
        if !within {
            tally.refused_oversized += 1;
        }
        within
    }

    /// The tally of one route, if it had a call.
    pub fn route(&self, route: &str) -> Option<&BatchTally> {
        self.0.get(route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_calls_count_and_set_the_maximum() {
        let mut calls = BatchCalls::default();
        assert!(calls.admit("POST /b", 3, 3));
        assert!(!calls.admit("POST /b", 5, 3));
        assert!(calls.admit("POST /b", 2, 3));
        let t = calls.route("POST /b").cloned().unwrap_or_default();
        assert_eq!(
            t,
            BatchTally {
                calls: 3,
                records: 10,
                max_records: 5,
                refused_oversized: 1
            }
        );
    }

    #[test]
    fn the_cap_is_lowered_within_the_vendors_and_never_above() {
        let mut cap = BatchCap::vendor(100);
        assert_eq!(cap.problem(Some(3)), None);
        assert!(cap.problem(Some(0)).is_some());
        assert!(
            cap.problem(Some(101))
                .is_some_and(|p| p.contains("1..=100"))
        );
        cap.set(Some(3));
        assert_eq!(cap.batch_cap, 3);
        cap.set(None);
        assert_eq!((cap.batch_cap, cap.batch_cap_ceiling), (3, 100));
    }
}
