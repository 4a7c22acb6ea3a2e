//! The HTTP side of metrics: the middleware that counts and times every request by its matched
//! route template, and the `/metrics` handler every listener serves.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{HTTP_DURATION, HTTP_REQUESTS};

/// What requests no route matched are counted under: their paths are whatever a client sent,
/// which must never become a label.
const UNMATCHED: &str = "unmatched";

/// Counts and times one request under its route template (`/contacts/{id}`), method and status.
/// Added with `Router::layer`, so it sees the matched route and the fallback's answers alike.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let method = method_label(req.method());
    let started = Instant::now();
    let response = next.run(req).await;
    let took = started.elapsed().as_secs_f64();
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route, "method" => method).record(took);
    response
}

/// The standard methods by name; anything else (a client can send any token) as `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `GET /metrics`: the process's metrics in the Prometheus text exposition format.
pub async fn scrape() -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        super::render(),
    )
        .into_response()
}
