//! Seeding a population, SOQL paging with `Sforce-Query-Options`, and Bulk API 2.0 query jobs.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Harness, error_code, status_json};
use crate::salesforce::SalesforceSandboxConfig;

/// `n` Contacts `Person{i}` with e-mail `person{i}@example.com`.
fn people(n: usize) -> Value {
    let list: Vec<Value> = (0..n)
        .map(|i| json!({"LastName": format!("Person{i}"), "Email": format!("person{i}@example.com"), "Title": "Say \"hi\", then\nleave"}))
        .collect();
    Value::Array(list)
}

/// Creates a query job for `soql`; returns its id.
async fn new_job(h: &Harness, soql: &str) -> String {
    let body = json!({"operation": "query", "query": soql});
    let (status, job) = status_json(h.api(Method::POST, "jobs/query", Some(body)).await).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    job["id"].as_str().unwrap().to_owned()
}

async fn seed(h: &Harness, records: Value) -> (StatusCode, Value) {
    let resp = h
        .control_request(Method::POST, "seed")
        .json(&records)
        .send()
        .await
        .unwrap();
    status_json(resp).await
}

#[tokio::test]
async fn seeded_contacts_are_stored_with_past_dates_without_calls_changes_or_writes() {
    let h = Harness::start(SalesforceSandboxConfig::default()).await;
    let (status, body) = seed(&h, people(2_500)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["created"], 2_500);
    let ids = body["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 2_500);
    assert!(ids.iter().all(|id| id.as_str().unwrap().len() == 18));

    let state = h.control(Method::GET, "state", json!(null)).await;
    assert_eq!(state["contacts"].as_array().unwrap().len(), 2_500);
    assert_eq!(
        state["changes"],
        json!([]),
        "seeding sends no notifications"
    );
    let writes = h.control(Method::GET, "writes", json!(null)).await;
    assert_eq!(
        writes["writes"],
        json!([]),
        "seeding is not in the write log"
    );
    let counters = h.control(Method::GET, "counters", json!(null)).await;
    assert_eq!(counters["calls"], json!({}), "seeding is not an API call");
    let first = &state["contacts"][0];
    let last = &state["contacts"][2_499];
    assert!(first["CreatedDate"].as_str() < last["CreatedDate"].as_str());
    assert!(first["CreatedDate"].as_str() <= first["SystemModstamp"].as_str());
}

#[tokio::test]
async fn a_seed_with_a_refused_record_names_it_and_stores_nothing() {
    let h = Harness::start(SalesforceSandboxConfig::default()).await;
    let records = json!([{"LastName": "A"}, {"Email": "no-last-name@example.com"}, 7, {"LastName": "B", "Nope__c": 1}]);
    let (status, body) = seed(&h, records).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let problems = body["problems"].as_array().unwrap();
    assert_eq!(
        problems.len(),
        1,
        "the body is refused before any record: {body}"
    );
    let (status, body) = seed(
        &h,
        json!([{"LastName": "A"}, {"Email": "x@example.com"}, {"LastName": "B", "Nope__c": 1}]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let problems: Vec<&str> = body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        problems[0].starts_with("record 1 ") && problems[0].contains("LastName"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("record 2 ") && problems[1].contains("Nope__c"),
        "{problems:?}"
    );
    let state = h.control(Method::GET, "state", json!(null)).await;
    assert_eq!(state["contacts"], json!([]));
}

#[tokio::test]
async fn query_pages_follow_the_batch_size_asked_for_within_bounds() {
    let h = Harness::start(SalesforceSandboxConfig::default()).await;
    seed(&h, people(2_300)).await;
    for (asked, expected) in [
        (None, 2_000),
        (Some("batchSize=500"), 500),
        (Some("batchSize=5"), 200),
        (Some("batchSize=9000"), 2_000),
    ] {
        let mut req = h
            .http
            .get(format!("{}/services/data/v62.0/query", h.base))
            .bearer_auth(&h.token)
            .query(&[("q", "SELECT Id FROM Contact")]);
        if let Some(a) = asked {
            req = req.header("Sforce-Query-Options", a);
        }
        let (status, page) = status_json(req.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["totalSize"], 2_300);
        assert_eq!(page["done"], false);
        assert_eq!(
            page["records"].as_array().unwrap().len(),
            expected,
            "{asked:?}"
        );
    }
}

#[tokio::test]
async fn a_bulk_query_job_completes_after_polls_and_pages_its_csv_by_locator() {
    let h = Harness::start(SalesforceSandboxConfig::default()).await;
    seed(&h, people(2_500)).await;
    let create = json!({"operation": "query", "query": "SELECT Id, Email, Title, SystemModstamp FROM Contact"});
    let (status, job) = status_json(h.api(Method::POST, "jobs/query", Some(create)).await).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["state"], "UploadComplete");
    assert_eq!(job["jobType"], "V2Query");
    let id = job["id"].as_str().unwrap().to_owned();

    let (status, early) = status_json(
        h.api(Method::GET, &format!("jobs/query/{id}/results"), None)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&early), "INVALIDJOBSTATE");
    let (_, first) = status_json(h.api(Method::GET, &format!("jobs/query/{id}"), None).await).await;
    assert_eq!(first["state"], "InProgress");
    let (_, second) =
        status_json(h.api(Method::GET, &format!("jobs/query/{id}"), None).await).await;
    assert_eq!(second["state"], "JobComplete");
    assert_eq!(second["numberRecordsProcessed"], 2_500);

    let mut locator: Option<String> = None;
    let mut rows = 0;
    let mut sets = 0;
    loop {
        let mut path = format!("jobs/query/{id}/results?maxRecords=1000");
        if let Some(l) = &locator {
            path.push_str(&format!("&locator={l}"));
        }
        let resp = h.api(Method::GET, &path, None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let number: usize = resp.headers()["sforce-numberofrecords"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let next = resp.headers()["sforce-locator"]
            .to_str()
            .unwrap()
            .to_owned();
        let csv = resp.text().await.unwrap();
        assert!(
            csv.starts_with("\"Id\",\"Email\",\"Title\",\"SystemModstamp\"\n"),
            "{csv:.80}"
        );
        assert!(csv.contains("\"Say \"\"hi\"\", then\nleave\""));
        assert!(csv.contains(".000Z\"\n"));
        rows += number;
        sets += 1;
        if next == "null" {
            break;
        }
        locator = Some(next);
    }
    assert_eq!((rows, sets), (2_500, 3));

    let counters = h.control(Method::GET, "counters", json!(null)).await;
    assert_eq!(
        counters["calls"]["POST /services/data/{version}/jobs/query"],
        1
    );
    assert_eq!(
        counters["calls"]["GET /services/data/{version}/jobs/query/{jobId}"],
        2
    );
    assert_eq!(
        counters["calls"]["GET /services/data/{version}/jobs/query/{jobId}/results"],
        4
    );

    let aborted = h
        .api(
            Method::PATCH,
            &format!("jobs/query/{id}"),
            Some(json!({"state": "Aborted"})),
        )
        .await;
    assert_eq!(
        aborted.status(),
        StatusCode::BAD_REQUEST,
        "a complete job cannot be aborted"
    );
    let deleted = h
        .api(Method::DELETE, &format!("jobs/query/{id}"), None)
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = h.api(Method::GET, &format!("jobs/query/{id}"), None).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bulk_query_jobs_can_be_aborted_made_to_fail_and_refuse_bad_requests() {
    let h = Harness::start(SalesforceSandboxConfig::default()).await;
    let create = |q: &str| json!({"operation": "query", "query": q});
    let id = new_job(&h, "SELECT Id FROM Contact").await;
    let (status, aborted) = status_json(
        h.api(
            Method::PATCH,
            &format!("jobs/query/{id}"),
            Some(json!({"state": "Aborted"})),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, &aborted["state"]),
        (StatusCode::OK, &json!("Aborted"))
    );

    h.control(
        Method::PUT,
        "bulk-query",
        json!({"polls_in_progress": 0, "fail": true}),
    )
    .await;
    let job = new_job(&h, "SELECT Id FROM Contact").await;
    let (_, failed) =
        status_json(h.api(Method::GET, &format!("jobs/query/{job}"), None).await).await;
    assert_eq!(failed["state"], "Failed");
    assert!(failed["errorMessage"].is_string());

    for (body, code) in [
        (create("SELECT Id FROM Contact OFFSET 5"), "MALFORMED_QUERY"),
        (create("SELECT Nope__c FROM Contact"), "INVALID_FIELD"),
        (
            json!({"operation": "insert", "query": "SELECT Id FROM Contact"}),
            "INVALIDJOB",
        ),
        (json!({"operation": "query"}), "INVALIDJOB"),
        (
            json!({"operation": "query", "query": "SELECT Id FROM Contact", "columnDelimiter": "NONE"}),
            "INVALIDJOB",
        ),
    ] {
        let (status, err) =
            status_json(h.api(Method::POST, "jobs/query", Some(body.clone())).await).await;
        assert_eq!(
            (status, error_code(&err)),
            (StatusCode::BAD_REQUEST, code),
            "{body}"
        );
    }
}
