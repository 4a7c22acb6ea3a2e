//! Contact.Email is not unique, as in a real org; the duplicate rule set through
//! `/__sandbox/duplicate-rule` blocks or flags a second Contact with one e-mail.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Harness, contact, error_code, status_json};
use crate::salesforce::SalesforceSandboxConfig;

#[tokio::test]
async fn email_is_not_unique_until_a_blocking_duplicate_rule_refuses_it() {
    let h = Harness::start(SalesforceSandboxConfig::default()).await;
    let first = h.create(contact("One", "same@example.com")).await;
    h.create(contact("Two", "same@example.com")).await;

    let rule = h
        .control(Method::PUT, "duplicate-rule", json!({"action": "block"}))
        .await;
    assert_eq!(rule, json!({"action": "block", "alerted": 0}));
    let one = h.api(
        Method::POST,
        "sobjects/Contact/",
        Some(contact("Three", "SAME@example.com")),
    );
    let (status, body) = status_json(one.await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "DUPLICATES_DETECTED", "{body}");
    assert_eq!(body[0]["message"], "Use one of these records?");
    let matched = &body[0]["duplicateResut"]["matchResults"][0]["matchRecords"][0];
    assert_eq!(matched["record"]["Id"], json!(first), "{body}");

    let records = json!({"allOrNone": false, "records": [
        {"attributes": {"type": "Contact"}, "LastName": "Four", "Email": "same@example.com"},
        {"attributes": {"type": "Contact"}, "LastName": "Five", "Email": "other@example.com"},
    ]});
    let (status, results) = status_json(
        h.api(Method::POST, "composite/sobjects", Some(records))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        results[0]["errors"][0]["statusCode"], "DUPLICATES_DETECTED",
        "{results}"
    );
    assert_eq!(results[1]["success"], true, "{results}");

    h.control(Method::PUT, "duplicate-rule", json!({"action": "alert"}))
        .await;
    h.create(contact("Six", "same@example.com")).await;
    let rule = h.control(Method::GET, "duplicate-rule", Value::Null).await;
    assert_eq!(rule, json!({"action": "alert", "alerted": 1}));
    let bad = h
        .control_request(Method::PUT, "duplicate-rule")
        .json(&json!({"action": "maybe"}));
    assert_eq!(bad.send().await.unwrap().status(), StatusCode::BAD_REQUEST);
    let (_, found) = h
        .query("SELECT Id FROM Contact WHERE Email = 'same@example.com'")
        .await;
    assert_eq!(found["totalSize"], 3, "{found}");
}
