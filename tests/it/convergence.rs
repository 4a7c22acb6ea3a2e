//! Convergence under a seeded random history: contacts edited through the API, in HubSpot's UI
//! and in Salesforce's UI, often the same contact and field at nearly the same time, now and
//! then deleted through the API or merged in HubSpot, with HubSpot's webhooks shuffled and
//! duplicated and, for a while, held back (the poller must find those changes). At quiescence
//! SyncRoot, HubSpot and Salesforce hold the same values for every live contact, deleted ones
//! are gone everywhere, merged-away ones are retired with their Salesforce record left for a
//! person, and no CRM was written more often than changes reached it from elsewhere: echoes
//! cost nothing.
//!
//! A short run with a fixed seed; `CONVERGENCE_SEED` and `CONVERGENCE_OPS` make longer ones.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};
use syncroot_testkit::{Options, TestApp, eventually};

/// A field edited in the run, by its name in SyncRoot, HubSpot and Salesforce.
const FIELDS: [(&str, &str, &str); 3] = [
    ("first_name", "firstname", "FirstName"),
    ("job_title", "jobtitle", "Title"),
    ("phone", "phone", "Phone"),
];

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Contact {
    id: String,
    hubspot: String,
    salesforce: String,
}

#[tokio::test]
async fn api_and_both_crms_converge_on_every_contact_without_echo_writes() {
    let seed = setting("CONVERGENCE_SEED", 7);
    let ops = setting("CONVERGENCE_OPS", 60);
    eprintln!("convergence: seed {seed}, {ops} operations");
    let mut rng = StdRng::seed_from_u64(seed);
    let app = TestApp::spawn_with(Options {
        delivery: true,
        two_way: true,
        extra_env: vec![("SYNCROOT_POLL_INTERVAL_SECS".into(), "1".into())],
        ..Options::default()
    })
    .await;
    let faults = json!({"webhook_shuffle": true, "webhook_duplicate_rate": 0.3});
    app.control(app.hubspot(), Method::PUT, "faults", Some(faults))
        .await;

    let mut contacts = Vec::new();
    let (mut deleted, mut merged) = (Vec::new(), Vec::new());
    for i in 0..8 {
        let id = app
            .create(json!({"email": format!("conv{i}@example.com"), "last_name": "Converge"}))
            .await;
        let c = eventually("the contact in both CRMs", || async {
            let c: Value = app.get_contact(&id).await.json().await.ok()?;
            let hs = c["sync"]["hubspot"]["remote_id"].as_str()?.to_owned();
            let sf = c["sync"]["salesforce"]["remote_id"].as_str()?.to_owned();
            Some((hs, sf))
        })
        .await;
        contacts.push(Contact {
            id,
            hubspot: c.0,
            salesforce: c.1,
        });
    }

    for op in 0..ops {
        // Rarely, a contact is deleted through the API, or merged into another in HubSpot; it
        // leaves the pool (a few always stay).
        if contacts.len() > 4 && rng.random_ratio(1, 25) {
            let gone: Contact = contacts.swap_remove(rng.random_range(0..contacts.len()));
            let r = app
                .authed(Method::DELETE, &format!("/contacts/{}", gone.id))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202, "op {op}");
            deleted.push(gone);
            continue;
        }
        if contacts.len() > 4 && rng.random_ratio(1, 25) {
            let gone: Contact = contacts.swap_remove(rng.random_range(0..contacts.len()));
            let into = &contacts[rng.random_range(0..contacts.len())];
            let body = json!({"primaryObjectId": into.hubspot, "objectIdToMerge": gone.hubspot});
            app.control(app.hubspot(), Method::POST, "ui/contacts/merge", Some(body))
                .await;
            eprintln!(
                "convergence: op {op}: {} merged into {} in HubSpot",
                gone.id, into.id
            );
            merged.push(gone);
            continue;
        }
        let c = &contacts[rng.random_range(0..contacts.len())];
        let (field, hs_field, sf_field) = FIELDS[rng.random_range(0..FIELDS.len())];
        let value = if field == "phone" {
            format!("+1 555 {op:04}")
        } else {
            format!("v{op}")
        };
        // Now and then HubSpot's webhooks stop for a while: what they would have said must
        // come from the poller (or from their late delivery, whichever is first).
        if op % 20 == 5 {
            let paused = json!({"webhooks_paused": op % 40 == 5});
            app.control(app.hubspot(), Method::PUT, "faults", Some(paused))
                .await;
        }
        match rng.random_range(0..3) {
            0 => {
                let r = app
                    .authed(Method::PATCH, &format!("/contacts/{}", c.id))
                    .header("content-type", "application/merge-patch+json")
                    .body(json!({ field: value }).to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202, "op {op}");
            }
            1 => {
                let body = json!({"properties": { hs_field: value }});
                let path = format!("ui/contacts/{}", c.hubspot);
                app.control(app.hubspot(), Method::PATCH, &path, Some(body))
                    .await;
            }
            _ => {
                let path = format!("ui/contacts/{}", c.salesforce);
                app.control(
                    app.salesforce(),
                    Method::PATCH,
                    &path,
                    Some(json!({ sf_field: value })),
                )
                .await;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(rng.random_range(0..40))).await;
    }
    app.control(
        app.hubspot(),
        Method::PUT,
        "faults",
        Some(json!({"webhooks_paused": false})),
    )
    .await;

    for c in &contacts {
        eventually(&format!("{} to agree in all three", c.id), || async {
            let ours: Value = app.get_contact(&c.id).await.json().await.ok()?;
            let hs = app.sandbox_record(app.hubspot(), &c.hubspot).await;
            let sf = app.sandbox_record(app.salesforce(), &c.salesforce).await;
            let version = ours["version"].clone();
            let synced = ["hubspot", "salesforce"]
                .iter()
                .all(|crm| ours["sync"][crm]["synced_version"] == version);
            let agree = FIELDS.iter().all(|(f, h, s)| {
                let v = ours[f].as_str().unwrap_or("");
                hs["properties"][h].as_str().unwrap_or("") == v && sf[s].as_str().unwrap_or("") == v
            });
            (synced && agree).then_some(())
        })
        .await;
    }

    for c in &deleted {
        eventually(&format!("{} deleted everywhere", c.id), || async {
            let gone = app.get_contact(&c.id).await.status() == 404;
            let hs = app.sandbox_record(app.hubspot(), &c.hubspot).await;
            let sf = app.sandbox_record(app.salesforce(), &c.salesforce).await;
            (gone && hs["archived"] == true && sf["IsDeleted"] == true).then_some(())
        })
        .await;
    }
    for c in &merged {
        eventually(&format!("{} merged away", c.id), || async {
            (app.get_contact(&c.id).await.status() == 404).then_some(())
        })
        .await;
        let sf = app.sandbox_record(app.salesforce(), &c.salesforce).await;
        assert_eq!(
            sf["IsDeleted"], false,
            "a merged-away contact's record is left: {sf}"
        );
    }
    eprintln!(
        "convergence: {} live, {} deleted, {} merged away",
        contacts.len(),
        deleted.len(),
        merged.len()
    );

    // Every write to a CRM carried a change that came from elsewhere (or corrected a change of
    // its own that lost): the creates, the versions from the API or the other CRM, and the
    // corrections. Echoes would push a CRM's writes past that.
    for (crm, base) in [("hubspot", app.hubspot()), ("salesforce", app.salesforce())] {
        let allowed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM contact_versions WHERE origin <> $1 OR operation = 'kept'",
        )
        .bind(crm)
        .fetch_one(&app.db)
        .await
        .unwrap();
        let counters = app.control(base, Method::GET, "counters", None).await;
        let written = counters["records_written"].as_i64().unwrap();
        eprintln!("convergence: {crm} written {written}, changes from elsewhere {allowed}");
        assert!(
            written <= allowed,
            "{crm}: {written} writes for {allowed} changes from elsewhere"
        );
    }
}
