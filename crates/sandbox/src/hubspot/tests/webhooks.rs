use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Sandbox, json_of};
use crate::hubspot::HubspotSandboxConfig;
use crate::hubspot::signature::{decode_uri_for_v3, sign_v1, sign_v3};

const SECRET: &str = "test-client-secret";

struct Received {
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct Receiver {
    tx: mpsc::UnboundedSender<Received>,
    /// Statuses to answer, in order; 200 once exhausted.
    script: Arc<Mutex<VecDeque<u16>>>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let _ = r.tx.send(Received { headers, body });
    let next = r
        .script
        .lock()
        .expect("script lock")
        .pop_front()
        .unwrap_or(200);
    StatusCode::from_u16(next).expect("status")
}

/// Starts a receiver; returns its full URL (with an encoded query, to exercise the v3
/// decoding rule) and the stream of requests it got.
async fn receiver(script: &[u16]) -> (String, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Receiver {
        tx,
        script: Arc::new(Mutex::new(script.iter().copied().collect())),
    };
    let app = axum::Router::new()
        .route("/hooks/hubspot", post(hook))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver") });
    (
        format!("http://{addr}/hooks/hubspot?tenant=a%40b&x=%20"),
        rx,
    )
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("webhook in time")
        .expect("webhook")
}

fn config(url: &str) -> HubspotSandboxConfig {
    HubspotSandboxConfig {
        webhook_url: Some(url.to_owned()),
        client_secret: SECRET.into(),
        webhook_linger_ms: 20,
        webhook_retry_base_ms: 50,
        ..HubspotSandboxConfig::default()
    }
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn ui_edit_is_delivered_signed_v1_and_v3_over_the_decoded_url() {
    let (url, mut rx) = receiver(&[]).await;
    let sb = Sandbox::start(config(&url)).await;
    let created = sb
        .control(Method::POST, "/ui/contacts")
        .json(&json!({"properties": {"email": "ui@x.io"}}));
    let id = json_of(created.send().await.expect("ui create")).await["id"].clone();
    let got = next(&mut rx).await;
    let timestamp = header(&got, "x-hubspot-request-timestamp");
    let expected_v3 = sign_v3(
        SECRET,
        "POST",
        &decode_uri_for_v3(&url),
        &got.body,
        timestamp,
    );
    assert!(url.contains("%40") && decode_uri_for_v3(&url).contains("a@b&x=%20"));
    assert_eq!(header(&got, "x-hubspot-signature-v3"), expected_v3);
    assert_eq!(
        header(&got, "x-hubspot-signature"),
        sign_v1(SECRET, &got.body)
    );
    assert_eq!(header(&got, "x-hubspot-signature-version"), "v1");
    assert_eq!(header(&got, "content-type"), "application/json");
    let events: Vec<Value> = serde_json::from_slice(&got.body).expect("JSON array");
    assert_eq!(events[0]["subscriptionType"], "contact.creation");
    assert_eq!(events[0]["changeFlag"], "NEW");
    assert_eq!(
        events[0]["objectId"].to_string(),
        id.as_str().unwrap_or_default()
    );
    assert_eq!(
        (
            events[1]["changeSource"].clone(),
            events[1]["sourceId"].clone()
        ),
        (json!("CRM_UI"), json!("userId:777"))
    );
    assert_eq!(events[1]["propertyName"], "email");
    sb.stop().await;
}

#[tokio::test]
async fn failed_delivery_is_retried_with_incremented_attempt_number() {
    let (url, mut rx) = receiver(&[500]).await;
    let sb = Sandbox::start(config(&url)).await;
    let _ = sb.create(json!({"firstname": "Retry"})).await;
    let first: Vec<Value> = serde_json::from_slice(&next(&mut rx).await.body).expect("JSON");
    let second: Vec<Value> = serde_json::from_slice(&next(&mut rx).await.body).expect("JSON");
    assert_eq!(
        (
            first[0]["attemptNumber"].clone(),
            second[0]["attemptNumber"].clone()
        ),
        (json!(0), json!(1))
    );
    assert_eq!(second[0]["eventId"], first[0]["eventId"]);
    assert_eq!(second[0]["changeSource"], "INTEGRATION");
    assert_eq!(second[0]["sourceId"], "1160452");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let counters = sb.counters().await;
    assert_eq!(
        (
            counters["webhook_failures"].clone(),
            counters["webhooks_sent"].clone()
        ),
        (json!(1), json!(1))
    );
    sb.stop().await;
}

#[tokio::test]
async fn paused_webhooks_queue_up_and_flush_in_one_batch_when_resumed() {
    let (url, mut rx) = receiver(&[]).await;
    let sb = Sandbox::start(config(&url)).await;
    let _ = sb
        .control(Method::PUT, "/faults")
        .json(&json!({"webhooks_paused": true}))
        .send()
        .await;
    for i in 0..3 {
        let _ = sb.create(json!({"firstname": format!("p{i}")})).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(rx.try_recv().is_err(), "nothing delivered while paused");
    let _ = sb
        .control(Method::PUT, "/faults")
        .json(&json!({"webhooks_paused": false}))
        .send()
        .await;
    let events: Vec<Value> = serde_json::from_slice(&next(&mut rx).await.body).expect("JSON");
    assert_eq!(events.len(), 6, "3 creations + 3 firstname changes");
    sb.stop().await;
}
