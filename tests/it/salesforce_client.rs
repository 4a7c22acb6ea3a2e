//! Black-box tests of the Salesforce client against the in-process Salesforce sandbox: one
//! sandbox per test on port 0, inspected through its `/__sandbox/` control API. No Postgres or
//! RabbitMQ needed.

use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use serde_json::{Value, json};
use syncroot::domain::fields::Field;
use syncroot::domain::{ContactFields, ContactId, Email, FieldValues};
use syncroot::providers::mapping::FieldMap;
use syncroot::providers::salesforce::{SalesforceClient, SalesforceSettings, default_fields};
use syncroot::providers::{CrmClient, ItemOutcome, ProviderError, RemoteRecord, SyncItem};
use syncroot::secret::Secret;
use syncroot_sandbox::salesforce::{SalesforceSandboxConfig, spawn};
use syncroot_testkit::{Control, eventually};
use tokio_util::sync::CancellationToken;

const PLACEHOLDER: &str = "[not provided]";
const UPSERT_ROUTE: &str = "PATCH /services/data/{version}/composite/sobjects/{sobject}/{field}";
const QUERY_ROUTE: &str = "GET /services/data/{version}/query";

/// A running sandbox org and a client pointed at it; dropping it stops the sandbox.
struct Org {
    base: String,
    /// The sandbox's control API, with its token.
    control: Control,
    shutdown: CancellationToken,
}

impl Drop for Org {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Org {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let cfg = SalesforceSandboxConfig::default();
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

    fn settings(&self) -> SalesforceSettings {
        SalesforceSettings {
            login_url: self.base.clone(),
            client_id: "sandbox-sf-client-id".into(),
            client_secret: Secret::new("sandbox-sf-client-secret"),
            api_version: "62.0".into(),
            external_id_field: "SyncRoot_Id__c".into(),
            fields: FieldMap::defaults(&default_fields()),
            last_name_placeholder: PLACEHOLDER.into(),
            match_by_email: true,
            client_name: "syncroot".into(),
            rate_limit_per_second: 0,
            batching: true,
            timeout: Duration::from_secs(5),
            reads: Default::default(),
        }
    }

    fn client(&self) -> SalesforceClient {
        SalesforceClient::new(self.settings())
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.control.request(&self.base, method, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        self.control(reqwest::Method::GET, path, None).await
    }

    async fn put(&self, path: &str, body: Value) -> Value {
        self.control(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.control(reqwest::Method::POST, path, Some(body)).await
    }

    /// Live Contacts (not in the recycle bin).
    async fn live_contacts(&self) -> Vec<Value> {
        let state = self.get("state").await;
        let all = state["contacts"].as_array().unwrap().clone();
        all.into_iter()
            .filter(|c| c["IsDeleted"] == false)
            .collect()
    }

    /// The record with `id`, recycled or not.
    async fn record(&self, id: &str) -> Value {
        let state = self.get("state").await;
        let all = state["contacts"].as_array().unwrap();
        all.iter()
            .find(|c| c["Id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    }
}

fn contact(email: &str, first: Option<&str>, last: Option<&str>) -> ContactFields {
    ContactFields {
        email: Email::parse(email).unwrap(),
        first_name: first.map(Into::into),
        last_name: last.map(Into::into),
        phone: None,
        company: None,
        job_title: None,
    }
}

fn item(fields: ContactFields) -> SyncItem {
    SyncItem {
        contact_id: ContactId::new(),
        version: 1,
        contact: Some(fields),
        remote_id: None,
        left_emails: Vec::new(),
        known: None,
    }
}

fn remote_id(outcome: &ItemOutcome) -> String {
    match outcome {
        ItemOutcome::Synced {
            remote_id: Some(id),
        } => id.clone(),
        other => panic!("expected a synced record, got {other:?}"),
    }
}

async fn sync_one(client: &SalesforceClient, item: &SyncItem) -> ItemOutcome {
    let mut outcomes = client.sync(std::slice::from_ref(item)).await.unwrap();
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0)
}

#[tokio::test]
async fn new_and_updated_contacts_reach_salesforce_with_the_mapped_fields() {
    let org = Org::start().await;
    let client = org.client();
    let mut full = contact("ada@example.com", Some("Ada"), Some("Lovelace"));
    full.phone = Some("+44 20 7946 0000".into());
    full.company = Some("Analytical Engines".into());
    full.job_title = Some("Analyst".into());
    let mut ada = item(full);
    let nameless = item(contact("anon@example.com", Some("Anon"), None));

    let outcomes = client.sync(&[ada.clone(), nameless.clone()]).await.unwrap();
    let (ada_id, anon_id) = (remote_id(&outcomes[0]), remote_id(&outcomes[1]));
    let rec = org.record(&ada_id).await;
    assert_eq!(rec["SyncRoot_Id__c"], ada.contact_id.to_string());
    assert_eq!(
        (
            &rec["Email"],
            &rec["FirstName"],
            &rec["LastName"],
            &rec["Phone"],
            &rec["Title"]
        ),
        (
            &json!("ada@example.com"),
            &json!("Ada"),
            &json!("Lovelace"),
            &json!("+44 20 7946 0000"),
            &json!("Analyst")
        )
    );
    assert!(
        !rec.to_string().contains("Analytical Engines"),
        "company has no home on Contact"
    );
    assert_eq!(org.record(&anon_id).await["LastName"], PLACEHOLDER);

    // An update clears a field with null and keeps the record.
    let fields = ada.contact.as_mut().unwrap();
    fields.job_title = None;
    fields.first_name = Some("Augusta Ada".into());
    ada.remote_id = Some(ada_id.clone());
    assert_eq!(remote_id(&sync_one(&client, &ada).await), ada_id);
    let rec = org.record(&ada_id).await;
    assert_eq!(
        (&rec["Title"], &rec["FirstName"]),
        (&Value::Null, &json!("Augusta Ada"))
    );
    assert_eq!(org.live_contacts().await.len(), 2);

    let state = org.get("state").await;
    let changes = state["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 3);
    assert!(
        changes.iter().all(|c| c["client"] == "syncroot"),
        "{changes:?}"
    );
}

#[tokio::test]
async fn deleted_contacts_are_removed_even_without_a_recorded_remote_id() {
    let org = Org::start().await;
    let client = org.client();
    let recorded = item(contact("a@example.com", None, Some("A")));
    let unrecorded = item(contact("b@example.com", None, Some("B")));
    let outcomes = client
        .sync(&[recorded.clone(), unrecorded.clone()])
        .await
        .unwrap();
    let (a_id, b_id) = (remote_id(&outcomes[0]), remote_id(&outcomes[1]));

    let tombstone = |i: &SyncItem, remote: Option<String>| SyncItem {
        contact: None,
        remote_id: remote,
        ..i.clone()
    };
    let never_written = tombstone(&item(contact("c@example.com", None, None)), None);
    let batch = [
        tombstone(&recorded, Some(a_id.clone())),
        tombstone(&unrecorded, None),
        never_written,
    ];
    let outcomes = client.sync(&batch).await.unwrap();
    assert_eq!(remote_id(&outcomes[0]), a_id);
    assert_eq!(remote_id(&outcomes[1]), b_id, "found by external id");
    assert!(matches!(
        outcomes[2],
        ItemOutcome::Synced { remote_id: None }
    ));
    assert!(org.live_contacts().await.is_empty());
    assert_eq!(org.record(&a_id).await["IsDeleted"], true);

    // Deleting again: the record is already gone, which is what was wanted.
    let again = client.sync(&batch[..1]).await.unwrap();
    assert_eq!(remote_id(&again[0]), a_id);
}

#[tokio::test]
async fn a_person_already_in_salesforce_is_linked_not_duplicated() {
    let org = Org::start().await;
    let client = org.client();
    let human = org
        .post(
            "ui/contacts",
            json!({"FirstName": "G", "LastName": "Hopper", "Email": "Grace@Example.com"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Someone another SyncRoot contact is already linked to is left alone.
    let taken = org
        .post(
            "ui/contacts",
            json!({"LastName": "Taken", "Email": "taken@example.com",
            "SyncRoot_Id__c": "0190b6a2-7c3e-7a1b-9f00-0123456789ab"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let grace = item(contact("grace@example.com", Some("Grace"), Some("Hopper")));
    let other = item(contact("taken@example.com", Some("New"), Some("Person")));
    let outcomes = client.sync(&[grace.clone(), other]).await.unwrap();
    assert_eq!(
        remote_id(&outcomes[0]),
        human,
        "linked to the existing record"
    );
    assert_ne!(
        remote_id(&outcomes[1]),
        taken,
        "another contact's link is not taken over"
    );

    let live = org.live_contacts().await;
    assert_eq!(live.len(), 3);
    let rec = org.record(&human).await;
    assert_eq!(rec["SyncRoot_Id__c"], grace.contact_id.to_string());
    assert_eq!(rec["FirstName"], "Grace");
    assert_eq!(org.record(&taken).await["LastName"], "Taken");
}

#[tokio::test]
async fn syncing_the_same_item_twice_creates_no_duplicate() {
    let org = Org::start().await;
    let client = org.client();
    let ada = item(contact("ada@example.com", Some("Ada"), None));
    let first = remote_id(&sync_one(&client, &ada).await);
    // Redelivered before its remote id was recorded.
    let second = remote_id(&sync_one(&client, &ada).await);
    assert_eq!(first, second);
    assert_eq!(org.live_contacts().await.len(), 1);
}

#[tokio::test]
async fn an_email_change_keeps_one_record() {
    let org = Org::start().await;
    let client = org.client();
    let mut ada = item(contact("ada@example.com", Some("Ada"), Some("Lovelace")));
    let id = remote_id(&sync_one(&client, &ada).await);
    ada.remote_id = Some(id.clone());
    ada.contact.as_mut().unwrap().email = Email::parse("ada@engines.example").unwrap();
    assert_eq!(remote_id(&sync_one(&client, &ada).await), id);
    let live = org.live_contacts().await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["Email"], "ada@engines.example");
}

#[tokio::test]
async fn a_linked_record_is_written_by_its_id_even_after_its_external_id_was_cleared() {
    let org = Org::start().await;
    let client = org.client();
    let mut ada = item(contact("ada@example.com", Some("Ada"), Some("Lovelace")));
    let id = remote_id(&sync_one(&client, &ada).await);
    // Someone clears SyncRoot's external id on the record in Salesforce.
    let r = org
        .control
        .request(
            &org.base,
            reqwest::Method::PATCH,
            &format!("ui/contacts/{id}"),
        )
        .json(&json!({"SyncRoot_Id__c": null}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    ada.remote_id = Some(id.clone());
    ada.contact.as_mut().unwrap().job_title = Some("Analyst".into());
    assert_eq!(
        remote_id(&sync_one(&client, &ada).await),
        id,
        "the same record"
    );
    let live = org.live_contacts().await;
    assert_eq!(live.len(), 1, "no second record");
    assert_eq!(live[0]["Title"], "Analyst");
    assert_eq!(
        live[0]["SyncRoot_Id__c"],
        ada.contact_id.to_string().as_str(),
        "the link is restored"
    );
}

#[tokio::test]
async fn an_expired_session_is_refreshed_transparently() {
    let org = Org::start().await;
    let client = org.client();
    sync_one(&client, &item(contact("a@example.com", None, Some("A")))).await;
    assert_eq!(org.get("counters").await["token_requests"], 1);
    org.post("expire-sessions", json!({})).await;
    // Two calls find the session expired at once; they share one login.
    let (b, c) = (
        [item(contact("b@example.com", None, Some("B")))],
        [item(contact("c@example.com", None, Some("C")))],
    );
    let (b, c) = tokio::join!(client.sync(&b), client.sync(&c));
    remote_id(&b.unwrap()[0]);
    remote_id(&c.unwrap()[0]);
    assert_eq!(org.get("counters").await["token_requests"], 2);
    assert_eq!(org.live_contacts().await.len(), 3);
}

#[tokio::test]
async fn a_large_backlog_in_one_call_goes_in_batches_of_at_most_200() {
    let org = Org::start().await;
    let client = org.client();
    assert_eq!(client.batch_cap(), 200);
    let items: Vec<SyncItem> = (0..450)
        .map(|n| item(contact(&format!("p{n}@example.com"), None, Some("P"))))
        .collect();
    // More than the cap in one call: splitting it is the client's job.
    let outcomes = client.sync(&items).await.unwrap();
    let synced = outcomes
        .iter()
        .filter(|o| matches!(o, ItemOutcome::Synced { .. }))
        .count();
    assert_eq!(synced, 450);
    let counters = org.get("counters").await;
    // What the sandbox received, refused calls included.
    let tally = &counters["batches"][UPSERT_ROUTE];
    assert!(tally["max_records"].as_u64().unwrap() <= 200, "{tally}");
    assert_eq!(tally["refused_oversized"], 0, "{tally}");
    assert_eq!(
        (&tally["calls"], &tally["records"]),
        (&json!(3), &json!(450))
    );
    assert_eq!(
        counters["calls"][QUERY_ROUTE], 3,
        "one e-mail query per batch"
    );
    assert_eq!(counters["records_written"], 450);
    assert_eq!(org.live_contacts().await.len(), 450);
}

#[tokio::test]
async fn an_invalid_contact_fails_alone() {
    let org = Org::start().await;
    let client = org.client();
    let too_long = "x".repeat(41);
    let batch = [
        item(contact("a@example.com", None, Some("A"))),
        item(contact("b@example.com", Some(&too_long), Some("B"))),
        item(contact("c@example.com", None, Some("C"))),
    ];
    let outcomes = client.sync(&batch).await.unwrap();
    remote_id(&outcomes[0]);
    remote_id(&outcomes[2]);
    match &outcomes[1] {
        ItemOutcome::Failed(e @ ProviderError::Rejected { code, .. }) => {
            assert_eq!(code, "STRING_TOO_LONG");
            assert!(!e.is_retryable());
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(org.live_contacts().await.len(), 2);
}

#[tokio::test]
async fn an_outage_is_unavailable() {
    let org = Org::start().await;
    let client = org.client();
    sync_one(&client, &item(contact("a@example.com", None, Some("A")))).await;
    org.put("faults", json!({"outage": true})).await;
    let batch = [item(contact("b@example.com", None, Some("B")))];
    let err = client.sync(&batch).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
    // A client that has not logged in yet meets the outage at the token endpoint.
    let fresh = org.client().sync(&batch).await.unwrap_err();
    assert!(matches!(fresh, ProviderError::Unavailable(_)), "{fresh:?}");
}

#[tokio::test]
async fn a_spent_daily_allowance_pauses_delivery() {
    let org = Org::start().await;
    let client = org.client();
    org.put("limits", json!({"daily_limit": 50, "used": 50}))
        .await;
    let batch = [item(contact("a@example.com", None, Some("A")))];
    let err = client.sync(&batch).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::QuotaExhausted { retry_after } if retry_after == Duration::from_secs(600)),
        "{err:?}"
    );
    let why = client.paused().expect("paused");
    assert!(why.contains("daily API allowance spent"), "{why}");

    // While paused, no call is spent to learn it again.
    let calls = org.get("counters").await["calls_total"].clone();
    let again = client.sync(&batch).await.unwrap_err();
    assert!(matches!(again, ProviderError::QuotaExhausted { .. }));
    assert_eq!(org.get("counters").await["calls_total"], calls);
}

#[tokio::test]
async fn reaching_the_allowance_pauses_before_the_next_call_is_refused() {
    let org = Org::start().await;
    let client = org.client();
    // The e-mail query takes usage to 49/50, the upsert to 50/50.
    org.put("limits", json!({"daily_limit": 50, "used": 48}))
        .await;
    let outcome = sync_one(&client, &item(contact("a@example.com", None, Some("A")))).await;
    remote_id(&outcome);
    let why = client.paused().expect("paused");
    assert!(why.contains("daily API allowance spent (50/50)"), "{why}");
}

#[tokio::test]
async fn a_429_is_rate_limited_with_its_retry_after() {
    let org = Org::start().await;
    let client = org.client();
    org.put("faults", json!({"force_429": 1})).await;
    let err = client
        .sync(&[item(contact("a@example.com", None, Some("A")))])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(1)),
        "{err:?}"
    );
}

#[tokio::test]
async fn refused_credentials_are_unauthorized() {
    let org = Org::start().await;
    let mut settings = org.settings();
    settings.client_secret = Secret::new("wrong");
    let err = SalesforceClient::new(settings)
        .sync(&[item(contact("a@example.com", None, Some("A")))])
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Unauthorized(_)), "{err:?}");
    assert!(
        !format!("{err:?}").contains("wrong"),
        "the secret is never echoed"
    );
}

impl Org {
    async fn calls(&self, route: &str) -> u64 {
        self.get("counters").await["calls"][route]
            .as_u64()
            .unwrap_or(0)
    }
}

/// The record `id` among `records`.
fn fetched<'r>(records: &'r [RemoteRecord], id: &str) -> &'r RemoteRecord {
    records
        .iter()
        .find(|r| r.remote_id == id)
        .unwrap_or_else(|| panic!("{id} not among {records:?}"))
}

/// Syncs `items` in one call and returns their record ids.
async fn synced_ids(client: &SalesforceClient, items: &[SyncItem]) -> Vec<String> {
    let outcomes = client.sync(items).await.unwrap();
    outcomes.iter().map(remote_id).collect()
}

#[tokio::test]
async fn fetch_returns_a_record_edited_in_salesforce_as_it_now_is() {
    let org = Org::start().await;
    let client = org.client();
    let items = [
        item(contact("ada@example.com", Some("Ada"), None)),
        item(contact("grace@example.com", Some("Grace"), Some("Hopper"))),
    ];
    let ids = synced_ids(&client, &items).await;
    // Salesforce keeps date-times to the second.
    let before = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap();
    org.control(
        reqwest::Method::PATCH,
        &format!("ui/contacts/{}", ids[0]),
        Some(
            json!({"Email": "Ada@Lovelace.Example", "FirstName": "Augusta Ada",
                    "LastName": "Lovelace", "Title": "Countess"}),
        ),
    )
    .await;

    let records = client.fetch(&ids).await.unwrap();
    assert_eq!(records.len(), 2);
    let edited = fetched(&records, &ids[0]);
    let mut want = FieldValues::default();
    for (field, value) in [
        (Field::Email, Some("ada@lovelace.example")),
        (Field::FirstName, Some("Augusta Ada")),
        (Field::LastName, Some("Lovelace")),
        (Field::Phone, None),
        (Field::JobTitle, Some("Countess")),
    ] {
        want.set_reported(field, value);
    }
    assert_eq!(edited.values, want, "company has no home on Contact");
    assert!(edited.modified_at >= before, "{edited:?} before {before}");
    assert_eq!(
        edited.external_id.as_deref(),
        Some(items[0].contact_id.to_string().as_str())
    );
    let untouched = fetched(&records, &ids[1]);
    assert_eq!(
        untouched.values,
        client.project(items[1].contact.as_ref().unwrap()),
        "an unedited record holds what was written"
    );
    assert_eq!(
        untouched.external_id.as_deref(),
        Some(items[1].contact_id.to_string().as_str())
    );
}

#[tokio::test]
async fn fetch_reads_a_last_name_placeholder_as_no_last_name() {
    let org = Org::start().await;
    let client = org.client();
    let items = [item(contact("anon@example.com", Some("Anon"), None))];
    let ids = synced_ids(&client, &items).await;
    assert_eq!(org.record(&ids[0]).await["LastName"], PLACEHOLDER);
    let records = client.fetch(&ids).await.unwrap();
    assert_eq!(records[0].values.get(Field::LastName), Some(&None));
    assert_eq!(
        records[0].values,
        client.project(items[0].contact.as_ref().unwrap())
    );
}

#[tokio::test]
async fn fetch_leaves_out_deleted_and_unknown_ids_without_failing() {
    let org = Org::start().await;
    let client = org.client();
    let items = [
        item(contact("a@example.com", None, Some("A"))),
        item(contact("b@example.com", None, Some("B"))),
    ];
    let ids = synced_ids(&client, &items).await;
    // A person deletes it (to the recycle bin); the answer is a 204 without a body.
    let path = format!("ui/contacts/{}", ids[1]);
    let deleted = org
        .control
        .request(&org.base, reqwest::Method::DELETE, &path)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let asked = [ids[0].clone(), ids[1].clone(), "003000000000999".into()];
    let records = client.fetch(&asked).await.unwrap();
    let found: Vec<&str> = records.iter().map(|r| r.remote_id.as_str()).collect();
    assert_eq!(found, [ids[0].as_str()]);
    assert_eq!(
        org.calls(QUERY_ROUTE).await,
        2,
        "the e-mail look-up and the read"
    );
}

#[tokio::test]
async fn a_malicious_id_is_skipped_without_a_query() {
    let org = Org::start().await;
    let client = org.client();
    let items = [
        item(contact("a@example.com", None, Some("A"))),
        item(contact("b@example.com", None, Some("B"))),
    ];
    let ids = synced_ids(&client, &items).await;
    let queries = org.calls(QUERY_ROUTE).await;
    let malicious = "003' OR Name != '".to_owned();

    let alone = client
        .fetch(std::slice::from_ref(&malicious))
        .await
        .unwrap();
    assert!(alone.is_empty());
    assert_eq!(org.calls(QUERY_ROUTE).await, queries, "no query was sent");

    // Beside a real id it is still left out: had it reached the query, every Contact matched.
    let mixed = client.fetch(&[ids[0].clone(), malicious]).await.unwrap();
    let found: Vec<&str> = mixed.iter().map(|r| r.remote_id.as_str()).collect();
    assert_eq!(found, [ids[0].as_str()]);
    assert_eq!(org.calls(QUERY_ROUTE).await, queries + 1);
}

#[tokio::test]
async fn fetch_splits_ids_that_would_make_the_query_url_too_long() {
    let org = Org::start().await;
    let client = org.client();
    let ids = synced_ids(&client, &[item(contact("a@example.com", None, Some("A")))]).await;
    let queries = org.calls(QUERY_ROUTE).await;
    // 600 well-formed ids of records that do not exist, beside the one that does.
    let mut asked: Vec<String> = (0..600).map(|n| format!("003{n:012}")).collect();
    asked.push(ids[0].clone());
    let records = client.fetch(&asked).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].remote_id, ids[0]);
    assert_eq!(org.calls(QUERY_ROUTE).await, queries + 2);
}

/// A time in a later second than every write so far (Salesforce keeps date-times to the
/// second), so a record written before this reads as modified before it.
async fn after_the_last_write() -> chrono::DateTime<Utc> {
    let second = TimeDelta::seconds(1);
    let written = Utc::now().duration_trunc(second).unwrap();
    eventually("the clock to tick past the last write's second", || async {
        let now = Utc::now();
        (now.duration_trunc(second).unwrap() > written).then_some(now)
    })
    .await
}

/// A person edits Contact `id` in Salesforce, in a later second than anything before.
async fn edited_in_ui(org: &Org, id: &str, first: &str) {
    after_the_last_write().await;
    org.control(
        reqwest::Method::PATCH,
        &format!("ui/contacts/{id}"),
        Some(json!({ "FirstName": first })),
    )
    .await;
}

fn record_ids(records: &[RemoteRecord]) -> Vec<&str> {
    records.iter().map(|r| r.remote_id.as_str()).collect()
}

#[tokio::test]
async fn changed_since_returns_a_record_edited_in_salesforce_and_not_the_untouched_ones() {
    let org = Org::start().await;
    let client = org.client();
    let items = [
        item(contact("ada@example.com", Some("Ada"), Some("Lovelace"))),
        item(contact("grace@example.com", Some("Grace"), Some("Hopper"))),
        item(contact("linus@example.com", Some("Linus"), None)),
    ];
    let ids = synced_ids(&client, &items).await;
    let since = after_the_last_write().await;
    edited_in_ui(&org, &ids[1], "Grace Brewster").await;
    let queries = org.calls(QUERY_ROUTE).await;

    let records = client.changed_since(since, 50).await.unwrap();
    assert_eq!(record_ids(&records), [ids[1].as_str()]);
    let mut want = client.project(items[1].contact.as_ref().unwrap());
    want.set_reported(Field::FirstName, Some("Grace Brewster"));
    assert_eq!(records[0].values, want);
    assert_eq!(
        records[0].external_id.as_deref(),
        Some(items[1].contact_id.to_string().as_str())
    );
    assert!(
        records[0].modified_at >= since.duration_trunc(TimeDelta::seconds(1)).unwrap(),
        "{records:?} before {since}"
    );
    assert_eq!(org.calls(QUERY_ROUTE).await, queries + 1, "one query");
    let fetched = client.fetch(&ids[1..2]).await.unwrap();
    assert_eq!(records, fetched, "a polled record maps like a fetched one");
}

#[tokio::test]
async fn changed_since_lists_changes_oldest_first_up_to_the_limit() {
    let org = Org::start().await;
    let client = org.client();
    let items = [
        item(contact("ada@example.com", None, Some("Lovelace"))),
        item(contact("grace@example.com", None, Some("Hopper"))),
        item(contact("linus@example.com", None, Some("Torvalds"))),
    ];
    let ids = synced_ids(&client, &items).await;
    let since = after_the_last_write().await;
    // Edited in an order that is neither creation nor id order, a second apart.
    let order = [&ids[2], &ids[0], &ids[1]];
    for id in order {
        edited_in_ui(&org, id, "Edited").await;
    }

    let all = client.changed_since(since, 50).await.unwrap();
    assert_eq!(record_ids(&all), order);
    assert!(all.windows(2).all(|w| w[0].modified_at < w[1].modified_at));
    let first_two = client.changed_since(since, 2).await.unwrap();
    assert_eq!(record_ids(&first_two), order[..2]);
    let none = client.changed_since(since, 0).await.unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn changed_since_leaves_out_a_record_deleted_after_its_edit() {
    let org = Org::start().await;
    let client = org.client();
    let items = [
        item(contact("a@example.com", None, Some("A"))),
        item(contact("b@example.com", None, Some("B"))),
    ];
    let ids = synced_ids(&client, &items).await;
    let since = after_the_last_write().await;
    edited_in_ui(&org, &ids[0], "Edited").await;
    edited_in_ui(&org, &ids[1], "Edited").await;
    let path = format!("ui/contacts/{}", ids[1]);
    let deleted = org
        .control
        .request(&org.base, reqwest::Method::DELETE, &path)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());

    let records = client.changed_since(since, 50).await.unwrap();
    assert_eq!(record_ids(&records), [ids[0].as_str()]);
}

#[tokio::test]
async fn a_linked_record_deleted_in_salesforce_is_reported_gone_not_recreated() {
    let org = Org::start().await;
    let client = org.client();
    let items = [
        item(contact("a@example.com", None, Some("A"))),
        item(contact("b@example.com", None, Some("B"))),
    ];
    let ids = synced_ids(&client, &items).await;
    let path = format!("ui/contacts/{}", ids[0]);
    let deleted = org
        .control
        .request(&org.base, reqwest::Method::DELETE, &path)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let linked: Vec<SyncItem> = items
        .iter()
        .zip(&ids)
        .map(|(i, id)| SyncItem {
            version: 2,
            remote_id: Some(id.clone()),
            ..i.clone()
        })
        .collect();
    let outcomes = client.sync(&linked).await.unwrap();
    assert!(
        matches!(&outcomes[0], ItemOutcome::Gone { remote_id } if *remote_id == ids[0]),
        "{outcomes:?}"
    );
    assert_eq!(remote_id(&outcomes[1]), ids[1]);
    assert_eq!(org.live_contacts().await.len(), 1, "nothing recreated");
}
