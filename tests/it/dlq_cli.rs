//! `syncroot dlq`, black-box: the real binary against a running app's admin API.

use syncroot_testkit as common;

use common::dlq::{DeliverySeed, seed_message};
use common::{ADMIN_KEY, TestApp, admin_options};
use serde_json::Value;
use syncroot::store::dead_letters::RawMessage;
use uuid::Uuid;

/// Runs `syncroot dlq <args>` with only `env` in its environment; returns (success, stdout,
/// stderr). Async, so the app serving the request keeps running on this test's runtime.
async fn dlq(env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_syncroot"))
        .arg("dlq")
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .await
        .expect("the syncroot binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_lists_shows_replays_and_discards_through_the_admin_api() {
    let app = TestApp::spawn_with(admin_options(false)).await;
    let contact = Uuid::new_v4();
    let hubspot = DeliverySeed::new("hubspot", contact).save(&app.db).await;
    let salesforce = DeliverySeed::new("salesforce", contact).save(&app.db).await;
    let message = seed_message(&app.db, RawMessage::default()).await;
    let flags = ["--url", &app.base, "--key", ADMIN_KEY];

    let (ok, out, err) = dlq(&[], &[&["list", "--json"][..], &flags].concat()).await;
    assert!(ok, "{err}");
    let page: Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            hubspot.to_string(),
            salesforce.to_string(),
            message.to_string()
        ]
    );

    // The defaults come from the configuration: api_listen and the first admin key.
    let listen = app.base.trim_start_matches("http://");
    let env = [
        ("SYNCROOT_API_LISTEN", listen),
        ("SYNCROOT_ADMIN_KEYS", ADMIN_KEY),
    ];
    let (ok, out, err) = dlq(&env, &["list", "--limit", "1", "--all-pages"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "a header and every entry, over three pages:\n{out}"
    );
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("LAST FAILED"),
        "{out}"
    );
    assert!(lines[1].starts_with(&hubspot.to_string()), "{out}");
    assert!(lines[3].starts_with(&message.to_string()), "{out}");

    let (ok, out, err) = dlq(&env, &["list", "--crm", "salesforce"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[1].starts_with(&salesforce.to_string()), "{out}");
    assert!(
        lines[1].contains("INVALID_EMAIL") && lines[1].contains("parked"),
        "{out}"
    );

    let (ok, out, err) = dlq(&env, &["show", &hubspot.to_string()]).await;
    assert!(ok, "{err}");
    assert!(out.contains("errors (2, oldest first):"), "{out}");
    assert!(
        out.contains("UNAVAILABLE  retryable  HubSpot answered 503"),
        "{out}"
    );

    let (ok, _, err) = dlq(&env, &["show", &Uuid::now_v7().to_string()]).await;
    assert!(!ok);
    assert!(
        err.contains("404 Not found: no dead-letter entry has id"),
        "{err}"
    );

    let (ok, _, err) = dlq(&env, &["discard"]).await;
    assert!(!ok, "a bare discard is refused");
    assert!(err.contains("--all"), "{err}");

    let (ok, _, err) = dlq(&env, &["replay", &message.to_string()]).await;
    assert!(!ok);
    assert!(err.contains("409 Cannot be replayed"), "{err}");

    let (ok, out, err) = dlq(&env, &["discard", "--crm", "hubspot"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "discarded 1 entry\n");
    let (ok, out, err) = dlq(&env, &["discard", &message.to_string()]).await;
    assert!(ok, "{err}");
    assert_eq!(out, format!("discarded {message}\n"));

    let (ok, _, err) = dlq(&[("SYNCROOT_API_LISTEN", listen)], &["list"]).await;
    assert!(!ok, "no admin key anywhere");
    assert!(err.contains("no admin key"), "{err}");
    let (ok, _, err) = dlq(
        &[],
        &[&["list"][..], &["--url", &app.base, "--key", common::KEY]].concat(),
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("403 Forbidden"),
        "a write key lacks the admin scope: {err}"
    );
}
