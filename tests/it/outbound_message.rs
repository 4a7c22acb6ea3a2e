//! Salesforce Outbound Messages, black-box: the Salesforce sandbox sends SOAP `notifications`
//! to SyncRoot's receiver at its secret path; edits reach the contact and HubSpot, SyncRoot's
//! own writes coming back cost nothing, a redelivered notification is acknowledged and
//! ignored, and a message from another org or at a wrong path is refused and queues nothing.

use reqwest::Method;
use serde_json::{Value, json};
use syncroot_testkit::{Options, TestApp, eventually, remote_id};

/// The Salesforce sandbox's fixed Organization Id, and the users it writes as.
const SANDBOX_ORG: &str = "00D8d0000000001EAA";
const INTEGRATION_USER: &str = "0058d0000000001AAA";
const UI_USER: &str = "0058d0000000002AAA";
const TOKEN: &str = "it-outbound-token-0123456789";

/// Two-way sync with Outbound Messages instead of the Salesforce sandbox's signed webhook.
async fn outbound_app() -> TestApp {
    let env = [
        ("SYNCROOT_SALESFORCE_ORG_ID", SANDBOX_ORG),
        ("SYNCROOT_SALESFORCE_OUTBOUND_TOKEN", TOKEN),
        ("SYNCROOT_SALESFORCE_INTEGRATION_USER_ID", INTEGRATION_USER),
        // Only notifications bring changes in: no poller catching up behind them.
        ("SYNCROOT_POLL_INTERVAL_SECS", "0"),
    ];
    let app = TestApp::spawn_with(Options {
        delivery: true,
        two_way: true,
        extra_env: env.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec(),
        ..Options::default()
    })
    .await;
    app.control(
        app.salesforce(),
        Method::PUT,
        "webhook",
        Some(json!({"url": null})),
    )
    .await;
    app
}

/// Turns the sandbox's Outbound Messages on (`true`) or off.
async fn send_outbound_messages(app: &TestApp, on: bool) {
    let url = on.then(|| app.url(&format!("/webhooks/salesforce/outbound/{TOKEN}")));
    app.control(
        app.salesforce(),
        Method::PUT,
        "outbound-message",
        Some(json!({"url": url})),
    )
    .await;
}

/// Event keys SyncRoot has handled from Outbound Messages.
async fn outbound_keys(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT event_key FROM inbound_events WHERE provider = 'salesforce' AND event_key LIKE 'om:%' ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// A one-notification message, as Salesforce would send it.
fn message(org: &str, notification_id: &str, record_id: &str) -> String {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org}</OrganizationId><ActionId>04k8d0000000009AAA</ActionId>
   <SessionId xsi:nil="true"/><EnterpriseUrl>https://x/c</EnterpriseUrl><PartnerUrl>https://x/u</PartnerUrl>
   <Notification><Id>{notification_id}</Id>
    <sObject xsi:type="sf:Contact" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>{record_id}</sf:Id><sf:LastModifiedById>{UI_USER}</sf:LastModifiedById>
     <sf:LastModifiedDate>{now}</sf:LastModifiedDate>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"#
    )
}

async fn post(app: &TestApp, path: &str, body: &str) -> (u16, String, String) {
    let r = app
        .http
        .post(app.url(path))
        .header("content-type", "text/xml; charset=utf-8")
        .header("SOAPAction", "\"\"")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let kind = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, kind, r.text().await.unwrap())
}

/// A UI edit in Salesforce (no Outbound Message is sent while they are off).
async fn ui_edit(app: &TestApp, salesforce_id: &str, fields: Value) {
    app.control(
        app.salesforce(),
        Method::PATCH,
        &format!("ui/contacts/{salesforce_id}"),
        Some(fields),
    )
    .await;
}

#[tokio::test]
async fn a_contact_edited_in_salesforce_reaches_syncroot_and_hubspot_through_outbound_messages() {
    let app = outbound_app().await;
    send_outbound_messages(&app, true).await;
    let id = app
        .create(json!({"email": "om-edit@example.com", "last_name": "Lovelace"}))
        .await;
    let c = app.wait_synced(&id, 1).await;
    // SyncRoot's own create comes back as an Outbound Message: handled, no new version.
    eventually("the echo of SyncRoot's create handled", || async {
        (outbound_keys(&app).await.len() == 1).then_some(())
    })
    .await;
    let (salesforce_id, hubspot_id) = (remote_id(&c, "salesforce"), remote_id(&c, "hubspot"));

    ui_edit(&app, &salesforce_id, json!({"Phone": "+44 20 7946 0001"})).await;

    let c = app.wait_synced(&id, 2).await;
    assert_eq!(c["phone"], "+44 20 7946 0001");
    let hs = app.sandbox_record(app.hubspot(), &hubspot_id).await;
    assert_eq!(hs["properties"]["phone"], "+44 20 7946 0001", "{hs}");
    // Version 2 is not written back to Salesforce, its source: no further notification.
    eventually("the edit's notification handled", || async {
        (outbound_keys(&app).await.len() == 2).then_some(())
    })
    .await;
    assert_eq!(
        app.records_written(app.salesforce()).await,
        1,
        "written back to its source"
    );
    assert_eq!(app.records_written(app.hubspot()).await, 2);
    let c: Value = app.get_contact(&id).await.json().await.unwrap();
    assert_eq!(c["version"], 2, "an echo made a new version: {c}");
    let om = app
        .control(app.salesforce(), Method::GET, "counters", None)
        .await;
    assert_eq!(om["outbound_messages_sent"], 2, "{om}");
    assert_eq!(om["outbound_message_failures"], 0, "{om}");
}

#[tokio::test]
async fn a_redelivered_outbound_message_is_acknowledged_and_ignored() {
    let app = outbound_app().await;
    let a = app
        .create(json!({"email": "om-a@example.com", "last_name": "A"}))
        .await;
    let b = app
        .create(json!({"email": "om-b@example.com", "last_name": "B"}))
        .await;
    let (ca, cb) = (app.wait_synced(&a, 1).await, app.wait_synced(&b, 1).await);
    let (sf_a, sf_b) = (remote_id(&ca, "salesforce"), remote_id(&cb, "salesforce"));
    let path = format!("/webhooks/salesforce/outbound/{TOKEN}");

    ui_edit(&app, &sf_a, json!({"Title": "First"})).await;
    let first = message(SANDBOX_ORG, "04l8d00000000A1AAA", &sf_a);
    let (status, kind, body) = post(&app, &path, &first).await;
    assert_eq!((status, kind.as_str()), (200, "text/xml; charset=utf-8"));
    assert!(body.contains("<Ack>true</Ack>"), "{body}");
    assert_eq!(app.wait_synced(&a, 2).await["job_title"], "First");

    // The record changes again, but the redelivered notification is the old one: acknowledged
    // and ignored (handling it again would read the record and make version 3).
    ui_edit(&app, &sf_a, json!({"Title": "Second"})).await;
    let (status, _, body) = post(&app, &path, &first).await;
    assert_eq!(status, 200);
    assert!(body.contains("<Ack>true</Ack>"), "{body}");
    // A later notification about B, through the same queue and worker, marks that the
    // redelivery has been handled.
    ui_edit(&app, &sf_b, json!({"Title": "B2"})).await;
    let (status, _, _) = post(
        &app,
        &path,
        &message(SANDBOX_ORG, "04l8d00000000B1AAA", &sf_b),
    )
    .await;
    assert_eq!(status, 200);
    app.wait_synced(&b, 2).await;
    let c: Value = app.get_contact(&a).await.json().await.unwrap();
    assert_eq!(
        (c["version"].clone(), c["job_title"].clone()),
        (json!(2), json!("First"))
    );
    assert_eq!(
        outbound_keys(&app).await,
        vec!["om:04l8d00000000A1AAA", "om:04l8d00000000B1AAA"]
    );
}

#[tokio::test]
async fn outbound_messages_from_another_org_or_at_a_wrong_path_are_refused_and_queue_nothing() {
    let app = outbound_app().await;
    let c = app
        .create(json!({"email": "om-refused@example.com", "last_name": "R"}))
        .await;
    let sf = remote_id(&app.wait_synced(&c, 1).await, "salesforce");
    ui_edit(&app, &sf, json!({"Title": "Refused"})).await;
    let good_path = format!("/webhooks/salesforce/outbound/{TOKEN}");
    let unknown = post(&app, "/webhooks/nowhere", "x").await;
    assert_eq!(unknown.0, 404);

    // A wrong or missing token: exactly what an unknown path gets.
    let msg = message(SANDBOX_ORG, "04l8d00000000C1AAA", &sf);
    for path in [
        "/webhooks/salesforce/outbound".to_owned(),
        format!("{good_path}x"),
        "/webhooks/salesforce/outbound/it-outbound-token-012345678".to_owned(),
    ] {
        let r = post(&app, &path, &msg).await;
        assert_eq!(
            (r.0, &r.1, &r.2),
            (unknown.0, &unknown.1, &unknown.2),
            "{path}"
        );
    }
    // Another org (18- and 15-character forms), malformed XML, a DOCTYPE: SOAP faults.
    let other = message("00D8d0000000002AAA", "04l8d00000000C2AAA", &sf);
    let (status, kind, body) = post(&app, &good_path, &other).await;
    assert_eq!((status, kind.as_str()), (401, "text/xml; charset=utf-8"));
    assert!(
        body.contains("<faultcode>soapenv:Client</faultcode>"),
        "{body}"
    );
    assert!(
        body.contains("OrganizationId 00D8d0000000002AAA is not"),
        "{body}"
    );
    let (status, _, body) = post(&app, &good_path, "<notifications>").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("<faultstring>not a Salesforce outbound message"),
        "{body}"
    );
    let xxe = msg.replace(
        r#"<?xml version="1.0" encoding="UTF-8"?>"#,
        r#"<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>"#,
    );
    let (status, _, body) = post(&app, &good_path, &xxe).await;
    assert_eq!(status, 400);
    assert!(body.contains("DOCTYPE"), "{body}");

    // The same org in its 15-character form is accepted; once it is handled, nothing refused
    // before it was queued.
    let ok = message(&SANDBOX_ORG[..15], "04l8d00000000C3AAA", &sf);
    assert_eq!(post(&app, &good_path, &ok).await.0, 200);
    assert_eq!(app.wait_synced(&c, 2).await["job_title"], "Refused");
    assert_eq!(outbound_keys(&app).await, vec!["om:04l8d00000000C3AAA"]);
}

#[tokio::test]
async fn with_the_broker_down_an_outbound_message_gets_a_503_fault_so_salesforce_redelivers() {
    let proxy = syncroot_testkit::proxy::Proxy::start("127.0.0.1:5672").await;
    let env = [
        ("SYNCROOT_CRMS", "salesforce"),
        ("SYNCROOT_SALESFORCE_ORG_ID", SANDBOX_ORG),
    ];
    let app = TestApp::spawn_with(Options {
        amqp_url: Some(format!("amqp://guest:guest@{}/%2f", proxy.addr)),
        extra_env: env.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec(),
        ..Options::default()
    })
    .await;
    app.wait_ready().await;
    let path = "/webhooks/salesforce/outbound";
    let msg = message(SANDBOX_ORG, "04l8d00000000D1AAA", "0038d0000000001AAA");
    assert_eq!(post(&app, path, &msg).await.0, 200);

    proxy.take_down();
    let (kind, body) = eventually("outbound messages to be refused", || async {
        let (status, kind, body) = post(&app, path, &msg).await;
        (status == 503).then_some((kind, body))
    })
    .await;
    assert_eq!(kind, "text/xml; charset=utf-8");
    assert!(
        body.contains("<faultcode>soapenv:Server</faultcode>"),
        "{body}"
    );
    proxy.bring_up();
}
