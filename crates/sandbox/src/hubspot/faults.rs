//! Faults the control API can switch on to test a client's resilience: random errors,
//! added latency, forced 429s, a full outage, paused, shuffled or duplicated webhooks and
//! search-index lag.
//!
//! The request gate and the webhook emitter read these; nothing here acts on its own.

use serde::{Deserialize, Serialize};

/// The fault settings, as read and written at `/__sandbox/faults`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Faults {
    /// Fraction (0–1) of API calls answered with `error_status`.
    pub error_rate: f64,
    /// HTTP status of injected errors (400–599).
    pub error_status: u16,
    /// Added before every API call is handled, in ms.
    pub latency_ms: u64,
    /// The next N API calls are answered with 429.
    pub force_429: u32,
    /// Every API call fails with 503.
    pub outage: bool,
    /// Webhook events queue up instead of being delivered.
    pub webhooks_paused: bool,
    /// New records stay invisible to search for this long after creation, in ms
    /// (HubSpot's index lags writes by "a few moments").
    pub search_lag_ms: u64,
    /// Webhook events of one change are delivered in random order (HubSpot does not
    /// guarantee ordering).
    pub webhook_shuffle: bool,
    /// Fraction (0–1) of webhook events sent twice (HubSpot documents rare duplicates).
    pub webhook_duplicate_rate: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            error_status: 503,
            latency_ms: 0,
            force_429: 0,
            outage: false,
            webhooks_paused: false,
            search_lag_ms: 0,
            webhook_shuffle: false,
            webhook_duplicate_rate: 0.0,
        }
    }
}

/// A partial update of [`Faults`]; absent fields keep their value.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct FaultsPatch {
    pub error_rate: Option<f64>,
    pub error_status: Option<u16>,
    pub latency_ms: Option<u64>,
    pub force_429: Option<u32>,
    pub outage: Option<bool>,
    pub webhooks_paused: Option<bool>,
    pub search_lag_ms: Option<u64>,
    pub webhook_shuffle: Option<bool>,
    pub webhook_duplicate_rate: Option<f64>,
}

impl Faults {
    /// Applies a patch, or lists every out-of-range value without changing anything.
    pub fn apply(&mut self, patch: FaultsPatch) -> Result<(), Vec<String>> {
        let mut problems = crate::kit::faults::check_common(patch.error_rate, patch.error_status);
        let duplicates = patch.webhook_duplicate_rate;
        crate::kit::faults::check_fraction(&mut problems, "webhook_duplicate_rate", duplicates);
        if !problems.is_empty() {
            return Err(problems);
        }
        let next = Self {
            error_rate: patch.error_rate.unwrap_or(self.error_rate),
            error_status: patch.error_status.unwrap_or(self.error_status),
            latency_ms: patch.latency_ms.unwrap_or(self.latency_ms),
            force_429: patch.force_429.unwrap_or(self.force_429),
            outage: patch.outage.unwrap_or(self.outage),
            webhooks_paused: patch.webhooks_paused.unwrap_or(self.webhooks_paused),
            search_lag_ms: patch.search_lag_ms.unwrap_or(self.search_lag_ms),
            webhook_shuffle: patch.webhook_shuffle.unwrap_or(self.webhook_shuffle),
            webhook_duplicate_rate: (patch.webhook_duplicate_rate)
                .unwrap_or(self.webhook_duplicate_rate),
        };
        *self = next;
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
        assert!(f.outage);
        assert_eq!(f.error_status, 503);
        let bad = FaultsPatch {
            error_rate: Some(1.5),
            error_status: Some(200),
            ..FaultsPatch::default()
        };
        assert_eq!(f.apply(bad).map_err(|p| p.len()), Err(2));
        assert!((f.error_rate - 0.0).abs() < f64::EPSILON);
    }
}
