//! Scoped keys, per-key limits and the audit log, black-box: a read-only key reads and changes
//! nothing (nor does an unknown key), one Idempotency-Key used by two keys replays neither's
//! answer to the other, a key over its rate or in-flight cap gets 429 while another key is served, admin
//! replays and discards leave rows in `GET /admin/audit`, and a failed authentication leaves an
//! audit event in the log of a `syncroot api` process.
//!
//! Key ids are checked against values computed with `sha256sum`, not with the code under test.

use std::time::Duration;

use syncroot_testkit as common;

use common::dlq::{DeliverySeed, seed_message, send};
use common::{ADMIN_KEY, KEY, Options, TestApp, admin_options, eventually};
use reqwest::Method;
use serde_json::{Value, json};
use syncroot::store::dead_letters::RawMessage;
use tokio::io::AsyncWriteExt as _;
use uuid::Uuid;

const READ_KEY: &str = "test-read-key-0123456789abcdef";
const OTHER_KEY: &str = "test-other-key-0123456789abcdef";
/// `printf %s test-admin-key-0123456789abcdef | sha256sum | cut -c1-16`
const ADMIN_KEY_ID: &str = "66fb6c8f9e74a7bf";
/// `printf %s not-a-key-0123456789 | sha256sum | cut -c1-8`
const UNKNOWN_KEY_FINGERPRINT: &str = "081fe334";

fn with_env(mut opts: Options, env: &[(&str, &str)]) -> Options {
    opts.extra_env
        .extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    opts
}

#[tokio::test]
async fn a_read_only_key_reads_but_every_write_is_a_403_and_nothing_is_persisted_or_queued() {
    // No forwarder: what the API published stays in the queues, countable.
    let opts = Options {
        forwarders: 0,
        ..Options::default()
    };
    let app = TestApp::spawn_with(with_env(opts, &[("SYNCROOT_READ_KEYS", READ_KEY)])).await;
    let id = app
        .create(json!({"email": "ada@example.com", "first_name": "Ada"}))
        .await;
    let before = app.footprint().await;
    assert_eq!(
        (
            before.tables["contact_heads"].count,
            before.messages_total()
        ),
        (1, 1),
        "the write key's create"
    );

    let read = |method: Method, path: &str| {
        app.http
            .request(method, app.url(path))
            .bearer_auth(READ_KEY)
    };
    for path in [
        "/contacts".to_owned(),
        format!("/contacts/{id}"),
        format!("/contacts/{id}/history"),
    ] {
        let r = read(Method::GET, &path).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
    }
    let body = json!({"email": "eve@example.com", "first_name": "Eve"});
    let writes = [
        (Method::POST, "/contacts".to_owned(), Some(body.clone())),
        (Method::PUT, format!("/contacts/{id}"), Some(body)),
        (
            Method::PATCH,
            format!("/contacts/{id}"),
            Some(json!({"first_name": "Eve"})),
        ),
        (Method::DELETE, format!("/contacts/{id}"), None),
    ];
    for (method, path, body) in writes.clone() {
        let mut req = read(method.clone(), &path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 403, "{method} {path}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{method} {path}"
        );
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["type"], "urn:syncroot:problem:forbidden", "{p}");
        assert_eq!(p["scope"], "write", "{p}");
        assert!(
            p["detail"].as_str().unwrap().contains("write"),
            "the detail names the scope: {p}"
        );
    }
    // Nothing of the refused writes reached Postgres or RabbitMQ.
    app.assert_unchanged(&before, "writes with a read key")
        .await;
    // Nor of the same writes with an unknown key, or none.
    for (method, path, body) in writes {
        for key in [Some("not-a-key-0123456789"), None] {
            let mut req = app.http.request(method.clone(), app.url(&path));
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            if let Some(b) = &body {
                req = req.json(b);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path} with {key:?}");
        }
    }
    app.assert_unchanged(&before, "writes with an unknown key or none")
        .await;
    let c: Value = app.get_contact(&id).await.json().await.unwrap();
    assert_eq!(c["first_name"], "Ada");
    assert_eq!(c["version"], 1);

    // A read key opens nothing of the admin area; an unknown key is a 401.
    let r = read(Method::GET, "/dlq").send().await.unwrap();
    assert_eq!(r.status(), 401, "no admin keys: the admin API is closed");
    let r = app
        .http
        .get(app.url("/contacts"))
        .bearer_auth("not-a-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// An app with two read-write keys, [`KEY`] and [`OTHER_KEY`], and `env`.
async fn two_keys(env: &[(&str, &str)]) -> TestApp {
    let keys = format!("{KEY},{OTHER_KEY}");
    let opts = with_env(Options::default(), &[("SYNCROOT_API_KEYS", &keys)]);
    TestApp::spawn_with(with_env(opts, env)).await
}

/// Posts `body` as the holder of `key` with Idempotency-Key `idem`: status, replayed, body.
async fn post_as(app: &TestApp, key: &str, idem: &str, body: &Value) -> (u16, bool, Value) {
    let r = app
        .http
        .post(app.url("/contacts"))
        .bearer_auth(key)
        .header("idempotency-key", idem)
        .json(body)
        .send()
        .await
        .unwrap();
    let replayed = r.headers().get("idempotent-replayed").is_some();
    (r.status().as_u16(), replayed, r.json().await.unwrap())
}

#[tokio::test]
async fn one_idempotency_key_used_by_two_api_keys_never_replays_one_callers_answer_to_the_other() {
    let app = two_keys(&[]).await;
    let (ada, eve) = (
        json!({"email": "ada@example.com"}),
        json!({"email": "eve@example.com"}),
    );
    let (status, replayed, first) = post_as(&app, KEY, "order-1", &ada).await;
    assert_eq!((status, replayed), (202, false), "{first}");
    // The other caller sending the same body under the same key is not answered with the
    // first caller's contact: its request is its own (refused only for the e-mail in use).
    let (status, replayed, p) = post_as(&app, OTHER_KEY, "order-1", &ada).await;
    assert_eq!((status, replayed), (409, false), "{p}");
    assert_eq!(p["type"], "urn:syncroot:problem:email-taken", "{p}");
    // And another body under that key is neither a replay nor a conflict with a body it
    // never sent.
    let (status, replayed, other) = post_as(&app, OTHER_KEY, "order-1", &eve).await;
    assert_eq!((status, replayed), (202, false), "{other}");
    assert_ne!(other["id"], first["id"]);
    // Each caller's own retry replays its own answer.
    for (key, body, answer) in [(KEY, &ada, &first), (OTHER_KEY, &eve, &other)] {
        let (status, replayed, again) = post_as(&app, key, "order-1", body).await;
        assert_eq!((status, replayed), (202, true), "{again}");
        assert_eq!(again["id"], answer["id"]);
    }
    let heads: i64 = sqlx::query_scalar("SELECT count(*) FROM contact_heads")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(heads, 2);
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_retry_after_while_another_key_is_served() {
    let app = two_keys(&[
        ("SYNCROOT_API_KEY_RATE_PER_SEC", "1"),
        ("SYNCROOT_API_KEY_BURST", "3"),
    ])
    .await;
    let get = |key: &str| app.http.get(app.url("/contacts")).bearer_auth(key).send();
    for i in 0..3 {
        assert_eq!(get(KEY).await.unwrap().status(), 200, "request {i}");
    }
    let over = get(KEY).await.unwrap();
    assert_eq!(over.status(), 429);
    assert_eq!(over.headers()["content-type"], "application/problem+json");
    let retry_after: u64 = over.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is whole seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let p: Value = over.json().await.unwrap();
    assert_eq!(p["type"], "urn:syncroot:problem:rate-limited", "{p}");
    // A write of the limited key is refused as well, and the other key is unaffected.
    let w = app
        .authed(Method::POST, "/contacts")
        .json(&json!({"email": "ada@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(w.status(), 429);
    for i in 0..3 {
        assert_eq!(get(OTHER_KEY).await.unwrap().status(), 200, "other key {i}");
    }
}

#[tokio::test]
async fn a_key_at_its_in_flight_cap_gets_429_until_a_request_ends_while_another_key_is_served() {
    let app = two_keys(&[("SYNCROOT_API_KEY_MAX_IN_FLIGHT", "1")]).await;
    // A create whose body never finishes arriving holds the key's one slot.
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut held = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /contacts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    held.write_all(head.as_bytes()).await.unwrap();
    let get = |key: &str| app.http.get(app.url("/contacts")).bearer_auth(key).send();
    let r = eventually("the held request to take the key's slot", || async {
        let r = get(KEY).await.ok()?;
        (r.status() == 429).then_some(r)
    })
    .await;
    assert_eq!(r.headers()["retry-after"], "1");
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("in flight"), "{p}");
    assert_eq!(get(OTHER_KEY).await.unwrap().status(), 200);
    drop(held);
    eventually("the slot to be free once the held request ends", || async {
        (get(KEY).await.ok()?.status() == 200).then_some(())
    })
    .await;
}

/// The audit log's items, newest first, via the admin API.
async fn audit_items(app: &TestApp, query: &str) -> (Vec<Value>, Value) {
    let (status, page) = send(app.admin(Method::GET, &format!("/admin/audit{query}"))).await;
    assert_eq!(status, 200, "{page}");
    (
        page["items"].as_array().unwrap().clone(),
        page["next_cursor"].clone(),
    )
}

#[tokio::test]
async fn every_replay_and_discard_leaves_an_audit_row_naming_the_admin_key_and_the_entries() {
    let app = TestApp::spawn_with(admin_options(false)).await;
    let (items, next) = audit_items(&app, "").await;
    assert_eq!((items.len(), next), (0, Value::Null));

    // A replay (a kept message goes back to its queue; no worker runs to take it again).
    let queue = app.topology().dead_letter_queue();
    let kept = RawMessage {
        queue: Some(queue.clone()),
        body: b"kept".to_vec(),
        ..RawMessage::default()
    };
    let replayed = seed_message(&app.db, kept.clone()).await;
    let (status, _) = send(app.admin(Method::POST, &format!("/dlq/{replayed}/replay"))).await;
    assert_eq!(status, 202);
    // A discard of one entry, and of every parked HubSpot entry.
    let discarded = DeliverySeed::new("salesforce", Uuid::now_v7())
        .save(&app.db)
        .await;
    let (status, _) = send(app.admin(Method::DELETE, &format!("/dlq/{discarded}"))).await;
    assert_eq!(status, 204);
    let a = DeliverySeed::new("hubspot", Uuid::now_v7())
        .save(&app.db)
        .await;
    let b = DeliverySeed::new("hubspot", Uuid::now_v7())
        .save(&app.db)
        .await;
    let (status, out) =
        send(app.admin(Method::POST, "/dlq/discard?crm=hubspot&status=parked")).await;
    assert_eq!((status, out), (200, json!({"discarded": 2})));
    // What changed nothing leaves no row: an unknown entry, a filter that matches nothing.
    let (status, _) = send(app.admin(Method::DELETE, &format!("/dlq/{}", Uuid::now_v7()))).await;
    assert_eq!(status, 404);
    let (status, _) = send(app.admin(Method::POST, "/dlq/discard?crm=hubspot")).await;
    assert_eq!(status, 200);

    let (items, _) = audit_items(&app, "").await;
    let actions: Vec<&str> = items
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["discard_matching", "discard", "replay"],
        "{items:?}"
    );
    for i in &items {
        assert_eq!(i["key_id"], ADMIN_KEY_ID, "{i}");
        assert!(i["at"].as_str().is_some(), "{i}");
    }
    let mut bulk: Vec<String> = items[0]["entry_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    bulk.sort();
    let mut expected = vec![a.to_string(), b.to_string()];
    expected.sort();
    assert_eq!(bulk, expected);
    assert_eq!(items[0]["filter"], "crm=hubspot&status=parked");
    assert_eq!(items[1]["entry_ids"], json!([discarded]));
    assert_eq!(items[1]["filter"], Value::Null);
    assert_eq!(items[2]["entry_ids"], json!([replayed]));

    // Paged, newest first.
    let (first, cursor) = audit_items(&app, "?limit=2").await;
    assert_eq!(first.len(), 2);
    let (rest, end) = audit_items(
        &app,
        &format!("?limit=2&cursor={}", cursor.as_str().unwrap()),
    )
    .await;
    assert_eq!((rest.len(), end), (1, Value::Null));
    assert_eq!(rest[0]["action"], "replay");

    // The audit log is the admin scope's: a read-write key gets 403 naming it.
    let (status, p) = send(app.authed(Method::GET, "/admin/audit")).await;
    assert_eq!(status, 403, "{p}");
    assert_eq!(p["scope"], "admin");
    // A bulk replay leaves its row too.
    let again = seed_message(&app.db, kept).await;
    let (status, out) = send(app.admin(Method::POST, "/dlq/replay?status=parked")).await;
    assert_eq!((status, out["replayed"].clone()), (202, json!(1)));
    let (items, _) = audit_items(&app, "?limit=1").await;
    assert_eq!(items[0]["action"], "replay_matching");
    assert_eq!(items[0]["entry_ids"], json!([again]));
    assert_eq!(items[0]["filter"], "status=parked");
}

/// Starts `syncroot api` with JSON logs into a file; returns the process, its base URL and
/// the log file.
async fn api_process(
    install: &common::Installation,
) -> (tokio::process::Child, String, std::path::PathBuf) {
    let port = common::free_port().unwrap();
    let mut env = install.env().to_vec();
    for (k, v) in [
        ("SYNCROOT_API_LISTEN", format!("127.0.0.1:{port}")),
        ("SYNCROOT_ADMIN_KEYS", ADMIN_KEY.to_owned()),
        ("SYNCROOT_LOG", "info".to_owned()),
        ("SYNCROOT_LOG_FORMAT", "json".to_owned()),
    ] {
        env.retain(|(name, _)| name != k);
        env.push((k.to_owned(), v));
    }
    let log = std::env::temp_dir().join(format!("syncroot-audit-{}.log", Uuid::new_v4()));
    let out = std::fs::File::create(&log).unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_syncroot"))
        .arg("api")
        .env_clear()
        .envs(env)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = common::http_client().build().unwrap();
    eventually("syncroot api to answer /healthz", || async {
        let r = http.get(format!("{base}/healthz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    (child, base, log)
}

/// The log's events of target `audit`, as JSON objects.
fn audit_events(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["target"] == "audit")
        .collect()
}

#[tokio::test]
async fn a_failed_authentication_leaves_an_audit_event_without_the_key() {
    let install = common::Installation::for_tests("t");
    let (mut child, base, log) = api_process(&install).await;
    let http = common::http_client().build().unwrap();
    let wrong = "not-a-key-0123456789";
    let r = http
        .get(format!("{base}/contacts"))
        .bearer_auth(wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .delete(format!("{base}/dlq/{}", Uuid::now_v7()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let events = eventually("the refusals' audit events", || async {
        let events = audit_events(&log);
        let failed = events
            .iter()
            .filter(|e| e["fields"]["event"] == "authentication_failed")
            .count();
        (failed == 2).then_some(events)
    })
    .await;
    common::process::stop(&mut child, Duration::from_secs(5)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(!text.contains(wrong), "the presented key is never logged");
    assert!(
        !text.contains(KEY) && !text.contains(ADMIN_KEY),
        "nor a configured key"
    );

    let failed: Vec<&Value> = events
        .iter()
        .filter(|e| e["fields"]["event"] == "authentication_failed")
        .collect();
    let unknown = &failed[0]["fields"];
    assert_eq!(unknown["reason"], "unknown_key", "{unknown}");
    assert_eq!(unknown["key_fingerprint"], UNKNOWN_KEY_FINGERPRINT);
    assert_eq!(
        (unknown["method"].clone(), unknown["path"].clone()),
        (json!("GET"), json!("/contacts"))
    );
    let missing = &failed[1]["fields"];
    assert_eq!(missing["reason"], "missing_key", "{missing}");
    assert_eq!(missing["method"], "DELETE");

    // The start-up configuration, secrets redacted, and the keys by id.
    let setting = |name: &str| {
        events
            .iter()
            .find(|e| e["fields"]["event"] == "setting" && e["fields"]["name"] == name)
            .map(|e| e["fields"].clone())
    };
    let admin = setting("admin_keys").expect("a non-default setting is logged");
    assert_eq!(admin["value"], "[redacted]");
    assert_eq!(admin["from"], "SYNCROOT_ADMIN_KEYS");
    assert_eq!(setting("log_format").unwrap()["value"], "json");
    assert!(
        setting("api_key_burst").is_none(),
        "defaults are not repeated"
    );
    let keys = events
        .iter()
        .find(|e| e["fields"]["event"] == "keys")
        .expect("the keys event");
    assert!(
        keys["fields"]["admin"]
            .as_str()
            .unwrap()
            .contains(ADMIN_KEY_ID),
        "{keys}"
    );
}
