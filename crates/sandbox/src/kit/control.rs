//! The answers of the control API, the same for both sandboxes:
//!
//! | Route | Answer |
//! |---|---|
//! | `POST reset`, `POST counters/reset` | `204`, no body |
//! | `GET`/`PUT webhook` (`PUT` takes `{"url", "secret"}`, either optional) | `200 {"url", "secret_set"}`; the secret is never shown |
//! | bad control input | `400 {"error": "a; b", "problems": ["a", "b"]}`, every problem listed |

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

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

/// The webhook target as `GET`/`PUT webhook` show it.
pub fn webhook(url: Option<&str>, secret: &str) -> Response {
    Json(json!({"url": url, "secret_set": !secret.is_empty()})).into_response()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use tokio_util::sync::CancellationToken;

    use crate::settings::Settings;

    /// Status and JSON body (null when empty) of one control request.
    async fn send(
        http: &reqwest::Client,
        base: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = http.request(method, format!("{base}/__sandbox/{path}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn both_sandboxes_answer_the_control_api_the_same_way() {
        let mut s = Settings::default();
        s.hubspot_listen = "127.0.0.1:0".parse().unwrap();
        s.salesforce_listen = s.hubspot_listen;
        let stop = CancellationToken::new();
        let running = crate::start(&s, stop.clone()).await.unwrap();
        let http = reqwest::Client::new();
        let mut answers = Vec::new();
        for base in [running.hubspot_url(), running.salesforce_url()] {
            use reqwest::Method;
            let reset = send(&http, &base, Method::POST, "reset", None).await;
            let counters = send(&http, &base, Method::POST, "counters/reset", None).await;
            let bad = json!({"error_rate": 2.0, "error_status": 99});
            let faults = send(&http, &base, Method::PUT, "faults", Some(bad)).await;
            let target = json!({"url": "http://127.0.0.1:9/hook", "secret": "s3cret"});
            let webhook = send(&http, &base, Method::PUT, "webhook", Some(target)).await;
            let shown = send(&http, &base, Method::GET, "webhook", None).await;
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
}
