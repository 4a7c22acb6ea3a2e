//! The one place a Salesforce answer becomes a [`ProviderError`]: transport failures, the
//! token endpoint's errors, top-level REST errors (status + body) and the per-record
//! `statusCode` inside sObject Collections results.
//!
//! What it is not: the side effects of an error (pausing the pacer, logging in again), which
//! `rest.rs` decides from the classified error.

use std::time::Duration;

use reqwest::StatusCode;

use super::wire::{ItemError, OAuthError, RestError};
use crate::providers::ProviderError;

/// How long to stop calling once the org's daily allowance is spent. The allowance is a
/// rolling 24 h window (crm-apis.md §2.8), so capacity comes back gradually; 10 min is a
/// re-check interval, not a promise.
pub const DAILY_ALLOWANCE_WAIT: Duration = Duration::from_secs(10 * 60);

/// Wait after a 429 without `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Longest `Retry-After` honoured; a larger value is clamped so a bad header cannot park
/// delivery for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10 * 60);

/// Most characters of an unreadable body quoted in an error.
const QUOTE_MAX: usize = 200;

/// Per-record codes that may succeed when tried again: row locks held by another
/// transaction, and results of an `allOrNone` rollback caused by another record.
const TRANSIENT_ITEM_CODES: [&str; 4] = [
    "UNABLE_TO_LOCK_ROW",
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "REQUEST_RUNNING_TOO_LONG",
    "SERVER_UNAVAILABLE",
];

/// Per-record codes that mean the record is already gone (recycled, purged, or
/// an id that resolves to nothing).
const GONE_CODES: [&str; 3] = [
    "ENTITY_IS_DELETED",
    "NOT_FOUND",
    "INVALID_CROSS_REFERENCE_KEY",
];

/// A request that got no HTTP answer: refused connection, timeout, reset.
/// A response's body, capped (`providers::read_body`).
pub async fn read_body(resp: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
    crate::providers::read_body(resp)
        .await
        .map_err(|e| match e {
            crate::providers::BodyError::Transport(e) => transport(e),
            crate::providers::BodyError::TooLarge => {
                crate::providers::BodyError::too_large("Salesforce")
            }
        })
}

pub fn transport(e: reqwest::Error) -> ProviderError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    ProviderError::Unavailable(format!("Salesforce {what}: {}", e.without_url()))
}

/// A non-2xx answer of the token endpoint. Bad credentials are 400 with `invalid_client` or
/// `invalid_grant` (crm-apis.md §2.1); the secret is never part of the message.
pub fn classify_login(status: StatusCode, body: &[u8]) -> ProviderError {
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return ProviderError::Unavailable(format!("Salesforce login answered {status}"));
    }
    match serde_json::from_slice::<OAuthError>(body) {
        Ok(e) => ProviderError::Unauthorized(match e.error_description {
            Some(d) => format!("{}: {d}", e.error),
            None => e.error,
        }),
        Err(_) => ProviderError::Unauthorized(format!(
            "Salesforce login answered {status}: {}",
            quote(body)
        )),
    }
}

/// A non-2xx answer of a REST call. `retry_after` is the parsed `Retry-After` header.
///
/// Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm
/// (crm-apis.md §2.7: the body is an array of `{message, errorCode, fields?}`).
pub fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> ProviderError {
    let first = serde_json::from_slice::<Vec<RestError>>(body)
        .ok()
        .and_then(|errors| errors.into_iter().next());
    let code = first.as_ref().map(|e| e.error_code.as_str());
    match (status.as_u16(), code) {
        // Caller re-logs in once on this; if it comes back it is final.
        (401, _) => ProviderError::Unauthorized(describe(status, first.as_ref(), body)),
        // Also answered when too many ≥ 20 s requests run at once; the body cannot tell the
        // two apart reliably, and waiting suits both.
        (403, Some("REQUEST_LIMIT_EXCEEDED")) => ProviderError::QuotaExhausted {
            retry_after: DAILY_ALLOWANCE_WAIT,
        },
        // Undocumented for core REST (crm-apis.md §2.8) but cheap to honour.
        (429, _) => ProviderError::RateLimited {
            retry_after: Some(
                retry_after
                    .unwrap_or(DEFAULT_RETRY_AFTER)
                    .min(MAX_RETRY_AFTER),
            ),
        },
        (408 | 500..=599, _) => ProviderError::Unavailable(describe(status, first.as_ref(), body)),
        (_, Some(code)) => ProviderError::Rejected {
            code: code.to_owned(),
            message: first
                .as_ref()
                .map(|e| e.message.clone())
                .unwrap_or_default(),
            retryable: is_transient(code),
        },
        _ => ProviderError::Decode(format!("HTTP {status}: {}", quote(body))),
    }
}

/// A failed record of a collection request. Every error of the record is kept in the
/// message; the record is worth retrying only when each of its errors is transient.
pub fn classify_item(errors: &[ItemError]) -> ProviderError {
    let Some(first) = errors.iter().find(|e| !is_transient(&e.status_code)) else {
        return match errors.first() {
            Some(e) => rejected(e, errors, true),
            None => ProviderError::Decode("a record failed without an error".into()),
        };
    };
    rejected(first, errors, false)
}

/// Whether a record's errors say it no longer exists: for a delete that is success, for a
/// link (update by id) it means the contact should be upserted instead.
pub fn record_gone(errors: &[ItemError]) -> bool {
    !errors.is_empty()
        && errors
            .iter()
            .all(|e| GONE_CODES.contains(&e.status_code.as_str()))
}

/// The error names its code once: an error of the record's own code is its message alone,
/// any other error keeps its code in front.
fn rejected(code_from: &ItemError, all: &[ItemError], retryable: bool) -> ProviderError {
    let message = all
        .iter()
        .map(|e| {
            let text = match e.fields.as_slice() {
                [] => e.message.clone(),
                fields => format!("{} [{}]", e.message, fields.join(", ")),
            };
            if e.status_code == code_from.status_code {
                text
            } else {
                format!("{}: {text}", e.status_code)
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    ProviderError::Rejected {
        code: code_from.status_code.clone(),
        message,
        retryable,
    }
}

fn is_transient(code: &str) -> bool {
    TRANSIENT_ITEM_CODES.contains(&code)
}

fn describe(status: StatusCode, first: Option<&RestError>, body: &[u8]) -> String {
    match first {
        Some(e) => format!("HTTP {status}: {}: {}", e.error_code, e.message),
        None => format!("HTTP {status}: {}", quote(body)),
    }
}

/// The start of a body, for messages.
fn quote(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .take(QUOTE_MAX)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn item(code: &str) -> ItemError {
        ItemError {
            status_code: code.into(),
            message: format!("{code} message"),
            fields: vec![],
        }
    }

    fn code_and_retry(e: &ProviderError) -> (&str, bool) {
        (e.code(), e.is_retryable())
    }

    #[test]
    fn top_level_errors_follow_the_status_table() {
        let limit = body(json!([{"errorCode": "REQUEST_LIMIT_EXCEEDED",
            "message": "TotalRequests Limit exceeded."}]));
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, None, &limit),
            ProviderError::QuotaExhausted { retry_after } if retry_after == DAILY_ALLOWANCE_WAIT
        ));
        let expired = body(json!([{"errorCode": "INVALID_SESSION_ID",
            "message": "Session expired or invalid"}]));
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED, None, &expired).code(),
            "UNAUTHORIZED"
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, None, b"<html>").code(),
            "UNAVAILABLE"
        );
        let bad = body(json!([{"errorCode": "MALFORMED_QUERY", "message": "unexpected token"}]));
        let e = classify(StatusCode::BAD_REQUEST, None, &bad);
        assert_eq!(code_and_retry(&e), ("MALFORMED_QUERY", false));
        assert!(e.to_string().contains("unexpected token"));
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, None, b"not json").code(),
            "DECODE"
        );
    }

    #[test]
    fn a_429_honours_retry_after_within_bounds() {
        let wait = |h| classify(StatusCode::TOO_MANY_REQUESTS, h, b"[]").retry_after();
        assert_eq!(wait(None), Some(Duration::from_secs(1)));
        assert_eq!(
            wait(Some(Duration::from_secs(7))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            wait(Some(Duration::from_secs(86_400))),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn login_errors_are_unauthorized_unless_the_server_is_down() {
        let refused = body(json!({"error": "invalid_client",
            "error_description": "invalid client credentials"}));
        let e = classify_login(StatusCode::BAD_REQUEST, &refused);
        assert_eq!(e.code(), "UNAUTHORIZED");
        assert!(e.to_string().contains("invalid_client"));
        assert_eq!(
            classify_login(StatusCode::SERVICE_UNAVAILABLE, b"").code(),
            "UNAVAILABLE"
        );
    }

    #[test]
    fn per_item_codes_split_into_transient_and_final() {
        let e = classify_item(&[item("UNABLE_TO_LOCK_ROW")]);
        assert_eq!(code_and_retry(&e), ("UNABLE_TO_LOCK_ROW", true));
        for code in [
            "REQUIRED_FIELD_MISSING",
            "INVALID_FIELD",
            "STRING_TOO_LONG",
            "INVALID_EMAIL_ADDRESS",
            "DUPLICATE_VALUE",
            "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "MALFORMED_ID",
            "DUPLICATES_DETECTED",
        ] {
            assert_eq!(code_and_retry(&classify_item(&[item(code)])), (code, false));
        }
        let mixed = classify_item(&[item("UNABLE_TO_LOCK_ROW"), item("STRING_TOO_LONG")]);
        assert_eq!(code_and_retry(&mixed), ("STRING_TOO_LONG", false));
        assert!(mixed.to_string().contains("UNABLE_TO_LOCK_ROW message"));
        assert_eq!(classify_item(&[]).code(), "DECODE");
    }

    #[test]
    fn a_validation_rule_refusal_is_final_at_top_level_and_per_item() {
        let refused = body(json!([{"errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "message": "Title may not contain INVALID", "fields": ["Title"]}]));
        let e = classify(StatusCode::BAD_REQUEST, None, &refused);
        assert_eq!(
            code_and_retry(&e),
            ("FIELD_CUSTOM_VALIDATION_EXCEPTION", false)
        );
        assert!(e.to_string().contains("Title may not contain INVALID"));
        let item = ItemError {
            fields: vec!["Title".into()],
            message: "Title may not contain INVALID".into(),
            ..item("FIELD_CUSTOM_VALIDATION_EXCEPTION")
        };
        let e = classify_item(&[item]);
        assert_eq!(
            code_and_retry(&e),
            ("FIELD_CUSTOM_VALIDATION_EXCEPTION", false)
        );
        assert_eq!(
            e.to_string(),
            "CRM rejected the record: FIELD_CUSTOM_VALIDATION_EXCEPTION: \
             Title may not contain INVALID [Title]"
        );
    }

    #[test]
    fn gone_records_count_as_deleted() {
        for code in GONE_CODES {
            assert!(record_gone(&[item(code)]));
        }
        assert!(!record_gone(&[item("MALFORMED_ID")]));
        assert!(!record_gone(&[]));
    }
}
