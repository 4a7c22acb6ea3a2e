//! Outbound Messages, received by a small axum server in the test that answers a fault (or an
//! Ack of `false`) a given number of times before it acknowledges.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Harness, contact};
use crate::salesforce::SalesforceSandboxConfig;

const ACK: &str = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"#;

struct Receiver {
    tx: mpsc::UnboundedSender<String>,
    /// Deliveries still to answer 200 with `<Ack>false</Ack>` before acknowledging.
    refuse: AtomicUsize,
}

async fn receive(State(r): State<Arc<Receiver>>, body: Bytes) -> (StatusCode, String) {
    r.tx.send(String::from_utf8(body.to_vec()).unwrap())
        .unwrap();
    if r.refuse.load(Ordering::SeqCst) > 0 {
        r.refuse.fetch_sub(1, Ordering::SeqCst);
        return (StatusCode::OK, ACK.replace(">true<", ">false<"));
    }
    (StatusCode::OK, ACK.to_string())
}

async fn start_receiver(refuse: usize) -> (String, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(Receiver {
        tx,
        refuse: AtomicUsize::new(refuse),
    });
    let app = axum::Router::new()
        .route("/om", axum::routing::post(receive))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/om", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no outbound message within 5 s")
        .unwrap()
}

#[tokio::test]
async fn outbound_messages_carry_the_org_and_are_redelivered_until_acknowledged() {
    let (url, mut rx) = start_receiver(1).await;
    let h = Harness::start(SalesforceSandboxConfig {
        notify_linger_ms: 20,
        ..Default::default()
    })
    .await;
    let target = h
        .control(
            Method::PUT,
            "outbound-message",
            json!({"url": url, "fields": ["LastModifiedById", "LastModifiedDate", "Email"]}),
        )
        .await;
    assert_eq!(target["org_id"], "00D8d0000000001EAA");
    let refused = h
        .control_request(Method::PUT, "outbound-message")
        .json(&json!({"fields": ["Nope"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["problems"], json!(["Nope is not a Contact field"]));

    let id = h.create(contact("Lovelace", "ada@example.com")).await;
    let first = next(&mut rx).await;
    let again = next(&mut rx).await;
    assert_eq!(first, again, "a redelivery sends the same message");
    assert!(first.contains("<OrganizationId>00D8d0000000001EAA</OrganizationId>"));
    assert!(first.contains(&format!("<sf:Id>{id}</sf:Id>")));
    assert!(first.contains("<sf:Email>ada@example.com</sf:Email>"));
    assert!(first.contains(r#"<sObject xsi:type="sf:Contact""#));
    assert!(!first.contains("LastName"), "only the selected fields");

    let mut counters = Value::Null;
    for _ in 0..50 {
        counters = h.control(Method::GET, "counters", Value::Null).await;
        if counters["outbound_messages_sent"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (
            counters["outbound_message_failures"].as_u64(),
            counters["outbound_notifications_sent"].as_u64()
        ),
        (Some(1), Some(1))
    );

    // A delete sends nothing; a null url stops Outbound Messages.
    h.api(Method::DELETE, &format!("sobjects/Contact/{id}"), None)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "no outbound message for a delete");
    h.control(Method::PUT, "outbound-message", json!({"url": null}))
        .await;
    h.create(contact("Two", "two@example.com")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "none once the url is null");
}
