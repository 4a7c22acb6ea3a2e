//! The gate every API call passes before its handler: counting, injected latency and
//! faults, Bearer authentication, the quotas, and on the way out the after-write faults and
//! HubSpot's rate-limit headers. Control-API routes bypass it.
//! <https://developers.hubspot.com/docs/api/usage-details>

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::counters::RecordsCarried;
use super::errors::ApiError;
use super::ratelimit::{BURST_WINDOW, Quota};
use super::state::{AppState, lock};
use crate::kit::after_write;
use crate::kit::writes as kit_writes;

pub async fn gate(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let route = route_key(req.method(), matched.as_ref().map(MatchedPath::as_str));
    lock(&state.counters).count_call(&route);
    let delay = lock(&state.faults).common.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let is_search = route.ends_with("/search");
    let quota = match admit(&state, req.headers(), is_search) {
        Ok(quota) => quota,
        Err((err, quota)) => return with_quota(err.into_response(), quota),
    };
    let is_write = writes(req.method(), &route);
    let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
    let response = kit_writes::within_call(&method, &path, next.run(req)).await;
    if let Some(RecordsCarried(n)) = response.extensions().get::<RecordsCarried>() {
        lock(&state.counters).count_records(&route, *n);
    }
    let fault = (is_write && response.status().is_success())
        .then(|| lock(&state.faults).common.take_after_write(rand::random()))
        .flatten();
    if let Some(f) = fault {
        lock(&state.counters).after_write_faults.count(f);
    }
    let response = after_write::apply(fault, response, |status| {
        ApiError::injected(status).into_response()
    })
    .await;
    with_quota(response, quota)
}

/// Whether a call of `route` (a [`route_key`]) writes records: the ones after-write faults hit.
fn writes(method: &Method, route: &str) -> bool {
    let batch_write = ["create", "update", "upsert", "archive"]
        .iter()
        .any(|op| route.ends_with(&format!("/batch/{op}")));
    match *method {
        Method::PATCH | Method::DELETE => true,
        Method::POST => batch_write || route == "POST /crm/v3/objects/contacts",
        _ => false,
    }
}

/// `"<METHOD> <route template>"`, with the `0-1` object-type alias folded into `contacts`
/// so both spellings count together.
pub fn route_key(method: &Method, template: Option<&str>) -> String {
    let template = template.unwrap_or("<unmatched>");
    let folded = template.replacen("/objects/0-1", "/objects/contacts", 1);
    let folded = folded.replacen("/properties/0-1", "/properties/contacts", 1);
    format!("{method} {folded}")
}

type Refusal = (ApiError, Option<Quota>);

/// Decides whether a call reaches its handler. Order: outage, forced 429, auth, quotas,
/// random errors — so an outage hides everything, as a real one would.
fn admit(state: &AppState, headers: &HeaderMap, is_search: bool) -> Result<Option<Quota>, Refusal> {
    let mut faults = lock(&state.faults);
    if faults.common.outage {
        lock(&state.counters).errors_injected += 1;
        return Err((ApiError::injected(StatusCode::SERVICE_UNAVAILABLE), None));
    }
    if faults.common.force_429 > 0 {
        faults.common.force_429 -= 1;
        lock(&state.counters).rate_limited += 1;
        return Err((ApiError::rate_limited("TEN_SECONDLY_ROLLING"), None));
    }
    let (error_rate, error_status) = (faults.common.error_rate, faults.common.error_status);
    drop(faults);
    if !is_authorized(headers, &state.access_token) {
        lock(&state.counters).unauthorized += 1;
        return Err((ApiError::unauthorized(), None));
    }
    let quota = check_quota(state, is_search)?;
    if error_rate > 0.0 && rand::random::<f64>() < error_rate {
        lock(&state.counters).errors_injected += 1;
        let status = StatusCode::from_u16(error_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return Err((ApiError::injected(status), quota));
    }
    Ok(quota)
}

/// Search has its own per-second limit and carries no rate-limit headers; everything else
/// uses the burst window and the daily allowance.
fn check_quota(state: &AppState, is_search: bool) -> Result<Option<Quota>, Refusal> {
    let mut limiter = lock(&state.limiter);
    let verdict = if is_search {
        limiter
            .check_search(Instant::now())
            .map(|()| None)
            .map_err(|p| (p, None))
    } else {
        let today = Utc::now().date_naive();
        limiter
            .check(Instant::now(), today)
            .map(Some)
            .map_err(|(p, q)| (p, Some(q)))
    };
    drop(limiter);
    verdict.map_err(|(policy, quota)| {
        lock(&state.counters).rate_limited += 1;
        (ApiError::rate_limited(policy.name()), quota)
    })
}

fn is_authorized(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .is_some_and(|given| given.trim() == token)
}

fn with_quota(mut response: Response, quota: Option<Quota>) -> Response {
    let Some(q) = quota else {
        return response;
    };
    let window_ms = BURST_WINDOW.as_millis() as u64;
    let headers = response.headers_mut();
    let pairs: [(&str, u64); 7] = [
        ("x-hubspot-ratelimit-max", q.max.into()),
        ("x-hubspot-ratelimit-remaining", q.remaining.into()),
        ("x-hubspot-ratelimit-interval-milliseconds", window_ms),
        ("x-hubspot-ratelimit-daily", q.daily.into()),
        (
            "x-hubspot-ratelimit-daily-remaining",
            q.daily_remaining.into(),
        ),
        ("x-hubspot-ratelimit-secondly", q.secondly.into()),
        (
            "x-hubspot-ratelimit-secondly-remaining",
            q.secondly_remaining.into(),
        ),
    ];
    for (name, value) in pairs {
        headers.insert(name, HeaderValue::from(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_routes_count_under_contacts() {
        let key = route_key(&Method::POST, Some("/crm/v3/objects/0-1/batch/upsert"));
        assert_eq!(key, "POST /crm/v3/objects/contacts/batch/upsert");
    }

    #[test]
    fn only_record_writes_are_writes() {
        let key = |m: &Method, path| route_key(m, Some(path));
        let post = Method::POST;
        for path in [
            "/crm/v3/objects/contacts",
            "/crm/v3/objects/0-1/batch/upsert",
            "/crm/v3/objects/contacts/batch/create",
            "/crm/v3/objects/contacts/batch/archive",
        ] {
            assert!(writes(&post, &key(&post, path)), "{path}");
        }
        for path in [
            "/crm/v3/objects/contacts/search",
            "/crm/v3/objects/contacts/batch/read",
        ] {
            assert!(!writes(&post, &key(&post, path)), "{path}");
        }
        let row = "/crm/v3/objects/contacts/{contactId}";
        assert!(writes(&Method::PATCH, &key(&Method::PATCH, row)));
        assert!(!writes(&Method::GET, &key(&Method::GET, row)));
    }

    #[test]
    fn only_the_configured_bearer_token_is_accepted() {
        let mut headers = HeaderMap::new();
        assert!(!is_authorized(&headers, "t"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert!(!is_authorized(&headers, "t"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        assert!(is_authorized(&headers, "t"));
    }
}
