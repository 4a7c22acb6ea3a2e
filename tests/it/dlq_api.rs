//! The dead-letter admin API, black-box: authentication, listing with filters and paging,
//! showing an entry, discarding. Replays are in `dlq_replay.rs`.

use syncroot_testkit as common;

use chrono::{Duration, Utc};
use common::dlq::{DeliverySeed, seed_message, send};
use common::{ADMIN_KEY, KEY, TestApp, admin_options};
use reqwest::Method;
use serde_json::{Value, json};
use syncroot::store::dead_letters::{RawMessage, Status};
use uuid::Uuid;

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_admin_api_opens_only_to_an_admin_key_and_an_admin_key_opens_nothing_else() {
    let app = TestApp::spawn_with(admin_options(false)).await;
    let unauthenticated = [
        (app.http.get(app.url("/dlq")), "no key"),
        (
            app.http
                .get(app.url("/dlq"))
                .bearer_auth("not-a-key-0123456789"),
            "an unknown key",
        ),
    ];
    for (req, what) in unauthenticated {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{what}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer", "{what}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], "urn:syncroot:problem:unauthorized", "{what}");
    }
    // A known key of another list is authenticated but lacks the scope: 403 naming it.
    let unauthorised = [
        (
            app.http.get(app.url("/dlq")).bearer_auth(KEY),
            "a write key",
            "admin",
        ),
        (
            app.http
                .post(app.url("/dlq/discard?all=true"))
                .bearer_auth(KEY),
            "a write key on a discard",
            "admin",
        ),
        (
            app.http.get(app.url("/contacts")).bearer_auth(ADMIN_KEY),
            "an admin key on /contacts",
            "read",
        ),
    ];
    for (req, what, scope) in unauthorised {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 403, "{what}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], "urn:syncroot:problem:forbidden", "{what}");
        assert_eq!(p["scope"], scope, "{what}");
    }
    let (status, page) = send(app.admin(Method::GET, "/dlq")).await;
    assert_eq!(status, 200);
    assert_eq!(page, json!({"items": [], "next_cursor": null}));

    // Without admin keys the admin API is closed to everyone.
    let closed = TestApp::spawn().await;
    let (status, p) = send(closed.admin(Method::GET, "/dlq")).await;
    assert_eq!(status, 401);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("SYNCROOT_ADMIN_KEYS"),
        "{p}"
    );
}

#[tokio::test]
async fn entries_are_listed_oldest_first_filtered_and_cursor_paginated() {
    let app = TestApp::spawn_with(admin_options(false)).await;
    let ada = Uuid::new_v4();
    let now = Utc::now();
    let mut seeded = Vec::new();
    for (crm, contact, status, code, ago) in [
        ("hubspot", ada, Status::Parked, "INVALID_EMAIL", 50),
        ("salesforce", ada, Status::Retrying, "UNAVAILABLE", 40),
        (
            "hubspot",
            Uuid::new_v4(),
            Status::Replayed,
            "UNAVAILABLE",
            30,
        ),
        (
            "salesforce",
            Uuid::new_v4(),
            Status::Parked,
            "REQUIRED_FIELD_MISSING",
            20,
        ),
    ] {
        let mut seed = DeliverySeed::new(crm, contact);
        seed.status = status;
        seed.code = code;
        seed.last_failed_at = now - Duration::minutes(ago);
        seeded.push(seed.save(&app.db).await.to_string());
    }
    let message = seed_message(&app.db, RawMessage::default())
        .await
        .to_string();
    seeded.push(message.clone());

    let (status, all) = send(app.admin(Method::GET, "/dlq")).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&all), seeded, "oldest first");
    let first = &all["items"][0];
    assert_eq!(first["kind"], "delivery");
    assert_eq!(first["crm"], "hubspot");
    assert_eq!(first["contact_id"], ada.to_string());
    assert_eq!(first["operation"], "upsert");
    assert_eq!(first["status"], "parked");
    assert_eq!(first["error_code"], "INVALID_EMAIL");
    assert_eq!(first["source"], Value::Null);
    assert!(
        first.get("errors").is_none(),
        "a list leaves out the history"
    );
    assert_eq!(all["items"][4]["kind"], "message");

    let since = (now - Duration::minutes(35)).to_rfc3339();
    let until = (now - Duration::minutes(25)).to_rfc3339();
    for (query, expected) in [
        ("crm=hubspot", vec![0, 2]),
        ("status=parked", vec![0, 3, 4]),
        ("error_code=UNAVAILABLE", vec![1, 2]),
        (&*format!("contact_id={ada}"), vec![0, 1]),
        ("crm=salesforce&status=parked", vec![3]),
        (
            &*url::form_urlencoded::Serializer::new(String::new())
                .append_pair("since", &since)
                .append_pair("until", &until)
                .finish(),
            vec![2],
        ),
    ] {
        let (status, page) = send(app.admin(Method::GET, &format!("/dlq?{query}"))).await;
        assert_eq!(status, 200, "{query}: {page}");
        let want: Vec<String> = expected.iter().map(|i| seeded[*i].clone()).collect();
        assert_eq!(ids(&page), want, "{query}");
    }

    let mut pages = Vec::new();
    let mut path = "/dlq?limit=2".to_owned();
    loop {
        let (status, page) = send(app.admin(Method::GET, &path)).await;
        assert_eq!(status, 200);
        pages.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/dlq?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, seeded, "paging visits every entry once, in order");
}

#[tokio::test]
async fn an_entry_shows_its_whole_error_history_and_a_kept_messages_body() {
    let app = TestApp::spawn_with(admin_options(false)).await;
    let contact = Uuid::new_v4();
    let id = DeliverySeed::new("hubspot", contact).save(&app.db).await;
    let (status, e) = send(app.admin(Method::GET, &format!("/dlq/{id}"))).await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["id"], id.to_string());
    assert_eq!(e["version"], 1);
    assert_eq!(e["attempts"], 3);
    let errors = e["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["code"], "UNAVAILABLE");
    assert_eq!(errors[0]["retryable"], true);
    assert_eq!(errors[1]["code"], "INVALID_EMAIL");

    let text = seed_message(
        &app.db,
        RawMessage {
            queue: Some("syncroot.contacts.3".into()),
            content_type: Some("application/json".into()),
            body: br#"{"v": 99}"#.to_vec(),
            ..RawMessage::default()
        },
    )
    .await;
    let (_, e) = send(app.admin(Method::GET, &format!("/dlq/{text}"))).await;
    assert_eq!(e["kind"], "message");
    assert_eq!(e["source"]["queue"], "syncroot.contacts.3");
    assert_eq!(e["source"]["body"], r#"{"v": 99}"#);
    assert_eq!(e["source"]["body_encoding"], "utf8");

    let binary = seed_message(
        &app.db,
        RawMessage {
            body: vec![0xff, 0x00, 0xfe],
            ..RawMessage::default()
        },
    )
    .await;
    let (_, e) = send(app.admin(Method::GET, &format!("/dlq/{binary}"))).await;
    assert_eq!(e["source"]["body"], "/wD+");
    assert_eq!(e["source"]["body_encoding"], "base64");
}

#[tokio::test]
async fn bad_parameters_are_400s_naming_the_parameter_and_unknown_entries_are_404s() {
    let app = TestApp::spawn_with(admin_options(false)).await;
    for (method, path, parameter) in [
        (Method::GET, "/dlq?crm=pipedrive", "crm"),
        (Method::GET, "/dlq?status=lost", "status"),
        (Method::GET, "/dlq?contact_id=42", "contact_id"),
        (Method::GET, "/dlq?since=yesterday", "since"),
        (Method::GET, "/dlq?until=2026-13-01T00:00:00Z", "until"),
        (Method::GET, "/dlq?limit=0", "limit"),
        (Method::GET, "/dlq?limit=501", "limit"),
        (Method::GET, "/dlq?cursor=page-2", "cursor"),
        (Method::GET, "/dlq?error_code=", "error_code"),
        (Method::GET, "/dlq?error_code=A%00B", "error_code"),
        (Method::GET, "/dlq?crm=hubspot&crm=salesforce", "crm"),
        (Method::POST, "/dlq/replay?limit=10", "limit"),
        (Method::POST, "/dlq/replay?status=gone", "status"),
        (Method::POST, "/dlq/discard?all=yes", "all"),
        (Method::POST, "/dlq/discard?cursor=x", "cursor"),
    ] {
        let (status, p) = send(app.admin(method.clone(), path)).await;
        assert_eq!(status, 400, "{method} {path}: {p}");
        assert_eq!(p["type"], "urn:syncroot:problem:invalid-parameters");
        assert_eq!(p["errors"][0]["parameter"], parameter, "{path}: {p}");
    }
    let unknown = Uuid::now_v7();
    for (method, path) in [
        (Method::GET, format!("/dlq/{unknown}")),
        (Method::GET, "/dlq/not-an-id".to_owned()),
        (Method::POST, format!("/dlq/{unknown}/replay")),
        (Method::POST, "/dlq/42/replay".to_owned()),
        (Method::DELETE, format!("/dlq/{unknown}")),
    ] {
        let (status, p) = send(app.admin(method.clone(), &path)).await;
        assert_eq!(status, 404, "{method} {path}: {p}");
        assert_eq!(p["type"], "urn:syncroot:problem:not-found");
    }
}

#[tokio::test]
async fn a_discard_needs_a_filter_or_all_and_deletes_only_what_matches() {
    let app = TestApp::spawn_with(admin_options(false)).await;
    let hubspot = DeliverySeed::new("hubspot", Uuid::new_v4())
        .save(&app.db)
        .await;
    let salesforce = DeliverySeed::new("salesforce", Uuid::new_v4())
        .save(&app.db)
        .await;
    let lone = DeliverySeed::new("salesforce", Uuid::new_v4())
        .save(&app.db)
        .await;
    seed_message(&app.db, RawMessage::default()).await;

    for path in ["/dlq/discard", "/dlq/discard?all=false"] {
        let (status, p) = send(app.admin(Method::POST, path)).await;
        assert_eq!(status, 400, "{path}: {p}");
        assert_eq!(p["errors"][0]["parameter"], "all");
    }
    let (status, out) = send(app.admin(Method::POST, "/dlq/discard?crm=hubspot")).await;
    assert_eq!((status, out), (200, json!({"discarded": 1})));
    let (status, _) = send(app.admin(Method::GET, &format!("/dlq/{hubspot}"))).await;
    assert_eq!(status, 404);

    let r = app
        .admin(Method::DELETE, &format!("/dlq/{lone}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, _) = send(app.admin(Method::DELETE, &format!("/dlq/{lone}"))).await;
    assert_eq!(status, 404, "a second discard finds nothing");

    let (_, page) = send(app.admin(Method::GET, "/dlq")).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["items"][0]["id"], salesforce.to_string());
    let (status, out) = send(app.admin(Method::POST, "/dlq/discard?all=true")).await;
    assert_eq!((status, out), (200, json!({"discarded": 2})));
    let (_, page) = send(app.admin(Method::GET, "/dlq")).await;
    assert_eq!(page["items"], json!([]));
}
