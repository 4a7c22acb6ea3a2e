//! The backfill job: going live on CRMs that already hold contacts. Both sandboxes are seeded
//! (people in both, people on one side only, a duplicate pair inside Salesforce — HubSpot, like
//! the real one, refuses a second record with an address), a few contacts are already in
//! SyncRoot with values edited behind it; a dry run writes nothing and reports what the backfill
//! then does; afterwards every person exists once in SyncRoot and once in each CRM, linked,
//! the duplicates are reported and left alone, differing values are resolved by the policy;
//! a second run writes nothing; a job whose runner process is killed resumes. Each CRM is read
//! once, and what the read found lets delivery link or create records without matching
//! queries.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{Value, json};
use syncroot_testkit::{KEY, TestApp, eventually, remote_id};

use crate::drift::{
    app_with_runner, app_with_runner_and, cli, kill_runner_when, roles_start_job,
    roles_with_runner, slow_hubspot, start_job, ui_edit, wait_finished, webhooks_off,
};

const BOTH: usize = 120;
const HUBSPOT_ONLY: usize = 60;
const SALESFORCE_ONLY: usize = 50;
const ALREADY: usize = 4;
/// People in both CRMs whose Salesforce record has another phone.
const DIFFERING: [usize; 6] = [0, 17, 34, 51, 68, 85];

fn hubspot_person(email: &str, i: usize) -> Value {
    json!({"email": email, "firstname": format!("P{i}"), "lastname": "Backfill",
        "phone": format!("+1 555 {i:04}"), "jobtitle": "Engineer"})
}

fn salesforce_person(email: &str, i: usize) -> Value {
    json!({"Email": email, "FirstName": format!("P{i}"), "LastName": "Backfill",
        "Phone": format!("+1 555 {i:04}"), "Title": "Engineer"})
}

async fn seed(app: &TestApp, base: &str, records: Vec<Value>) {
    app.control(base, Method::POST, "seed", Some(Value::Array(records)))
        .await;
}

/// Every live contact SyncRoot holds (the API at `url`), by e-mail.
async fn every_contact(
    http: &reqwest::Client,
    url: impl Fn(&str) -> String,
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/contacts?limit=200&cursor={c}"),
            None => "/contacts?limit=200".to_owned(),
        };
        let r = http.get(url(&path)).bearer_auth(KEY).send().await.unwrap();
        let page: Value = r.json().await.unwrap();
        for c in page["items"].as_array().unwrap() {
            let email = c["email"].as_str().unwrap().to_owned();
            assert!(
                out.insert(email.clone(), c.clone()).is_none(),
                "{email} twice"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

async fn contacts(app: &TestApp) -> BTreeMap<String, Value> {
    every_contact(&app.http, |p| app.url(p)).await
}

/// The live records' e-mail addresses (lower-cased) in a sandbox, with how many records hold each.
async fn held(app: &TestApp, base: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in app.sandbox_contacts(base).await {
        if c["archived"] == true {
            continue;
        }
        let email = c["properties"]["email"]
            .as_str()
            .or(c["Email"].as_str())
            .unwrap_or_default()
            .to_lowercase();
        *out.entry(email).or_default() += 1;
    }
    out
}

/// A seeded record of a sandbox, by its (lower-cased) address.
async fn seeded(app: &TestApp, base: &str, email: &str) -> Value {
    app.sandbox_contacts(base)
        .await
        .into_iter()
        .find(|c| {
            c["properties"]["email"]
                .as_str()
                .or(c["Email"].as_str())
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
        .unwrap_or_else(|| panic!("no record of {email}"))
}

/// A modification time as HubSpot (RFC 3339) or Salesforce (`+0000` offset) writes it.
fn modified(at: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(at)
        .or_else(|_| chrono::DateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .unwrap_or_else(|e| panic!("{at}: {e}"))
        .with_timezone(&chrono::Utc)
}

/// Waits until every contact is written in both CRMs at its current version.
async fn settled(app: &TestApp) -> BTreeMap<String, Value> {
    eventually("every contact synced in both CRMs", || async {
        let all = contacts(app).await;
        all.values()
            .all(|c| {
                ["hubspot", "salesforce"]
                    .iter()
                    .all(|crm| c["sync"][crm]["synced_version"] == c["version"])
            })
            .then_some(all)
    })
    .await
}

async fn backfill(app: &TestApp, dry_run: bool) -> Value {
    let queued = start_job(
        app,
        json!({"kind": "backfill", "params": {"dry_run": dry_run}}),
    )
    .await;
    let done = wait_finished(app, queued["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    done
}

fn counters(job: &Value) -> BTreeMap<String, u64> {
    serde_json::from_value(job["result"]["counters"].clone()).unwrap()
}

/// What the sandboxes were asked to write, and every contact's version.
async fn footprint(app: &TestApp) -> (u64, u64, BTreeMap<String, Value>) {
    let versions = contacts(app)
        .await
        .into_iter()
        .map(|(e, c)| (e, c["version"].clone()))
        .collect();
    (
        app.records_written(app.hubspot()).await,
        app.records_written(app.salesforce()).await,
        versions,
    )
}

#[tokio::test]
async fn backfill_matches_both_crms_once_each_reports_duplicates_and_a_second_run_writes_nothing() {
    let app = app_with_runner().await;
    // Contacts already in SyncRoot (and in both CRMs), then edited behind SyncRoot's back.
    let mut already = Vec::new();
    for n in 0..ALREADY {
        let id = app
            .create(
                json!({"email": format!("already{n}@example.com"), "last_name": "Known",
                "phone": "+1 555 0100", "job_title": "Engineer"}),
            )
            .await;
        already.push(app.wait_synced(&id, 1).await);
    }
    webhooks_off(&app, &[app.hubspot(), app.salesforce()]).await;
    // An HubSpot edit dated before SyncRoot's value: last writer wins, it loses.
    let an_hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let hubspot_0 = remote_id(&already[0], "hubspot");
    ui_edit(
        &app,
        app.hubspot(),
        &format!("{hubspot_0}?at={an_hour_ago}"),
        json!({"properties": {"phone": "+1 555 0999"}}),
    )
    .await;
    // A Salesforce edit in a later second than SyncRoot's value: it wins.
    let accepted: chrono::DateTime<chrono::Utc> =
        already[1]["updated_at"].as_str().unwrap().parse().unwrap();
    eventually("the next second", || async {
        (chrono::Utc::now().timestamp() > accepted.timestamp()).then_some(())
    })
    .await;
    let salesforce_1 = remote_id(&already[1], "salesforce");
    ui_edit(
        &app,
        app.salesforce(),
        &salesforce_1,
        json!({"Title": "Chief Backfill Officer"}),
    )
    .await;

    let mut hubspot = Vec::new();
    let mut salesforce = Vec::new();
    for i in 0..BOTH {
        // Addresses as people type them: the match is on the normalised address.
        hubspot.push(hubspot_person(&format!("Both{i}@Example.com"), i));
        let mut theirs = salesforce_person(&format!("both{i}@example.COM"), i);
        if DIFFERING.contains(&i) {
            theirs["Phone"] = json!(format!("+44 20 {i:04}"));
        }
        salesforce.push(theirs);
    }
    for i in 0..HUBSPOT_ONLY {
        hubspot.push(hubspot_person(&format!("hs{i}@example.com"), 1000 + i));
    }
    for i in 0..SALESFORCE_ONLY {
        salesforce.push(salesforce_person(&format!("sf{i}@example.com"), 2000 + i));
    }
    // Two Salesforce records of one address (and one HubSpot record of it): never guessed.
    salesforce.push(salesforce_person("twin@example.com", 3000));
    salesforce.push(salesforce_person("Twin@Example.com", 3001));
    hubspot.push(hubspot_person("twin@example.com", 3002));
    seed(&app, app.hubspot(), hubspot).await;
    seed(&app, app.salesforce(), salesforce).await;

    // People in both CRMs whose phones differ: the newer record's phone wins everywhere.
    let mut newer_phone = BTreeMap::new();
    for i in DIFFERING {
        let email = format!("both{i}@example.com");
        let hs = seeded(&app, app.hubspot(), &email).await;
        let sf = seeded(&app, app.salesforce(), &email).await;
        let hs_at = modified(hs["properties"]["lastmodifieddate"].as_str().unwrap());
        let sf_at = modified(sf["SystemModstamp"].as_str().unwrap());
        let phone = if hs_at > sf_at {
            hs["properties"]["phone"].clone()
        } else {
            sf["Phone"].clone()
        };
        newer_phone.insert(email, phone);
    }
    assert!(
        newer_phone
            .values()
            .any(|p| p.as_str().unwrap().starts_with("+44")),
        "some Salesforce record is the newer: {newer_phone:?}"
    );

    // A dry run writes nothing.
    let before = footprint(&app).await;
    let dry = backfill(&app, true).await;
    assert_eq!(dry["result"]["dry_run"], true);
    assert_eq!(
        footprint(&app).await,
        before,
        "a dry run writes nothing: {dry}"
    );
    let dry_counts = counters(&dry);
    let read = (ALREADY + BOTH + HUBSPOT_ONLY + 1) + (ALREADY + BOTH + SALESFORCE_ONLY + 2);
    let created = BOTH + HUBSPOT_ONLY + SALESFORCE_ONLY;
    assert_eq!(dry_counts["read"], read as u64, "{dry}");
    assert_eq!(dry_counts["created"], created as u64, "{dry}");
    assert_eq!(dry_counts["matched"], (2 * ALREADY + BOTH) as u64, "{dry}");
    // Every created contact's record, and each second record of a person in both CRMs; the
    // contacts already in SyncRoot were linked.
    assert_eq!(dry_counts["linked"], (created + BOTH) as u64, "{dry}");
    assert_eq!(dry_counts["duplicates"], 3, "{dry}");
    assert_eq!(dry_counts["updated"], 1, "{dry}");
    assert_eq!(
        dry_counts["conflicts"], 1,
        "the HubSpot edit that lost: {dry}"
    );
    assert_eq!(dry_counts["errors"], 0, "{dry}");

    // The backfill, counting the CRM calls it and the deliveries it causes make.
    for base in [app.hubspot(), app.salesforce()] {
        app.control(base, Method::POST, "counters/reset", None)
            .await;
    }
    let done = backfill(&app, false).await;
    let counts = counters(&done);
    for (name, n) in &dry_counts {
        if name != "linked" {
            assert_eq!(counts[name], *n, "{name}: the dry run said {n}: {done}");
        }
    }
    // A record of the second CRM whose contact the first CRM's pass created is linked by the
    // backfill or by that contact's delivery, whichever comes first.
    let linked = counts["linked"] as usize;
    assert!(
        (created..=created + BOTH).contains(&linked),
        "{linked} linked: {done}"
    );
    let mut duplicates: Vec<(String, usize)> = done["result"]["duplicates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["crm"].as_str().unwrap().to_owned(),
                d["records"].as_array().unwrap().len(),
            )
        })
        .collect();
    duplicates.sort();
    assert_eq!(duplicates, [("salesforce".to_owned(), 2)], "{done}");

    // Every person once in SyncRoot and once in each CRM, linked; the twins left alone.
    let all = settled(&app).await;
    let mut people: BTreeSet<String> = (0..ALREADY)
        .map(|n| format!("already{n}@example.com"))
        .collect();
    people.extend((0..BOTH).map(|i| format!("both{i}@example.com")));
    people.extend((0..HUBSPOT_ONLY).map(|i| format!("hs{i}@example.com")));
    people.extend((0..SALESFORCE_ONLY).map(|i| format!("sf{i}@example.com")));
    assert_eq!(all.keys().cloned().collect::<BTreeSet<_>>(), people);
    let mut expected: BTreeMap<String, usize> = people.iter().map(|p| (p.clone(), 1)).collect();
    expected.insert("twin@example.com".to_owned(), 1);
    assert_eq!(held(&app, app.hubspot()).await, expected);
    expected.insert("twin@example.com".to_owned(), 2);
    assert_eq!(held(&app, app.salesforce()).await, expected);
    // Created from one CRM's record, with its values.
    let hs0 = &all["hs0@example.com"];
    assert_eq!(hs0["first_name"], "P1000", "{hs0}");
    assert_eq!(hs0["phone"], "+1 555 1000", "{hs0}");
    let sf0 = &all["sf0@example.com"];
    assert_eq!(sf0["first_name"], "P2000", "{sf0}");
    for (email, phone) in &newer_phone {
        let c = &all[email];
        assert_eq!(&c["phone"], phone, "{c}");
        let hubspot_phone = || async {
            let r = app
                .sandbox_record(app.hubspot(), &remote_id(c, "hubspot"))
                .await;
            r["properties"]["phone"].clone()
        };
        let salesforce_phone = || async {
            let r = app
                .sandbox_record(app.salesforce(), &remote_id(c, "salesforce"))
                .await;
            r["Phone"].clone()
        };
        eventually(&format!("{email}'s phone in both CRMs"), || async {
            (hubspot_phone().await == *phone && salesforce_phone().await == *phone).then_some(())
        })
        .await;
    }
    // Each CRM was read once, and delivery asked Salesforce for no record by address: what
    // the read found there (a person's record, or none) was enough.
    let hubspot_calls = app
        .control(app.hubspot(), Method::GET, "counters", None)
        .await;
    let hubspot_read = ALREADY + BOTH + HUBSPOT_ONLY + 1;
    assert_eq!(
        hubspot_calls["calls"]["GET /crm/v3/objects/contacts"],
        hubspot_read.div_ceil(100) as u64,
        "HubSpot list pages: {hubspot_calls}"
    );
    assert_eq!(
        hubspot_calls["calls"]["POST /crm/v3/objects/contacts/batch/read"],
        Value::Null,
        "no record read again: {hubspot_calls}"
    );
    let salesforce_calls = app
        .control(app.salesforce(), Method::GET, "counters", None)
        .await;
    // The writes the backfill causes trickle in as its passes go (a few among many contacts
    // that need none); delivery gathers a job's tasks until they fill calls, so each kind of
    // write goes in one call here: HubSpot's updates and creates, Salesforce's links and
    // creates.
    for counters in [&hubspot_calls, &salesforce_calls] {
        let batches = counters["batches"].as_object().expect("batch tallies");
        for (route, tally) in batches {
            assert_eq!(tally["calls"], 1, "{route}: {counters}");
        }
    }
    assert_eq!(
        salesforce_calls["queries"]["Contact"], 1,
        "one SOQL read of every Contact: {salesforce_calls}"
    );
    for shape in ["Contact WHERE Email", "Contact WHERE Id"] {
        assert_eq!(
            salesforce_calls["queries"][shape],
            Value::Null,
            "no matching query and no record read again: {salesforce_calls}"
        );
    }
    // Differing values, by the policy: SyncRoot's newer phone stays and HubSpot is corrected;
    // Salesforce's newer title is taken and reaches HubSpot.
    let a0 = &all["already0@example.com"];
    assert_eq!(a0["phone"], "+1 555 0100", "{a0}");
    eventually("HubSpot corrected", || async {
        let record = app.sandbox_record(app.hubspot(), &hubspot_0).await;
        (record["properties"]["phone"] == "+1 555 0100").then_some(())
    })
    .await;
    let a1 = &all["already1@example.com"];
    assert_eq!(a1["job_title"], "Chief Backfill Officer", "{a1}");
    let hubspot_1 = remote_id(a1, "hubspot");
    eventually("Salesforce's title in HubSpot", || async {
        let record = app.sandbox_record(app.hubspot(), &hubspot_1).await;
        (record["properties"]["jobtitle"] == "Chief Backfill Officer").then_some(())
    })
    .await;

    // A second run writes nothing: no CRM writes, no new versions.
    let before = footprint(&app).await;
    let again = backfill(&app, false).await;
    let counts = counters(&again);
    for name in ["created", "updated", "linked", "conflicts", "errors"] {
        assert_eq!(counts[name], 0, "{name}: {again}");
    }
    assert_eq!(counts["duplicates"], 3, "{again}");
    assert_eq!(
        footprint(&app).await,
        before,
        "a second run writes nothing: {again}"
    );
}

/// Notes in the address index what a read of Salesforce found at an address, `age` ago.
async fn found_in_salesforce(app: &TestApp, email: &str, records: &[&str], age: chrono::Duration) {
    // The digest is Postgres's own SHA-256 of the address, not SyncRoot's.
    sqlx::query(
        "INSERT INTO crm_address_index (crm, address, records, read_at)
         VALUES ('salesforce', sha256(convert_to($1, 'UTF8')), $2, now() - $3)",
    )
    .bind(email)
    .bind(records)
    .bind(age)
    .execute(&app.db)
    .await
    .unwrap();
}

async fn indexed(app: &TestApp, email: &str) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM crm_address_index
                        WHERE crm = 'salesforce' AND address = sha256(convert_to($1, 'UTF8')))",
    )
    .bind(email)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

/// Delivery links a contact to the record a recent read found at its address, or creates its
/// record where the read found none, without a matching query; an old read is not trusted,
/// and a record seen changing since drops what the read found.
#[tokio::test]
async fn delivery_uses_what_a_recent_read_found_and_asks_again_when_it_is_old_or_changed() {
    let app = app_with_runner().await;
    seed(
        &app,
        app.salesforce(),
        vec![
            salesforce_person("found@example.com", 1),
            salesforce_person("old@example.com", 2),
        ],
    )
    .await;
    let found = seeded(&app, app.salesforce(), "found@example.com").await["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    let old = seeded(&app, app.salesforce(), "old@example.com").await["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = chrono::Duration::zero();
    found_in_salesforce(&app, "found@example.com", &[&found], now).await;
    // Read before the record existed, two hours ago: longer ago than the index is trusted.
    found_in_salesforce(&app, "old@example.com", &[], chrono::Duration::hours(2)).await;
    found_in_salesforce(&app, "nowhere@example.com", &[], now).await;
    app.control(app.salesforce(), Method::POST, "counters/reset", None)
        .await;

    let mut linked = BTreeMap::new();
    for email in [
        "found@example.com",
        "old@example.com",
        "nowhere@example.com",
    ] {
        let id = app
            .create(json!({"email": email, "last_name": "Indexed"}))
            .await;
        let c = app.wait_synced(&id, 1).await;
        linked.insert(email, remote_id(&c, "salesforce"));
    }
    assert_eq!(
        linked["found@example.com"], found,
        "the record the read found"
    );
    assert_eq!(
        linked["old@example.com"], old,
        "found by the matching query"
    );
    assert_eq!(
        held(&app, app.salesforce()).await.values().sum::<usize>(),
        3,
        "one record each"
    );
    let calls = app
        .control(app.salesforce(), Method::GET, "counters", None)
        .await;
    assert_eq!(
        calls["queries"]["Contact WHERE Email"], 1,
        "a matching query for the old read's address only: {calls}"
    );

    // A change to the record in Salesforce: the read no longer tells the whole story there.
    assert!(indexed(&app, "found@example.com").await);
    ui_edit(&app, app.salesforce(), &found, json!({"Title": "Changed"})).await;
    eventually("the index forgets the changed record", || async {
        (!indexed(&app, "found@example.com").await).then_some(())
    })
    .await;
    assert!(indexed(&app, "nowhere@example.com").await);
}

/// A backfill whose writes to a CRM take more than one of delivery's batches still writes in
/// full calls: a batch of the job's tasks that fills up keeps each kind of write's part-empty
/// last call for the next, so only the job's last batch sends one.
#[tokio::test]
async fn a_backfill_larger_than_a_delivery_batch_still_writes_in_full_calls() {
    // HubSpot's batches of a job's tasks take 1,000 (10 calls of 100); its tasks here are one
    // per person, and those to write are creates (people only in Salesforce) and updates
    // (people in both whose Salesforce record is newer and differs), interleaved.
    const PEOPLE: usize = 2_450;
    // Gaps while the job reads or pages are waited out: the batches fill up.
    let app = app_with_runner_and(&[("SYNCROOT_DELIVERY_LINGER_MAX_MS", "10000")]).await;
    webhooks_off(&app, &[app.hubspot(), app.salesforce()]).await;
    let (mut hubspot, mut salesforce) = (Vec::new(), Vec::new());
    for i in 0..PEOPLE {
        let email = format!("many{i}@example.com");
        let mut theirs = salesforce_person(&email, i);
        if i % 7 == 0 {
            hubspot.push(hubspot_person(&email, i));
            theirs["Title"] = json!("Engineer, Salesforce's");
        }
        salesforce.push(theirs);
    }
    // HubSpot first: Salesforce's records are the newer, and their titles win.
    seed(&app, app.hubspot(), hubspot).await;
    seed(&app, app.salesforce(), salesforce).await;
    app.control(app.hubspot(), Method::POST, "counters/reset", None)
        .await;
    app.control(app.salesforce(), Method::POST, "counters/reset", None)
        .await;

    let done = backfill(&app, false).await;
    assert_eq!(counters(&done)["created"], PEOPLE as u64, "{done}");
    // Every person in both CRMs at their current version.
    app.wait_links_current(2 * PEOPLE as i64).await;
    let people = held(&app, app.hubspot()).await;
    assert_eq!(people.len(), PEOPLE);
    assert!(people.values().all(|n| *n == 1), "one record each");

    // Each kind of write in the fewest calls of 100 its records take.
    let calls = app
        .control(app.hubspot(), Method::GET, "counters", None)
        .await;
    let batches = calls["batches"].as_object().expect("batch tallies");
    let only_in_salesforce = PEOPLE - PEOPLE.div_ceil(7);
    assert_eq!(
        batches["POST /crm/v3/objects/contacts/batch/upsert"]["records"], only_in_salesforce,
        "{calls}"
    );
    for (route, tally) in batches {
        let records = tally["records"].as_u64().unwrap();
        assert_eq!(
            tally["calls"].as_u64().unwrap(),
            records.div_ceil(100),
            "{route}: {records} records: {calls}"
        );
    }
}

#[tokio::test]
async fn a_backfill_whose_runner_process_is_killed_is_resumed_by_another_from_its_checkpoint() {
    let mut app = roles_with_runner().await;
    // Three pages of HubSpot records (100 a page).
    let records: Vec<Value> = (0..250)
        .map(|i| hubspot_person(&format!("killed{i}@example.com"), i))
        .collect();
    let records = Value::Array(records);
    let seeded = app
        .control
        .call(&app.hubspot, Method::POST, "seed", Some(&records))
        .await;
    seeded.unwrap();
    slow_hubspot(&app, 1500).await;
    let path = roles_start_job(&app, json!({"kind": "backfill"})).await;
    // Killed while reading HubSpot, one page read.
    let done = kill_runner_when(&mut app, &path, |p| p["counters"]["read"] == 100).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let counters = &done["result"]["counters"];
    let n = |name: &str| counters[name].as_u64().unwrap();
    assert_eq!(
        n("read"),
        250,
        "the read resumed after its last page: {done}"
    );
    assert_eq!(done["progress"]["done"], 250, "{done}");
    assert_eq!(n("created"), 250, "{done}");
    // Each person once in SyncRoot.
    let all = every_contact(&app.http, |p| app.url(p)).await;
    assert_eq!(all.len(), 250);
    app.cleanup().await;
}

/// A backfill of the CRMs named: only their records are read; the people it creates still go
/// to every CRM. Naming a CRM that is not enabled is refused up front.
#[tokio::test]
async fn a_backfill_of_one_crm_reads_only_that_one() {
    let app = app_with_runner().await;
    let hubspot: Vec<Value> = (0..3)
        .map(|i| hubspot_person(&format!("hs-only{i}@example.com"), i))
        .collect();
    let salesforce: Vec<Value> = (0..2)
        .map(|i| salesforce_person(&format!("sf-only{i}@example.com"), 10 + i))
        .collect();
    seed(&app, app.hubspot(), hubspot).await;
    seed(&app, app.salesforce(), salesforce).await;
    app.control(app.hubspot(), Method::POST, "counters/reset", None)
        .await;

    let queued = start_job(
        &app,
        json!({"kind": "backfill", "params": {"crms": ["salesforce"]}}),
    )
    .await;
    assert_eq!(queued["params"]["crms"], json!(["salesforce"]), "{queued}");
    let done = wait_finished(&app, queued["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let counts = counters(&done);
    assert_eq!((counts["read"], counts["created"]), (2, 2), "{done}");
    let all = settled(&app).await;
    assert_eq!(
        all.keys().cloned().collect::<Vec<_>>(),
        ["sf-only0@example.com", "sf-only1@example.com"]
    );
    let calls = app
        .control(app.hubspot(), Method::GET, "counters", None)
        .await;
    assert_eq!(
        calls["calls"]["GET /crm/v3/objects/contacts"],
        Value::Null,
        "HubSpot was not read: {calls}"
    );
    // HubSpot got the two people, and kept its own three.
    assert_eq!(held(&app, app.hubspot()).await.len(), 5);

    let salesforce_only = app_with_runner_and(&[("SYNCROOT_CRMS", "salesforce")]).await;
    let r = salesforce_only
        .admin(Method::POST, "/admin/jobs")
        .json(&json!({"kind": "backfill", "params": {"crms": ["salesforce", "hubspot"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(
        problem["errors"][0]["pointer"], "/params/crms/1",
        "{problem}"
    );
}

#[tokio::test]
async fn the_backfill_cli_follows_the_job_and_prints_what_it_did() {
    let app = app_with_runner().await;
    let records = (0..3)
        .map(|i| hubspot_person(&format!("cli{i}@example.com"), i))
        .collect();
    seed(&app, app.hubspot(), records).await;

    let (ok, stdout, stderr) = cli(&app, &["backfill", "--dry-run"]).await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("created 3"), "a progress line: {stderr}");
    let result: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(result["dry_run"], true, "{result}");
    assert_eq!(result["counters"]["created"], 3, "{result}");
    assert!(contacts(&app).await.is_empty(), "a dry run creates nothing");
    // Only Salesforce's records (it has none); a CRM the server does not know is refused.
    let (ok, stdout, stderr) = cli(&app, &["backfill", "--dry-run", "--crm", "salesforce"]).await;
    assert!(ok, "{stderr}");
    let result: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(result["counters"]["read"], 0, "{result}");
    let (ok, _, stderr) = cli(&app, &["backfill", "--crm", "pipedrive"]).await;
    assert!(!ok && stderr.contains("/params/crms/0"), "{stderr}");

    let (ok, stdout, stderr) = cli(&app, &["backfill"]).await;
    assert!(ok, "{stderr}");
    let result: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(result["counters"]["created"], 3, "{result}");
    assert_eq!(contacts(&app).await.len(), 3);
}
