//! `/metrics` of every role, black-box. The roles run as processes of their own
//! (`syncroot api`, `forwarder`, `delivery`, `webhooks`, `dlq-worker`), so each process's
//! counters hold exactly what this test did; the CRM sandboxes run in the test. A known
//! sequence runs (five creates, a HubSpot 429 injected through the sandbox's fault kit, a
//! Salesforce validation rule refusing one contact for good, a forged webhook, a path no route
//! matches), then each role's `/metrics` is parsed by the Prometheus project's own Python
//! parser (`scripts/metrics_parse.py`, `prometheus-client` from tests/requirements.txt, in
//! `.venv` by `scripts/python.sh`) and the counters must have moved by exactly that.

use syncroot_testkit as common;

use std::collections::BTreeMap;

use common::eventually;
use common::roles::Roles;
use serde_json::{Value, json};
use syncroot::domain::Crm;
use syncroot::queue::topology::Topology;

/// The worker roles, each with a probe port of its own.
const WORKERS: [&str; 5] = [
    "forwarder",
    "delivery",
    "webhooks",
    "dlq-worker",
    "subscriptions",
];

/// One parsed sample: its name, labels and value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape of one role, parsed by `prometheus_client.parser`.
struct Scrape {
    role: &'static str,
    families: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Scrape {
    /// The sum of the samples named `name` whose labels include `want`.
    fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                want.iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    fn has(&self, name: &str, want: &[(&str, &str)]) -> bool {
        self.samples.iter().any(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    #[track_caller]
    fn expect(&self, name: &str, want: &[(&str, &str)], value: f64) {
        let got = self.sum(name, want);
        assert_eq!(got, value, "{}: {name}{want:?}", self.role);
    }
}

/// Parses an exposition with the Python parser (installing the venv's pinned tools if needed),
/// without blocking the test's runtime while it runs.
async fn parse(role: &'static str, text: &str) -> Scrape {
    use tokio::io::AsyncWriteExt as _;
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = tokio::process::Command::new("bash")
        .args([
            "-c",
            ". scripts/python.sh && exec \"$PYBIN/python\" scripts/metrics_parse.py",
        ])
        .current_dir(root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bash runs scripts/python.sh");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{role}: prometheus_client refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut families = BTreeMap::new();
    let mut samples = Vec::new();
    for f in parsed {
        families.insert(
            f["family"].as_str().unwrap().to_owned(),
            f["type"].as_str().unwrap().to_owned(),
        );
        for s in f["samples"].as_array().unwrap() {
            samples.push(Sample {
                name: s["name"].as_str().unwrap().to_owned(),
                labels: serde_json::from_value(s["labels"].clone()).unwrap(),
                value: s["value"].as_f64().unwrap_or(f64::NAN),
            });
        }
    }
    Scrape {
        role,
        families,
        samples,
    }
}

/// Scrapes `role`'s `/metrics` and parses it.
async fn scrape(roles: &Roles, role: &'static str) -> Scrape {
    let r = roles
        .http
        .get(format!("{}/metrics", roles.base(role)))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{role} /metrics: {e:?}"));
    assert_eq!(r.status(), 200, "{role} /metrics");
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{role}: {ct}");
    parse(role, &r.text().await.unwrap()).await
}

#[tokio::test]
async fn every_role_counts_a_known_sequence_exactly() {
    let all: Vec<&str> = ["api"].into_iter().chain(WORKERS).collect();
    let roles = Roles::start(
        env!("CARGO_BIN_EXE_syncroot"),
        &all,
        &[
            ("SYNCROOT_DELIVERY_RETRY_TIERS", "50ms,100ms".to_owned()),
            ("SYNCROOT_POLL_INTERVAL_SECS", "0".to_owned()),
        ],
    )
    .await;
    let (control, hubspot, salesforce) = (&roles.control, &roles.hubspot, &roles.salesforce);
    // Three creates that go through at once.
    for i in 0..3 {
        let id = roles
            .create(&json!({"email": format!("m{i}@example.com"), "last_name": "M"}))
            .await;
        roles.wait_state(&id, "hubspot", "synced").await;
        roles.wait_state(&id, "salesforce", "synced").await;
    }
    // HubSpot answers the next call with 429: one retryable attempt, one retry, then success.
    control
        .put(hubspot, "faults", &json!({"force_429": 1}))
        .await
        .unwrap();
    let id = roles
        .create(&json!({"email": "m429@example.com", "last_name": "M"}))
        .await;
    roles.wait_state(&id, "hubspot", "synced").await;
    roles.wait_state(&id, "salesforce", "synced").await;
    // A Salesforce validation rule refuses this one for good: one dead letter.
    let rule = json!([{"name": "NoInvalidTitles", "field": "Title", "contains": "INVALID",
                       "message": "Title may not contain INVALID"}]);
    control
        .put(salesforce, "validation-rules", &rule)
        .await
        .unwrap();
    let id = roles
        .create(&json!({"email": "mbad@example.com", "job_title": "INVALID title"}))
        .await;
    roles.wait_state(&id, "hubspot", "synced").await;
    // A forged webhook, and a path no route matches.
    let forged = roles
        .http
        .post(format!("{}/webhooks/hubspot", roles.api))
        .header("x-hubspot-signature-v3", "Zm9yZ2Vk")
        .header("x-hubspot-request-timestamp", "1")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let nowhere = roles
        .http
        .get(format!("{}/no/such/path/12345", roles.api))
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), 404);

    // The dead-letter worker has kept the refusal and its collector counted it parked.
    let dlq = eventually("the dead letter parked and counted", || async {
        let s = scrape(&roles, "dlq-worker").await;
        (s.sum("syncroot_dead_letters", &[("status", "parked")]) == 1.0).then_some(s)
    })
    .await;
    dlq.expect(
        "syncroot_dead_letters_total",
        &[("reason", "permanent")],
        1.0,
    );
    dlq.expect("syncroot_dead_letters_total", &[], 1.0);
    dlq.expect("syncroot_dead_letters", &[("status", "retrying")], 0.0);
    dlq.expect("syncroot_dead_letters", &[("status", "replayed")], 0.0);
    dlq.expect(
        "syncroot_messages_total",
        &[("role", "dlq-worker"), ("outcome", "acked")],
        1.0,
    );
    dlq.expect("syncroot_messages_total", &[("outcome", "retried")], 0.0);
    dlq.expect(
        "syncroot_messages_total",
        &[("outcome", "dead_lettered")],
        0.0,
    );

    let api = scrape(&roles, "api").await;
    let req = "syncroot_http_requests_total";
    api.expect(
        req,
        &[
            ("route", "/contacts"),
            ("method", "POST"),
            ("status", "202"),
        ],
        5.0,
    );
    api.expect(req, &[("route", "/contacts"), ("method", "POST")], 5.0);
    api.expect(
        req,
        &[("route", "/webhooks/hubspot"), ("status", "401")],
        1.0,
    );
    api.expect(
        req,
        &[("route", "unmatched"), ("method", "GET"), ("status", "404")],
        1.0,
    );
    assert!(api.sum(req, &[("route", "/contacts/{id}"), ("method", "GET")]) >= 5.0);
    // Routes are templates: no raw path (an id, the unmatched path) is ever a label.
    for s in api.samples.iter().filter(|s| s.name == req) {
        let route = &s.labels["route"];
        assert!(
            route == "unmatched" || !route.contains(&id) && !route.contains("12345"),
            "{route}"
        );
    }
    let count = "syncroot_http_request_duration_seconds_count";
    api.expect(count, &[("route", "/contacts"), ("method", "POST")], 5.0);
    api.expect(
        "syncroot_webhook_events_total",
        &[("crm", "hubspot"), ("outcome", "rejected")],
        1.0,
    );
    api.expect(
        "syncroot_webhook_events_total",
        &[("outcome", "accepted")],
        0.0,
    );

    let fwd = scrape(&roles, "forwarder").await;
    let msgs = "syncroot_messages_total";
    fwd.expect(msgs, &[("role", "forwarder"), ("outcome", "acked")], 5.0);
    fwd.expect(msgs, &[("outcome", "retried")], 0.0);
    fwd.expect(msgs, &[("outcome", "dead_lettered")], 0.0);

    let dly = scrape(&roles, "delivery").await;
    let topology = Topology::new(&roles.install.config().unwrap());
    let hq = topology.delivery_queue(Crm::Hubspot);
    let sq = topology.delivery_queue(Crm::Salesforce);
    let on = |q: &str, o: &'static str| -> f64 {
        dly.sum(msgs, &[("role", "delivery"), ("queue", q), ("outcome", o)])
    };
    assert_eq!(
        (
            on(&hq, "acked"),
            on(&hq, "retried"),
            on(&hq, "dead_lettered")
        ),
        (5.0, 1.0, 0.0),
        "HubSpot's delivery queue"
    );
    assert_eq!(
        (
            on(&sq, "acked"),
            on(&sq, "retried"),
            on(&sq, "dead_lettered")
        ),
        (4.0, 0.0, 1.0),
        "Salesforce's delivery queue"
    );
    let att = "syncroot_delivery_attempts_total";
    for (crm, success, retryable, permanent) in
        [("hubspot", 5.0, 1.0, 0.0), ("salesforce", 4.0, 0.0, 1.0)]
    {
        dly.expect(att, &[("crm", crm), ("outcome", "success")], success);
        dly.expect(att, &[("crm", crm), ("outcome", "retryable")], retryable);
        dly.expect(att, &[("crm", crm), ("outcome", "permanent")], permanent);
        dly.expect(
            "syncroot_sync_latency_seconds_count",
            &[("crm", crm)],
            success,
        );
        // Every attempt rode in exactly one call.
        dly.expect(
            "syncroot_crm_batch_records_sum",
            &[("crm", crm)],
            success + retryable + permanent,
        );
        let calls = dly.sum("syncroot_crm_batch_records_count", &[("crm", crm)]);
        assert!(calls >= 1.0, "{crm} calls");
        dly.expect(
            "syncroot_delivery_duration_seconds_count",
            &[("crm", crm)],
            calls,
        );
        let remaining = dly.sum("syncroot_crm_quota_remaining", &[("crm", crm)]);
        let limit = dly.sum("syncroot_crm_quota_limit", &[("crm", crm)]);
        assert!(
            limit > 0.0 && remaining < limit,
            "{crm} quota {remaining}/{limit}"
        );
    }

    // Every consuming role reports its queues' depth and age, and nothing waits now.
    let hooks = scrape(&roles, "webhooks").await;
    for (role, queue) in [
        ("delivery", hq.clone()),
        ("delivery", sq.clone()),
        ("dlq-worker", topology.dead_letter_queue()),
        ("webhooks", topology.inbound_queue(Crm::Hubspot)),
        ("forwarder", topology.shard_queue(0)),
    ] {
        eventually(&format!("{queue} reported"), || async {
            let s = scrape(&roles, role).await;
            (s.has("syncroot_queue_messages", &[("queue", &queue)])
                && s.sum("syncroot_queue_messages", &[("queue", &queue)]) == 0.0
                && s.sum(
                    "syncroot_queue_oldest_message_age_seconds",
                    &[("queue", &queue)],
                ) == 0.0)
                .then_some(())
        })
        .await;
    }

    // No subscription: the sender counts nothing, at zero.
    let subs = scrape(&roles, "subscriptions").await;
    for outcome in ["success", "refused", "unreachable"] {
        subs.expect(
            "syncroot_subscription_deliveries_total",
            &[("outcome", outcome)],
            0.0,
        );
    }

    // Every metric of the contract is exported by some role, with its type.
    let all: Vec<&Scrape> = vec![&api, &fwd, &dly, &dlq, &hooks, &subs];
    for f in syncroot::metrics::FAMILIES {
        let family = f.name.trim_end_matches("_total");
        assert!(
            all.iter().any(|s| s.families.contains_key(family)),
            "{} is exported by no role",
            f.name
        );
    }
    roles.cleanup().await;
}

/// The webhook counters against the HubSpot sandbox's own count of the events it sent: every
/// event sent is accepted; the events SyncRoot's own writes caused are echoes, and a person's
/// edit in HubSpot is neither.
#[tokio::test]
async fn webhook_events_are_counted_as_the_sandbox_sent_them() {
    let s = common::sandbox_settings();
    let roles = Roles::start(
        env!("CARGO_BIN_EXE_syncroot"),
        &["api", "forwarder", "delivery", "webhooks"],
        &[
            ("SYNCROOT_POLL_INTERVAL_SECS", "0".to_owned()),
            (
                "SYNCROOT_HUBSPOT_WEBHOOK_SECRETS",
                s.hubspot.client_secret.clone(),
            ),
            ("SYNCROOT_HUBSPOT_APP_ID", s.hubspot.app_id.to_string()),
        ],
    )
    .await;
    let hook = json!({"url": roles.url("/webhooks/hubspot"), "secret": s.hubspot.client_secret});
    roles
        .control
        .put(&roles.hubspot, "webhook", &hook)
        .await
        .unwrap();
    let events = "syncroot_webhook_events_total";
    // Waits until the sandbox has sent `at_least` events, SyncRoot accepted every one, and the
    // webhook worker applied every batch (one message per batch the sandbox posted).
    let settled = |at_least: u64| {
        let roles = &roles;
        async move {
            eventually("every event sent is accepted and applied", || async {
                let c = roles.control.get(&roles.hubspot, "counters").await.ok()?;
                let sent = c["webhook_events_sent"].as_u64()?;
                let api = scrape(roles, "api").await;
                let hooks = scrape(roles, "webhooks").await;
                let applied = hooks.sum(
                    "syncroot_messages_total",
                    &[("role", "webhooks"), ("outcome", "acked")],
                );
                let accepted = api.sum(events, &[("crm", "hubspot"), ("outcome", "accepted")]);
                let batches = c["webhooks_sent"].as_u64()?;
                (sent >= at_least
                    && c["webhook_failures"] == 0
                    && accepted == sent as f64
                    && applied == batches as f64)
                    .then_some((sent, hooks))
            })
            .await
        }
    };

    // SyncRoot writes a new contact to HubSpot: every event of that write is an echo.
    let id = roles
        .create(&json!({"email": "hooks@example.com", "last_name": "Hooks"}))
        .await;
    roles.wait_state(&id, "hubspot", "synced").await;
    let (sent, hooks) = settled(1).await;
    hooks.expect(
        events,
        &[("crm", "hubspot"), ("outcome", "echo")],
        sent as f64,
    );
    hooks.expect(events, &[("crm", "hubspot"), ("outcome", "duplicate")], 0.0);

    // A person edits the record in HubSpot: accepted, applied, not an echo.
    let contact = roles.contact(&id).await.expect("the contact");
    let record = common::remote_id(&contact, "hubspot");
    // A person sets the record's last name in HubSpot's UI.
    let edit = |last_name: &'static str| {
        let (roles, record) = (&roles, &record);
        async move {
            roles
                .control
                .call(
                    &roles.hubspot,
                    reqwest::Method::PATCH,
                    &format!("ui/contacts/{record}"),
                    Some(&json!({"properties": {"lastname": last_name}})),
                )
                .await
                .unwrap();
        }
    };
    edit("Edited").await;
    let (after, hooks) = settled(sent + 1).await;
    eventually("the edit reaches SyncRoot", || async {
        let c = roles.contact(&id).await?;
        (c["last_name"] == "Edited").then_some(())
    })
    .await;
    assert!(after > sent, "the edit sent events");
    hooks.expect(
        events,
        &[("crm", "hubspot"), ("outcome", "echo")],
        sent as f64,
    );
    hooks.expect(events, &[("crm", "hubspot"), ("outcome", "duplicate")], 0.0);

    // HubSpot sends every event of the next edit twice: half of what it sends is duplicates.
    roles
        .control
        .put(
            &roles.hubspot,
            "faults",
            &json!({"webhook_duplicate_rate": 1.0}),
        )
        .await
        .unwrap();
    edit("Twice").await;
    let (twice, hooks) = settled(after + 2).await;
    let doubled = twice - after;
    assert_eq!(doubled % 2, 0, "every event was sent twice");
    hooks.expect(
        events,
        &[("crm", "hubspot"), ("outcome", "duplicate")],
        (doubled / 2) as f64,
    );
    hooks.expect(
        events,
        &[("crm", "hubspot"), ("outcome", "echo")],
        sent as f64,
    );
    roles.cleanup().await;
}
