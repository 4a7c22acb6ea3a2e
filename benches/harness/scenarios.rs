//! The measurements. Each returns plain numbers; `report` prints and saves them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{AMQP, Binaries, Mode, Sandboxes, Stats, SyncRoot};

/// Concurrent API clients for the accept-rate and burst runs.
const CLIENTS: usize = 64;

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
/// durable quorum queue, up to 256 confirms in flight (as platform-notes measured it).
pub async fn broker_ceiling(seconds: u64) -> anyhow::Result<f64> {
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
        while inflight.len() < 256 {
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

/// Latencies (ms) from each 202 until the contact is synced in both CRMs, at `rate` per second.
///
/// One poller reads `GET /contacts` every 5 ms (each contact's `sync` section is there, set
/// right after each CRM answered), so measuring adds a light, constant load instead of one
/// poll loop per contact.
pub async fn light_load_latency(
    sr: &SyncRoot,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Vec<f64>> {
    let total = (rate * seconds) as usize;
    let accepted: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let done: Arc<std::sync::Mutex<Vec<f64>>> = Arc::default();
    let poller = {
        let (accepted, done) = (accepted.clone(), done.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(seconds + 60);
            while done.lock().map_or(0, |d| d.len()) < total && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if accepted.lock().map_or(true, |a| a.is_empty()) {
                    continue;
                }
                let page: Value = sr.list(200).send().await?.json().await?;
                let now = Instant::now();
                for c in page["items"].as_array().into_iter().flatten() {
                    let synced = ["hubspot", "salesforce"]
                        .iter()
                        .all(|crm| c["sync"][crm]["state"] == "synced");
                    let id = c["id"].as_str().unwrap_or_default();
                    if synced && let Some(t) = accepted.lock().ok().and_then(|mut a| a.remove(id)) {
                        done.lock()
                            .map(|mut d| d.push((now - t).as_secs_f64() * 1000.0))
                            .ok();
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }
    };
    let creator = async {
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
        for i in 0..total {
            tick.tick().await;
            let body = json!({"email": format!("lat{i}@bench.example"), "last_name": "Latency"});
            let r = sr.post(&body).send().await?;
            let t = Instant::now();
            anyhow::ensure!(r.status() == 202, "create answered {}", r.status());
            let id = r.json::<Value>().await?["id"]
                .as_str()
                .context("id")?
                .to_owned();
            accepted.lock().map(|mut a| a.insert(id, t)).ok();
        }
        Ok(())
    };
    let (p, c) = tokio::join!(poller, creator);
    p?;
    c?;
    let out = done.lock().map(|d| d.clone()).unwrap_or_default();
    anyhow::ensure!(
        out.len() == total,
        "only {} of {total} contacts synced within a minute",
        out.len()
    );
    Ok(out)
}

/// One burst's outcome.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Burst {
    pub contacts: usize,
    /// Seconds to get every create accepted.
    pub accept_secs: f64,
    /// Seconds from the first create until each sandbox held every record.
    pub hubspot_secs: f64,
    pub salesforce_secs: f64,
    pub hubspot_calls: u64,
    pub salesforce_calls: u64,
    pub hubspot_min_calls: u64,
    pub salesforce_min_calls: u64,
    pub rate_limited: u64,
}

/// `n` creates as fast as the API takes them; waits until both sandboxes hold all of them.
pub async fn burst(sr: &SyncRoot, sb: &Sandboxes, n: usize) -> anyhow::Result<Burst> {
    let start = Instant::now();
    create_many(sr, n, "burst").await?;
    let accept_secs = start.elapsed().as_secs_f64();
    let (mut hs_done, mut sf_done) = (None, None);
    let deadline = start + Duration::from_secs(600);
    while hs_done.is_none() || sf_done.is_none() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "burst not delivered within 10 minutes"
        );
        let t = start.elapsed().as_secs_f64();
        if hs_done.is_none() && written(sb, &sb.hubspot).await? >= n as u64 {
            hs_done = Some(t);
        }
        if sf_done.is_none() && written(sb, &sb.salesforce).await? >= n as u64 {
            sf_done = Some(t);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hs = sb.counters(&sb.hubspot).await?;
    let sf = sb.counters(&sb.salesforce).await?;
    Ok(Burst {
        contacts: n,
        accept_secs,
        hubspot_secs: hs_done.unwrap_or_default(),
        salesforce_secs: sf_done.unwrap_or_default(),
        hubspot_calls: hs["calls_total"].as_u64().unwrap_or(0),
        salesforce_calls: sf["calls_total"].as_u64().unwrap_or(0),
        hubspot_min_calls: n.div_ceil(100) as u64,
        salesforce_min_calls: n.div_ceil(200) as u64,
        rate_limited: hs["rate_limited"].as_u64().unwrap_or(0)
            + sf["rate_limited"].as_u64().unwrap_or(0),
    })
}

async fn written(sb: &Sandboxes, base: &str) -> anyhow::Result<u64> {
    Ok(sb.counters(base).await?["records_written"]
        .as_u64()
        .unwrap_or(0))
}

/// Delivery under a quota.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Quota {
    pub backlog: usize,
    pub burst_limit_per_10s: u64,
    pub seconds: f64,
    pub contacts_per_sec: f64,
    /// The rate once the first window has rolled: a rolling window lets a full allowance go
    /// at once at the start, which flatters a short run.
    pub sustained_contacts_per_sec: f64,
    /// What the quota allows at full batches: burst_limit / 10 s × 100 records.
    pub ceiling_contacts_per_sec: f64,
    pub calls: u64,
    pub calls_per_sec: f64,
    pub rate_limited: u64,
}

/// A backlog of creates delivered to HubSpot at the Starter tier's 100 requests per 10 s.
pub async fn quota(bin: &Binaries, sb: &Sandboxes, backlog: usize) -> anyhow::Result<Quota> {
    let limit = 100u64;
    let mut sr = SyncRoot::start(
        bin,
        sb,
        Mode::Roles,
        &[
            ("SYNCROOT_CRMS", "hubspot"),
            ("SYNCROOT_HUBSPOT_RATE_LIMIT", "100"),
        ],
    )
    .await?;
    // Queue the backlog first (no delivery worker yet), so delivery starts with all of it.
    create_many(&sr, backlog, "quota").await?;
    wait_queued(&sr, "deliver.hubspot", backlog).await?;
    sb.set_limits(limit as u32).await?;
    sb.control.post(&sb.hubspot, "counters/reset").await?;
    sr.start_delivery()?;
    let mut first: Option<(Instant, u64)> = None;
    let mut rolled: Option<(Instant, u64)> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    let done = loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "quota backlog not delivered within 10 minutes"
        );
        let w = written(sb, &sb.hubspot).await?;
        if first.is_none() && w > 0 {
            first = Some((Instant::now(), w));
        }
        if rolled.is_none()
            && let Some((t0, _)) = first
            && t0.elapsed() >= Duration::from_secs(10)
        {
            rolled = Some((Instant::now(), w));
        }
        if w >= backlog as u64 {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (t0, w0) = first.unwrap_or((done, 0));
    let secs = (done - t0).as_secs_f64().max(1e-3);
    let sustained = rolled.map_or(f64::NAN, |(t, w)| {
        (backlog as u64 - w) as f64 / (done - t).as_secs_f64().max(1e-3)
    });
    let c = sb.counters(&sb.hubspot).await?;
    let calls = c["calls_total"].as_u64().unwrap_or(0);
    sr.stop().await;
    Ok(Quota {
        backlog,
        burst_limit_per_10s: limit,
        seconds: secs,
        contacts_per_sec: (backlog as u64 - w0) as f64 / secs,
        sustained_contacts_per_sec: sustained,
        ceiling_contacts_per_sec: limit as f64 / 10.0 * 100.0,
        calls,
        calls_per_sec: calls.saturating_sub(1) as f64 / secs,
        rate_limited: c["rate_limited"].as_u64().unwrap_or(0),
    })
}

/// `n` creates from 64 concurrent clients, e-mails `{tag}{i}@bench.example`.
async fn create_many(sr: &SyncRoot, n: usize, tag: &str) -> anyhow::Result<()> {
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

async fn wait_queued(sr: &SyncRoot, queue: &str, n: usize) -> anyhow::Result<()> {
    let conn = Connection::connect(AMQP, Default::default()).await?;
    let ch = conn.create_channel().await?;
    let name = sr.queue(queue);
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    for _ in 0..3000 {
        let q = ch
            .queue_declare(name.as_str().into(), passive, FieldTable::default())
            .await?;
        if q.message_count() as usize >= n {
            let _ = conn.close(200, "bye".into()).await;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{name} never held {n} messages")
}

/// Two-way sync at light load.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TwoWay {
    /// Edits made in each CRM's UI.
    pub edits: usize,
    /// From a UI edit's answer until the other sandbox holds the value, ms.
    pub arrival_p50_ms: f64,
    pub arrival_p99_ms: f64,
    /// CRM calls (both sandboxes, every endpoint) per edit, and records written back to the
    /// CRM an edit came from (echo writes; 0 expected).
    pub calls_per_edit: f64,
    pub echo_writes: u64,
}

/// The SyncRoot settings that accept the sandboxes' signed webhooks (the sandboxes' default
/// secrets and HubSpot app id).
pub fn two_way_env() -> Vec<(&'static str, String)> {
    let s = syncroot_testkit::sandbox_settings();
    vec![
        ("SYNCROOT_HUBSPOT_WEBHOOK_SECRETS", s.hubspot.client_secret),
        (
            "SYNCROOT_SALESFORCE_WEBHOOK_SECRETS",
            s.salesforce.notify_secret,
        ),
        ("SYNCROOT_HUBSPOT_APP_ID", s.hubspot.app_id.to_string()),
    ]
}

/// `contacts` contacts created through the API; then, at `rate` edits per second for
/// `seconds`, a job title edited in one CRM's UI (alternating), timed until the other CRM's
/// sandbox holds it.
pub async fn two_way(
    sr: &SyncRoot,
    sb: &Sandboxes,
    contacts: usize,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<TwoWay> {
    let settings = syncroot_testkit::sandbox_settings();
    for (base, crm, secret) in [
        (&sb.hubspot, "hubspot", settings.hubspot.client_secret),
        (
            &sb.salesforce,
            "salesforce",
            settings.salesforce.notify_secret,
        ),
    ] {
        let hook = json!({"url": format!("{}/webhooks/{crm}", sr.base), "secret": secret});
        sb.control.put(base, "webhook", &hook).await?;
    }
    create_many(sr, contacts, "twoway").await?;
    // The records, once both sandboxes hold every contact (by e-mail).
    let deadline = Instant::now() + Duration::from_secs(120);
    let pairs = loop {
        let hs = sb.control.sandbox_contacts(&sb.hubspot).await?;
        let sf = sb.control.sandbox_contacts(&sb.salesforce).await?;
        let by_email: HashMap<String, String> = sf
            .iter()
            .filter_map(|c| {
                Some((
                    c["Email"].as_str()?.to_lowercase(),
                    c["Id"].as_str()?.to_owned(),
                ))
            })
            .collect();
        let pairs: Vec<(String, String)> = hs
            .iter()
            .filter_map(|c| {
                let email = c["properties"]["email"].as_str()?.to_lowercase();
                Some((c["id"].as_str()?.to_owned(), by_email.get(&email)?.clone()))
            })
            .collect();
        if pairs.len() == contacts {
            break pairs;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "contacts not in both CRMs within 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Let the creates' own webhooks (echoes) settle before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let count = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let (hs0, sf0) = (
        sb.counters(&sb.hubspot).await?,
        sb.counters(&sb.salesforce).await?,
    );

    let edits = (rate * seconds) as usize;
    let mut arrival_ms = Vec::with_capacity(edits);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    for i in 0..edits {
        tick.tick().await;
        let (hs_id, sf_id) = &pairs[i % pairs.len()];
        let title = format!("Title {i}");
        let from_hubspot = i % 2 == 0;
        let (edited, other, path, body) = if from_hubspot {
            let body = json!({"properties": {"jobtitle": title}});
            (
                &sb.hubspot,
                &sb.salesforce,
                format!("ui/contacts/{hs_id}"),
                body,
            )
        } else {
            (
                &sb.salesforce,
                &sb.hubspot,
                format!("ui/contacts/{sf_id}"),
                json!({"Title": title}),
            )
        };
        sb.control
            .call(edited, reqwest::Method::PATCH, &path, Some(&body))
            .await?;
        let t = Instant::now();
        let target = if from_hubspot { sf_id } else { hs_id };
        loop {
            let holds = sb.control.sandbox_contacts(other).await?.iter().any(|c| {
                let id = c["id"].as_str().or(c["Id"].as_str());
                let v = c["properties"]["jobtitle"].as_str().or(c["Title"].as_str());
                id == Some(target.as_str()) && v == Some(title.as_str())
            });
            if holds {
                arrival_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(60),
                "edit {i} did not arrive within a minute"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // Webhooks of the last writes (echoes) come back; give them time to cost what they cost.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (hs1, sf1) = (
        sb.counters(&sb.hubspot).await?,
        sb.counters(&sb.salesforce).await?,
    );
    let calls = count(&hs1, "calls_total") - count(&hs0, "calls_total")
        + count(&sf1, "calls_total")
        - count(&sf0, "calls_total");
    let written = count(&hs1, "records_written") - count(&hs0, "records_written")
        + count(&sf1, "records_written")
        - count(&sf0, "records_written");
    let mut sorted = arrival_ms.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(TwoWay {
        edits,
        arrival_p50_ms: super::report::percentile(&sorted, 50.0),
        arrival_p99_ms: super::report::percentile(&sorted, 99.0),
        calls_per_edit: calls as f64 / edits.max(1) as f64,
        // Each edit needs exactly one write, to the other CRM.
        echo_writes: written.saturating_sub(edits as u64),
    })
}
