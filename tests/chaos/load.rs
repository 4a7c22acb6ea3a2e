//! The load: writers that create, update and delete contacts through the API as a client
//! application would, sending a request again after a `503` or a lost answer, and recording
//! every accepted change in the [`Model`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use uuid::Uuid;

use crate::model::{Change, Fields, Model};

/// The substring the Salesforce validation rule refuses in `LastName`.
pub const INVALID_MARK: &str = "Invalid";

const FIRST: [&str; 8] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken",
];
const LAST: [&str; 8] = [
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
];
const COMPANY: [&str; 5] = ["Acme", "Globex", "Initech", "Umbrella", "Hooli"];
const TITLE: [&str; 5] = ["Engineer", "CTO", "Analyst", "Manager", "Designer"];

/// How the load runs.
#[derive(Clone)]
pub struct LoadPlan {
    pub api: String,
    pub key: String,
    pub seed: u64,
    pub duration: Duration,
    /// Writers sending at once (each contact belongs to one writer).
    pub writers: usize,
    /// Racers: each sends several changes of one contact at once (see [`racer`]).
    pub racers: usize,
    /// Changes per second, all writers together.
    pub rate: f64,
    /// Contacts made invalid for Salesforce on purpose.
    pub invalid: usize,
}

/// Sends requests and records what was accepted.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    api: String,
    key: String,
    model: Arc<Mutex<Model>>,
}

enum Answer {
    Accepted(Value),
    /// A status a well-formed request must not get; already recorded.
    Refused,
}

impl Client {
    /// Sends a request until the API answers something other than `503`, as a client
    /// honouring `Retry-After` would; gives up after two minutes of no answer.
    async fn send(
        &self,
        what: &str,
        racing: bool,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Answer {
        let give_up = Instant::now() + Duration::from_secs(120);
        let mut wait = Duration::from_millis(200);
        loop {
            match build().send().await {
                Ok(r) if r.status() == 202 => {
                    return Answer::Accepted(r.json().await.unwrap_or(Value::Null));
                }
                // A racing delete of the same contact was accepted first.
                Ok(r) if racing && r.status() == 404 => {
                    self.model.lock().unwrap().raced_a_delete += 1;
                    return Answer::Refused;
                }
                Ok(r) if r.status() != 503 => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    self.model
                        .lock()
                        .unwrap()
                        .unexpected
                        .push(format!("{what}: {status} {body}"));
                    return Answer::Refused;
                }
                _ => {}
            }
            if Instant::now() > give_up {
                self.model
                    .lock()
                    .unwrap()
                    .unexpected
                    .push(format!("{what}: no 202 within two minutes"));
                return Answer::Refused;
            }
            self.model.lock().unwrap().resent += 1;
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }

    async fn create(&self, doc: &Value, invalid: bool) -> Option<Uuid> {
        let key = Uuid::new_v4().to_string();
        let url = format!("{}/contacts", self.api);
        let answer = self
            .send("create", false, || {
                self.http
                    .post(&url)
                    .bearer_auth(&self.key)
                    .header("Idempotency-Key", &key)
                    .json(doc)
            })
            .await;
        let Answer::Accepted(body) = answer else {
            return None;
        };
        let id: Uuid = body["id"].as_str()?.parse().ok()?;
        self.model.lock().unwrap().created(id, doc, invalid);
        Some(id)
    }

    /// Records an accepted change at the version the API answered.
    fn record(&self, id: Uuid, answer: Answer, change: Change) -> bool {
        let Answer::Accepted(body) = answer else {
            return false;
        };
        let mut model = self.model.lock().unwrap();
        match body["version"].as_i64() {
            Some(version) => model.changed(id, version, change),
            None => model
                .unexpected
                .push(format!("{id}: a 202 without a version: {body}")),
        }
        true
    }

    async fn replace(&self, id: Uuid, doc: &Value, racing: bool) -> bool {
        let url = format!("{}/contacts/{id}", self.api);
        let answer = self
            .send("replace", racing, || {
                self.http.put(&url).bearer_auth(&self.key).json(doc)
            })
            .await;
        self.record(id, answer, Change::Document(Fields::from_document(doc)))
    }

    async fn patch(&self, id: Uuid, patch: &Map<String, Value>, racing: bool) -> bool {
        let url = format!("{}/contacts/{id}", self.api);
        let body = serde_json::to_vec(patch).unwrap();
        let answer = self
            .send("patch", racing, || {
                self.http
                    .request(Method::PATCH, &url)
                    .bearer_auth(&self.key)
                    .header("Content-Type", "application/merge-patch+json")
                    .body(body.clone())
            })
            .await;
        self.record(id, answer, Change::Patch(patch.clone()))
    }

    async fn delete(&self, id: Uuid, racing: bool) -> bool {
        let url = format!("{}/contacts/{id}", self.api);
        let answer = self
            .send("delete", racing, || {
                self.http.delete(&url).bearer_auth(&self.key)
            })
            .await;
        self.record(id, answer, Change::Delete)
    }
}

fn maybe(rng: &mut StdRng, values: &[&str]) -> Value {
    if rng.random_bool(0.8) {
        json!(values.choose(rng).unwrap())
    } else {
        Value::Null
    }
}

fn phone(rng: &mut StdRng) -> Value {
    json!(format!(
        "+1 555 {:03} {:04}",
        rng.random_range(0..1000),
        rng.random_range(0..10000)
    ))
}

/// A full document for `email`.
fn document(rng: &mut StdRng, email: &str) -> Value {
    let mut doc = json!({
        "email": email,
        "first_name": maybe(rng, &FIRST),
        "last_name": maybe(rng, &LAST),
        "company": maybe(rng, &COMPANY),
        "job_title": maybe(rng, &TITLE),
    });
    if rng.random_bool(0.6) {
        doc["phone"] = phone(rng);
    }
    // Absent and null are the same to the API; leave nulls out as a client would.
    doc.as_object_mut().unwrap().retain(|_, v| !v.is_null());
    doc
}

/// A merge patch changing one to three optional fields (a `null` clears one).
fn patch(rng: &mut StdRng) -> Map<String, Value> {
    let mut p = Map::new();
    for _ in 0..rng.random_range(1..=3) {
        let (name, value) = match rng.random_range(0..5) {
            0 => ("first_name", maybe(rng, &FIRST)),
            1 => ("last_name", maybe(rng, &LAST)),
            2 => ("company", maybe(rng, &COMPANY)),
            3 => ("job_title", maybe(rng, &TITLE)),
            _ => ("phone", phone(rng)),
        };
        p.insert(name.to_owned(), value);
    }
    p
}

/// Runs the load until `plan.duration` has passed; returns the model of what was accepted.
pub async fn run(plan: LoadPlan) -> Arc<Mutex<Model>> {
    let model = Arc::new(Mutex::new(Model::default()));
    let client = Client {
        http: syncroot_testkit::http_client()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        api: plan.api.clone(),
        key: plan.key.clone(),
        model: model.clone(),
    };
    let end = Instant::now() + plan.duration;
    let mut tasks = Vec::new();
    for w in 0..plan.writers {
        tasks.push(tokio::spawn(writer(client.clone(), plan.clone(), w, end)));
    }
    for r in 0..plan.racers {
        tasks.push(tokio::spawn(racer(client.clone(), plan.clone(), r, end)));
    }
    tasks.push(tokio::spawn(invalid_contacts(client, plan)));
    for t in tasks {
        t.await.expect("load task");
    }
    model
}

/// One writer: its own contacts, one change at a time each.
async fn writer(client: Client, plan: LoadPlan, w: usize, end: Instant) {
    let mut rng = StdRng::seed_from_u64(plan.seed ^ (w as u64 + 1).wrapping_mul(0x9e37_79b9));
    let mean_gap = plan.writers as f64 / plan.rate;
    let mut live: Vec<(Uuid, String)> = Vec::new();
    let mut n = 0u64;
    while Instant::now() < end {
        let r: f64 = rng.random();
        if live.len() < 5 || r < 0.35 {
            n += 1;
            let email = format!("w{w}-{n}-{}@chaos.example.com", plan.seed);
            let doc = document(&mut rng, &email);
            if let Some(id) = client.create(&doc, false).await {
                live.push((id, email));
            }
        } else if r < 0.85 {
            let (id, email) = live.choose(&mut rng).unwrap().clone();
            if rng.random_bool(0.7) {
                client.patch(id, &patch(&mut rng), false).await;
            } else {
                client.replace(id, &document(&mut rng, &email), false).await;
            }
        } else {
            let i = rng.random_range(0..live.len());
            let (id, _) = live.swap_remove(i);
            client.delete(id, false).await;
        }
        let gap = rng.random_range(0.0..2.0 * mean_gap);
        tokio::time::sleep(Duration::from_secs_f64(gap)).await;
    }
}

/// One racer: two to four changes of one of its contacts sent at once (merge patches,
/// replacements, a change of e-mail address, sometimes a delete), so the API decides their
/// order; and new contacts that reuse the address of one it deleted.
async fn racer(client: Client, plan: LoadPlan, r: usize, end: Instant) {
    let mut rng = StdRng::seed_from_u64(plan.seed ^ (r as u64 + 1).wrapping_mul(0x51_7cc1_b727));
    let mean_gap = (plan.writers + plan.racers) as f64 / plan.rate * 3.0;
    let mut live: Vec<(Uuid, String)> = Vec::new();
    let mut freed: Vec<String> = Vec::new();
    let mut n = 0u64;
    let mut fresh = |rng: &mut StdRng| {
        n += 1;
        format!(
            "r{r}-{n}-{}-{}@race.example.com",
            plan.seed,
            rng.random::<u16>()
        )
    };
    while Instant::now() < end {
        if live.len() < 3 || rng.random_bool(0.2) {
            let email = match freed.pop() {
                Some(e) if rng.random_bool(0.6) => e,
                _ => fresh(&mut rng),
            };
            if let Some(id) = client.create(&document(&mut rng, &email), false).await {
                live.push((id, email));
            }
        } else {
            let i = rng.random_range(0..live.len());
            let (id, email) = live[i].clone();
            let mut sends = Vec::new();
            let mut deleting = false;
            for _ in 0..rng.random_range(2..=4) {
                let c = client.clone();
                match rng.random_range(0..20) {
                    0..=11 => {
                        let p = patch(&mut rng);
                        sends.push(tokio::spawn(async move { c.patch(id, &p, true).await }));
                    }
                    12..=15 => {
                        let doc = document(&mut rng, &email);
                        sends.push(tokio::spawn(async move { c.replace(id, &doc, true).await }));
                    }
                    16..=17 => {
                        let mut p = Map::new();
                        p.insert("email".to_owned(), json!(fresh(&mut rng)));
                        sends.push(tokio::spawn(async move { c.patch(id, &p, true).await }));
                    }
                    _ if !deleting => {
                        deleting = true;
                        sends.push(tokio::spawn(async move { c.delete(id, true).await }));
                    }
                    _ => {}
                }
            }
            for s in sends {
                s.await.expect("a racing request");
            }
            if deleting {
                live.swap_remove(i);
                let model = client.model.lock().unwrap();
                if let Some(c) = model.contacts.get(&id).filter(|c| c.live.is_none()) {
                    freed.extend(c.emails.iter().cloned());
                }
            }
        }
        let gap = rng.random_range(0.0..2.0 * mean_gap);
        tokio::time::sleep(Duration::from_secs_f64(gap)).await;
    }
}

/// Contacts Salesforce will refuse, spread over the run: half are created invalid, half are
/// created valid and then changed to be invalid. Nothing else touches them.
async fn invalid_contacts(client: Client, plan: LoadPlan) {
    let mut rng = StdRng::seed_from_u64(plan.seed ^ 0x1_0000);
    let gap = plan.duration / (plan.invalid as u32 + 1);
    for i in 0..plan.invalid {
        tokio::time::sleep(gap).await;
        let email = format!("invalid-{i}-{}@chaos.example.com", plan.seed);
        let mut doc = document(&mut rng, &email);
        let invalid_name = json!(format!("{INVALID_MARK} {i}"));
        if i % 2 == 0 {
            doc["last_name"] = invalid_name;
            client.create(&doc, true).await;
        } else if let Some(id) = client.create(&doc, true).await {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let mut p = Map::new();
            p.insert("last_name".to_owned(), invalid_name);
            client.patch(id, &p, false).await;
        }
    }
}
