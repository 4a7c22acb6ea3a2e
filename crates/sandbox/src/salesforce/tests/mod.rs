//! Black-box tests: the sandbox is started with [`super::spawn`] on port 0 and driven over HTTP
//! with reqwest, as a client would.

mod auth_flows;
mod bulk_query;
mod duplicate_rule;
mod faults_and_limits;
mod notifications;
mod outbound_messages;
mod records;
mod validation_rules;

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{SalesforceSandboxConfig, SandboxHandle, spawn};
use crate::kit::control::TOKEN_HEADER;

/// A running sandbox and a client for it; cancelling on drop stops the server.
pub struct Harness {
    pub base: String,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub handle: Option<SandboxHandle>,
    pub token: String,
    /// What the control routes require.
    pub control_token: String,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Harness {
    pub async fn start(cfg: SalesforceSandboxConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let control_token = cfg.control_token.expose().to_owned();
        let handle = spawn(cfg, listener, shutdown.clone()).await.unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut h = Self {
            base: handle.base_url(),
            http,
            shutdown,
            handle: Some(handle),
            token: String::new(),
            control_token,
        };
        h.token = h.login().await["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        h
    }

    /// Client-credentials login with the default connected app; returns the token response.
    pub async fn login(&self) -> Value {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", "sandbox-sf-client-id"),
            ("client_secret", "sandbox-sf-client-secret"),
        ];
        let resp = self
            .http
            .post(format!("{}/services/oauth2/token", self.base))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }

    /// A REST call under `/services/data/v62.0/` with the harness token and an optional body.
    pub async fn api(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        self.api_at("62.0", method, path, body).await
    }

    pub async fn api_at(
        &self,
        version: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Response {
        let url = format!("{}/services/data/v{version}/{path}", self.base);
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(&self.token)
            .header("Sforce-Call-Options", "client=syncroot-test");
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    /// A control-API request (`/__sandbox/{path}`) with the control token.
    pub fn control_request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/__sandbox/{path}", self.base))
            .header(TOKEN_HEADER, &self.control_token)
    }

    /// A control-API call; panics unless it answers 2xx.
    pub async fn control(&self, method: Method, path: &str, body: Value) -> Value {
        let resp = self
            .control_request(method, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "control {path}: {}",
            resp.status()
        );
        resp.json().await.unwrap_or(Value::Null)
    }

    pub async fn create(&self, body: Value) -> String {
        let resp = self
            .api(Method::POST, "sobjects/Contact/", Some(body))
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn query(&self, soql: &str) -> (StatusCode, Value) {
        let url = format!("{}/services/data/v62.0/query/", self.base);
        let resp = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .query(&[("q", soql)])
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap())
    }
}

/// Status and JSON body of a response.
pub async fn status_json(resp: Response) -> (StatusCode, Value) {
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The `errorCode` of a top-level error body.
pub fn error_code(body: &Value) -> &str {
    body[0]["errorCode"].as_str().unwrap_or("")
}

pub fn contact(last: &str, email: &str) -> Value {
    json!({"LastName": last, "Email": email})
}
