//! The HubSpot client, black-box, against the in-process HubSpot sandbox: one sandbox on
//! port 0 per test, so tests run in parallel. Needs neither Postgres nor RabbitMQ.

use std::time::{Duration, Instant};

use chrono::{DurationRound, TimeDelta, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use syncroot::domain::fields::Field;
use syncroot::domain::{ContactFields, ContactId, Email, FieldValues};
use syncroot::providers::hubspot::{HubspotClient, HubspotSettings, default_fields};
use syncroot::providers::mapping::FieldMap;
use syncroot::providers::{CrmClient, ItemOutcome, ProviderError, RemoteRecord, SyncItem};
use syncroot::secret::Secret;
use syncroot_sandbox::hubspot::{HubspotSandboxConfig, spawn};
use syncroot_testkit::{Control, eventually};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "pat-na1-client-test-token";
const UPSERT: &str = "POST /crm/v3/objects/contacts/batch/upsert";
const UPDATE: &str = "POST /crm/v3/objects/contacts/batch/update";
const ARCHIVE: &str = "POST /crm/v3/objects/contacts/batch/archive";
const READ: &str = "POST /crm/v3/objects/contacts/batch/read";
const SEARCH: &str = "POST /crm/v3/objects/contacts/search";

struct Sandbox {
    base: String,
    /// The sandbox's control API, with its token.
    control: Control,
    shutdown: CancellationToken,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Sandbox {
    async fn start() -> Self {
        let cfg = HubspotSandboxConfig {
            access_token: TOKEN.into(),
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let control = Control::new(
            syncroot_testkit::http_client().build().unwrap(),
            cfg.control_token.expose(),
        );
        let handle = spawn(cfg, listener, shutdown.clone()).await.unwrap();
        Self {
            base: handle.base_url(),
            control,
            shutdown,
        }
    }

    fn settings(&self) -> HubspotSettings {
        HubspotSettings {
            base_url: self.base.clone(),
            token: Secret::new(TOKEN),
            id_property: "email".into(),
            fields: FieldMap::defaults(&default_fields()),
            rate_limit: 100,
            batching: true,
            timeout: Duration::from_secs(5),
        }
    }

    /// A client keyed by `id_property`, with field-map `overrides`.
    fn client_with(&self, id_property: &str, overrides: &str) -> HubspotClient {
        HubspotClient::new(HubspotSettings {
            id_property: id_property.into(),
            fields: FieldMap::parse(&default_fields(), overrides).unwrap(),
            ..self.settings()
        })
    }

    fn client(&self) -> HubspotClient {
        self.client_with("email", "")
    }

    async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let path = path.trim_start_matches('/');
        let mut req = self.control.request(&self.base, method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap_or(Value::Null)
    }

    /// Live (not archived) records, by id.
    async fn live(&self) -> Vec<Value> {
        let state = self.control(Method::GET, "/state", None).await;
        let all = state["contacts"].as_array().cloned().unwrap_or_default();
        all.into_iter().filter(|c| c["archived"] == false).collect()
    }

    async fn record(&self, id: &str) -> Value {
        let state = self.control(Method::GET, "/state", None).await;
        let all = state["contacts"].as_array().cloned().unwrap_or_default();
        all.into_iter().find(|c| c["id"] == id).unwrap()
    }

    async fn calls(&self, route: &str) -> u64 {
        let counters = self.control(Method::GET, "/counters", None).await;
        counters["calls"][route].as_u64().unwrap_or(0)
    }

    /// A contact created by a person in HubSpot's UI; returns its record id.
    async fn created_in_ui(&self, properties: Value) -> String {
        let body = json!({ "properties": properties });
        let record = self.control(Method::POST, "/ui/contacts", Some(body)).await;
        record["id"].as_str().unwrap().to_owned()
    }
}

fn contact(email: &str, first: &str) -> ContactFields {
    ContactFields {
        email: Email::parse(email).unwrap(),
        first_name: Some(first.into()),
        last_name: None,
        phone: Some("+1 555 0100".into()),
        company: None,
        job_title: None,
    }
}

fn live(contact: ContactFields) -> SyncItem {
    SyncItem {
        contact_id: ContactId::new(),
        version: 1,
        contact: Some(contact),
        remote_id: None,
        left_emails: Vec::new(),
        known: None,
    }
}

fn synced(outcome: &ItemOutcome) -> &str {
    match outcome {
        ItemOutcome::Synced {
            remote_id: Some(id),
        } => id,
        other => panic!("expected a linked record, got {other:?}"),
    }
}

fn rejected_code(outcome: &ItemOutcome) -> &str {
    match outcome {
        ItemOutcome::Failed(ProviderError::Rejected { code, .. }) => code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// Syncs `items` and links each synced one to its record, as delivery would.
async fn sync_linking(client: &HubspotClient, items: &mut [SyncItem]) -> Vec<ItemOutcome> {
    let outcomes = client.sync(items).await.unwrap();
    for (item, outcome) in items.iter_mut().zip(&outcomes) {
        if let ItemOutcome::Synced {
            remote_id: Some(id),
        } = outcome
        {
            item.remote_id = Some(id.clone());
        }
    }
    outcomes
}

#[tokio::test]
async fn new_contacts_are_created_with_their_mapped_properties() {
    let sb = Sandbox::start().await;
    let mut items = [
        live(contact("ada@example.com", "Ada")),
        live(contact("grace@example.com", "Grace")),
    ];
    let outcomes = sync_linking(&sb.client(), &mut items).await;
    let ada = sb.record(synced(&outcomes[0])).await;
    assert_eq!(ada["properties"]["email"], "ada@example.com");
    assert_eq!(ada["properties"]["firstname"], "Ada");
    assert_eq!(ada["properties"]["phone"], "+1 555 0100");
    assert!(
        ada["properties"].get("lastname").is_none(),
        "null stays unset"
    );
    assert_eq!(
        sb.record(synced(&outcomes[1])).await["properties"]["firstname"],
        "Grace"
    );
    assert_eq!(sb.live().await.len(), 2);
    assert_eq!(sb.calls(UPSERT).await, 1, "one call for the batch");
}

#[tokio::test]
async fn updates_reach_the_linked_record_and_null_fields_clear_properties() {
    let sb = Sandbox::start().await;
    let client = sb.client();
    let mut items = [live(contact("ada@example.com", "Ada"))];
    sync_linking(&client, &mut items).await;
    let c = items[0].contact.as_mut().unwrap();
    c.first_name = Some("Augusta Ada".into());
    c.phone = None;
    c.job_title = Some("Analyst".into());
    let outcomes = client.sync(&items).await.unwrap();
    let record = sb.record(synced(&outcomes[0])).await;
    assert_eq!(record["properties"]["firstname"], "Augusta Ada");
    assert_eq!(record["properties"]["jobtitle"], "Analyst");
    assert!(record["properties"].get("phone").is_none(), "cleared");
    assert_eq!(sb.calls(UPDATE).await, 1);
}

#[tokio::test]
async fn deleted_contacts_archive_their_record_and_a_record_already_gone_counts_as_deleted() {
    let sb = Sandbox::start().await;
    let client = sb.client();
    let mut items = [live(contact("ada@example.com", "Ada"))];
    let id = synced(&sync_linking(&client, &mut items).await[0]).to_owned();
    items[0].contact = None;
    let unlinked = SyncItem {
        contact: None,
        ..live(contact("x@example.com", "X"))
    };
    let both = [items[0].clone(), unlinked];
    let outcomes = client.sync(&both).await.unwrap();
    assert_eq!(synced(&outcomes[0]), id);
    assert!(matches!(
        outcomes[1],
        ItemOutcome::Synced { remote_id: None }
    ));
    assert_eq!(sb.record(&id).await["archived"], true);
    let again = client.sync(&items).await.unwrap();
    assert_eq!(synced(&again[0]), id, "already gone is success");
    assert_eq!(
        sb.calls(ARCHIVE).await,
        2,
        "the unlinked delete needs no call"
    );
}

/// A create HubSpot committed but whose answer was lost leaves a record SyncRoot never linked;
/// when the contact is then deleted, its last address finds that record (by `batch/read`,
/// which unlike `search` does not lag) and it is archived.
#[tokio::test]
async fn a_deleted_contact_never_linked_has_its_record_found_by_its_last_address_and_archived() {
    let sb = Sandbox::start().await;
    let orphan = sb
        .created_in_ui(json!({"email": "lost-answer@example.com", "lastname": "Lost"}))
        .await;
    let client = sb.client();
    let gone = SyncItem {
        contact: None,
        left_emails: vec!["Lost-Answer@example.com".into()],
        ..live(contact("lost-answer@example.com", "Lost"))
    };
    let nowhere = SyncItem {
        contact: None,
        left_emails: vec!["never-there@example.com".into()],
        ..live(contact("never-there@example.com", "None"))
    };
    let outcomes = client.sync(&[gone, nowhere]).await.unwrap();
    assert_eq!(synced(&outcomes[0]), orphan);
    assert!(matches!(
        outcomes[1],
        ItemOutcome::Synced { remote_id: None }
    ));
    assert_eq!(sb.record(&orphan).await["archived"], true);
}

/// Creates whose answers were lost at two addresses, then a third write: the contact keeps
/// the record at its newest address (moved to the current one), and the other is archived.
/// A deleted contact's records at every address it was written to are archived.
#[tokio::test]
async fn records_lost_creates_left_at_several_addresses_are_reduced_to_one() {
    let sb = Sandbox::start().await;
    let first = sb
        .created_in_ui(json!({"email": "first@example.com", "lastname": "Lost"}))
        .await;
    let second = sb
        .created_in_ui(json!({"email": "second@example.com", "lastname": "Lost"}))
        .await;
    let client = sb.client();
    let moved = SyncItem {
        left_emails: vec![
            "first@example.com".into(),
            "Second@example.com".into(),
            "third@example.com".into(),
        ],
        ..live(contact("third@example.com", "Moved"))
    };
    let outcomes = client.sync(&[moved]).await.unwrap();
    assert_eq!(
        synced(&outcomes[0]),
        second,
        "the newest address's record is kept"
    );
    assert_eq!(sb.record(&first).await["archived"], true);
    let kept = sb.record(&second).await;
    assert_eq!(kept["properties"]["email"], "third@example.com");
    assert_eq!(kept["properties"]["firstname"], "Moved");
    assert_eq!(sb.live().await.len(), 1);

    let a = sb
        .created_in_ui(json!({"email": "gone-a@example.com"}))
        .await;
    let b = sb
        .created_in_ui(json!({"email": "gone-b@example.com"}))
        .await;
    let deleted = SyncItem {
        contact: None,
        left_emails: vec!["gone-a@example.com".into(), "gone-b@example.com".into()],
        ..live(contact("gone-b@example.com", "Gone"))
    };
    let outcomes = client.sync(&[deleted]).await.unwrap();
    assert!(
        matches!(outcomes[0], ItemOutcome::Synced { .. }),
        "{outcomes:?}"
    );
    assert_eq!(sb.record(&a).await["archived"], true);
    assert_eq!(sb.record(&b).await["archived"], true);
}

/// A record linked since (from a read of the CRM) is the one kept: a record a lost create
/// left at an earlier address is archived, never the linked one.
#[tokio::test]
async fn a_linked_contact_with_a_record_left_at_an_earlier_address_keeps_the_linked_one() {
    let sb = Sandbox::start().await;
    let left = sb.created_in_ui(json!({"email": "old@example.com"})).await;
    let linked = sb.created_in_ui(json!({"email": "new@example.com"})).await;
    let item = SyncItem {
        remote_id: Some(linked.clone()),
        left_emails: vec!["old@example.com".into()],
        ..live(contact("new@example.com", "Linked"))
    };
    let outcomes = sb.client().sync(&[item]).await.unwrap();
    assert_eq!(synced(&outcomes[0]), linked);
    assert_eq!(sb.record(&left).await["archived"], true);
    assert_eq!(
        sb.record(&linked).await["properties"]["firstname"],
        "Linked"
    );
    assert_eq!(sb.live().await.len(), 1);
}

#[tokio::test]
async fn a_person_already_in_hubspot_is_linked_not_duplicated() {
    let sb = Sandbox::start().await;
    let existing = sb
        .created_in_ui(json!({"email": "Ada@Example.com", "lastname": "Lovelace"}))
        .await;
    let outcomes = sb
        .client()
        .sync(&[live(contact("ada@example.com", "Ada"))])
        .await
        .unwrap();
    assert_eq!(synced(&outcomes[0]), existing);
    assert_eq!(sb.live().await.len(), 1);
    assert_eq!(sb.record(&existing).await["properties"]["firstname"], "Ada");
}

#[tokio::test]
async fn with_a_custom_id_property_a_person_already_in_hubspot_is_linked_by_record_id() {
    let sb = Sandbox::start().await;
    let client = sb.client_with("syncroot_id", "");
    let existing = sb.created_in_ui(json!({"email": "ada@example.com"})).await;
    let items = [
        live(contact("ada@example.com", "Ada")),
        live(contact("grace@example.com", "Grace")),
    ];
    let outcomes = client.sync(&items).await.unwrap();
    assert_eq!(synced(&outcomes[0]), existing, "linked through the 409");
    let record = sb.record(&existing).await;
    assert_eq!(
        record["properties"]["syncroot_id"],
        items[0].contact_id.to_string()
    );
    assert_eq!(record["properties"]["firstname"], "Ada");
    let grace = sb.record(synced(&outcomes[1])).await;
    assert_eq!(
        grace["properties"]["syncroot_id"],
        items[1].contact_id.to_string()
    );
    assert_eq!(sb.live().await.len(), 2);
    assert_eq!(sb.calls(UPDATE).await, 1, "one link call");
    // A retry (the link was not recorded) finds the record by its SyncRoot id now.
    let again = client.sync(&items[..1]).await.unwrap();
    assert_eq!(synced(&again[0]), existing);
    assert_eq!(sb.live().await.len(), 2);
}

#[tokio::test]
async fn syncing_the_same_contact_twice_creates_one_record() {
    for id_property in ["email", "syncroot_id"] {
        let sb = Sandbox::start().await;
        let client = sb.client_with(id_property, "");
        let item = [live(contact("ada@example.com", "Ada"))];
        let first = client.sync(&item).await.unwrap();
        let second = client.sync(&item).await.unwrap();
        assert_eq!(synced(&first[0]), synced(&second[0]), "{id_property}");
        assert_eq!(sb.live().await.len(), 1, "{id_property}");
    }
}

#[tokio::test]
async fn an_email_change_on_a_linked_contact_keeps_one_record() {
    let sb = Sandbox::start().await;
    let client = sb.client();
    let mut items = [live(contact("ada@example.com", "Ada"))];
    let id = synced(&sync_linking(&client, &mut items).await[0]).to_owned();
    items[0].contact.as_mut().unwrap().email = Email::parse("ada@lovelace.org").unwrap();
    let outcomes = client.sync(&items).await.unwrap();
    assert_eq!(synced(&outcomes[0]), id);
    let records = sb.live().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["properties"]["email"], "ada@lovelace.org");
}

#[tokio::test]
async fn a_linked_record_deleted_in_hubspot_is_reported_gone_not_recreated() {
    let sb = Sandbox::start().await;
    let client = sb.client();
    let mut items = [
        live(contact("ada@example.com", "Ada")),
        live(contact("grace@example.com", "Grace")),
    ];
    sync_linking(&client, &mut items).await;
    let old = items[0].remote_id.clone().unwrap();
    let path = format!("ui/contacts/{old}");
    assert!(
        sb.control
            .request(&sb.base, Method::DELETE, &path)
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let outcomes = client.sync(&items).await.unwrap();
    assert!(
        matches!(&outcomes[0], ItemOutcome::Gone { remote_id } if *remote_id == old),
        "{outcomes:?}"
    );
    assert_eq!(synced(&outcomes[1]), items[1].remote_id.as_deref().unwrap());
    assert_eq!(sb.live().await.len(), 1, "nothing recreated");
    assert_eq!((sb.calls(UPDATE).await, sb.calls(UPSERT).await), (1, 1));
}

#[tokio::test]
async fn two_hundred_and_fifty_contacts_in_one_call_go_out_in_three_batches_within_the_cap() {
    let sb = Sandbox::start().await;
    let client = sb.client();
    assert_eq!(client.batch_cap(), 100);
    let items: Vec<_> = (0..250)
        .map(|n| live(contact(&format!("c{n}@example.com"), "C")))
        .collect();
    // More than the cap in one call: splitting it is the client's job.
    let outcomes = client.sync(&items).await.unwrap();
    assert!(outcomes.iter().all(|o| !synced(o).is_empty()));
    // What the sandbox received, refused calls included.
    let counters = sb.control(Method::GET, "/counters", None).await;
    let tally = &counters["batches"][UPSERT];
    assert!(tally["max_records"].as_u64().unwrap() <= 100, "{tally}");
    assert_eq!(tally["refused_oversized"], 0, "{tally}");
    assert_eq!(
        (&tally["calls"], &tally["records"]),
        (&json!(3), &json!(250))
    );
    assert_eq!(sb.live().await.len(), 250);
}

#[tokio::test]
async fn one_invalid_contact_fails_alone_and_the_rest_are_written() {
    let sb = Sandbox::start().await;
    // `lifecyclestage` is an enumeration: "lead" is a valid option, "CTO" is not.
    let client = sb.client_with("email", "job_title=lifecyclestage");
    let mut items: Vec<_> = (0..10)
        .map(|n| live(contact(&format!("c{n}@example.com"), "C")))
        .collect();
    items[1].contact.as_mut().unwrap().job_title = Some("lead".into());
    items[6].contact.as_mut().unwrap().job_title = Some("CTO".into());
    let outcomes = client.sync(&items).await.unwrap();
    assert_eq!(rejected_code(&outcomes[6]), "INVALID_OPTION");
    for (n, outcome) in outcomes.iter().enumerate().filter(|(n, _)| *n != 6) {
        assert!(
            matches!(outcome, ItemOutcome::Synced { remote_id: Some(_) }),
            "{n}"
        );
    }
    assert_eq!(sb.live().await.len(), 9);
    // Halving finds one culprit among 10 in at most 1 + 2 × ⌈log2 10⌉ calls.
    assert!(sb.calls(UPSERT).await <= 9);
}

#[tokio::test]
async fn an_email_change_onto_another_record_fails_alone_in_one_call() {
    let sb = Sandbox::start().await;
    let client = sb.client();
    sb.created_in_ui(json!({"email": "taken@example.com"}))
        .await;
    let mut items = [
        live(contact("ada@example.com", "Ada")),
        live(contact("grace@example.com", "Grace")),
    ];
    sync_linking(&client, &mut items).await;
    items[0].contact.as_mut().unwrap().email = Email::parse("taken@example.com").unwrap();
    items[1].contact.as_mut().unwrap().first_name = Some("Amazing Grace".into());
    let outcomes = client.sync(&items).await.unwrap();
    assert_eq!(rejected_code(&outcomes[0]), "CONFLICT");
    let grace = sb.record(synced(&outcomes[1])).await;
    assert_eq!(grace["properties"]["firstname"], "Amazing Grace");
    assert_eq!(sb.calls(UPDATE).await, 1, "HubSpot answered per input");
}

#[tokio::test]
async fn an_unknown_mapped_property_fails_every_contact_in_one_call() {
    let sb = Sandbox::start().await;
    let client = sb.client_with("email", "company=nickname");
    let items: Vec<_> = (0..4)
        .map(|n| live(contact(&format!("c{n}@example.com"), "C")))
        .collect();
    let outcomes = client.sync(&items).await.unwrap();
    for outcome in &outcomes {
        assert_eq!(rejected_code(outcome), "PROPERTY_DOESNT_EXIST");
    }
    assert_eq!(
        sb.calls(UPSERT).await,
        1,
        "no splitting over a property name"
    );
}

#[tokio::test]
async fn an_outage_makes_the_whole_call_unavailable() {
    let sb = Sandbox::start().await;
    sb.control(Method::PUT, "/faults", Some(json!({"outage": true})))
        .await;
    let err = sb
        .client()
        .sync(&[live(contact("ada@example.com", "Ada"))])
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized_and_never_shown() {
    let sb = Sandbox::start().await;
    let client = HubspotClient::new(HubspotSettings {
        token: Secret::new("pat-na1-wrong-secret"),
        ..sb.settings()
    });
    let err = client
        .sync(&[live(contact("ada@example.com", "Ada"))])
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Unauthorized(_)), "{err:?}");
    assert!(!format!("{err:?} {err}").contains("wrong-secret"));
}

#[tokio::test]
async fn a_429_is_rate_limited_and_holds_the_next_request() {
    let sb = Sandbox::start().await;
    sb.control(Method::PUT, "/faults", Some(json!({"force_429": 1})))
        .await;
    let client = sb.client();
    let items = [live(contact("ada@example.com", "Ada"))];
    let err = client.sync(&items).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(1)),
        "{err:?}"
    );
    assert!(
        client
            .paused()
            .is_some_and(|why| why.contains("rate limit"))
    );
    let start = Instant::now();
    synced(&client.sync(&items).await.unwrap()[0]);
    assert!(
        start.elapsed() >= Duration::from_millis(800),
        "waited out the pause"
    );
}

#[tokio::test]
async fn pacing_keeps_a_burst_under_a_small_limit_without_any_429() {
    let sb = Sandbox::start().await;
    sb.control(Method::PUT, "/limits", Some(json!({"burst_limit": 5})))
        .await;
    let client = sb.client();
    for n in 0..8 {
        let item = [live(contact(&format!("c{n}@example.com"), "C"))];
        synced(&client.sync(&item).await.unwrap()[0]);
    }
    let counters = sb.control(Method::GET, "/counters", None).await;
    assert_eq!(counters["rate_limited"], 0);
    assert_eq!(counters["calls_total"], 8);
}

#[tokio::test]
async fn a_spent_daily_allowance_pauses_delivery_without_further_calls() {
    let sb = Sandbox::start().await;
    sb.control(Method::PUT, "/limits", Some(json!({"daily_limit": 1})))
        .await;
    let client = sb.client();
    synced(
        &client
            .sync(&[live(contact("a@example.com", "A"))])
            .await
            .unwrap()[0],
    );
    assert!(client.paused().is_some_and(|why| why.contains("daily")));
    let err = client
        .sync(&[live(contact("b@example.com", "B"))])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::QuotaExhausted { .. }),
        "{err:?}"
    );
    let counters = sb.control(Method::GET, "/counters", None).await;
    assert_eq!(counters["calls_total"], 1);
}

#[tokio::test]
async fn a_daily_429_is_quota_exhausted() {
    let sb = Sandbox::start().await;
    sb.control(Method::PUT, "/limits", Some(json!({"daily_limit": 0})))
        .await;
    let client = sb.client();
    let err = client
        .sync(&[live(contact("a@example.com", "A"))])
        .await
        .unwrap_err();
    let ProviderError::QuotaExhausted { retry_after } = err else {
        panic!("expected the daily allowance to be spent, got {err:?}");
    };
    assert!(retry_after <= Duration::from_secs(24 * 3600));
    assert!(client.paused().is_some_and(|why| why.contains("daily")));
}

#[tokio::test]
async fn without_batching_each_call_takes_one_contact() {
    let sb = Sandbox::start().await;
    let client = HubspotClient::new(HubspotSettings {
        batching: false,
        ..sb.settings()
    });
    assert_eq!(client.batch_cap(), 1);
}

/// The record `id` among `records`.
fn fetched<'r>(records: &'r [RemoteRecord], id: &str) -> &'r RemoteRecord {
    records
        .iter()
        .find(|r| r.remote_id == id)
        .unwrap_or_else(|| panic!("{id} not among {records:?}"))
}

#[tokio::test]
async fn fetch_returns_a_record_edited_in_hubspot_as_it_now_is() {
    let sb = Sandbox::start().await;
    let client = sb.client();
    let mut items = [
        live(contact("ada@example.com", "Ada")),
        live(contact("grace@example.com", "Grace")),
    ];
    sync_linking(&client, &mut items).await;
    let (ada, grace) = (
        items[0].remote_id.clone().unwrap(),
        items[1].remote_id.clone().unwrap(),
    );
    // HubSpot keeps milliseconds.
    let before = Utc::now()
        .duration_trunc(TimeDelta::milliseconds(1))
        .unwrap();
    let edit = json!({"properties": {"email": "Ada@Lovelace.Example", "firstname": "Augusta Ada",
                                     "phone": "", "jobtitle": "Countess"}});
    sb.control(Method::PATCH, &format!("/ui/contacts/{ada}"), Some(edit))
        .await;

    let records = client.fetch(&[ada.clone(), grace.clone()]).await.unwrap();
    assert_eq!(records.len(), 2);
    let edited = fetched(&records, &ada);
    let mut want = FieldValues::default();
    for (field, value) in [
        (Field::Email, Some("ada@lovelace.example")),
        (Field::FirstName, Some("Augusta Ada")),
        (Field::LastName, None),
        (Field::Phone, None),
        (Field::Company, None),
        (Field::JobTitle, Some("Countess")),
    ] {
        want.set_reported(field, value);
    }
    assert_eq!(edited.values, want);
    assert!(edited.modified_at >= before, "{edited:?} before {before}");
    assert_eq!(edited.external_id, None);
    let untouched = fetched(&records, &grace);
    assert_eq!(
        untouched.values,
        client.project(items[1].contact.as_ref().unwrap()),
        "an unedited record holds what was written"
    );
    assert_eq!(sb.calls(READ).await, 1);
}

#[tokio::test]
async fn fetch_leaves_out_archived_unknown_and_malformed_ids_without_failing() {
    let sb = Sandbox::start().await;
    let client = sb.client();
    let mut items = [
        live(contact("ada@example.com", "Ada")),
        live(contact("grace@example.com", "Grace")),
    ];
    sync_linking(&client, &mut items).await;
    let (kept, archived) = (
        items[0].remote_id.clone().unwrap(),
        items[1].remote_id.clone().unwrap(),
    );
    sb.control(Method::DELETE, &format!("/ui/contacts/{archived}"), None)
        .await;
    let ids = [&kept, &archived, "999999999", "12abc", "51 OR 1=1", ""].map(|s| s.to_string());
    let records = client.fetch(&ids).await.unwrap();
    let found: Vec<&str> = records.iter().map(|r| r.remote_id.as_str()).collect();
    assert_eq!(found, [kept.as_str()]);
    assert_eq!(sb.calls(READ).await, 1);

    let none = client.fetch(&["not-an-id".to_owned()]).await.unwrap();
    assert!(none.is_empty());
    assert_eq!(sb.calls(READ).await, 1, "no call without a valid id");
}

#[tokio::test]
async fn fetch_of_more_than_one_hundred_ids_takes_several_calls_of_at_most_one_hundred() {
    let sb = Sandbox::start().await;
    let client = sb.client();
    let mut items: Vec<_> = (0..150)
        .map(|n| live(contact(&format!("c{n}@example.com"), "C")))
        .collect();
    for batch in items.chunks_mut(client.batch_cap()) {
        sync_linking(&client, batch).await;
    }
    let mut ids: Vec<String> = items.iter().filter_map(|i| i.remote_id.clone()).collect();
    assert_eq!(ids.len(), 150);
    // A repeated id is read once.
    ids.push(ids[0].clone());
    let records = client.fetch(&ids).await.unwrap();
    assert_eq!(records.len(), 150);
    let counters = sb.control(Method::GET, "/counters", None).await;
    assert_eq!(counters["calls"][READ], 2);
    let tally = &counters["batches"][READ];
    assert_eq!(
        (
            &tally["records"],
            &tally["max_records"],
            &tally["refused_oversized"]
        ),
        (&json!(150), &json!(100), &json!(0))
    );
}

#[tokio::test]
async fn fetch_reads_only_the_fields_the_field_map_holds() {
    let sb = Sandbox::start().await;
    let client = sb.client_with("email", "company=-, job_title=-");
    let mut items = [live(contact("ada@example.com", "Ada"))];
    sync_linking(&client, &mut items).await;
    let id = items[0].remote_id.clone().unwrap();
    let records = client.fetch(&[id]).await.unwrap();
    let fields: Vec<Field> = records[0].values.fields().collect();
    assert_eq!(
        fields,
        [
            Field::Email,
            Field::FirstName,
            Field::LastName,
            Field::Phone
        ]
    );
    assert_eq!(
        records[0].values,
        client.project(items[0].contact.as_ref().unwrap())
    );
}

#[tokio::test]
async fn fetch_during_an_outage_fails_as_a_whole() {
    let sb = Sandbox::start().await;
    let client = sb.client();
    let mut items = [live(contact("ada@example.com", "Ada"))];
    sync_linking(&client, &mut items).await;
    sb.control(Method::PUT, "/faults", Some(json!({"outage": true})))
        .await;
    let err = client
        .fetch(&[items[0].remote_id.clone().unwrap()])
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable(_)), "{err:?}");
}

/// A time later, at `precision`, than every write so far: the clock has ticked past the last
/// one, so a record written before this reads as modified before it.
async fn after_the_last_write(precision: TimeDelta) -> chrono::DateTime<Utc> {
    let written = Utc::now().duration_trunc(precision).unwrap();
    eventually("the clock to tick past the last write", || async {
        let now = Utc::now();
        (now.duration_trunc(precision).unwrap() > written).then_some(now)
    })
    .await
}

/// A person edits record `id` in HubSpot, at a later millisecond than anything before.
async fn edited_in_ui(sb: &Sandbox, id: &str, first: &str) {
    after_the_last_write(TimeDelta::milliseconds(1)).await;
    let edit = json!({"properties": {"firstname": first}});
    sb.control(Method::PATCH, &format!("/ui/contacts/{id}"), Some(edit))
        .await;
}

fn ids(records: &[RemoteRecord]) -> Vec<&str> {
    records.iter().map(|r| r.remote_id.as_str()).collect()
}

#[tokio::test]
async fn changed_since_returns_a_record_edited_in_hubspot_and_not_the_untouched_ones() {
    let sb = Sandbox::start().await;
    let client = sb.client();
    let mut items = [
        live(contact("ada@example.com", "Ada")),
        live(contact("grace@example.com", "Grace")),
        live(contact("linus@example.com", "Linus")),
    ];
    sync_linking(&client, &mut items).await;
    let since = after_the_last_write(TimeDelta::milliseconds(1)).await;
    let grace = items[1].remote_id.clone().unwrap();
    edited_in_ui(&sb, &grace, "Grace Brewster").await;

    let records = client.changed_since(since, 50).await.unwrap();
    assert_eq!(ids(&records), [grace.as_str()]);
    let mut want = client.project(items[1].contact.as_ref().unwrap());
    want.set_reported(Field::FirstName, Some("Grace Brewster"));
    assert_eq!(records[0].values, want);
    assert!(
        records[0].modified_at >= since,
        "{records:?} before {since}"
    );
    let fetched = client.fetch(&[grace]).await.unwrap();
    assert_eq!(records, fetched, "a polled record maps like a fetched one");
    assert_eq!(sb.calls(SEARCH).await, 1);
}

#[tokio::test]
async fn changed_since_lists_changes_oldest_first_up_to_the_limit() {
    let sb = Sandbox::start().await;
    let client = sb.client();
    let mut items = [
        live(contact("ada@example.com", "Ada")),
        live(contact("grace@example.com", "Grace")),
        live(contact("linus@example.com", "Linus")),
    ];
    sync_linking(&client, &mut items).await;
    let [ada, grace, linus] = items.map(|i| i.remote_id.unwrap());
    let since = after_the_last_write(TimeDelta::milliseconds(1)).await;
    // Edited in an order that is neither creation nor id order.
    for id in [&linus, &ada, &grace] {
        edited_in_ui(&sb, id, "Edited").await;
    }

    let all = client.changed_since(since, 50).await.unwrap();
    assert_eq!(ids(&all), [&linus, &ada, &grace]);
    assert!(all.windows(2).all(|w| w[0].modified_at < w[1].modified_at));
    let first_two = client.changed_since(since, 2).await.unwrap();
    assert_eq!(ids(&first_two), [&linus, &ada]);
    // The caller advances `since` to the last record seen; that record comes back again,
    // being modified at (not after) the new `since`.
    let rest = client
        .changed_since(first_two[1].modified_at, 50)
        .await
        .unwrap();
    assert_eq!(ids(&rest), [&ada, &grace]);
    let sent = sb.control(Method::GET, "/counters", None).await;
    assert_eq!(sent["records_per_call"][SEARCH]["max"], 3);
}

#[tokio::test]
async fn changed_since_leaves_out_a_record_archived_after_its_edit() {
    let sb = Sandbox::start().await;
    let client = sb.client();
    let mut items = [
        live(contact("ada@example.com", "Ada")),
        live(contact("grace@example.com", "Grace")),
    ];
    sync_linking(&client, &mut items).await;
    let [ada, grace] = items.map(|i| i.remote_id.unwrap());
    let since = after_the_last_write(TimeDelta::milliseconds(1)).await;
    edited_in_ui(&sb, &ada, "Augusta Ada").await;
    edited_in_ui(&sb, &grace, "Grace Brewster").await;
    sb.control(Method::DELETE, &format!("/ui/contacts/{grace}"), None)
        .await;

    let records = client.changed_since(since, 50).await.unwrap();
    assert_eq!(ids(&records), [ada.as_str()]);
}

#[tokio::test]
async fn a_person_created_in_hubspot_is_found_once_search_has_indexed_it() {
    let sb = Sandbox::start().await;
    let client = sb.client();
    // HubSpot's search index lags writes by "a few moments".
    sb.control(Method::PUT, "/faults", Some(json!({"search_lag_ms": 1000})))
        .await;
    let since = Utc::now();
    let id = sb
        .created_in_ui(json!({"email": "alan@example.com", "firstname": "Alan"}))
        .await;
    let at_once = client.changed_since(since, 50).await.unwrap();
    assert!(at_once.is_empty(), "not indexed yet: {at_once:?}");

    let records = eventually("the new record to be searchable", || async {
        let records = client.changed_since(since, 50).await.unwrap();
        (!records.is_empty()).then_some(records)
    })
    .await;
    assert_eq!(ids(&records), [id.as_str()]);
    assert_eq!(
        records[0].values.get(Field::FirstName),
        Some(&Some("Alan".to_owned()))
    );
}

#[tokio::test]
async fn changed_since_during_an_outage_fails_as_a_whole() {
    let sb = Sandbox::start().await;
    let client = sb.client();
    sb.control(Method::PUT, "/faults", Some(json!({"outage": true})))
        .await;
    let err = client.changed_since(Utc::now(), 50).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable(_)), "{err:?}");
}
