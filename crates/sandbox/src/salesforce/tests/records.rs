//! Contacts through sObject Rows, upsert, sObject Collections and SOQL.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Harness, contact, error_code, status_json};
use crate::salesforce::SalesforceSandboxConfig;

#[tokio::test]
async fn token_create_upsert_composite_and_query_round_trip() {
    let h = Harness::start(SalesforceSandboxConfig::default()).await;

    let id = h
        .create(json!({"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com"}))
        .await;
    assert_eq!(id.len(), 18);
    let resp = h
        .api(
            Method::GET,
            &format!("sobjects/Contact/{id}?fields=Email,Name"),
            None,
        )
        .await;
    assert!(
        resp.headers()["sforce-limit-info"]
            .to_str()
            .unwrap()
            .starts_with("api-usage=")
    );
    let (status, rec) = status_json(resp).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (rec["Name"].as_str(), rec["Id"].as_str()),
        (Some("Ada Lovelace"), Some(id.as_str()))
    );
    assert!(
        rec.get("Title").is_none(),
        "only selected fields (and Id) come back"
    );

    let (status, created) = status_json(
        h.api(
            Method::PATCH,
            "sobjects/Contact/SyncRoot_Id__c/hs-1",
            Some(contact("Hopper", "grace@example.com")),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, &created["created"]),
        (StatusCode::CREATED, &json!(true))
    );
    let (status, updated) = status_json(
        h.api(
            Method::PATCH,
            "sobjects/Contact/SyncRoot_Id__c/hs-1",
            Some(json!({"Title": "RADM"})),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, &updated["created"], &updated["id"]),
        (StatusCode::OK, &json!(false), &created["id"])
    );
    let old = h
        .api_at(
            "45.0",
            Method::PATCH,
            "sobjects/Contact/SyncRoot_Id__c/hs-1",
            Some(json!({"Title": "Admiral"})),
        )
        .await;
    assert_eq!(old.status(), StatusCode::NO_CONTENT);

    let batch = json!({"allOrNone": false, "records": [
        {"attributes": {"type": "Contact"}, "LastName": "Johnson", "Email": "kj@example.com"},
        {"attributes": {"type": "Contact"}, "FirstName": "NoLast"},
        {"attributes": {"type": "Contact"}, "LastName": "Vaughan", "SyncRoot_Id__c": "hs-3"},
    ]});
    let (status, results) =
        status_json(h.api(Method::POST, "composite/sobjects", Some(batch)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(results[0]["success"], true);
    assert_eq!(results[1]["success"], false);
    assert_eq!(
        results[1]["errors"][0]["statusCode"],
        "REQUIRED_FIELD_MISSING"
    );
    assert_eq!(results[1]["errors"][0]["fields"], json!(["LastName"]));
    assert_eq!(results[2]["success"], true);

    let (_, found) = h
        .query("select Id, Email from Contact where Email = 'ADA@example.com'")
        .await;
    assert_eq!(
        (found["totalSize"].as_u64(), found["done"].as_bool()),
        (Some(1), Some(true))
    );
    assert_eq!(found["records"][0]["Id"], json!(id));
    let in_q = format!(
        "SELECT Id FROM Contact WHERE Id IN ('{}', '{}')",
        &id[..15],
        results[0]["id"].as_str().unwrap()
    );
    assert_eq!(h.query(&in_q).await.1["totalSize"], 2);
    assert_eq!(
        h.query("SELECT Id FROM Contact WHERE SyncRoot_Id__c = 'hs-3'")
            .await
            .1["totalSize"],
        1
    );
    let (_, recent) = h.query("SELECT Id, LastName FROM Contact WHERE SystemModstamp >= 2024-01-01T00:00:00Z ORDER BY LastName DESC LIMIT 2").await;
    assert_eq!(recent["records"][0]["LastName"], "Vaughan");
    assert_eq!(recent["records"].as_array().unwrap().len(), 2);
    let (status, bad) = h
        .query("SELECT Id FROM Contact WHERE Email = 'a' OR Email = 'b'")
        .await;
    assert_eq!(
        (status, error_code(&bad)),
        (StatusCode::BAD_REQUEST, "MALFORMED_QUERY")
    );

    let counters = h.control(Method::GET, "counters", Value::Null).await;
    assert_eq!(
        counters["calls"]["POST /services/data/{version}/composite/sobjects"],
        1
    );
    // Three records were sent, one of them failed: the tally counts what was sent.
    let tally = &counters["batches"]["POST /services/data/{version}/composite/sobjects"];
    assert_eq!(
        (&tally["max_records"], &tally["records"]),
        (&json!(3), &json!(3))
    );
    assert_eq!(
        counters["records"]["POST /services/data/{version}/composite/sobjects"],
        2
    );
}

#[tokio::test]
async fn all_or_none_rolls_back_every_record_and_reports_the_cause() {
    let h = Harness::start(SalesforceSandboxConfig::default()).await;
    let existing = h.create(contact("Keep", "keep@example.com")).await;
    let batch = json!({"allOrNone": true, "records": [
        {"attributes": {"type": "Contact"}, "id": existing, "Title": "Changed"},
        {"attributes": {"type": "Contact"}, "id": existing, "Email": "not-an-email"},
    ]});
    let (status, results) = status_json(
        h.api(Method::PATCH, "composite/sobjects", Some(batch))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        results[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(
        results[1]["errors"][0]["statusCode"],
        "INVALID_EMAIL_ADDRESS"
    );
    let (_, rec) = status_json(
        h.api(Method::GET, &format!("sobjects/Contact/{existing}"), None)
            .await,
    )
    .await;
    assert_eq!(rec["Title"], Value::Null);

    let upserts = json!({"records": [
        {"attributes": {"type": "Contact"}, "SyncRoot_Id__c": "e-1", "LastName": "One"},
        {"attributes": {"type": "Contact"}, "SyncRoot_Id__c": "e-2", "LastName": "Two"},
    ]});
    let (_, results) = status_json(
        h.api(
            Method::PATCH,
            "composite/sobjects/Contact/SyncRoot_Id__c",
            Some(upserts.clone()),
        )
        .await,
    )
    .await;
    assert_eq!(results[0]["created"], true);
    let (_, again) = status_json(
        h.api(
            Method::PATCH,
            "composite/sobjects/Contact/SyncRoot_Id__c",
            Some(upserts),
        )
        .await,
    )
    .await;
    assert_eq!(
        (&again[1]["created"], &again[1]["id"]),
        (&json!(false), &results[1]["id"])
    );

    let ids = format!(
        "{},{},003000000000000",
        results[0]["id"].as_str().unwrap(),
        results[1]["id"].as_str().unwrap()
    );
    let (_, read) = status_json(
        h.api(
            Method::GET,
            &format!("composite/sobjects/Contact?ids={ids}&fields=LastName"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(
        (&read[0]["LastName"], &read[2]),
        (&json!("One"), &Value::Null)
    );
    let (_, deleted) = status_json(
        h.api(
            Method::DELETE,
            &format!("composite/sobjects?ids={ids}&allOrNone=false"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(
        (&deleted[0]["success"], &deleted[2]["success"]),
        (&json!(true), &json!(false))
    );

    let too_many: Vec<Value> = (0..201)
        .map(|i| json!({"attributes": {"type": "Contact"}, "LastName": format!("L{i}")}))
        .collect();
    let (status, body) = status_json(
        h.api(
            Method::POST,
            "composite/sobjects",
            Some(json!({"records": too_many})),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "EXCEEDED_ID_LIMIT")
    );
}

#[tokio::test]
async fn bad_input_gets_salesforce_errors_and_deleted_records_stay_deleted() {
    let h = Harness::start(SalesforceSandboxConfig::default()).await;
    let cases = [
        (json!({"FirstName": "x"}), "REQUIRED_FIELD_MISSING"),
        (
            json!({"Id": "0038d0000000001AAA", "LastName": "x"}),
            "INVALID_FIELD",
        ),
        (json!({"LastName": "x", "Nope__c": 1}), "INVALID_FIELD"),
        (
            json!({"LastName": "x", "CreatedDate": "2024-01-01T00:00:00.000+0000"}),
            "INVALID_FIELD_FOR_INSERT_UPDATE",
        ),
    ];
    for (body, code) in cases {
        let (status, errs) =
            status_json(h.api(Method::POST, "sobjects/Contact", Some(body)).await).await;
        assert_eq!((status, error_code(&errs)), (StatusCode::BAD_REQUEST, code));
    }
    let (status, errs) =
        status_json(h.api(Method::GET, "sobjects/Contact/not-an-id", None).await).await;
    assert_eq!(
        (status, error_code(&errs)),
        (StatusCode::BAD_REQUEST, "MALFORMED_ID")
    );
    let (status, errs) = status_json(
        h.api(Method::GET, "sobjects/Contact/003000000000000AAA", None)
            .await,
    )
    .await;
    assert_eq!(
        (status, error_code(&errs)),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );
    let (status, _) = status_json(
        h.api(Method::PATCH, "sobjects/Contact/Email/x", Some(json!({})))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let id = h.create(contact("Gone", "gone@example.com")).await;
    assert_eq!(
        h.api(
            Method::DELETE,
            &format!("sobjects/Contact/{}", id.to_lowercase()),
            None
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        let body = (method == Method::PATCH).then(|| json!({"Title": "x"}));
        let (status, errs) =
            status_json(h.api(method, &format!("sobjects/Contact/{id}"), body).await).await;
        assert_eq!(
            (status, error_code(&errs)),
            (StatusCode::NOT_FOUND, "ENTITY_IS_DELETED")
        );
    }
    assert_eq!(h.query("SELECT Id FROM Contact").await.1["totalSize"], 0);
    let state = h.control(Method::GET, "state", Value::Null).await;
    assert_eq!(state["contacts"][0]["IsDeleted"], true);
    assert_eq!(state["changes"][0]["client"], "syncroot-test");
}
