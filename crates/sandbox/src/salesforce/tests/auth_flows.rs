//! The token endpoint (client credentials, JWT bearer) and session expiry.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Harness, error_code, status_json};
use crate::salesforce::SalesforceSandboxConfig;
use crate::salesforce::auth::token_signature;
use crate::salesforce::jwt::GRANT_TYPE;

#[tokio::test]
async fn token_response_has_salesforce_shape_and_a_verifiable_signature() {
    let h = Harness::start(SalesforceSandboxConfig::default()).await;
    let t = h.login().await;
    assert_eq!(t["instance_url"], json!(h.base));
    assert_eq!(
        (t["token_type"].as_str(), t["token_format"].as_str()),
        (Some("Bearer"), Some("opaque"))
    );
    assert!(t.get("expires_in").is_none());
    let (id, issued_at) = (t["id"].as_str().unwrap(), t["issued_at"].as_str().unwrap());
    assert!(
        issued_at.parse::<i64>().unwrap() > 1_600_000_000_000,
        "issued_at is epoch milliseconds"
    );
    assert_eq!(
        t["signature"],
        json!(token_signature("sandbox-sf-client-secret", id, issued_at))
    );

    let basic = h
        .http
        .post(format!("{}/services/oauth2/token", h.base))
        .basic_auth("sandbox-sf-client-id", Some("sandbox-sf-client-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::OK);

    let bad = h
        .http
        .post(format!("{}/services/oauth2/token", h.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "sandbox-sf-client-id"),
            ("client_secret", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(bad).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_client"))
    );
    let counters = h.control(Method::GET, "counters", Value::Null).await;
    assert_eq!(
        counters["token_requests"], 4,
        "the harness login, two logins here, one refusal"
    );
}

#[tokio::test]
async fn expired_sessions_get_invalid_session_id() {
    let h = Harness::start(SalesforceSandboxConfig::default()).await;
    assert_eq!(
        h.api(Method::GET, "limits", None).await.status(),
        StatusCode::OK
    );
    h.control(Method::POST, "expire-sessions", json!({})).await;
    let (status, body) = status_json(h.api(Method::GET, "limits", None).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );

    // With a zero idle timeout a token is already idle by its first use.
    let idle = Harness::start(SalesforceSandboxConfig {
        session_idle_timeout_secs: 0,
        ..Default::default()
    })
    .await;
    let (status, body) = status_json(idle.api(Method::GET, "limits", None).await).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "INVALID_SESSION_ID")
    );
}

/// An RS256 assertion signed with the test key whose certificate is in `fixtures/`.
fn assertion(claims: &Value) -> String {
    let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{head}.{body}");
    let key =
        ring::signature::RsaKeyPair::from_pkcs8(include_bytes!("fixtures/jwt_key.pk8")).unwrap();
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
}

#[tokio::test]
async fn jwt_bearer_checks_signature_and_claims() {
    let cfg = SalesforceSandboxConfig {
        jwt_certificate_pem: Some(include_str!("fixtures/jwt_cert.pem").into()),
        ..Default::default()
    };
    let h = Harness::start(cfg).await;
    let exp = chrono::Utc::now().timestamp() + 170;
    let post = |assertion: String| {
        h.http
            .post(format!("{}/services/oauth2/token", h.base))
            .form(&[
                ("grant_type", GRANT_TYPE),
                ("assertion", assertion.as_str()),
            ])
            .send()
    };
    let good = json!({"iss": "sandbox-sf-client-id", "sub": "sync@example.com", "aud": "https://login.salesforce.com", "exp": exp});
    let (status, token) = status_json(post(assertion(&good)).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert!(token["access_token"].as_str().is_some());

    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("https://example.com");
    let (status, body) = status_json(post(assertion(&wrong_aud)).await.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    let tampered = assertion(&good).replacen(
        '.',
        &format!(".{}", STANDARD.encode("x").trim_end_matches('=')),
        1,
    );
    let (_, body) = status_json(post(tampered).await.unwrap()).await;
    assert_eq!(body["error"], "invalid_grant");

    let plain = Harness::start(SalesforceSandboxConfig::default()).await;
    let resp = plain
        .http
        .post(format!("{}/services/oauth2/token", plain.base))
        .form(&[("grant_type", GRANT_TYPE), ("assertion", "a.b.c")])
        .send()
        .await
        .unwrap();
    assert_eq!(status_json(resp).await.1["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn shutdown_stops_the_server_and_the_notifier() {
    let mut h = Harness::start(SalesforceSandboxConfig::default()).await;
    h.shutdown.cancel();
    let handle = h.handle.take().unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), handle.join())
        .await
        .unwrap();
    assert!(
        h.http
            .get(format!("{}/services/data/", h.base))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn router_serves_the_same_api_in_process() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let app = crate::salesforce::router(
        &SalesforceSandboxConfig::default(),
        base.clone(),
        shutdown.clone(),
    )
    .unwrap();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "sandbox-sf-client-id"),
        ("client_secret", "sandbox-sf-client-secret"),
    ];
    let (status, token) = status_json(
        http.post(format!("{base}/services/oauth2/token"))
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, token["instance_url"].as_str()),
        (StatusCode::OK, Some(base.as_str()))
    );
    shutdown.cancel();
    server.await.unwrap().unwrap();
}

#[test]
fn config_debug_never_prints_secrets() {
    let cfg = SalesforceSandboxConfig {
        client_secret: "s3cret-client".into(),
        notify_secret: "s3cret-notify".into(),
        ..Default::default()
    };
    let printed = format!("{cfg:?}");
    assert!(!printed.contains("s3cret"), "{printed}");
    assert!(printed.contains("sandbox-sf-client-id"));
}
