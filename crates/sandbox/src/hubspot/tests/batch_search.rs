use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Sandbox, json_of};

async fn post(sb: &Sandbox, path: &str, body: Value) -> reqwest::Response {
    sb.api(Method::POST, path)
        .json(&body)
        .send()
        .await
        .expect("POST")
}

#[tokio::test]
async fn batch_create_without_trace_ids_fails_whole_on_first_duplicate() {
    let sb = Sandbox::default().await;
    let existing = json_of(sb.create(json!({"email": "a@x.io"})).await).await;
    let inputs = json!({"inputs": [
        {"properties": {"email": "new@x.io"}},
        {"properties": {"email": "a@x.io"}},
    ]});
    let res = post(&sb, "/crm/v3/objects/contacts/batch/create", inputs).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let msg = json_of(res).await["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(msg.ends_with(&format!(
        "Existing ID: {}",
        existing["id"].as_str().unwrap_or("?")
    )));
    let state = json_of(
        sb.control(Method::GET, "/state")
            .send()
            .await
            .expect("state"),
    )
    .await;
    assert_eq!(
        state["contacts"].as_array().map(Vec::len),
        Some(1),
        "nothing written"
    );
    sb.stop().await;
}

#[tokio::test]
async fn batch_create_with_trace_ids_answers_207_per_input() {
    let sb = Sandbox::default().await;
    let _ = sb.create(json!({"email": "a@x.io"})).await;
    let inputs = json!({"inputs": [
        {"properties": {"email": "new@x.io"}, "objectWriteTraceId": "row-1"},
        {"properties": {"email": "a@x.io"}, "objectWriteTraceId": "row-2"},
    ]});
    let res = post(&sb, "/crm/v3/objects/contacts/batch/create", inputs).await;
    assert_eq!(res.status(), StatusCode::MULTI_STATUS);
    let body = json_of(res).await;
    assert_eq!(body["status"], "COMPLETE");
    assert_eq!(body["numErrors"], 1);
    assert_eq!(body["results"][0]["objectWriteTraceId"], "row-1");
    assert_eq!(body["errors"][0]["category"], "CONFLICT");
    assert_eq!(
        body["errors"][0]["context"]["objectWriteTraceId"][0],
        "row-2"
    );
    for field in ["requestedAt", "startedAt", "completedAt"] {
        assert!(body[field].is_string(), "{field}");
    }
    sb.stop().await;
}

#[tokio::test]
async fn batch_of_101_inputs_is_refused() {
    let sb = Sandbox::default().await;
    let inputs: Vec<_> = (0..101)
        .map(|i| json!({"properties": {"firstname": format!("n{i}")}}))
        .collect();
    let res = post(
        &sb,
        "/crm/v3/objects/contacts/batch/create",
        json!({"inputs": inputs}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(res).await["category"], "VALIDATION_ERROR");
    sb.stop().await;
}

#[tokio::test]
async fn batch_upsert_creates_or_updates_by_email_and_custom_unique_property() {
    let sb = Sandbox::default().await;
    let _ = sb
        .create(json!({"email": "a@x.io", "firstname": "Old"}))
        .await;
    let by_email = json!({"inputs": [
        {"id": "A@x.io", "idProperty": "email", "properties": {"firstname": "New"}},
        {"id": "b@x.io", "idProperty": "email", "properties": {"firstname": "Bee"}},
    ]});
    let res = post(&sb, "/crm/v3/objects/contacts/batch/upsert", by_email).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = json_of(res).await;
    let news: Vec<_> = body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["new"].clone())
        .collect();
    assert_eq!(news, [json!(false), json!(true)]);
    let by_custom = json!({"inputs": [{"id": "sr-9", "idProperty": "syncroot_id", "properties": {"lastname": "Nine"}}]});
    let res = post(&sb, "/crm/v3/objects/contacts/batch/upsert", by_custom).await;
    assert_eq!(
        json_of(res).await["results"][0]["properties"]["syncroot_id"],
        "sr-9"
    );
    let read = json!({"idProperty": "syncroot_id", "properties": ["lastname"], "inputs": [{"id": "sr-9"}, {"id": "missing"}]});
    let res = post(&sb, "/crm/v3/objects/contacts/batch/read", read).await;
    assert_eq!(res.status(), StatusCode::MULTI_STATUS);
    let body = json_of(res).await;
    assert_eq!(body["results"][0]["properties"]["lastname"], "Nine");
    assert_eq!(body["errors"][0]["context"]["ids"][0], "missing");
    let counters = sb.counters().await;
    let tally = &counters["records_per_call"]["POST /crm/v3/objects/contacts/batch/upsert"];
    assert_eq!(
        (tally["count"].clone(), tally["sum"].clone()),
        (json!(2), json!(3))
    );
    assert_eq!(counters["records_written"], 4);
    sb.stop().await;
}

#[tokio::test]
async fn search_filters_sorts_and_pages_without_rate_limit_headers() {
    let sb = Sandbox::default().await;
    let before = chrono::Utc::now().timestamp_millis() - 1;
    for name in ["ada", "bob", "cy"] {
        let _ = sb
            .create(json!({"email": format!("{name}@x.io"), "firstname": name}))
            .await;
    }
    let eq = json!({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": "BOB@X.IO"}]}]});
    let res = post(&sb, "/crm/v3/objects/contacts/search", eq).await;
    assert!(!res.headers().contains_key("x-hubspot-ratelimit-remaining"));
    let body = json_of(res).await;
    assert_eq!(
        (
            body["total"].clone(),
            body["results"][0]["properties"]["firstname"].clone()
        ),
        (json!(1), json!("bob"))
    );
    let gt = json!({
        "filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GT", "value": before.to_string()}]}],
        "sorts": [{"propertyName": "firstname", "direction": "DESCENDING"}],
        "limit": 2,
    });
    let body = json_of(post(&sb, "/crm/v3/objects/contacts/search", gt).await).await;
    assert_eq!(body["total"], 3);
    assert_eq!(body["results"][0]["properties"]["firstname"], "cy");
    assert_eq!(body["paging"]["next"]["after"], "2");
    let in_upper = json!({"filterGroups": [{"filters": [{"propertyName": "firstname", "operator": "IN", "values": ["Ada"]}]}]});
    assert_eq!(
        json_of(post(&sb, "/crm/v3/objects/contacts/search", in_upper).await).await["total"],
        0
    );
    let too_big = post(
        &sb,
        "/crm/v3/objects/contacts/search",
        json!({"limit": 201}),
    )
    .await;
    assert_eq!(too_big.status(), StatusCode::BAD_REQUEST);
    let too_far = post(
        &sb,
        "/crm/v3/objects/contacts/search",
        json!({"after": "10000"}),
    )
    .await;
    assert_eq!(too_far.status(), StatusCode::BAD_REQUEST);
    sb.stop().await;
}

#[tokio::test]
async fn a_lowered_batch_cap_refuses_larger_calls_and_the_tally_counts_them() {
    let sb = Sandbox::default().await;
    let set = |cap: u64| {
        sb.control(Method::PUT, "/limits")
            .json(&json!({"batch_cap": cap}))
            .send()
    };
    assert_eq!(
        set(101).await.unwrap().status(),
        StatusCode::BAD_REQUEST,
        "100 is the ceiling"
    );
    let limits = json_of(set(2).await.unwrap()).await;
    assert_eq!(
        (&limits["batch_cap"], &limits["batch_cap_ceiling"]),
        (&json!(2), &json!(100))
    );
    let inputs = |n: usize| {
        let list: Vec<Value> = (0..n)
            .map(|i| json!({"properties": {"email": format!("l{i}@x.io")}}))
            .collect();
        json!({"inputs": list})
    };
    let refused = post(&sb, "/crm/v3/objects/contacts/batch/create", inputs(3)).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(refused).await["category"], "VALIDATION_ERROR");
    let taken = post(&sb, "/crm/v3/objects/contacts/batch/create", inputs(2)).await;
    assert_eq!(taken.status(), StatusCode::CREATED);
    let counters = sb.counters().await;
    assert_eq!(
        counters["batches"]["POST /crm/v3/objects/contacts/batch/create"],
        json!({"calls": 2, "records": 5, "max_records": 3, "refused_oversized": 1})
    );
    assert_eq!(counters["records_written"], 2);
    sb.control(Method::POST, "/reset").send().await.unwrap();
    let limits = json_of(sb.control(Method::GET, "/limits").send().await.unwrap()).await;
    assert_eq!(limits["batch_cap"], 100, "reset restores HubSpot's cap");
    sb.stop().await;
}
