//! Admin jobs and the drift check: records changed inside the sandboxes while their webhooks
//! were off are found (exactly those, by field name), repaired by the conflict policy until
//! every system agrees, and a second check finds nothing; the jobs API's authorisation,
//! validation, cancel, listing and resumption from a checkpoint.

use reqwest::Method;
use serde_json::{Value, json};
use syncroot::domain::job::{DriftParams, JobParams};
use syncroot::store::jobs;
use syncroot_testkit::roles::Roles;
use syncroot_testkit::{ADMIN_KEY, KEY, TestApp, admin_options, eventually, remote_id};
use uuid::Uuid;

/// Both CRMs, webhooks and the job runner, pollers off, a short job lease.
pub(crate) async fn app_with_runner() -> TestApp {
    app_with_runner_and(&[]).await
}

pub(crate) async fn app_with_runner_and(env: &[(&str, &str)]) -> TestApp {
    let mut opts = admin_options(true);
    opts.two_way = true;
    let env = [
        ("SYNCROOT_POLL_INTERVAL_SECS", "0"),
        ("SYNCROOT_JOB_LEASE_SECS", "2"),
    ]
    .iter()
    .chain(env);
    opts.extra_env
        .extend(env.map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    TestApp::spawn_with(opts).await
}

/// The CRMs stop telling SyncRoot anything.
pub(crate) async fn webhooks_off(app: &TestApp, bases: &[&str]) {
    for base in bases {
        app.control(base, Method::PUT, "webhook", Some(json!({"url": null})))
            .await;
    }
}

/// A person's edit in a sandbox's UI (`record` may carry `?at=`).
pub(crate) async fn ui_edit(app: &TestApp, base: &str, record: &str, body: Value) {
    let path = format!("ui/contacts/{record}");
    app.control(base, Method::PATCH, &path, Some(body)).await;
}

/// The newest page of jobs.
async fn list_jobs(app: &TestApp) -> Value {
    let r = app.admin(Method::GET, "/admin/jobs").send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

pub(crate) async fn start_job(app: &TestApp, body: Value) -> Value {
    let r = app
        .admin(Method::POST, "/admin/jobs")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let job: Value = r.json().await.unwrap();
    assert_eq!(status, 202, "{job}");
    job
}

pub(crate) async fn job(app: &TestApp, id: &str) -> Value {
    let r = app
        .admin(Method::GET, &format!("/admin/jobs/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

pub(crate) async fn wait_finished(app: &TestApp, id: &str) -> Value {
    eventually(&format!("job {id} to finish"), || async {
        let j = job(app, id).await;
        (!matches!(j["status"].as_str(), Some("queued" | "running"))).then_some(j)
    })
    .await
}

/// Runs a drift job to its end; returns the finished job, which must have succeeded.
async fn drift(app: &TestApp, repair: bool, full: bool) -> Value {
    let queued = start_job(
        app,
        json!({"kind": "drift", "params": {"repair": repair, "full": full}}),
    )
    .await;
    let done = wait_finished(app, queued["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    done
}

/// The sample as (contact, crm, fields) triples, sorted.
fn found(job: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<_> = job["result"]["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let fields = s["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().to_owned())
                .collect();
            (
                s["contact_id"].as_str().unwrap().to_owned(),
                s["crm"].as_str().unwrap().to_owned(),
                fields,
            )
        })
        .collect();
    out.sort();
    out
}

fn counter(job: &Value, name: &str) -> u64 {
    job["result"]["counters"][name].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn drift_check_finds_exactly_the_records_changed_behind_syncroot_and_repair_converges() {
    let app = app_with_runner().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = app
            .create(
                json!({"email": format!("drift{n}@example.com"), "first_name": "Ada",
                "phone": "+1 555 0100", "company": "Acme", "job_title": "Engineer"}),
            )
            .await;
        ids.push(id);
    }
    let mut contacts = Vec::new();
    for id in &ids {
        contacts.push(app.wait_synced(id, 1).await);
    }
    webhooks_off(&app, &[app.hubspot(), app.salesforce()]).await;
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);
    let hubspot_a = remote_id(&contacts[0], "hubspot");
    let salesforce_b = remote_id(&contacts[1], "salesforce");
    let hubspot_c = remote_id(&contacts[2], "hubspot");
    // A newer edit in HubSpot, one in Salesforce, and an HubSpot edit dated before SyncRoot's
    // value (last writer wins: it loses).
    ui_edit(
        &app,
        app.hubspot(),
        &hubspot_a,
        json!({"properties": {"phone": "+1 555 0199"}}),
    )
    .await;
    // Salesforce keeps modification times to the second: its edit must come in a later second
    // than SyncRoot's value for last-writer-wins to see it as newer.
    let accepted: chrono::DateTime<chrono::Utc> =
        contacts[1]["updated_at"].as_str().unwrap().parse().unwrap();
    eventually("the next second", || async {
        (chrono::Utc::now().timestamp() > accepted.timestamp()).then_some(())
    })
    .await;
    ui_edit(
        &app,
        app.salesforce(),
        &salesforce_b,
        json!({"Title": "Chief Drift Officer"}),
    )
    .await;
    let an_hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    ui_edit(
        &app,
        app.hubspot(),
        &format!("{hubspot_c}?at={an_hour_ago}"),
        json!({"properties": {"company": "Stale Corp"}}),
    )
    .await;

    let check = drift(&app, false, false).await;
    assert_eq!(check["result"]["mode"], "full", "the first check is full");
    assert_eq!(
        found(&check),
        {
            let mut want = vec![
                (a.clone(), "hubspot".to_owned(), vec!["phone".to_owned()]),
                (
                    b.clone(),
                    "salesforce".to_owned(),
                    vec!["job_title".to_owned()],
                ),
                (c.clone(), "hubspot".to_owned(), vec!["company".to_owned()]),
            ];
            want.sort();
            want
        },
        "{check}"
    );
    assert_eq!(counter(&check, "differing"), 3, "{check}");
    assert_eq!(counter(&check, "same"), 3, "{check}");
    assert_eq!(counter(&check, "missing"), 0, "{check}");
    assert_eq!(check["progress"]["total"], 6);
    assert!(
        ["555 0199", "Stale Corp", "Chief Drift"]
            .iter()
            .all(|value| !check.to_string().contains(value)),
        "a job's result names fields, never values (each matched whole: a fragment such as \"0199\" also turns up in ids by chance): {check}"
    );
    // A check alone changes nothing.
    let unchanged: Value = app.get_contact(a).await.json().await.unwrap();
    assert_eq!(unchanged["version"], 1);
    assert_eq!(unchanged["phone"], "+1 555 0100");

    let repair = drift(&app, true, true).await;
    assert_eq!(counter(&repair, "differing"), 3, "{repair}");
    assert_eq!(counter(&repair, "repair_updated"), 2, "{repair}");
    assert_eq!(counter(&repair, "repair_kept"), 1, "{repair}");

    // The CRMs' newer edits won and reached the other systems; the older one lost.
    let a_now = app.wait_synced(a, 2).await;
    assert_eq!(a_now["phone"], "+1 555 0199");
    let b_now = app.wait_synced(b, 2).await;
    assert_eq!(b_now["job_title"], "Chief Drift Officer");
    let c_now: Value = app.get_contact(c).await.json().await.unwrap();
    assert_eq!(
        (&c_now["version"], &c_now["company"]),
        (&json!(1), &json!("Acme"))
    );
    eventually("every system to agree", || async {
        for id in &ids {
            let c: Value = app.get_contact(id).await.json().await.ok()?;
            let hs = app
                .sandbox_record(app.hubspot(), &remote_id(&c, "hubspot"))
                .await;
            let sf = app
                .sandbox_record(app.salesforce(), &remote_id(&c, "salesforce"))
                .await;
            let p = &hs["properties"];
            let agree = p["phone"] == c["phone"]
                && p["company"] == c["company"]
                && p["jobtitle"] == c["job_title"]
                && sf["Phone"] == c["phone"]
                && sf["Title"] == c["job_title"];
            if !agree {
                return None;
            }
        }
        Some(())
    })
    .await;

    let full = drift(&app, false, true).await;
    assert_eq!(counter(&full, "same"), 6, "{full}");
    assert_eq!(found(&full), vec![], "{full}");
    let again = drift(&app, false, false).await;
    assert_eq!(again["result"]["mode"], "incremental", "{again}");
    assert_eq!(found(&again), vec![], "{again}");

    // An incremental check asks the CRMs what changed (HubSpot: search by lastmodifieddate),
    // not for every linked record.
    let hubspot_b = remote_id(&b_now, "hubspot");
    ui_edit(
        &app,
        app.hubspot(),
        &hubspot_b,
        json!({"properties": {"firstname": "Grace"}}),
    )
    .await;
    app.control(app.hubspot(), Method::POST, "counters/reset", None)
        .await;
    let incremental = drift(&app, false, false).await;
    assert_eq!(
        found(&incremental),
        vec![(
            b.clone(),
            "hubspot".to_owned(),
            vec!["first_name".to_owned()]
        )],
        "{incremental}"
    );
    let calls = app
        .control(app.hubspot(), Method::GET, "counters", None)
        .await;
    let calls = calls["calls"].as_object().unwrap();
    assert!(
        calls.keys().any(|k| k.contains("/search"))
            && !calls.keys().any(|k| k.contains("batch/read")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_record_deleted_in_the_crm_is_missing_and_repair_detaches_it_by_the_delete_policy() {
    let app = app_with_runner().await;
    let id = app.create(json!({"email": "gone@example.com"})).await;
    let c = app.wait_synced(&id, 1).await;
    webhooks_off(&app, &[app.hubspot()]).await;
    let record = remote_id(&c, "hubspot");
    app.control(
        app.hubspot(),
        Method::DELETE,
        &format!("ui/contacts/{record}"),
        None,
    )
    .await;
    let check = drift(&app, true, true).await;
    assert_eq!(counter(&check, "missing"), 1, "{check}");
    assert_eq!(counter(&check, "repair_detached"), 1, "{check}");
    let sample = &check["result"]["sample"][0];
    assert_eq!(
        (&sample["contact_id"], &sample["crm"], &sample["missing"]),
        (&json!(id), &json!("hubspot"), &json!(true))
    );
    let now: Value = app.get_contact(&id).await.json().await.unwrap();
    assert_eq!(
        now["sync"]["hubspot"]["state"], "detached",
        "the mark policy detaches the record: {now}"
    );
}

#[tokio::test]
async fn the_jobs_api_is_admin_only_validates_lists_and_cancels() {
    // No runner here: jobs stay queued.
    let app = TestApp::spawn_with(admin_options(false)).await;
    let body = json!({"kind": "drift"});
    let r = app
        .authed(Method::POST, "/admin/jobs")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a contacts key is not an admin key");
    let r = app
        .http
        .post(app.url("/admin/jobs"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .http
        .get(app.url("/admin/jobs"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    for (bad, status, pointer) in [
        (json!({"kind": "backup"}), 422, "/kind"),
        (json!({"params": {}}), 422, "/kind"),
        (
            json!({"kind": "drift", "params": {"repair": "yes"}}),
            422,
            "/params/repair",
        ),
        (
            json!({"kind": "drift", "params": {"fast": true}}),
            422,
            "/params/fast",
        ),
        (json!({"kind": "drift", "extra": 1}), 422, "/extra"),
    ] {
        let r = app
            .admin(Method::POST, "/admin/jobs")
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{bad}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{bad}"
        );
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["errors"][0]["pointer"], pointer, "{bad}: {p}");
    }
    let r = app
        .admin(Method::POST, "/admin/jobs")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .admin(Method::POST, "/admin/jobs")
        .body("kind=drift")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    let queued = start_job(&app, json!({"kind": "drift", "params": {"full": true}})).await;
    let id = queued["id"].as_str().unwrap().to_owned();
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["params"], json!({"repair": false, "full": true}));
    let r = app
        .admin(Method::POST, "/admin/jobs")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "one unfinished job per kind");

    let page = list_jobs(&app).await;
    assert_eq!(page["items"][0]["id"], json!(id));
    assert_eq!(job(&app, &id).await["kind"], "drift");
    for missing in [Uuid::now_v7().to_string(), "nope".to_owned()] {
        let r = app
            .admin(Method::GET, &format!("/admin/jobs/{missing}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let r = app
        .admin(Method::GET, "/admin/jobs?limit=0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let cancel = format!("/admin/jobs/{id}/cancel");
    let r = app.admin(Method::POST, &cancel).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let cancelled: Value = r.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    let r = app.admin(Method::POST, &cancel).send().await.unwrap();
    assert_eq!(r.status(), 409, "a finished job cannot be cancelled");
    // The kind is free again.
    start_job(&app, body).await;

    let audit: Value = app
        .admin(Method::GET, "/admin/audit")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<(&str, &Value)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), &e["entry_ids"][0]))
        .collect();
    assert!(actions.contains(&("job_create", &json!(id))), "{audit}");
    assert!(actions.contains(&("job_cancel", &json!(id))), "{audit}");
}

/// A drift job as a runner that died would leave it: running, its lease over.
async fn orphan(app: &TestApp, checkpoint: Value, progress: Value, cancel: bool) -> String {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO admin_jobs (id, kind, params, status, progress, checkpoint, started_at,
                                 lease_owner, lease_until, cancel_requested)
         VALUES ($1, 'drift', '{\"repair\": false, \"full\": true}', 'running', $2, $3, now(),
                 $4, now() - interval '1 second', $5)",
    )
    .bind(id)
    .bind(progress)
    .bind(Some(checkpoint).filter(|c| !c.is_null()))
    .bind(Uuid::new_v4())
    .bind(cancel)
    .execute(&app.db)
    .await
    .unwrap();
    id.to_string()
}

#[tokio::test]
async fn a_job_whose_runner_died_is_resumed_from_its_checkpoint() {
    let app = app_with_runner().await;
    let mut ids = Vec::new();
    for n in 0..2 {
        ids.push(
            app.create(json!({"email": format!("resume{n}@example.com")}))
                .await,
        );
    }
    for id in &ids {
        app.wait_synced(id, 1).await;
    }
    app.control(app.hubspot(), Method::POST, "counters/reset", None)
        .await;
    // It had checked HubSpot's two records when its runner died.
    let checkpoint = json!({"todo": ["salesforce"], "full": true, "since": null, "from": null,
        "at_from": [], "after": null, "sample": []});
    let progress = json!({"done": 2, "total": 4,
        "counters": {"checked": 2, "same": 2, "differing": 0, "missing": 0, "pending": 0, "errors": 0}});
    let id = orphan(&app, checkpoint, progress, false).await;
    let done = wait_finished(&app, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["progress"]["done"], 4, "{done}");
    assert_eq!(counter(&done, "same"), 4, "{done}");
    let hubspot = app
        .control(app.hubspot(), Method::GET, "counters", None)
        .await;
    assert_eq!(
        hubspot["calls"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.contains("batch/read"))
            .count(),
        0,
        "HubSpot was done before the runner died, and is not read again: {hubspot}"
    );
}

#[tokio::test]
async fn a_running_job_cancelled_stops_at_its_next_page() {
    let app = app_with_runner().await;
    // A runner holds it (its lease is long) while the cancel arrives.
    let id = orphan(&app, Value::Null, json!({"done": 0}), false).await;
    sqlx::query("UPDATE admin_jobs SET lease_until = now() + interval '1 hour' WHERE id = $1")
        .bind(id.parse::<Uuid>().unwrap())
        .execute(&app.db)
        .await
        .unwrap();
    let r = app
        .admin(Method::POST, &format!("/admin/jobs/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let asked: Value = r.json().await.unwrap();
    assert_eq!(
        (&asked["status"], &asked["cancel_requested"]),
        (&json!("running"), &json!(true))
    );
    // That runner dies; the next one to take the job stops it.
    sqlx::query("UPDATE admin_jobs SET lease_until = now() - interval '1 second' WHERE id = $1")
        .bind(id.parse::<Uuid>().unwrap())
        .execute(&app.db)
        .await
        .unwrap();
    let done = wait_finished(&app, &id).await;
    assert_eq!(done["status"], "cancelled", "{done}");
}

/// Runs `syncroot <args>` against the app's admin API, with nothing else in its environment;
/// (success, stdout, stderr).
pub(crate) async fn cli(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_syncroot"))
        .args(args)
        .args(["--url", &app.base, "--key", ADMIN_KEY])
        .env_clear()
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
async fn the_drift_cli_starts_a_check_follows_it_and_prints_what_it_found() {
    let app = app_with_runner().await;
    let id = app
        .create(json!({"email": "cli@example.com", "phone": "+1 555 0100"}))
        .await;
    let c = app.wait_synced(&id, 1).await;
    webhooks_off(&app, &[app.hubspot()]).await;
    let record = remote_id(&c, "hubspot");
    ui_edit(
        &app,
        app.hubspot(),
        &record,
        json!({"properties": {"phone": "+1 555 0142"}}),
    )
    .await;
    let (ok, stdout, stderr) = cli(&app, &["drift", "--full"]).await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("differing 1"), "a progress line: {stderr}");
    let result: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(result["counters"]["differing"], 1, "{result}");
    assert_eq!(result["sample"][0]["fields"], json!(["phone"]), "{result}");
    assert_eq!(result["repair"], false);

    // --dry-run creates nothing.
    let (ok, _, stderr) = cli(&app, &["drift", "--repair", "--dry-run"]).await;
    assert!(ok, "{stderr}");
    let jobs = list_jobs(&app).await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 1, "{jobs}");
}

#[tokio::test]
async fn the_schedule_queues_one_drift_check_per_interval_however_many_replicas_ask() {
    let app = app_with_runner_and(&[
        ("SYNCROOT_DRIFT_CHECK_INTERVAL_SECS", "3600"),
        ("SYNCROOT_DRIFT_CHECK_REPAIR", "true"),
    ])
    .await;
    // The runner queues the first check itself, and runs it.
    let scheduled = eventually("the scheduled drift check", || async {
        list_jobs(&app).await["items"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(
        (&scheduled["requested_by"], &scheduled["params"]),
        (&Value::Null, &json!({"repair": true, "full": false}))
    );
    let done = wait_finished(&app, scheduled["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    let params = JobParams::Drift(DriftParams {
        repair: true,
        full: false,
    });
    let every = std::time::Duration::from_secs(3600);
    let created_within = || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM admin_jobs WHERE created_at > now() - interval '1 hour'",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        n
    };
    // Eight replicas' schedules at once, within the interval: nothing.
    let asks = (0..8).map(|_| jobs::enqueue_scheduled(&app.db, &params, every));
    for queued in futures_util::future::join_all(asks).await {
        assert_eq!(queued.unwrap(), None);
    }
    assert_eq!(created_within().await, 1);
    // The interval has passed: one of them (or the runner's own schedule) queues the next.
    sqlx::query("UPDATE admin_jobs SET created_at = now() - interval '2 hours'")
        .execute(&app.db)
        .await
        .unwrap();
    let asks = (0..8).map(|_| jobs::enqueue_scheduled(&app.db, &params, every));
    futures_util::future::join_all(asks).await;
    assert_eq!(created_within().await, 1);
}

#[tokio::test]
async fn a_runner_that_lost_its_lease_can_no_longer_write_to_the_job() {
    // No runner here: the test plays two.
    let app = TestApp::spawn_with(admin_options(false)).await;
    let params = JobParams::Drift(DriftParams::default());
    let mut conn = app.db.acquire().await.unwrap();
    let id = jobs::create(&mut conn, &params, Some("k"))
        .await
        .unwrap()
        .unwrap()
        .id;
    let (stalled, other) = (Uuid::new_v4(), Uuid::new_v4());
    let lease = std::time::Duration::from_secs(60);
    let claimed = jobs::claim(&app.db, stalled, lease).await.unwrap().unwrap();
    assert_eq!(claimed.id, id);
    assert!(
        jobs::claim(&app.db, other, lease).await.unwrap().is_none(),
        "a held job is not claimed twice"
    );
    // The stalled runner's lease runs out; another takes the job over.
    sqlx::query("UPDATE admin_jobs SET lease_until = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(
        jobs::claim(&app.db, other, lease)
            .await
            .unwrap()
            .unwrap()
            .id,
        id
    );
    let progress = syncroot::domain::job::Progress::default();
    let empty = json!({});
    let page = jobs::save_page(&app.db, id, stalled, lease, &progress, &empty);
    assert_eq!(
        page.await.unwrap(),
        None,
        "the stalled runner's page is refused"
    );
    assert_eq!(
        jobs::heartbeat(&app.db, id, stalled, lease).await.unwrap(),
        None
    );
    let end = jobs::Outcome {
        status: syncroot::domain::job::JobStatus::Succeeded,
        progress: &progress,
        result: None,
        error: None,
    };
    assert!(!jobs::finish(&app.db, id, stalled, &end).await.unwrap());
    assert_eq!(
        jobs::save_page(&app.db, id, other, lease, &progress, &json!({"at": 1}))
            .await
            .unwrap(),
        Some(false)
    );
    assert!(jobs::finish(&app.db, id, other, &end).await.unwrap());
    assert_eq!(job(&app, &id.to_string()).await["status"], "succeeded");
}

/// The API, forwarder, delivery and webhooks roles as processes (the webhooks role runs jobs,
/// with a short lease), pollers off.
pub(crate) async fn roles_with_runner() -> Roles {
    let env = [
        ("SYNCROOT_ADMIN_KEYS", ADMIN_KEY.to_owned()),
        ("SYNCROOT_POLL_INTERVAL_SECS", "0".to_owned()),
        ("SYNCROOT_JOB_LEASE_SECS", "2".to_owned()),
    ];
    let roles = ["api", "forwarder", "delivery", "webhooks"];
    Roles::start(env!("CARGO_BIN_EXE_syncroot"), &roles, &env).await
}

/// Asks for a job; its path.
pub(crate) async fn roles_start_job(app: &Roles, body: Value) -> String {
    let queued: Value = app
        .http
        .post(app.url("/admin/jobs"))
        .bearer_auth(ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    format!("/admin/jobs/{}", queued["id"].as_str().unwrap())
}

/// The job at `path` (`None` while the API does not answer).
pub(crate) async fn roles_job(app: &Roles, path: &str) -> Option<Value> {
    let req = app.http.get(app.url(path)).bearer_auth(ADMIN_KEY);
    req.send().await.ok()?.json::<Value>().await.ok()
}

/// Slows HubSpot's answers, so that the runner is caught between its pages.
pub(crate) async fn slow_hubspot(app: &Roles, latency_ms: u64) {
    let faults = json!({ "latency_ms": latency_ms });
    app.control
        .put(&app.hubspot, "faults", &faults)
        .await
        .unwrap();
}

/// Kills the job runner's process once the job at `path` is running with `done` items done,
/// lets HubSpot answer at once again, starts another runner, and waits for the job's end.
pub(crate) async fn kill_runner_at(app: &mut Roles, path: &str, done: u64) -> Value {
    kill_runner_when(app, path, |progress| progress["done"] == done).await
}

/// Kills the runner once the running job's progress is `at`, then lets another finish it.
pub(crate) async fn kill_runner_when(
    app: &mut Roles,
    path: &str,
    at: impl Fn(&Value) -> bool,
) -> Value {
    eventually("the job midway", || async {
        let j = roles_job(app, path).await?;
        (j["status"] == "running" && at(&j["progress"])).then_some(j)
    })
    .await;
    app.kill("webhooks").await;
    slow_hubspot(app, 0).await;
    app.restart("webhooks");
    eventually("the job to finish", || async {
        let j = roles_job(app, path).await?;
        (j["status"] != "running" && j["status"] != "queued").then_some(j)
    })
    .await
}

#[tokio::test]
async fn a_job_whose_runner_process_is_killed_is_resumed_by_another_from_its_checkpoint() {
    let mut app = roles_with_runner().await;
    // Two pages of HubSpot records (100 a page), then Salesforce's.
    let mut ids = Vec::new();
    for n in 0..120 {
        ids.push(
            app.create(&json!({"email": format!("killed{n}@example.com")}))
                .await,
        );
    }
    for id in &ids {
        eventually(&format!("{id} synced"), || async {
            let c = app.contact(id).await?;
            let both = ["hubspot", "salesforce"]
                .iter()
                .all(|crm| c["sync"][crm]["synced_version"] == 1);
            both.then_some(())
        })
        .await;
    }
    slow_hubspot(&app, 1500).await;
    let path = roles_start_job(&app, json!({"kind": "drift", "params": {"full": true}})).await;
    let total = eventually("the total known", || async {
        let j = roles_job(&app, &path).await?;
        j["progress"]["total"].as_u64()
    })
    .await;
    assert_eq!(total, 240);
    let done = kill_runner_at(&mut app, &path, 100).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["progress"]["done"], 240,
        "the first page is not counted twice: {done}"
    );
    assert_eq!(done["result"]["counters"]["same"], 240, "{done}");
    app.cleanup().await;
}

#[tokio::test]
async fn a_job_waiting_out_a_crm_outage_can_be_cancelled() {
    let app = app_with_runner().await;
    let id = app.create(json!({"email": "outage@example.com"})).await;
    app.wait_synced(&id, 1).await;
    app.control(
        app.hubspot(),
        Method::PUT,
        "faults",
        Some(json!({"outage": true})),
    )
    .await;
    let queued = start_job(&app, json!({"kind": "drift", "params": {"full": true}})).await;
    let id = queued["id"].as_str().unwrap().to_owned();
    eventually("the job to run", || async {
        (job(&app, &id).await["status"] == "running").then_some(())
    })
    .await;
    let r = app
        .admin(Method::POST, &format!("/admin/jobs/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let done = wait_finished(&app, &id).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(done["progress"]["done"], 0, "{done}");
}
