//! The OAuth 2.0 token endpoint and the sessions it issues.
//!
//! What it is: `POST /services/oauth2/token` for the client-credentials flow (form fields or HTTP
//! Basic client authentication) and the JWT bearer flow (see `jwt.rs`), the token response
//! Salesforce sends, and idle-timeout sessions (each authenticated call extends the session;
//! after `session_idle_timeout_secs` without one the token is dead). What it is not: refresh
//! tokens, interactive flows, scopes or per-user permissions; every token acts as the one
//! integration user.
//!
//! Vendor doc: https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_client_credentials_flow.htm
//! (request and response) and crm-apis.md §2.1.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Serialize;
use sha2::Sha256;

use super::state::{Sandbox, lock};
use super::{jwt, wire};

/// Live access tokens and when each was last used.
#[derive(Debug, Default)]
pub struct Sessions {
    last_used: HashMap<String, Instant>,
}

impl Sessions {
    /// Registers a new token; also forgets tokens that have already idled out.
    pub fn issue(&mut self, token: &str, now: Instant, idle: Duration) {
        self.last_used
            .retain(|_, last| now.saturating_duration_since(*last) <= idle);
        self.last_used.insert(token.to_string(), now);
    }

    /// True and extends the session if `token` is live; false (and forgets it) otherwise.
    pub fn touch(&mut self, token: &str, now: Instant, idle: Duration) -> bool {
        match self.last_used.get_mut(token) {
            Some(last) if now.saturating_duration_since(*last) <= idle => {
                *last = now;
                true
            }
            Some(_) => {
                self.last_used.remove(token);
                false
            }
            None => false,
        }
    }

    pub fn expire_all(&mut self) {
        self.last_used.clear();
    }
}

/// The access token of a REST request: `Authorization: Bearer …` (Salesforce also takes `OAuth …`).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let known = scheme.eq_ignore_ascii_case("Bearer") || scheme.eq_ignore_ascii_case("OAuth");
    known.then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Successful token response. No `expires_in`: lifetime is the idle timeout.
/// Vendor doc: see the module header.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub signature: String,
    pub scope: String,
    pub instance_url: String,
    pub id: String,
    pub token_type: String,
    /// Epoch milliseconds, as a string.
    pub issued_at: String,
    pub token_format: String,
}

/// `Base64(HMAC-SHA256(key = client_secret, data = id + issued_at))`, so a client can check that
/// the identity URL was not altered.
pub fn token_signature(client_secret: &str, id: &str, issued_at: &str) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(client_secret.as_bytes()) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(issued_at.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

/// `{"error", "error_description"}` as the OAuth endpoint answers failures.
pub fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    wire::json(
        status,
        &serde_json::json!({"error": error, "error_description": description}),
    )
}

/// `POST /services/oauth2/token`.
pub async fn token(State(sb): State<Arc<Sandbox>>, headers: HeaderMap, body: Bytes) -> Response {
    lock(&sb.counters).token_requests += 1;
    if lock(&sb.faults).outage {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unknown_error",
            "service unavailable",
        );
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => client_credentials(&sb, &headers, &form),
        Some(jwt::GRANT_TYPE) => {
            match jwt::verify(&sb, form.get("assertion").map(String::as_str)) {
                Ok(()) => issue(&sb),
                Err(e) => oauth_error(StatusCode::BAD_REQUEST, e.error, &e.description),
            }
        }
        Some(_) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant type not supported",
        ),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is required",
        ),
    }
}

fn client_credentials(
    sb: &Sandbox,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Response {
    let (id, secret) = match basic_credentials(headers) {
        Some(pair) => pair,
        None => (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    if !constant_time_eq(&id, &sb.client_id) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "client identifier invalid",
        );
    }
    if !constant_time_eq(&secret, &sb.client_secret) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "invalid client credentials",
        );
    }
    issue(sb)
}

/// Mints a token for the integration user and answers Salesforce's token response.
fn issue(sb: &Sandbox) -> Response {
    let random: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(96)
        .map(char::from)
        .collect();
    let access_token = format!("{}!AQ{random}", &sb.org_id[..15]);
    lock(&sb.sessions).issue(&access_token, Instant::now(), sb.idle_timeout);
    let id = format!("{}/id/{}/{}", sb.base_url, sb.org_id, sb.integration_user);
    let issued_at = chrono::Utc::now().timestamp_millis().to_string();
    let body = TokenResponse {
        signature: token_signature(&sb.client_secret, &id, &issued_at),
        access_token,
        scope: "api".to_string(),
        instance_url: sb.base_url.clone(),
        id,
        token_type: "Bearer".to_string(),
        issued_at,
        token_format: "opaque".to_string(),
    };
    wire::json(StatusCode::OK, &body)
}

/// `Authorization: Basic base64(client_id:client_secret)`, as simple-salesforce sends them.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Basic") {
        return None;
    }
    let decoded = String::from_utf8(B64.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// Compares secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_id_and_issued_at() {
        // Computed independently: printf '%s' 'https://x/id/00D/005''1700000000000' |
        // openssl dgst -sha256 -hmac secret -binary | base64
        let sig = token_signature("secret", "https://x/id/00D/005", "1700000000000");
        assert_eq!(sig, "JzI/7yJRCJAFeoU3MJD0sQxls5Q2R2t2yc9wCp8FkY4=");
        assert_ne!(
            sig,
            token_signature("other", "https://x/id/00D/005", "1700000000000")
        );
    }

    #[test]
    fn sessions_expire_after_idle_time_and_calls_extend_them() {
        let idle = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut s = Sessions::default();
        s.issue("t", t0, idle);
        assert!(s.touch("t", t0 + Duration::from_secs(8), idle));
        assert!(
            s.touch("t", t0 + Duration::from_secs(16), idle),
            "the previous call extended it"
        );
        assert!(!s.touch("t", t0 + Duration::from_secs(27), idle));
        assert!(
            !s.touch("t", t0 + Duration::from_secs(27), idle),
            "an expired token stays dead"
        );
        s.issue("u", t0, idle);
        s.expire_all();
        assert!(!s.touch("u", t0, idle));
    }

    #[test]
    fn bearer_and_basic_headers_parse() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            format!("Basic {}", B64.encode("id:se:cret"))
                .parse()
                .unwrap(),
        );
        assert_eq!(basic_credentials(&h), Some(("id".into(), "se:cret".into())));
        assert_eq!(bearer(&h), None);
    }
}
