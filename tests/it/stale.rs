//! Old work arriving late: a retried update that reaches delivery after its contact was
//! deleted, and a dead letter replayed after its contact moved on. Each must leave the CRMs at
//! the contact's latest accepted state, never bring back an older one.

use std::time::Duration;

use syncroot_testkit as common;

use common::dlq::send;
use common::{Options, TestApp, admin_options, eventually};
use reqwest::Method;
use serde_json::{Value, json};

/// Delivery retries quickly, so a test waits seconds, not minutes, for a retried task.
fn quick_retries(mut opts: Options) -> Options {
    opts.extra_env
        .push(("SYNCROOT_DELIVERY_RETRY_TIERS".into(), "100ms,200ms".into()));
    opts
}

async fn outage(app: &TestApp, base: &str, on: bool) {
    app.control(base, Method::PUT, "faults", Some(json!({"outage": on})))
        .await;
}

/// The version each CRM's link of the contact holds (`None`: not synced yet).
async fn synced_versions(app: &TestApp, id: &str) -> Vec<(String, Option<i64>)> {
    sqlx::query_as("SELECT crm, synced_version FROM crm_links WHERE contact_id = $1 ORDER BY crm")
        .bind(id.parse::<uuid::Uuid>().unwrap())
        .fetch_all(&app.db)
        .await
        .unwrap()
}

/// The live records of a sandbox that are this contact's by its e-mail or its SyncRoot id.
async fn live_records(app: &TestApp, base: &str, id: &str, email: &str) -> Vec<Value> {
    app.sandbox_contacts(base)
        .await
        .into_iter()
        .filter(|c| c["archived"] != true && c["IsDeleted"] != true)
        .filter(|c| {
            c["properties"]["email"] == email || c["Email"] == email || c["SyncRoot_Id__c"] == id
        })
        .collect()
}

#[tokio::test]
async fn an_update_retried_after_its_contact_was_deleted_does_not_bring_the_records_back() {
    let app = TestApp::spawn_with(quick_retries(Options {
        delivery: true,
        ..Options::default()
    }))
    .await;
    let email = "late-update@example.com";
    let id = app
        .create(json!({"email": email, "last_name": "First"}))
        .await;
    app.wait_synced(&id, 1).await;

    // Both CRMs are down while the contact is changed and then deleted: the update's tasks
    // wait in the retry tiers and may reach delivery after the delete's.
    outage(&app, app.hubspot(), true).await;
    outage(&app, app.salesforce(), true).await;
    app.patch_contact(&id, json!({"last_name": "Second"})).await;
    let r = app
        .authed(Method::DELETE, &format!("/contacts/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    app.wait_applied(&id, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    outage(&app, app.hubspot(), false).await;
    outage(&app, app.salesforce(), false).await;

    // Once both CRMs hold the delete, any task still on its way reads a deleted contact.
    eventually("both CRMs to hold the delete", || async {
        let v = synced_versions(&app, &id).await;
        (v.len() == 2 && v.iter().all(|(_, s)| *s == Some(3))).then_some(())
    })
    .await;
    for base in [app.hubspot(), app.salesforce()] {
        let live = live_records(&app, base, &id, email).await;
        assert!(
            live.is_empty(),
            "{base} holds the deleted contact: {live:?}"
        );
    }
}

/// The contact's parked HubSpot entry, once its version is at least `version`.
async fn parked_entry(app: &TestApp, id: &str, version: i64) -> Value {
    eventually(
        &format!("HubSpot's delivery of v{version} to be parked"),
        || async {
            let (_, page) = send(app.admin(Method::GET, "/dlq?crm=hubspot&status=parked")).await;
            page["items"]
                .as_array()?
                .iter()
                .find(|e| e["contact_id"] == id && e["version"].as_i64() >= Some(version))
                .cloned()
        },
    )
    .await
}

#[tokio::test]
async fn a_dead_letter_replayed_after_its_contact_moved_on_delivers_the_latest_version() {
    let mut opts = quick_retries(admin_options(true));
    // Park at once when the retry tiers are spent.
    opts.extra_env
        .push(("SYNCROOT_DLQ_RETRY_TIMES".into(), "0".into()));
    let app = TestApp::spawn_with(opts).await;
    let email = "moved-on@example.com";
    outage(&app, app.hubspot(), true).await;
    let id = app
        .create(json!({"email": email, "last_name": "Old"}))
        .await;
    let first = parked_entry(&app, &id, 1).await;

    // The contact moves on while HubSpot is still down; its entry follows the latest version.
    app.patch_contact(&id, json!({"last_name": "New"})).await;
    let entry = parked_entry(&app, &id, 2).await;
    assert_eq!(entry["id"], first["id"], "one entry per contact and CRM");
    outage(&app, app.hubspot(), false).await;
    let entry_id = entry["id"].as_str().unwrap().to_owned();
    let (status, out) = send(app.admin(Method::POST, &format!("/dlq/{entry_id}/replay"))).await;
    assert_eq!((status, out), (202, json!({"replayed": 1})));
    eventually("the entry to be resolved by the delivery", || async {
        let (status, _) = send(app.admin(Method::GET, &format!("/dlq/{entry_id}"))).await;
        (status == 404).then_some(())
    })
    .await;
    let live = live_records(&app, app.hubspot(), &id, email).await;
    assert_eq!(live.len(), 1, "one HubSpot record: {live:?}");
    assert_eq!(live[0]["properties"]["lastname"], "New", "{live:?}");
    assert_eq!(app.records_written(app.hubspot()).await, 1, "one write: v2");
}

#[tokio::test]
async fn a_dead_letter_is_resolved_once_the_crm_holds_a_later_version() {
    let mut opts = quick_retries(admin_options(true));
    opts.extra_env
        .push(("SYNCROOT_DLQ_RETRY_TIMES".into(), "0".into()));
    let app = TestApp::spawn_with(opts).await;
    outage(&app, app.hubspot(), true).await;
    let id = app
        .create(json!({"email": "caught-up@example.com", "last_name": "Old"}))
        .await;
    let entry = parked_entry(&app, &id, 1).await;
    let entry_id = entry["id"].as_str().unwrap().to_owned();

    // HubSpot is back and the next change reaches it: the parked entry has nothing left to
    // deliver and leaves the list without a replay; replaying it now finds nothing.
    outage(&app, app.hubspot(), false).await;
    app.patch_contact(&id, json!({"last_name": "New"})).await;
    eventually("HubSpot to hold version 2", || async {
        let v = synced_versions(&app, &id).await;
        v.iter()
            .any(|(crm, s)| crm == "hubspot" && *s == Some(2))
            .then_some(())
    })
    .await;
    // The delivery records the link, then resolves the entry: a moment apart.
    eventually(
        "the entry to be resolved when HubSpot caught up",
        || async {
            let (status, _) = send(app.admin(Method::GET, &format!("/dlq/{entry_id}"))).await;
            (status == 404).then_some(())
        },
    )
    .await;
    let (status, _) = send(app.admin(Method::POST, &format!("/dlq/{entry_id}/replay"))).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_address_reused_after_a_delete_waits_for_the_delete_and_gets_its_own_record() {
    let mut opts = admin_options(true);
    // The deleted contact's delivery parks at once, so its deletion is held until replayed;
    // the new contact's retries last long enough to be waiting when it is.
    opts.extra_env.extend([
        ("SYNCROOT_DLQ_RETRY_TIMES".into(), "0".into()),
        (
            "SYNCROOT_DELIVERY_RETRY_TIERS".into(),
            "200ms,500ms,1s,2s,4s,8s".into(),
        ),
    ]);
    let app = TestApp::spawn_with(opts).await;
    let email = "reused@example.com";
    let old = app
        .create(json!({"email": email, "last_name": "Old"}))
        .await;
    let old_record = common::remote_id(&app.wait_synced(&old, 1).await, "hubspot");

    // The old contact is deleted while HubSpot is down: its deletion is parked.
    outage(&app, app.hubspot(), true).await;
    let r = app
        .authed(Method::DELETE, &format!("/contacts/{old}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let parked = parked_entry(&app, &old, 2).await;
    outage(&app, app.hubspot(), false).await;

    // A new contact with the same address: HubSpot still holds the old record with it.
    let new = app
        .create(json!({"email": email, "last_name": "New"}))
        .await;
    eventually(
        "the new contact to wait for the old one's deletion",
        || async {
            let c: Value = app.get_contact(&new).await.json().await.ok()?;
            let error = c["sync"]["hubspot"]["last_error"].as_str()?;
            error.contains("ADDRESS_HELD").then_some(())
        },
    )
    .await;
    assert!(
        app.sandbox_record(app.hubspot(), &old_record).await["archived"] == false,
        "the old record is still there, untouched"
    );
    let id = parked["id"].as_str().unwrap();
    let (status, _) = send(app.admin(Method::POST, &format!("/dlq/{id}/replay"))).await;
    assert_eq!(status, 202);

    let c = app.wait_synced(&new, 1).await;
    let new_record = common::remote_id(&c, "hubspot");
    assert_ne!(
        new_record, old_record,
        "the new contact has a record of its own"
    );
    let old_now = app.sandbox_record(app.hubspot(), &old_record).await;
    assert_eq!(
        old_now["archived"], true,
        "the old record was deleted: {old_now}"
    );
    for base in [app.hubspot(), app.salesforce()] {
        let live = live_records(&app, base, &new, email).await;
        assert_eq!(
            live.len(),
            1,
            "{base}: one live record of the address: {live:?}"
        );
        let last = live[0]["properties"]["lastname"]
            .as_str()
            .or(live[0]["LastName"].as_str());
        assert_eq!(last, Some("New"), "{live:?}");
    }
}
