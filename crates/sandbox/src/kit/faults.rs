//! The fault settings both sandboxes take at `PUT /__sandbox/faults`, and their checks: every
//! problem is listed, so one request tells a caller all that is wrong with it. A sandbox adds
//! its own settings beside these (HubSpot's search lag and webhook disorder) and renders an
//! injected fault in its vendor's error shape. The after-write faults (`after_write_…`) are
//! described in [`super::after_write`].

use std::time::Duration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::after_write::{AfterWrite, Mode};

/// Longest `after_write_stall_ms`: below the sandboxes' own request timeout (30 s), which
/// would otherwise answer 503 in place of the stalled answer.
pub const MAX_STALL_MS: u64 = 25_000;

/// The fault settings both sandboxes have.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Faults {
    /// Fraction (0–1) of API calls answered with `error_status` and the vendor's error body.
    pub error_rate: f64,
    /// HTTP status of injected errors (400–599).
    pub error_status: u16,
    /// Added before every API call is handled, in ms.
    pub latency_ms: u64,
    /// Up to this much more, drawn for each call, in ms: calls made together may finish in
    /// any order, as real ones do.
    pub latency_jitter_ms: u64,
    /// The next N API calls are answered with 429.
    pub force_429: u32,
    /// Every API call fails with 503 while true.
    pub outage: bool,
    /// Webhooks (change notifications) queue up, undelivered, while true.
    pub webhooks_paused: bool,
    /// What happens to the answer of a committed write hit by an after-write fault.
    pub after_write: Mode,
    /// The next N committed writes are hit.
    pub after_write_count: u32,
    /// Fraction (0–1) of committed writes hit (after the counted ones).
    pub after_write_rate: f64,
    /// How long `stall` holds the answer, in ms (1–25 000).
    pub after_write_stall_ms: u64,
    /// HTTP status `error` answers (500–599).
    pub after_write_status: u16,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            error_status: 503,
            latency_ms: 0,
            latency_jitter_ms: 0,
            force_429: 0,
            outage: false,
            webhooks_paused: false,
            after_write: Mode::Off,
            after_write_count: 0,
            after_write_rate: 0.0,
            after_write_stall_ms: 5_000,
            after_write_status: 503,
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
    pub latency_jitter_ms: Option<u64>,
    pub force_429: Option<u32>,
    pub outage: Option<bool>,
    pub webhooks_paused: Option<bool>,
    pub after_write: Option<Mode>,
    pub after_write_count: Option<u32>,
    pub after_write_rate: Option<f64>,
    pub after_write_stall_ms: Option<u64>,
    pub after_write_status: Option<u16>,
}

impl FaultsPatch {
    /// Every problem of the patch.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = check_common(self.error_rate, self.error_status);
        check_fraction(&mut problems, "after_write_rate", self.after_write_rate);
        if let Some(ms) = self
            .after_write_stall_ms
            .filter(|ms| !(1..=MAX_STALL_MS).contains(ms))
        {
            problems.push(format!(
                "after_write_stall_ms must be within 1..={MAX_STALL_MS}, got {ms}"
            ));
        }
        if let Some(status) = self.after_write_status.filter(|s| !(500..=599).contains(s)) {
            problems.push(format!(
                "after_write_status must be within 500..=599, got {status}"
            ));
        }
        problems
    }
}

impl Faults {
    /// How long the next call waits before it is handled: the latency plus its jitter.
    pub fn delay(&self) -> Duration {
        let jitter = match self.latency_jitter_ms {
            0 => 0,
            j => rand::random_range(0..=j),
        };
        Duration::from_millis(self.latency_ms + jitter)
    }

    /// Applies a patch, or lists every problem without changing anything.
    pub fn apply(&mut self, p: FaultsPatch) -> Result<(), Vec<String>> {
        let problems = p.problems();
        if !problems.is_empty() {
            return Err(problems);
        }
        self.error_rate = p.error_rate.unwrap_or(self.error_rate);
        self.error_status = p.error_status.unwrap_or(self.error_status);
        self.latency_ms = p.latency_ms.unwrap_or(self.latency_ms);
        self.latency_jitter_ms = p.latency_jitter_ms.unwrap_or(self.latency_jitter_ms);
        self.force_429 = p.force_429.unwrap_or(self.force_429);
        self.outage = p.outage.unwrap_or(self.outage);
        self.webhooks_paused = p.webhooks_paused.unwrap_or(self.webhooks_paused);
        self.after_write = p.after_write.unwrap_or(self.after_write);
        self.after_write_count = p.after_write_count.unwrap_or(self.after_write_count);
        self.after_write_rate = p.after_write_rate.unwrap_or(self.after_write_rate);
        self.after_write_stall_ms = p.after_write_stall_ms.unwrap_or(self.after_write_stall_ms);
        self.after_write_status = p.after_write_status.unwrap_or(self.after_write_status);
        Ok(())
    }

    /// The after-write fault for a call that committed a write, given a uniform `roll` in
    /// `[0, 1)`: one of the counted calls first (consuming it), else by the rate.
    pub fn take_after_write(&mut self, roll: f64) -> Option<AfterWrite> {
        if self.after_write == Mode::Off {
            return None;
        }
        if self.after_write_count > 0 {
            self.after_write_count -= 1;
        } else if roll >= self.after_write_rate {
            return None;
        }
        Some(match self.after_write {
            Mode::Off | Mode::Drop => AfterWrite::Drop,
            Mode::Stall => AfterWrite::Stall(Duration::from_millis(self.after_write_stall_ms)),
            Mode::Error => AfterWrite::Error(
                StatusCode::from_u16(self.after_write_status)
                    .unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            ),
        })
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

    #[test]
    fn after_write_settings_list_every_problem_and_change_nothing() {
        let mut f = Faults::default();
        let bad = FaultsPatch {
            after_write: Some(Mode::Stall),
            after_write_rate: Some(-0.1),
            after_write_stall_ms: Some(0),
            after_write_status: Some(404),
            ..FaultsPatch::default()
        };
        let problems = f.apply(bad).expect_err("refused");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(f, Faults::default());
        let json = r#"{"after_write": "error", "after_write_count": 1}"#;
        let good: FaultsPatch = serde_json::from_str(json).expect("parses");
        assert!(f.apply(good).is_ok());
        assert_eq!((f.after_write, f.after_write_count), (Mode::Error, 1));
        assert!(serde_json::from_str::<FaultsPatch>(r#"{"after_write": "explode"}"#).is_err());
    }

    #[test]
    fn counted_after_write_faults_come_first_then_the_rate() {
        let mut f = Faults {
            after_write: Mode::Stall,
            after_write_count: 1,
            after_write_stall_ms: 7,
            ..Faults::default()
        };
        let stall = Some(AfterWrite::Stall(Duration::from_millis(7)));
        assert_eq!(f.take_after_write(0.99), stall);
        assert_eq!(f.take_after_write(0.0), None, "count spent, rate 0");
        f.after_write_rate = 0.5;
        assert_eq!(f.take_after_write(0.4), stall);
        assert_eq!(f.take_after_write(0.6), None);
        f.after_write = Mode::Error;
        f.after_write_status = 502;
        let error = Some(AfterWrite::Error(StatusCode::BAD_GATEWAY));
        assert_eq!(f.take_after_write(0.1), error);
        f.after_write = Mode::Off;
        f.after_write_count = 3;
        assert_eq!(f.take_after_write(0.0), None);
        assert_eq!(f.after_write_count, 3, "off consumes nothing");
    }
}
