//! The contact API, black-box: CRUD, validation problems, authentication, idempotency.

use syncroot_testkit as common;

use common::{KEY, Options, TestApp, eventually};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn a_contact_can_be_created_read_listed_replaced_patched_and_deleted() {
    let app = TestApp::spawn().await;
    let r = app.post_contact(&json!({"email": "Ada.Lovelace@Example.COM", "first_name": "Ada", "last_name": "Lovelace"})).await;
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = r.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/contacts/{id}"));
    assert_eq!(accepted["version"], 1);
    assert_eq!(accepted["operation"], "create");

    let c = app.wait_version(&id, 1).await;
    assert_eq!(
        c["email"], "ada.lovelace@example.com",
        "e-mail is stored normalised"
    );
    assert_eq!(c["first_name"], "Ada");
    assert_eq!(c["phone"], Value::Null);
    assert_eq!(c["sync"], json!({}));

    let r = app
        .authed(Method::PUT, &location)
        .json(&json!({"email": "ada@example.com", "first_name": "Augusta"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let c = app.wait_version(&id, 2).await;
    assert_eq!(c["first_name"], "Augusta");
    assert_eq!(
        c["last_name"],
        Value::Null,
        "PUT replaces the whole contact"
    );

    let r = app
        .authed(Method::PATCH, &location)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"job_title": "Analyst", "first_name": null}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let c = app.wait_version(&id, 3).await;
    assert_eq!(c["job_title"], "Analyst");
    assert_eq!(c["first_name"], Value::Null);
    assert_eq!(c["email"], "ada@example.com");

    let list: Value = app
        .authed(Method::GET, "/contacts?email=ADA@example.com")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], id.as_str());

    let r = app.authed(Method::DELETE, &location).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["operation"], "delete");
    eventually("the delete to be applied", || async {
        (app.get_contact(&id).await.status() == 404).then_some(())
    })
    .await;
    let list: Value = app
        .authed(Method::GET, "/contacts?email=ada@example.com")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]));
    let again = app
        .authed(Method::PATCH, &location)
        .json(&json!({"phone": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404, "a deleted contact cannot be updated");
    let delete_again = app.authed(Method::DELETE, &location).send().await.unwrap();
    assert_eq!(
        delete_again.status(),
        202,
        "deleting twice is safe to retry"
    );
    assert_eq!(delete_again.json::<Value>().await.unwrap()["version"], 4);
}

#[tokio::test]
async fn the_list_is_cursor_paginated_in_creation_order() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.create(json!({"email": format!("p{i}@example.com")}))
                .await,
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/contacts?limit=2&cursor={c}"),
            None => "/contacts?limit=2".to_owned(),
        };
        let page: Value = app
            .authed(Method::GET, &path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
}

/// Sends a request and returns (status, content type, body).
async fn send(req: reqwest::RequestBuilder) -> (u16, String, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, ct, body)
}

fn pointers(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["pointer"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// An app without forwarders: what the API publishes stays ready in the queues, so a test
/// can prove a refused request queued nothing (see `testkit::footprint`).
fn no_forwarder() -> Options {
    Options {
        forwarders: 0,
        ..Options::default()
    }
}

#[tokio::test]
async fn every_bad_request_gets_a_problem_document_naming_what_is_wrong() {
    let app = TestApp::spawn_with(no_forwarder()).await;
    let existing = app.create(json!({"email": "taken@example.com"})).await;
    let before = app.footprint().await;
    let post = || {
        app.authed(Method::POST, "/contacts")
            .header("content-type", "application/json")
    };
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, Vec<&str>)> = vec![
        ("malformed JSON", post().body("{\"email\": "), 400, vec![]),
        ("empty body", post().body(""), 400, vec![]),
        ("not an object", post().body("[1,2]"), 422, vec![""]),
        (
            "wrong types",
            post().body(r#"{"email": 5, "first_name": true}"#),
            422,
            vec!["/email", "/first_name"],
        ),
        (
            "unknown field",
            post().body(r#"{"email": "a@b.co", "nickname": "x"}"#),
            422,
            vec!["/nickname"],
        ),
        (
            "read-only field",
            post().body(r#"{"email": "a@b.co", "id": "x"}"#),
            422,
            vec!["/id"],
        ),
        (
            "missing email",
            post().body(r#"{"first_name": "Ada"}"#),
            422,
            vec!["/email"],
        ),
        (
            "invalid email",
            post().body(r#"{"email": "ada at example"}"#),
            422,
            vec!["/email"],
        ),
        (
            "too long",
            post().body(json!({"email": "a@b.co", "first_name": "x".repeat(41)}).to_string()),
            422,
            vec!["/first_name"],
        ),
        (
            "bad phone",
            post().body(r#"{"email": "a@b.co", "phone": "call me"}"#),
            422,
            vec!["/phone"],
        ),
        (
            "empty string",
            post().body(r#"{"email": "a@b.co", "company": ""}"#),
            422,
            vec!["/company"],
        ),
        (
            "oversize",
            post().body(json!({"email": "a@b.co", "company": "x".repeat(70_000)}).to_string()),
            413,
            vec![],
        ),
        (
            "wrong content type",
            app.authed(Method::POST, "/contacts")
                .header("content-type", "text/plain")
                .body("{}"),
            415,
            vec![],
        ),
        (
            "no content type",
            app.authed(Method::POST, "/contacts").body("{}"),
            415,
            vec![],
        ),
        (
            "duplicate e-mail",
            post().body(r#"{"email": "TAKEN@example.com"}"#),
            409,
            vec![],
        ),
        (
            "unknown id",
            app.authed(Method::GET, &format!("/contacts/{}", uuid::Uuid::new_v4())),
            404,
            vec![],
        ),
        (
            "malformed id",
            app.authed(Method::GET, "/contacts/not-a-uuid"),
            404,
            vec![],
        ),
        (
            "unknown route",
            app.authed(Method::GET, "/nowhere"),
            404,
            vec![],
        ),
        (
            "unsupported method",
            app.authed(Method::POST, "/healthz"),
            405,
            vec![],
        ),
        (
            "bad limit",
            app.authed(Method::GET, "/contacts?limit=0"),
            400,
            vec![],
        ),
        (
            "bad cursor",
            app.authed(Method::GET, "/contacts?cursor=zzz"),
            400,
            vec![],
        ),
        (
            "patch clears email",
            app.authed(Method::PATCH, &format!("/contacts/{existing}"))
                .json(&json!({"email": null})),
            422,
            vec!["/email"],
        ),
        (
            "bad idempotency key",
            post()
                .header("idempotency-key", "has space")
                .body(r#"{"email": "k@b.co"}"#),
            400,
            vec![],
        ),
    ];
    for (name, req, want, want_pointers) in cases {
        let (status, ct, body) = send(req).await;
        assert_eq!(status, want, "{name}: {body}");
        assert_eq!(ct, "application/problem+json", "{name}");
        assert_eq!(body["status"], want, "{name}");
        assert!(
            body["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:syncroot:problem:"),
            "{name}"
        );
        assert!(!body["detail"].as_str().unwrap().is_empty(), "{name}");
        let got = pointers(&body);
        for p in want_pointers {
            assert!(
                got.iter().any(|g| g == p),
                "{name}: pointer {p:?} missing in {body}"
            );
        }
        // Refused: nothing persisted, nothing queued.
        app.assert_unchanged(&before, name).await;
    }
    let (_, _, conflict) = send(post().body(r#"{"email": "taken@example.com"}"#)).await;
    assert_eq!(conflict["existing_id"], existing.as_str());
}

#[tokio::test]
async fn contacts_need_a_valid_bearer_key_and_health_routes_do_not() {
    let app = TestApp::spawn_with(no_forwarder()).await;
    let no_key = app.http.get(app.url("/contacts")).send().await.unwrap();
    assert_eq!(no_key.status(), 401);
    assert_eq!(no_key.headers()["www-authenticate"], "Bearer");
    let wrong = app
        .http
        .get(app.url("/contacts"))
        .bearer_auth("not-the-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let basic = app
        .http
        .get(app.url("/contacts"))
        .basic_auth("user", Some(KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    let before = app.footprint().await;
    let write = app
        .http
        .post(app.url("/contacts"))
        .json(&json!({"email": "a@b.co"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 401);
    app.assert_unchanged(&before, "a write without a key").await;
    for open in ["/healthz", "/readyz", "/openapi.json", "/docs"] {
        assert_eq!(
            app.http.get(app.url(open)).send().await.unwrap().status(),
            200,
            "{open}"
        );
    }
}

#[tokio::test]
async fn a_retried_post_with_the_same_idempotency_key_creates_one_contact() {
    let app = TestApp::spawn().await;
    let post = |key: &str, body: Value| {
        app.authed(Method::POST, "/contacts")
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = post(
        "key-1",
        json!({"email": "once@example.com", "first_name": "Once"}),
    )
    .await
    .unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    // The same request again, formatted differently (key order, e-mail case): same answer.
    let again = post(
        "key-1",
        json!({"first_name": "Once", "email": "ONCE@example.com"}),
    )
    .await
    .unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);

    let different = post("key-1", json!({"email": "other@example.com"}))
        .await
        .unwrap();
    assert_eq!(different.status(), 409);
    assert_eq!(
        different.json::<Value>().await.unwrap()["type"],
        "urn:syncroot:problem:idempotency-key-reused"
    );

    // Concurrent retries of one request: one contact, one answer.
    let body = json!({"email": "race@example.com"});
    let replies = futures_util::future::join_all((0..8).map(|_| post("key-2", body.clone()))).await;
    let mut ids = std::collections::BTreeSet::new();
    for r in replies {
        let r = r.unwrap();
        assert_eq!(r.status(), 202);
        ids.insert(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(ids.len(), 1);
    let id = ids.into_iter().next().unwrap();
    app.wait_version(&id, 1).await;
    let list: Value = app
        .authed(Method::GET, "/contacts")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test]
async fn an_unchanged_replace_is_accepted_without_a_new_version() {
    let app = TestApp::spawn().await;
    let id = app
        .create(json!({"email": "same@example.com", "first_name": "Same"}))
        .await;
    let r = app
        .authed(Method::PUT, &format!("/contacts/{id}"))
        .json(&json!({"email": "same@example.com", "first_name": "Same"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 1);
}

#[tokio::test]
async fn the_history_lists_every_version_with_its_origin_and_changed_fields() {
    let app = TestApp::spawn().await;
    let id = app
        .create(json!({"email": "hist@example.com", "first_name": "Ada"}))
        .await;
    let patch = app
        .authed(Method::PATCH, &format!("/contacts/{id}"))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"job_title": "CTO", "first_name": null}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 202);
    let (status, _, page) = send(app.authed(Method::GET, &format!("/contacts/{id}/history"))).await;
    assert_eq!(status, 200, "{page}");
    let versions = page["versions"].as_array().unwrap();
    let summary: Vec<(i64, &str, &str)> = versions
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                v["origin"].as_str().unwrap(),
                v["operation"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(summary, vec![(1, "api", "create"), (2, "api", "update")]);
    assert_eq!(
        versions[0]["changes"],
        json!([
            {"field": "email", "old": null, "new": "hist@example.com"},
            {"field": "first_name", "old": null, "new": "Ada"}
        ])
    );
    assert_eq!(
        versions[1]["changes"],
        json!([
            {"field": "first_name", "old": "Ada", "new": null},
            {"field": "job_title", "old": null, "new": "CTO"}
        ])
    );
    assert_eq!(page["next_after"], Value::Null);

    let (status, _, first) =
        send(app.authed(Method::GET, &format!("/contacts/{id}/history?limit=1"))).await;
    assert_eq!(status, 200);
    assert_eq!(first["versions"][0]["version"], 1);
    let after = first["next_after"].as_i64().expect("a next page");
    let (_, _, second) = send(app.authed(
        Method::GET,
        &format!("/contacts/{id}/history?limit=1&after={after}"),
    ))
    .await;
    assert_eq!(second["versions"][0]["version"], 2);

    let (status, _, problem) = send(app.authed(
        Method::GET,
        &format!("/contacts/{id}/history?limit=0&after=x"),
    ))
    .await;
    assert_eq!(status, 400);
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2, "{problem}");
    let del = app
        .authed(Method::DELETE, &format!("/contacts/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 202);
    let (status, _, _) = send(app.authed(Method::GET, &format!("/contacts/{id}/history"))).await;
    assert_eq!(status, 404, "a deleted contact's history goes with it");
    let operations: Vec<String> = sqlx::query_scalar(
        "SELECT operation FROM contact_versions WHERE contact_id = $1 ORDER BY entry",
    )
    .bind(uuid::Uuid::parse_str(&id).unwrap())
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(operations, vec!["create", "update", "delete"]);
    let unknown = uuid::Uuid::now_v7();
    let (status, _, _) =
        send(app.authed(Method::GET, &format!("/contacts/{unknown}/history"))).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn names_with_bidi_overrides_or_zero_width_characters_get_a_422_naming_the_field() {
    let mut app = TestApp::spawn_with(no_forwarder()).await;
    let before = app.footprint().await;
    for (field, value) in [
        ("first_name", "Ada\u{202E}ecalevoL"),
        ("last_name", "Love\u{200B}lace"),
        ("company", "\u{FEFF}Engines"),
        ("job_title", "Analyst\u{0007}"),
    ] {
        let mut body = json!({"email": "ada@example.com"});
        body[field] = json!(value);
        let resp = app.post_contact(&body).await;
        assert_eq!(resp.status(), 422, "{field}");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(
            problem["errors"][0]["pointer"],
            format!("/{field}"),
            "{problem}"
        );
        let message = problem["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("control or invisible formatting characters"),
            "{problem}"
        );
        app.assert_unchanged(&before, field).await;
    }
    app.stop().await;
}
