//! `POST /webhooks/hubspot` and `POST /webhooks/salesforce`: the CRMs' change notifications.
//! (Salesforce Outbound Messages, SOAP, are in `outbound_message`; they share [`publish`].)
//!
//! ```text
//! raw body ──▶ verify the signature and timestamp (webhooks::verify) ──401──▶ nothing changes
//!          ──▶ parse (webhooks::<crm>)                                ──400──▶ nothing changes
//!          ──▶ publish to the CRM's webhook queue, wait for the confirm ──503──▶ the CRM retries
//!          ──▶ 204
//! ```
//!
//! Nothing is read from the database here, so the answer comes well inside HubSpot's 5-second
//! timeout; the webhook worker does the work. No API key: the provider's signature is the
//! credential.

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};

use super::AppState;
use super::problem::{ApiError, Problem};
use crate::domain::Crm;
use crate::domain::inbound::InboundBatch;
use crate::metrics::{self, WebhookOutcome};
use crate::webhooks::verify::{self, HubspotRequest, HubspotScheme};
use crate::webhooks::{hubspot, salesforce};

pub const TAG: &str = "webhooks";

/// Receive HubSpot webhooks.
///
/// HubSpot's Webhooks API v3 payload: a JSON array of events. Verified with HubSpot's v3
/// signature (HMAC-SHA256 over method, the full URL HubSpot called, body and timestamp) within
/// the replay window, against every configured app client secret; v1/v2 only where enabled.
/// Contact creations, property changes and restores are applied by the webhook worker;
/// other subscriptions are ignored.
#[utoipa::path(
    post, path = "/webhooks/hubspot", tag = TAG, operation_id = "receiveHubspotWebhook",
    params(
        ("X-HubSpot-Signature-v3" = String, Header, description = "Base64 HMAC-SHA256 signature (v3)"),
        ("X-HubSpot-Request-Timestamp" = String, Header, description = "Epoch milliseconds; within the replay window"),
    ),
    request_body(content = Vec<Object>, content_type = "application/json", description = "HubSpot webhook events"),
    responses(
        (status = 204, description = "Verified and queued"),
        (status = 400, description = "Verified, but not a HubSpot event array", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, forged, tampered or stale signature; nothing was queued", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "HubSpot is not an enabled CRM", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The message broker did not confirm; HubSpot retries", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
pub async fn hubspot(
    State(state): State<AppState>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    enabled(&state, Crm::Hubspot)?;
    let cfg = &state.inbound;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let full_uri = format!("{}{path}", cfg.public_url.as_deref().unwrap_or_default());
    let pairs = header_pairs(&headers);
    let request = HubspotRequest {
        method: method.as_str(),
        uri: &full_uri,
        body: &body,
        headers: &pairs,
    };
    let scheme = HubspotScheme {
        allow_v1: cfg.hubspot_allow_v1,
        allow_v2: cfg.hubspot_allow_v2,
    };
    verify::verify_hubspot(&request, &cfg.hubspot_secrets, scheme, now_ms(), cfg.window)
        .map_err(|r| rejected(Crm::Hubspot, ApiError::SignatureRefused(r.to_string())))?;
    let parsed = hubspot::parse(&body, &cfg.hubspot_app_id)
        .map_err(|e| rejected(Crm::Hubspot, ApiError::MalformedJson(e.to_string())))?;
    if parsed.ignored > 0 {
        tracing::debug!(
            ignored = parsed.ignored,
            "HubSpot events of other subscriptions ignored"
        );
    }
    queue(&state, InboundBatch::new(Crm::Hubspot, parsed.events)).await
}

/// Receive Salesforce change notifications.
///
/// SyncRoot's signed convention (docs/salesforce-webhooks.md): `{"events": [...]}` shaped
/// like Change Data Capture events, with `X-Sync-Signature` = Base64(HMAC-SHA256(secret,
/// `X-Sync-Timestamp` + "." + body)) within the replay window.
#[utoipa::path(
    post, path = "/webhooks/salesforce", tag = TAG, operation_id = "receiveSalesforceWebhook",
    params(
        ("X-Sync-Signature" = String, Header, description = "Base64 HMAC-SHA256 of timestamp + '.' + body"),
        ("X-Sync-Timestamp" = String, Header, description = "Epoch milliseconds; within the replay window"),
    ),
    request_body(content = Object, content_type = "application/json", description = "{\"events\": [change events]}"),
    responses(
        (status = 204, description = "Verified and queued"),
        (status = 400, description = "Verified, but not a change notification", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, forged, tampered or stale signature; nothing was queued", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Salesforce is not an enabled CRM", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The message broker did not confirm; the sender retries", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
pub async fn salesforce(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    enabled(&state, Crm::Salesforce)?;
    let cfg = &state.inbound;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    verify::verify_sync_signature(
        header("x-sync-timestamp"),
        header("x-sync-signature"),
        &body,
        &cfg.salesforce_secrets,
        now_ms(),
        cfg.window,
    )
    .map_err(|r| rejected(Crm::Salesforce, ApiError::SignatureRefused(r.to_string())))?;
    let me = salesforce::Identity {
        client_name: &state.salesforce_client_name,
        integration_user: &cfg.salesforce_integration_user,
    };
    let parsed = salesforce::parse(&body, &me)
        .map_err(|e| rejected(Crm::Salesforce, ApiError::MalformedJson(e.to_string())))?;
    queue(&state, InboundBatch::new(Crm::Salesforce, parsed.events)).await
}

pub(super) fn enabled(state: &AppState, crm: Crm) -> Result<(), ApiError> {
    if state.crms.contains(&crm) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "{crm} is not an enabled CRM (SYNCROOT_CRMS)"
        )))
    }
}

/// Counts a refused request (forged, stale, not the CRM's format) and passes its error on.
fn rejected(crm: Crm, e: ApiError) -> ApiError {
    metrics::webhook_events(crm.as_str(), WebhookOutcome::Rejected, 1);
    e
}

async fn queue(state: &AppState, batch: InboundBatch) -> Result<StatusCode, ApiError> {
    publish(state, &batch).await.map_err(|Unconfirmed| {
        ApiError::Unavailable(
            "the message broker did not confirm the events; nothing was queued, retry shortly"
                .into(),
        )
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// The broker did not confirm a webhook batch (it was logged); the sender must retry.
#[derive(Debug)]
pub(super) struct Unconfirmed;

/// Publishes a receiver's batch to its CRM's webhook queue and waits for the broker's confirm:
/// the one path every receiver takes (each renders the outcome in its CRM's terms). An empty
/// batch is not published.
pub(super) async fn publish(state: &AppState, batch: &InboundBatch) -> Result<(), Unconfirmed> {
    if batch.events.is_empty() {
        return Ok(());
    }
    state.publisher.publish_inbound(batch).await.map_err(|e| {
        tracing::warn!(error = %e, crm = %batch.crm, "webhook batch not confirmed by the broker");
        Unconfirmed
    })?;
    let (crm, n) = (batch.crm.as_str(), batch.events.len());
    metrics::webhook_events(crm, WebhookOutcome::Accepted, n);
    Ok(())
}

fn header_pairs(headers: &HeaderMap) -> Vec<(&str, &str)> {
    headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
        .collect()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
