//! After-write faults: the CRM committed the write, but the client never learns it. The
//! riskiest failure a CRM client meets, because a naive retry of a create makes a second record.
//!
//! Three modes, set with the other faults at `PUT /__sandbox/faults`:
//! - `drop`: the write is committed, then the connection is closed without an answer;
//! - `stall`: the write is committed, then the answer is held for `after_write_stall_ms`
//!   (longer than the client's timeout, so it gives up first);
//! - `error`: the write is committed, then answered `after_write_status` (a 5xx) in the vendor's
//!   error shape.
//!
//! They hit the next `after_write_count` write calls and/or a fraction `after_write_rate` of
//! them, and only calls that wrote (a write route answered with a 2xx). Each sandbox decides
//! which of its routes write and renders its vendor's error; the decision and the hook are here.

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

/// What happens to the answer of a committed write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No after-write fault.
    #[default]
    Off,
    /// Close the connection without an answer.
    Drop,
    /// Hold the answer for `after_write_stall_ms`.
    Stall,
    /// Answer `after_write_status` in the vendor's error shape.
    Error,
}

/// An after-write fault chosen for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterWrite {
    Drop,
    Stall(Duration),
    Error(StatusCode),
}

/// How many after-write faults each mode injected; part of each sandbox's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Injected {
    pub drop: u64,
    pub stall: u64,
    pub error: u64,
}

impl Injected {
    pub fn count(&mut self, fault: AfterWrite) {
        match fault {
            AfterWrite::Drop => self.drop += 1,
            AfterWrite::Stall(_) => self.stall += 1,
            AfterWrite::Error(_) => self.error += 1,
        }
    }
}

/// Applies a chosen fault to the committed call's `response`; `vendor_error` renders the
/// vendor's error body for a status.
pub async fn apply(
    fault: Option<AfterWrite>,
    response: Response,
    vendor_error: impl FnOnce(StatusCode) -> Response,
) -> Response {
    match fault {
        None => response,
        Some(AfterWrite::Stall(hold)) => {
            tokio::time::sleep(hold).await;
            response
        }
        Some(AfterWrite::Error(status)) => vendor_error(status),
        Some(AfterWrite::Drop) => dropped(),
    }
}

/// A response whose body fails before anything is written: hyper then closes the connection
/// without sending the status line, so the client sees the connection end with no answer.
fn dropped() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<axum::body::Bytes, _>(std::io::Error::other(
            "after-write fault: connection dropped",
        ))
    });
    Response::new(Body::from_stream(failing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn error_replaces_the_answer_and_none_keeps_it() {
        let ok = || Response::new(Body::from("ok"));
        let vendor = |s: StatusCode| {
            let mut r = Response::new(Body::from("vendor"));
            *r.status_mut() = s;
            r
        };
        let kept = apply(None, ok(), vendor).await;
        assert_eq!(kept.status(), StatusCode::OK);
        let replaced = apply(
            Some(AfterWrite::Error(StatusCode::BAD_GATEWAY)),
            ok(),
            vendor,
        )
        .await;
        assert_eq!(replaced.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn counts_are_per_mode() {
        let mut n = Injected::default();
        n.count(AfterWrite::Drop);
        n.count(AfterWrite::Stall(Duration::ZERO));
        n.count(AfterWrite::Drop);
        assert_eq!((n.drop, n.stall, n.error), (2, 1, 0));
    }
}
