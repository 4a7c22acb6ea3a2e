//! HubSpot's error bodies and the status/category table the sandbox answers with.
//!
//! Every failure a client can see is an [`ApiError`]; this module renders it exactly as
//! HubSpot does (`status`, `message`, `correlationId`, `category`, optional `errors[]` and
//! `context`, or the rate-limit shape with `errorType`/`policyName`). It does not decide when
//! to fail: handlers and the request gate do.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::schema::PropertyIssue;
use super::store::WriteError;

/// One entry of `errors[]`.
/// <https://developers.hubspot.com/docs/api-reference/error-handling>
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ErrorDetail {
    pub message: String,
    pub code: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, Vec<String>>,
}

/// HubSpot's error body; every field but `status` and `message` is optional on the wire.
/// <https://developers.hubspot.com/docs/api-reference/error-handling>
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub status: &'static str,
    pub message: String,
    pub correlation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ErrorDetail>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, Vec<String>>,
    /// Only on 429s: always `RATE_LIMIT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<&'static str>,
    /// Only on 429s: `TEN_SECONDLY_ROLLING`, `DAILY` or `SECONDLY` (search).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// A failed request, answered with `status` and `body`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{status}: {}", body.message)]
pub struct ApiError {
    pub status: StatusCode,
    /// Boxed so results carrying an `ApiError` stay small.
    pub body: Box<ErrorBody>,
    /// `Retry-After` in seconds (only on 477, where HubSpot documents it).
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, category: &'static str, message: impl Into<String>) -> Self {
        let body = ErrorBody {
            status: "error",
            message: message.into(),
            correlation_id: correlation_id(),
            category: Some(category),
            errors: Vec::new(),
            context: BTreeMap::new(),
            error_type: None,
            policy_name: None,
            request_id: None,
        };
        Self {
            status,
            body: Box::new(body),
            retry_after_s: None,
        }
    }

    pub fn unauthorized() -> Self {
        let msg = "Authentication credentials not found. This API supports OAuth 2.0 \
                   authentication and you can find more details at \
                   https://developers.hubspot.com/docs/methods/auth/oauth-overview";
        Self::new(StatusCode::UNAUTHORIZED, "INVALID_AUTHENTICATION", msg)
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            "resource not found",
        )
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    /// 400 for rejected property values: the `message` embeds the per-property verdicts as
    /// JSON (as HubSpot does) and `errors[]` lists them with their codes.
    pub fn invalid_properties(issues: &[PropertyIssue]) -> Self {
        let verdicts: Vec<_> = issues
            .iter()
            .map(|i| {
                serde_json::json!({"isValid": false, "message": i.message, "error": i.code,
                                   "name": i.name, "localizedErrorMessage": i.message})
            })
            .collect();
        let listed = serde_json::Value::Array(verdicts).to_string();
        let mut err = Self::validation(format!("Property values were not valid: {listed}"));
        err.body.errors = issues
            .iter()
            .map(|i| ErrorDetail {
                message: i.message.clone(),
                code: i.code.to_owned(),
                context: BTreeMap::from([("propertyName".to_owned(), vec![i.name.clone()])]),
            })
            .collect();
        err
    }

    /// The 429 body; `policy` is `TEN_SECONDLY_ROLLING`, `DAILY` or `SECONDLY`.
    /// The 10-second wording is [UNVERIFIED]: HubSpot documents only the daily example.
    pub fn rate_limited(policy: &'static str) -> Self {
        let message = format!("You have reached your {} limit.", policy.to_lowercase());
        let mut err = Self::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITS", message);
        err.body.category = None;
        err.body.error_type = Some("RATE_LIMIT");
        err.body.policy_name = Some(policy);
        err.body.request_id = Some(correlation_id());
        err
    }

    /// The body of an injected failure with the given status, per HubSpot's error table.
    pub fn injected(status: StatusCode) -> Self {
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Self::rate_limited("TEN_SECONDLY_ROLLING");
        }
        let (category, message) = category_for(status);
        let mut err = Self::new(status, category, message);
        if status.as_u16() == 477 {
            err.retry_after_s = Some(2);
        }
        err
    }
}

/// Category and message for statuses the sandbox can be told to inject.
/// <https://developers.hubspot.com/docs/api-reference/error-handling>
fn category_for(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("VALIDATION_ERROR", "Invalid input"),
        401 => (
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found.",
        ),
        403 => (
            "MISSING_SCOPES",
            "This app hasn't been granted all required scopes.",
        ),
        404 => ("OBJECT_NOT_FOUND", "resource not found"),
        409 => ("CONFLICT", "Conflict"),
        423 => (
            "LOCKED",
            "The resource is locked; wait at least 2 seconds and retry.",
        ),
        477 => (
            "MIGRATION_IN_PROGRESS",
            "The account is being migrated between data centres.",
        ),
        502 => ("BAD_GATEWAY", "Bad gateway"),
        503 => ("SERVICE_UNAVAILABLE", "Service unavailable"),
        504 => ("GATEWAY_TIMEOUT", "Gateway timeout"),
        _ => ("INTERNAL_ERROR", "Internal error"),
    }
}

impl From<WriteError> for ApiError {
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::Invalid(issues) => Self::invalid_properties(&issues),
            WriteError::DuplicateEmail { existing } => Self::new(
                StatusCode::CONFLICT,
                "CONFLICT",
                format!("Contact already exists. Existing ID: {existing}"),
            ),
            // HubSpot's wording for a custom unique-value clash is [UNVERIFIED]; it keeps the
            // `Existing ID: N` tail so clients can treat it like the email case.
            WriteError::DuplicateUnique {
                property,
                value,
                existing,
            } => Self::new(
                StatusCode::CONFLICT,
                "CONFLICT",
                format!(
                    "A contact with {property} \"{value}\" already exists. Existing ID: {existing}"
                ),
            ),
            WriteError::NotFound(_) => Self::not_found(),
            WriteError::NotIdProperty(prop) => Self::validation(format!(
                "Property {prop} is not a unique identifier property"
            )),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(*self.body)).into_response();
        if let Some(secs) = self.retry_after_s {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        response
    }
}

/// A random id in UUID layout, as HubSpot puts in `correlationId`.
pub fn correlation_id() -> String {
    let n: u128 = rand::random();
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-4{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(err: ApiError) -> serde_json::Value {
        serde_json::to_value(err.body).unwrap_or_default()
    }

    #[test]
    fn duplicate_email_is_409_conflict_naming_the_existing_id() {
        let err = ApiError::from(WriteError::DuplicateEmail { existing: 37765 });
        assert_eq!(err.status, StatusCode::CONFLICT);
        let body = json(err);
        assert_eq!(body["category"], "CONFLICT");
        assert_eq!(
            body["message"],
            "Contact already exists. Existing ID: 37765"
        );
        assert_eq!(body["status"], "error");
        assert!(
            body["correlationId"]
                .as_str()
                .is_some_and(|c| c.len() == 36)
        );
    }

    #[test]
    fn unknown_property_lists_the_code_and_name() {
        let issue = PropertyIssue {
            name: "nickname".into(),
            code: "PROPERTY_DOESNT_EXIST",
            message: "Property \"nickname\" does not exist".into(),
        };
        let body = json(ApiError::invalid_properties(&[issue]));
        assert_eq!(body["category"], "VALIDATION_ERROR");
        assert_eq!(body["errors"][0]["code"], "PROPERTY_DOESNT_EXIST");
        assert_eq!(body["errors"][0]["context"]["propertyName"][0], "nickname");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("Property values were not valid: [{"));
    }

    #[test]
    fn rate_limit_body_has_error_type_and_policy() {
        let body = json(ApiError::rate_limited("DAILY"));
        assert_eq!(body["errorType"], "RATE_LIMIT");
        assert_eq!(body["policyName"], "DAILY");
        assert_eq!(body["message"], "You have reached your daily limit.");
        assert!(body.get("category").is_none());
    }

    #[test]
    fn unauthorized_is_invalid_authentication() {
        let err = ApiError::unauthorized();
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        assert_eq!(json(err)["category"], "INVALID_AUTHENTICATION");
    }
}
