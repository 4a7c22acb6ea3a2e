//! The people the backfill scenario seeds into both sandboxes before SyncRoot goes live, drawn
//! from a fixed seed so every run of a size seeds the same records in the same order.
//!
//! ```text
//! Salesforce (S records)                      HubSpot (H records)
//!   60 % of S: people also in HubSpot  ─────── the same people, one record each
//!              (a quarter with the address typed otherwise: case, spaces;
//!               a tenth with another phone, title or both)
//!   20 pairs of records sharing an address ─── half of those addresses once in HubSpot
//!   the rest: people only in Salesforce        the rest: people only in HubSpot
//! ```
//!
//! HubSpot refuses a second record with an address (its sandbox too, seeding included), so the
//! pairs sharing an address are all in Salesforce. HubSpot stores addresses trimmed and
//! lower-cased and Salesforce refuses spaces in one, so what SyncRoot reads differs in case only
//! (Salesforce's); the spaces are typed into HubSpot all the same, as people type them. What it
//! is not: the run (`backfill`) or what a sandbox does with the records.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use syncroot_testkit::holdings::{Crm, Expected};

/// The population's seed: a run of a given size always seeds the same records.
pub const SEED: u64 = 0x5eed_0bac_0f11;
/// Of the Salesforce records, the share of people HubSpot also holds, %.
const SHARED_PERCENT: usize = 60;
/// Of the people in both, those whose address is typed otherwise in one CRM, %.
const RETYPED_PERCENT: u32 = 25;
/// Of the people in both, those whose Salesforce record has another phone, title or both, %.
const DIFFERING_PERCENT: u32 = 10;
/// Pairs of Salesforce records sharing an address (fewer in an org under 2,000 records).
const DUPLICATE_PAIRS: usize = 20;

const FIRST: [&str; 12] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Dennis",
    "Radia", "Niklaus",
];
const LAST: [&str; 12] = [
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton",
    "Ritchie", "Perlman", "Wirth",
];
const DOMAINS: [&str; 4] = ["example.com", "example.org", "corp.example", "mail.example"];
const TITLES: [&str; 8] = [
    "Engineer",
    "Account Executive",
    "CFO",
    "Product Manager",
    "Designer",
    "Head of Sales",
    "Analyst",
    "Consultant",
];

/// A person's record in one CRM.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The address as typed there.
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub phone: Option<String>,
    pub title: Option<String>,
}

impl Record {
    /// The values compared after a backfill: first name, phone, title.
    pub fn values(&self) -> [Option<&str>; 3] {
        [
            Some(self.first_name.as_str()),
            self.phone.as_deref(),
            self.title.as_deref(),
        ]
    }

    fn body(&self, crm: Crm) -> Value {
        let names = match crm {
            Crm::HubSpot => ["email", "firstname", "lastname", "phone", "jobtitle"],
            Crm::Salesforce => ["Email", "FirstName", "LastName", "Phone", "Title"],
        };
        let values = [
            Some(&self.email),
            Some(&self.first_name),
            Some(&self.last_name),
            self.phone.as_ref(),
            self.title.as_ref(),
        ];
        let body: Map<String, Value> = names
            .iter()
            .zip(values)
            .filter_map(|(name, v)| Some(((*name).to_owned(), json!(v?))))
            .collect();
        Value::Object(body)
    }
}

/// One person the backfill must leave once in SyncRoot and once in each CRM.
#[derive(Clone, Debug)]
pub struct Person {
    /// The address lower-cased: what SyncRoot matches by.
    pub email: String,
    pub hubspot: Option<Record>,
    pub salesforce: Option<Record>,
}

impl Person {
    pub fn record(&self, crm: Crm) -> Option<&Record> {
        match crm {
            Crm::HubSpot => self.hubspot.as_ref(),
            Crm::Salesforce => self.salesforce.as_ref(),
        }
    }

    /// The record whose values every system holds after a backfill: the one there is, or
    /// where two differ, `winner`'s.
    pub fn settled(&self, winner: Option<Crm>) -> Option<&Record> {
        match winner {
            Some(crm) => self.record(crm),
            None => self.hubspot.as_ref().or(self.salesforce.as_ref()),
        }
    }

    /// In both CRMs, with values that differ.
    pub fn differs(&self) -> bool {
        match (&self.hubspot, &self.salesforce) {
            (Some(h), Some(s)) => h.phone != s.phone || h.title != s.title,
            _ => false,
        }
    }
}

/// An address two Salesforce records share: the backfill reports it and leaves it alone.
#[derive(Clone, Debug)]
pub struct Duplicate {
    pub email: String,
    /// HubSpot holds one record of it too.
    pub in_hubspot: bool,
}

/// Everyone seeded, and each CRM's seed body: an array of records in seeding order.
pub struct Population {
    pub people: Vec<Person>,
    pub duplicates: Vec<Duplicate>,
    pub hubspot: Value,
    pub salesforce: Value,
}

impl Population {
    /// `hubspot` and `salesforce` records (HubSpot's at least the people it shares).
    pub fn generate(hubspot: usize, salesforce: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(SEED);
        let pairs = DUPLICATE_PAIRS.min(salesforce / 100);
        let pairs_in_hubspot = (pairs / 2).min(hubspot);
        let shared = (salesforce * SHARED_PERCENT / 100)
            .min(salesforce - 2 * pairs)
            .min(hubspot - pairs_in_hubspot);
        let hubspot_only = hubspot - pairs_in_hubspot - shared;
        let salesforce_only = salesforce - 2 * pairs - shared;

        let mut people = Vec::with_capacity(shared + hubspot_only + salesforce_only);
        for i in 0..shared + hubspot_only + salesforce_only {
            let record = draw(&mut rng, i);
            let email = record.email.clone();
            let (hs, sf) = if i < shared {
                let (hs, sf) = both(&mut rng, record);
                (Some(hs), Some(sf))
            } else if i < shared + hubspot_only {
                (Some(record), None)
            } else {
                (None, Some(record))
            };
            people.push(Person {
                email,
                hubspot: hs,
                salesforce: sf,
            });
        }
        let mut hubspot_records: Vec<Record> =
            people.iter().filter_map(|p| p.hubspot.clone()).collect();
        let mut salesforce_records: Vec<Record> =
            people.iter().filter_map(|p| p.salesforce.clone()).collect();
        let mut duplicates = Vec::with_capacity(pairs);
        for k in 0..pairs {
            let record = draw(&mut rng, people.len() + k);
            let retyped = Record {
                email: title_case(&record.email),
                ..record.clone()
            };
            if k < pairs_in_hubspot {
                hubspot_records.push(record.clone());
            }
            duplicates.push(Duplicate {
                email: record.email.clone(),
                in_hubspot: k < pairs_in_hubspot,
            });
            salesforce_records.extend([record, retyped]);
        }
        // Records are created in seeding order (ids, creation and modification dates follow
        // it): mixed, as people came over the years.
        hubspot_records.shuffle(&mut rng);
        salesforce_records.shuffle(&mut rng);
        Self {
            people,
            duplicates,
            hubspot: bodies(&hubspot_records, Crm::HubSpot),
            salesforce: bodies(&salesforce_records, Crm::Salesforce),
        }
    }

    /// The seed body of `crm`.
    pub fn seed_body(&self, crm: Crm) -> &Value {
        match crm {
            Crm::HubSpot => &self.hubspot,
            Crm::Salesforce => &self.salesforce,
        }
    }

    /// People in both CRMs.
    pub fn shared(&self) -> usize {
        self.people
            .iter()
            .filter(|p| p.hubspot.is_some() && p.salesforce.is_some())
            .count()
    }

    /// People `crm` lacks: the records the backfill has delivery create there.
    pub fn missing_in(&self, crm: Crm) -> usize {
        self.people
            .iter()
            .filter(|p| p.record(crm).is_none())
            .count()
    }

    /// Records the backfill skips for their address: every one of an address two records of
    /// one CRM share, in every CRM.
    pub fn duplicate_records(&self) -> usize {
        self.duplicates
            .iter()
            .map(|d| 2 + usize::from(d.in_hubspot))
            .sum()
    }

    /// What each CRM must hold afterwards: every person once, with their last name.
    pub fn expected(&self) -> Vec<Expected> {
        self.people
            .iter()
            .map(|p| Expected {
                email: p.email.clone(),
                last_name: p
                    .hubspot
                    .as_ref()
                    .or(p.salesforce.as_ref())
                    .map(|r| r.last_name.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }
}

/// Person `i`'s record, with the address as SyncRoot will hold it.
fn draw(rng: &mut StdRng, i: usize) -> Record {
    let first = FIRST[rng.random_range(0..FIRST.len())];
    let last = LAST[rng.random_range(0..LAST.len())];
    let domain = DOMAINS[rng.random_range(0..DOMAINS.len())];
    Record {
        email: format!("{}.{}.{i}@{domain}", first, last).to_lowercase(),
        first_name: first.to_owned(),
        last_name: last.to_owned(),
        phone: rng.random_bool(0.85).then(|| phone(rng)),
        title: rng
            .random_bool(0.9)
            .then(|| TITLES[rng.random_range(0..TITLES.len())].to_owned()),
    }
}

fn phone(rng: &mut StdRng) -> String {
    format!(
        "+1 {} 555 {:04}",
        rng.random_range(200..1000),
        rng.random_range(0..10_000)
    )
}

/// A person's HubSpot and Salesforce records: the same, but for an address typed otherwise
/// now and then, and for differing values in a tenth (a value on both sides, never an empty
/// one against a value, so which is newer decides).
fn both(rng: &mut StdRng, record: Record) -> (Record, Record) {
    let mut hubspot = record.clone();
    let mut salesforce = record;
    if rng.random_ratio(RETYPED_PERCENT, 100) {
        hubspot.email = format!(" {} ", title_case(&hubspot.email));
        salesforce.email = salesforce.email.to_uppercase();
    }
    if rng.random_ratio(DIFFERING_PERCENT, 100) {
        let which = rng.random_range(0..3);
        if which != 1 {
            hubspot.phone.get_or_insert_with(|| phone(rng));
            salesforce.phone = Some(format!(
                "+44 20 {:04} {:04}",
                rng.random_range(0..10_000),
                rng.random_range(0..10_000)
            ));
        }
        if which != 0 {
            let title = hubspot.title.get_or_insert_with(|| TITLES[0].to_owned());
            salesforce.title = Some(format!("Senior {title}"));
        }
    }
    (hubspot, salesforce)
}

/// `ada.lovelace.1@example.com` → `Ada.Lovelace.1@Example.com`.
fn title_case(email: &str) -> String {
    let mut out = String::with_capacity(email.len());
    let mut start = true;
    for c in email.chars() {
        out.push(if start { c.to_ascii_uppercase() } else { c });
        start = matches!(c, '.' | '@');
    }
    out
}

fn bodies(records: &[Record], crm: Crm) -> Value {
    records.iter().map(|r| r.body(crm)).collect()
}
