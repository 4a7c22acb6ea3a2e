//! The answers of the control API, the same for both sandboxes:
//!
//! | Route | Answer |
//! |---|---|
//! | `POST reset`, `POST counters/reset` | `204`, no body |
//! | `GET writes[?since=<seq>]` | `200 {"writes": [entry…]}`, see [`super::writes`] |
//! | `GET`/`PUT webhook` (`PUT` takes `{"url", "secret"}`, either optional) | `200 {"url", "secret_set"}`; the secret is never shown |
//! | bad control input | `400 {"error": "a; b", "problems": ["a", "b"]}`, every problem listed |
//! | no or a wrong `X-Sandbox-Token` | `401 {"error", "problems"}`; the route did not run |
//!
//! Every control route needs the control token ([`require_token`]): these routes dump every
//! contact, point webhooks anywhere and swap the JWT certificate. The vendors' own routes
//! (`/crm/v3/…`, `/services/…`) authenticate as the vendors do and never look at it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::writes;

/// The header every control request carries the control token in.
pub const TOKEN_HEADER: &str = "x-sandbox-token";

/// The secret that opens the control API (`/__sandbox/`): whoever holds it can read every
/// contact, point webhooks anywhere and swap the JWT certificate, so every control route
/// refuses a request without it. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ControlToken(Arc<str>);

impl ControlToken {
    /// Shortest token accepted from configuration: 16 characters.
    pub const MIN_LEN: usize = 16;

    pub fn new(token: impl Into<String>) -> Self {
        Self(Arc::from(token.into()))
    }

    /// A fresh random token: 32 hex characters (128 bits).
    pub fn generate() -> Self {
        let bytes: [u8; 16] = rand::random();
        Self::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    /// The token itself, to print at start or to send.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is the token, compared in constant time.
    fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }
}

impl Default for ControlToken {
    /// A random token: a sandbox nobody configured is still closed.
    fn default() -> Self {
        Self::generate()
    }
}

impl std::fmt::Debug for ControlToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlToken(<redacted>)")
    }
}

/// Middleware of every control route: `401` unless the request carries the token in
/// [`TOKEN_HEADER`]; the route's handler does not run, so nothing changes.
pub async fn require_token(
    State(token): State<ControlToken>,
    req: Request,
    next: Next,
) -> Response {
    let presented = req.headers().get(TOKEN_HEADER).map(HeaderValue::as_bytes);
    if presented.is_some_and(|p| token.matches(p)) {
        let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
        return writes::within_call(&method, &path, next.run(req)).await;
    }
    let message = format!(
        "the sandbox control API needs the control token in the {TOKEN_HEADER} header (printed by syncroot-sandbox at start, or SANDBOX_CONTROL_TOKEN)"
    );
    let body = json!({"error": message, "problems": [message]});
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// `400` listing every problem of a control request; nothing was changed.
pub fn problems(list: Vec<String>) -> Response {
    let body = json!({"error": list.join("; "), "problems": list});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// `400` for a control request with one problem (a body that does not parse, say).
pub fn problem(message: impl std::fmt::Display) -> Response {
    problems(vec![message.to_string()])
}

/// `204`: done, nothing to say.
pub fn done() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `GET writes`: the write log's entries after `since`.
pub fn writes(log: &writes::WriteLog, since: u64) -> Response {
    Json(json!({"writes": log.since(since)})).into_response()
}

/// The webhook target as `GET`/`PUT webhook` show it.
pub fn webhook(url: Option<&str>, secret: &str) -> Response {
    Json(json!({"url": url, "secret_set": !secret.is_empty()})).into_response()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use tokio_util::sync::CancellationToken;

    use crate::settings::Settings;

    /// Status and JSON body (null when empty) of one control request carrying `token`.
    async fn send_with(
        http: &reqwest::Client,
        token: Option<&str>,
        (base, method, path): (&str, reqwest::Method, &str),
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = http.request(method, format!("{base}/__sandbox/{path}"));
        if let Some(t) = token {
            req = req.header(super::TOKEN_HEADER, t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Both sandboxes on port 0, as the binary starts them.
    async fn start() -> (crate::RunningSandboxes, CancellationToken) {
        let mut s = Settings::default();
        s.hubspot_listen = "127.0.0.1:0".parse().unwrap();
        s.salesforce_listen = s.hubspot_listen;
        let stop = CancellationToken::new();
        (crate::start(&s, stop.clone()).await.unwrap(), stop)
    }

    #[tokio::test]
    async fn both_sandboxes_answer_the_control_api_the_same_way() {
        let (running, stop) = start().await;
        let http = reqwest::Client::new();
        let token = running.control_token.expose().to_owned();
        let mut answers = Vec::new();
        for base in [running.hubspot_url(), running.salesforce_url()] {
            use reqwest::Method;
            let send = |method, path, body| {
                send_with(&http, Some(&token), (base.as_str(), method, path), body)
            };
            let reset = send(Method::POST, "reset", None).await;
            let counters = send(Method::POST, "counters/reset", None).await;
            let bad = json!({"error_rate": 2.0, "error_status": 99});
            let faults = send(Method::PUT, "faults", Some(bad)).await;
            let target = json!({"url": "http://127.0.0.1:9/hook", "secret": "s3cret"});
            let webhook = send(Method::PUT, "webhook", Some(target)).await;
            let shown = send(Method::GET, "webhook", None).await;
            answers.push((reset, counters, faults, webhook, shown));
        }
        stop.cancel();
        let (reset, counters, faults, webhook, shown) = &answers[0];
        assert_eq!(*reset, (204, Value::Null));
        assert_eq!(*counters, (204, Value::Null));
        assert_eq!(faults.0, 400);
        assert_eq!(
            faults.1["problems"].as_array().map(Vec::len),
            Some(2),
            "{faults:?}"
        );
        let expected = json!({"url": "http://127.0.0.1:9/hook", "secret_set": true});
        assert_eq!(*webhook, (200, expected.clone()));
        assert_eq!(*shown, (200, expected));
        assert_eq!(
            answers[0], answers[1],
            "HubSpot and Salesforce sandboxes differ"
        );
    }

    #[tokio::test]
    async fn a_control_call_without_or_with_a_wrong_token_is_refused_and_changes_nothing() {
        use reqwest::Method;
        let (running, stop) = start().await;
        let http = reqwest::Client::new();
        let token = running.control_token.expose().to_owned();
        let wrong = format!("{token}x");
        for base in [running.hubspot_url(), running.salesforce_url()] {
            let person = json!({"properties": {"email": "eve@example.com"}, "LastName": "Eve", "Email": "eve@example.com"});
            let writes: [(Method, &str, Option<Value>); 4] = [
                (Method::PUT, "faults", Some(json!({"outage": true}))),
                (
                    Method::PUT,
                    "webhook",
                    Some(json!({"url": "http://127.0.0.1:9/steal"})),
                ),
                (Method::POST, "ui/contacts", Some(person)),
                (Method::GET, "state", None),
            ];
            for (method, path, body) in writes {
                for presented in [None, Some(wrong.as_str()), Some("")] {
                    let call = (base.as_str(), method.clone(), path);
                    let (status, answer) = send_with(&http, presented, call, body.clone()).await;
                    assert_eq!(status, 401, "{base} {method} {path} with {presented:?}");
                    assert!(
                        answer["error"].as_str().is_some_and(
                            |e| e.contains("X-Sandbox-Token") || e.contains("x-sandbox-token")
                        ),
                        "{answer}"
                    );
                }
            }
            // Nothing changed: no outage, no webhook target, no contact.
            let ok =
                |method, path| send_with(&http, Some(&token), (base.as_str(), method, path), None);
            let (status, faults) = ok(Method::GET, "faults").await;
            assert_eq!(
                (status, &faults["outage"]),
                (200, &json!(false)),
                "{faults}"
            );
            assert_eq!(ok(Method::GET, "webhook").await.1["url"], Value::Null);
            let (_, state) = ok(Method::GET, "state").await;
            assert_eq!(state["contacts"], json!([]), "{base}: {state}");
        }
        stop.cancel();
    }
}
