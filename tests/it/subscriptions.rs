//! Push subscriptions, black-box: the real app and subscription senders against a subscriber
//! (`scripts/webhook_receiver.py`) that checks every delivery with the Standard Webhooks
//! project's own Python library. The subscriber must see every change of the pull feed
//! (`GET /changes`), in its order, once duplicates are dropped by `webhook-id`: through its own
//! failures, a long outage that disables the subscription, and a replay. Secret rotation is in
//! `rotation`.

use std::collections::BTreeSet;
use std::process::Stdio;

use reqwest::Method;
use serde_json::{Value, json};
use syncroot_testkit as common;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use common::{ADMIN_KEY, KEY, Options, TestApp, eventually};

mod rotation;

/// The subscriber: the Python receiver as a child process (killed when dropped).
struct Receiver {
    url: String,
    http: reqwest::Client,
    _child: tokio::process::Child,
}

impl Receiver {
    async fn start() -> Self {
        let mut child = tokio::process::Command::new("bash")
            .args([
                "-c",
                ". scripts/python.sh && exec \"$PYBIN/python\" scripts/webhook_receiver.py",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("bash runs scripts/python.sh");
        let stdout = child.stdout.take().unwrap();
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first).await.unwrap();
        let port = first
            .trim()
            .strip_prefix("PORT ")
            .unwrap_or_else(|| panic!("the receiver did not start: {first:?}"));
        Self {
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _child: child,
        }
    }

    /// Answers deliveries 204 (`ok`) or 500 (`fail`) from now on.
    async fn mode(&self, mode: &str) {
        let r = self
            .http
            .put(format!("{}/__control/mode", self.url))
            .json(&json!({"mode": mode}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// Every request received, oldest first, checked now by `standardwebhooks` with `secret`.
    async fn received(&self, secret: &str) -> Vec<Value> {
        self.http
            .post(format!("{}/__control/verify", self.url))
            .json(&json!({"secret": secret}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// The deliveries the subscriber took (2xx), duplicates by `webhook-id` dropped: each as
/// (webhook-id, contact, version).
fn taken(received: &[Value]) -> Vec<(String, String, i64)> {
    let mut seen = BTreeSet::new();
    received
        .iter()
        .filter(|r| r["status"] == 204)
        .filter(|r| seen.insert(r["id"].as_str().unwrap().to_owned()))
        .map(|r| {
            let d = &r["body"]["data"];
            (
                r["id"].as_str().unwrap().to_owned(),
                d["contact_id"].as_str().unwrap().to_owned(),
                d["version"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The whole pull feed as (cursor, contact, version), an entry a page so that each page's
/// `next_after` is that entry's own cursor.
async fn feed(app: &TestApp) -> Vec<(String, String, i64)> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut req = app.authed(Method::GET, "/changes").query(&[("limit", "1")]);
        if let Some(a) = &after {
            req = req.query(&[("after", a)]);
        }
        let page: Value = req.send().await.unwrap().json().await.unwrap();
        let Some(c) = page["changes"].as_array().unwrap().first() else {
            return all;
        };
        let cursor = page["next_after"].as_str().unwrap().to_owned();
        let contact = c["contact_id"].as_str().unwrap().to_owned();
        all.push((cursor.clone(), contact, c["version"].as_i64().unwrap()));
        after = Some(cursor);
    }
}

/// The (contact, version) pairs of a sequence.
fn pairs<T: AsRef<str>>(items: &[(T, String, i64)]) -> Vec<(String, i64)> {
    items.iter().map(|(_, c, v)| (c.clone(), *v)).collect()
}

fn options(senders: usize, extra: &[(&str, &str)]) -> Options {
    let mut env = vec![
        ("SYNCROOT_ADMIN_KEYS", ADMIN_KEY),
        ("SYNCROOT_SUBSCRIPTION_POLL_MS", "50"),
        ("SYNCROOT_SUBSCRIPTION_RETRY_MIN_MS", "20"),
        ("SYNCROOT_SUBSCRIPTION_RETRY_MAX_MS", "200"),
        ("SYNCROOT_SUBSCRIPTION_TIMEOUT_MS", "2000"),
    ];
    env.extend_from_slice(extra);
    Options {
        subscription_senders: senders,
        extra_env: env
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ..Options::default()
    }
}

/// Creates a subscription; returns its id and secret.
async fn subscribe(app: &TestApp, url: &str, since: &str) -> (String, String) {
    let r = app
        .admin(Method::POST, "/admin/subscriptions")
        .json(&json!({"url": url, "description": "test subscriber", "since": since}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    let secret = body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let id = body["subscription"]["id"].as_str().unwrap().to_owned();
    (id, secret)
}

/// An admin request without a body; its JSON answer.
async fn admin_json(app: &TestApp, method: Method, path: &str) -> Value {
    app.admin(method, path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn subscription(app: &TestApp, id: &str) -> Value {
    let r = app
        .admin(Method::GET, &format!("/admin/subscriptions/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Waits until the subscriber has taken exactly what the feed holds, in its order; returns
/// everything it received.
async fn wait_caught_up(app: &TestApp, rx: &Receiver, secret: &str) -> Vec<Value> {
    eventually("the subscriber to have taken the whole feed", || async {
        let want = feed(app).await;
        let got = rx.received(secret).await;
        all_verified(&got);
        (pairs(&taken(&got)) == pairs(&want) && !want.is_empty()).then_some(got)
    })
    .await
}

/// Every request the subscriber received verified with the independent library.
#[track_caller]
fn all_verified(received: &[Value]) {
    for r in received {
        assert_eq!(r["verified"], true, "not verified by standardwebhooks: {r}");
    }
}

#[tokio::test]
async fn every_change_arrives_signed_once_in_feed_order_through_the_subscriber_failing() {
    // Two senders: the lease must keep them from delivering one subscription at once.
    let app = TestApp::spawn_with(options(2, &[])).await;
    let rx = Receiver::start().await;
    let a = app
        .create(json!({"email": "sub-a@example.com", "last_name": "A"}))
        .await;
    let (id, secret) = subscribe(&app, &rx.url, "beginning").await;
    let b = app
        .create(json!({"email": "sub-b@example.com", "last_name": "B"}))
        .await;
    app.patch_contact(&a, json!({"job_title": "CTO"})).await;
    wait_caught_up(&app, &rx, &secret).await;

    // The subscriber fails: every attempt gets 500 and is retried with the same id.
    rx.mode("fail").await;
    app.patch_contact(&b, json!({"job_title": "CFO"})).await;
    app.patch_contact(&a, json!({"job_title": "CEO"})).await;
    eventually("three refused attempts", || async {
        let got = rx.received(&secret).await;
        (got.iter().filter(|r| r["status"] == 500).count() >= 3).then_some(())
    })
    .await;
    let failing = subscription(&app, &id).await;
    assert_eq!(failing["status"], "failing", "{failing}");
    assert!(failing["consecutive_failures"].as_i64().unwrap() >= 1);
    assert!(failing["pending"].as_i64().unwrap() >= 1);
    rx.mode("ok").await;
    app.patch_contact(&b, json!({"job_title": "COO"})).await;
    let received = wait_caught_up(&app, &rx, &secret).await;
    all_verified(&received);

    // The same sequence as the pull feed, each delivery's id the entry's feed cursor, and no
    // entry taken twice (two senders, one lease).
    let want = feed(&app).await;
    let got = taken(&received);
    assert_eq!(pairs(&got), pairs(&want));
    assert_eq!(
        got.last().unwrap().0,
        want.last().unwrap().0,
        "webhook-id is the cursor"
    );
    let accepted = received.iter().filter(|r| r["status"] == 204).count();
    assert_eq!(
        accepted,
        got.len(),
        "an entry was taken twice: {received:#?}"
    );
    // Retries of one entry carry its id: every refused id was later taken.
    let refused_attempts = received.iter().filter(|r| r["status"] == 500).count();
    let refused: BTreeSet<_> = received
        .iter()
        .filter(|r| r["status"] == 500)
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let taken_ids: BTreeSet<_> = got.iter().map(|t| t.0.as_str()).collect();
    assert!(refused.is_subset(&taken_ids), "{refused:?}");
    let first = &received[0]["body"];
    assert_eq!(first["type"], "contact.created");
    assert_eq!(first["data"]["operation"], "create");
    assert_eq!(first["data"]["origin"], "api");

    let done = subscription(&app, &id).await;
    assert_eq!(done["status"], "active", "{done}");
    assert_eq!(done["pending"], 0);
    assert_eq!(done["consecutive_failures"], 0);
    assert_eq!(
        done["cursor"].as_str(),
        Some(want.last().unwrap().0.as_str())
    );
    assert!(done["last_failure_at"].is_string() && done["last_success_at"].is_string());

    // The delivery log has every attempt, with its status.
    let log: Value = admin_json(
        &app,
        Method::GET,
        &format!("/admin/subscriptions/{id}/deliveries?limit=500"),
    )
    .await;
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), received.len(), "{log}");
    assert!(
        items
            .iter()
            .any(|i| i["status_code"] == 500 && i["attempt"].as_i64() > Some(1))
    );
    assert!(items.iter().any(|i| i["status_code"] == 204));

    // The delivery counter (this test process's one recorder: other tests add to it, so at
    // least what this one saw).
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = |outcome: &str| -> f64 {
        let series = format!("syncroot_subscription_deliveries_total{{outcome=\"{outcome}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series}in {metrics}"))
    };
    assert!(counted("refused") >= refused_attempts as f64);
    assert!(counted("success") >= accepted as f64);
}

#[tokio::test]
async fn a_forged_or_altered_delivery_fails_the_independent_check() {
    let app = TestApp::spawn_with(options(1, &[])).await;
    let rx = Receiver::start().await;
    let (_, secret) = subscribe(&app, &rx.url, "now").await;
    app.create(json!({"email": "sub-forged@example.com"})).await;
    let received = wait_caught_up(&app, &rx, &secret).await;
    all_verified(&received);
    let real = &received[0];

    // The genuine headers with an altered body, then the genuine body with a signature made
    // with another secret.
    let mut altered = real["body"].clone();
    altered["data"]["version"] = json!(99);
    let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let foreign = syncroot::push::signature::SigningKey::parse(other)
        .unwrap()
        .sign(
            real["id"].as_str().unwrap(),
            real["timestamp"].as_str().unwrap().parse().unwrap(),
            real["raw"].as_str().unwrap().as_bytes(),
        );
    for (signature, body) in [
        (
            real["signature"].as_str().unwrap().to_owned(),
            altered.to_string(),
        ),
        (foreign, real["raw"].as_str().unwrap().to_owned()),
    ] {
        let r = reqwest::Client::new()
            .post(&rx.url)
            .header("webhook-id", real["id"].as_str().unwrap())
            .header("webhook-timestamp", real["timestamp"].as_str().unwrap())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let checked = rx.received(&secret).await;
    assert_eq!(checked.len(), received.len() + 2);
    for f in &checked[received.len()..] {
        assert_eq!(f["verified"], false, "a forged delivery passed: {f}");
    }
    // The genuine one still passes, and fails with another secret.
    assert_eq!(checked[0]["verified"], true);
    assert_eq!(rx.received(other).await[0]["verified"], false);
}

#[tokio::test]
async fn a_subscription_failing_too_long_is_disabled_and_resumes_from_its_cursor_when_enabled() {
    let app = TestApp::spawn_with(options(
        1,
        &[("SYNCROOT_SUBSCRIPTION_DISABLE_AFTER_SECS", "1")],
    ))
    .await;
    // Nothing listens there: every attempt is a refused connection.
    let down = format!("http://127.0.0.1:{}/hook", common::free_port().unwrap());
    let (id, _) = subscribe(&app, &down, "now").await;
    let a = app
        .create(json!({"email": "sub-down@example.com", "last_name": "D"}))
        .await;
    app.patch_contact(&a, json!({"job_title": "CTO"})).await;
    let disabled = eventually("the subscription to be disabled", || async {
        let s = subscription(&app, &id).await;
        (s["status"] == "disabled").then_some(s)
    })
    .await;
    assert_eq!(disabled["enabled"], false);
    let reason = disabled["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("failing since"), "{reason}");
    assert!(
        disabled["last_error"]
            .as_str()
            .unwrap()
            .contains("connection"),
        "{disabled}"
    );
    let log: Value = admin_json(
        &app,
        Method::GET,
        &format!("/admin/subscriptions/{id}/deliveries"),
    )
    .await;
    let first = log["items"].as_array().unwrap().last().unwrap().clone();
    assert!(
        first["status_code"].is_null() && first["error"].is_string(),
        "{first}"
    );

    // Meanwhile more changes; then an admin points it at a live subscriber and enables it.
    let b = app.create(json!({"email": "sub-later@example.com"})).await;
    app.patch_contact(&b, json!({"last_name": "L"})).await;
    let rx = Receiver::start().await;
    let r = app
        .admin(Method::PATCH, &format!("/admin/subscriptions/{id}"))
        .header("content-type", "application/merge-patch+json")
        .body(json!({"url": rx.url, "enabled": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let resumed: Value = r.json().await.unwrap();
    assert_eq!(resumed["status"], "active");
    assert!(resumed["disabled_reason"].is_null());

    // Everything since the subscription began, in feed order, none lost to the outage.
    let want = feed(&app).await;
    let secret = secret_of(&app, &id).await;
    let got = eventually("every change since the subscription began", || async {
        let got = rx.received(&secret).await;
        all_verified(&got);
        (pairs(&taken(&got)) == pairs(&want)).then_some(got)
    })
    .await;
    all_verified(&got);

    // The audit log has the admin's create and update.
    let audit: Value = admin_json(&app, Method::GET, "/admin/audit").await;
    let actions: Vec<_> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["entry_ids"][0] == id.as_str())
        .map(|i| i["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["subscription_update", "subscription_create"]);
}

/// A subscription's secret, read from its row (the API shows it only once).
async fn secret_of(app: &TestApp, id: &str) -> String {
    sqlx::query_scalar("SELECT secret FROM subscriptions WHERE id = $1")
        .bind(uuid::Uuid::parse_str(id).unwrap())
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_replay_sends_again_everything_from_a_time() {
    let app = TestApp::spawn_with(options(1, &[])).await;
    let rx = Receiver::start().await;
    let (id, secret) = subscribe(&app, &rx.url, "now").await;
    let a = app.create(json!({"email": "sub-r1@example.com"})).await;
    app.patch_contact(&a, json!({"last_name": "R"})).await;
    let b = app.create(json!({"email": "sub-r2@example.com"})).await;
    app.patch_contact(&b, json!({"last_name": "S"})).await;
    let before = wait_caught_up(&app, &rx, &secret).await;
    assert_eq!(taken(&before).len(), 4);

    // From b's creation on: its two entries again, with the ids they had.
    let history: Value = app
        .authed(Method::GET, &format!("/contacts/{b}/history"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let since = history["versions"][0]["accepted_at"].as_str().unwrap();
    let r = app
        .admin(Method::POST, &format!("/admin/subscriptions/{id}/replay"))
        .json(&json!({"since": since}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let after = eventually("the replayed deliveries", || async {
        let got = rx.received(&secret).await;
        (got.len() >= before.len() + 2).then_some(got)
    })
    .await;
    all_verified(&after);
    let again: Vec<_> = after[before.len()..]
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let b_ids: Vec<_> = taken(&before)[2..].iter().map(|t| t.0.clone()).collect();
    assert_eq!(again, b_ids);
    // Dropping duplicates by id, the subscriber still has exactly the feed.
    assert_eq!(pairs(&taken(&after)), pairs(&feed(&app).await));
}

#[tokio::test]
async fn the_admin_api_needs_the_admin_key_and_names_bad_input() {
    let app = TestApp::spawn_with(options(0, &[])).await;
    let body = json!({"url": "https://hooks.example.com/syncroot"});
    let none = app
        .http
        .post(app.url("/admin/subscriptions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    for method in [Method::GET, Method::POST] {
        let r = app
            .http
            .request(method, app.url("/admin/subscriptions"))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "a write key");
    }

    for (bad, pointer) in [
        (json!({"url": "ftp://hooks.example.com"}), "/url"),
        (json!({"url": "not a url"}), "/url"),
        (json!({"url": "https://user:pw@hooks.example.com"}), "/url"),
        (json!({"url": 7}), "/url"),
        (json!({}), "/url"),
        (
            json!({"url": "https://hooks.example.com", "since": "yesterday"}),
            "/since",
        ),
        (
            json!({"url": "https://hooks.example.com", "secret": "mine"}),
            "/secret",
        ),
    ] {
        let r = app
            .admin(Method::POST, "/admin/subscriptions")
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{bad}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{bad}"
        );
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["errors"][0]["pointer"], pointer, "{p}");
    }
    let r = app
        .admin(Method::POST, "/admin/subscriptions")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let created: Value = app
        .admin(Method::POST, "/admin/subscriptions")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["subscription"]["id"].as_str().unwrap().to_owned();
    let shown = subscription(&app, &id).await;
    assert!(
        !shown.to_string().contains("whsec_"),
        "the secret is shown once: {shown}"
    );
    let listed: Value = admin_json(&app, Method::GET, "/admin/subscriptions").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    let path = format!("/admin/subscriptions/{id}");
    let rotated: Value = admin_json(&app, Method::POST, &format!("{path}/rotate-secret")).await;
    assert_ne!(rotated["secret"], created["secret"]);
    for (method, p, body, status) in [
        (Method::PATCH, path.clone(), json!({"enabled": "no"}), 422),
        (Method::PATCH, path.clone(), json!({"url": "https://"}), 422),
        (
            Method::POST,
            format!("{path}/replay"),
            json!({"since": "now"}),
            422,
        ),
        (
            Method::GET,
            "/admin/subscriptions/nope".to_owned(),
            json!({}),
            404,
        ),
        (
            Method::GET,
            format!("/admin/subscriptions/{}", uuid::Uuid::new_v4()),
            json!({}),
            404,
        ),
        (
            Method::GET,
            format!("{path}/deliveries?limit=0"),
            json!({}),
            400,
        ),
    ] {
        let r = app.admin(method, &p).json(&body).send().await.unwrap();
        assert_eq!(r.status(), status, "{p} {body}");
    }
    let r = app.admin(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = app.admin(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(r.status(), 404);
}
