//! The Salesforce session: an OAuth 2.0 client-credentials login, cached and shared by every
//! call until Salesforce says it expired.
//!
//! What it is: one cached access token and instance URL, a login when there is none, and a
//! single-flight refresh — when several calls find the session expired at once, one logs in
//! and the others use its result. What it is not: the retry of the refused call (`rest.rs`
//! does that, once), or any other OAuth flow.
//!
//! Salesforce issues no refresh token and no `expires_in` for this flow: a session lives
//! until it has been idle for the connected app's timeout, so the client learns of expiry
//! from a 401 `INVALID_SESSION_ID` and logs in again (crm-apis.md §2.1).
//!
//! Vendor doc: https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_client_credentials_flow.htm

use std::sync::Arc;

use tokio::sync::Mutex;

use super::errors;
use super::wire::TokenResponse;
use crate::providers::ProviderError;
use crate::secret::Secret;

/// A logged-in session.
#[derive(Debug)]
pub struct Session {
    /// Bearer token; [`Secret`] so it never prints.
    pub token: Secret,
    /// Base of every REST call, as the token response named it, without a trailing `/`.
    pub instance_url: String,
    /// Which login produced this session (1 for the first), so a caller holding an expired
    /// session can tell whether another caller already replaced it.
    generation: u64,
}

/// Logs in and keeps the current session.
pub struct Auth {
    http: reqwest::Client,
    /// `{login_url}/services/oauth2/token`.
    token_url: String,
    client_id: String,
    client_secret: Secret,
    /// Held across the login itself, which is what makes concurrent refreshes single-flight.
    current: Mutex<Option<Arc<Session>>>,
}

impl Auth {
    pub fn new(http: reqwest::Client, login_url: &str, client_id: &str, secret: Secret) -> Self {
        Self {
            http,
            token_url: format!("{}/services/oauth2/token", login_url.trim_end_matches('/')),
            client_id: client_id.to_owned(),
            client_secret: secret,
            current: Mutex::new(None),
        }
    }

    /// The current session, logging in if there is none.
    pub async fn session(&self) -> Result<Arc<Session>, ProviderError> {
        let mut current = self.current.lock().await;
        if let Some(s) = current.as_ref() {
            return Ok(s.clone());
        }
        let fresh = Arc::new(self.login(1).await?);
        *current = Some(fresh.clone());
        Ok(fresh)
    }

    /// A session to replace `expired`: the one another caller already obtained, or a new
    /// login. Never loops: one call, one login at most.
    pub async fn refresh(&self, expired: &Session) -> Result<Arc<Session>, ProviderError> {
        let mut current = self.current.lock().await;
        if let Some(s) = current
            .as_ref()
            .filter(|s| s.generation != expired.generation)
        {
            return Ok(s.clone());
        }
        // The expired session is useless whatever the login's outcome.
        *current = None;
        let fresh = Arc::new(self.login(expired.generation + 1).await?);
        *current = Some(fresh.clone());
        Ok(fresh)
    }

    /// `POST /services/oauth2/token` with `grant_type=client_credentials`. Not paced: the
    /// token endpoint does not count against the org's API allowance.
    async fn login(&self, generation: u64) -> Result<Session, ProviderError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
        ];
        let request = self.http.post(&self.token_url).form(&form);
        let resp = crate::providers::send(crate::domain::Crm::Salesforce, request)
            .await
            .map_err(errors::transport)?;
        let status = resp.status();
        let body = errors::read_body(resp).await?;
        if !status.is_success() {
            let e = errors::classify_login(status, &body);
            tracing::warn!(error = %e, "salesforce login failed");
            return Err(e);
        }
        // Only the error's position is quoted: its text could echo part of the token.
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            ProviderError::Decode(format!(
                "unreadable Salesforce token response ({:?} at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if let Err(why) = check_instance_url(&self.token_url, &token.instance_url) {
            tracing::error!(instance_url = %token.instance_url, "salesforce login refused: {why}");
            return Err(ProviderError::Decode(format!(
                "Salesforce token response names an instance_url SyncRoot will not send the token to: {why}"
            )));
        }
        tracing::info!(generation, instance_url = %token.instance_url, "salesforce session started");
        Ok(Session {
            token: Secret::new(token.access_token),
            instance_url: token.instance_url.trim_end_matches('/').to_owned(),
            generation,
        })
    }
}

/// Salesforce's own domains, where an org's instance lives (My Domain `*.my.salesforce.com`,
/// sandboxes `*.sandbox.my.salesforce.com`, classic instances `*.salesforce.com`, and
/// `*.force.com`).
const SALESFORCE_DOMAINS: &[&str] = &[".salesforce.com", ".force.com"];

/// The token response's `instance_url` receives the access token with every call, so it must be
/// where the login was: `https://` on one of Salesforce's domains (or the login's own host); a
/// loopback address only when the login itself was on loopback (the sandbox).
pub(crate) fn check_instance_url(token_url: &str, instance_url: &str) -> Result<(), String> {
    let login = url::Url::parse(token_url).map_err(|e| format!("login URL: {e}"))?;
    let instance = url::Url::parse(instance_url).map_err(|e| format!("not a URL ({e})"))?;
    let host = instance.host_str().unwrap_or("").to_ascii_lowercase();
    if crate::config::is_loopback_url(instance_url) {
        return if crate::config::is_loopback_url(token_url) {
            Ok(())
        } else {
            Err("a loopback address, while the login was not".into())
        };
    }
    if instance.scheme() != "https" {
        return Err(format!("scheme {} (https required)", instance.scheme()));
    }
    let same_host = login
        .host_str()
        .is_some_and(|h| h.eq_ignore_ascii_case(&host));
    if same_host || SALESFORCE_DOMAINS.iter().any(|d| host.ends_with(d)) {
        Ok(())
    } else {
        Err(format!("host {host} is not a Salesforce domain"))
    }
}

#[cfg(test)]
mod tests {
    use super::check_instance_url;

    const LOGIN: &str = "https://acme.my.salesforce.com/services/oauth2/token";

    #[test]
    fn instance_urls_in_salesforce_domains_are_accepted() {
        for ok in [
            "https://acme.my.salesforce.com",
            "https://acme--dev.sandbox.my.salesforce.com/",
            "https://na1.salesforce.com",
            "https://acme.lightning.force.com",
        ] {
            assert_eq!(check_instance_url(LOGIN, ok), Ok(()), "{ok}");
        }
        let sandbox = "http://127.0.0.1:8092/services/oauth2/token";
        assert_eq!(check_instance_url(sandbox, "http://127.0.0.1:8092"), Ok(()));
    }

    #[test]
    fn other_instance_urls_are_refused() {
        for bad in [
            "http://acme.my.salesforce.com",
            "https://acme.my.salesforce.com.evil.example",
            "https://evilsalesforce.com",
            "https://example.com",
            "http://127.0.0.1:8092",
            "not a url",
        ] {
            assert!(check_instance_url(LOGIN, bad).is_err(), "{bad}");
        }
    }
}
