//! The broker refusing or never confirming a write's message, end to end through the API: the
//! client gets a 503 problem, the contact's head and the idempotency record are rolled back,
//! nothing is applied later (a message the broker took without confirming is skipped by the
//! forwarder), and a retry with the same Idempotency-Key succeeds once the broker is healthy.

use syncroot_testkit as common;

use common::proxy::Proxy;
use common::{Options, TestApp};
use reqwest::{Method, Response};
use serde_json::{Value, json};

/// The API waits this long for a confirm before answering 503 (ms).
const PUBLISH_TIMEOUT_MS: &str = "1000";

/// The app's contact changes routed to a queue that refuses every publish (a classic queue,
/// `x-max-length` 0 with `reject-publish`) instead of the shard queues: the broker nacks, and
/// the message is stored nowhere. [`Refusing::clear`] routes to the shard queues again.
struct Refusing {
    conn: lapin::Connection,
    channel: lapin::Channel,
    exchange: String,
    queue: String,
    shards: Vec<(String, String)>,
}

impl Refusing {
    async fn start(app: &TestApp) -> Self {
        use lapin::types::{AMQPValue, FieldTable};
        let topo = app.topology();
        let conn = lapin::Connection::connect(common::AMQP, Default::default())
            .await
            .unwrap();
        let channel = conn.create_channel().await.unwrap();
        let queue = format!("{}.test-refuse", topo.prefix);
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), AMQPValue::LongInt(0));
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        args.insert("x-expires".into(), AMQPValue::LongInt(60_000));
        channel
            .queue_declare(queue.as_str().into(), Default::default(), args)
            .await
            .unwrap();
        let refusing = Self {
            conn,
            channel,
            exchange: topo.contacts_exchange(),
            queue,
            shards: (0..topo.shards)
                .map(|s| (topo.shard_queue(s), s.to_string()))
                .collect(),
        };
        for (shard, key) in &refusing.shards {
            refusing.bind(&refusing.queue, key).await;
            refusing.unbind(shard, key).await;
        }
        refusing
    }

    async fn clear(self) {
        for (shard, key) in &self.shards {
            self.bind(shard, key).await;
            self.unbind(&self.queue, key).await;
        }
        let _ = self
            .channel
            .queue_delete(self.queue.as_str().into(), Default::default())
            .await;
        let _ = self.conn.close(200, "bye".into()).await;
    }

    async fn bind(&self, queue: &str, key: &str) {
        let (q, x, k) = (queue.into(), self.exchange.as_str().into(), key.into());
        let args = Default::default();
        self.channel
            .queue_bind(q, x, k, Default::default(), args)
            .await
            .unwrap();
    }

    async fn unbind(&self, queue: &str, key: &str) {
        let (q, x, k) = (queue.into(), self.exchange.as_str().into(), key.into());
        self.channel
            .queue_unbind(q, x, k, Default::default())
            .await
            .unwrap();
    }
}

/// An app with a short publish timeout, through `amqp_url` when given.
async fn app(amqp_url: Option<String>) -> TestApp {
    let app = TestApp::spawn_with(Options {
        amqp_url,
        extra_env: vec![(
            "SYNCROOT_API_PUBLISH_TIMEOUT_MS".into(),
            PUBLISH_TIMEOUT_MS.into(),
        )],
        ..Options::default()
    })
    .await;
    app.wait_ready().await;
    app
}

/// Posts a contact with an Idempotency-Key.
async fn post_keyed(app: &TestApp, key: &str, body: &Value) -> Response {
    app.authed(Method::POST, "/contacts")
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Asserts a 503 problem document.
async fn assert_unavailable(r: Response, what: &str) {
    assert_eq!(r.status(), 503, "{what}");
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "{what}"
    );
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["status"], 503, "{what}: {p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was accepted"),
        "{what}: {p}"
    );
}

/// After the broker is healthy again: the same key creates the contact once, and replays.
async fn retry_succeeds_once(app: &TestApp, key: &str, body: &Value) -> String {
    let first = post_keyed(app, key, body).await;
    assert_eq!(first.status(), 202, "the retry is accepted");
    let first: Value = first.json().await.unwrap();
    let again = post_keyed(app, key, body).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        again["id"], first["id"],
        "the second retry replays the first"
    );
    let id = first["id"].as_str().unwrap().to_owned();
    app.wait_applied(&id, 1).await;
    id
}

#[tokio::test]
async fn a_write_the_broker_nacks_gets_503_and_leaves_nothing_behind() {
    let app = app(None).await;
    let old = app
        .create(json!({"email": "old@example.com", "first_name": "Old"}))
        .await;
    app.wait_applied(&old, 1).await;
    app.wait_forwarded(1).await;
    let before = app.footprint().await;

    let refusing = Refusing::start(&app).await;
    let new = json!({"email": "new@example.com"});
    assert_unavailable(post_keyed(&app, "nacked-1", &new).await, "create").await;
    let patch = app
        .authed(Method::PATCH, &format!("/contacts/{old}"))
        .json(&json!({"first_name": "New"}))
        .send()
        .await
        .unwrap();
    assert_unavailable(patch, "patch").await;
    app.assert_unchanged(&before, "nacked writes").await;

    refusing.clear().await;
    let id = retry_succeeds_once(&app, "nacked-1", &new).await;
    assert_ne!(id, old);
    let c: Value = app.get_contact(&old).await.json().await.unwrap();
    assert_eq!(
        (&c["first_name"], &c["version"]),
        (&json!("Old"), &json!(1))
    );
    // The forwarder settled exactly the two accepted creates: the nacked messages were
    // stored nowhere, so nothing of them can be applied later.
    app.wait_forwarded(2).await;
    let after = app.footprint().await;
    assert_eq!(app.forwarded(), 2);
    assert_eq!(after.tables["contacts"].count, 2);
    assert_eq!(after.tables["idempotency_keys"].count, 1);
}

#[tokio::test]
async fn a_write_the_broker_never_confirms_gets_503_and_its_message_is_never_applied() {
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let app = app(Some(format!("amqp://guest:guest@{}/%2f", proxy.addr))).await;
    let old = app
        .create(json!({"email": "old@example.com", "first_name": "Old"}))
        .await;
    app.wait_applied(&old, 1).await;
    app.wait_forwarded(1).await;
    let before = app.footprint().await;
    let new = json!({"email": "new@example.com"});
    let patch = || {
        app.authed(Method::PATCH, &format!("/contacts/{old}"))
            .json(&json!({"first_name": "New"}))
            .send()
    };
    // One write at a time: its publish reaches the broker, its confirm does not come back.
    for (n, what) in [(2, "create"), (3, "patch")] {
        proxy.stall();
        let refused = match what {
            "create" => post_keyed(&app, "stalled-1", &new).await,
            _ => patch().await.unwrap(),
        };
        assert_unavailable(refused, what).await;
        proxy.resume();
        // The broker took the message: the forwarder settles it and does not apply it.
        app.wait_forwarded(n).await;
        app.assert_unchanged(&before, what).await;
        app.wait_ready().await;
    }
    let id = retry_succeeds_once(&app, "stalled-1", &new).await;
    assert_ne!(id, old);
    let c: Value = app.get_contact(&old).await.json().await.unwrap();
    assert_eq!(
        (&c["first_name"], &c["version"]),
        (&json!("Old"), &json!(1))
    );
}
