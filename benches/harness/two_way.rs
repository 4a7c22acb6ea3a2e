//! Two-way sync at light load: edits in each CRM's UI, timed until the other CRM's sandbox
//! holds them, with the CRM calls they cost and any echo writes.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Sandboxes, SyncRoot, create_many};

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
