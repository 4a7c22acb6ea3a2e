//! The pipeline every REST call under `/services/data` goes through: count, faults, session
//! check, daily allowance, handler, after-write faults, `Sforce-Limit-Info`.
//!
//! What it is not: path parsing (`routes.rs`) or the resources themselves (`sobjects.rs`,
//! `composite.rs`, `query.rs`, `bulk.rs`).
//!
//! Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/intro_rest_resources.htm

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;

use super::errors::{ErrorCode, SfError, SfErrors};
use super::faults::{Inject as _, Injected, RETRY_AFTER_SECS, error_for_status};
use super::limits::LIMIT_INFO_HEADER;
use super::routes::{ApiVersion, Route, parse, resources, versions};
use super::state::{Sandbox, lock};
use super::{auth, bulk, composite, query, sobjects, wire};
use crate::kit::after_write as kit_after_write;
use crate::kit::writes as kit_writes;

/// One authenticated REST call, as handlers see it.
pub struct Call<'a> {
    pub sb: &'a Sandbox,
    pub version: &'a ApiVersion,
    pub method: &'a Method,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// `"<METHOD> <route template>"`, the counters key.
    pub template: &'a str,
}

impl Call<'_> {
    pub fn actor(&self) -> super::store::Actor {
        self.sb.api_actor(self.headers, &self.version.text)
    }

    /// Counts records written by this call.
    pub fn written(&self, n: usize) {
        lock(&self.sb.counters).written(self.template, n as u64);
    }

    pub fn param(&self, name: &str) -> Option<String> {
        wire::query_param(self.query, name)
    }
}

/// `HTTP Method 'PUT' not allowed. Allowed are …` (405).
pub fn method_not_allowed(method: &Method, allowed: &str) -> SfError {
    SfError::new(
        ErrorCode::MethodNotAllowed,
        format!("HTTP Method '{method}' not allowed. Allowed are {allowed}"),
    )
}

/// The handler for every path under `/services/data`.
pub async fn handle(
    State(sb): State<Arc<Sandbox>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (version, route) = parse(uri.path());
    let method = effective_method(method, uri.query());
    let template = format!("{method} {}", route.template());
    lock(&sb.counters).call(&template);
    if route == Route::Versions {
        return versions(&sb, &method);
    }
    let mut resp = match (gate(&sb, &headers).await, &version) {
        (Err(resp), _) => resp,
        (Ok(()), None) => SfError::not_found().into_response(),
        (Ok(()), Some(version)) => {
            let call = Call {
                sb: &sb,
                version,
                method: &method,
                query: uri.query(),
                headers: &headers,
                body: &body,
                template: &template,
            };
            let resp = kit_writes::within_call_sync(method.as_str(), uri.path(), || {
                route_call(&call, &route).unwrap_or_else(IntoResponse::into_response)
            });
            after_write(&sb, writes(&method, &route), resp).await
        }
    };
    if let Ok(v) = HeaderValue::from_str(&lock(&sb.meter).header_value()) {
        resp.headers_mut().insert(LIMIT_INFO_HEADER, v);
    }
    resp
}

/// `POST …?_HttpMethod=PATCH` is Salesforce's override for clients that cannot send PATCH.
fn effective_method(method: Method, query: Option<&str>) -> Method {
    match (
        method == Method::POST,
        wire::query_param(query, "_HttpMethod"),
    ) {
        (true, Some(m)) if m.eq_ignore_ascii_case("PATCH") => Method::PATCH,
        (true, Some(m)) if m.eq_ignore_ascii_case("DELETE") => Method::DELETE,
        _ => method,
    }
}

/// Faults, session and allowance checks, in the order a call meets them.
async fn gate(sb: &Sandbox, headers: &HeaderMap) -> Result<(), Response> {
    let early = lock(&sb.faults).before_call();
    if let Some(injected) = early {
        return Err(injected_response(sb, injected));
    }
    let delay = lock(&sb.faults).delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let live = auth::bearer(headers)
        .is_some_and(|t| lock(&sb.sessions).touch(t, Instant::now(), sb.idle_timeout));
    if !live {
        return Err(SfError::invalid_session().into_response());
    }
    let allowance = lock(&sb.meter).consume();
    if let Err(e) = allowance {
        lock(&sb.counters).rate_limited += 1;
        return Err(e.into_response());
    }
    let roll: f64 = rand::rng().random();
    let random = lock(&sb.faults).random_error(roll);
    match random {
        Some(injected) => Err(injected_response(sb, injected)),
        None => Ok(()),
    }
}

fn injected_response(sb: &Sandbox, injected: Injected) -> Response {
    match injected {
        Injected::TooManyRequests(e) => {
            lock(&sb.counters).rate_limited += 1;
            let mut resp = e.into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            resp
        }
        Injected::Error(e) => {
            lock(&sb.counters).errors_injected += 1;
            e.into_response()
        }
    }
}

/// Whether a call writes records: the ones after-write faults hit.
fn writes(method: &Method, route: &Route) -> bool {
    let records = matches!(
        route,
        Route::SObject { .. }
            | Route::SObjectRow { .. }
            | Route::SObjectExternal { .. }
            | Route::Collection
            | Route::CollectionTyped { .. }
            | Route::CollectionUpsert { .. }
    );
    records && matches!(*method, Method::POST | Method::PATCH | Method::DELETE)
}

/// The after-write fault of a committed write (a write answered with a 2xx), if one hits it.
async fn after_write(sb: &Sandbox, is_write: bool, resp: Response) -> Response {
    let roll: f64 = rand::rng().random();
    let fault = (is_write && resp.status().is_success())
        .then(|| lock(&sb.faults).take_after_write(roll))
        .flatten();
    if let Some(f) = fault {
        lock(&sb.counters).after_write_faults.count(f);
    }
    kit_after_write::apply(fault, resp, |status| {
        error_for_status(status).into_response()
    })
    .await
}

fn route_call(call: &Call<'_>, route: &Route) -> Result<Response, SfErrors> {
    match route {
        Route::Resources => resources(call),
        Route::Limits if call.method == Method::GET => Ok(wire::json(
            StatusCode::OK,
            &lock(&call.sb.meter).limits_body(),
        )),
        Route::Limits => Err(method_not_allowed(call.method, "GET,HEAD").into()),
        Route::SObject { name } => sobjects::collection(call, name),
        Route::SObjectRow { name, id } => sobjects::row(call, name, id),
        Route::SObjectExternal { name, field, value } => {
            sobjects::external(call, name, field, value)
        }
        Route::Query { all } => query::run(call, *all),
        Route::QueryMore { locator } => query::more(call, locator),
        Route::Collection => composite::collection(call),
        Route::CollectionTyped { name } => composite::typed(call, name),
        Route::CollectionUpsert { name, field } => composite::upsert(call, name, field),
        Route::QueryJobs => bulk::jobs(call),
        Route::QueryJob { id } => bulk::job(call, id),
        Route::QueryJobResults { id } => bulk::results(call, id),
        Route::Versions | Route::Unknown => Err(SfError::not_found().into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_override_applies_to_post_only() {
        assert_eq!(
            effective_method(Method::POST, Some("_HttpMethod=PATCH")),
            Method::PATCH
        );
        assert_eq!(
            effective_method(Method::GET, Some("_HttpMethod=PATCH")),
            Method::GET
        );
        assert_eq!(effective_method(Method::POST, None), Method::POST);
    }
}
