//! Faults the control API can switch on to test a client's resilience: random errors,
//! added latency, forced 429s, a full outage, paused, shuffled or duplicated webhooks and
//! search-index lag, and answers lost after a committed write (`after_write`).
//!
//! The request gate and the webhook emitter read these; nothing here acts on its own.

use serde::{Deserialize, Serialize};

use crate::kit::after_write as kit_aw;
use crate::kit::faults as kit;

/// The fault settings, as read and written at `/__sandbox/faults`: the ones both sandboxes
/// share, and HubSpot's own.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Faults {
    #[serde(flatten)]
    pub common: kit::Faults,
    /// New records stay invisible to search for this long after creation, in ms
    /// (HubSpot's index lags writes by "a few moments").
    pub search_lag_ms: u64,
    /// Webhook events of one change are delivered in random order (HubSpot does not
    /// guarantee ordering).
    pub webhook_shuffle: bool,
    /// Fraction (0–1) of webhook events sent twice (HubSpot documents rare duplicates).
    pub webhook_duplicate_rate: f64,
}

/// A partial update of [`Faults`]; absent fields keep their value, unknown ones are refused.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsPatch {
    pub error_rate: Option<f64>,
    pub error_status: Option<u16>,
    pub latency_ms: Option<u64>,
    pub latency_jitter_ms: Option<u64>,
    pub force_429: Option<u32>,
    pub outage: Option<bool>,
    pub webhooks_paused: Option<bool>,
    pub after_write: Option<kit_aw::Mode>,
    pub after_write_count: Option<u32>,
    pub after_write_rate: Option<f64>,
    pub after_write_stall_ms: Option<u64>,
    pub after_write_status: Option<u16>,
    pub search_lag_ms: Option<u64>,
    pub webhook_shuffle: Option<bool>,
    pub webhook_duplicate_rate: Option<f64>,
}

impl Faults {
    /// Applies a patch, or lists every problem without changing anything.
    pub fn apply(&mut self, patch: FaultsPatch) -> Result<(), Vec<String>> {
        let common = kit::FaultsPatch {
            error_rate: patch.error_rate,
            error_status: patch.error_status,
            latency_ms: patch.latency_ms,
            latency_jitter_ms: patch.latency_jitter_ms,
            force_429: patch.force_429,
            outage: patch.outage,
            webhooks_paused: patch.webhooks_paused,
            after_write: patch.after_write,
            after_write_count: patch.after_write_count,
            after_write_rate: patch.after_write_rate,
            after_write_stall_ms: patch.after_write_stall_ms,
            after_write_status: patch.after_write_status,
        };
        let mut problems = common.problems();
        let duplicates = patch.webhook_duplicate_rate;
        kit::check_fraction(&mut problems, "webhook_duplicate_rate", duplicates);
        if !problems.is_empty() {
            return Err(problems);
        }
        self.common.apply(common)?;
        self.search_lag_ms = patch.search_lag_ms.unwrap_or(self.search_lag_ms);
        self.webhook_shuffle = patch.webhook_shuffle.unwrap_or(self.webhook_shuffle);
        self.webhook_duplicate_rate = duplicates.unwrap_or(self.webhook_duplicate_rate);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_patch_keeps_other_fields_and_rejects_bad_values() {
        let mut f = Faults::default();
        let patch = FaultsPatch {
            outage: Some(true),
            ..FaultsPatch::default()
        };
        assert!(f.apply(patch).is_ok());
        assert!(f.common.outage);
        assert_eq!(f.common.error_status, 503);
        let bad = FaultsPatch {
            error_rate: Some(1.5),
            error_status: Some(200),
            ..FaultsPatch::default()
        };
        assert_eq!(f.apply(bad).map_err(|p| p.len()), Err(2));
        assert!((f.common.error_rate - 0.0).abs() < f64::EPSILON);
    }
}
