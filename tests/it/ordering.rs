//! Per-contact order, idempotent redelivery and poison messages, through the real broker.

use syncroot_testkit as common;

use common::{Options, TestApp, eventually};
use reqwest::Method;
use serde_json::{Value, json};
use syncroot::domain::change::CHANGE_FORMAT_VERSION;
use syncroot::domain::{ChangeOp, ContactChange, ContactFields, ContactId, Email};

#[tokio::test]
async fn a_hundred_rapid_updates_with_two_forwarders_end_at_the_last_accepted_one() {
    let app = TestApp::spawn_with(Options {
        forwarders: 2,
        ..Options::default()
    })
    .await;
    let id = app.create(json!({"email": "busy@example.com"})).await;
    let path = format!("/contacts/{id}");
    // Ten clients, ten updates each, all at once: the API decides the order.
    let clients = (0..10).map(|c| {
        let app = &app;
        let path = path.clone();
        async move {
            let mut accepted = Vec::new();
            for i in 0..10 {
                let title = format!("title-{c}-{i}");
                let r = app
                    .authed(Method::PATCH, &path)
                    .json(&json!({"job_title": title}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                let v = r.json::<Value>().await.unwrap()["version"]
                    .as_i64()
                    .unwrap();
                accepted.push((v, title));
            }
            accepted
        }
    });
    let mut accepted: Vec<(i64, String)> = futures_util::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    accepted.sort();
    let versions: Vec<i64> = accepted.iter().map(|(v, _)| *v).collect();
    assert_eq!(
        versions,
        (2..=101).collect::<Vec<_>>(),
        "every update got its own version"
    );
    let (last_version, last_title) = accepted.last().unwrap().clone();
    let c = app.wait_version(&id, last_version).await;
    assert_eq!(
        c["job_title"],
        last_title.as_str(),
        "the API reads back the last accepted state"
    );
    let applied = app.wait_applied(&id, last_version).await;
    assert_eq!(applied["version"], last_version);
    assert_eq!(
        applied["job_title"],
        last_title.as_str(),
        "the forwarders applied the last one last"
    );
}

fn change(id: ContactId, seq: i64, title: &str) -> ContactChange {
    let now = chrono::Utc::now();
    ContactChange {
        v: CHANGE_FORMAT_VERSION,
        message_id: uuid::Uuid::new_v4(),
        contact_id: id,
        seq,
        op: ChangeOp::Upsert,
        origin: syncroot::domain::Origin::Api,
        accepted_at: now + chrono::Duration::milliseconds(seq),
        created_at: now,
        contact: ContactFields {
            email: Email::parse("redelivered@example.com").unwrap(),
            first_name: None,
            last_name: None,
            phone: None,
            company: None,
            job_title: Some(title.into()),
        },
        bulk: false,
    }
}

/// Records `c` as the contact's accepted head, as the API's accept transaction does.
async fn accept(app: &TestApp, c: &ContactChange) {
    sqlx::query(
        "INSERT INTO contact_heads (id, seq, email, doc, created_at, accepted_at, message_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, doc = EXCLUDED.doc, message_id = EXCLUDED.message_id",
    )
    .bind(c.contact_id.0)
    .bind(c.seq)
    .bind(c.contact.email.as_str())
    .bind(sqlx::types::Json(&c.contact))
    .bind(c.created_at)
    .bind(c.accepted_at)
    .bind(c.message_id)
    .execute(&app.db)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_change_whose_acceptance_rolled_back_is_never_applied() {
    let app = TestApp::spawn().await;
    let topo = app.topology();
    let id = ContactId::new();
    let queue = topo.shard_queue(id.shard(topo.shards));
    let body = |c: &ContactChange| syncroot::queue::envelope::encode(c).0;
    // The broker confirmed these, but the API's transaction rolled back: no head at all for the
    // create, and a head at seq 1 naming another message for the rest.
    let ghost_create = change(id, 1, "ghost");
    app.publish_raw(&queue, &body(&ghost_create)).await;
    let real = change(id, 1, "real");
    accept(&app, &real).await;
    let ghost_same_seq = change(id, 1, "ghost again");
    let ghost_next = change(id, 2, "ghost next");
    app.publish_raw(&queue, &body(&ghost_same_seq)).await;
    app.publish_raw(&queue, &body(&ghost_next)).await;
    // The forwarder has acknowledged all three (its acknowledgement is counted once the
    // broker took it), so whatever it would apply of them is in Postgres by now.
    app.wait_forwarded(3).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(n, 0, "no change the API did not commit was applied");
    app.publish_raw(&queue, &body(&real)).await;
    let c = app.wait_applied(&id.to_string(), 1).await;
    assert_eq!(c["job_title"], "real");
}

async fn persisted_at(app: &TestApp, id: ContactId) -> chrono::DateTime<chrono::Utc> {
    sqlx::query_scalar("SELECT persisted_at FROM contacts WHERE id = $1")
        .bind(id.0)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_redelivered_or_stale_change_is_not_applied_again() {
    let app = TestApp::spawn().await;
    let topo = app.topology();
    let id = ContactId::new();
    let queue = topo.shard_queue(id.shard(topo.shards));
    let first = change(id, 1, "first");
    let second = change(id, 2, "second");
    // The API accepted both (the head names the second), as if they had gone through it.
    accept(&app, &second).await;
    let body = |c: &ContactChange| syncroot::queue::envelope::encode(c).0;
    app.publish_raw(&queue, &body(&first)).await;
    let c = app.wait_applied(&id.to_string(), 1).await;
    assert_eq!(c["job_title"], "first");
    let applied_at = persisted_at(&app, id).await;
    // The same message alone again: consumed, and the row untouched.
    app.publish_raw(&queue, &body(&first)).await;
    app.wait_forwarded(2).await;
    assert_eq!(
        persisted_at(&app, id).await,
        applied_at,
        "a redelivery changes nothing"
    );

    // The same message again (as after a crash before the ack), then a newer one, then the
    // old one once more: the newer one wins and the redeliveries change nothing.
    app.publish_raw(&queue, &body(&first)).await;
    app.publish_raw(&queue, &body(&second)).await;
    app.publish_raw(&queue, &body(&first)).await;
    app.wait_applied(&id.to_string(), 2).await;
    app.wait_forwarded(5).await;
    let c = app.wait_applied(&id.to_string(), 2).await;
    assert_eq!(c["job_title"], "second");
    assert_eq!(c["version"], 2);
    let msg: uuid::Uuid = sqlx::query_scalar("SELECT last_message_id FROM contacts WHERE id = $1")
        .bind(id.0)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(msg, second.message_id);
    assert!(persisted_at(&app, id).await > applied_at);
}

/// A pack of three changes whose second Postgres refuses (it stores no NUL character): the
/// other two are applied, and the refused one is sent on alone and, refused again, is the only
/// message dead-lettered, as a change of its own naming its contact.
#[tokio::test]
async fn a_change_of_a_pack_that_postgres_refuses_is_dead_lettered_alone_and_the_rest_applied() {
    use syncroot::domain::change::{ChangePack, PackedChange};
    use syncroot::queue::envelope;
    let app = TestApp::spawn_with(Options {
        shards: 1,
        ..Options::default()
    })
    .await;
    let topo = app.topology();
    let mut changes: Vec<ContactChange> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let mut c = change(ContactId::new(), 1, n);
            c.contact.email = Email::parse(&format!("pack-{n}@example.com")).unwrap();
            c
        })
        .collect();
    for c in &changes {
        accept(&app, c).await;
    }
    changes[1].contact.first_name = Some("nul \u{0} inside".into());
    let pack = ChangePack {
        v: CHANGE_FORMAT_VERSION,
        changes: changes
            .iter()
            .map(|c| PackedChange {
                change: c.clone(),
                trace: Default::default(),
            })
            .collect(),
    };
    let (body, props) = envelope::encode_pack(&pack);
    let publisher = app.publisher(std::time::Duration::from_secs(5)).await;
    publisher
        .publish("", &topo.shard_queue(0), &body, props)
        .await
        .unwrap();
    for c in [&changes[0], &changes[2]] {
        let applied = app.wait_applied(&c.contact_id.to_string(), 1).await;
        assert_eq!(applied["email"], c.contact.email.as_str());
    }
    let dlq = topo.dead_letter_queue();
    eventually("the refused change in the dead-letter queue", || async {
        (app.queue_depth(&dlq).await == 1).then_some(())
    })
    .await;
    assert_eq!(
        app.queued_contacts(&dlq).await,
        [changes[1].contact_id.to_string()],
        "only the refused change is dead-lettered"
    );
    assert_eq!(app.queue_depth(&topo.shard_queue(0)).await, 0);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(n, 2);
}

#[tokio::test]
async fn an_unreadable_message_is_dead_lettered_and_the_forwarder_carries_on() {
    let app = TestApp::spawn_with(Options {
        shards: 1,
        ..Options::default()
    })
    .await;
    let topo = app.topology();
    app.publish_raw(&topo.shard_queue(0), b"this is not a change")
        .await;
    let mut future = serde_json::to_value(change(ContactId::new(), 1, "x")).unwrap();
    future["v"] = json!(99);
    app.publish_raw(&topo.shard_queue(0), future.to_string().as_bytes())
        .await;
    eventually("both messages in the dead-letter queue", || async {
        (app.queue_depth(&topo.dead_letter_queue()).await == 2).then_some(())
    })
    .await;
    // The shard is not wedged: the forwarder applies a normal create after them.
    let id = app
        .create(json!({"email": "after-poison@example.com"}))
        .await;
    app.wait_applied(&id, 1).await;
    app.wait_forwarded(3).await;
    assert_eq!(app.forwarded(), 3, "two dead-lettered, one applied");
}

#[tokio::test]
async fn stopping_finishes_in_flight_work_and_leaves_nothing_unacknowledged() {
    let mut app = TestApp::spawn().await;
    let bodies: Vec<Value> = (0..20)
        .map(|i| json!({"email": format!("s{i}@example.com")}))
        .collect();
    let writes = bodies.iter().map(|b| app.post_contact(b));
    for r in futures_util::future::join_all(writes).await {
        assert_eq!(r.status(), 202);
    }
    app.stop().await;
    // Whatever the forwarder had not applied is queued again; nothing was lost on the way. A
    // quorum queue takes back what a closed channel held unacknowledged a moment after the
    // close, so the count is waited for, not read once. A pack is queued again whole, so a
    // change of one may be both persisted and queued: each contact is counted once.
    let topo = app.topology();
    eventually("every accepted change persisted or queued", || async {
        let mut queued = std::collections::BTreeSet::new();
        for s in 0..topo.shards {
            queued.extend(app.queued_contacts(&topo.shard_queue(s)).await);
        }
        let persisted: Vec<String> = sqlx::query_scalar("SELECT id::text FROM contacts")
            .fetch_all(&app.db)
            .await
            .ok()?;
        queued.extend(persisted);
        (queued.len() == 20).then_some(())
    })
    .await;
}

/// Concurrent updates of one contact reach each CRM in the order the API gave them: the
/// sandboxes' own write logs show the record's job title never going back to an older
/// version's, and ending at the last one.
#[tokio::test]
async fn concurrent_updates_of_one_contact_reach_each_crm_in_version_order() {
    updates_reach_each_crm_in_version_order(1, Vec::new()).await;
}

/// The same with two CRM calls in flight per CRM, each slowed down so they overlap: a
/// contact's tasks that arrive while it is in one call wait for the next.
#[tokio::test]
async fn with_two_calls_in_flight_per_crm_each_contact_still_reaches_it_in_version_order() {
    let env = vec![("SYNCROOT_DELIVERY_CONCURRENCY".into(), "2".into())];
    updates_reach_each_crm_in_version_order(4, env).await;
}

async fn updates_reach_each_crm_in_version_order(contacts: usize, env: Vec<(String, String)>) {
    let app = TestApp::spawn_with(Options {
        delivery: true,
        forwarders: 2,
        extra_env: env,
        ..Options::default()
    })
    .await;
    if contacts > 1 {
        for base in [app.hubspot(), app.salesforce()] {
            app.sandbox_control()
                .put(
                    base,
                    "faults",
                    &json!({"latency_ms": 10, "latency_jitter_ms": 60}),
                )
                .await
                .unwrap();
        }
    }
    let mut ids = Vec::new();
    for n in 0..contacts {
        let body = json!({"email": format!("in-order-{n}@example.com"), "last_name": "Order"});
        ids.push(app.create(body).await);
    }
    // Five clients per contact, eight updates each, all at once; the API numbers them.
    let app = &app;
    let clients = ids.iter().flat_map(|id| {
        let path = format!("/contacts/{id}");
        (0..5).map(move |c| {
            let path = path.clone();
            async move {
                let mut accepted = Vec::new();
                for i in 0..8 {
                    let title = format!("title-{c}-{i}-{path}");
                    let r = app
                        .authed(Method::PATCH, &path)
                        .json(&json!({"job_title": title}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                    let v = r.json::<Value>().await.unwrap()["version"]
                        .as_i64()
                        .unwrap();
                    accepted.push((title, v));
                }
                accepted
            }
        })
    });
    let version_of: std::collections::HashMap<String, i64> =
        futures_util::future::join_all(clients)
            .await
            .into_iter()
            .flatten()
            .collect();
    for id in &ids {
        let mine = |title: &str| title.ends_with(&format!("/contacts/{id}"));
        let last = *version_of
            .iter()
            .filter(|(t, _)| mine(t))
            .map(|(_, v)| v)
            .max()
            .unwrap();
        let c = app.wait_synced(id, last).await;
        for (crm, base, title_field) in [
            ("hubspot", app.hubspot(), "jobtitle"),
            ("salesforce", app.salesforce(), "Title"),
        ] {
            let record = common::remote_id(&c, crm);
            let writes = app.sandbox_control().writes(base, 0).await.unwrap();
            let written: Vec<i64> = writes
                .iter()
                .filter(|w| w["record_id"] == record.as_str() && w["source"] == "integration")
                .filter_map(|w| version_of.get(w["values"][title_field].as_str()?).copied())
                .collect();
            assert!(!written.is_empty(), "{crm}: no write carried a title");
            assert!(
                written.windows(2).all(|w| w[0] <= w[1]),
                "{crm}: versions written out of order: {written:?}"
            );
            assert_eq!(
                written.last(),
                Some(&last),
                "{crm}: ends at the last version"
            );
        }
    }
}

/// Changes applied together answer as each would alone: a change never accepted is skipped,
/// a new one applied, a redelivered one recognised, an older one stale; a change whose
/// contact has an acceptance in progress is left to be applied alone, and waiting for that
/// acceptance ends when it does.
#[tokio::test]
async fn changes_applied_together_answer_as_each_would_alone() {
    use syncroot::store::contacts::{self, Applied};
    use syncroot::store::heads::lock_key;
    let app = TestApp::spawn().await;
    // A change of its own contact, at its own address.
    let change = |id: ContactId, seq: i64, title: &str| {
        let mut c = change(id, seq, title);
        c.contact.email = Email::parse(&format!("{}@example.com", id.0.simple())).unwrap();
        c
    };
    let ghost = change(ContactId::new(), 1, "never accepted");
    let new = change(ContactId::new(), 1, "new");
    accept(&app, &new).await;
    let again = change(ContactId::new(), 1, "again");
    accept(&app, &again).await;
    let (older, newer) = {
        let id = ContactId::new();
        (change(id, 1, "older"), change(id, 2, "newer"))
    };
    accept(&app, &newer).await;
    let busy = change(ContactId::new(), 1, "busy");
    accept(&app, &busy).await;
    // Already applied: a redelivery, and a later version than the one arriving.
    assert_eq!(
        contacts::apply_many(&app.db, &[&again, &newer])
            .await
            .unwrap(),
        [Some(Applied::New), Some(Applied::New)]
    );
    // An acceptance of `busy` in progress: the API holds its lock.
    let mut api = app.db.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key(busy.contact_id))
        .execute(&mut *api)
        .await
        .unwrap();
    let answers = contacts::apply_many(&app.db, &[&ghost, &new, &again, &older, &busy])
        .await
        .unwrap();
    assert_eq!(
        answers,
        [
            Some(Applied::NotAccepted),
            Some(Applied::New),
            Some(Applied::Already),
            Some(Applied::Stale),
            None,
        ]
    );
    let title = |id: ContactId| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>("SELECT job_title FROM contacts WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&db)
                .await
                .unwrap()
                .flatten()
        }
    };
    assert_eq!(title(new.contact_id).await.as_deref(), Some("new"));
    assert_eq!(title(older.contact_id).await.as_deref(), Some("newer"));
    assert_eq!(title(ghost.contact_id).await, None);
    assert_eq!(
        title(busy.contact_id).await,
        None,
        "left to be applied alone"
    );
    // Waiting for the acceptance in progress ends once it commits, and then it applies.
    let waiting = tokio::spawn({
        let db = app.db.clone();
        async move { contacts::wait_for_acceptances(&db, &[busy.contact_id]).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "waits while the acceptance is in progress"
    );
    api.commit().await.unwrap();
    waiting.await.unwrap().unwrap();
    let busy = change(busy.contact_id, 1, "busy");
    assert_eq!(
        contacts::apply_many(&app.db, &[&busy]).await.unwrap()[0],
        Some(Applied::NotAccepted),
        "another message of the same number is not the accepted one"
    );
}

/// Forty creates sent at once, with a forwarder whose linger is long: the changes that come
/// within a linger of the first group wait for one another and go into Postgres together.
/// (`xmin` names the transaction that wrote a row.) With the linger off they go in as they
/// arrive, in eight to twelve transactions.
#[tokio::test]
async fn changes_arriving_together_are_applied_together_while_the_forwarder_lingers() {
    let app = TestApp::spawn_with(Options {
        extra_env: vec![("SYNCROOT_FORWARDER_LINGER_MS".into(), "1000".into())],
        shards: 1,
        ..Options::default()
    })
    .await;
    let creates = (0..40).map(|i| app.create(json!({"email": format!("together{i}@example.com")})));
    let ids: Vec<String> = futures_util::future::join_all(creates).await;
    for id in &ids {
        app.wait_applied(id, 1).await;
    }
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.parse().unwrap()).collect();
    let (rows, transactions): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT xmin::text) FROM contacts WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(rows, 40, "every change applied");
    // The first group goes at once (nothing came before it), perhaps in two transactions when
    // an acceptance was still in progress; the rest wait for one another.
    assert!(
        transactions <= 4,
        "40 changes that came together were applied in {transactions} transactions"
    );
}
