//! Logs and traces of the real roles, run as processes (`api`, `forwarder`, `delivery`) against
//! the CRM sandboxes: JSON log lines carry the request id and the contact, CRM and attempt and
//! never a contact's data or a secret; one trace follows a change from the API request through
//! the queue to each CRM call, as an OTLP/HTTP receiver here decodes it (with the protocol's
//! own protobuf types, not SyncRoot's code).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use serde_json::{Value, json};
use syncroot_testkit::roles::Roles;
use syncroot_testkit::{KEY, sandbox_settings};
use tokio_util::sync::CancellationToken;

/// The three roles a change passes through, each its own process with its own log file.
const ROLES: [&str; 3] = ["api", "forwarder", "delivery"];

/// Starts the roles with `env` added, and short retry tiers so a retried delivery goes through
/// quickly.
async fn start(env: &[(&str, String)]) -> Roles {
    let mut env = env.to_vec();
    env.push((
        "SYNCROOT_DELIVERY_RETRY_TIERS",
        "50ms,100ms,200ms".to_owned(),
    ));
    Roles::start(env!("CARGO_BIN_EXE_syncroot"), &ROLES, &env).await
}

/// Creates `contact` with the given request id; returns the response.
async fn create(roles: &Roles, contact: &Value, request_id: &str) -> reqwest::Response {
    roles
        .http
        .post(roles.url("/contacts"))
        .bearer_auth(KEY)
        .header("x-request-id", request_id)
        .json(contact)
        .send()
        .await
        .expect("the API answers")
}

/// Turns the HubSpot sandbox's outage on or off.
async fn hubspot_outage(roles: &Roles, on: bool) {
    roles
        .control
        .call(
            &roles.hubspot,
            reqwest::Method::PUT,
            "faults",
            Some(&json!({ "outage": on })),
        )
        .await
        .expect("the sandbox takes the fault");
}

/// Waits until both CRMs hold the contact.
async fn wait_synced(roles: &Roles, id: &str) {
    for crm in ["hubspot", "salesforce"] {
        roles.wait_state(id, crm, "synced").await;
    }
}

/// A contact whose every value is unique to this run, so finding one in a log means it leaked.
fn contact() -> Value {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..10];
    json!({
        "email": format!("obs.{tag}@example.com"),
        "first_name": format!("Firstname{tag}"),
        "last_name": format!("Lastname{tag}"),
        "phone": format!("+1555{}", &tag.bytes().map(|b| (b % 10).to_string()).collect::<String>()[..7]),
    })
}

/// Whether `line` (a JSON log line) happened inside a span whose `field` is `value`.
fn in_span(line: &Value, field: &str, value: &Value) -> bool {
    line["spans"]
        .as_array()
        .is_some_and(|spans| spans.iter().any(|s| s.get(field) == Some(value)))
}

#[tokio::test]
async fn json_logs_carry_request_id_contact_crm_and_attempt_and_no_contact_data_or_secret() {
    let mut roles = start(&[
        ("SYNCROOT_LOG", "info,syncroot=debug".into()),
        ("SYNCROOT_LOG_FORMAT", "json".into()),
    ])
    .await;
    let person = contact();
    let request_id = format!("obs-{}", uuid::Uuid::new_v4().simple());
    let r = create(&roles, &person, &request_id).await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["x-request-id"], request_id.as_str());
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // An implausible id (it could be anything, an e-mail address too) is replaced.
    let email = person["email"].as_str().unwrap();
    let r = roles
        .http
        .get(roles.url(&format!("/contacts/{id}")))
        .bearer_auth(KEY)
        .header("x-request-id", email)
        .send()
        .await
        .unwrap();
    let fresh = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&fresh).is_ok(), "{fresh}");
    wait_synced(&roles, &id).await;
    roles.stop().await;

    let mut parsed: HashMap<&str, Vec<Value>> = HashMap::new();
    let mut everything = String::new();
    for role in ["migrate", "api", "forwarder", "delivery"] {
        for line in roles.log(role) {
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{role}.log: not JSON ({e}): {line}"));
            assert!(v.is_object(), "{role}.log: {line}");
            parsed.entry(role).or_default().push(v);
            everything.push_str(&line);
            everything.push('\n');
        }
    }
    let api = &parsed["api"];
    let answered = api
        .iter()
        .filter(|l| in_span(l, "request_id", &json!(request_id)))
        .find(|l| l["fields"]["message"] == "request answered")
        .unwrap_or_else(|| panic!("no access log line with request id {request_id}"));
    assert_eq!(answered["fields"]["status"], 202);
    assert_eq!(answered["span"]["http.route"], "/contacts");
    assert!(
        api.iter().any(|l| in_span(l, "request_id", &json!(fresh))),
        "no line with the generated request id {fresh}"
    );
    assert!(
        parsed["forwarder"]
            .iter()
            .any(|l| in_span(l, "contact", &json!(id))),
        "no forwarder line names contact {id}"
    );
    for crm in ["hubspot", "salesforce"] {
        assert!(
            parsed["delivery"].iter().any(|l| {
                l["spans"].as_array().is_some_and(|spans| {
                    spans.iter().any(|s| {
                        s["name"] == "deliver"
                            && s["crm"] == crm
                            && s["contact"] == id.as_str()
                            && s["attempt"] == 1
                    })
                })
            }),
            "no delivery line carries contact {id}, crm {crm} and attempt 1"
        );
    }
    let settings = sandbox_settings();
    let mut never = vec![
        KEY.to_owned(),
        settings.hubspot.access_token.clone(),
        settings.salesforce.client_secret.clone(),
        "guest:guest".to_owned(),
    ];
    for field in ["email", "first_name", "last_name", "phone"] {
        never.push(person[field].as_str().unwrap().to_owned());
    }
    let lower = everything.to_lowercase();
    for s in &never {
        assert!(
            !lower.contains(&s.to_lowercase()),
            "{s:?} appears in the logs"
        );
    }
    roles.cleanup().await;
}

/// One exported span, as the receiver decoded it.
#[derive(Clone, Debug)]
struct Exported {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    role: String,
    attributes: HashMap<String, String>,
}

/// An OTLP/HTTP receiver: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`.
async fn otlp_receiver(stop: CancellationToken) -> (String, Arc<Mutex<Vec<Exported>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let store = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                let Ok(req) = ExportTraceServiceRequest::decode(body) else {
                    return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
                };
                let mut store = store.lock().unwrap();
                for rs in req.resource_spans {
                    let resource = rs.resource.map(|r| attributes(&r.attributes));
                    let role = resource
                        .and_then(|r| r.get("syncroot.role").cloned())
                        .unwrap_or_default();
                    for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                        store.push(Exported {
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent_span_id: hex(&span.parent_span_id),
                            name: span.name,
                            role: role.clone(),
                            attributes: attributes(&span.attributes),
                        });
                    }
                }
                // An empty ExportTraceServiceResponse: full success.
                (axum::http::StatusCode::OK, Vec::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    (format!("http://{addr}"), spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()? {
                AnyValue {
                    value: Some(any_value::Value::StringValue(s)),
                } => s.clone(),
                AnyValue {
                    value: Some(any_value::Value::IntValue(i)),
                } => i.to_string(),
                _ => return None,
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}

#[tokio::test]
async fn one_trace_follows_a_change_from_the_api_through_the_queue_to_each_crm_call() {
    let receiving = CancellationToken::new();
    let (endpoint, spans) = otlp_receiver(receiving.clone()).await;
    let mut roles = start(&[("SYNCROOT_OTLP_ENDPOINT", endpoint)]).await;
    // HubSpot fails the first attempt, so its delivery goes through a retry tier.
    hubspot_outage(&roles, true).await;
    let r = create(&roles, &contact(), "trace-test").await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    roles.wait_state(&id, "hubspot", "retrying").await;
    hubspot_outage(&roles, false).await;
    wait_synced(&roles, &id).await;
    // Shutting down exports what is still batched.
    roles.stop().await;
    receiving.cancel();
    let spans = spans.lock().unwrap().clone();
    roles.cleanup().await;

    let request = spans
        .iter()
        .find(|s| s.role == "api" && s.name == "POST /contacts")
        .unwrap_or_else(|| panic!("no API span among {} spans", spans.len()));
    let trace: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.trace_id == request.trace_id)
        .collect();
    let by_id: HashMap<&str, &Exported> = trace.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    // Walks up a span's parents within the trace; the last one is the trace's root.
    let root_of = |span: &Exported| {
        let mut at = span;
        let mut path = vec![format!("{}:{}", at.role, at.name)];
        while let Some(parent) = by_id.get(at.parent_span_id.as_str()) {
            at = parent;
            path.push(format!("{}:{}", at.role, at.name));
        }
        (at.span_id.clone(), path)
    };
    let shown: Vec<String> = trace
        .iter()
        .map(|s| format!("{}:{}", s.role, s.name))
        .collect();
    assert!(
        trace
            .iter()
            .any(|s| s.role == "forwarder" && s.name == "forward"),
        "no forwarder span in the trace: {shown:?}"
    );
    for crm in ["hubspot", "salesforce"] {
        let deliver = trace
            .iter()
            .find(|s| s.role == "delivery" && s.name == format!("deliver {crm}"))
            .unwrap_or_else(|| panic!("no {crm} delivery span in the trace: {shown:?}"));
        assert_eq!(deliver.attributes.get("contact"), Some(&id));
        // The retried HubSpot task is still in the change's trace.
        if crm == "hubspot" {
            assert!(
                trace.iter().any(|s| s.name == "deliver hubspot"
                    && s.attributes.get("attempt").map(String::as_str) == Some("2")),
                "the retried hubspot delivery left the trace: {shown:?}"
            );
        }
        let calls: Vec<&&Exported> = trace
            .iter()
            .filter(|s| s.attributes.contains_key("url.path"))
            .filter(|s| s.attributes.get("crm").map(String::as_str) == Some(crm))
            .collect();
        assert!(!calls.is_empty(), "no {crm} call in the trace: {shown:?}");
        for call in calls {
            assert_eq!(call.role, "delivery");
            let (root, path) = root_of(call);
            assert_eq!(
                root, request.span_id,
                "the {crm} call does not lead back to the API request: {path:?}"
            );
        }
    }
}
