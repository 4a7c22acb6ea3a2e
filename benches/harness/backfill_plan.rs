//! What the backfill scenario's population asks of each CRM, and what it cost: who wins where
//! two records of a person differ (read back from the sandboxes after seeding), the records
//! each CRM must be written, the least calls that takes (reading every seeded record once,
//! full batches of the creates and updates), and the calls the sandboxes counted. What it is
//! not: the run (`backfill`) or the checks of its outcome (`backfill_checks`).

use std::collections::HashMap;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use syncroot_testkit::calls::CallsByKind;
use syncroot_testkit::holdings::Crm;

use super::{Population, Sandboxes};

/// HubSpot's list page and batch cap.
const HUBSPOT_PAGE: usize = 100;
const HUBSPOT_BATCH: usize = 100;
/// Salesforce's SOQL page and sObject Collections cap.
const SOQL_PAGE: usize = 2_000;
const SALESFORCE_BATCH: usize = 200;
/// SyncRoot's Bulk API 2.0 read, as the scenario configures it (the defaults): an org above
/// `BULK_THRESHOLD` Contacts is read with a query job, `BULK_PAGE` records a results set.
pub const BULK_THRESHOLD: usize = 100_000;
pub const BULK_PAGE: usize = 10_000;

/// The least a CRM's part of the backfill costs, in calls.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Minimum {
    /// Reading every seeded record once.
    pub pages: u64,
    /// Full batches of the people it lacks, and of the people whose values it must take.
    pub creates: u64,
    pub updates: u64,
}

impl Minimum {
    fn new(pages: u64, creates: usize, updates: usize, cap: usize) -> Self {
        Self {
            pages,
            creates: creates.div_ceil(cap) as u64,
            updates: updates.div_ceil(cap) as u64,
        }
    }

    pub fn total(&self) -> u64 {
        self.pages + self.creates + self.updates
    }
}

/// One CRM's cost: the calls made, by kind, against the least needed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CrmCost {
    pub calls: CallsByKind,
    pub minimum: Minimum,
    /// Records the sandbox wrote, and the creates and updates the population needs there.
    pub records_written: u64,
    pub records_needed: u64,
    /// The sandbox's own counts: calls per route, and per query shape when it keeps them.
    pub routes: Value,
    pub queries: Value,
}

impl CrmCost {
    /// Calls made ÷ the minimum.
    pub fn ratio(&self) -> f64 {
        self.calls.total as f64 / self.minimum.total().max(1) as f64
    }
}

/// The population seeded, and who wins where records differ: what each CRM must be written.
pub struct Plan {
    pub pop: Population,
    pub winners: HashMap<String, Crm>,
}

impl Plan {
    /// People whose values `crm` must take: the other CRM's record won.
    fn updates(&self, crm: Crm) -> usize {
        self.winners.values().filter(|w| **w != crm).count()
    }

    /// Records `crm` must be written: the people it lacks, and those updates.
    pub fn needed(&self, crm: Crm) -> u64 {
        (self.pop.missing_in(crm) + self.updates(crm)) as u64
    }

    fn minimum(&self, crm: Crm) -> Minimum {
        let records = self.pop.seed_body(crm).as_array().map_or(0, Vec::len);
        let (pages, cap) = match crm {
            Crm::HubSpot => (records.div_ceil(HUBSPOT_PAGE) as u64, HUBSPOT_BATCH),
            Crm::Salesforce => (salesforce_pages(records), SALESFORCE_BATCH),
        };
        Minimum::new(pages, self.pop.missing_in(crm), self.updates(crm), cap)
    }

    /// What `crm`'s sandbox counted, against the minimum.
    pub async fn cost(&self, sb: &Sandboxes, crm: Crm) -> anyhow::Result<CrmCost> {
        let c = sb.counters(sb.base(crm)).await?;
        Ok(CrmCost {
            calls: CallsByKind::of(crm, &c),
            minimum: self.minimum(crm),
            records_written: c["records_written"].as_u64().unwrap_or(0),
            records_needed: self.needed(crm),
            routes: c["calls"].clone(),
            queries: c["queries"].clone(),
        })
    }
}

/// What reading `records` Salesforce Contacts takes: SOQL pages, or above the Bulk threshold
/// the first SOQL page (which tells the org's size), the query job's creation, one status
/// read and its results sets.
fn salesforce_pages(records: usize) -> u64 {
    if records > BULK_THRESHOLD {
        3 + records.div_ceil(BULK_PAGE) as u64
    } else {
        records.div_ceil(SOQL_PAGE).max(1) as u64
    }
}

/// For each person whose records differ, the CRM whose record wins by the default policy
/// (last writer wins): the later modified, by HubSpot's `lastmodifieddate` and Salesforce's
/// `SystemModstamp` as seeded; the same time goes to Salesforce, ranked before HubSpot.
pub async fn winners(sb: &Sandboxes, pop: &Population) -> anyhow::Result<HashMap<String, Crm>> {
    let hubspot = modified(
        Crm::HubSpot,
        &sb.control.sandbox_contacts(&sb.hubspot).await?,
    )?;
    let salesforce = modified(
        Crm::Salesforce,
        &sb.control.sandbox_contacts(&sb.salesforce).await?,
    )?;
    pop.people
        .iter()
        .filter(|p| p.differs())
        .map(|p| {
            let times = (hubspot.get(&p.email), salesforce.get(&p.email));
            let (Some(h), Some(s)) = times else {
                bail!("{} was not seeded in both CRMs", p.email);
            };
            let winner = if h > s { Crm::HubSpot } else { Crm::Salesforce };
            Ok((p.email.clone(), winner))
        })
        .collect()
}

/// Each live record's modification time, by lower-case e-mail.
fn modified(crm: Crm, dump: &[Value]) -> anyhow::Result<HashMap<String, DateTime<Utc>>> {
    let mut out = HashMap::new();
    for (email, records) in crm.live_by_email(dump) {
        let text = match crm {
            Crm::HubSpot => records[0]["properties"]["lastmodifieddate"].as_str(),
            Crm::Salesforce => records[0]["SystemModstamp"].as_str(),
        }
        .with_context(|| format!("{crm:?} record of {email} has no modification time"))?;
        let at = DateTime::parse_from_rfc3339(text)
            .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
            .with_context(|| format!("{crm:?} modification time {text}"))?;
        out.insert(email, at.with_timezone(&Utc));
    }
    Ok(out)
}
