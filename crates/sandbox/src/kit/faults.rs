//! The fault settings both sandboxes take at `PUT /__sandbox/faults`, and their checks: every
//! problem is listed, so one request tells a caller all that is wrong with it. A sandbox adds
//! its own settings beside these (HubSpot's search lag and webhook disorder) and renders an
//! injected fault in its vendor's error shape.

use serde::{Deserialize, Serialize};

/// The fault settings both sandboxes have.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Faults {
    /// Fraction (0–1) of API calls answered with `error_status` and the vendor's error body.
    pub error_rate: f64,
    /// HTTP status of injected errors (400–599).
    pub error_status: u16,
    /// Added before every API call is handled, in ms.
    pub latency_ms: u64,
    /// The next N API calls are answered with 429.
    pub force_429: u32,
    /// Every API call fails with 503 while true.
    pub outage: bool,
    /// Webhooks (change notifications) queue up, undelivered, while true.
    pub webhooks_paused: bool,
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
        }
    }
}

/// A partial update of [`Faults`]; absent fields keep their value, unknown ones are refused.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsPatch {
    pub error_rate: Option<f64>,
    pub error_status: Option<u16>,
    pub latency_ms: Option<u64>,
    pub force_429: Option<u32>,
    pub outage: Option<bool>,
    pub webhooks_paused: Option<bool>,
}

impl FaultsPatch {
    /// Every problem of the patch.
    pub fn problems(&self) -> Vec<String> {
        check_common(self.error_rate, self.error_status)
    }
}

impl Faults {
    /// Applies a patch, or lists every problem without changing anything.
    pub fn apply(&mut self, p: FaultsPatch) -> Result<(), Vec<String>> {
        let problems = p.problems();
        if !problems.is_empty() {
            return Err(problems);
        }
        self.error_rate = p.error_rate.unwrap_or(self.error_rate);
        self.error_status = p.error_status.unwrap_or(self.error_status);
        self.latency_ms = p.latency_ms.unwrap_or(self.latency_ms);
        self.force_429 = p.force_429.unwrap_or(self.force_429);
        self.outage = p.outage.unwrap_or(self.outage);
        self.webhooks_paused = p.webhooks_paused.unwrap_or(self.webhooks_paused);
        Ok(())
    }
}

/// Appends a problem when a fraction is outside 0–1.
pub fn check_fraction(problems: &mut Vec<String>, name: &str, value: Option<f64>) {
    if let Some(v) = value.filter(|v| !(0.0..=1.0).contains(v)) {
        problems.push(format!("{name} must be within 0..=1, got {v}"));
    }
}

/// The problems of the settings both sandboxes share.
pub fn check_common(error_rate: Option<f64>, error_status: Option<u16>) -> Vec<String> {
    let mut problems = Vec::new();
    check_fraction(&mut problems, "error_rate", error_rate);
    if let Some(status) = error_status.filter(|s| !(400..=599).contains(s)) {
        problems.push(format!(
            "error_status must be within 400..=599, got {status}"
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_listed() {
        let p = check_common(Some(1.5), Some(200));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("error_rate") && p[1].starts_with("error_status"));
        assert!(check_common(Some(0.5), Some(503)).is_empty());
        assert!(check_common(None, None).is_empty());
    }
}
