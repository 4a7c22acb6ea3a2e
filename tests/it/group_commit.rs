//! Group commit (`intake::group`): jobs waiting in a lane share one transaction and one batch
//! of confirms, a refusal undoes only its own job, a failed statement sends the batch back to
//! run one job at a time, and one contact's changes enter its queue in the order submitted.
//! Then the API's writes, all in one lane, racing each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use futures_util::future::join_all;
use lapin::options::BasicConsumeOptions;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgConnection;
use syncroot::domain::change::CHANGE_FORMAT_VERSION;
use syncroot::domain::{ChangeOp, ContactChange, ContactFields, ContactId, Email, Origin};
use syncroot::intake::IntakeError;
use syncroot::intake::group::{GroupCommit, GroupSettings, Job, Step};
use syncroot::queue::publisher::Publisher;
use syncroot_testkit as common;
use syncroot_testkit::{Options, TestApp, eventually};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Debug, PartialEq)]
enum Refused {
    /// The job said no.
    Said,
    /// One of its statements failed.
    Statement,
    Intake(String),
}

impl From<IntakeError> for Refused {
    fn from(e: IntakeError) -> Self {
        Refused::Intake(e.to_string())
    }
}

enum Kind {
    /// Holds its lane until released.
    Block {
        started: Arc<AtomicBool>,
        release: Arc<Notify>,
    },
    /// Writes its number; publishes its change if it has one.
    Write(i32, Option<Box<ContactChange>>),
    /// Writes its number, then refuses.
    WriteThenRefuse(i32),
    /// Runs a statement that fails.
    Fail,
}

struct Probe(Kind);

/// The job's transaction, so a test sees which jobs shared one.
type Txid = i64;

impl Job for Probe {
    type Output = Txid;
    type Refusal = Refused;

    fn lane_key(&self) -> u64 {
        0
    }

    fn guarded(&self) -> bool {
        matches!(self.0, Kind::WriteThenRefuse(_))
    }

    async fn run(
        &self,
        conn: &mut PgConnection,
    ) -> Result<Result<Step<Txid>, Refused>, sqlx::Error> {
        {
            let txid: i64 = sqlx::query_scalar("SELECT txid_current()")
                .fetch_one(&mut *conn)
                .await?;
            match &self.0 {
                Kind::Block { started, release } => {
                    started.store(true, Ordering::SeqCst);
                    release.notified().await;
                    Ok(Ok(Step::Answer(txid)))
                }
                Kind::Write(n, change) => {
                    write(conn, *n).await?;
                    Ok(Ok(match change {
                        Some(c) => Step::Publish(c.clone(), txid),
                        None => Step::Answer(txid),
                    }))
                }
                Kind::WriteThenRefuse(n) => {
                    write(conn, *n).await?;
                    Ok(Err(Refused::Said))
                }
                Kind::Fail => {
                    sqlx::query("SELECT 1 / 0").execute(&mut *conn).await?;
                    Ok(Ok(Step::Answer(txid)))
                }
            }
        }
    }

    fn failed(&self, _: sqlx::Error) -> Refused {
        Refused::Statement
    }
}

async fn write(conn: &mut PgConnection, n: i32) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO probe_writes (n) VALUES ($1)")
        .bind(n)
        .execute(conn)
        .await
        .map(|_| ())
}

struct Bench {
    app: TestApp,
    group: GroupCommit<Probe>,
    _publisher: Publisher,
    stop: CancellationToken,
}

impl Bench {
    /// One lane; no forwarder, so the test reads the shard queues itself.
    async fn start() -> Self {
        let app = TestApp::spawn_with(Options {
            forwarders: 0,
            ..Options::default()
        })
        .await;
        sqlx::query("CREATE TABLE probe_writes (n int NOT NULL)")
            .execute(&app.db)
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let (publisher, _) = Publisher::start(
            app.cfg.queue.clone(),
            app.topology(),
            std::time::Duration::from_secs(5),
            "test",
            stop.clone(),
        );
        eventually("the test publisher to connect", || async {
            publisher.is_connected().await.then_some(())
        })
        .await;
        let settings = GroupSettings {
            lanes: 1,
            max_batch: 64,
        };
        let group = GroupCommit::start(app.db.clone(), publisher.clone(), settings);
        Self {
            app,
            group,
            _publisher: publisher,
            stop,
        }
    }

    /// Runs `jobs` as one batch: holds the lane with a blocking job until every one of them is
    /// waiting, then lets them go. Their answers, in order.
    async fn batch(&self, jobs: Vec<Kind>) -> Vec<Result<Txid, Refused>> {
        let mut out = Vec::new();
        for a in join_all(self.submit_batch(jobs).await).await {
            out.push(a.unwrap());
        }
        out
    }

    /// [`Bench::batch`], returning once the batch is let go: its jobs' answers to come.
    async fn submit_batch(
        &self,
        jobs: Vec<Kind>,
    ) -> Vec<tokio::task::JoinHandle<Result<Txid, Refused>>> {
        let started = Arc::new(AtomicBool::new(false));
        let release = Arc::new(Notify::new());
        let blocker = {
            let group = self.group.clone();
            let kind = Kind::Block {
                started: started.clone(),
                release: release.clone(),
            };
            tokio::spawn(async move { group.submit(Probe(kind)).await })
        };
        eventually("the blocking job to hold the lane", || async {
            started.load(Ordering::SeqCst).then_some(())
        })
        .await;
        let n = jobs.len();
        let mut answers = Vec::new();
        for kind in jobs {
            let group = self.group.clone();
            answers.push(tokio::spawn(async move { group.submit(Probe(kind)).await }));
            // Submitted in this order: each is queued before the next is spawned.
            let queued = answers.len();
            eventually("the job to be queued", || async {
                (self.group.waiting() == queued).then_some(())
            })
            .await;
        }
        assert_eq!(self.group.waiting(), n);
        release.notify_one();
        blocker.await.unwrap().unwrap();
        answers
    }

    async fn written(&self) -> Vec<i32> {
        sqlx::query_scalar("SELECT n FROM probe_writes ORDER BY n")
            .fetch_all(&self.app.db)
            .await
            .unwrap()
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn change(id: ContactId, seq: i64) -> ContactChange {
    let now = chrono::Utc::now();
    ContactChange {
        v: CHANGE_FORMAT_VERSION,
        message_id: uuid::Uuid::new_v4(),
        contact_id: id,
        seq,
        op: ChangeOp::Upsert,
        origin: Origin::Api,
        accepted_at: now,
        created_at: now,
        contact: ContactFields {
            email: Email::parse("grouped@example.com").unwrap(),
            first_name: None,
            last_name: None,
            phone: None,
            company: None,
            job_title: Some(format!("v{seq}")),
        },
        bulk: false,
    }
}

#[tokio::test]
async fn jobs_waiting_in_a_lane_commit_in_one_transaction_and_publish_in_order() {
    let bench = Bench::start().await;
    let id = ContactId::new();
    let jobs = (1..=20)
        .map(|seq| Kind::Write(seq as i32, Some(Box::new(change(id, seq)))))
        .collect();
    let answers = bench.batch(jobs).await;
    let txids: Vec<Txid> = answers.into_iter().map(Result::unwrap).collect();
    assert!(
        txids.iter().all(|t| *t == txids[0]),
        "one transaction for the whole batch: {txids:?}"
    );
    assert_eq!(bench.written().await, (1..=20).collect::<Vec<_>>());

    // The contact's changes are in its shard queue in the order the jobs were submitted.
    let topo = bench.app.topology();
    let queue = topo.shard_queue(id.shard(topo.shards));
    let conn = lapin::Connection::connect(common::AMQP, Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut deliveries = ch
        .basic_consume(
            queue.as_str().into(),
            "group-commit-test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    // With `queue_pack_changes` (the default) they travel as one message.
    let m = deliveries.next().await.unwrap().unwrap();
    let kind = m.properties.kind().as_ref().map(|k| k.to_string());
    assert_eq!(kind.as_deref(), Some(syncroot::queue::envelope::PACK_TYPE));
    let pack = syncroot::queue::envelope::decode_changes(kind.as_deref(), &m.data).unwrap();
    let seqs: Vec<i64> = pack.changes.iter().map(|p| p.change.seq).collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_refusal_undoes_only_its_own_job_and_a_failed_statement_sends_the_batch_back_one_by_one()
{
    let bench = Bench::start().await;
    let answers = bench
        .batch(vec![
            Kind::Write(1, None),
            Kind::WriteThenRefuse(2),
            Kind::Write(3, None),
        ])
        .await;
    assert_eq!(answers[1], Err(Refused::Said));
    let (a, c) = (answers[0].as_ref().unwrap(), answers[2].as_ref().unwrap());
    assert_eq!(a, c, "the others committed together");
    assert_eq!(
        bench.written().await,
        vec![1, 3],
        "the refusal's write is undone"
    );

    let answers = bench
        .batch(vec![Kind::Write(4, None), Kind::Fail, Kind::Write(5, None)])
        .await;
    assert_eq!(answers[1], Err(Refused::Statement));
    let (d, e) = (answers[0].as_ref().unwrap(), answers[2].as_ref().unwrap());
    assert_ne!(d, e, "after the failed statement, each job ran alone");
    assert_eq!(bench.written().await, vec![1, 3, 4, 5]);
}

#[tokio::test]
async fn a_transaction_begun_ahead_for_the_next_batch_is_given_back_when_no_job_comes() {
    let bench = Bench::start().await;
    // A batch with company is load: the lane begins the next batch's transaction beside it.
    let answers = bench
        .batch((1..=5).map(|n| Kind::Write(n, None)).collect())
        .await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    // Nothing more comes: no session of this database stays idle inside a transaction.
    eventually("the transaction begun ahead to be given back", || async {
        let idle: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND state = 'idle in transaction'",
        )
        .fetch_one(&bench.app.db)
        .await
        .ok()?;
        (idle == 0).then_some(())
    })
    .await;
    // And the lane still works.
    let answers = bench.batch(vec![Kind::Write(6, None)]).await;
    assert!(answers[0].is_ok(), "{answers:?}");
    assert_eq!(bench.written().await, (1..=6).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_batch_still_committing_does_not_hold_up_the_next_one() {
    let bench = Bench::start().await;
    // Writing 1000 makes a transaction wait at its commit for an advisory lock the test holds.
    for statement in [
        "CREATE FUNCTION probe_hold() RETURNS trigger LANGUAGE plpgsql AS
         $$ BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NULL; END $$",
        "CREATE CONSTRAINT TRIGGER probe_hold AFTER INSERT ON probe_writes
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.n = 1000)
         EXECUTE FUNCTION probe_hold()",
    ] {
        sqlx::query(statement).execute(&bench.app.db).await.unwrap();
    }
    let mut holder = bench.app.db.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(4242)")
        .execute(&mut *holder)
        .await
        .unwrap();
    let first = bench
        .submit_batch(vec![Kind::Write(1000, None), Kind::Write(1, None)])
        .await;
    // (It waits no longer than the connections' lock_timeout, when its commit fails.)
    let waiting = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242
             AND NOT granted",
        )
        .fetch_one(&bench.app.db)
        .await
        .unwrap()
    };
    eventually("the first batch to wait at its commit", || async {
        (waiting().await == 1).then_some(())
    })
    .await;
    // The lane takes the next write meanwhile, and it is committed and answered first.
    let next = bench.group.submit(Probe(Kind::Write(2, None)));
    let next = tokio::time::timeout(std::time::Duration::from_secs(60), next)
        .await
        .expect("an answer");
    assert!(next.is_ok(), "{next:?}");
    assert_eq!(
        waiting().await,
        1,
        "the next write was answered only once the first batch's commit had ended"
    );
    assert!(first.iter().all(|a| !a.is_finished()));
    assert_eq!(bench.written().await, vec![2]);
    sqlx::query("SELECT pg_advisory_unlock(4242)")
        .execute(&mut *holder)
        .await
        .unwrap();
    for a in join_all(first).await {
        assert!(a.unwrap().is_ok());
    }
    assert_eq!(bench.written().await, vec![1, 2, 1000]);
}

/// Everything in one lane, so the writes racing each other share transactions.
async fn one_lane_app() -> TestApp {
    TestApp::spawn_with(Options {
        extra_env: vec![("SYNCROOT_API_ACCEPT_LANES".into(), "1".into())],
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn racing_writes_through_the_api_keep_every_promise() {
    racing_writes_keep_every_promise(one_lane_app().await).await;
}

/// The same with the default lanes: two creates of one address (or of one idempotency key)
/// usually get different ids, so they meet in two lanes, where the unique indexes decide.
#[tokio::test]
async fn racing_writes_in_separate_lanes_keep_every_promise() {
    racing_writes_keep_every_promise(TestApp::spawn().await).await;
}

async fn racing_writes_keep_every_promise(app: TestApp) {
    // Ten addresses, each sent twice at once: one create wins, the other is told who has it.
    let creates = (0..20).map(|i| {
        let email = format!("race{}@example.com", i % 10);
        let body = json!({"email": email, "last_name": "Race"});
        let req = app.authed(Method::POST, "/contacts").json(&body);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (email, status, body)
        }
    });
    // Ten retries of one request with one idempotency key: one contact.
    let keyed = (0..10).map(|_| {
        let body = json!({"email": "keyed@example.com", "last_name": "Keyed"});
        let req = app
            .authed(Method::POST, "/contacts")
            .header("Idempotency-Key", "one-request")
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 202);
            r.json::<Value>().await.unwrap()["id"].clone()
        }
    });
    let (created, ids) = tokio::join!(join_all(creates), join_all(keyed));
    let mut statuses: Vec<u16> = created.iter().map(|(_, s, _)| *s).collect();
    statuses.sort();
    for (email, _, refused) in created.iter().filter(|(_, s, _)| *s == 409) {
        let winner = created
            .iter()
            .find(|(e, s, _)| e == email && *s == 202)
            .map(|(_, _, b)| &b["id"]);
        assert_eq!(Some(&refused["existing_id"]), winner, "{email}: {refused}");
    }
    assert_eq!(statuses, [vec![202; 10], vec![409; 10]].concat());
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM contact_heads")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(n, 11);

    // Thirty patches of one contact at once: every version once, the last one read back.
    let id = app
        .create(json!({"email": "patched@example.com", "last_name": "Patched"}))
        .await;
    let patches = (0..30).map(|i| {
        let req = app
            .authed(Method::PATCH, &format!("/contacts/{id}"))
            .json(&json!({"job_title": format!("title {i}")}));
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 202);
            let v = r.json::<Value>().await.unwrap()["version"]
                .as_i64()
                .unwrap();
            (v, format!("title {i}"))
        }
    });
    let mut done = join_all(patches).await;
    done.sort();
    let versions: Vec<i64> = done.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, (2..=31).collect::<Vec<_>>());
    let last_title = &done.last().unwrap().1;
    let applied = app.wait_applied(&id, 31).await;
    assert_eq!(applied["job_title"], last_title.as_str());
    let history: i64 = sqlx::query_scalar("SELECT count(*) FROM contact_versions")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(history, 11 + 31, "one history entry per accepted version");
}

/// Creates that the API accepts together travel as fewer messages than creates (a pack per
/// shard per batch); with `queue_pack_changes` off, as during an upgrade from a build whose
/// forwarder reads no packs, as one plain change message each. Nothing consumes the queue here.
#[tokio::test]
async fn writes_accepted_together_share_a_message_unless_packing_is_off() {
    for packing in [true, false] {
        let app = TestApp::spawn_with(Options {
            forwarders: 0,
            shards: 1,
            extra_env: vec![("SYNCROOT_QUEUE_PACK_CHANGES".into(), packing.to_string())],
            ..Options::default()
        })
        .await;
        let bodies: Vec<Value> = (0..40)
            .map(|i| json!({"email": format!("packed{i}@example.com")}))
            .collect();
        let mut ids = Vec::new();
        for r in join_all(bodies.iter().map(|b| app.post_contact(b))).await {
            assert_eq!(r.status(), 202);
            let id = r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            ids.push(id);
        }
        let queue = app.topology().shard_queue(0);
        let messages = app.queue_depth(&queue).await;
        let mut queued = app.queued_contacts(&queue).await;
        ids.sort();
        queued.sort();
        assert_eq!(queued, ids, "every accepted create is queued once");
        match packing {
            true => assert!(messages < 40, "40 creates in {messages} messages"),
            false => assert_eq!(messages, 40, "one message a create"),
        }
    }
}

/// The forwarder hands on the delivery tasks of changes it applied together as one message per
/// CRM, under the same switch as the changes' packs; with it off, one message a task.
#[tokio::test]
async fn tasks_handed_on_together_share_a_message_per_crm_unless_packing_is_off() {
    use syncroot::domain::Crm;
    for packing in [true, false] {
        let app = TestApp::spawn_with(Options {
            forwarders: 1,
            shards: 1,
            extra_env: vec![
                ("SYNCROOT_QUEUE_PACK_CHANGES".into(), packing.to_string()),
                ("SYNCROOT_CRMS".into(), "hubspot,salesforce".into()),
            ],
            ..Options::default()
        })
        .await;
        let bodies: Vec<Value> = (0..40)
            .map(|i| json!({"email": format!("handed{i}@example.com")}))
            .collect();
        let mut ids = Vec::new();
        for r in join_all(bodies.iter().map(|b| app.post_contact(b))).await {
            assert_eq!(r.status(), 202);
            ids.push(
                r.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        ids.sort();
        let topology = app.topology();
        for crm in [Crm::Hubspot, Crm::Salesforce] {
            let queue = topology.delivery_queue(crm);
            // Nothing consumes the queue: once its depth holds still around a read of every
            // task, that depth is the messages they came in.
            let (messages, mut queued) = eventually("every task handed on", || async {
                let before = app.queue_depth(&queue).await;
                let queued = app.queued_contacts(&queue).await;
                let after = app.queue_depth(&queue).await;
                (queued.len() == ids.len() && before == after).then_some((after, queued))
            })
            .await;
            queued.sort();
            assert_eq!(queued, ids, "{crm}: one task for each create");
            match packing {
                true => assert!(messages < 40, "{crm}: 40 tasks in {messages} messages"),
                false => assert_eq!(messages, 40, "{crm}: one message a task"),
            }
        }
    }
}
