//! A stand-in for a Slack incoming webhook: counts the alerts SyncRoot posts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde_json::Value;

pub struct Receiver {
    pub url: String,
    received: Arc<AtomicUsize>,
}

async fn receive(State(n): State<Arc<AtomicUsize>>, body: axum::Json<Value>) -> &'static str {
    if body.0["text"].as_str().is_some_and(|t| !t.is_empty()) {
        n.fetch_add(1, Ordering::Relaxed);
    }
    "ok"
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let received = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/alerts", listener.local_addr()?);
        let app = Router::new()
            .route("/alerts", post(receive))
            .with_state(received.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, received })
    }

    /// Alerts with a non-empty `text` received so far.
    pub fn count(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }
}
