//! The holdings check against dumps written by hand, and against the running sandboxes with a
//! record deleted or edited through their control API.

use reqwest::Method;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::*;

fn expected(n: usize) -> Vec<Expected> {
    (0..n)
        .map(|i| Expected {
            email: format!("c{i}@holdings.example"),
            last_name: format!("Last{i}"),
        })
        .collect()
}

fn hubspot(i: usize, last: &str, archived: bool) -> Value {
    json!({"id": i.to_string(), "archived": archived, "updatedAt": "2026-12-06T10:00:00.125Z",
           "properties": {"email": format!("C{i}@holdings.example"), "lastname": last}})
}

#[test]
fn a_dump_with_every_contact_once_is_complete_with_its_write_times() {
    let records: Vec<Value> = (0..3)
        .map(|i| hubspot(i, &format!("Last{i}"), false))
        .collect();
    let h = Holdings::of(Crm::HubSpot, &records, &expected(3));
    assert!(h.complete(), "{h:?}");
    assert_eq!(h.held(), 3);
    let t = DateTime::parse_from_rfc3339("2026-12-06T10:00:00.125Z").unwrap();
    assert_eq!(h.last_written(), Some(t.with_timezone(&Utc)));
}

#[test]
fn archived_duplicated_and_wrong_valued_records_are_not_held() {
    let records = vec![
        hubspot(0, "Last0", true),
        hubspot(1, "Last1", false),
        hubspot(1, "Last1", false),
        hubspot(2, "Other", false),
    ];
    let h = Holdings::of(Crm::HubSpot, &records, &expected(3));
    assert!(!h.complete());
    assert_eq!(h.missing, ["c0@holdings.example"]);
    assert_eq!(h.wrong, ["c1@holdings.example", "c2@holdings.example"]);
    assert_eq!(h.held(), 0);
}

#[test]
fn salesforce_records_are_read_with_their_last_modified_date_to_the_millisecond() {
    let records = vec![
        json!({"Id": "003", "IsDeleted": false, "Email": "c0@holdings.example",
        "LastName": "Last0", "LastModifiedDate": "2026-12-06T10:00:00.042+0000"}),
    ];
    let h = Holdings::of(Crm::Salesforce, &records, &expected(1));
    assert!(h.complete(), "{h:?}");
    let t = DateTime::parse_from_rfc3339("2026-12-06T10:00:00.042Z").unwrap();
    assert_eq!(h.last_written(), Some(t.with_timezone(&Utc)));
}

/// Both sandboxes, in process; stopped when the token is dropped at the end of the test.
async fn sandboxes() -> (
    syncroot_sandbox::RunningSandboxes,
    Control,
    CancellationToken,
) {
    let shutdown = CancellationToken::new();
    let running = syncroot_sandbox::start(&crate::sandbox_settings(), shutdown.clone())
        .await
        .expect("sandboxes start");
    let control = Control::new(reqwest::Client::new(), running.control_token.expose());
    (running, control, shutdown)
}

/// Creates the expected contacts in a person's name; answers their record ids.
async fn create(control: &Control, base: &str, crm: Crm, all: &[Expected]) -> Vec<String> {
    let mut ids = Vec::new();
    for e in all {
        let body = match crm {
            Crm::HubSpot => json!({"properties": {"email": e.email, "lastname": e.last_name}}),
            Crm::Salesforce => json!({"Email": e.email, "LastName": e.last_name}),
        };
        let r = control
            .call(base, Method::POST, "ui/contacts", Some(&body))
            .await
            .expect("created");
        ids.push(r["id"].as_str().expect("an id").to_owned());
    }
    ids
}

#[tokio::test]
async fn a_record_deleted_in_the_sandbox_is_missing_and_an_edited_one_is_wrong() {
    let (running, control, _shutdown) = sandboxes().await;
    let all = expected(4);
    for (base, crm) in [
        (running.hubspot_url(), Crm::HubSpot),
        (running.salesforce_url(), Crm::Salesforce),
    ] {
        let ids = create(&control, &base, crm, &all).await;
        let h = control.holdings(&base, crm, &all).await.unwrap();
        assert!(h.complete(), "{crm:?}: {h:?}");
        assert_eq!(h.held(), 4);

        let path = format!("ui/contacts/{}", ids[1]);
        control
            .call(&base, Method::DELETE, &path, None)
            .await
            .unwrap();
        let edit = match crm {
            Crm::HubSpot => json!({"properties": {"lastname": "Edited"}}),
            Crm::Salesforce => json!({"LastName": "Edited"}),
        };
        let path = format!("ui/contacts/{}", ids[2]);
        control
            .call(&base, Method::PATCH, &path, Some(&edit))
            .await
            .unwrap();

        let h = control.holdings(&base, crm, &all).await.unwrap();
        assert!(!h.complete(), "{crm:?}: {h:?}");
        assert_eq!(h.missing, ["c1@holdings.example"], "{crm:?}");
        assert_eq!(h.wrong, ["c2@holdings.example"], "{crm:?}");
        assert_eq!(h.held(), 2, "{crm:?}");
    }
}
