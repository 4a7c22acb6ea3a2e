//! Salesforce REST error bodies and the sandbox's error-code table.
//!
//! What it is: [`SfError`] (one Salesforce error), the code → HTTP status table, and the two wire
//! shapes Salesforce uses: the top-level array `[{message, errorCode, fields?}]` and the
//! per-item `{statusCode, message, fields}` inside sObject Collections results.
//! What it is not: the OAuth endpoint's errors (`{"error", "error_description"}`), which live in
//! `auth.rs`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::wire;

/// Every error code the sandbox emits, with its usual HTTP status.
///
/// Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm
/// ("Status Codes and Error Responses"); codes tagged [OBS] in crm-apis.md §2.7 come from real
/// responses quoted by client libraries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidSessionId,
    RequestLimitExceeded,
    RequiredFieldMissing,
    InvalidField,
    InvalidFieldForInsertUpdate,
    MalformedId,
    NotFound,
    EntityIsDeleted,
    DuplicateValue,
    DuplicateExternalId,
    DuplicatesDetected,
    FieldCustomValidationException,
    StringTooLong,
    InvalidEmailAddress,
    JsonParserError,
    MalformedQuery,
    InvalidType,
    InvalidQueryLocator,
    InvalidQueryFilterOperator,
    ExceededIdLimit,
    MissingArgument,
    InvalidCrossReferenceKey,
    AllOrNoneOperationRolledBack,
    MethodNotAllowed,
    ServerUnavailable,
    /// Another transaction holds the record (SOAP API `StatusCode` enum, `UNABLE_TO_LOCK_ROW`:
    /// "unable to obtain exclusive access to this record"); a retry can succeed.
    UnableToLockRow,
    /// Bulk API 2.0: a job request that cannot be accepted (a bad body, an unsupported
    /// option) [UNVERIFIED: the exact code; Bulk API 1.0 names it `InvalidJob`].
    InvalidJob,
    /// Bulk API 2.0: the job is not in a state that allows the request (results of a job not
    /// yet complete, aborting a finished one) [UNVERIFIED: the exact code].
    InvalidJobState,
    UnknownException,
}

impl ErrorCode {
    /// The `errorCode` / `statusCode` string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidSessionId => "INVALID_SESSION_ID",
            Self::RequestLimitExceeded => "REQUEST_LIMIT_EXCEEDED",
            Self::RequiredFieldMissing => "REQUIRED_FIELD_MISSING",
            Self::InvalidField => "INVALID_FIELD",
            Self::InvalidFieldForInsertUpdate => "INVALID_FIELD_FOR_INSERT_UPDATE",
            Self::MalformedId => "MALFORMED_ID",
            Self::NotFound => "NOT_FOUND",
            Self::EntityIsDeleted => "ENTITY_IS_DELETED",
            Self::DuplicateValue => "DUPLICATE_VALUE",
            Self::DuplicateExternalId => "DUPLICATE_EXTERNAL_ID",
            Self::DuplicatesDetected => "DUPLICATES_DETECTED",
            Self::FieldCustomValidationException => "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            Self::StringTooLong => "STRING_TOO_LONG",
            Self::InvalidEmailAddress => "INVALID_EMAIL_ADDRESS",
            Self::JsonParserError => "JSON_PARSER_ERROR",
            Self::MalformedQuery => "MALFORMED_QUERY",
            Self::InvalidType => "INVALID_TYPE",
            Self::InvalidQueryLocator => "INVALID_QUERY_LOCATOR",
            Self::InvalidQueryFilterOperator => "INVALID_QUERY_FILTER_OPERATOR",
            Self::ExceededIdLimit => "EXCEEDED_ID_LIMIT",
            Self::MissingArgument => "MISSING_ARGUMENT",
            Self::InvalidCrossReferenceKey => "INVALID_CROSS_REFERENCE_KEY",
            Self::UnableToLockRow => "UNABLE_TO_LOCK_ROW",
            Self::AllOrNoneOperationRolledBack => "ALL_OR_NONE_OPERATION_ROLLED_BACK",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::ServerUnavailable => "SERVER_UNAVAILABLE",
            Self::InvalidJob => "INVALIDJOB",
            Self::InvalidJobState => "INVALIDJOBSTATE",
            Self::UnknownException => "UNKNOWN_EXCEPTION",
        }
    }

    /// The HTTP status this code is returned with as a top-level error.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidSessionId => StatusCode::UNAUTHORIZED,
            Self::RequestLimitExceeded => StatusCode::FORBIDDEN,
            Self::NotFound | Self::EntityIsDeleted => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::ServerUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::UnknownException => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Salesforce error: what a handler returns and what a collection item carries.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct SfError {
    pub code: ErrorCode,
    pub message: String,
    /// API names of the fields the error is about; empty when it is about the request.
    pub fields: Vec<String>,
    /// Usually `code.status()`; injected faults override it.
    pub status: StatusCode,
    /// A duplicate rule's match details (`DUPLICATES_DETECTED` only).
    pub duplicate_result: Option<serde_json::Value>,
}

impl SfError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            fields: Vec::new(),
            status: code.status(),
            duplicate_result: None,
        }
    }

    pub fn with_duplicate_result(mut self, result: serde_json::Value) -> Self {
        self.duplicate_result = Some(result);
        self
    }

    pub fn with_fields<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.fields = fields.into_iter().map(Into::into).collect();
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn invalid_session() -> Self {
        Self::new(ErrorCode::InvalidSessionId, "Session expired or invalid")
    }

    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "The requested resource does not exist")
    }

    pub fn entity_is_deleted() -> Self {
        Self::new(ErrorCode::EntityIsDeleted, "entity is deleted")
    }

    /// `label` is the object's label, e.g. "Contact" or "Account".
    pub fn malformed_id(label: &str, value: &str, field: &str) -> Self {
        Self::new(
            ErrorCode::MalformedId,
            format!("{label} ID: id value of incorrect type: {value}"),
        )
        .with_fields([field])
    }

    pub fn no_such_column(name: &str) -> Self {
        Self::new(
            ErrorCode::InvalidField,
            format!("No such column '{name}' on sobject of type Contact"),
        )
    }

    pub fn required_missing(fields: &[&str]) -> Self {
        let list = fields.join(", ");
        Self::new(
            ErrorCode::RequiredFieldMissing,
            format!("Required fields are missing: [{list}]"),
        )
        .with_fields(fields.iter().copied())
    }

    pub fn json_parser(detail: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::JsonParserError, detail.to_string())
    }

    pub fn malformed_query(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::MalformedQuery, detail)
    }

    /// The message Salesforce gives every item of an `allOrNone` request that did not fail itself.
    pub fn rolled_back() -> Self {
        Self::new(
            ErrorCode::AllOrNoneOperationRolledBack,
            "Record rolled back because not all records were valid and the request was using AllOrNone header",
        )
    }

    /// This error as one entry of a collection result's `errors` array.
    pub fn to_item(&self) -> ItemError<'_> {
        ItemError {
            status_code: self.code.as_str(),
            message: &self.message,
            fields: &self.fields,
        }
    }
}

/// Top-level error entry. Vendor doc: "Status Codes and Error Responses" (link on [`ErrorCode`]).
#[derive(Serialize)]
struct RestError<'a> {
    message: &'a str,
    #[serde(rename = "errorCode")]
    error_code: &'static str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    fields: &'a [String],
    /// Spelled as observed in real responses (crm-apis.md §2.7).
    #[serde(rename = "duplicateResut", skip_serializing_if = "Option::is_none")]
    duplicate_result: Option<&'a serde_json::Value>,
}

/// Per-item error inside sObject Collections results; note `statusCode`, not `errorCode`.
/// Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections.htm
#[derive(Debug, Serialize)]
pub struct ItemError<'a> {
    #[serde(rename = "statusCode")]
    status_code: &'static str,
    message: &'a str,
    fields: &'a [String],
}

/// One or more errors answered together; the response status is the first error's.
#[derive(Debug, Clone, PartialEq)]
pub struct SfErrors(pub Vec<SfError>);

impl From<SfError> for SfErrors {
    fn from(e: SfError) -> Self {
        Self(vec![e])
    }
}

impl From<Vec<SfError>> for SfErrors {
    fn from(v: Vec<SfError>) -> Self {
        Self(v)
    }
}

impl SfErrors {
    pub fn status(&self) -> StatusCode {
        self.0.first().map_or(StatusCode::BAD_REQUEST, |e| e.status)
    }

    fn items(&self) -> Vec<RestError<'_>> {
        self.0
            .iter()
            .map(|e| RestError {
                message: &e.message,
                error_code: e.code.as_str(),
                fields: &e.fields,
                duplicate_result: e.duplicate_result.as_ref(),
            })
            .collect()
    }

    /// The top-level JSON body: an array of `{message, errorCode, fields?}`.
    #[cfg(test)]
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(self.items()).unwrap_or_default()
    }
}

impl IntoResponse for SfErrors {
    fn into_response(self) -> Response {
        wire::json(self.status(), &self.items())
    }
}

impl IntoResponse for SfError {
    fn into_response(self) -> Response {
        SfErrors::from(self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn invalid_session_body_matches_salesforce() {
        let errs = SfErrors::from(SfError::invalid_session());
        assert_eq!(errs.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            errs.body(),
            json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
        );
    }

    #[test]
    fn required_field_lists_fields_at_top_level_and_in_items() {
        let e = SfError::required_missing(&["LastName"]);
        assert_eq!(
            SfErrors::from(e.clone()).body(),
            json!([{"message": "Required fields are missing: [LastName]",
                    "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["LastName"]}])
        );
        assert_eq!(
            serde_json::to_value(e.to_item()).unwrap(),
            json!({"statusCode": "REQUIRED_FIELD_MISSING",
                   "message": "Required fields are missing: [LastName]", "fields": ["LastName"]})
        );
    }

    #[test]
    fn status_table_covers_the_non_400_codes() {
        assert_eq!(
            ErrorCode::RequestLimitExceeded.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(ErrorCode::EntityIsDeleted.status(), StatusCode::NOT_FOUND);
        assert_eq!(ErrorCode::MalformedId.status(), StatusCode::BAD_REQUEST);
        let injected =
            SfError::new(ErrorCode::ServerUnavailable, "x").with_status(StatusCode::BAD_GATEWAY);
        assert_eq!(SfErrors::from(injected).status(), StatusCode::BAD_GATEWAY);
    }
}
