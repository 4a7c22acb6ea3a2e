//! `POST /__sandbox/seed`: a population stored at once, listed by the API like any other.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Sandbox, json_of};

async fn seed(sb: &Sandbox, records: Value) -> (StatusCode, Value) {
    let res = sb
        .control(Method::POST, "/seed")
        .json(&records)
        .send()
        .await
        .unwrap();
    (res.status(), json_of(res).await)
}

#[tokio::test]
async fn seeded_contacts_are_listed_in_id_order_dated_in_the_past_and_cost_no_call_or_write() {
    let sb = Sandbox::default().await;
    let records: Vec<Value> = (0..250)
        .map(|i| match i % 2 {
            0 => json!({"email": format!("seed{i}@example.com"), "firstname": "Flat"}),
            _ => json!({"properties": {"email": format!("seed{i}@example.com"), "firstname": "Wrapped"}}),
        })
        .collect();
    let (status, seeded) = seed(&sb, Value::Array(records)).await;
    assert_eq!(status, StatusCode::CREATED, "{seeded}");
    let ids: Vec<&str> = seeded["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 250);

    let counters = sb.counters().await;
    assert_eq!(
        (&counters["calls_total"], &counters["records_written"]),
        (&json!(0), &json!(0))
    );
    let writes = json_of(sb.control(Method::GET, "/writes").send().await.unwrap()).await;
    assert_eq!(
        writes["writes"],
        json!([]),
        "seeding is not in the write log"
    );

    let page = sb
        .api(
            Method::GET,
            "/crm/v3/objects/contacts?limit=100&properties=email,firstname",
        )
        .send()
        .await
        .unwrap();
    let page = json_of(page).await;
    let listed: Vec<&str> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids[..100]);
    assert_eq!(page["paging"]["next"]["after"], ids[100]);
    let first = &page["results"][0];
    assert_eq!(first["properties"]["firstname"], "Flat");
    assert_eq!(page["results"][1]["properties"]["firstname"], "Wrapped");
    let created = first["createdAt"].as_str().unwrap();
    assert!(
        created < first["updatedAt"].as_str().unwrap()
            || created == first["updatedAt"].as_str().unwrap()
    );
    assert!(
        created < page["results"][99]["createdAt"].as_str().unwrap(),
        "creation dates follow ids"
    );
}

#[tokio::test]
async fn a_seed_with_a_duplicate_email_names_the_record_and_stores_nothing() {
    let sb = Sandbox::default().await;
    let records =
        json!([{"email": "a@example.com"}, {"email": "b@example.com"}, {"email": "A@example.com"}]);
    let (status, refused) = seed(&sb, records).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let problems = refused["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].as_str().unwrap().starts_with("record 2 "),
        "{refused}"
    );
    let state = json_of(sb.control(Method::GET, "/state").send().await.unwrap()).await;
    assert_eq!(state["contacts"], json!([]));
}
