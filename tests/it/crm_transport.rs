//! How SyncRoot reaches the CRMs: never over http:// to a host that is not loopback, and never
//! following a redirect (a redirect would carry the token or client secret elsewhere).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use syncroot::providers::CrmClient;
use syncroot::providers::hubspot::{HubspotClient, HubspotSettings};
use syncroot::providers::mapping::FieldMap;
use syncroot::providers::salesforce::{SalesforceClient, SalesforceSettings};
use syncroot::secret::Secret;

/// Serves `app` on a loopback port; returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A server counting every request it gets, and one answering every request with a 302 to it.
async fn redirector() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let target = serve(Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async { "{}" }
    }))
    .await;
    let redirecting = serve(Router::new().fallback(move || {
        let to = format!("{target}/elsewhere");
        async move { (StatusCode::FOUND, [(header::LOCATION, to)]).into_response() }
    }))
    .await;
    (redirecting, hits)
}

#[tokio::test]
async fn a_redirecting_hubspot_is_not_followed() {
    let (base, hits) = redirector().await;
    let client = HubspotClient::new(HubspotSettings {
        base_url: base,
        token: Secret::new("pat-na1-test"),
        id_property: "email".into(),
        fields: FieldMap::defaults(&syncroot::providers::hubspot::default_fields()),
        rate_limit: 100,
        batching: true,
        timeout: Duration::from_secs(5),
    });
    let res = client.changed_since(chrono::Utc::now(), 10).await;
    assert!(res.is_err(), "a 302 is not a HubSpot answer: {res:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect was followed");
}

#[tokio::test]
async fn a_redirecting_salesforce_login_is_not_followed() {
    let (base, hits) = redirector().await;
    let client = SalesforceClient::new(SalesforceSettings {
        login_url: base,
        client_id: "id".into(),
        client_secret: Secret::new("secret"),
        api_version: "62.0".into(),
        external_id_field: "SyncRoot_Id__c".into(),
        fields: FieldMap::defaults(&syncroot::providers::salesforce::default_fields()),
        last_name_placeholder: "[not provided]".into(),
        match_by_email: true,
        client_name: "syncroot".into(),
        rate_limit_per_second: 0,
        batching: true,
        timeout: Duration::from_secs(5),
        reads: Default::default(),
    });
    let res = client.changed_since(chrono::Utc::now(), 10).await;
    assert!(res.is_err(), "a 302 is not a token response: {res:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect was followed");
}

#[test]
fn an_http_crm_url_for_a_host_that_is_not_loopback_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncroot"))
        .arg("delivery")
        .env_clear()
        .env("SYNCROOT_HUBSPOT_BASE_URL", "http://api.hubapi.com")
        .env(
            "SYNCROOT_SALESFORCE_LOGIN_URL",
            "http://acme.my.salesforce.com",
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    for key in ["SYNCROOT_HUBSPOT_BASE_URL", "SYNCROOT_SALESFORCE_LOGIN_URL"] {
        assert!(
            text.contains(&format!("{key}: 'http://")) && text.contains("https:// is required"),
            "{key}: {text}"
        );
    }
}

#[test]
fn the_local_testing_opt_out_lets_http_reach_sandboxes_on_another_host() {
    // The Compose set-up: the sandboxes are `http://sandbox:…` on the Compose network. The role
    // still refuses other things here (no keys), but not the URLs.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncroot"))
        .arg("delivery")
        .env_clear()
        .env("SYNCROOT_HUBSPOT_BASE_URL", "http://sandbox:8091")
        .env("SYNCROOT_SALESFORCE_LOGIN_URL", "http://sandbox:8092")
        .env("SYNCROOT_ALLOW_INSECURE_CRMS", "true")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("SYNCROOT_"), "some refusal is named: {text}");
    assert!(!text.contains("https:// is required"), "{text}");
}
