//! `ApiError`: every error the API returns, rendered as `application/problem+json` (RFC 9457).
//!
//! Internal causes are logged here with their chain and never sent to the client.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::ContactId;
use crate::domain::fields::FieldError;
use crate::queue::publisher::PublishError;
use crate::replay::ReplayError;
use crate::store::heads::HeadError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI identifying the kind of problem, e.g. `urn:syncroot:problem:validation`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Each offending member or parameter, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(nullable = false)]
    pub errors: Vec<ProblemItem>,
    /// For `409` on a taken e-mail address: the contact that has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, value_type = Option<uuid::Uuid>)]
    pub existing_id: Option<ContactId>,
    /// For `403`: the scope the operation needs and the key lacks (`read`, `write`, `admin`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub scope: Option<String>,
}

/// One offending member of the body (`pointer`) or request parameter (`parameter`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemItem {
    /// JSON Pointer (RFC 6901) into the request body; `""` is the whole body.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub pointer: Option<String>,
    /// Name of the offending query parameter or header.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub parameter: Option<String>,
    pub message: String,
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("invalid request parameters")]
    BadParameters(Vec<(String, String)>),
    #[error("invalid body")]
    Invalid(Vec<FieldError>),
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// A valid key without the scope the operation needs.
    #[error("forbidden: {detail}")]
    Forbidden { scope: &'static str, detail: String },
    /// A key over its rate or its in-flight cap; `Retry-After` says when to come back.
    #[error("rate limited: {detail}")]
    RateLimited {
        retry_after: Duration,
        detail: String,
    },
    /// A webhook whose signature or timestamp does not verify.
    #[error("webhook refused: {0}")]
    SignatureRefused(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("e-mail address in use")]
    EmailTaken(Option<ContactId>),
    #[error("dead letter cannot be replayed: {0}")]
    NotReplayable(String),
    /// A job's state forbids the request (a second unfinished job of one kind, a cancel of a
    /// finished job).
    #[error("job conflict: {0}")]
    JobConflict(String),
    #[error("idempotency key reused with a different body")]
    IdempotencyMismatch,
    #[error("body larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::BadParameters(_) => StatusCode::BAD_REQUEST,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) | Self::SignatureRefused(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::EmailTaken(_)
            | Self::IdempotencyMismatch
            | Self::NotReplayable(_)
            | Self::JobConflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn problem(self) -> Problem {
        let status = self.status().as_u16();
        let (kind, title, detail) = match &self {
            Self::MalformedJson(d) => ("malformed-json", "Malformed JSON", format!("the body is not valid JSON: {d}")),
            Self::BadParameters(_) => ("invalid-parameters", "Invalid request parameters", "one or more request parameters are invalid".into()),
            Self::Invalid(errs) => ("validation", "Validation failed", format!("{} field(s) failed validation", errs.len())),
            Self::Unauthorized(d) => ("unauthorized", "Unauthorized", (*d).to_owned()),
            Self::Forbidden { detail, .. } => ("forbidden", "Forbidden", detail.clone()),
            Self::RateLimited { detail, .. } => ("rate-limited", "Too many requests", detail.clone()),
            Self::SignatureRefused(d) => ("signature", "Webhook signature refused", d.clone()),
            Self::NotFound(d) => ("not-found", "Not found", d.clone()),
            Self::MethodNotAllowed => ("method-not-allowed", "Method not allowed", "this path does not support this method".into()),
            Self::EmailTaken(_) => ("email-taken", "E-mail address in use", "another live contact already has this e-mail address".into()),
            Self::IdempotencyMismatch => (
                "idempotency-key-reused",
                "Idempotency key reused",
                "this Idempotency-Key was already used with a different request body; use a new key for a new request".into(),
            ),
            Self::NotReplayable(d) => ("not-replayable", "Cannot be replayed", d.clone()),
            Self::JobConflict(d) => ("job-conflict", "Job conflict", d.clone()),
            Self::PayloadTooLarge(limit) => ("payload-too-large", "Payload too large", format!("the body must be at most {limit} bytes")),
            Self::UnsupportedMediaType(d) => ("unsupported-media-type", "Unsupported media type", d.clone()),
            Self::Unavailable(d) => ("unavailable", "Service unavailable", d.clone()),
            Self::Internal(_) => ("internal", "Internal server error", "an unexpected error occurred; it has been logged".into()),
        };
        let existing_id = match &self {
            Self::EmailTaken(id) => *id,
            _ => None,
        };
        let scope = match &self {
            Self::Forbidden { scope, .. } => Some((*scope).to_owned()),
            _ => None,
        };
        let errors = match self {
            Self::Invalid(errs) => errs
                .into_iter()
                .map(|e| ProblemItem {
                    pointer: Some(e.pointer),
                    parameter: None,
                    message: e.message,
                })
                .collect(),
            Self::BadParameters(params) => params
                .into_iter()
                .map(|(p, message)| ProblemItem {
                    pointer: None,
                    parameter: Some(p),
                    message,
                })
                .collect(),
            _ => Vec::new(),
        };
        Problem {
            kind: format!("urn:syncroot:problem:{kind}"),
            title: title.into(),
            status,
            detail,
            errors,
            existing_id,
            scope,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(e) => tracing::error!(error = ?e, "request failed"),
            Self::Unavailable(d) => {
                tracing::warn!(detail = %d, "request refused: dependency unavailable")
            }
            Self::SignatureRefused(d) => tracing::warn!(detail = %d, "webhook refused"),
            _ => {}
        }
        let extra = match &self {
            Self::Unauthorized(_) => {
                Some((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")))
            }
            Self::Unavailable(_) => Some((header::RETRY_AFTER, HeaderValue::from_static("1"))),
            // Whole seconds (RFC 9110), rounded up so a client that waits that long gets in.
            Self::RateLimited { retry_after, .. } => Some((
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs_f64().ceil().max(1.0) as u64),
            )),
            _ => None,
        };
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut resp = (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            body,
        )
            .into_response();
        if let Some((name, value)) = extra {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

/// Postgres being unreachable or restarting is a 503 (retry later); any other database error
/// is a 500, logged with its cause.
impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if crate::store::is_transient(&e) {
            tracing::warn!(error = %e, "database unavailable");
            Self::Unavailable("the database is unavailable; retry shortly".into())
        } else {
            Self::internal(e)
        }
    }
}

impl From<HeadError> for ApiError {
    fn from(e: HeadError) -> Self {
        match e {
            HeadError::EmailTaken(existing) => Self::EmailTaken(existing),
            HeadError::Db(e) => e.into(),
        }
    }
}

/// The broker being away is a 503 with `Retry-After`, as for contact writes: an entry whose
/// replay was not confirmed stays as it was. An entry with nowhere to go is a 409: retrying
/// cannot help, discarding can.
impl From<ReplayError> for ApiError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Db(e) => e.into(),
            ReplayError::Publish(PublishError::Unroutable) => Self::NotReplayable(
                "the broker has no queue for this entry (its CRM is not enabled, or a kept \
                 message's route is gone); discard it, or fix that and replay again"
                    .into(),
            ),
            ReplayError::Publish(e) => {
                tracing::warn!(error = %e, "replay not confirmed by the broker");
                Self::Unavailable(
                    "the message broker did not confirm the replay; entries not sent are \
                     unchanged, retry shortly"
                        .into(),
                )
            }
            ReplayError::Unroutable(why) => Self::NotReplayable(format!(
                "this entry cannot be sent anywhere ({why}); discard it instead"
            )),
        }
    }
}

/// The fallback for paths no route matches.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route; see /openapi.json for the API's paths".into())
}

/// The fallback for known paths with an unsupported method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
