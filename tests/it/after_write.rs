//! The CRM committed the write but SyncRoot never heard so: the connection dropped, the answer
//! came after SyncRoot's timeout, or a 5xx came back. Black-box, through the sandboxes'
//! after-write faults (`PUT /__sandbox/faults {"after_write": …}`).
//!
//! Every contact must still end with exactly one live record per CRM. Records are counted from
//! what the sandbox stored and its write log, by every identity — the e-mail, SyncRoot's id
//! (Salesforce's external id) and the link SyncRoot holds — never by a key the sandbox happens
//! to keep unique: Salesforce's Contact.Email is not unique, as in a real org.
//!
//! Test configuration: CRM calls time out after 1 s (`SYNCROOT_CRM_TIMEOUT_MS`); a stalled
//! answer is held 2 s.

use syncroot_testkit as common;

use common::{Options, TestApp, eventually};
use reqwest::Method;
use serde_json::{Value, json};
use syncroot::store::dead_letters::{self, Status};

const STALL_MS: u64 = 2_000;

async fn app_with(env: &[(&str, &str)]) -> TestApp {
    let mut extra_env = vec![("SYNCROOT_CRM_TIMEOUT_MS".to_owned(), "1000".to_owned())];
    extra_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    TestApp::spawn_with(Options {
        delivery: true,
        extra_env,
        ..Options::default()
    })
    .await
}

/// Hits the next write call of both CRMs with `mode`.
async fn hit_next_write(app: &TestApp, mode: &str) {
    let faults =
        json!({"after_write": mode, "after_write_count": 1, "after_write_stall_ms": STALL_MS});
    for base in [app.hubspot(), app.salesforce()] {
        app.control(base, Method::PUT, "faults", Some(faults.clone()))
            .await;
    }
}

/// Waits until both CRMs have injected `n` after-write faults of `mode`.
async fn wait_injected(app: &TestApp, mode: &str, n: u64) {
    for base in [app.hubspot(), app.salesforce()] {
        eventually(&format!("{n} {mode} faults injected by {base}"), || async {
            let counters = app.sandbox_control().counters(base).await.ok()?;
            (counters["after_write_faults"][mode].as_u64() == Some(n)).then_some(())
        })
        .await;
    }
}

/// What a CRM's record looks like through its own field names.
struct Crm {
    name: &'static str,
    id: &'static str,
    email: fn(&Value) -> Option<&str>,
    title: fn(&Value) -> Option<&str>,
    /// SyncRoot's id on the record, where the CRM keeps one.
    syncroot_id: fn(&Value) -> Option<&str>,
    live: fn(&Value) -> bool,
}

const HUBSPOT: Crm = Crm {
    name: "hubspot",
    id: "id",
    email: |c| c["properties"]["email"].as_str(),
    title: |c| c["properties"]["jobtitle"].as_str(),
    syncroot_id: |_| None,
    live: |c| c["archived"] != true,
};

const SALESFORCE: Crm = Crm {
    name: "salesforce",
    id: "Id",
    email: |c| c["Email"].as_str(),
    title: |c| c["Title"].as_str(),
    syncroot_id: |c| c["SyncRoot_Id__c"].as_str(),
    live: |c| c["IsDeleted"] != true,
};

fn same(a: Option<&str>, b: &str) -> bool {
    a.is_some_and(|a| a.eq_ignore_ascii_case(b))
}

/// Checks that `contact` has exactly one live record in `crm`, whichever identity finds it,
/// that it holds `title`, and that SyncRoot's link points at it.
async fn assert_one_record(app: &TestApp, crm: &Crm, contact: &Value, email: &str, title: &str) {
    let base = if crm.name == "hubspot" {
        app.hubspot()
    } else {
        app.salesforce()
    };
    let id = contact["id"].as_str().expect("contact id");
    let live: Vec<Value> = app
        .sandbox_contacts(base)
        .await
        .into_iter()
        .filter(crm.live)
        .collect();
    let by_email: Vec<&Value> = live
        .iter()
        .filter(|c| same((crm.email)(c), email))
        .collect();
    assert_eq!(
        by_email.len(),
        1,
        "{}: live records with {email}: {by_email:?}",
        crm.name
    );
    let record = by_email[0];
    let record_id = record[crm.id].as_str().expect("record id");
    let link = &contact["sync"][crm.name]["remote_id"];
    assert_eq!(link, record_id, "{}: SyncRoot's link", crm.name);
    assert_eq!(
        (crm.title)(record),
        Some(title),
        "{}: latest value",
        crm.name
    );
    if crm.name == "salesforce" {
        let by_id = live
            .iter()
            .filter(|c| same((crm.syncroot_id)(c), id))
            .count();
        assert_eq!(by_id, 1, "salesforce: live records carrying {id}");
    }
    // The write log: every record ever created for this contact, by e-mail or SyncRoot's id.
    let writes = app
        .sandbox_control()
        .writes(base, 0)
        .await
        .expect("write log");
    let mut created: Vec<&str> = writes
        .iter()
        .filter(|w| w["kind"] == "created")
        .filter(|w| {
            let values = if crm.name == "hubspot" {
                json!({"properties": w["values"]})
            } else {
                w["values"].clone()
            };
            same((crm.email)(&values), email) || same((crm.syncroot_id)(&values), id)
        })
        .filter_map(|w| w["record_id"].as_str())
        .collect();
    created.dedup();
    assert_eq!(
        created,
        [record_id],
        "{}: records created for {email}",
        crm.name
    );
}

/// Two contacts are created and then updated while `mode` hits the first write call of each
/// round in both CRMs.
async fn contacts_survive(mode: &str) {
    let app = app_with(&[]).await;
    let emails = [
        format!("{mode}-a@example.com"),
        format!("{mode}-b@example.com"),
    ];
    hit_next_write(&app, mode).await;
    let mut ids = Vec::new();
    for email in &emails {
        ids.push(
            app.create(json!({"email": email, "last_name": "After", "job_title": "First"}))
                .await,
        );
    }
    for id in &ids {
        app.wait_synced(id, 1).await;
    }
    wait_injected(&app, mode, 1).await;
    hit_next_write(&app, mode).await;
    for id in &ids {
        app.patch_contact(id, json!({"job_title": "Second"})).await;
    }
    let mut contacts = Vec::new();
    for id in &ids {
        contacts.push(app.wait_synced(id, 2).await);
    }
    wait_injected(&app, mode, 2).await;
    for (contact, email) in contacts.iter().zip(&emails) {
        for crm in [&HUBSPOT, &SALESFORCE] {
            assert_one_record(&app, crm, contact, email, "Second").await;
        }
    }
}

#[tokio::test]
async fn a_write_whose_connection_drops_after_the_commit_leaves_one_record_per_crm() {
    contacts_survive("drop").await;
}

#[tokio::test]
async fn a_write_answered_after_the_client_timeout_leaves_one_record_per_crm() {
    contacts_survive("stall").await;
}

#[tokio::test]
async fn a_committed_write_answered_with_a_5xx_leaves_one_record_per_crm() {
    contacts_survive("error").await;
}

/// A person's Contact with the e-mail SyncRoot is about to deliver, unlinked, under a
/// blocking duplicate rule on Email.
async fn blocked_duplicate(app: &TestApp, email: &str) -> String {
    app.control(
        app.salesforce(),
        Method::PUT,
        "duplicate-rule",
        Some(json!({"action": "block"})),
    )
    .await;
    let person = json!({"LastName": "Person", "Email": email});
    let made = app
        .control(app.salesforce(), Method::POST, "ui/contacts", Some(person))
        .await;
    made["id"]
        .as_str()
        .or(made["Id"].as_str())
        .expect("record id")
        .to_owned()
}

#[tokio::test]
async fn under_a_blocking_duplicate_rule_an_existing_contact_is_linked_not_duplicated() {
    let app = app_with(&[]).await;
    let person = blocked_duplicate(&app, "dup@example.com").await;
    let id = app
        .create(json!({"email": "dup@example.com", "last_name": "Dup", "job_title": "Linked"}))
        .await;
    let contact = app.wait_synced(&id, 1).await;
    assert_eq!(contact["sync"]["salesforce"]["remote_id"], person.as_str());
    assert_one_record(&app, &SALESFORCE, &contact, "dup@example.com", "Linked").await;
}

#[tokio::test]
async fn under_a_blocking_duplicate_rule_without_matching_by_email_the_contact_is_parked_with_the_reason()
 {
    let app = app_with(&[("SYNCROOT_SALESFORCE_MATCH_BY_EMAIL", "false")]).await;
    blocked_duplicate(&app, "dup@example.com").await;
    let id = app
        .create(json!({"email": "dup@example.com", "last_name": "Dup"}))
        .await;
    let contact: uuid::Uuid = id.parse().expect("uuid");
    let entry = eventually("the Salesforce delivery to be parked", || async {
        dead_letters::find_delivery(&app.db, "salesforce", contact)
            .await
            .ok()
            .flatten()
            .filter(|e| e.status == Status::Parked)
    })
    .await;
    assert_eq!(entry.error_code.as_deref(), Some("DUPLICATES_DETECTED"));
    assert_eq!(entry.reason, "permanent");
    let c: Value = app.get_contact(&id).await.json().await.expect("contact");
    assert_eq!(c["sync"]["salesforce"]["state"], "failed", "{c}");
    assert!(
        c["sync"]["salesforce"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("DUPLICATES_DETECTED")),
        "{c}"
    );
    let people: Vec<Value> = app.sandbox_contacts(app.salesforce()).await;
    assert_eq!(people.len(), 1, "only the person's record: {people:?}");
}

/// The HubSpot records ever created with one of `emails` (from the write log), and the live
/// records that carry one of them now.
async fn hubspot_records_at(app: &TestApp, emails: &[&str]) -> (Vec<String>, Vec<Value>) {
    let writes = app
        .sandbox_control()
        .writes(app.hubspot(), 0)
        .await
        .expect("write log");
    let mut created: Vec<String> = writes
        .iter()
        .filter(|w| w["kind"] == "created")
        .filter(|w| {
            emails
                .iter()
                .any(|e| same(w["values"]["email"].as_str(), e))
        })
        .filter_map(|w| w["record_id"].as_str().map(str::to_owned))
        .collect();
    created.dedup();
    let live = app
        .sandbox_contacts(app.hubspot())
        .await
        .into_iter()
        .filter(HUBSPOT.live)
        .filter(|c| emails.iter().any(|e| same((HUBSPOT.email)(c), e)))
        .collect();
    (created, live)
}

/// Deletes the contact (its `version`-th change) and waits until HubSpot has the deletion.
async fn delete_and_wait_hubspot(app: &TestApp, id: &str, version: i64) {
    let deleted = app
        .authed(Method::DELETE, &format!("/contacts/{id}"))
        .send()
        .await
        .expect("delete");
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let contact: uuid::Uuid = id.parse().expect("uuid");
    eventually("the deletion delivered to HubSpot", || async {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT synced_version FROM crm_links WHERE crm = 'hubspot' AND contact_id = $1",
        )
        .bind(contact)
        .fetch_optional(&app.db)
        .await
        .ok()??;
        (v == Some(version)).then_some(())
    })
    .await;
}

/// A create whose answer was lost, then a new address before the retry: HubSpot's upsert by
/// e-mail no longer finds the committed record, so without looking for it at the address the
/// create wrote, the contact would get a second record and the first would be left behind.
#[tokio::test]
async fn a_lost_create_is_found_at_the_address_it_wrote_after_the_contact_moves() {
    // The failed attempt's own retry waits long enough for the move to go first.
    let app = app_with(&[("SYNCROOT_DELIVERY_RETRY_TIERS", "60s")]).await;
    hit_next_write(&app, "error").await;
    let id = app
        .create(json!({"email": "before@example.com", "last_name": "Moved", "job_title": "First"}))
        .await;
    wait_injected(&app, "error", 1).await;
    app.patch_contact(
        &id,
        json!({"email": "after@example.com", "job_title": "Second"}),
    )
    .await;
    let contact = app.wait_synced(&id, 2).await;
    let (created, live) =
        hubspot_records_at(&app, &["before@example.com", "after@example.com"]).await;
    assert_eq!(created.len(), 1, "hubspot: records created: {created:?}");
    assert_eq!(live.len(), 1, "hubspot: live records: {live:?}");
    let record = &live[0];
    assert_eq!(record["id"], created[0].as_str());
    assert_eq!((HUBSPOT.email)(record), Some("after@example.com"));
    assert_eq!((HUBSPOT.title)(record), Some("Second"));
    assert_eq!(contact["sync"]["hubspot"]["remote_id"], record["id"]);
    assert_one_record(&app, &SALESFORCE, &contact, "after@example.com", "Second").await;
}

/// As above, and then the contact is deleted: the record the lost create left at the earlier
/// address is found there and archived, not left behind.
#[tokio::test]
async fn a_lost_create_is_archived_when_the_contact_moves_and_is_deleted() {
    let app = app_with(&[("SYNCROOT_DELIVERY_RETRY_TIERS", "60s")]).await;
    hit_next_write(&app, "error").await;
    let id = app
        .create(json!({"email": "gone-before@example.com", "last_name": "Moved"}))
        .await;
    wait_injected(&app, "error", 1).await;
    app.patch_contact(&id, json!({"email": "gone-after@example.com"}))
        .await;
    delete_and_wait_hubspot(&app, &id, 3).await;
    let (created, live) =
        hubspot_records_at(&app, &["gone-before@example.com", "gone-after@example.com"]).await;
    assert!(!created.is_empty(), "the lost create was committed");
    assert!(live.is_empty(), "hubspot: records left behind: {live:?}");
}

/// Creates a contact with `created`, then patches it with `patched`, each write committed by
/// both CRMs with its answer lost (a 5xx after the commit); its id.
async fn two_lost_answers(app: &TestApp, created: Value, patched: Value) -> String {
    hit_next_write(app, "error").await;
    let id = app.create(created).await;
    wait_injected(app, "error", 1).await;
    hit_next_write(app, "error").await;
    app.patch_contact(&id, patched).await;
    wait_injected(app, "error", 2).await;
    id
}

/// Two writes with lost answers, the second moving the contact (the record the first left is
/// found at the first address and moved to the second, but that answer is lost too), then the
/// contact moves back to the first address. HubSpot's upsert by that address finds nothing:
/// without looking at every address written, the contact would get a second record and the
/// first would be left at the second address.
#[tokio::test]
async fn records_lost_answers_left_are_found_at_every_address_written() {
    let app = app_with(&[("SYNCROOT_DELIVERY_RETRY_TIERS", "60s")]).await;
    let id = two_lost_answers(
        &app,
        json!({"email": "there@example.com", "last_name": "Back", "job_title": "First"}),
        json!({"email": "away@example.com", "job_title": "Second"}),
    )
    .await;
    app.patch_contact(
        &id,
        json!({"email": "there@example.com", "job_title": "Third"}),
    )
    .await;
    let contact = app.wait_synced(&id, 3).await;
    let (created, live) =
        hubspot_records_at(&app, &["there@example.com", "away@example.com"]).await;
    assert_eq!(created.len(), 1, "hubspot: records created: {created:?}");
    assert_eq!(live.len(), 1, "hubspot: live records: {live:?}");
    assert_eq!(live[0]["id"], created[0].as_str());
    assert_one_record(&app, &HUBSPOT, &contact, "there@example.com", "Third").await;
    assert_one_record(&app, &SALESFORCE, &contact, "there@example.com", "Third").await;
}

/// As above, but the contact is deleted instead of moving back: the record is found at the
/// second address (not the first, where it was created) and archived.
#[tokio::test]
async fn a_deleted_contact_s_record_is_found_at_any_address_written() {
    let app = app_with(&[("SYNCROOT_DELIVERY_RETRY_TIERS", "60s")]).await;
    let id = two_lost_answers(
        &app,
        json!({"email": "start@example.com", "last_name": "Gone"}),
        json!({"email": "moved@example.com"}),
    )
    .await;
    delete_and_wait_hubspot(&app, &id, 3).await;
    let (created, live) =
        hubspot_records_at(&app, &["start@example.com", "moved@example.com"]).await;
    assert_eq!(
        created.len(),
        1,
        "the lost create was committed: {created:?}"
    );
    assert!(live.is_empty(), "hubspot: records left behind: {live:?}");
}
