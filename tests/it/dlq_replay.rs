//! Replays through the dead-letter admin API, black-box: the real app delivering to the
//! sandboxes, so a replay is seen to go through the normal delivery path.

use syncroot_testkit as common;

use common::dlq::{DeliverySeed, seed_message, send};
use common::{TestApp, admin_options, eventually};
use reqwest::Method;
use serde_json::json;
use syncroot::store::dead_letters::RawMessage;
use uuid::Uuid;

/// A message kept from the dead-letter queue, which a replay sends straight back there (no
/// dead-letter worker runs without delivery to take it again); returns its id and the queue.
async fn seed_kept_from_dead_letter_queue(app: &TestApp) -> (Uuid, String) {
    let queue = app.topology().dead_letter_queue();
    let id = seed_message(
        &app.db,
        RawMessage {
            queue: Some(queue.clone()),
            body: b"kept".to_vec(),
            ..RawMessage::default()
        },
    )
    .await;
    (id, queue)
}

#[tokio::test]
async fn a_message_kept_without_its_origin_cannot_be_replayed() {
    let app = TestApp::spawn_with(admin_options(false)).await;
    let id = seed_message(&app.db, RawMessage::default()).await;
    let (status, p) = send(app.admin(Method::POST, &format!("/dlq/{id}/replay"))).await;
    assert_eq!(status, 409, "{p}");
    assert_eq!(p["type"], "urn:syncroot:problem:not-replayable");
    let (_, e) = send(app.admin(Method::GET, &format!("/dlq/{id}"))).await;
    assert_eq!(e["status"], "parked", "the entry is left as it was");
}

#[tokio::test]
async fn a_replayed_delivery_shows_replayed_until_the_crm_holds_its_version() {
    let mut opts = admin_options(true);
    // Park at once when the retry tiers are spent, so only the replay sends it again.
    opts.extra_env
        .push(("SYNCROOT_DLQ_RETRY_TIMES".into(), "0".into()));
    let app = TestApp::spawn_with(opts).await;
    let outage = |on: bool| {
        app.control(
            app.hubspot(),
            Method::PUT,
            "faults",
            Some(json!({"outage": on})),
        )
    };
    outage(true).await;
    let contact = app
        .create(json!({"email": "parked@example.com", "last_name": "Parked"}))
        .await;
    let entry = eventually("HubSpot's delivery to be parked", || async {
        let (_, page) = send(app.admin(Method::GET, "/dlq?crm=hubspot&status=parked")).await;
        page["items"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(entry["contact_id"], contact);
    assert_eq!(entry["reason"], "retries_exhausted");
    assert_eq!(entry["error_code"], "UNAVAILABLE", "{entry}");
    let id = entry["id"].as_str().unwrap().to_owned();

    let (status, out) = send(app.admin(Method::POST, &format!("/dlq/{id}/replay"))).await;
    assert_eq!((status, out), (202, json!({"replayed": 1})));
    // HubSpot is still down, so the replay's outcome is pending for the whole retry ladder.
    let (_, e) = send(app.admin(Method::GET, &format!("/dlq/{id}"))).await;
    assert_eq!(e["status"], "replayed", "{e}");
    outage(false).await;

    eventually("the entry to be resolved by the delivery", || async {
        let (status, _) = send(app.admin(Method::GET, &format!("/dlq/{id}"))).await;
        (status == 404).then_some(())
    })
    .await;
    let c = app.wait_version(&contact, 1).await;
    assert_eq!(c["sync"]["hubspot"]["state"], "synced", "{c}");
}

#[tokio::test]
async fn a_filtered_replay_sends_only_matching_entries_through_the_delivery_path() {
    let app = TestApp::spawn_with(admin_options(true)).await;
    let contact = app
        .create(json!({"email": "replay@example.com", "last_name": "Replay"}))
        .await;
    eventually("both CRMs to hold the contact", || async {
        let c = app.wait_version(&contact, 1).await;
        (c["sync"]["hubspot"]["state"] == "synced" && c["sync"]["salesforce"]["state"] == "synced")
            .then_some(())
    })
    .await;
    let contact: Uuid = contact.parse().unwrap();
    let hubspot = DeliverySeed::new("hubspot", contact).save(&app.db).await;
    let mut other = DeliverySeed::new("salesforce", contact);
    other.code = "REQUIRED_FIELD_MISSING";
    let salesforce = other.save(&app.db).await;

    let (status, out) = send(app.admin(Method::POST, "/dlq/replay?crm=hubspot")).await;
    assert_eq!((status, out), (202, json!({"replayed": 1, "skipped": 0})));
    // The CRM already holds version 1, so the delivery resolves the entry without a call.
    eventually("the HubSpot entry to be resolved", || async {
        let (status, _) = send(app.admin(Method::GET, &format!("/dlq/{hubspot}"))).await;
        (status == 404).then_some(())
    })
    .await;
    let (_, e) = send(app.admin(Method::GET, &format!("/dlq/{salesforce}"))).await;
    assert_eq!(
        e["status"], "parked",
        "an entry the filter left out is untouched"
    );
}

#[tokio::test]
async fn a_kept_message_goes_back_to_its_queue_and_leaves_the_list() {
    // No dead-letter worker runs without delivery, so the message stays where it is sent.
    let app = TestApp::spawn_with(admin_options(false)).await;
    let queue = app.topology().dead_letter_queue();
    let id = seed_message(
        &app.db,
        RawMessage {
            queue: Some(queue.clone()),
            content_type: Some("text/plain".into()),
            body: b"kept as it was".to_vec(),
            ..RawMessage::default()
        },
    )
    .await;
    let (status, out) = send(app.admin(Method::POST, &format!("/dlq/{id}/replay"))).await;
    assert_eq!((status, out), (202, json!({"replayed": 1})));
    assert_eq!(app.queue_depth(&queue).await, 1);
    let (status, _) = send(app.admin(Method::GET, &format!("/dlq/{id}"))).await;
    assert_eq!(
        status, 404,
        "a replayed message is a new entry if it fails again"
    );
}

#[tokio::test]
async fn with_the_broker_down_a_replay_is_a_503_and_the_entry_stays_as_it_was() {
    let proxy = common::proxy::Proxy::start("127.0.0.1:5672").await;
    let mut opts = admin_options(false);
    opts.amqp_url = Some(format!("amqp://guest:guest@{}/%2f", proxy.addr));
    let app = TestApp::spawn_with(opts).await;
    app.wait_ready().await;
    // A kept message, sent straight back to its queue: no CRM is enabled without delivery.
    let (id, queue) = seed_kept_from_dead_letter_queue(&app).await;

    proxy.take_down();
    // A replay sent before the app sees the cut would still go through, and leave no entry
    // to refuse.
    app.wait_unready().await;
    let refused = eventually("replays to be refused", || async {
        let r = app
            .admin(Method::POST, &format!("/dlq/{id}/replay"))
            .send()
            .await
            .ok()?;
        (r.status() == 503).then_some(r)
    })
    .await;
    assert!(refused.headers().contains_key("retry-after"));
    let (status, p) = send(app.admin(Method::POST, "/dlq/replay")).await;
    assert_eq!(status, 503, "{p}");
    let (_, e) = send(app.admin(Method::GET, &format!("/dlq/{id}"))).await;
    assert_eq!(
        e["status"], "parked",
        "an unconfirmed replay changes nothing"
    );

    proxy.bring_up();
    app.wait_ready().await;
    let (status, out) = send(app.admin(Method::POST, "/dlq/replay")).await;
    assert_eq!((status, out), (202, json!({"replayed": 1, "skipped": 0})));
    assert_eq!(app.queue_depth(&queue).await, 1);
}

#[tokio::test]
async fn a_bulk_replay_sends_what_it_can_and_counts_what_it_left_as_it_was() {
    // Without delivery no CRM is enabled: a delivery entry has no queue to go to, and a message
    // kept without its origin has nowhere to go either. A message kept from the dead-letter
    // queue goes back there (no dead-letter worker runs to take it).
    let app = TestApp::spawn_with(admin_options(false)).await;
    let no_origin = seed_message(&app.db, RawMessage::default()).await;
    let no_queue = DeliverySeed::new("hubspot", Uuid::now_v7())
        .save(&app.db)
        .await;
    let (sendable, queue) = seed_kept_from_dead_letter_queue(&app).await;

    // A bound for a broken run (a replay that keeps claiming an entry it cannot send), not a
    // speed check.
    let bulk = || {
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            send(app.admin(Method::POST, "/dlq/replay")),
        )
    };
    let (status, out) = bulk().await.expect("the bulk replay to answer");
    assert_eq!((status, out), (202, json!({"replayed": 1, "skipped": 2})));
    assert_eq!(app.queue_depth(&queue).await, 1);
    let (status, _) = send(app.admin(Method::GET, &format!("/dlq/{sendable}"))).await;
    assert_eq!(status, 404, "the sent message left the list");
    for id in [no_origin, no_queue] {
        let (_, e) = send(app.admin(Method::GET, &format!("/dlq/{id}"))).await;
        assert_eq!(e["status"], "parked", "left as it was: {e}");
    }

    // Asking again finds only what cannot be sent.
    let (status, out) = bulk().await.expect("the bulk replay to answer");
    assert_eq!((status, out), (202, json!({"replayed": 0, "skipped": 2})));
}

#[tokio::test]
async fn a_round_that_cannot_be_sent_anywhere_parks_its_entry_with_the_reason() {
    // Salesforce is not enabled (any more): its deliveries have no queue to go to.
    let mut opts = admin_options(true);
    opts.extra_env
        .push(("SYNCROOT_CRMS".into(), "hubspot".into()));
    let app = TestApp::spawn_with(opts).await;
    let mut seed = DeliverySeed::new("salesforce", Uuid::now_v7());
    seed.status = syncroot::store::dead_letters::Status::Retrying;
    seed.code = "UNAVAILABLE";
    seed.next_attempt_at = Some(chrono::Utc::now());
    let id = seed.save(&app.db).await;

    let e = eventually("the due round to park the entry", || async {
        let (_, e) = send(app.admin(Method::GET, &format!("/dlq/{id}"))).await;
        (e["status"] == "parked").then_some(e)
    })
    .await;
    assert_eq!(e["error_code"], "NOT_REPLAYABLE", "{e}");
    assert!(
        e["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("no queue is bound")),
        "{e}"
    );
    assert_eq!(e["next_attempt_at"], serde_json::Value::Null);
    let history = e["errors"].as_array().unwrap();
    assert_eq!(history.len(), 3, "the reason is added to the history: {e}");
    assert_eq!(history[2]["code"], "NOT_REPLAYABLE");
}
