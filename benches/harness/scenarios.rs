//! The broker's ceiling, the API's accept rate and light-load latency. Each returns plain
//! numbers; `report` prints and saves them, `verdict` judges them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection};
use serde_json::json;
use syncroot_testkit::holdings::Crm;
use tokio::time::Instant;

use super::{
    AMQP, Binaries, Mode, Sandboxes, Stats, SyncRoot, expected, held_by_all_at, secs_between,
    wait_held,
};

/// Concurrent API clients for the accept-rate and burst runs.
pub const CLIENTS: usize = 64;

/// Runs `f` `runs` times and returns the statistics of its results.
pub async fn median_of<F, Fut>(runs: usize, mut f: F) -> anyhow::Result<Stats>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<f64>>,
{
    let mut v = Vec::new();
    for _ in 0..runs {
        v.push(f().await?);
    }
    Ok(Stats::of(&v))
}

/// RabbitMQ's confirmed-publish rate on this machine: persistent 500-byte messages to a
/// durable quorum queue, up to `in_flight` confirms outstanding (platform-notes measured it at
/// 256).
pub async fn broker_ceiling(seconds: u64, in_flight: usize) -> anyhow::Result<f64> {
    let conn = Connection::connect(AMQP, Default::default()).await?;
    let ch = conn.create_channel().await?;
    let queue = format!("bench.ceiling.{}", std::process::id());
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(b"quorum".to_vec())),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue.as_str().into(), durable, args)
        .await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let payload = vec![b'x'; 500];
    let props = BasicProperties::default().with_delivery_mode(2);
    let mut inflight = FuturesUnordered::new();
    let mut confirmed = 0u64;
    let end = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    while Instant::now() < end {
        while inflight.len() < in_flight {
            let c = ch
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &payload,
                    props.clone(),
                )
                .await?;
            inflight.push(c);
        }
        if let Some(r) = inflight.next().await {
            r?;
            confirmed += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    while let Some(r) = inflight.next().await {
        r?;
    }
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    let _ = conn.close(200, "bye".into()).await;
    Ok(confirmed as f64 / elapsed)
}

/// The accept rate of a fresh SyncRoot in `mode`, over `opts.runs` runs.
pub async fn accept_rates(
    bin: &Binaries,
    sb: &Sandboxes,
    mode: Mode,
    opts: &super::Opts,
) -> anyhow::Result<Stats> {
    let sr = SyncRoot::start(bin, sb, mode, &[]).await?;
    let mut rates = Vec::new();
    for run in 0..opts.runs {
        rates.push(accept_rate(&sr, opts.seconds, run).await?);
    }
    sr.stop().await;
    sb.reset().await?;
    Ok(Stats::of(&rates))
}

/// Accepted creates per second at 64 concurrent clients for `seconds`.
pub async fn accept_rate(sr: &SyncRoot, seconds: u64, run: usize) -> anyhow::Result<f64> {
    let end = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let accepted = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let accepted = accepted.clone();
        let mut i = 0usize;
        clients.push(async move {
            loop {
                if Instant::now() >= end {
                    break;
                }
                let body =
                    json!({"email": format!("a{run}-{c}-{i}@bench.example"), "last_name": "Bench"});
                i += 1;
                match sr.post(&body).send().await {
                    Ok(r) if r.status() == 202 => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => eprintln!("   unexpected {}", r.status()),
                    Err(e) => eprintln!("   request failed: {e}"),
                }
            }
        });
    }
    futures_util::future::join_all(clients).await;
    Ok(accepted.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// Latencies (ms) from each create's 202 until both sandboxes hold the contact, at `rate` per
/// second for `seconds`.
///
/// The end of each latency is the later of the two records' own write times (HubSpot's
/// `updatedAt`, Salesforce's `LastModifiedDate`), read from the sandboxes once every contact
/// arrived or `settle` passed, so measuring adds no load while it runs. A contact not held as
/// sent by then counts as an infinite latency: it can only worsen the percentiles.
pub async fn light_load_latency(
    sr: &SyncRoot,
    sb: &Sandboxes,
    rate: u64,
    seconds: u64,
    settle: Duration,
) -> anyhow::Result<Vec<f64>> {
    let total = (rate * seconds) as usize;
    let mut accepted_at = HashMap::with_capacity(total);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    for i in 0..total {
        tick.tick().await;
        let email = format!("lat{i}@bench.example");
        let r = sr
            .post(&json!({"email": email, "last_name": "Latency"}))
            .send()
            .await?;
        let t = Utc::now();
        anyhow::ensure!(r.status() == 202, "create answered {}", r.status());
        accepted_at.insert(email, t);
    }
    let expected = expected("lat", total, "Latency");
    let held = wait_held(sb, &[Crm::HubSpot, Crm::Salesforce], &expected, settle).await?;
    let in_both = held_by_all_at(&held);
    // In the order sent.
    Ok((0..total)
        .map(|i| {
            let email = format!("lat{i}@bench.example");
            match (accepted_at.get(&email), in_both.get(&email)) {
                (Some(t), Some(u)) => secs_between(*t, *u) * 1000.0,
                _ => f64::INFINITY,
            }
        })
        .collect())
}

/// `n` creates from 64 concurrent clients, e-mails `{tag}{i}@bench.example`.
pub async fn create_many(sr: &SyncRoot, n: usize, tag: &str) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let clients = (0..CLIENTS).map(|_| {
        let next = next.clone();
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let body =
                    json!({"email": format!("{tag}{i}@bench.example"), "last_name": "Bench"});
                let r = sr.post(&body).send().await?;
                anyhow::ensure!(r.status() == 202, "create answered {}", r.status());
            }
        }
    });
    for r in futures_util::future::join_all(clients).await {
        r?;
    }
    Ok(())
}
