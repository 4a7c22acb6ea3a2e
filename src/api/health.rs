//! Liveness, readiness and the OpenAPI document (its viewer is `docs`). None of these need a
//! key.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::schema::{Health, Readiness};

pub const TAG: &str = "operations";

/// Liveness: the process is serving requests.
#[utoipa::path(get, path = "/healthz", tag = TAG, operation_id = "healthz", responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: Postgres answers and the RabbitMQ publisher is connected.
#[utoipa::path(
    get, path = "/readyz", tag = TAG, operation_id = "readyz",
    responses(
        (status = 200, description = "Ready to accept writes", body = Readiness),
        (status = 503, description = "A dependency is unavailable", body = Readiness),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let mut checks = BTreeMap::new();
    checks.insert(
        "postgres".to_owned(),
        crate::store::readiness(&state.db).await,
    );
    let mq = if state.publisher.is_connected().await {
        "ok"
    } else {
        "error: not connected"
    };
    checks.insert("rabbitmq".to_owned(), mq.to_owned());
    let ready = checks.values().all(|v| v == "ok");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" }.into(),
        checks,
    };
    (status, axum::Json(body)).into_response()
}

/// Prometheus metrics of this process (text exposition format 0.0.4); docs/metrics.md lists
/// them.
#[utoipa::path(get, path = "/metrics", tag = TAG, operation_id = "getMetrics",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)))]
pub async fn metrics() -> Response {
    crate::metrics::scrape().await
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = TAG, operation_id = "getOpenApi",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.spec.as_ref().clone(),
    )
        .into_response()
}
