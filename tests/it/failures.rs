//! Failure paths of delivery, black-box: retry tiers, permanent refusals, the dead-letter
//! worker's rounds, parking, replay, poison messages, alerts and a broker outage while
//! failures are being handed on. Real Postgres and RabbitMQ; the CRM sandboxes fail on cue.
//!
//! Test configuration (the testkit): tiers 50 ms … 500 ms (five), dead-letter rounds 200 ms
//! … 1 s (twenty).

use syncroot_testkit as common;

use std::time::Duration;

use common::proxy::Proxy;
use common::{Options, TestApp, eventually};
use reqwest::Method;
use serde_json::{Value, json};
use syncroot::store::dead_letters::{self, DeadLetter, Filter, Status};

async fn app_with(env: &[(&str, &str)]) -> TestApp {
    TestApp::spawn_with(Options {
        delivery: true,
        extra_env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Options::default()
    })
    .await
}

async fn entries(app: &TestApp, filter: Filter) -> Vec<DeadLetter> {
    dead_letters::list(&app.db, &filter, None, 1000)
        .await
        .unwrap()
}

fn for_crm(crm: &str) -> Filter {
    Filter {
        crm: Some(crm.into()),
        ..Filter::default()
    }
}

/// Waits until the contact's entry for `crm` has `status`; returns it.
async fn wait_entry(app: &TestApp, crm: &str, contact: &str, status: Status) -> DeadLetter {
    let id: uuid::Uuid = contact.parse().unwrap();
    eventually(
        &format!("{crm} entry of {contact} to be {status:?}"),
        || async {
            dead_letters::find_delivery(&app.db, crm, id)
                .await
                .unwrap()
                .filter(|e| e.status == status)
        },
    )
    .await
}

/// Waits until the contact shows `state` for `crm`.
async fn wait_state(app: &TestApp, id: &str, crm: &str, state: &str) -> Value {
    eventually(&format!("{crm} state of {id} to be {state}"), || async {
        let c: Value = app.get_contact(id).await.json().await.ok()?;
        (c["sync"][crm]["state"] == state).then_some(c)
    })
    .await
}

async fn fault(app: &TestApp, base: &str, body: Value) {
    app.control(base, Method::PUT, "faults", Some(body)).await;
}

/// Live records in a sandbox with this e-mail.
async fn records(app: &TestApp, base: &str, email: &str) -> usize {
    app.sandbox_contacts(base)
        .await
        .iter()
        .filter(|c| {
            let e = c["properties"]["email"].as_str().or(c["Email"].as_str());
            let live = c["archived"] != true && c["IsDeleted"] != true;
            live && e.is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
        .count()
}

#[tokio::test]
async fn a_delivery_that_fails_for_a_while_goes_through_the_retry_tiers_then_succeeds() {
    let app = app_with(&[]).await;
    fault(&app, app.hubspot(), json!({"outage": true})).await;
    let id = app.create(json!({"email": "tiers@example.com"})).await;
    let c = wait_state(&app, &id, "hubspot", "retrying").await;
    assert!(
        c["sync"]["hubspot"]["last_error"]
            .as_str()
            .unwrap()
            .contains("503")
    );
    // The other CRM is not held up.
    wait_state(&app, &id, "salesforce", "synced").await;
    fault(&app, app.hubspot(), json!({"outage": false})).await;
    wait_state(&app, &id, "hubspot", "synced").await;
    assert_eq!(records(&app, app.hubspot(), "tiers@example.com").await, 1);
    // Whatever reached the dead-letter worker meanwhile is resolved by the success.
    eventually("no dead letters left", || async {
        entries(&app, Filter::default())
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}

/// A Salesforce validation rule refusing titles that contain INVALID: a refusal no retry can
/// fix.
async fn refuse_invalid_titles(app: &TestApp) {
    let rule = json!([{"name": "NoInvalidTitles", "field": "Title", "contains": "INVALID",
                       "message": "Title may not contain INVALID"}]);
    app.control(
        app.salesforce(),
        Method::PUT,
        "validation-rules",
        Some(rule),
    )
    .await;
}

#[tokio::test]
async fn a_permanent_refusal_is_parked_at_once_with_its_reason_and_holds_up_nobody() {
    let app = app_with(&[]).await;
    refuse_invalid_titles(&app).await;
    let bad = app
        .create(json!({"email": "bad@example.com", "job_title": "INVALID title"}))
        .await;
    let entry = wait_entry(&app, "salesforce", &bad, Status::Parked).await;
    assert_eq!(entry.reason, "permanent");
    assert_eq!(entry.attempts, 1, "no retries for a permanent refusal");
    assert_eq!(entry.rounds, 0);
    assert_eq!(
        entry.error_code.as_deref(),
        Some("FIELD_CUSTOM_VALIDATION_EXCEPTION")
    );
    assert!(
        entry
            .error_message
            .as_deref()
            .unwrap()
            .contains("Title may not contain INVALID")
    );
    assert_eq!(entry.operation.as_deref(), Some("upsert"));
    assert_eq!(entry.version, Some(1));
    assert_eq!(entry.errors.len(), 1);
    assert!(!entry.errors[0].retryable);
    wait_state(&app, &bad, "salesforce", "failed").await;
    // HubSpot's delivery of the same contact goes its own way (it may finish later).
    wait_state(&app, &bad, "hubspot", "synced").await;

    let good = app.create(json!({"email": "good@example.com"})).await;
    wait_state(&app, &good, "salesforce", "synced").await;

    // Replaying without fixing anything parks it again, with the new attempt in its history.
    let replay = |filter: Filter| {
        let app = &app;
        async move {
            syncroot::replay::replay_matching(
                &app.db,
                &app.publisher(Duration::from_secs(5)).await,
                &filter,
                &by_test(),
            )
            .await
            .unwrap()
            .sent
        }
    };
    assert_eq!(replay(for_crm("salesforce")).await, 1);
    let again = eventually("the replay to be parked again", || async {
        let e = dead_letters::find(&app.db, entry.id).await.unwrap()?;
        (e.status == Status::Parked && e.attempts == 2).then_some(e)
    })
    .await;
    assert_eq!(again.errors.len(), 2);
    assert_eq!(again.first_failed_at, entry.first_failed_at);

    // Fixing a contact itself delivers its new version and resolves its entry.
    let fixed = app
        .create(json!({"email": "fixed@example.com", "job_title": "INVALID too"}))
        .await;
    wait_entry(&app, "salesforce", &fixed, Status::Parked).await;
    let r = app
        .authed(Method::PATCH, &format!("/contacts/{fixed}"))
        .json(&json!({"job_title": "Engineer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_state(&app, &fixed, "salesforce", "synced").await;
    eventually("only the unfixed entry to be left", || async {
        let left = entries(&app, Filter::default()).await;
        (left.len() == 1 && left[0].id == entry.id).then_some(())
    })
    .await;

    // Fixing the cause in the CRM, then replaying, empties the queue.
    app.control(
        app.salesforce(),
        Method::PUT,
        "validation-rules",
        Some(json!([])),
    )
    .await;
    assert_eq!(replay(Filter::default()).await, 1);
    wait_state(&app, &bad, "salesforce", "synced").await;
    eventually("the queue to be empty", || async {
        entries(&app, Filter::default())
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    for email in ["bad@example.com", "fixed@example.com", "good@example.com"] {
        assert_eq!(records(&app, app.salesforce(), email).await, 1, "{email}");
    }
}

#[tokio::test]
async fn retries_exhausted_reach_the_dead_letter_worker_which_parks_them_after_its_rounds() {
    let app = app_with(&[("SYNCROOT_DLQ_RETRY_TIMES", "1")]).await;
    fault(&app, app.salesforce(), json!({"outage": true})).await;
    let id = app.create(json!({"email": "outage@example.com"})).await;
    let entry = wait_entry(&app, "salesforce", &id, Status::Parked).await;
    assert_eq!(entry.reason, "retries_exhausted");
    assert_eq!(entry.rounds, 1, "one round of the dead-letter worker");
    // Five tiers mean six attempts per pass; the round was a second pass.
    assert_eq!(entry.attempts, 12);
    assert_eq!(entry.errors.len(), 12);
    assert!(
        entry
            .errors
            .iter()
            .all(|e| e.retryable && e.code == "UNAVAILABLE")
    );
    assert!(entry.errors.windows(2).all(|w| w[0].at <= w[1].at));

    // After the outage, a replay delivers it once and empties the queue.
    fault(&app, app.salesforce(), json!({"outage": false})).await;
    let sent = syncroot::replay::replay_matching(
        &app.db,
        &app.publisher(Duration::from_secs(5)).await,
        &Filter {
            status: Some(Status::Parked),
            ..Filter::default()
        },
        &by_test(),
    )
    .await
    .unwrap();
    assert_eq!(
        sent,
        syncroot::replay::Replayed {
            sent: 1,
            skipped: 0
        }
    );
    wait_state(&app, &id, "salesforce", "synced").await;
    eventually("the entry to be resolved", || async {
        entries(&app, Filter::default())
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    assert_eq!(
        records(&app, app.salesforce(), "outage@example.com").await,
        1
    );
}

#[tokio::test]
async fn after_an_outage_the_dead_letter_rounds_deliver_without_anyone_replaying() {
    let app = app_with(&[]).await;
    fault(&app, app.salesforce(), json!({"outage": true})).await;
    let id = app.create(json!({"email": "rounds@example.com"})).await;
    let entry = wait_entry(&app, "salesforce", &id, Status::Retrying).await;
    assert!(entry.next_attempt_at.is_some());
    assert!(entry.rounds >= 1);
    fault(&app, app.salesforce(), json!({"outage": false})).await;
    wait_state(&app, &id, "salesforce", "synced").await;
    eventually("the entry to be resolved", || async {
        entries(&app, Filter::default())
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    assert_eq!(
        records(&app, app.salesforce(), "rounds@example.com").await,
        1
    );
}

#[tokio::test]
async fn poison_messages_are_parked_with_a_reason_and_never_wedge_a_worker() {
    let app = app_with(&[]).await;
    let topo = app.topology();
    let deliver = topo.delivery_queue(syncroot::domain::Crm::Salesforce);
    app.publish_raw(&deliver, b"not a delivery task").await;
    app.publish_raw(&topo.shard_queue(0), br#"{"v":99,"anything":true}"#)
        .await;
    let parked = eventually("both poison messages to be parked", || async {
        let e = entries(
            &app,
            Filter {
                status: Some(Status::Parked),
                ..Filter::default()
            },
        )
        .await;
        (e.len() == 2).then_some(e)
    })
    .await;
    let from = |queue: &str| {
        parked
            .iter()
            .find(|e| e.source.as_ref().and_then(|s| s.queue.as_deref()) == Some(queue))
            .unwrap_or_else(|| panic!("no entry from {queue}: {parked:?}"))
    };
    let task = from(&deliver);
    assert_eq!(task.kind, "message");
    assert_eq!(task.reason, "rejected");
    assert_eq!(task.error_code.as_deref(), Some("UNDECODABLE"));
    assert_eq!(task.source.as_ref().unwrap().body, b"not a delivery task");
    let change = from(&topo.shard_queue(0));
    assert_eq!(change.error_code.as_deref(), Some("UNKNOWN_VERSION"));

    // Both workers carry on.
    let id = app
        .create(json!({"email": "after-poison@example.com"}))
        .await;
    wait_state(&app, &id, "salesforce", "synced").await;
    wait_state(&app, &id, "hubspot", "synced").await;
}

#[tokio::test]
async fn a_burst_of_parked_deliveries_sends_one_alert() {
    let (hook, received) = alert_receiver().await;
    let app = app_with(&[
        ("SYNCROOT_ALERT_URL", &hook),
        ("SYNCROOT_ALERT_INTERVAL_SECS", "3600"),
    ])
    .await;
    refuse_invalid_titles(&app).await;
    for i in 0..4 {
        app.create(json!({"email": format!("burst{i}@example.com"), "job_title": "INVALID"}))
            .await;
    }
    eventually("four parked entries", || async {
        let n = entries(&app, for_crm("salesforce")).await.len();
        (n == 4).then_some(())
    })
    .await;
    let first = eventually("an alert", || async {
        received.lock().unwrap().first().cloned()
    })
    .await;
    let text = first["text"].as_str().unwrap();
    assert!(text.contains("parked"), "{text}");
    assert!(text.contains("FIELD_CUSTOM_VALIDATION_EXCEPTION"), "{text}");
    assert!(first["syncroot"]["parked"].as_u64().unwrap() >= 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(received.lock().unwrap().len(), 1, "one alert per interval");
}

type Received = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;

/// A Slack-like incoming webhook that records what it gets.
async fn alert_receiver() -> (String, Received) {
    let received: Received = Default::default();
    let r = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let r = r.clone();
            async move {
                r.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), received)
}

#[tokio::test]
async fn a_broker_outage_while_failures_are_handed_on_loses_nothing() {
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let app = TestApp::spawn_with(Options {
        delivery: true,
        amqp_url: Some(format!("amqp://guest:guest@{}/%2f", proxy.addr)),
        ..Options::default()
    })
    .await;
    app.wait_ready().await;
    fault(&app, app.salesforce(), json!({"outage": true})).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(
            app.create(json!({"email": format!("cut{i}@example.com")}))
                .await,
        );
    }
    wait_state(&app, &ids[9], "salesforce", "retrying").await;
    // Retries and dead letters are being published right now; cut every connection.
    proxy.take_down();
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.bring_up();
    fault(&app, app.salesforce(), json!({"outage": false})).await;
    // Both CRMs' deliveries were cut mid-flight, so wait for both before counting records.
    for id in &ids {
        wait_state(&app, id, "salesforce", "synced").await;
        wait_state(&app, id, "hubspot", "synced").await;
    }
    for i in 0..10 {
        let email = format!("cut{i}@example.com");
        assert_eq!(records(&app, app.salesforce(), &email).await, 1, "{email}");
        assert_eq!(records(&app, app.hubspot(), &email).await, 1, "{email}");
    }
    eventually("no dead letters left", || async {
        entries(&app, Filter::default())
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}

/// Who the audit log records for replays a test makes without the admin API.
fn by_test() -> syncroot::store::audit::Requested {
    syncroot::store::audit::Requested {
        key_id: "test".into(),
        filter: None,
    }
}

/// Salesforce refuses a save while another transaction holds the record
/// (`UNABLE_TO_LOCK_ROW`, per item of a collection write): a transient refusal, retried
/// until it goes through, never dead-lettered.
#[tokio::test]
async fn a_salesforce_record_lock_is_retried_until_the_save_goes_through() {
    let app = app_with(&[]).await;
    let locks = app
        .control(
            app.salesforce(),
            Method::PUT,
            "record-locks",
            Some(json!({"next": 3})),
        )
        .await;
    assert_eq!(locks["next"], 3);
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = app
            .create(json!({"email": format!("locked-{i}@example.com"), "last_name": "Locked"}))
            .await;
        ids.push(id);
    }
    for id in &ids {
        app.wait_synced(id, 1).await;
    }
    let left = app
        .control(app.salesforce(), Method::GET, "record-locks", None)
        .await;
    assert_eq!(left["next"], 0, "every lock was met by a save");
    assert!(entries(&app, for_crm("salesforce")).await.is_empty());
    let records = app.sandbox_contacts(app.salesforce()).await;
    for i in 0..3 {
        let email = format!("locked-{i}@example.com");
        let n = records
            .iter()
            .filter(|r| r["Email"] == email.as_str())
            .count();
        assert_eq!(n, 1, "one Salesforce record of {email}");
    }
}
