//! One REST call to the org, done right every time: paced, authenticated, tagged with
//! `Sforce-Call-Options`, re-tried once after a fresh login when the session expired, its
//! `Sforce-Limit-Info` read, and its failure classified (by `errors.rs`) and acted on.
//!
//! What it is not: what the calls are for (that is the sync algorithm in `mod.rs`), nor the
//! login itself (`auth.rs`).
//!
//! Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/intro_rest_resources.htm

use std::sync::Mutex;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::auth::{Auth, Session};
use super::errors::{self, DAILY_ALLOWANCE_WAIT};
use super::wire::{self, CALL_OPTIONS_HEADER, LIMIT_INFO_HEADER, QueryPage};
use crate::domain::Crm;
use crate::providers::ProviderError;
use crate::providers::pacing::Pacer;

/// One REST request, kept whole so it can be sent a second time after a fresh login.
pub struct Request {
    pub method: Method,
    /// Path under `/services/data/vXX.X/`, e.g. `composite/sobjects`.
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    /// Serialised JSON body.
    pub body: Option<Vec<u8>>,
}

impl Request {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
        }
    }

    pub fn param(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    pub fn json(mut self, body: &impl Serialize) -> Result<Self, ProviderError> {
        // Only maps with non-string keys fail to serialise; request bodies have none.
        let bytes = serde_json::to_vec(body)
            .map_err(|e| ProviderError::Decode(format!("unserialisable request body: {e}")))?;
        self.body = Some(bytes);
        Ok(self)
    }
}

/// The REST side of the client: HTTP, session, pacing, daily allowance.
pub struct Rest {
    http: reqwest::Client,
    auth: Auth,
    pacer: Pacer,
    /// e.g. `62.0`.
    api_version: String,
    /// Value of `Sforce-Call-Options`, e.g. `client=syncroot`.
    call_options: String,
    /// Until when the daily allowance is known to be spent; calls before then are not made.
    spent_until: Mutex<Option<Instant>>,
}

impl Rest {
    pub fn new(
        http: reqwest::Client,
        auth: Auth,
        pacer: Pacer,
        api_version: &str,
        client: &str,
    ) -> Self {
        Self {
            http,
            auth,
            pacer,
            api_version: api_version.trim_start_matches('v').to_owned(),
            call_options: format!("client={client}"),
            spent_until: Mutex::new(None),
        }
    }

    /// Sends `req` and reads the JSON answer. A 401 leads to one fresh login and one resend;
    /// a second 401 is final.
    pub async fn call<T: DeserializeOwned>(&self, req: &Request) -> Result<T, ProviderError> {
        let (_, body) = self.call_raw(req).await?;
        serde_json::from_slice(&body).map_err(|e| {
            ProviderError::Decode(format!(
                "unreadable answer to {} {}: {e}",
                req.method, req.path
            ))
        })
    }

    /// Like [`Rest::call`], for an answer that is not JSON (Bulk API CSV results): its
    /// headers and body as sent.
    pub async fn call_raw(&self, req: &Request) -> Result<(HeaderMap, Vec<u8>), ProviderError> {
        let session = self.auth.session().await?;
        match self.send(&session, req).await {
            Err(ProviderError::Unauthorized(why)) => {
                tracing::info!(%why, "salesforce session refused; logging in again");
                let fresh = self.auth.refresh(&session).await?;
                self.send(&fresh, req).await
            }
            other => other,
        }
    }

    /// Every record a SOQL query matches, following `nextRecordsUrl` across pages.
    pub async fn query(&self, soql: &str) -> Result<Vec<Map<String, Value>>, ProviderError> {
        let mut page = self.query_page(soql).await?;
        let mut records = std::mem::take(&mut page.records);
        while let (false, Some(next)) = (page.done, page.next_records_url.as_deref()) {
            page = self.query_more(next).await?;
            records.append(&mut page.records);
        }
        Ok(records)
    }

    /// The first page of a SOQL query (`GET query?q=`).
    pub async fn query_page(&self, soql: &str) -> Result<QueryPage, ProviderError> {
        self.call(&Request::new(Method::GET, "query").param("q", soql))
            .await
    }

    /// The page a `nextRecordsUrl` names (`queryMore`).
    pub async fn query_more(&self, next_records_url: &str) -> Result<QueryPage, ProviderError> {
        let prefix = format!("/services/data/v{}/", self.api_version);
        let path = next_records_url.strip_prefix(&prefix).ok_or_else(|| {
            ProviderError::Decode(format!("unexpected nextRecordsUrl {next_records_url}"))
        })?;
        self.call(&Request::new(Method::GET, path)).await
    }

    /// How much longer the daily allowance is known to be spent, if it is.
    pub fn allowance_spent_for(&self) -> Option<Duration> {
        let until = (*lock(&self.spent_until))?;
        Some(until.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
    }

    /// Why requests are paused, if they are.
    pub fn paused(&self) -> Option<String> {
        self.pacer.paused()
    }

    async fn send(
        &self,
        session: &Session,
        req: &Request,
    ) -> Result<(HeaderMap, Vec<u8>), ProviderError> {
        self.pacer.acquire().await;
        let url = format!(
            "{}/services/data/v{}/{}",
            session.instance_url, self.api_version, req.path
        );
        let mut builder = self
            .http
            .request(req.method.clone(), url)
            .bearer_auth(session.token.expose())
            .header(CALL_OPTIONS_HEADER, &self.call_options)
            .query(&req.query);
        if let Some(body) = &req.body {
            builder = builder
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let resp = crate::providers::send(Crm::Salesforce, builder)
            .await
            .map_err(errors::transport)?;
        self.note_usage(resp.headers());
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let headers = resp.headers().clone();
        let body = errors::read_body(resp).await?;
        if status.is_success() {
            return Ok((headers, body));
        }
        let e = errors::classify(status, retry_after, &body);
        match &e {
            ProviderError::QuotaExhausted { .. } => {
                self.spend_allowance("daily API allowance spent (REQUEST_LIMIT_EXCEEDED)".into());
            }
            ProviderError::RateLimited {
                retry_after: Some(wait),
            } => {
                self.pacer
                    .block(*wait, "Salesforce answered 429 Too Many Requests");
            }
            _ => {}
        }
        Err(e)
    }

    /// Reads `Sforce-Limit-Info`, which every REST response carries, and exports it as the
    /// CRM's quota; once usage reaches the allowance, the next call would be refused, so pause
    /// before making it.
    fn note_usage(&self, headers: &HeaderMap) {
        let usage = headers
            .get(LIMIT_INFO_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(wire::parse_limit_info);
        if let Some((used, max)) = usage {
            let crm = crate::domain::Crm::Salesforce.as_str();
            crate::metrics::crm_quota(crm, max.saturating_sub(used), max);
        }
        if let Some((used, max)) = usage
            && max > 0
            && used >= max
        {
            self.spend_allowance(format!("daily API allowance spent ({used}/{max})"));
        }
    }

    /// How long until calls resume, while the daily allowance is spent. Delivery asks this
    /// before sending anything, so a batch is deferred instead of waiting in the pacer.
    pub fn allowance_spent(&self) -> Option<Duration> {
        let mut until = lock(&self.spent_until);
        let left = (*until)?.saturating_duration_since(Instant::now());
        if left.is_zero() {
            *until = None;
            return None;
        }
        Some(left)
    }

    /// Pauses every call for [`DAILY_ALLOWANCE_WAIT`], unless already paused for it.
    fn spend_allowance(&self, reason: String) {
        let now = Instant::now();
        let mut until = lock(&self.spent_until);
        if until.is_some_and(|t| t > now) {
            return;
        }
        *until = Some(now + DAILY_ALLOWANCE_WAIT);
        tracing::warn!(%reason, wait_secs = DAILY_ALLOWANCE_WAIT.as_secs(), "pausing salesforce delivery");
        self.pacer.block(DAILY_ALLOWANCE_WAIT, reason);
    }
}

/// `Retry-After` in seconds; the HTTP-date form is not used by Salesforce.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere mid-assignment of a plain `Option`.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
