//! Whether a backfill did its work, against the population seeded: each CRM holds every person
//! once with the values that should win and the duplicates as seeded, nothing else; SyncRoot
//! holds every person once; the job's counters are the population's. Each check answers the
//! problems it found, as sentences with a few examples; none is an error, so a run reports
//! all of them. What it is not: the waiting or the measuring (`backfill`).

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde_json::Value;
use syncroot_testkit::KEY;
use syncroot_testkit::holdings::{Crm, Holdings};

use super::{Population, Record, SyncRoot};

/// Examples given with a problem.
const EXAMPLES: usize = 3;

/// A CRM's dump against the population: its problems, and when it wrote the last of the people.
pub fn check_sandbox(
    crm: Crm,
    dump: &[Value],
    pop: &Population,
    winners: &HashMap<String, Crm>,
) -> (Vec<String>, Option<DateTime<Utc>>) {
    let held = Holdings::of(crm, dump, &pop.expected());
    let live = crm.live_by_email(dump);
    let mut problems = Vec::new();
    if !held.complete() {
        let wrong: Vec<_> = held
            .missing
            .iter()
            .chain(&held.wrong)
            .take(EXAMPLES)
            .collect();
        problems.push(format!(
            "{crm:?} does not hold {} people once with their last name ({} missing, {} other or more than once; e.g. {wrong:?})",
            held.missing.len() + held.wrong.len(),
            held.missing.len(),
            held.wrong.len(),
        ));
    }
    let off: Vec<&str> = pop
        .people
        .iter()
        .filter(|p| {
            let want = p.settled(winners.get(&p.email).copied());
            match live.get(&p.email).map(Vec::as_slice) {
                Some([r]) => Some(values(crm, r)) != want.map(Record::values),
                _ => false,
            }
        })
        .map(|p| p.email.as_str())
        .collect();
    if !off.is_empty() {
        problems.push(format!(
            "{crm:?}: {} people hold other first names, phones or titles than they should (the newer record's where two differed); e.g. {:?}",
            off.len(),
            &off[..off.len().min(EXAMPLES)]
        ));
    }
    let mut in_crm = pop.people.len();
    for d in &pop.duplicates {
        let want = match crm {
            Crm::HubSpot => usize::from(d.in_hubspot),
            Crm::Salesforce => 2,
        };
        in_crm += want;
        let n = live.get(&d.email).map_or(0, Vec::len);
        if n != want {
            problems.push(format!(
                "{crm:?} holds {n} records of {}, whose {want} records were to be left alone",
                d.email
            ));
        }
    }
    let total: usize = live.values().map(Vec::len).sum();
    if total != in_crm {
        problems.push(format!(
            "{crm:?} holds {total} live records: the people and the duplicates are {in_crm}"
        ));
    }
    (problems, held.last_written())
}

/// The first name, phone and title a record holds (an empty value is none).
fn values(crm: Crm, r: &Value) -> [Option<&str>; 3] {
    let (fields, names) = match crm {
        Crm::HubSpot => (&r["properties"], ["firstname", "phone", "jobtitle"]),
        Crm::Salesforce => (r, ["FirstName", "Phone", "Title"]),
    };
    names.map(|n| fields[n].as_str().filter(|v| !v.is_empty()))
}

/// The finished job against the population of `records` records.
pub fn check_job(job: &Value, pop: &Population, records: usize) -> Vec<String> {
    if job["status"] != "succeeded" {
        return vec![format!(
            "the backfill job ended {}: {}",
            job["status"], job["error"]
        )];
    }
    let counter = |name: &str| job["result"]["counters"][name].as_u64();
    let people = pop.people.len() as u64;
    let shared = pop.shared() as u64;
    let mut problems = Vec::new();
    for (name, want) in [
        ("read", records as u64),
        ("created", people),
        ("matched", shared),
        ("duplicates", pop.duplicate_records() as u64),
        ("errors", 0),
        ("skipped", 0),
    ] {
        if counter(name) != Some(want) {
            problems.push(format!(
                "the job counted {name} {:?}, the population {want}",
                counter(name)
            ));
        }
    }
    // A record of the second CRM whose contact the first CRM's record created is linked by
    // the backfill or by that contact's delivery, whichever comes first.
    let linked = counter("linked").unwrap_or(0);
    if !(people..=people + shared).contains(&linked) {
        problems.push(format!(
            "the job linked {linked} records: {people} to {} expected",
            people + shared
        ));
    }
    let groups = job["result"]["duplicates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let pairs = groups
        .iter()
        .filter(|g| {
            g["crm"] == "salesforce" && g["records"].as_array().is_some_and(|r| r.len() == 2)
        })
        .count();
    // The job lists the first groups it met; the population's few pairs are all of them.
    if pairs != groups.len() || pairs != pop.duplicates.len() {
        problems.push(format!(
            "the job reported {} groups of records sharing an address ({pairs} Salesforce pairs), {} seeded",
            groups.len(),
            pop.duplicates.len()
        ));
    }
    problems
}

/// SyncRoot's contacts (the API's list, every page): every person once, nobody else.
pub async fn check_syncroot(sr: &SyncRoot, pop: &Population) -> anyhow::Result<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut twice = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/contacts?limit=200", sr.base);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = sr
            .http
            .get(url)
            .bearer_auth(KEY)
            .send()
            .await?
            .json()
            .await?;
        for c in page["items"].as_array().into_iter().flatten() {
            let email = c["email"].as_str().unwrap_or_default().to_lowercase();
            if !seen.insert(email.clone()) {
                twice.push(email);
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let people: BTreeSet<String> = pop.people.iter().map(|p| p.email.clone()).collect();
    let missing: Vec<_> = people.difference(&seen).take(EXAMPLES).collect();
    let extra: Vec<_> = seen.difference(&people).take(EXAMPLES).collect();
    let mut problems = Vec::new();
    if !missing.is_empty() || !extra.is_empty() || !twice.is_empty() {
        problems.push(format!(
            "SyncRoot holds {} contacts for {} people: {} missing (e.g. {missing:?}), {} not people (e.g. {extra:?}), {} twice",
            seen.len() + twice.len(),
            people.len(),
            people.difference(&seen).count(),
            seen.difference(&people).count(),
            twice.len()
        ));
    }
    Ok(problems)
}
