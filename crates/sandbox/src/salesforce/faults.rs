//! Fault injection for REST calls, set through `/__sandbox/faults`.
//!
//! What it is: a full outage (every call 503), "the next N calls get 429", a random error rate
//! with a chosen status, added latency, the pause switch for change notifications, and the
//! after-write faults (a committed write whose answer is dropped, stalled or an error; see
//! [`crate::kit::after_write`]). What it is not: a network fault simulator beyond those.

use super::errors::{ErrorCode, SfError};
use axum::http::StatusCode;

/// Seconds suggested in `Retry-After` on a forced 429.
pub const RETRY_AFTER_SECS: u64 = 1;

pub use crate::kit::faults::{Faults, FaultsPatch};

/// What a fault did to a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Injected {
    /// `force_429`: the caller should also get `Retry-After`.
    TooManyRequests(SfError),
    /// `outage` or `error_rate`.
    Error(SfError),
}

/// Salesforce's rendering of the shared faults.
pub trait Inject {
    /// Faults decided before authentication: outage, then forced 429s (consuming one).
    fn before_call(&mut self) -> Option<Injected>;
    /// The random error for a call, given a uniform `roll` in `[0, 1)`.
    fn random_error(&self, roll: f64) -> Option<Injected>;
}

impl Inject for Faults {
    fn before_call(&mut self) -> Option<Injected> {
        if self.outage {
            return Some(Injected::Error(error_for_status(
                StatusCode::SERVICE_UNAVAILABLE,
            )));
        }
        if self.force_429 > 0 {
            self.force_429 -= 1;
            // Salesforce documents no 429 for core REST (crm-apis.md §2.8); this body reuses the
            // limit error code so clients that branch on `errorCode` treat it as rate limiting.
            let e = SfError::new(
                ErrorCode::RequestLimitExceeded,
                format!("Too many requests. Retry after {RETRY_AFTER_SECS} seconds."),
            )
            .with_status(StatusCode::TOO_MANY_REQUESTS);
            return Some(Injected::TooManyRequests(e));
        }
        None
    }

    fn random_error(&self, roll: f64) -> Option<Injected> {
        if roll >= self.error_rate {
            return None;
        }
        let status =
            StatusCode::from_u16(self.error_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        Some(Injected::Error(error_for_status(status)))
    }
}

/// A Salesforce-style error body for an injected status.
pub fn error_for_status(status: StatusCode) -> SfError {
    let (code, message) = match status.as_u16() {
        401 => (ErrorCode::InvalidSessionId, "Session expired or invalid"),
        403 | 429 => (
            ErrorCode::RequestLimitExceeded,
            "TotalRequests Limit exceeded.",
        ),
        404 => (ErrorCode::NotFound, "The requested resource does not exist"),
        502..=504 => (
            ErrorCode::ServerUnavailable,
            "Service temporarily unavailable. Please try again later.",
        ),
        _ => (
            ErrorCode::UnknownException,
            "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567-89012 (-1234567890)",
        ),
    };
    SfError::new(code, message).with_status(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_patch_keeps_other_settings_and_rejects_bad_values() {
        let mut f = Faults::default();
        f.apply(FaultsPatch {
            force_429: Some(2),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.error_status, 503);
        assert!(
            f.apply(FaultsPatch {
                error_rate: Some(1.5),
                force_429: Some(9),
                ..Default::default()
            })
            .is_err()
        );
        assert_eq!(f.force_429, 2);
    }

    #[test]
    fn forced_429s_are_consumed_and_outage_wins() {
        let mut f = Faults {
            force_429: 1,
            ..Default::default()
        };
        assert!(
            matches!(f.before_call(), Some(Injected::TooManyRequests(e)) if e.status == StatusCode::TOO_MANY_REQUESTS)
        );
        assert_eq!(f.before_call(), None);
        f.outage = true;
        assert!(
            matches!(f.before_call(), Some(Injected::Error(e)) if e.code == ErrorCode::ServerUnavailable)
        );
    }

    #[test]
    fn error_rate_uses_the_roll() {
        let f = Faults {
            error_rate: 0.25,
            error_status: 500,
            ..Default::default()
        };
        assert_eq!(f.random_error(0.5), None);
        assert!(
            matches!(f.random_error(0.1), Some(Injected::Error(e)) if e.status.as_u16() == 500 && e.code == ErrorCode::UnknownException)
        );
    }
}
