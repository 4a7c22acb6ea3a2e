//! `POST /webhooks/salesforce/outbound[/{token}]`: Salesforce Outbound Messages, the SOAP
//! `notifications` call a Salesforce admin points at SyncRoot from a Flow or workflow rule
//! (docs/salesforce-outbound-messages.md).
//!
//! ```text
//! receiver off (Salesforce not enabled, or no org id configured) ──404──▶ nothing changes
//! path token wrong or missing (when one is configured)  ──404, as an unknown route──▶ nothing
//! body ──▶ at most MAX_BODY_BYTES                                   ──413 fault──▶ nothing
//!      ──▶ parse (webhooks::salesforce_outbound)                    ──400 fault──▶ nothing
//!      ──▶ OrganizationId is the configured org                    ──401 fault──▶ nothing
//!      ──▶ publish to the Salesforce webhook queue, wait for the confirm ──503 fault──▶ retried
//!      ──▶ 200 <Ack>true</Ack>
//! ```
//!
//! Outbound Messages carry no signature. What stands in for one: HTTPS, the org id (not a
//! secret, but a message from another org is refused), and a secret last path segment compared
//! in constant time. A wrong or missing token is answered exactly like a path that does not
//! exist, so a scanner learns nothing it could not read in the public OpenAPI document, and a
//! 401 would confirm it had found a live receiver worth guessing tokens at. Salesforce shows
//! the 404 in its outbound message queue, which points an admin at the endpoint URL.
//!
//! Every other refusal is a SOAP fault (`text/xml`) whose `faultstring` names the problem,
//! since Salesforce shows it in its queue; Salesforce redelivers anything but the Ack.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::problem::{self, ApiError, Problem};
use super::webhooks::{TAG, Unconfirmed, enabled, publish};
use crate::domain::Crm;
use crate::domain::inbound::InboundBatch;
use crate::metrics::WebhookOutcome;
use crate::webhooks::salesforce_outbound::{self as om, FaultCode};
use crate::webhooks::verify;

/// Largest accepted message, in bytes: 100 notifications of a Contact with every standard
/// field stay well below it.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A SOAP answer.
pub enum Reply {
    /// Queued: the `notificationsResponse` with `<Ack>true</Ack>`.
    Ack,
    /// Refused or not queued: a SOAP fault.
    Fault {
        status: StatusCode,
        code: FaultCode,
        message: String,
    },
}

impl Reply {
    /// A fault for a message the receiver refuses (malformed, too large, another org): each one
    /// is counted as a rejected webhook request.
    fn client(status: StatusCode, message: impl Into<String>) -> Self {
        crate::metrics::webhook_events(Crm::Salesforce.as_str(), WebhookOutcome::Rejected, 1);
        Self::Fault {
            status,
            code: FaultCode::Client,
            message: message.into(),
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Self::Ack => (StatusCode::OK, om::ACK.to_owned()),
            Self::Fault {
                status,
                code,
                message,
            } => {
                tracing::warn!(%status, %message, "Salesforce outbound message refused");
                (status, om::fault(code, &message))
            }
        };
        let xml = HeaderValue::from_static("text/xml; charset=utf-8");
        (status, [(header::CONTENT_TYPE, xml)], body).into_response()
    }
}

/// Receive Salesforce Outbound Messages.
///
/// The SOAP 1.1 `notifications` call of an Outbound Message on Contact (1 to 100
/// notifications). Accepted from the org `SYNCROOT_SALESFORCE_ORG_ID` names; off (404) while it
/// is empty. This path is the receiver only while no `SYNCROOT_SALESFORCE_OUTBOUND_TOKEN` is
/// configured.
#[utoipa::path(
    post, path = "/webhooks/salesforce/outbound", tag = TAG,
    operation_id = "receiveSalesforceOutboundMessage",
    request_body(content = String, content_type = "text/xml", description = "A SOAP notifications envelope"),
    responses(
        (status = 200, description = "Queued: a notificationsResponse with <Ack>true</Ack>", body = String, content_type = "text/xml"),
        (status = 400, description = "Not an outbound message (malformed XML, a DOCTYPE or entity, no or more than 100 notifications): a SOAP fault naming the problem; nothing was queued", body = String, content_type = "text/xml"),
        (status = 401, description = "OrganizationId is not the configured org: a SOAP fault; nothing was queued", body = String, content_type = "text/xml"),
        (status = 404, description = "Salesforce or its Outbound Message receiver is not enabled, or a path token is configured (answered like an unknown path)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 1 MiB: a SOAP fault", body = String, content_type = "text/xml"),
        (status = 503, description = "The message broker did not confirm: a SOAP fault; Salesforce redelivers", body = String, content_type = "text/xml"),
    ),
    security(())
)]
pub async fn receive(State(state): State<AppState>, body: Body) -> Result<Reply, ApiError> {
    receive_at(&state, None, body).await
}

/// Receive Salesforce Outbound Messages at a secret path.
///
/// As `POST /webhooks/salesforce/outbound`, at the path whose last segment is
/// `SYNCROOT_SALESFORCE_OUTBOUND_TOKEN` (compared in constant time). Any other segment is
/// answered like an unknown path.
#[utoipa::path(
    post, path = "/webhooks/salesforce/outbound/{token}", tag = TAG,
    operation_id = "receiveSalesforceOutboundMessageAtToken",
    params(("token" = String, Path, description = "The configured secret path segment")),
    request_body(content = String, content_type = "text/xml", description = "A SOAP notifications envelope"),
    responses(
        (status = 200, description = "Queued: a notificationsResponse with <Ack>true</Ack>", body = String, content_type = "text/xml"),
        (status = 400, description = "Not an outbound message: a SOAP fault naming the problem; nothing was queued", body = String, content_type = "text/xml"),
        (status = 401, description = "OrganizationId is not the configured org: a SOAP fault; nothing was queued", body = String, content_type = "text/xml"),
        (status = 404, description = "Salesforce or its Outbound Message receiver is not enabled, or the token is wrong (answered like an unknown path)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 1 MiB: a SOAP fault", body = String, content_type = "text/xml"),
        (status = 503, description = "The message broker did not confirm: a SOAP fault; Salesforce redelivers", body = String, content_type = "text/xml"),
    ),
    security(())
)]
pub async fn receive_with_token(
    State(state): State<AppState>,
    token: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Reply, ApiError> {
    // A segment that is not valid UTF-8 after decoding cannot be the token.
    let token = token.map(|Path(t)| t).unwrap_or_default();
    receive_at(&state, Some(&token), body).await
}

async fn receive_at(state: &AppState, token: Option<&str>, body: Body) -> Result<Reply, ApiError> {
    enabled(state, Crm::Salesforce)?;
    let cfg = &state.inbound;
    if cfg.salesforce_org_id.is_empty() {
        return Err(ApiError::NotFound(
            "Salesforce Outbound Messages are not enabled (SYNCROOT_SALESFORCE_ORG_ID)".into(),
        ));
    }
    let token_ok = match (&cfg.salesforce_outbound_token, token) {
        (None, None) => true,
        (Some(want), Some(got)) => verify::path_token_matches(want, got),
        _ => false,
    };
    if !token_ok {
        tracing::warn!(
            "Salesforce outbound message at a wrong or missing path token: answered 404"
        );
        return Err(problem::not_found().await);
    }
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return Ok(if too_large {
                Reply::client(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the message is larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                Reply::client(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the body: {e}"),
                )
            });
        }
    };
    let msg = match om::parse(&body) {
        Ok(m) => m,
        Err(e) => return Ok(Reply::client(StatusCode::BAD_REQUEST, e.to_string())),
    };
    if !om::same_id(&msg.organization_id, &cfg.salesforce_org_id) {
        return Ok(Reply::client(
            StatusCode::UNAUTHORIZED,
            format!(
                "OrganizationId {} is not the Salesforce org this SyncRoot accepts Outbound Messages from",
                msg.organization_id
            ),
        ));
    }
    let parsed = om::events(&msg, &cfg.salesforce_integration_user, chrono::Utc::now());
    if parsed.ignored > 0 {
        tracing::debug!(
            ignored = parsed.ignored,
            action = %msg.action_id,
            "outbound message notifications about other objects ignored"
        );
    }
    let batch = InboundBatch::new(Crm::Salesforce, parsed.events);
    match publish(state, &batch).await {
        Ok(()) => Ok(Reply::Ack),
        Err(Unconfirmed) => Ok(Reply::Fault {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: FaultCode::Server,
            message: "the message broker did not confirm the notifications; nothing was queued, \
                      Salesforce will redeliver"
                .into(),
        }),
    }
}
