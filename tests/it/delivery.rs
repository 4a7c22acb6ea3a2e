//! Delivery to HubSpot and Salesforce, black-box: the real app with real Postgres and RabbitMQ,
//! delivering to both sandboxes (in-process, port 0) through their real wire protocols.

use syncroot_testkit as common;

use common::{Options, TestApp, eventually};
use reqwest::Method;
use serde_json::{Value, json};

async fn app() -> TestApp {
    TestApp::spawn_with(Options {
        delivery: true,
        ..Options::default()
    })
    .await
}

async fn app_with(env: &[(&str, &str)]) -> TestApp {
    let extra_env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    TestApp::spawn_with(Options {
        delivery: true,
        extra_env,
        ..Options::default()
    })
    .await
}

/// Live HubSpot contacts with this e-mail.
async fn hubspot_with(app: &TestApp, email: &str) -> Vec<Value> {
    app.sandbox_contacts(app.hubspot())
        .await
        .into_iter()
        .filter(|c| c["archived"] != true && c["properties"]["email"] == email)
        .collect()
}

/// Live Salesforce contacts with this e-mail.
async fn salesforce_with(app: &TestApp, email: &str) -> Vec<Value> {
    app.sandbox_contacts(app.salesforce())
        .await
        .into_iter()
        .filter(|c| {
            c["IsDeleted"] != true
                && c["Email"]
                    .as_str()
                    .is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
        .collect()
}

/// Waits until the contact shows `state` for both CRMs; returns the contact.
async fn wait_sync(app: &TestApp, id: &str, version: i64, state: &str) -> Value {
    eventually(
        &format!("contact {id} v{version} to be {state} in both CRMs"),
        || async {
            let c = app.wait_version(id, version).await;
            let both = ["hubspot", "salesforce"]
                .iter()
                .all(|crm| c["sync"][crm]["state"] == state);
            both.then_some(c)
        },
    )
    .await
}

#[tokio::test]
async fn creates_updates_and_deletes_reach_both_crms_with_their_own_field_names() {
    let app = app().await;
    let id = app
        .create(json!({"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace",
                       "phone": "+44 20 7946 0000", "company": "Analytical Engines", "job_title": "Engineer"}))
        .await;
    let c = wait_sync(&app, &id, 1, "synced").await;
    let hs = hubspot_with(&app, "ada@example.com").await;
    assert_eq!(hs.len(), 1);
    let p = &hs[0]["properties"];
    assert_eq!(
        (p["firstname"].as_str(), p["lastname"].as_str()),
        (Some("Ada"), Some("Lovelace"))
    );
    assert_eq!(
        (p["jobtitle"].as_str(), p["company"].as_str()),
        (Some("Engineer"), Some("Analytical Engines"))
    );
    assert_eq!(p["phone"], "+44 20 7946 0000");
    assert_eq!(c["sync"]["hubspot"]["remote_id"], hs[0]["id"]);
    let sf = salesforce_with(&app, "ada@example.com").await;
    assert_eq!(sf.len(), 1);
    assert_eq!(
        (sf[0]["FirstName"].as_str(), sf[0]["LastName"].as_str()),
        (Some("Ada"), Some("Lovelace"))
    );
    assert_eq!(sf[0]["Title"], "Engineer");
    assert_eq!(sf[0]["SyncRoot_Id__c"], id.as_str());
    assert_eq!(c["sync"]["salesforce"]["remote_id"], sf[0]["Id"]);
    assert_eq!(c["sync"]["salesforce"]["synced_version"], 1);

    let r = app
        .authed(Method::PATCH, &format!("/contacts/{id}"))
        .json(&json!({"job_title": "CTO", "phone": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_sync(&app, &id, 2, "synced").await;
    let hs = hubspot_with(&app, "ada@example.com").await;
    assert_eq!(hs[0]["properties"]["jobtitle"], "CTO");
    assert!(
        hs[0]["properties"]["phone"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "a cleared field is cleared in HubSpot"
    );
    let sf = salesforce_with(&app, "ada@example.com").await;
    assert_eq!(sf[0]["Title"], "CTO");
    assert_eq!(sf[0]["Phone"], Value::Null);

    let r = app
        .authed(Method::DELETE, &format!("/contacts/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    eventually("the delete to reach both CRMs", || async {
        let gone = hubspot_with(&app, "ada@example.com").await.is_empty()
            && salesforce_with(&app, "ada@example.com").await.is_empty();
        gone.then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_contact_without_a_last_name_gets_salesforces_placeholder() {
    let app = app().await;
    let id = app
        .create(json!({"email": "mononym@example.com", "first_name": "Cher"}))
        .await;
    wait_sync(&app, &id, 1, "synced").await;
    let sf = salesforce_with(&app, "mononym@example.com").await;
    assert_eq!(sf[0]["LastName"], "[not provided]");
    let hs = hubspot_with(&app, "mononym@example.com").await;
    assert!(
        hs[0]["properties"]["lastname"]
            .as_str()
            .unwrap_or("")
            .is_empty()
    );
}

#[tokio::test]
async fn a_person_who_already_exists_in_a_crm_is_linked_not_duplicated() {
    let app = app().await;
    let hs = app
        .control(
            app.hubspot(),
            Method::POST,
            "ui/contacts",
            Some(json!({"properties": {"email": "grace@example.com", "firstname": "G"}})),
        )
        .await;
    let sf = app
        .control(
            app.salesforce(),
            Method::POST,
            "ui/contacts",
            Some(json!({"LastName": "Hopper", "Email": "grace@example.com"})),
        )
        .await;
    let id = app
        .create(json!({"email": "grace@example.com", "first_name": "Grace", "last_name": "Hopper"}))
        .await;
    let c = wait_sync(&app, &id, 1, "synced").await;
    let in_hs = hubspot_with(&app, "grace@example.com").await;
    assert_eq!(in_hs.len(), 1, "one HubSpot record");
    assert_eq!(in_hs[0]["id"], hs["id"]);
    assert_eq!(in_hs[0]["properties"]["firstname"], "Grace");
    assert_eq!(c["sync"]["hubspot"]["remote_id"], hs["id"]);
    let in_sf = salesforce_with(&app, "grace@example.com").await;
    assert_eq!(in_sf.len(), 1, "one Salesforce record");
    assert_eq!(c["sync"]["salesforce"]["remote_id"], in_sf[0]["Id"]);
    assert_eq!(in_sf[0]["SyncRoot_Id__c"], id.as_str());
    let sf_id = sf["id"].as_str().or(sf["Id"].as_str()).unwrap();
    assert_eq!(in_sf[0]["Id"], sf_id);
}

#[tokio::test]
async fn an_email_change_updates_the_linked_records_instead_of_creating_new_ones() {
    let app = app().await;
    let id = app
        .create(json!({"email": "old@example.com", "last_name": "Same"}))
        .await;
    let before = wait_sync(&app, &id, 1, "synced").await;
    let r = app
        .authed(Method::PATCH, &format!("/contacts/{id}"))
        .json(&json!({"email": "new@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let after = wait_sync(&app, &id, 2, "synced").await;
    for crm in ["hubspot", "salesforce"] {
        assert_eq!(
            after["sync"][crm]["remote_id"], before["sync"][crm]["remote_id"],
            "{crm} keeps the record"
        );
    }
    assert!(hubspot_with(&app, "old@example.com").await.is_empty());
    assert_eq!(hubspot_with(&app, "new@example.com").await.len(), 1);
    assert!(salesforce_with(&app, "old@example.com").await.is_empty());
    assert_eq!(salesforce_with(&app, "new@example.com").await.len(), 1);
    assert_eq!(app.sandbox_contacts(app.hubspot()).await.len(), 1);
    assert_eq!(app.sandbox_contacts(app.salesforce()).await.len(), 1);
}

#[tokio::test]
async fn redelivered_tasks_and_failed_calls_never_produce_a_duplicate() {
    let app = app().await;
    // Half the CRM calls fail with 503 while contacts are created; retries must not duplicate.
    for base in [app.hubspot(), app.salesforce()] {
        app.control(
            base,
            Method::PUT,
            "faults",
            Some(json!({"error_rate": 0.5, "error_status": 503})),
        )
        .await;
    }
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            app.create(json!({"email": format!("r{i}@example.com"), "last_name": "R"}))
                .await,
        );
    }
    // And every delivery task again, as after a crash before the acks.
    let topo = app.topology();
    for id in &ids {
        for crm in ["hubspot", "salesforce"] {
            let task = json!({"v": 1, "contact_id": id, "version": 1, "crm": crm});
            app.publish_raw(
                &topo.delivery_queue(crm.parse().unwrap()),
                task.to_string().as_bytes(),
            )
            .await;
        }
    }
    for id in &ids {
        wait_sync(&app, id, 1, "synced").await;
    }
    for base in [app.hubspot(), app.salesforce()] {
        app.control(
            base,
            Method::PUT,
            "faults",
            Some(json!({"error_rate": 0.0})),
        )
        .await;
    }
    for i in 0..20 {
        let email = format!("r{i}@example.com");
        assert_eq!(
            hubspot_with(&app, &email).await.len(),
            1,
            "{email} in HubSpot"
        );
        assert_eq!(
            salesforce_with(&app, &email).await.len(),
            1,
            "{email} in Salesforce"
        );
    }
}

#[tokio::test]
async fn an_expired_salesforce_session_is_refreshed_transparently() {
    let app = app().await;
    let id = app
        .create(json!({"email": "session@example.com", "last_name": "S"}))
        .await;
    wait_sync(&app, &id, 1, "synced").await;
    let before = app
        .control(app.salesforce(), Method::GET, "counters", None)
        .await["token_requests"]
        .as_i64()
        .unwrap();
    app.control(app.salesforce(), Method::POST, "expire-sessions", None)
        .await;
    let r = app
        .authed(Method::PATCH, &format!("/contacts/{id}"))
        .json(&json!({"job_title": "After expiry"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let c = wait_sync(&app, &id, 2, "synced").await;
    assert_eq!(c["sync"]["salesforce"]["last_error"], Value::Null);
    assert_eq!(
        salesforce_with(&app, "session@example.com").await[0]["Title"],
        "After expiry"
    );
    let after = app
        .control(app.salesforce(), Method::GET, "counters", None)
        .await["token_requests"]
        .as_i64()
        .unwrap();
    assert_eq!(after, before + 1, "exactly one new login");
}

#[tokio::test]
async fn one_crm_in_outage_does_not_hold_up_the_other() {
    let app = app().await;
    app.control(
        app.hubspot(),
        Method::PUT,
        "faults",
        Some(json!({"outage": true})),
    )
    .await;
    let id = app
        .create(json!({"email": "split@example.com", "last_name": "Split"}))
        .await;
    let c = eventually("Salesforce synced while HubSpot is down", || async {
        let c = app.wait_version(&id, 1).await;
        (c["sync"]["salesforce"]["state"] == "synced"
            && c["sync"]["hubspot"]["state"] == "retrying")
            .then_some(c)
    })
    .await;
    assert!(
        c["sync"]["hubspot"]["last_error"]
            .as_str()
            .unwrap()
            .contains("unavailable"),
        "{c}"
    );
    app.control(
        app.hubspot(),
        Method::PUT,
        "faults",
        Some(json!({"outage": false})),
    )
    .await;
    wait_sync(&app, &id, 1, "synced").await;
    assert_eq!(hubspot_with(&app, "split@example.com").await.len(), 1);
}

/// Waits until both CRMs hold all `n` contacts.
async fn all_synced(app: &TestApp, n: i64) {
    eventually(&format!("all {n} in both CRMs"), || async {
        let synced: i64 =
            sqlx::query_scalar("SELECT count(*) FROM crm_links WHERE state = 'synced'")
                .fetch_one(&app.db)
                .await
                .ok()?;
        (synced == 2 * n).then_some(())
    })
    .await;
}

/// A figure of every batch call a sandbox received (refused ones included), per route.
fn batches(counters: &Value, figure: &str) -> Vec<u64> {
    counters["batches"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|t| t[figure].as_u64())
        .collect()
}

#[tokio::test]
async fn a_burst_goes_out_in_full_batches_within_each_crms_cap() {
    let app = app_with(&[("SYNCROOT_DELIVERY_LINGER_MS", "200")]).await;
    let bodies: Vec<Value> = (0..450)
        .map(|i| json!({"email": format!("b{i}@example.com"), "last_name": "B"}))
        .collect();
    for chunk in bodies.chunks(64) {
        let replies =
            futures_util::future::join_all(chunk.iter().map(|b| app.post_contact(b))).await;
        assert!(replies.iter().all(|r| r.status() == 202));
    }
    all_synced(&app, 450).await;
    assert_eq!(app.sandbox_contacts(app.hubspot()).await.len(), 450);
    assert_eq!(app.sandbox_contacts(app.salesforce()).await.len(), 450);
    let hs = app
        .control(app.hubspot(), Method::GET, "counters", None)
        .await;
    let sf = app
        .control(app.salesforce(), Method::GET, "counters", None)
        .await;
    let within = |counters: &Value, cap: u64| {
        let max = batches(counters, "max_records");
        !max.is_empty()
            && max.iter().all(|m| *m <= cap)
            && batches(counters, "refused_oversized")
                .iter()
                .all(|r| *r == 0)
    };
    assert!(within(&hs, 100), "HubSpot batches stay within 100: {hs}");
    assert_eq!(hs["rate_limited"], 0, "{hs}");
    assert!(within(&sf, 200), "Salesforce batches stay within 200: {sf}");
    // 450 contacts need at least 5 HubSpot calls; batching keeps it near that, far from 450.
    let hs_calls = hs["calls_total"].as_i64().unwrap();
    assert!((5..=20).contains(&hs_calls), "HubSpot calls: {hs}");
    let sf_calls = sf["calls_total"].as_i64().unwrap();
    assert!((3..=30).contains(&sf_calls), "Salesforce calls: {sf}");
}

/// Changes that keep coming, each within the linger of the last, fill batches: a batch waits a
/// linger past its latest task (up to `delivery_linger_max_ms`), not past its first.
#[tokio::test]
async fn changes_that_keep_coming_one_at_a_time_still_go_out_in_full_batches() {
    let app = app_with(&[
        ("SYNCROOT_DELIVERY_LINGER_MS", "250"),
        ("SYNCROOT_DELIVERY_LINGER_MAX_MS", "60000"),
    ])
    .await;
    // One at a time: each create waits for the one before it to be accepted.
    for i in 0..300 {
        let body = json!({"email": format!("t{i}@example.com"), "last_name": "T"});
        assert_eq!(app.post_contact(&body).await.status(), 202);
    }
    all_synced(&app, 300).await;
    let calls = |counters: &Value| batches(counters, "calls").iter().sum::<u64>();
    let hs = app
        .control(app.hubspot(), Method::GET, "counters", None)
        .await;
    let sf = app
        .control(app.salesforce(), Method::GET, "counters", None)
        .await;
    // 3 HubSpot and 2 Salesforce batches at best; one more each if the machine stalled past a
    // linger once. A batch closed a linger after its first task would take many more.
    assert!((3..=4).contains(&calls(&hs)), "HubSpot batches: {hs}");
    assert!((2..=3).contains(&calls(&sf)), "Salesforce batches: {sf}");
}

/// Updates of linked records and creates, arriving interleaved in one batch, go out grouped
/// by kind: each CRM takes each kind in its own call, so cut in arrival order every call of
/// the cap would carry both and be split in two.
#[tokio::test]
async fn interleaved_updates_and_creates_go_out_in_calls_grouped_by_kind() {
    let app = app_with(&[
        ("SYNCROOT_DELIVERY_LINGER_MS", "250"),
        ("SYNCROOT_DELIVERY_LINGER_MAX_MS", "60000"),
    ])
    .await;
    let mut linked = Vec::new();
    for i in 0..150 {
        let body = json!({"email": format!("u{i}@example.com"), "last_name": "U"});
        let reply = app.post_contact(&body).await;
        assert_eq!(reply.status(), 202);
        let v: Value = reply.json().await.expect("accepted body");
        linked.push(v["id"].as_str().expect("id").to_owned());
    }
    all_synced(&app, 150).await;
    let calls = |counters: &Value| batches(counters, "calls").iter().sum::<u64>();
    let counters = |base: &str| {
        let (app, base) = (&app, base.to_owned());
        async move { app.control(&base, Method::GET, "counters", None).await }
    };
    let (hs_before, sf_before) = (
        calls(&counters(app.hubspot()).await),
        calls(&counters(app.salesforce()).await),
    );
    // One at a time, alternating: an update of a linked contact, then a new contact.
    for (i, id) in linked.iter().enumerate() {
        app.patch_contact(id, json!({"job_title": "Changed"})).await;
        let body = json!({"email": format!("c{i}@example.com"), "last_name": "C"});
        assert_eq!(app.post_contact(&body).await.status(), 202);
    }
    // Every contact's current version in both CRMs.
    app.wait_links_current(600).await;
    let hs = counters(app.hubspot()).await;
    let sf = counters(app.salesforce()).await;
    // HubSpot (100 a call): 150 updates and 150 creates, 2 calls each; Salesforce (200): 1
    // each. One more each if the machine stalled past a linger once. In arrival order the same
    // batch would take 6 HubSpot calls and 4 Salesforce ones.
    let (hs_calls, sf_calls) = (calls(&hs) - hs_before, calls(&sf) - sf_before);
    assert!(
        (4..=5).contains(&hs_calls),
        "HubSpot calls {hs_calls}: {hs}"
    );
    assert!(
        (2..=3).contains(&sf_calls),
        "Salesforce calls {sf_calls}: {sf}"
    );
}

#[tokio::test]
async fn pacing_keeps_a_burst_under_the_crms_rate_limit_without_a_single_429() {
    // One call per contact, so 14 contacts need 14 calls against an allowance of 8 per 10 s.
    let app = app_with(&[
        ("SYNCROOT_DELIVERY_BATCHING", "false"),
        ("SYNCROOT_CRMS", "hubspot"),
    ])
    .await;
    app.control(
        app.hubspot(),
        Method::PUT,
        "limits",
        Some(json!({"burst_limit": 8})),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..14 {
        ids.push(
            app.create(json!({"email": format!("p{i}@example.com")}))
                .await,
        );
    }
    for id in &ids {
        eventually(&format!("{id} synced"), || async {
            let c = app.wait_version(id, 1).await;
            (c["sync"]["hubspot"]["state"] == "synced").then_some(())
        })
        .await;
    }
    let counters = app
        .control(app.hubspot(), Method::GET, "counters", None)
        .await;
    assert_eq!(counters["rate_limited"], 0, "{counters}");
    assert_eq!(app.sandbox_contacts(app.hubspot()).await.len(), 14);
}
