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
        let resp = self
            .http
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(errors::transport)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(errors::transport)?;
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
        tracing::info!(generation, instance_url = %token.instance_url, "salesforce session started");
        Ok(Session {
            token: Secret::new(token.access_token),
            instance_url: token.instance_url.trim_end_matches('/').to_owned(),
            generation,
        })
    }
}
