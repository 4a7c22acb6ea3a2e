//! The sandboxes' control API (`/__sandbox/...`) as a client, and a free port: what every
//! harness needs to arrange a CRM's state and read it back. Every call carries the sandboxes'
//! control token (`X-Sandbox-Token`).

use anyhow::bail;
use serde_json::Value;
use syncroot_sandbox::kit::control::TOKEN_HEADER;

/// A port free right now on 127.0.0.1 (another process may take it before it is bound).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// An HTTP client for SyncRoot's and the sandboxes' listeners. Both close a kept-alive
/// connection that waits longer than their header-read timeout (10 s by default) for the next
/// request, without a word; a client that reused such a connection as it closed would see the
/// request fail. Dropping pooled connections after 5 s idle means one is never reused that late.
pub fn http_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder().pool_idle_timeout(std::time::Duration::from_secs(5))
}

/// A client of one or both sandboxes' control routes.
#[derive(Clone, Debug)]
pub struct Control {
    pub http: reqwest::Client,
    /// The control token of the sandboxes this client drives.
    token: String,
}

impl Control {
    /// A client sending `token` (what `syncroot-sandbox` printed, or was given in
    /// `SANDBOX_CONTROL_TOKEN`; in process, `RunningSandboxes::control_token`).
    pub fn new(http: reqwest::Client, token: impl Into<String>) -> Self {
        Self {
            http,
            token: token.into(),
        }
    }

    /// A request to `/__sandbox/{path}` on the sandbox at `base`, carrying the token, for a
    /// caller that wants the raw response.
    pub fn request(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{base}/__sandbox/{path}"))
            .header(TOKEN_HEADER, &self.token)
    }

    /// Calls `/__sandbox/{path}` on the sandbox at `base`; errors unless it answers 2xx.
    pub async fn call(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.request(base, method, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await?;
        if !r.status().is_success() {
            bail!("sandbox control {path}: {}", r.status());
        }
        Ok(r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, base: &str, path: &str) -> anyhow::Result<Value> {
        self.call(base, reqwest::Method::GET, path, None).await
    }

    pub async fn put(&self, base: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(base, reqwest::Method::PUT, path, Some(body))
            .await
    }

    pub async fn post(&self, base: &str, path: &str) -> anyhow::Result<Value> {
        self.call(base, reqwest::Method::POST, path, None).await
    }

    /// The live contacts the sandbox holds.
    pub async fn sandbox_contacts(&self, base: &str) -> anyhow::Result<Vec<Value>> {
        let state = self.get(base, "state").await?;
        Ok(state["contacts"].as_array().cloned().unwrap_or_default())
    }

    /// The record versions the sandbox stored after entry `since` (0: all it keeps), each
    /// with the call that wrote it (`GET /__sandbox/writes`).
    pub async fn writes(&self, base: &str, since: u64) -> anyhow::Result<Vec<Value>> {
        let log = self.get(base, &format!("writes?since={since}")).await?;
        Ok(log["writes"].as_array().cloned().unwrap_or_default())
    }

    /// The sandbox's counters (records written, rate limited, errors injected, …).
    pub async fn counters(&self, base: &str) -> anyhow::Result<Value> {
        self.get(base, "counters").await
    }

    /// Empties the sandbox and zeroes its counters.
    pub async fn reset(&self, base: &str) -> anyhow::Result<()> {
        self.post(base, "reset").await?;
        self.post(base, "counters/reset").await?;
        Ok(())
    }
}
