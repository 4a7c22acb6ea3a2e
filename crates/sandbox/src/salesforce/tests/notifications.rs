//! Signed change notifications, received by a small axum server in the test.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;

use super::{Harness, contact};
use crate::salesforce::SalesforceSandboxConfig;

const SECRET: &str = "test-notify-secret";
/// Receivers reject deliveries whose timestamp is older than this (docs/salesforce-webhooks.md).
const REPLAY_WINDOW_MS: i64 = 5 * 60 * 1000;

struct Receiver {
    tx: mpsc::UnboundedSender<Value>,
    /// Deliveries still to refuse with 500 before accepting.
    refuse: AtomicUsize,
}

/// Verifies the signature over the raw bytes and the replay window, then parses.
async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if r.refuse.load(Ordering::SeqCst) > 0 {
        r.refuse.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let ts = headers["x-sync-timestamp"].to_str().unwrap();
    let sig = STANDARD
        .decode(headers["x-sync-signature"].to_str().unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&body);
    if mac.verify_slice(&sig).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    let age = chrono::Utc::now().timestamp_millis() - ts.parse::<i64>().unwrap();
    if !(0..REPLAY_WINDOW_MS).contains(&age) {
        return StatusCode::UNAUTHORIZED;
    }
    r.tx.send(serde_json::from_slice(&body).unwrap()).unwrap();
    StatusCode::NO_CONTENT
}

async fn start_receiver(refuse: usize) -> (String, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(Receiver {
        tx,
        refuse: AtomicUsize::new(refuse),
    });
    let app = axum::Router::new()
        .route("/hooks/salesforce", axum::routing::post(receive))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/salesforce", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no notification within 5 s")
        .unwrap()
}

fn config(url: Option<String>) -> SalesforceSandboxConfig {
    SalesforceSandboxConfig {
        notify_url: url,
        notify_secret: SECRET.into(),
        notify_linger_ms: 20,
        ..Default::default()
    }
}

#[tokio::test]
async fn notifications_are_signed_and_tell_api_writes_from_ui_edits() {
    let (url, mut rx) = start_receiver(0).await;
    let h = Harness::start(config(Some(url))).await;
    let id = h.create(contact("Lovelace", "ada@example.com")).await;

    let batch = next(&mut rx).await;
    let event = &batch["events"][0];
    let header = &event["ChangeEventHeader"];
    assert_eq!(
        (header["changeType"].as_str(), header["entityName"].as_str()),
        (Some("CREATE"), Some("Contact"))
    );
    assert_eq!(header["recordIds"], json!([id]));
    assert_eq!(
        header["changeOrigin"],
        "com/salesforce/api/rest/62.0;client=syncroot-test"
    );
    let api_user = header["commitUser"].as_str().unwrap().to_string();
    assert!(api_user.starts_with("005"));
    assert_eq!(event["Email"], "ada@example.com");

    h.control(
        Method::PATCH,
        &format!("ui/contacts/{id}"),
        json!({"Title": "Countess"}),
    )
    .await;
    let batch = next(&mut rx).await;
    let header = &batch["events"][0]["ChangeEventHeader"];
    assert_eq!(header["changeType"], "UPDATE");
    assert_eq!(header["changeOrigin"], "com/salesforce/api/rest/62.0");
    assert_ne!(header["commitUser"], json!(api_user));
    assert_eq!(
        header["changedFields"],
        json!(["Title", "LastModifiedById", "LastModifiedDate"])
    );
    assert_eq!(batch["events"][0]["Title"], "Countess");
}

#[tokio::test]
async fn failed_deliveries_are_retried_and_paused_notifications_wait() {
    let (url, mut rx) = start_receiver(1).await;
    let h = Harness::start(config(None)).await;
    h.control(
        Method::PUT,
        "webhook",
        json!({"url": url, "secret": SECRET}),
    )
    .await;
    let batch = json!({"records": [
        {"attributes": {"type": "Contact"}, "LastName": "One"},
        {"attributes": {"type": "Contact"}, "LastName": "Two"},
    ]});
    h.api(Method::POST, "composite/sobjects", Some(batch)).await;
    let delivered = next(&mut rx).await;
    let events = delivered["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "one collection call, one batch");
    assert_eq!(
        events[0]["ChangeEventHeader"]["transactionKey"],
        events[1]["ChangeEventHeader"]["transactionKey"]
    );
    // The sandbox counts a delivery once the receiver's answer is in, just after `next` returns.
    let mut counters = Value::Null;
    for _ in 0..50 {
        counters = h.control(Method::GET, "counters", Value::Null).await;
        if counters["webhook_events_sent"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (
            counters["webhook_failures"].as_u64(),
            counters["webhook_events_sent"].as_u64()
        ),
        (Some(1), Some(2))
    );

    h.control(Method::PUT, "faults", json!({"webhooks_paused": true}))
        .await;
    h.create(contact("Three", "three@example.com")).await;
    // Long enough for an unpaused delivery (linger is 20 ms), short of any retry tier.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "nothing is delivered while paused");
    h.control(Method::PUT, "faults", json!({"webhooks_paused": false}))
        .await;
    let delivered = next(&mut rx).await;
    assert_eq!(delivered["events"][0]["LastName"], "Three");
}
