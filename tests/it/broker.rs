//! RabbitMQ going away: the API refuses writes with 503, accepts nothing half-way, and recovers
//! by itself when the broker is back. And RabbitMQ refusing a message for a moment (a nack):
//! the publisher tries again while its confirm timeout lasts.

use syncroot_testkit as common;

use std::time::Duration;

use common::proxy::Proxy;
use common::{Options, TestApp, eventually};
use lapin::BasicProperties;
use lapin::options::BasicGetOptions;
use serde_json::json;
use syncroot::queue::publisher::{PublishError, Publisher};

#[tokio::test]
async fn with_the_broker_down_writes_get_503_and_nothing_is_persisted() {
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let url = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    let app = TestApp::spawn_with(Options {
        amqp_url: Some(url),
        ..Options::default()
    })
    .await;
    app.wait_ready().await;
    app.create(json!({"email": "before@example.com"})).await;

    proxy.take_down();
    // A write sent before the app sees the cut would still be accepted.
    app.wait_unready().await;
    let refused = eventually("writes to be refused", || async {
        let r = app
            .post_contact(&json!({"email": "during@example.com"}))
            .await;
        (r.status() == 503).then_some(r)
    })
    .await;
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    assert!(refused.headers().contains_key("retry-after"));
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let heads: i64 = sqlx::query_scalar("SELECT count(*) FROM contact_heads")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(heads, 1, "a refused write leaves no trace");

    proxy.bring_up();
    app.wait_ready().await;
    let id = app.create(json!({"email": "during@example.com"})).await;
    assert!(
        !id.is_empty(),
        "the same e-mail is free: the refused write reserved nothing"
    );
    // Once everything has drained, exactly the two accepted contacts were applied: nothing
    // from the refused attempts reached the queue or the applied table.
    app.wait_applied(&id, 1).await;
    let topo = app.topology();
    for shard in 0..topo.shards {
        let q = topo.shard_queue(shard);
        eventually("the shard queues to drain", || async {
            (app.queue_depth(&q).await == 0).then_some(())
        })
        .await;
    }
    let applied: Vec<String> = sqlx::query_scalar("SELECT email FROM contacts ORDER BY email")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(applied, ["before@example.com", "during@example.com"]);
}

#[tokio::test]
async fn a_worker_reports_not_ready_while_the_broker_is_away_and_recovers_by_itself() {
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let app = TestApp::spawn_with(Options {
        amqp_url: Some(format!("amqp://guest:guest@{}/%2f", proxy.addr)),
        forwarders: 0,
        ..Options::default()
    })
    .await;
    let readiness = syncroot::probe::Readiness::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let forwarder = syncroot::app::start_forwarder(&app.cfg, &readiness, stop.clone()).unwrap();
    let (addr, probe) = syncroot::probe::serve(
        "127.0.0.1:0".parse().unwrap(),
        app.db.clone(),
        readiness,
        app.cfg.http,
        stop.clone(),
    )
    .await
    .unwrap();
    let readyz = || async {
        let r = app
            .http
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap();
        (status, body)
    };
    eventually("the forwarder to be ready", || async {
        let (status, _) = readyz().await;
        (status == 200).then_some(())
    })
    .await;

    proxy.take_down();
    let (_, body) = eventually("the forwarder to report not-ready", || async {
        let (status, body) = readyz().await;
        (status == 503).then_some((status, body))
    })
    .await;
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["postgres"], "ok");
    assert!(
        body["checks"]["rabbitmq:forwarder"]
            .as_str()
            .unwrap()
            .starts_with("error")
    );

    proxy.bring_up();
    eventually("the forwarder to be ready again", || async {
        let (status, _) = readyz().await;
        (status == 200).then_some(())
    })
    .await;
    // And it works again: a write is applied.
    app.wait_ready().await;
    let id = app.create(json!({"email": "back@example.com"})).await;
    app.wait_applied(&id, 1).await;
    stop.cancel();
    let _ = forwarder.await;
    let _ = probe.await;
}

/// A running app, a publisher of its own, and a queue that holds one message (already
/// published: `first`) and nacks any other publish (`reject-publish`), as a quorum queue without
/// a running leader does for a moment. The queue expires a minute after its last use.
struct FullQueue {
    _app: TestApp,
    conn: lapin::Connection,
    channel: lapin::Channel,
    name: String,
    publisher: Publisher,
}

impl FullQueue {
    async fn start(confirm_timeout: Duration) -> Self {
        use lapin::types::{AMQPValue, FieldTable};
        let app = TestApp::spawn_with(Options {
            forwarders: 0,
            ..Options::default()
        })
        .await;
        let name = format!("{}.test-full", app.cfg.queue.prefix);
        let conn = lapin::Connection::connect(common::AMQP, Default::default())
            .await
            .unwrap();
        let channel = conn.create_channel().await.unwrap();
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), AMQPValue::LongInt(1));
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        args.insert("x-expires".into(), AMQPValue::LongInt(60_000));
        channel
            .queue_declare(name.as_str().into(), Default::default(), args)
            .await
            .unwrap();
        let publisher = app.publisher(confirm_timeout).await;
        let full = Self {
            _app: app,
            conn,
            channel,
            name,
            publisher,
        };
        full.publish(b"first").await.unwrap();
        full
    }

    fn publish(
        &self,
        body: &'static [u8],
    ) -> impl std::future::Future<Output = Result<(), PublishError>> + Send + 'static {
        let (publisher, queue) = (self.publisher.clone(), self.name.clone());
        let props = BasicProperties::default().with_delivery_mode(2);
        async move { publisher.publish("", &queue, body, props).await }
    }

    /// Takes the message at the head of the queue.
    async fn take(&self) -> Vec<u8> {
        self.channel
            .basic_get(self.name.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("a message in the queue")
            .delivery
            .data
    }

    async fn delete(self) {
        let _ = self
            .channel
            .queue_delete(self.name.as_str().into(), Default::default())
            .await;
        let _ = self.conn.close(200, "bye".into()).await;
    }
}

#[tokio::test]
async fn a_nacked_publish_is_tried_again_until_the_queue_takes_it() {
    let full = FullQueue::start(Duration::from_secs(30)).await;

    // The queue is full: every try of the second publish is nacked, so it keeps waiting
    // instead of failing at the first nack.
    let second = tokio::spawn(full.publish(b"second"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "a nack must not end the publish while the confirm timeout lasts: {:?}",
        second.await
    );

    // Room again: the next try is confirmed.
    assert_eq!(full.take().await, b"first");
    second.await.unwrap().expect("confirmed once there is room");
    assert_eq!(full.take().await, b"second");
    full.delete().await;
}

#[tokio::test]
async fn a_publish_nacked_for_the_whole_confirm_timeout_is_refused() {
    let full = FullQueue::start(Duration::from_secs(1)).await;
    let refused = full.publish(b"second").await;
    assert!(matches!(refused, Err(PublishError::Nacked)), "{refused:?}");
    // The refusal is the queue's, not the connection's: the publisher stays usable.
    assert!(full.publisher.is_connected().await);
    full.delete().await;
}

/// A consumer that takes `expect` deliveries, acknowledges those at the 1-based positions in
/// `ack` together, and holds the rest until its session closes.
struct Acks {
    queues: Vec<String>,
    expect: usize,
    ack: Vec<usize>,
    /// The bodies received.
    got: std::sync::Mutex<Vec<String>>,
}

impl syncroot::worker::consumer::Consume for Acks {
    fn name(&self) -> String {
        "acks".to_owned()
    }

    fn role(&self) -> &'static str {
        "test"
    }

    fn queues(&self) -> Vec<String> {
        self.queues.clone()
    }

    fn prefetch(&self) -> u16 {
        20
    }

    async fn consume(
        &self,
        session: &mut syncroot::worker::consumer::Session,
        _shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<(), syncroot::worker::consumer::SessionEnd> {
        let mut held = Vec::new();
        while held.len() < self.expect {
            let d = session.recv().await?;
            let body = String::from_utf8(d.data.clone()).unwrap();
            self.got.lock().unwrap().push(body);
            held.push(d);
        }
        let acked = self
            .ack
            .iter()
            .map(|&n| (&held[n - 1].acker, syncroot::metrics::Settled::Acked));
        syncroot::worker::settle::ack_all(acked).await?;
        Ok(())
    }
}

/// An app whose shard queues nobody consumes, and where a consumer of its own connects.
async fn unconsumed() -> (TestApp, syncroot::worker::consumer::Broker) {
    let app = TestApp::spawn_with(Options {
        forwarders: 0,
        ..Options::default()
    })
    .await;
    let broker = syncroot::worker::consumer::Broker {
        queue: app.cfg.queue.clone(),
        topology: app.topology(),
        readiness: Default::default(),
    };
    (app, broker)
}

/// Acknowledgements are folded into one `multiple` ack only below every delivery still held:
/// when the session closes, RabbitMQ hands back exactly the deliveries not acknowledged.
#[tokio::test]
async fn acknowledgements_fold_only_over_deliveries_already_handled() {
    let (app, broker) = unconsumed().await;
    let queue = app.topology().shard_queue(0);
    for n in 1..=8 {
        app.publish_raw(&queue, n.to_string().as_bytes()).await;
    }
    let never = tokio_util::sync::CancellationToken::new();
    let session = |expect, ack: &[usize]| Acks {
        queues: vec![queue.clone()],
        expect,
        ack: ack.to_vec(),
        got: Default::default(),
    };
    // 4 and 7 held: 1, 2 and 3 fold into one ack; 5, 6 and 8 may not pass 4.
    let first = session(8, &[3, 2, 1, 6, 5, 8]);
    syncroot::worker::consumer::supervise(&broker, &first, &never).await;
    // When the session closed, the held ones came back, and only they.
    let second = session(2, &[1, 2]);
    let run = syncroot::worker::consumer::supervise(&broker, &second, &never);
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap_or_else(|_| panic!("handed back: {:?}", second.got.lock().unwrap()));
    assert_eq!(*second.got.lock().unwrap(), ["4", "7"]);
    assert_eq!(app.queue_depth(&queue).await, 0, "nothing else came back");
}

/// A session consuming several queues takes their deliveries interleaved; acknowledging what
/// it took never settles a delivery another queue's consumer still holds in its buffer.
#[tokio::test]
async fn acknowledgements_never_reach_deliveries_not_yet_taken_from_another_queue() {
    let (app, broker) = unconsumed().await;
    let topo = app.topology();
    let queues = vec![topo.shard_queue(0), topo.shard_queue(1)];
    for n in 1..=8 {
        for (q, queue) in queues.iter().enumerate() {
            app.publish_raw(queue, format!("{q}-{n}").as_bytes()).await;
        }
    }
    let never = tokio_util::sync::CancellationToken::new();
    let session = |expect, ack: Vec<usize>| Acks {
        queues: queues.clone(),
        expect,
        ack,
        got: Default::default(),
    };
    // Half taken and acknowledged together; the other half still in the consumers' buffers.
    let first = session(8, (1..=8).collect());
    syncroot::worker::consumer::supervise(&broker, &first, &never).await;
    let second = session(8, (1..=8).collect());
    let run = syncroot::worker::consumer::supervise(&broker, &second, &never);
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "took {:?}, then only {:?} came back",
                first.got.lock().unwrap(),
                second.got.lock().unwrap()
            )
        });
    let mut all: Vec<String> = first.got.lock().unwrap().clone();
    all.extend(second.got.lock().unwrap().iter().cloned());
    all.sort();
    let mut sent: Vec<String> = (1..=8)
        .flat_map(|n| [format!("0-{n}"), format!("1-{n}")])
        .collect();
    sent.sort();
    assert_eq!(all, sent, "each delivery taken exactly once");
    for queue in &queues {
        assert_eq!(app.queue_depth(queue).await, 0, "nothing else came back");
    }
}
