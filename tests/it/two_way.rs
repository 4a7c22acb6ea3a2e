//! Two-way sync, black-box: the sandboxes' signed webhooks reach SyncRoot's receivers, changes
//! made inside one CRM reach the contact and the other CRM, SyncRoot's own writes coming back
//! cost nothing, and the conflict policy decides what a CRM may change.

use reqwest::Method;
use serde_json::{Value, json};
use syncroot_testkit::{Options, TestApp, eventually, remote_id};

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

#[tokio::test]
async fn an_api_write_that_comes_back_as_webhooks_costs_no_further_write() {
    let app = two_way(vec![]).await;
    let id = app
        .create(json!({"email": "echo@example.com", "first_name": "Ada", "job_title": "Analyst"}))
        .await;
    app.wait_synced(&id, 1).await;
    // Each CRM reports SyncRoot's write back (HubSpot: creation and property events).
    handled(&app, "hubspot", 1).await;
    handled(&app, "salesforce", 1).await;
    let c: Value = app.get_contact(&id).await.json().await.unwrap();
    assert_eq!(c["version"], 1, "an echo made a new version: {c}");
    assert_eq!(history(&app, &id).await.len(), 1);
    assert_eq!(app.records_written(app.hubspot()).await, 1);
    assert_eq!(app.records_written(app.salesforce()).await, 1);
}

#[tokio::test]
async fn a_ui_edit_in_hubspot_reaches_the_contact_and_salesforce_and_is_not_written_back() {
    let app = two_way(vec![]).await;
    let id = app
        .create(
            json!({"email": "hs-edit@example.com", "first_name": "Ada", "job_title": "Analyst"}),
        )
        .await;
    let c = app.wait_synced(&id, 1).await;
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

    let c = app.wait_synced(&id, 2).await;
    assert_eq!(c["job_title"], "CTO");
    let sf = app.sandbox_record(app.salesforce(), &salesforce_id).await;
    assert_eq!(sf["Title"], "CTO", "{sf}");
    let versions = history(&app, &id).await;
    assert_eq!(versions[1]["origin"], "hubspot");
    assert_eq!(versions[1]["via"], "webhook");
    assert!(
        versions[0].get("via").is_none(),
        "the API's version has no via"
    );
    assert_eq!(
        versions[1]["changes"],
        json!([{"field": "job_title", "old": "Analyst", "new": "CTO"}])
    );
    // Salesforce reports SyncRoot's write of version 2 back: an echo.
    handled(&app, "salesforce", 2).await;
    assert_eq!(history(&app, &id).await.len(), 2);
    assert_eq!(
        app.records_written(app.hubspot()).await,
        1,
        "written back to its source"
    );
    assert_eq!(app.records_written(app.salesforce()).await, 2);
}

#[tokio::test]
async fn a_ui_edit_in_salesforce_reaches_the_contact_and_hubspot() {
    let app = two_way(vec![]).await;
    let id = app
        .create(json!({"email": "sf-edit@example.com", "last_name": "Lovelace"}))
        .await;
    let c = app.wait_synced(&id, 1).await;
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

    let c = app.wait_synced(&id, 2).await;
    assert_eq!(c["phone"], "+44 20 7946 0000");
    let hs = app.sandbox_record(app.hubspot(), &hubspot_id).await;
    assert_eq!(hs["properties"]["phone"], "+44 20 7946 0000", "{hs}");
    assert_eq!(history(&app, &id).await[1]["origin"], "salesforce");
    assert_eq!(
        app.records_written(app.salesforce()).await,
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
    let c = app.wait_synced(&id, 1).await;
    let sf = app
        .sandbox_record(app.salesforce(), &remote_id(&c, "salesforce"))
        .await;
    assert_eq!(sf["LastName"], "Hopper");
    assert_eq!(history(&app, &id).await[0]["origin"], "hubspot");
    assert_eq!(
        app.records_written(app.hubspot()).await,
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
    let c = app.wait_synced(&id, 1).await;
    handled(&app, "hubspot", 1).await;
    let hubspot_id = remote_id(&c, "hubspot");

    app.control(
        app.hubspot(),
        Method::PATCH,
        &format!("ui/contacts/{hubspot_id}"),
        Some(json!({"properties": {"jobtitle": "CTO", "firstname": "Ada"}})),
    )
    .await;
    let c = app.wait_synced(&id, 2).await;
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
    let c = app.wait_synced(&id, 1).await;
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
async fn a_record_deleted_in_salesforce_is_detached_by_default_and_not_recreated() {
    let app = two_way(vec![]).await;
    let id = app.create(json!({"email": "stays@example.com"})).await;
    let c = app.wait_synced(&id, 1).await;
    handled(&app, "salesforce", 1).await;
    let salesforce_id = remote_id(&c, "salesforce");
    app.control(
        app.salesforce(),
        Method::DELETE,
        &format!("ui/contacts/{salesforce_id}"),
        None,
    )
    .await;
    let c = eventually("the Salesforce link detached", || async {
        let c: Value = app.get_contact(&id).await.json().await.ok()?;
        (c["sync"]["salesforce"]["state"] == "detached").then_some(c)
    })
    .await;
    assert_eq!(c["version"], 1, "the contact stays: {c}");
    let reason = c["sync"]["salesforce"]["last_error"].as_str().unwrap();
    assert!(
        reason.contains(&salesforce_id) && reason.contains("deleted"),
        "{reason}"
    );
    let versions = history(&app, &id).await;
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(versions[1]["operation"], "detach");
    assert_eq!(versions[1]["origin"], "salesforce");

    // The app goes on changing the contact: HubSpot follows, the deleted record stays deleted.
    let before = app.records_written(app.salesforce()).await;
    app.patch_contact(&id, json!({"job_title": "Still here"}))
        .await;
    eventually("HubSpot has version 2", || async {
        let c: Value = app.get_contact(&id).await.json().await.ok()?;
        (c["sync"]["hubspot"]["synced_version"] == 2).then_some(())
    })
    .await;
    let c: Value = app.get_contact(&id).await.json().await.unwrap();
    assert_eq!(c["sync"]["salesforce"]["state"], "detached", "{c}");
    assert_eq!(app.records_written(app.salesforce()).await, before);
    let sf = app.sandbox_record(app.salesforce(), &salesforce_id).await;
    assert_eq!(sf["IsDeleted"], true, "{sf}");
}

#[tokio::test]
async fn a_privacy_deletion_in_hubspot_erases_the_person_everywhere() {
    let app = two_way(vec![]).await;
    let id = app
        .create(json!({"email": "erase.me@example.com", "first_name": "Eraseme", "phone": "+44 20 7946 0000"}))
        .await;
    app.patch_contact(&id, json!({"last_name": "Forgetme"}))
        .await;
    let c = app.wait_synced(&id, 2).await;
    let hubspot_id = remote_id(&c, "hubspot");
    let salesforce_id = remote_id(&c, "salesforce");

    app.control(
        app.hubspot(),
        Method::POST,
        &format!("ui/contacts/{hubspot_id}/gdpr-delete"),
        None,
    )
    .await;
    eventually("the contact gone", || async {
        (app.get_contact(&id).await.status() == 404).then_some(())
    })
    .await;
    eventually("the Salesforce record deleted", || async {
        let r = app.sandbox_record(app.salesforce(), &salesforce_id).await;
        (r.is_null() || r["IsDeleted"] == true).then_some(())
    })
    .await;
    eventually("the persisted copy erased", || async {
        let email: String = sqlx::query_scalar("SELECT email FROM contacts WHERE id = $1")
            .bind(uuid::Uuid::parse_str(&id).unwrap())
            .fetch_one(&app.db)
            .await
            .ok()?;
        email.starts_with("erased-").then_some(())
    })
    .await;
    // No trace of the person's values is left in SyncRoot's tables.
    for table in [
        "contact_heads",
        "contacts",
        "contact_versions",
        "crm_links",
        "idempotency_keys",
    ] {
        // The table names are this test's own constants. Each value is matched whole: a
        // fragment such as the phone's "7946" also turns up in timestamps and ids by chance.
        let hits: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM {table} t WHERE t::text ILIKE '%erase.me@example.com%' OR t::text ILIKE '%Eraseme%' OR t::text ILIKE '%Forgetme%' OR t::text LIKE '%20 7946 0000%'"
        )))
        .fetch_all(&app.db)
        .await
        .unwrap();
        assert!(
            hits.is_empty(),
            "{table} still holds the erased person's values: {hits:?}"
        );
    }
    let ops: Vec<String> = sqlx::query_scalar(
        "SELECT operation FROM contact_versions WHERE contact_id = $1 ORDER BY entry",
    )
    .bind(uuid::Uuid::parse_str(&id).unwrap())
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(ops, ["create", "update", "erase"]);
}

/// Creates two contacts and waits until both CRMs hold them; their `sync` sections.
async fn two_people(app: &TestApp, a: Value, b: Value) -> ((String, Value), (String, Value)) {
    let (ia, ib) = (app.create(a).await, app.create(b).await);
    let (ca, cb) = (app.wait_synced(&ia, 1).await, app.wait_synced(&ib, 1).await);
    ((ia, ca), (ib, cb))
}

#[tokio::test]
async fn records_merged_in_hubspot_merge_their_contacts_and_leave_salesforces_duplicate_to_a_person()
 {
    let app = two_way(vec![]).await;
    let ((a, ca), (b, cb)) = two_people(
        &app,
        json!({"email": "merge.a@example.com", "first_name": "Ada"}),
        json!({"email": "merge.b@example.com", "first_name": "Ada", "job_title": "Engineer"}),
    )
    .await;
    let (ha, hb) = (remote_id(&ca, "hubspot"), remote_id(&cb, "hubspot"));
    let (sa, sb) = (remote_id(&ca, "salesforce"), remote_id(&cb, "salesforce"));

    app.control(
        app.hubspot(),
        Method::POST,
        "ui/contacts/merge",
        Some(json!({"primaryObjectId": ha, "objectIdToMerge": hb})),
    )
    .await;
    eventually("the merged-away contact gone", || async {
        (app.get_contact(&b).await.status() == 404).then_some(())
    })
    .await;
    // The survivor took the job title HubSpot moved into the surviving record, everywhere.
    let c = app.wait_synced(&a, 2).await;
    assert_eq!(c["job_title"], "Engineer", "{c}");
    assert_eq!(c["email"], "merge.a@example.com");
    let sf = app.sandbox_record(app.salesforce(), &sa).await;
    assert_eq!(sf["Title"], "Engineer", "{sf}");
    let notes: Vec<Value> = history(&app, &a)
        .await
        .into_iter()
        .filter(|v| v["operation"] == "merge")
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = notes[0]["note"].as_str().unwrap();
    assert!(
        note.contains(&b) && note.contains(&sb) && note.contains(&sa),
        "{note}"
    );
    // Salesforce cannot merge through its REST API: B's record is left for a person, never
    // deleted, and SyncRoot no longer writes it.
    let links: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT crm, detached FROM crm_links WHERE contact_id = $1 ORDER BY crm")
            .bind(uuid::Uuid::parse_str(&b).unwrap())
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert!(links.iter().all(|(_, d)| d.is_some()), "{links:?}");
    assert!(
        links[1].1.as_deref().unwrap().contains("by hand"),
        "{links:?}"
    );
    let sf_b = app.sandbox_record(app.salesforce(), &sb).await;
    assert_eq!(sf_b["IsDeleted"], false, "{sf_b}");
    assert_eq!(
        app.records_written(app.hubspot()).await,
        2,
        "HubSpot is written once per contact: the merge costs no write there"
    );
}

#[tokio::test]
async fn records_merged_in_salesforce_merge_their_contacts() {
    let app = two_way(vec![]).await;
    let ((a, ca), (b, cb)) = two_people(
        &app,
        json!({"email": "sfmerge.a@example.com", "last_name": "Hopper"}),
        json!({"email": "sfmerge.b@example.com", "last_name": "Hopper", "phone": "+1 555 0100"}),
    )
    .await;
    let (sa, sb) = (remote_id(&ca, "salesforce"), remote_id(&cb, "salesforce"));
    let hb = remote_id(&cb, "hubspot");

    app.control(
        app.salesforce(),
        Method::POST,
        "ui/contacts/merge",
        Some(json!({"masterRecordId": sa, "recordIds": [sb]})),
    )
    .await;
    eventually("the merged-away contact gone", || async {
        (app.get_contact(&b).await.status() == 404).then_some(())
    })
    .await;
    let c = app.wait_synced(&a, 2).await;
    assert_eq!(c["phone"], "+1 555 0100", "{c}");
    let merged = history(&app, &a)
        .await
        .into_iter()
        .any(|v| v["operation"] == "merge" && v["origin"] == "salesforce");
    assert!(merged);
    // HubSpot's record of B stays for a person to merge (SyncRoot never deletes it).
    let hs_b = app.sandbox_record(app.hubspot(), &hb).await;
    assert!(!hs_b.is_null() && hs_b["archived"] != true, "{hs_b}");
}

#[tokio::test]
async fn a_change_whose_webhook_never_came_is_found_by_the_poller() {
    let app = two_way(vec![("SYNCROOT_POLL_INTERVAL_SECS", "1")]).await;
    let id = app
        .create(json!({"email": "polled@example.com", "job_title": "Analyst"}))
        .await;
    let c = app.wait_synced(&id, 1).await;
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
    let c = app.wait_synced(&id, 2).await;
    assert_eq!(c["job_title"], "Head of Polling");
    let versions = history(&app, &id).await;
    assert_eq!(versions[1]["origin"], "hubspot");
    assert_eq!(versions[1]["via"], "poller", "{versions:?}");
    assert_eq!(
        app.records_written(app.hubspot()).await,
        1,
        "written back to its source"
    );
}

/// A record deleted in a CRM whose webhook has not come (or never will): delivery finds it gone.
async fn delete_in_hubspot_then_change(app: &TestApp) -> (String, String) {
    let id = app.create(json!({"email": "vanished@example.com"})).await;
    let c = app.wait_synced(&id, 1).await;
    let old = remote_id(&c, "hubspot");
    app.control(
        app.hubspot(),
        Method::PUT,
        "faults",
        Some(json!({"webhooks_paused": true})),
    )
    .await;
    app.control(
        app.hubspot(),
        Method::DELETE,
        &format!("ui/contacts/{old}"),
        None,
    )
    .await;
    app.patch_contact(&id, json!({"job_title": "After"})).await;
    (id, old)
}

#[tokio::test]
async fn a_record_gone_from_a_crm_is_not_brought_back_by_the_next_change() {
    let app = two_way(vec![]).await;
    let (id, old) = delete_in_hubspot_then_change(&app).await;
    let c = eventually("the HubSpot link detached", || async {
        let c: Value = app.get_contact(&id).await.json().await.ok()?;
        (c["sync"]["hubspot"]["state"] == "detached").then_some(c)
    })
    .await;
    assert_eq!(c["sync"]["hubspot"]["remote_id"], old.as_str());
    let all = app.sandbox_contacts(app.hubspot()).await;
    assert_eq!(all.len(), 1, "no record recreated: {all:?}");
    assert_eq!(all[0]["archived"], true);
    synced_in(&app, &id, "salesforce", 2).await;
}

#[tokio::test]
async fn with_deletions_ignored_a_record_gone_from_a_crm_is_created_again() {
    let app = two_way(vec![("SYNCROOT_INBOUND_DELETES", "ignore")]).await;
    let (id, old) = delete_in_hubspot_then_change(&app).await;
    let c = app.wait_synced(&id, 2).await;
    let new = remote_id(&c, "hubspot");
    assert_ne!(new, old);
    let record = app.sandbox_record(app.hubspot(), &new).await;
    assert_eq!(record["properties"]["jobtitle"], "After", "{record}");
}

async fn synced_in(app: &TestApp, id: &str, crm: &str, version: i64) {
    eventually(&format!("{id} v{version} in {crm}"), || async {
        let c: Value = app.get_contact(id).await.json().await.ok()?;
        (c["sync"][crm]["synced_version"] == version).then_some(())
    })
    .await;
}
