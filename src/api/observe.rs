//! Every API request's span and access log line, and its request id.
//!
//! The request id is the caller's `X-Request-Id` when it is a plausible id (1 to
//! [`MAX_REQUEST_ID`] characters of letters, digits and `-_.:`), else a fresh UUID; either way
//! it is echoed in the response's `X-Request-Id` and carried by every log line of the request.
//! A caller's W3C `traceparent` makes the request's span part of the caller's trace.
//!
//! The span names the route template (`/contacts/{id}`), never the URL: a query string can hold
//! an e-mail address (`?email=`) and a path a secret (the Outbound Message token).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;
use tracing::field::Empty;

/// `X-Request-Id`.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id accepted from a caller.
pub const MAX_REQUEST_ID: usize = 128;

/// The middleware: wraps the request in its span, logs its outcome, echoes the request id.
pub async fn observe(req: Request, next: Next) -> Response {
    let id = request_id(req.headers().get(&REQUEST_ID));
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        request_id = %id,
        http.response.status_code = Empty,
    );
    crate::telemetry::context::follow_request(&span, req.headers());
    let started = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    let ms = started.elapsed().as_millis() as u64;
    span.record("http.response.status_code", status);
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(status, ms, "request failed");
        } else {
            tracing::info!(status, ms, "request answered");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    resp
}

/// The caller's id when plausible, else a fresh one.
fn request_id(given: Option<&HeaderValue>) -> String {
    given
        .and_then(|v| v.to_str().ok())
        .filter(|v| plausible(v))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

fn plausible(id: &str) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plausible_id_is_kept_and_anything_else_replaced() {
        let kept = |s: &str| request_id(Some(&HeaderValue::from_str(s).unwrap())) == s;
        assert!(kept("req-42"));
        assert!(kept("01HZX3J6Q0:api.a_b"));
        assert!(kept(&"a".repeat(MAX_REQUEST_ID)));
        assert!(!kept(&"a".repeat(MAX_REQUEST_ID + 1)));
        assert!(!kept("ada@example.com"));
        assert!(!kept("two words"));
        assert!(!kept(""));
        let fresh = request_id(None);
        assert!(uuid::Uuid::parse_str(&fresh).is_ok(), "{fresh}");
        let opaque = HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
        assert_ne!(request_id(Some(&opaque)), "café");
    }
}
