//! Secret rotation with an overlap, black-box: a receiver holding only the previous secret and
//! one holding only the new secret both verify deliveries (with the Standard Webhooks Python
//! library) until the overlap ends; then only the new one does. A second rotation replaces the
//! previous secret; an overlap of 0 drops it at once.

use reqwest::Method;
use serde_json::{Value, json};
use syncroot::push::signature::SigningKey;
use syncroot_testkit::{TestApp, eventually};

use super::{Receiver, options, subscribe, subscription, wait_caught_up};

/// Rotates `id`'s secret with `body` (none: the default overlap); the answer's status and body.
async fn rotate(app: &TestApp, id: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app.admin(
        Method::POST,
        &format!("/admin/subscriptions/{id}/rotate-secret"),
    );
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Rotates with `body` sent as it is, as `content_type`; the answer's status.
async fn rotate_raw(app: &TestApp, id: &str, content_type: &str, body: &'static str) -> u16 {
    app.admin(
        Method::POST,
        &format!("/admin/subscriptions/{id}/rotate-secret"),
    )
    .header("content-type", content_type)
    .body(body)
    .send()
    .await
    .unwrap()
    .status()
    .as_u16()
}

/// How long from now the previous secret of a rotation's answer still signs.
fn overlap_left(rotated: &Value) -> chrono::Duration {
    let until: chrono::DateTime<chrono::Utc> = rotated["previous_secret_expires_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no previous_secret_expires_at: {rotated}"))
        .parse()
        .unwrap();
    until - chrono::Utc::now()
}

/// Rotates with an overlap of `overlap_secs`; the new secret and the answer.
async fn rotate_with(app: &TestApp, id: &str, overlap_secs: i64) -> (String, Value) {
    let (status, body) = rotate(app, id, Some(json!({"overlap_secs": overlap_secs}))).await;
    assert_eq!(status, 200, "{body}");
    let secret = body["secret"].as_str().unwrap().to_owned();
    (secret, body)
}

/// A delivery as the receiver checked it with one secret.
struct Checked {
    /// Its place among everything the receiver got.
    index: usize,
    entry: Value,
}

/// Makes a change to `contact` and waits for a delivery of it that `secret` verifies (a
/// sender that took the subscription before the rotation may have sent one with the secrets
/// it read then; the rotation dropped its lease, so the entry comes again).
async fn change_verified_by(
    app: &TestApp,
    rx: &Receiver,
    contact: &str,
    title: &str,
    secret: &str,
) -> Checked {
    let before = rx.received(secret).await.len();
    app.patch_contact(contact, json!({"job_title": title}))
        .await;
    eventually(
        "a delivery of the change that the new secret verifies",
        || async {
            let got = rx.received(secret).await;
            let index = (before..got.len()).find(|&i| {
                got[i]["verified"] == true && got[i]["body"]["data"]["changes"][0]["new"] == title
            })?;
            Some(Checked {
                index,
                entry: got[index].clone(),
            })
        },
    )
    .await
}

/// Whether `secret` verifies the delivery at `index`.
async fn verifies(rx: &Receiver, index: usize, secret: &str) -> bool {
    rx.received(secret).await[index]["verified"] == true
}

/// The signatures of a delivery's `webhook-signature`, in order.
fn signatures(entry: &Value) -> Vec<String> {
    entry["signature"]
        .as_str()
        .unwrap()
        .split(' ')
        .map(str::to_owned)
        .collect()
}

/// What `secret` signs for this delivery.
fn signed_by(entry: &Value, secret: &str) -> String {
    SigningKey::parse(secret).unwrap().sign(
        entry["id"].as_str().unwrap(),
        entry["timestamp"].as_str().unwrap().parse().unwrap(),
        entry["raw"].as_str().unwrap().as_bytes(),
    )
}

/// A subscription that has delivered one change, signed with its first secret.
async fn delivering(app: &TestApp, rx: &Receiver) -> (String, String, String) {
    let (id, secret) = subscribe(app, &rx.url, "now").await;
    let contact = app
        .create(json!({"email": format!("rot-{}@example.com", uuid::Uuid::new_v4())}))
        .await;
    wait_caught_up(app, rx, &secret).await;
    (id, secret, contact)
}

#[tokio::test]
async fn during_the_overlap_both_secrets_verify_and_a_second_rotation_replaces_the_previous() {
    let app = TestApp::spawn_with(options(1, &[])).await;
    let rx = Receiver::start().await;
    let (id, first, contact) = delivering(&app, &rx).await;

    let (second, rotated) = rotate_with(&app, &id, 3600).await;
    let from_now = overlap_left(&rotated);
    assert!(
        from_now > chrono::Duration::minutes(59) && from_now <= chrono::Duration::hours(1),
        "{rotated}"
    );
    // The subscription shows when the previous secret stops signing, never a secret.
    let shown = subscription(&app, &id).await;
    assert_eq!(
        shown["previous_secret_expires_at"], rotated["previous_secret_expires_at"],
        "{shown}"
    );
    assert!(!shown.to_string().contains("whsec_"), "{shown}");

    // Signed with both, the new secret first: a receiver with either verifies.
    let d = change_verified_by(&app, &rx, &contact, "CTO", &second).await;
    assert!(verifies(&rx, d.index, &first).await, "{}", d.entry);
    assert_eq!(
        signatures(&d.entry),
        [signed_by(&d.entry, &second), signed_by(&d.entry, &first)]
    );

    // A second rotation within the overlap: the secret it replaces is now the previous one;
    // the first no longer signs.
    let (third, _) = rotate_with(&app, &id, 3600).await;
    let d = change_verified_by(&app, &rx, &contact, "CEO", &third).await;
    assert!(verifies(&rx, d.index, &second).await, "{}", d.entry);
    assert!(!verifies(&rx, d.index, &first).await, "{}", d.entry);
    assert_eq!(signatures(&d.entry).len(), 2, "{}", d.entry);
}

#[tokio::test]
async fn a_rotation_without_overlap_drops_the_previous_secret_at_once() {
    let app = TestApp::spawn_with(options(1, &[])).await;
    let rx = Receiver::start().await;
    let (id, first, contact) = delivering(&app, &rx).await;

    let (second, rotated) = rotate_with(&app, &id, 0).await;
    assert!(rotated["previous_secret_expires_at"].is_null(), "{rotated}");
    assert!(subscription(&app, &id).await["previous_secret_expires_at"].is_null());
    let d = change_verified_by(&app, &rx, &contact, "CTO", &second).await;
    assert!(!verifies(&rx, d.index, &first).await, "{}", d.entry);
    assert_eq!(signatures(&d.entry), [signed_by(&d.entry, &second)]);
}

#[tokio::test]
async fn once_the_overlap_has_ended_only_the_new_secret_verifies() {
    let app = TestApp::spawn_with(options(1, &[])).await;
    let rx = Receiver::start().await;
    let (id, first, contact) = delivering(&app, &rx).await;

    let (second, rotated) = rotate_with(&app, &id, 1).await;
    assert!(
        rotated["previous_secret_expires_at"].is_string(),
        "{rotated}"
    );
    eventually("the overlap to end", || async {
        subscription(&app, &id).await["previous_secret_expires_at"]
            .is_null()
            .then_some(())
    })
    .await;
    let d = change_verified_by(&app, &rx, &contact, "CTO", &second).await;
    assert!(!verifies(&rx, d.index, &first).await, "{}", d.entry);
    assert_eq!(signatures(&d.entry), [signed_by(&d.entry, &second)]);
    // The sender forgot the expired secret when it took the subscription.
    let kept: Option<String> =
        sqlx::query_scalar("SELECT previous_secret FROM subscriptions WHERE id = $1")
            .bind(uuid::Uuid::parse_str(&id).unwrap())
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(kept, None);
}

#[tokio::test]
async fn the_overlap_defaults_to_a_day_and_a_bad_one_is_named() {
    let app = TestApp::spawn_with(options(0, &[])).await;
    let (id, _) = subscribe(&app, "https://hooks.example.com/syncroot", "now").await;

    // No body: the default overlap, a day.
    let (status, rotated) = rotate(&app, &id, None).await;
    assert_eq!(status, 200, "{rotated}");
    let from_now = overlap_left(&rotated);
    assert!(
        from_now > chrono::Duration::hours(23) && from_now <= chrono::Duration::hours(24),
        "{rotated}"
    );
    // An empty object is the default too.
    let (status, _) = rotate(&app, &id, Some(json!({}))).await;
    assert_eq!(status, 200);

    for (bad, pointer) in [
        (json!({"overlap_secs": -1}), "/overlap_secs"),
        (json!({"overlap_secs": 604_801}), "/overlap_secs"),
        (json!({"overlap_secs": 1.5}), "/overlap_secs"),
        (json!({"overlap_secs": "3600"}), "/overlap_secs"),
        (json!({"overlap_secs": null}), "/overlap_secs"),
        (json!({"overlap": 60}), "/overlap"),
        (json!([]), ""),
    ] {
        let (status, problem) = rotate(&app, &id, Some(bad.clone())).await;
        assert_eq!(status, 422, "{bad}: {problem}");
        assert_eq!(problem["errors"][0]["pointer"], pointer, "{bad}: {problem}");
    }
    // Malformed JSON, and a body that is not JSON at all.
    assert_eq!(
        rotate_raw(&app, &id, "application/json", "{not json").await,
        400
    );
    assert_eq!(
        rotate_raw(&app, &id, "text/plain", "overlap_secs=60").await,
        415
    );
    let (status, _) = rotate(
        &app,
        &uuid::Uuid::new_v4().to_string(),
        Some(json!({"overlap_secs": 60})),
    )
    .await;
    assert_eq!(status, 404);
}
