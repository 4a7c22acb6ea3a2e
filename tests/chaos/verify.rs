//! The checks: Postgres, each CRM sandbox and the dead-letter store against what the API
//! accepted.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use sqlx::PgPool;
use syncroot_testkit::Control;
use uuid::Uuid;

use crate::model::{FIELDS, Fields, Model};

/// Salesforce's stand-in for a missing last name (SyncRoot's default placeholder).
const SF_NO_LAST_NAME: &str = "[not provided]";
/// The error Salesforce answers for a record a validation rule refuses.
pub const VALIDATION_ERROR: &str = "FIELD_CUSTOM_VALIDATION_EXCEPTION";

/// Where the checks read from.
pub struct Sources<'a> {
    pub db: &'a PgPool,
    /// The sandboxes' control API (with their token).
    pub control: &'a Control,
    pub hubspot: &'a str,
    pub salesforce: &'a str,
}

/// What the checks found; empty `problems` means all sides agree.
#[derive(Default, Debug)]
pub struct Findings {
    /// Contact × CRM pairs where the CRM holds exactly the accepted state (or, for a deleted
    /// contact, nothing).
    pub delivered: usize,
    /// Accepted contacts or changes absent from Postgres or a CRM, or a CRM holding an older
    /// state (a lost update), or still holding a deleted contact.
    pub lost: usize,
    /// A second record of one contact in a CRM, or a contact in Postgres nobody created.
    pub duplicates: usize,
    /// CRM records that belong to no contact SyncRoot knows.
    pub orphans: usize,
    /// Dead letters parked in Postgres.
    pub parked: usize,
    /// Dead letters still being retried by the dead-letter worker.
    pub retrying: usize,
    pub problems: Vec<String>,
}

impl Findings {
    fn problem(&mut self, p: String) {
        self.problems.push(p);
    }
}

/// HubSpot property or Salesforce field of each optional field (`None`: not sent).
fn crm_field(crm: Crm, field: &str) -> Option<&'static str> {
    match (crm, field) {
        (Crm::Hubspot, "first_name") => Some("firstname"),
        (Crm::Hubspot, "last_name") => Some("lastname"),
        (Crm::Hubspot, "phone") => Some("phone"),
        (Crm::Hubspot, "company") => Some("company"),
        (Crm::Hubspot, "job_title") => Some("jobtitle"),
        (Crm::Salesforce, "first_name") => Some("FirstName"),
        (Crm::Salesforce, "last_name") => Some("LastName"),
        (Crm::Salesforce, "phone") => Some("Phone"),
        (Crm::Salesforce, "job_title") => Some("Title"),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crm {
    Hubspot,
    Salesforce,
}

impl Crm {
    /// The name SyncRoot stores (`crm_links.crm`).
    pub fn name(self) -> &'static str {
        match self {
            Crm::Hubspot => "hubspot",
            Crm::Salesforce => "salesforce",
        }
    }
}

/// A CRM record reduced to SyncRoot's fields, with empty values as `None`.
pub fn read_record(crm: Crm, rec: &Value) -> Fields {
    let props = match crm {
        Crm::Hubspot => &rec["properties"],
        Crm::Salesforce => rec,
    };
    let text = |name: &str| {
        props[name]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let mut values = BTreeMap::new();
    for f in FIELDS {
        let Some(name) = crm_field(crm, f) else {
            continue;
        };
        let mut v = text(name);
        if crm == Crm::Salesforce && f == "last_name" && v.as_deref() == Some(SF_NO_LAST_NAME) {
            v = None;
        }
        values.insert(f, v);
    }
    let email = match crm {
        Crm::Hubspot => text("email"),
        Crm::Salesforce => text("Email"),
    };
    Fields {
        email: email.unwrap_or_default().to_lowercase(),
        values,
    }
}

/// The differences between the accepted fields and what a CRM (or Postgres) holds.
pub fn differences(crm: Option<Crm>, want: &Fields, got: &Fields) -> Vec<String> {
    let mut out = Vec::new();
    if want.email != got.email {
        out.push(format!("email {:?} != {:?}", got.email, want.email));
    }
    for f in FIELDS {
        if crm.is_some_and(|c| crm_field(c, f).is_none()) {
            continue;
        }
        if want.get(f) != got.get(f) {
            out.push(format!("{f} {:?} != {:?}", got.get(f), want.get(f)));
        }
    }
    out
}

/// Every dead-letter entry, read from Postgres itself (not through SyncRoot's admin API, whose
/// listing is part of what is checked), shaped as the admin API shows one.
pub async fn dead_letters(src: &Sources<'_>) -> anyhow::Result<Vec<Value>> {
    type Row = (
        Uuid,
        Option<String>,
        Option<Uuid>,
        String,
        String,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, crm, contact_id, status, reason, error_code FROM dead_letters ORDER BY id",
    )
    .fetch_all(src.db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, crm, contact, status, reason, code)| {
            serde_json::json!({"id": id, "crm": crm, "contact_id": contact, "status": status,
                               "reason": reason, "error_code": code})
        })
        .collect())
}

/// Compares everything. With `invalid_parked`, the contacts made invalid for Salesforce must
/// each have one parked entry and are not compared in Salesforce; without it, nothing may be
/// in the dead-letter store.
pub async fn check(
    src: &Sources<'_>,
    model: &Model,
    invalid_parked: bool,
) -> anyhow::Result<Findings> {
    let mut f = Findings::default();
    check_postgres(src.db, model, &mut f).await?;
    let links = links(src.db).await?;
    let hubspot = src.control.sandbox_contacts(src.hubspot).await?;
    let live: Vec<Record> = hubspot
        .iter()
        .filter(|c| c["archived"] != true)
        .map(|c| Record::of(Crm::Hubspot, c))
        .collect();
    check_crm(Crm::Hubspot, model, &live, &links, &BTreeSet::new(), &mut f);

    let salesforce = src.control.sandbox_contacts(src.salesforce).await?;
    let live: Vec<Record> = salesforce
        .iter()
        .filter(|c| c["IsDeleted"] != true)
        .map(|c| Record::of(Crm::Salesforce, c))
        .collect();
    let skip: BTreeSet<Uuid> = if invalid_parked {
        model.invalid_ids().into_iter().collect()
    } else {
        BTreeSet::new()
    };
    check_crm(Crm::Salesforce, model, &live, &links, &skip, &mut f);

    check_dead_letters(&dead_letters(src).await?, model, invalid_parked, &mut f);
    Ok(f)
}

async fn check_postgres(db: &PgPool, model: &Model, f: &mut Findings) -> anyhow::Result<()> {
    type Row = (
        Uuid,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        bool,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, email, first_name, last_name, phone, company, job_title, deleted_at IS NOT NULL
           FROM contacts",
    )
    .fetch_all(db)
    .await?;
    let mut stored = BTreeMap::new();
    for (id, email, first, last, phone, company, title, deleted) in rows {
        let values = BTreeMap::from([
            ("first_name", first),
            ("last_name", last),
            ("phone", phone),
            ("company", company),
            ("job_title", title),
        ]);
        stored.insert(id, (Fields { email, values }, deleted));
    }
    for (id, want) in &model.contacts {
        match (stored.get(id), &want.live) {
            (None, _) => {
                f.lost += 1;
                f.problem(format!("postgres: accepted contact {id} is missing"));
            }
            (Some((_, false)), None) => {
                f.lost += 1;
                f.problem(format!("postgres: {id} was deleted but is live"));
            }
            (Some((_, true)), Some(_)) => {
                f.lost += 1;
                f.problem(format!("postgres: {id} is live but stored as deleted"));
            }
            (Some((got, false)), Some(want)) => {
                let d = differences(None, want, got);
                if !d.is_empty() {
                    f.lost += 1;
                    f.problem(format!("postgres: {id} differs: {}", d.join(", ")));
                }
            }
            (Some((_, true)), None) => {}
        }
    }
    for id in stored.keys().filter(|id| !model.contacts.contains_key(id)) {
        f.duplicates += 1;
        f.problem(format!("postgres: contact {id} was never accepted"));
    }
    Ok(())
}

/// A live CRM record and what may tie it to a contact.
struct Record<'a> {
    id: String,
    email: String,
    /// The SyncRoot id it carries (Salesforce's `SyncRoot_Id__c`).
    syncroot_id: Option<Uuid>,
    value: &'a Value,
}

impl<'a> Record<'a> {
    fn of(crm: Crm, value: &'a Value) -> Self {
        let (id, email, syncroot_id) = match crm {
            Crm::Hubspot => (&value["id"], &value["properties"]["email"], &Value::Null),
            Crm::Salesforce => (&value["Id"], &value["Email"], &value["SyncRoot_Id__c"]),
        };
        Self {
            id: id.as_str().unwrap_or_default().to_owned(),
            email: email.as_str().unwrap_or_default().to_lowercase(),
            syncroot_id: syncroot_id.as_str().and_then(|s| s.parse().ok()),
            value,
        }
    }
}

/// The record id each contact's link names, per CRM (`"hubspot"`, `"salesforce"`).
pub type Links = BTreeMap<(Uuid, String), String>;

pub async fn links(db: &PgPool) -> anyhow::Result<Links> {
    let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT contact_id, crm, remote_id FROM crm_links WHERE remote_id IS NOT NULL",
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(c, crm, r)| ((c, crm), r)).collect())
}

/// Compares one CRM's live records with the accepted contacts. A record is a contact's when
/// any identity ties them: the SyncRoot id it carries, the link SyncRoot holds, or an e-mail
/// address the contact ever had (for a deleted contact only when no live contact claims the
/// record). None of these leans on a uniqueness the CRM may or may not enforce, so a second
/// record of one person shows up as a duplicate however it came about.
fn check_crm(
    crm: Crm,
    model: &Model,
    records: &[Record],
    links: &Links,
    skip: &BTreeSet<Uuid>,
    f: &mut Findings,
) {
    let crm_name = crm.name();
    let mut by_email: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut by_id: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_syncroot_id: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        by_email.entry(r.email.as_str()).or_default().push(i);
        by_id.insert(r.id.as_str(), i);
        if let Some(sid) = r.syncroot_id {
            by_syncroot_id.entry(sid).or_default().push(i);
        }
    }
    // The records tied to a contact by its id or its link, and by its addresses.
    let strong = |id: &Uuid| -> BTreeSet<usize> {
        let mut out: BTreeSet<usize> = by_syncroot_id
            .get(id)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        if let Some(i) = links
            .get(&(*id, crm_name.to_owned()))
            .and_then(|r| by_id.get(r.as_str()))
        {
            out.insert(*i);
        }
        out
    };
    let by_address = |id: &Uuid| -> BTreeSet<usize> {
        let emails = &model.contacts[id].emails;
        emails
            .iter()
            .flat_map(|e| by_email.get(e.as_str()).into_iter().flatten().copied())
            .collect()
    };
    let mut owners: BTreeMap<Uuid, BTreeSet<usize>> = BTreeMap::new();
    let mut live_claimed = BTreeSet::new();
    for (id, want) in &model.contacts {
        let mut mine = strong(id);
        if want.live.is_some() {
            mine.extend(by_address(id));
            live_claimed.extend(mine.iter().copied());
        }
        owners.insert(*id, mine);
    }
    for (id, want) in &model.contacts {
        if want.live.is_none() {
            let unclaimed: Vec<usize> = by_address(id)
                .into_iter()
                .filter(|i| !live_claimed.contains(i))
                .collect();
            owners.get_mut(id).unwrap().extend(unclaimed);
        }
    }
    let mut claimed = vec![false; records.len()];
    for (id, want) in &model.contacts {
        let mine: Vec<usize> = owners[id].iter().copied().collect();
        for &i in &mine {
            claimed[i] = true;
        }
        if mine.len() > 1 {
            f.duplicates += mine.len() - 1;
            let ids: Vec<&str> = mine.iter().map(|&i| records[i].id.as_str()).collect();
            f.problem(format!("{crm:?}: {} records of {id}: {ids:?}", mine.len()));
        }
        if skip.contains(id) {
            continue;
        }
        match (&want.live, mine.first()) {
            (None, None) => f.delivered += 1,
            (None, Some(&i)) => {
                f.lost += 1;
                f.problem(format!(
                    "{crm:?}: deleted contact {id} is still there ({})",
                    records[i].id
                ));
            }
            (Some(_), None) => {
                f.lost += 1;
                f.problem(format!("{crm:?}: contact {id} is missing"));
            }
            (Some(want), Some(&i)) => {
                let d = differences(Some(crm), want, &read_record(crm, records[i].value));
                if d.is_empty() {
                    f.delivered += 1;
                } else {
                    f.lost += 1;
                    f.problem(format!("{crm:?}: {id} differs: {}", d.join(", ")));
                }
            }
        }
    }
    for (r, _) in records.iter().zip(&claimed).filter(|(_, c)| !**c) {
        f.orphans += 1;
        f.problem(format!(
            "{crm:?}: record {} ({:?}) belongs to no contact",
            r.id, r.email
        ));
    }
}

fn check_dead_letters(entries: &[Value], model: &Model, invalid_parked: bool, f: &mut Findings) {
    let expected: BTreeSet<Uuid> = if invalid_parked {
        model.invalid_ids().into_iter().collect()
    } else {
        BTreeSet::new()
    };
    let mut parked_for = BTreeSet::new();
    for e in entries {
        let status = e["status"].as_str().unwrap_or("");
        match status {
            "parked" => f.parked += 1,
            _ => f.retrying += 1,
        }
        let contact = e["contact_id"]
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok());
        let wanted = status == "parked"
            && e["crm"] == "salesforce"
            && e["error_code"] == VALIDATION_ERROR
            && e["reason"].as_str().is_some_and(|r| !r.is_empty())
            && contact.is_some_and(|c| expected.contains(&c));
        if wanted && parked_for.insert(contact.unwrap()) {
            continue;
        }
        f.problem(format!(
            "dead letter {} ({status}, {}, {}, {}): {}",
            e["id"], e["crm"], e["contact_id"], e["error_code"], e["reason"]
        ));
    }
    for id in expected.difference(&parked_for) {
        f.problem(format!("no parked entry for invalid contact {id}"));
    }
}
