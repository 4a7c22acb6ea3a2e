//! Validation rules set through `/__sandbox/validation-rules`, as every write path meets them.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Harness, contact, error_code, status_json};
use crate::salesforce::SalesforceSandboxConfig;

const CODE: &str = "FIELD_CUSTOM_VALIDATION_EXCEPTION";
const MESSAGE: &str = "Title may not contain INVALID";

async fn with_rule() -> Harness {
    let h = Harness::start(SalesforceSandboxConfig::default()).await;
    let rules = json!([{"name": "NoTestTitles", "field": "Title", "contains": "INVALID",
        "message": MESSAGE}]);
    assert_eq!(
        h.control(Method::PUT, "validation-rules", rules.clone())
            .await,
        rules
    );
    assert_eq!(
        h.control(Method::GET, "validation-rules", Value::Null)
            .await,
        rules
    );
    h
}

fn invalid(last: &str) -> Value {
    json!({"LastName": last, "Title": "An INVALID title"})
}

/// Asserts a top-level 400 `[{message, errorCode, fields}]` from the rule.
async fn assert_refused(resp: reqwest::Response) {
    let (status, body) = status_json(resp).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, CODE));
    assert_eq!(body[0]["message"], MESSAGE);
    assert_eq!(body[0]["fields"], json!(["Title"]));
}

fn assert_item_refused(item: &Value) {
    assert_eq!(
        item,
        &json!({"success": false, "errors": [{"statusCode": CODE, "message": MESSAGE,
            "fields": ["Title"]}]})
    );
}

#[tokio::test]
async fn single_record_writes_breaking_a_rule_get_400() {
    let h = with_rule().await;
    assert_refused(
        h.api(Method::POST, "sobjects/Contact/", Some(invalid("A")))
            .await,
    )
    .await;
    let id = h.create(json!({"LastName": "B", "Title": "Fine"})).await;
    let path = format!("sobjects/Contact/{id}");
    let breaking = Some(json!({"Title": "INVALID now"}));
    assert_refused(h.api(Method::PATCH, &path, breaking.clone()).await).await;
    let (_, rec) = status_json(h.api(Method::GET, &path, None).await).await;
    assert_eq!(rec["Title"], "Fine", "a refused update changes nothing");
    // An update that leaves the field alone is judged on the record's resulting value.
    let id2 = h.create(json!({"LastName": "C"})).await;
    let ok = h
        .api(
            Method::PATCH,
            &format!("sobjects/Contact/{id2}"),
            Some(json!({"FirstName": "D"})),
        )
        .await;
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);

    let upsert = "sobjects/Contact/SyncRoot_Id__c/ext-1";
    assert_refused(h.api(Method::PATCH, upsert, Some(invalid("E"))).await).await;
    let created = h.api(Method::PATCH, upsert, Some(contact("E", "e@example.com")));
    assert_eq!(created.await.status(), StatusCode::CREATED);
    assert_refused(h.api(Method::PATCH, upsert, breaking).await).await;
    let (_, state) = status_json(
        h.control_request(Method::GET, "state")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(state["contacts"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn collection_items_breaking_a_rule_fail_alone() {
    let h = with_rule().await;
    let batch = json!({"records": [
        {"attributes": {"type": "Contact"}, "LastName": "Ok"},
        {"attributes": {"type": "Contact"}, "LastName": "Bad", "Title": "INVALID"},
    ]});
    let (status, results) =
        status_json(h.api(Method::POST, "composite/sobjects", Some(batch)).await).await;
    assert_eq!(
        (status, &results[0]["success"]),
        (StatusCode::OK, &json!(true))
    );
    assert_item_refused(&results[1]);

    let id = results[0]["id"].as_str().unwrap();
    let update = json!({"records": [
        {"attributes": {"type": "Contact"}, "id": id, "Title": "INVALID"}]});
    let (_, results) = status_json(
        h.api(Method::PATCH, "composite/sobjects", Some(update))
            .await,
    )
    .await;
    assert_eq!(results[0]["id"], id);
    assert_eq!(results[0]["errors"][0]["statusCode"], CODE);

    let upserts = json!({"records": [
        {"attributes": {"type": "Contact"}, "SyncRoot_Id__c": "u-1", "LastName": "One"},
        {"attributes": {"type": "Contact"}, "SyncRoot_Id__c": "u-2", "LastName": "Two",
            "Title": "Mostly INVALID"},
    ]});
    let path = "composite/sobjects/Contact/SyncRoot_Id__c";
    let (_, results) = status_json(h.api(Method::PATCH, path, Some(upserts.clone())).await).await;
    assert_eq!(results[0]["created"], true);
    assert_item_refused(&results[1]);

    // Clearing the rules lets the same records through.
    assert_eq!(
        h.control(Method::PUT, "validation-rules", json!([])).await,
        json!([])
    );
    let (_, results) = status_json(h.api(Method::PATCH, path, Some(upserts)).await).await;
    assert_eq!(results[1]["created"], true);
}

#[tokio::test]
async fn ui_edits_meet_rules_and_reset_clears_them() {
    let h = with_rule().await;
    let resp = h
        .control_request(Method::POST, "ui/contacts")
        .json(&invalid("Ui"))
        .send()
        .await
        .unwrap();
    assert_refused(resp).await;
    h.control(Method::POST, "reset", Value::Null).await;
    assert_eq!(
        h.control(Method::GET, "validation-rules", Value::Null)
            .await,
        json!([])
    );
}

#[tokio::test]
async fn malformed_rule_sets_are_refused_and_keep_the_old_set() {
    let h = with_rule().await;
    for bad in [
        json!({"name": "x"}),
        json!([{"name": "x", "field": "Nope", "contains": "y", "message": "m"}]),
        json!([{"name": "x", "field": "Title", "contains": "y"}]),
    ] {
        let resp = h
            .control_request(Method::PUT, "validation-rules")
            .json(&bad)
            .send()
            .await
            .unwrap();
        let (status, body) = status_json(resp).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(body["error"].is_string());
    }
    let rules = h
        .control(Method::GET, "validation-rules", Value::Null)
        .await;
    assert_eq!(rules[0]["name"], "NoTestTitles");
}
