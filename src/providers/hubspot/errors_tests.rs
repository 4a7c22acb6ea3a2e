//! The classification table: status, `Retry-After` and body in, failure out.

use super::*;
use crate::providers::hubspot::wire::BatchError;
use serde_json::json;

fn now() -> DateTime<Utc> {
    "2026-03-05T18:00:00Z".parse().unwrap()
}

/// A one-line summary of a failure: kind, error code, and the details that matter.
fn summary(f: &Failure) -> String {
    match f {
        Failure::Call { error, pause } => format!(
            "call {} retry={:?} pause={:?}",
            error.code(),
            error.retry_after(),
            pause.as_ref().map(|p| p.wait)
        ),
        Failure::Gone => "gone".into(),
        Failure::Taken { existing, error } => format!("taken {existing:?} {}", error.code()),
        Failure::Refused { error, every_input } => {
            format!("refused {} every={every_input}", error.code())
        }
    }
}

#[test]
fn statuses_and_bodies_classify_per_the_error_table() {
    let s = Some(Duration::from_secs(7));
    let validation = json!({"status": "error", "category": "VALIDATION_ERROR",
        "message": "Property values were not valid: [{\"error\":\"INVALID_EMAIL\"}]",
        "errors": [{"code": "INVALID_EMAIL", "message": "Email address x is invalid"}]});
    let unknown = json!({"status": "error", "category": "VALIDATION_ERROR",
        "message": "Property values were not valid: [{\"isValid\":false,\"error\":\"PROPERTY_DOESNT_EXIST\",\"name\":\"nickname\"}]"});
    let conflict = json!({"status": "error", "category": "CONFLICT",
        "message": "Contact already exists. Existing ID: 37765128953"});
    let daily = json!({"status": "error", "errorType": "RATE_LIMIT", "policyName": "DAILY"});
    let rolling =
        json!({"status": "error", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"});
    let not_found = json!({"status": "error", "category": "OBJECT_NOT_FOUND",
        "message": "resource not found"});
    let scopes = json!({"status": "error", "category": "MISSING_SCOPES", "message": "scopes"});
    let midnight = Some(Duration::from_secs(6 * 3600));
    let table: Vec<(u16, Option<Duration>, String, String)> = vec![
        (
            400,
            None,
            validation.to_string(),
            "refused INVALID_EMAIL every=false".into(),
        ),
        (
            400,
            None,
            unknown.to_string(),
            "refused VALIDATION_ERROR every=true".into(),
        ),
        (
            400,
            None,
            "<html>".into(),
            "call DECODE retry=None pause=None".into(),
        ),
        (
            401,
            None,
            "{}".into(),
            "call UNAUTHORIZED retry=None pause=None".into(),
        ),
        (
            403,
            None,
            scopes.to_string(),
            "call UNAUTHORIZED retry=None pause=None".into(),
        ),
        (404, None, not_found.to_string(), "gone".into()),
        (
            404,
            None,
            "Not Found".into(),
            "call DECODE retry=None pause=None".into(),
        ),
        (
            409,
            None,
            conflict.to_string(),
            "taken Some(\"37765128953\") CONFLICT".into(),
        ),
        (
            413,
            None,
            "{}".into(),
            "refused HTTP_413 every=false".into(),
        ),
        (
            423,
            None,
            "{}".into(),
            "call RATE_LIMITED retry=Some(2s) pause=Some(2s)".into(),
        ),
        (
            429,
            None,
            rolling.to_string(),
            "call RATE_LIMITED retry=Some(1s) pause=Some(1s)".into(),
        ),
        (
            429,
            s,
            rolling.to_string(),
            "call RATE_LIMITED retry=Some(7s) pause=Some(7s)".into(),
        ),
        (
            429,
            None,
            "".into(),
            "call RATE_LIMITED retry=Some(1s) pause=Some(1s)".into(),
        ),
        (
            429,
            s,
            daily.to_string(),
            format!("call QUOTA_EXHAUSTED retry={midnight:?} pause={midnight:?}"),
        ),
        (
            477,
            s,
            "{}".into(),
            "call UNAVAILABLE retry=None pause=Some(7s)".into(),
        ),
        (
            500,
            None,
            "{}".into(),
            "call UNAVAILABLE retry=None pause=None".into(),
        ),
        (
            502,
            None,
            "<html>".into(),
            "call UNAVAILABLE retry=None pause=None".into(),
        ),
        (
            503,
            None,
            "{}".into(),
            "call UNAVAILABLE retry=None pause=None".into(),
        ),
        (
            504,
            None,
            "".into(),
            "call UNAVAILABLE retry=None pause=None".into(),
        ),
        (
            521,
            None,
            "".into(),
            "call UNAVAILABLE retry=None pause=None".into(),
        ),
        (
            524,
            None,
            "".into(),
            "call UNAVAILABLE retry=None pause=None".into(),
        ),
        (
            302,
            None,
            "".into(),
            "call DECODE retry=None pause=None".into(),
        ),
    ];
    for (status, retry_after, body, expected) in table {
        let got = summary(&classify(status, retry_after, body.as_bytes(), now()));
        assert_eq!(got, expected, "HTTP {status} with {body}");
    }
}

#[test]
fn validation_messages_come_from_the_per_property_lines() {
    let body = json!({"category": "VALIDATION_ERROR", "message": "Property values were not valid: [...]",
        "errors": [{"code": "INVALID_OPTION", "message": "CTO was not one of the allowed options"}]});
    let failure = classify(400, None, body.to_string().as_bytes(), now());
    let ProviderError::Rejected {
        code,
        message,
        retryable,
    } = failure.into_error()
    else {
        panic!("a validation error is a rejection");
    };
    assert_eq!(code, "INVALID_OPTION");
    assert_eq!(message, "CTO was not one of the allowed options");
    assert!(!retryable);
}

#[test]
fn multi_status_items_classify_by_category() {
    let item = |v: serde_json::Value| -> BatchError { serde_json::from_value(v).unwrap() };
    let gone = item(json!({"category": "OBJECT_NOT_FOUND", "message": "gone"}));
    let taken = item(json!({"category": "CONFLICT",
        "message": "Contact already exists. Existing ID: 1004"}));
    let invalid = item(json!({"category": "VALIDATION_ERROR", "message": "bad",
        "errors": [{"code": "INVALID_EMAIL"}]}));
    assert_eq!(summary(&classify_item(&gone)), "gone");
    assert_eq!(
        summary(&classify_item(&taken)),
        "taken Some(\"1004\") CONFLICT"
    );
    assert_eq!(
        summary(&classify_item(&invalid)),
        "refused INVALID_EMAIL every=false"
    );
}

#[test]
fn existing_ids_are_read_from_conflict_messages() {
    assert_eq!(
        existing_id("Contact already exists. Existing ID: 37765128953").as_deref(),
        Some("37765128953")
    );
    assert_eq!(
        existing_id("A contact with syncroot_id \"x\" already exists. Existing ID: 12").as_deref(),
        Some("12")
    );
    assert_eq!(existing_id("Conflict"), None);
    assert_eq!(existing_id("Existing ID: none"), None);
}

#[test]
fn the_daily_allowance_resets_at_the_next_utc_midnight() {
    assert_eq!(
        until_next_utc_midnight(now()),
        Duration::from_secs(6 * 3600)
    );
    let just_after: DateTime<Utc> = "2026-03-05T00:00:01Z".parse().unwrap();
    assert_eq!(
        until_next_utc_midnight(just_after),
        Duration::from_secs(24 * 3600 - 1)
    );
}

#[test]
fn gone_records_become_retryable_rejections() {
    let err = Failure::Gone.into_error();
    assert_eq!(err.code(), "OBJECT_NOT_FOUND");
    assert!(err.is_retryable());
}
