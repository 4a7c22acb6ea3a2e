//! The change feed (`GET /changes`), black-box: pages in order, a cursor that resumes, and a
//! reader that polls while many writers commit in whatever order Postgres lets them, which
//! must see every entry exactly once, each contact's in version order.

use std::collections::{BTreeMap, BTreeSet};

use syncroot_testkit as common;

use common::{TestApp, eventually};
use reqwest::Method;
use serde_json::{Value, json};

/// One page after `after` (none: from the start); the entries and the next cursor.
async fn page(app: &TestApp, after: Option<&str>, limit: u32) -> (Vec<Value>, String) {
    let mut req = app
        .authed(Method::GET, "/changes")
        .query(&[("limit", limit.to_string())]);
    if let Some(a) = after {
        req = req.query(&[("after", a)]);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let changes = body["changes"].as_array().unwrap().clone();
    (changes, body["next_after"].as_str().unwrap().to_owned())
}

/// (contact, version, operation) of an entry.
fn key(e: &Value) -> (String, i64, String) {
    (
        e["contact_id"].as_str().unwrap().to_owned(),
        e["version"].as_i64().unwrap(),
        e["operation"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn the_feed_pages_every_change_in_order_and_a_cursor_resumes_after_the_last() {
    let app = TestApp::spawn().await;
    let a = app
        .create(json!({"email": "feed-a@example.com", "last_name": "A"}))
        .await;
    app.patch_contact(&a, json!({"job_title": "CTO"})).await;
    let b = app
        .create(json!({"email": "feed-b@example.com", "last_name": "B"}))
        .await;
    let r = app
        .authed(Method::DELETE, &format!("/contacts/{a}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let want = vec![
        (a.clone(), 1, "create".to_owned()),
        (a.clone(), 2, "update".to_owned()),
        (b.clone(), 1, "create".to_owned()),
        (a.clone(), 3, "delete".to_owned()),
    ];
    // Two entries a page: the pages join up with nothing missing or repeated.
    let (first, cursor) = eventually("the four changes in the feed", || async {
        let (first, cursor) = page(&app, None, 2).await;
        let (rest, _) = page(&app, Some(&cursor), 10).await;
        (first.len() + rest.len() == 4).then_some((first, cursor))
    })
    .await;
    let (second, after_all) = page(&app, Some(&cursor), 2).await;
    let got: Vec<_> = first.iter().chain(&second).map(key).collect();
    assert_eq!(got, want);
    assert_eq!(
        first[1]["changes"],
        json!([{"field": "job_title", "old": null, "new": "CTO"}]),
        "{first:?}"
    );
    assert_eq!(first[1]["origin"], "api");

    // Nothing new: an empty page that hands the same position back, to poll with.
    let (empty, same) = page(&app, Some(&after_all), 10).await;
    assert!(empty.is_empty());
    assert_eq!(same, after_all);
    app.patch_contact(&b, json!({"last_name": "Bee"})).await;
    let (new, _) = eventually("the new change after the cursor", || async {
        let (new, next) = page(&app, Some(&after_all), 10).await;
        (!new.is_empty()).then_some((new, next))
    })
    .await;
    assert_eq!(
        new.iter().map(key).collect::<Vec<_>>(),
        vec![(b.clone(), 2, "update".to_owned())]
    );
}

#[tokio::test]
async fn a_reader_polling_while_writers_commit_sees_every_change_once_in_version_order() {
    let app = TestApp::spawn().await;
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(
                app.create(json!({"email": format!("busy-{i}@example.com")}))
                    .await,
            );
        }
        ids
    };
    let done = tokio_util::sync::CancellationToken::new();
    let stored_count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM contact_versions")
            .fetch_one(&app.db)
            .await
            .unwrap() as usize
    };
    // The reader follows the feed with small pages the whole time, and once the writers are
    // done, until it has read as many entries as the history holds (a late commit is held
    // back, never skipped, so it keeps reading until it comes).
    let reader = {
        let done = done.clone();
        let app = &app;
        async move {
            let mut seen: Vec<Value> = Vec::new();
            let mut cursor: Option<String> = None;
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let (entries, next) = page(app, cursor.as_deref(), 3).await;
                if entries.is_empty() {
                    // Within the key's rate limit while it waits.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                seen.extend(entries);
                cursor = Some(next);
                if done.is_cancelled() && seen.len() >= stored_count().await {
                    return seen;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the feed served {} entries of {}",
                    seen.len(),
                    stored_count().await
                );
            }
        }
    };
    // Eight writers, each patching the four contacts in turn: the same contacts at once.
    let writers = async {
        let runs = (0..8).map(|w| {
            let (app, ids) = (&app, &ids);
            async move {
                for round in 0..5 {
                    for id in ids {
                        let r = app
                            .authed(Method::PATCH, &format!("/contacts/{id}"))
                            .json(&json!({"job_title": format!("w{w}-r{round}")}))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 202);
                    }
                }
            }
        });
        futures_util::future::join_all(runs).await;
        done.cancel();
    };
    let (seen, ()) = tokio::join!(reader, writers);

    let rows: Vec<(uuid::Uuid, i64)> =
        sqlx::query_as("SELECT contact_id, version FROM contact_versions ORDER BY entry")
            .fetch_all(&app.db)
            .await
            .unwrap();
    let stored: BTreeSet<(String, i64)> = rows.iter().map(|(c, v)| (c.to_string(), *v)).collect();
    let keys: Vec<(String, i64)> = seen.iter().map(|e| (key(e).0, key(e).1)).collect();
    let unique: BTreeSet<(String, i64)> = keys.iter().cloned().collect();
    assert_eq!(unique.len(), keys.len(), "an entry came twice");
    assert_eq!(unique, stored, "the feed and the history differ");
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for (contact, version) in keys {
        let before = last.insert(contact.clone(), version).unwrap_or(0);
        assert!(
            version > before,
            "{contact}: v{version} came after v{before}"
        );
    }
}

#[tokio::test]
async fn a_cursor_the_feed_did_not_give_and_a_limit_out_of_range_are_refused() {
    let app = TestApp::spawn().await;
    for query in [
        "after=not-a-cursor",
        "after=1-",
        "limit=0",
        "limit=1001",
        "limit=x",
    ] {
        let r = app
            .authed(Method::GET, &format!("/changes?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(
            p["type"], "urn:syncroot:problem:invalid-parameters",
            "{query}: {p}"
        );
    }
    let r = reqwest::get(app.url("/changes")).await.unwrap();
    assert_eq!(r.status(), 401);
}
