//! The HTTP side of `syncroot dlq` and `syncroot drift`: one admin API at one base URL with one key, and problem
//! documents turned into readable errors.

use anyhow::{Context as _, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::config::Config;

/// The admin API at one base URL, with one key.
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    pub fn new(cfg: &Config, url: Option<String>, key: Option<String>) -> anyhow::Result<Self> {
        let base = url.unwrap_or_else(|| {
            // A server listening on every address is reached on this machine's loopback.
            let mut addr = cfg.api.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        });
        let key = match key {
            Some(k) => k,
            None => match cfg.api.admin_keys.first() {
                Some(k) => k.expose().to_owned(),
                None => {
                    bail!("no admin key: pass --key, or configure admin_keys (SYNCROOT_ADMIN_KEYS)")
                }
            },
        };
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
        })
    }

    /// Calls the API; returns the JSON body (null for 204), or the problem as an error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        self.send(method, path, query, None).await
    }

    /// Like [`Client::call`], with a JSON request body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .query(query)
            .bearer_auth(&self.key);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach SyncRoot at {}", self.base))?;
        let status = resp.status();
        let body = resp.bytes().await.context("reading the answer")?;
        if status.is_success() {
            if status == StatusCode::NO_CONTENT || body.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&body)
                .with_context(|| format!("{method} {path}: the answer is not JSON"));
        }
        bail!("{method} {path}: {}", problem(status, &body))
    }
}

/// A problem document as one readable message: status, title, detail, each offending parameter.
fn problem(status: StatusCode, body: &[u8]) -> String {
    let Ok(p) = serde_json::from_slice::<Value>(body) else {
        return format!("HTTP {status}: {}", String::from_utf8_lossy(body).trim());
    };
    let mut out = format!(
        "{} {}: {}",
        status.as_u16(),
        p["title"]
            .as_str()
            .unwrap_or(status.canonical_reason().unwrap_or("error")),
        p["detail"].as_str().unwrap_or("")
    );
    for e in p["errors"].as_array().into_iter().flatten() {
        let what = e["parameter"]
            .as_str()
            .or(e["pointer"].as_str())
            .unwrap_or("?");
        out.push_str(&format!(
            "\n  {what}: {}",
            e["message"].as_str().unwrap_or("")
        ));
    }
    out
}
