//! The daily allowance, `Sforce-Limit-Info`, and injected faults.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Harness, error_code, status_json};
use crate::salesforce::SalesforceSandboxConfig;

#[tokio::test]
async fn spent_allowance_gives_403_request_limit_exceeded() {
    let h = Harness::start(SalesforceSandboxConfig::default()).await;
    h.control(Method::PUT, "limits", json!({"daily_limit": 2}))
        .await;
    let first = h.api(Method::GET, "limits", None).await;
    assert_eq!(first.headers()["sforce-limit-info"], "api-usage=1/2");
    let (_, limits) = status_json(first).await;
    assert_eq!(
        limits["DailyApiRequests"],
        json!({"Max": 2, "Remaining": 1})
    );
    assert_eq!(
        h.api(Method::GET, "limits", None).await.status(),
        StatusCode::OK
    );
    let refused = h.api(Method::GET, "limits", None).await;
    assert_eq!(refused.headers()["sforce-limit-info"], "api-usage=2/2");
    let (status, body) = status_json(refused).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );

    // The versions list needs no session and does not count.
    let versions = h
        .http
        .get(format!("{}/services/data/", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(versions.status(), StatusCode::OK);
    assert!(versions.headers().get("sforce-limit-info").is_none());

    h.control(Method::PUT, "limits", json!({"used": 0})).await;
    assert_eq!(
        h.api(Method::GET, "limits", None).await.status(),
        StatusCode::OK
    );
    let counters = h.control(Method::GET, "counters", Value::Null).await;
    assert_eq!(
        (
            counters["rate_limited"].as_u64(),
            counters["calls_total"].as_u64()
        ),
        (Some(1), Some(5))
    );
}

#[tokio::test]
async fn injected_faults_answer_with_salesforce_style_errors() {
    let h = Harness::start(SalesforceSandboxConfig::default()).await;
    let f = h
        .control(Method::PUT, "faults", json!({"force_429": 1}))
        .await;
    assert_eq!(
        (f["force_429"].as_u64(), f["error_status"].as_u64()),
        (Some(1), Some(503))
    );
    let limited = h.api(Method::GET, "limits", None).await;
    assert_eq!(
        (
            limited.status(),
            limited.headers()["retry-after"].to_str().unwrap()
        ),
        (StatusCode::TOO_MANY_REQUESTS, "1")
    );
    assert_eq!(
        h.api(Method::GET, "limits", None).await.status(),
        StatusCode::OK
    );

    h.control(Method::PUT, "faults", json!({"outage": true}))
        .await;
    let (status, body) = status_json(h.api(Method::GET, "limits", None).await).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "SERVER_UNAVAILABLE")
    );
    let token = h
        .http
        .post(format!("{}/services/oauth2/token", h.base))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), StatusCode::SERVICE_UNAVAILABLE);

    h.control(
        Method::PUT,
        "faults",
        json!({"outage": false, "error_rate": 1.0, "error_status": 500}),
    )
    .await;
    let (status, body) = status_json(h.api(Method::GET, "limits", None).await).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN_EXCEPTION")
    );

    let bad = h
        .control_request(Method::PUT, "faults")
        .json(&json!({"error_rate": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    h.control(Method::POST, "reset", json!({})).await;
    assert_eq!(
        h.control(Method::GET, "faults", Value::Null).await["error_rate"],
        0.0
    );
    let counters = h.control(Method::GET, "counters", Value::Null).await;
    assert_eq!(
        (
            counters["rate_limited"].as_u64(),
            counters["errors_injected"].as_u64()
        ),
        (Some(1), Some(2))
    );
}

/// Sets the after-write fault for the next write and makes one create with a 1 s client.
async fn create_after_write(h: &Harness, mode: &str, email: &str) -> Result<StatusCode, String> {
    let faults = json!({"after_write": mode, "after_write_count": 1, "after_write_stall_ms": 1500});
    h.control(Method::PUT, "faults", faults).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(1))
        .build()
        .unwrap();
    client
        .post(format!("{}/services/data/v62.0/sobjects/Contact/", h.base))
        .bearer_auth(&h.token)
        .json(&json!({"LastName": "Late", "Email": email}))
        .send()
        .await
        .map(|r| r.status())
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn after_write_faults_commit_the_write_and_lose_its_answer() {
    let h = Harness::start(SalesforceSandboxConfig::default()).await;
    let dropped = create_after_write(&h, "drop", "drop@example.com").await;
    assert!(dropped.is_err(), "no answer expected: {dropped:?}");
    let stalled = create_after_write(&h, "stall", "stall@example.com").await;
    assert!(
        stalled.as_ref().is_err_and(|e| e.contains("TimedOut")),
        "{stalled:?}"
    );
    let errored = create_after_write(&h, "error", "error@example.com").await;
    assert_eq!(errored, Ok(StatusCode::SERVICE_UNAVAILABLE));
    // The count is spent: the next write is answered.
    assert_eq!(
        h.api(
            Method::POST,
            "sobjects/Contact/",
            Some(super::contact("Ok", "x@example.com"))
        )
        .await
        .status(),
        StatusCode::CREATED
    );
    // Reads are never hit, even with a rate of 1.
    h.control(Method::PUT, "faults", json!({"after_write_rate": 1.0}))
        .await;
    let (status, _) = h.query("SELECT Id FROM Contact").await;
    assert_eq!(status, StatusCode::OK);
    h.control(Method::PUT, "faults", json!({"after_write": "off"}))
        .await;
    let (_, found) = h.query("SELECT Email FROM Contact").await;
    assert_eq!(
        found["totalSize"], 4,
        "every faulted write was committed: {found}"
    );
    let counters = h.control(Method::GET, "counters", Value::Null).await;
    assert_eq!(
        counters["after_write_faults"],
        json!({"drop": 1, "stall": 1, "error": 1})
    );
    h.control(
        Method::POST,
        "ui/contacts",
        super::contact("Ui", "ui@example.com"),
    )
    .await;
    let log = h.control(Method::GET, "writes?since=2", Value::Null).await;
    let seen: Vec<String> = log["writes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let (call, values) = (&w["call"], &w["values"]);
            let (method, path) = (&call["method"], &call["path"]);
            format!(
                "{} {method} {path} {} {}",
                w["kind"], w["source"], values["Email"]
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            r#""created" "POST" "/services/data/v62.0/sobjects/Contact/" "integration" "error@example.com""#,
            r#""created" "POST" "/services/data/v62.0/sobjects/Contact/" "integration" "x@example.com""#,
            r#""created" "POST" "/__sandbox/ui/contacts" "ui" "ui@example.com""#,
        ]
    );
}

#[tokio::test]
async fn a_lowered_batch_cap_refuses_larger_calls_and_the_tally_counts_them() {
    let h = Harness::start(SalesforceSandboxConfig::default()).await;
    let over = h
        .control_request(Method::PUT, "limits")
        .json(&json!({"batch_cap": 201}))
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), StatusCode::BAD_REQUEST, "200 is the ceiling");
    let limits = h
        .control(Method::PUT, "limits", json!({"batch_cap": 2}))
        .await;
    assert_eq!(
        (&limits["batch_cap"], &limits["batch_cap_ceiling"]),
        (&json!(2), &json!(200))
    );
    let records = |n: usize| {
        let list: Vec<Value> = (0..n)
            .map(|i| {
                let mut c = super::contact(&format!("L{i}"), &format!("l{i}@example.com"));
                c["attributes"] = json!({"type": "Contact"});
                c
            })
            .collect();
        json!({"records": list})
    };
    let (status, refused) = status_json(
        h.api(Method::POST, "composite/sobjects", Some(records(3)))
            .await,
    )
    .await;
    assert_eq!(
        (status, error_code(&refused)),
        (StatusCode::BAD_REQUEST, "EXCEEDED_ID_LIMIT")
    );
    let (status, _) = status_json(
        h.api(Method::POST, "composite/sobjects", Some(records(2)))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let counters = h.control(Method::GET, "counters", Value::Null).await;
    let tally = &counters["batches"]["POST /services/data/{version}/composite/sobjects"];
    assert_eq!(
        tally,
        &json!({"calls": 2, "records": 5, "max_records": 3, "refused_oversized": 1})
    );
    assert_eq!(counters["records_written"], 2);
    h.control(Method::POST, "reset", Value::Null).await;
    let limits = h.control(Method::GET, "limits", Value::Null).await;
    assert_eq!(limits["batch_cap"], 200, "reset restores Salesforce's cap");
}
