//! Two-way sync, black-box: the sandboxes' signed webhooks reach SyncRoot's receivers, changes
//! made inside one CRM reach the contact and the other CRM, SyncRoot's own writes coming back
//! cost nothing, and the conflict policy decides what a CRM may change.

use reqwest::Method;
use serde_json::{Value, json};
use syncroot_testkit::{Options, TestApp, eventually};

async fn two_way(extra_env: Vec<(&str, &str)>) -> TestApp {
    TestApp::spawn_with(Options {
        delivery: true,
        two_way: true,
        extra_env: extra_env
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ..Options::default()
    })
    .await
}

/// Waits until both CRMs hold `version` of the contact; returns the contact.
async fn synced(app: &TestApp, id: &str, version: i64) -> Value {
    eventually(&format!("{id} v{version} synced to both CRMs"), || async {
        let c: Value = app.get_contact(id).await.json().await.ok()?;
        let both = ["hubspot", "salesforce"]
            .iter()
            .all(|crm| c["sync"][crm]["synced_version"] == version);
        (c["version"] == version && both).then_some(c)
    })
    .await
}

/// Waits until SyncRoot has handled at least `n` webhook events from `crm`.
async fn handled(app: &TestApp, crm: &str, n: i64) {
    eventually(&format!("{n} {crm} webhook events handled"), || async {
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM inbound_events WHERE provider = $1")
                .bind(crm)
                .fetch_one(&app.db)
                .await
                .ok()?;
        (count >= n).then_some(())
    })
    .await
}

async fn written(app: &TestApp, base: &str) -> u64 {
    let counters = app.control(base, Method::GET, "counters", None).await;
    counters["records_written"].as_u64().unwrap()
}

async fn history(app: &TestApp, id: &str) -> Vec<Value> {
    let page: Value = app
        .authed(Method::GET, &format!("/contacts/{id}/history"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["versions"].as_array().unwrap().clone()
}

/// A contact's record id in a CRM, from its `sync` section.
fn remote_id(contact: &Value, crm: &str) -> String {
    contact["sync"][crm]["remote_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no {crm} record id in {contact}"))
        .to_owned()
}

#[tokio::test]
async fn an_api_write_that_comes_back_as_webhooks_costs_no_further_write() {
    let app = two_way(vec![]).await;
    let id = app
        .create(json!({"email": "echo@example.com", "first_name": "Ada", "job_title": "Analyst"}))
        .await;
    synced(&app, &id, 1).await;
    // Each CRM reports SyncRoot's write back (HubSpot: creation and property events).
    handled(&app, "hubspot", 1).await;
    handled(&app, "salesforce", 1).await;
    let c: Value = app.get_contact(&id).await.json().await.unwrap();
    assert_eq!(c["version"], 1, "an echo made a new version: {c}");
    assert_eq!(history(&app, &id).await.len(), 1);
    assert_eq!(written(&app, app.hubspot()).await, 1);
    assert_eq!(written(&app, app.salesforce()).await, 1);
}

#[tokio::test]
async fn a_ui_edit_in_hubspot_reaches_the_contact_and_salesforce_and_is_not_written_back() {
    let app = two_way(vec![]).await;
    let id = app
        .create(
            json!({"email": "hs-edit@example.com", "first_name": "Ada", "job_title": "Analyst"}),
        )
        .await;
    let c = synced(&app, &id, 1).await;
    handled(&app, "hubspot", 1).await;
    let hubspot_id = remote_id(&c, "hubspot");
    let salesforce_id = remote_id(&c, "salesforce");

    app.control(
        app.hubspot(),
        Method::PATCH,
        &format!("ui/contacts/{hubspot_id}"),
        Some(json!({"properties": {"jobtitle": "CTO"}})),
    )
    .await;

    let c = synced(&app, &id, 2).await;
    assert_eq!(c["job_title"], "CTO");
    let sf = app.sandbox_record(app.salesforce(), &salesforce_id).await;
    assert_eq!(sf["Title"], "CTO", "{sf}");
    let versions = history(&app, &id).await;
    assert_eq!(versions[1]["origin"], "hubspot");
    assert_eq!(
        versions[1]["changes"],
        json!([{"field": "job_title", "old": "Analyst", "new": "CTO"}])
    );
    // Salesforce reports SyncRoot's write of version 2 back: an echo.
    handled(&app, "salesforce", 2).await;
    assert_eq!(history(&app, &id).await.len(), 2);
    assert_eq!(
        written(&app, app.hubspot()).await,
        1,
        "written back to its source"
    );
    assert_eq!(written(&app, app.salesforce()).await, 2);
}

#[tokio::test]
async fn a_ui_edit_in_salesforce_reaches_the_contact_and_hubspot() {
    let app = two_way(vec![]).await;
    let id = app
        .create(json!({"email": "sf-edit@example.com", "last_name": "Lovelace"}))
        .await;
    let c = synced(&app, &id, 1).await;
    handled(&app, "salesforce", 1).await;
    let salesforce_id = remote_id(&c, "salesforce");
    let hubspot_id = remote_id(&c, "hubspot");

    app.control(
        app.salesforce(),
        Method::PATCH,
        &format!("ui/contacts/{salesforce_id}"),
        Some(json!({"Phone": "+44 20 7946 0000"})),
    )
    .await;

    let c = synced(&app, &id, 2).await;
    assert_eq!(c["phone"], "+44 20 7946 0000");
    let hs = app.sandbox_record(app.hubspot(), &hubspot_id).await;
    assert_eq!(hs["properties"]["phone"], "+44 20 7946 0000", "{hs}");
    assert_eq!(history(&app, &id).await[1]["origin"], "salesforce");
    assert_eq!(
        written(&app, app.salesforce()).await,
        1,
        "written back to its source"
    );
}

#[tokio::test]
async fn a_person_created_in_hubspot_becomes_a_contact_and_reaches_salesforce() {
    let app = two_way(vec![]).await;
    app.control(
        app.hubspot(),
        Method::POST,
        "ui/contacts",
        Some(json!({"properties": {"email": "Grace@Example.com", "firstname": "Grace", "lastname": "Hopper"}})),
    )
    .await;
    let found = eventually("the HubSpot person as a contact", || async {
        let page: Value = app
            .authed(Method::GET, "/contacts?email=grace@example.com")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        page["items"].as_array()?.first().cloned()
    })
    .await;
    let id = found["id"].as_str().unwrap().to_owned();
    assert_eq!(found["last_name"], "Hopper");
    let c = synced(&app, &id, 1).await;
    let sf = app
        .sandbox_record(app.salesforce(), &remote_id(&c, "salesforce"))
        .await;
    assert_eq!(sf["LastName"], "Hopper");
    assert_eq!(history(&app, &id).await[0]["origin"], "hubspot");
    assert_eq!(
        written(&app, app.hubspot()).await,
        0,
        "its source is not written"
    );
}

#[tokio::test]
async fn a_field_owned_by_the_app_is_restored_in_the_crm_that_changed_it() {
    let app = two_way(vec![("SYNCROOT_CONFLICT_OWNERS", "job_title=api")]).await;
    let id = app
        .create(json!({"email": "owned@example.com", "job_title": "Analyst"}))
        .await;
    let c = synced(&app, &id, 1).await;
    handled(&app, "hubspot", 1).await;
    let hubspot_id = remote_id(&c, "hubspot");

    app.control(
        app.hubspot(),
        Method::PATCH,
        &format!("ui/contacts/{hubspot_id}"),
        Some(json!({"properties": {"jobtitle": "CTO", "firstname": "Ada"}})),
    )
    .await;
    let c = synced(&app, &id, 2).await;
    assert_eq!(
        (c["first_name"].clone(), c["job_title"].clone()),
        (json!("Ada"), json!("Analyst"))
    );
    let versions = history(&app, &id).await;
    assert_eq!(
        versions[1]["conflicts"],
        json!([{"field": "job_title", "kept": "api", "kept_value": "Analyst",
                "lost": "hubspot", "lost_value": "CTO", "reason": "owner"}])
    );
    eventually("HubSpot corrected back to the owner's value", || async {
        let hs = app.sandbox_record(app.hubspot(), &hubspot_id).await;
        (hs["properties"]["jobtitle"] == "Analyst").then_some(())
    })
    .await;
}

#[tokio::test]
async fn forged_stale_and_unsigned_webhooks_get_401_and_queue_nothing() {
    use syncroot_sandbox::hubspot::signature::{decode_uri_for_v3, sign_v3};
    let app = two_way(vec![]).await;
    let url = format!("{}/webhooks/hubspot", app.base);
    // Each request carries its own event, so whatever got queued shows up by its key.
    let body = |event: u32| {
        format!(r#"[{{"eventId": {event}, "occurredAt": 1, "subscriptionType": "contact.propertyChange", "objectId": 42}}]"#)
            .into_bytes()
    };
    let secret = syncroot_testkit::sandbox_settings().hubspot.client_secret;
    let now = chrono::Utc::now().timestamp_millis();
    let sign = |ts: i64, body: &[u8], key: &str| {
        sign_v3(key, "POST", &decode_uri_for_v3(&url), body, &ts.to_string())
    };
    let send = |signature: Option<String>, ts: i64, body: Vec<u8>| {
        let mut req = app
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("x-hubspot-request-timestamp", ts.to_string())
            .body(body);
        if let Some(s) = signature {
            req = req.header("x-hubspot-signature-v3", s);
        }
        req.send()
    };

    let good = send(Some(sign(now, &body(1), &secret)), now, body(1))
        .await
        .unwrap();
    assert_eq!(good.status(), 204);
    let cases = [
        (
            "forged",
            Some(sign(now, &body(2), "not-the-secret")),
            now,
            body(2),
        ),
        (
            "stale",
            Some(sign(now - 600_000, &body(3), &secret)),
            now - 600_000,
            body(3),
        ),
        (
            "future",
            Some(sign(now + 600_000, &body(4), &secret)),
            now + 600_000,
            body(4),
        ),
        ("tampered", Some(sign(now, &body(5), &secret)), now, body(6)),
        ("unsigned", None, now, body(7)),
    ];
    for (what, signature, ts, body) in cases {
        let r = send(signature, ts, body).await.unwrap();
        assert_eq!(r.status(), 401, "{what}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], "urn:syncroot:problem:signature", "{what}: {p}");
    }
    let garbage = send(Some(sign(now, b"{}", &secret)), now, b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400, "verified but not an event array");
    // The refused requests were answered before anything was queued; the good one is handled
    // through the same queue after them.
    let late = send(Some(sign(now, &body(8), &secret)), now, body(8))
        .await
        .unwrap();
    assert_eq!(late.status(), 204);
    handled(&app, "hubspot", 2).await;
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT event_key FROM inbound_events ORDER BY event_key")
            .fetch_all(&app.db)
            .await
            .unwrap();
    let events: Vec<&str> = keys.iter().filter_map(|k| k.split(':').next()).collect();
    assert_eq!(events, vec!["1", "8"]);
}

#[tokio::test]
async fn a_record_deleted_in_hubspot_deletes_the_contact_everywhere_when_deletes_propagate() {
    let app = two_way(vec![("SYNCROOT_INBOUND_DELETES", "propagate")]).await;
    let id = app.create(json!({"email": "gone@example.com"})).await;
    let c = synced(&app, &id, 1).await;
    let hubspot_id = remote_id(&c, "hubspot");
    let salesforce_id = remote_id(&c, "salesforce");

    app.control(
        app.hubspot(),
        Method::DELETE,
        &format!("ui/contacts/{hubspot_id}"),
        None,
    )
    .await;
    eventually("the contact deleted", || async {
        (app.get_contact(&id).await.status() == 404).then_some(())
    })
    .await;
    eventually("the Salesforce record deleted", || async {
        let r = app.sandbox_record(app.salesforce(), &salesforce_id).await;
        (r.is_null() || r["IsDeleted"] == true).then_some(())
    })
    .await;
    // The history of a deleted contact is not served; the table still records who deleted it.
    let last: (String, String) = sqlx::query_as(
        "SELECT origin, operation FROM contact_versions WHERE contact_id = $1 ORDER BY entry DESC LIMIT 1",
    )
    .bind(uuid::Uuid::parse_str(&id).unwrap())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(last, ("hubspot".to_owned(), "delete".to_owned()));
}

#[tokio::test]
async fn a_record_deleted_in_salesforce_is_ignored_by_default() {
    let app = two_way(vec![]).await;
    let id = app.create(json!({"email": "stays@example.com"})).await;
    let c = synced(&app, &id, 1).await;
    handled(&app, "salesforce", 1).await;
    let salesforce_id = remote_id(&c, "salesforce");
    app.control(
        app.salesforce(),
        Method::DELETE,
        &format!("ui/contacts/{salesforce_id}"),
        None,
    )
    .await;
    handled(&app, "salesforce", 2).await;
    let c: Value = app.get_contact(&id).await.json().await.unwrap();
    assert_eq!(c["version"], 1, "{c}");
    assert_eq!(history(&app, &id).await.len(), 1);
}

#[tokio::test]
async fn a_change_whose_webhook_never_came_is_found_by_the_poller() {
    let app = two_way(vec![("SYNCROOT_POLL_INTERVAL_SECS", "1")]).await;
    let id = app
        .create(json!({"email": "polled@example.com", "job_title": "Analyst"}))
        .await;
    let c = synced(&app, &id, 1).await;
    let hubspot_id = remote_id(&c, "hubspot");
    // HubSpot's webhooks stop arriving (they stay queued in the sandbox for the whole test).
    app.control(
        app.hubspot(),
        Method::PUT,
        "faults",
        Some(json!({"webhooks_paused": true})),
    )
    .await;
    app.control(
        app.hubspot(),
        Method::PATCH,
        &format!("ui/contacts/{hubspot_id}"),
        Some(json!({"properties": {"jobtitle": "Head of Polling"}})),
    )
    .await;
    let c = synced(&app, &id, 2).await;
    assert_eq!(c["job_title"], "Head of Polling");
    assert_eq!(history(&app, &id).await[1]["origin"], "hubspot");
    assert_eq!(
        written(&app, app.hubspot()).await,
        1,
        "written back to its source"
    );
}
