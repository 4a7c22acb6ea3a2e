//! Black-box tests: the real sandbox on port 0, driven over HTTP with reqwest.

mod api;
mod batch_search;
mod seed;
mod webhooks;

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{HubspotSandboxConfig, SandboxHandle, spawn};
use crate::kit::control::TOKEN_HEADER;

pub const TOKEN: &str = "pat-na1-test-token";

pub struct Sandbox {
    pub base: String,
    pub client: reqwest::Client,
    /// What the control routes require.
    pub control_token: String,
    shutdown: CancellationToken,
    handle: Option<SandboxHandle>,
}

impl Sandbox {
    pub async fn start(cfg: HubspotSandboxConfig) -> Self {
        let cfg = HubspotSandboxConfig {
            access_token: TOKEN.into(),
            ..cfg
        };
        let control_token = cfg.control_token.expose().to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let shutdown = CancellationToken::new();
        let handle = spawn(cfg, listener, shutdown.clone())
            .await
            .expect("sandbox starts");
        let base = handle.base_url();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        Self {
            base,
            client,
            control_token,
            shutdown,
            handle: Some(handle),
        }
    }

    pub async fn default() -> Self {
        Self::start(HubspotSandboxConfig::default()).await
    }

    pub fn api(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
    }

    pub fn control(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}/__sandbox{path}", self.base))
            .header(TOKEN_HEADER, &self.control_token)
    }

    pub async fn create(&self, props: Value) -> Response {
        let body = json!({ "properties": props });
        self.api(Method::POST, "/crm/v3/objects/contacts")
            .json(&body)
            .send()
            .await
            .expect("create")
    }

    pub async fn counters(&self) -> Value {
        let res = self
            .control(Method::GET, "/counters")
            .send()
            .await
            .expect("counters");
        res.json().await.expect("counters json")
    }

    /// Cancels the shutdown token and waits for the server and webhook tasks to end.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(10), handle.join())
                .await
                .expect("sandbox stops within 10 s")
                .expect("sandbox stops cleanly");
        }
    }
}

pub async fn json_of(res: Response) -> Value {
    res.json().await.expect("JSON body")
}
