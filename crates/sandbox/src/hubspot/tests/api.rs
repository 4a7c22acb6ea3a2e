use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{Sandbox, json_of};
use crate::hubspot::HubspotSandboxConfig;

#[tokio::test]
async fn contact_lifecycle_follows_hubspot_semantics() {
    let sb = Sandbox::default().await;
    let res = sb
        .create(json!({"email": "Ada@Example.com", "firstname": "Ada"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(res.headers().contains_key("x-hubspot-ratelimit-remaining"));
    let created = json_of(res).await;
    let id = created["id"].as_str().expect("string id").to_owned();
    assert!(id.chars().all(|c| c.is_ascii_digit()));
    assert_eq!(created["properties"]["hs_object_id"], id.as_str());
    assert_eq!(created["properties"]["email"], "ada@example.com");
    assert_eq!(created["archived"], false);

    let dup = sb.create(json!({"email": "ada@example.com"})).await;
    assert_eq!(dup.status(), StatusCode::CONFLICT);
    let dup = json_of(dup).await;
    assert_eq!(dup["category"], "CONFLICT");
    assert_eq!(
        dup["message"],
        format!("Contact already exists. Existing ID: {id}")
    );

    let by_email = sb
        .api(
            Method::GET,
            "/crm/v3/objects/contacts/ada%40example.com?idProperty=email&properties=company",
        )
        .send()
        .await
        .expect("get by email");
    let by_email = json_of(by_email).await;
    assert_eq!(by_email["id"], id.as_str());
    assert_eq!(by_email["properties"]["company"], serde_json::Value::Null);
    assert!(by_email["properties"].get("firstname").is_none());

    let patch = json!({"properties": {"company": "Engines"}});
    let patched = sb
        .api(
            Method::PATCH,
            "/crm/v3/objects/0-1/ada@example.com?idProperty=email",
        )
        .json(&patch)
        .send()
        .await
        .expect("patch by email");
    assert_eq!(patched.status(), StatusCode::OK);
    assert_eq!(json_of(patched).await["properties"]["company"], "Engines");

    let url = format!("/crm/v3/objects/contacts/{id}");
    let deleted = sb.api(Method::DELETE, &url).send().await.expect("delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = sb
        .api(Method::GET, &url)
        .send()
        .await
        .expect("get archived");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let archived = sb
        .api(Method::GET, &format!("{url}?archived=true"))
        .send()
        .await
        .expect("get");
    let archived = json_of(archived).await;
    assert_eq!(archived["archived"], true);
    assert!(archived["archivedAt"].is_string());
    sb.stop().await;
}

#[tokio::test]
async fn missing_or_wrong_token_is_401_invalid_authentication() {
    let sb = Sandbox::default().await;
    let url = format!("{}/crm/v3/objects/contacts", sb.base);
    let bare = sb.client.get(&url).send().await.expect("request");
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(bare).await["category"], "INVALID_AUTHENTICATION");
    let wrong = sb
        .client
        .get(&url)
        .bearer_auth("pat-na1-other")
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(sb.counters().await["unauthorized"], 2);
    sb.stop().await;
}

#[tokio::test]
async fn invalid_email_and_unknown_property_are_validation_errors() {
    let sb = Sandbox::default().await;
    let res = sb.create(json!({"email": "nope", "nickname": "x"})).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body = json_of(res).await;
    assert_eq!(body["category"], "VALIDATION_ERROR");
    let codes: Vec<_> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["code"].clone())
        .collect();
    assert_eq!(
        codes,
        [json!("INVALID_EMAIL"), json!("PROPERTY_DOESNT_EXIST")]
    );
    sb.stop().await;
}

#[tokio::test]
async fn list_pages_with_after_cursor_and_link() {
    let sb = Sandbox::start(HubspotSandboxConfig {
        seed_fixtures: true,
        ..Default::default()
    })
    .await;
    let first = sb
        .api(Method::GET, "/crm/v3/objects/contacts?limit=2")
        .send()
        .await
        .expect("list");
    let first = json_of(first).await;
    assert_eq!(first["results"].as_array().map(Vec::len), Some(2));
    let after = first["paging"]["next"]["after"]
        .as_str()
        .expect("next cursor")
        .to_owned();
    assert!(
        first["paging"]["next"]["link"]
            .as_str()
            .is_some_and(|l| l.contains(&format!("after={after}")))
    );
    let second = sb
        .api(
            Method::GET,
            &format!("/crm/v3/objects/contacts?limit=2&after={after}"),
        )
        .send()
        .await
        .expect("list page 2");
    let second = json_of(second).await;
    assert_eq!(second["results"].as_array().map(Vec::len), Some(1));
    assert_eq!(second["results"][0]["id"], after.as_str());
    assert!(second.get("paging").is_none());
    sb.stop().await;
}

#[tokio::test]
async fn burst_limit_answers_429_with_policy_and_counts_every_call() {
    let sb = Sandbox::start(HubspotSandboxConfig {
        burst_limit: 2,
        ..Default::default()
    })
    .await;
    for _ in 0..2 {
        let ok = sb
            .api(Method::GET, "/crm/v3/objects/contacts")
            .send()
            .await
            .expect("list");
        assert_eq!(ok.status(), StatusCode::OK);
    }
    let refused = sb
        .api(Method::GET, "/crm/v3/objects/contacts")
        .send()
        .await
        .expect("list");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["x-hubspot-ratelimit-remaining"], "0");
    let body = json_of(refused).await;
    assert_eq!(
        (body["errorType"].clone(), body["policyName"].clone()),
        (json!("RATE_LIMIT"), json!("TEN_SECONDLY_ROLLING"))
    );
    let counters = sb.counters().await;
    assert_eq!(counters["calls"]["GET /crm/v3/objects/contacts"], 3);
    assert_eq!(counters["rate_limited"], 1);
    let raised = sb
        .control(Method::PUT, "/limits")
        .json(&json!({"burst_limit": 10}))
        .send()
        .await
        .expect("limits");
    assert_eq!(json_of(raised).await["daily_limit"], 250_000);
    let ok = sb
        .api(Method::GET, "/crm/v3/objects/contacts")
        .send()
        .await
        .expect("list");
    assert_eq!(ok.status(), StatusCode::OK);
    sb.stop().await;
}

#[tokio::test]
async fn faults_force_429s_outages_and_reset_clears_them() {
    let sb = Sandbox::default().await;
    let faults = json!({"force_429": 1, "error_status": 502});
    let set = sb
        .control(Method::PUT, "/faults")
        .json(&faults)
        .send()
        .await
        .expect("faults");
    assert_eq!(json_of(set).await["error_rate"], 0.0);
    let forced = sb
        .api(Method::GET, "/crm/v3/objects/contacts")
        .send()
        .await
        .expect("call");
    assert_eq!(forced.status(), StatusCode::TOO_MANY_REQUESTS);
    let after = sb
        .api(Method::GET, "/crm/v3/objects/contacts")
        .send()
        .await
        .expect("call");
    assert_eq!(after.status(), StatusCode::OK);
    let _ = sb
        .control(Method::PUT, "/faults")
        .json(&json!({"error_rate": 1.0}))
        .send()
        .await;
    let injected = sb
        .api(Method::GET, "/crm/v3/objects/contacts")
        .send()
        .await
        .expect("call");
    assert_eq!(injected.status(), StatusCode::BAD_GATEWAY);
    let _ = sb
        .control(Method::PUT, "/faults")
        .json(&json!({"outage": true}))
        .send()
        .await;
    let down = sb
        .api(Method::GET, "/crm/v3/objects/contacts")
        .send()
        .await
        .expect("call");
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(sb.counters().await["errors_injected"], 2);
    let reset = sb
        .control(Method::POST, "/reset")
        .send()
        .await
        .expect("reset");
    assert!(reset.status().is_success());
    let up = sb
        .api(Method::GET, "/crm/v3/objects/contacts")
        .send()
        .await
        .expect("call");
    assert_eq!(up.status(), StatusCode::OK);
    assert_eq!(sb.counters().await["calls_total"], 1);
    sb.stop().await;
}

/// One create under an after-write fault with a 1 s client: its status, or the error's text.
async fn create_after_write(sb: &Sandbox, mode: &str, email: &str) -> Result<u16, String> {
    let faults = json!({"after_write": mode, "after_write_count": 1, "after_write_stall_ms": 1500});
    let set = sb
        .control(Method::PUT, "/faults")
        .json(&faults)
        .send()
        .await;
    assert!(set.is_ok_and(|r| r.status().is_success()));
    sb.api(Method::POST, "/crm/v3/objects/contacts")
        .timeout(std::time::Duration::from_secs(1))
        .json(&json!({"properties": {"email": email}}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn after_write_faults_commit_the_write_and_lose_its_answer() {
    let sb = Sandbox::default().await;
    let dropped = create_after_write(&sb, "drop", "drop@example.com").await;
    assert!(dropped.is_err(), "no answer expected: {dropped:?}");
    let stalled = create_after_write(&sb, "stall", "stall@example.com").await;
    assert!(
        stalled.as_ref().is_err_and(|e| e.contains("TimedOut")),
        "{stalled:?}"
    );
    let errored = create_after_write(&sb, "error", "error@example.com").await;
    assert_eq!(errored, Ok(503));
    // A write HubSpot refuses (the e-mail exists) committed nothing, so it is not hit.
    let refused = create_after_write(&sb, "error", "error@example.com").await;
    assert_eq!(refused, Ok(409));
    let search = json!({"filterGroups": []});
    let found = sb
        .api(Method::POST, "/crm/v3/objects/contacts/search")
        .json(&search)
        .send()
        .await
        .expect("search");
    assert_eq!(found.status().as_u16(), 200, "a read is never hit");
    let state = json_of(
        sb.control(Method::GET, "/state")
            .send()
            .await
            .expect("state"),
    )
    .await;
    assert_eq!(
        state["contacts"].as_array().map(Vec::len),
        Some(3),
        "{state}"
    );
    let counters = sb.counters().await;
    assert_eq!(
        counters["after_write_faults"],
        json!({"drop": 1, "stall": 1, "error": 1})
    );
    // The write log holds each committed create, with the call that made it.
    let writes = sb
        .control(Method::GET, "/writes")
        .send()
        .await
        .expect("writes");
    let writes = json_of(writes).await["writes"].clone();
    let seen: Vec<(String, String)> = writes
        .as_array()
        .expect("an array")
        .iter()
        .map(|w| {
            let call = format!(
                "{} {} {}",
                w["call"]["method"], w["call"]["path"], w["source"]
            );
            let what = format!("{} {}", w["kind"], w["values"]["email"]);
            (call, what)
        })
        .collect();
    let call = r#""POST" "/crm/v3/objects/contacts" "integration""#.to_owned();
    let created = |email: &str| (call.clone(), format!(r#""created" "{email}""#));
    let expected = ["drop@example.com", "stall@example.com", "error@example.com"].map(created);
    assert_eq!(seen, expected);
    let last = writes[2]["seq"].as_u64().expect("seq");
    let later = sb
        .control(Method::GET, &format!("/writes?since={last}"))
        .send()
        .await;
    let later = json_of(later.expect("writes")).await;
    assert_eq!(later["writes"], json!([]));
    sb.stop().await;
}
