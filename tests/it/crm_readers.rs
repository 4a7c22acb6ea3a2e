//! Full reads of a CRM's contacts ([`ContactReader`]), black-box, against in-process sandboxes
//! seeded with a few thousand records through `/__sandbox/seed`: every live record is read
//! exactly once, a read resumes from a stored position, the Salesforce SOQL and Bulk API paths
//! agree, and each read costs the fewest calls its page sizes allow (counted by the sandboxes).
//! Needs neither Postgres nor RabbitMQ.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use syncroot::providers::hubspot::{self, HubspotClient, HubspotSettings};
use syncroot::providers::mapping::FieldMap;
use syncroot::providers::reading::{ContactReader, ReadPage, ReadPosition};
use syncroot::providers::salesforce::{
    self, BulkPolling, ReadSettings, SalesforceClient, SalesforceSettings,
};
use syncroot::providers::{ProviderError, RemoteRecord};
use syncroot::secret::Secret;
use syncroot_testkit::Control;
use tokio_util::sync::CancellationToken;

const HS_TOKEN: &str = "pat-na1-reader-test-token";
const HS_LIST: &str = "GET /crm/v3/objects/contacts";
const SF_QUERY: &str = "GET /services/data/{version}/query";
const SF_QUERY_MORE: &str = "GET /services/data/{version}/query/{locator}";
const SF_JOB_CREATE: &str = "POST /services/data/{version}/jobs/query";
const SF_JOB_STATE: &str = "GET /services/data/{version}/jobs/query/{jobId}";
const SF_JOB_RESULTS: &str = "GET /services/data/{version}/jobs/query/{jobId}/results";

/// A sandbox on port 0 and its control API; dropping it stops the sandbox.
struct Crm {
    base: String,
    control: Control,
    shutdown: CancellationToken,
}

impl Drop for Crm {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Crm {
    async fn hubspot() -> Self {
        let cfg = syncroot_sandbox::hubspot::HubspotSandboxConfig {
            access_token: HS_TOKEN.into(),
            ..Default::default()
        };
        let token = cfg.control_token.expose().to_owned();
        let (listener, shutdown) = (bind().await, CancellationToken::new());
        let handle = syncroot_sandbox::hubspot::spawn(cfg, listener, shutdown.clone())
            .await
            .unwrap();
        Self::new(handle.base_url(), &token, shutdown)
    }

    async fn salesforce() -> Self {
        let cfg = syncroot_sandbox::salesforce::SalesforceSandboxConfig::default();
        let token = cfg.control_token.expose().to_owned();
        let (listener, shutdown) = (bind().await, CancellationToken::new());
        let handle = syncroot_sandbox::salesforce::spawn(cfg, listener, shutdown.clone())
            .await
            .unwrap();
        Self::new(handle.base_url(), &token, shutdown)
    }

    fn new(base: String, token: &str, shutdown: CancellationToken) -> Self {
        let http = syncroot_testkit::http_client().build().unwrap();
        Self {
            base,
            control: Control::new(http, token),
            shutdown,
        }
    }

    async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.control.request(&self.base, method, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let body = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// Seeds `records`; returns their ids in order.
    async fn seed(&self, records: Vec<Value>) -> Vec<String> {
        let answer = self
            .control(Method::POST, "seed", Some(Value::Array(records)))
            .await;
        let ids = answer["ids"].as_array().unwrap();
        ids.iter()
            .map(|id| id.as_str().unwrap().to_owned())
            .collect()
    }

    async fn calls(&self) -> BTreeMap<String, u64> {
        let counters = self.control(Method::GET, "counters", None).await;
        serde_json::from_value(counters["calls"].clone()).unwrap()
    }

    async fn reset_counters(&self) {
        self.control(Method::POST, "counters/reset", None).await;
    }

    fn hubspot_client(&self) -> HubspotClient {
        HubspotClient::new(HubspotSettings {
            base_url: self.base.clone(),
            token: Secret::new(HS_TOKEN),
            id_property: "email".into(),
            fields: FieldMap::defaults(&hubspot::default_fields()),
            rate_limit: 100,
            batching: true,
            timeout: Duration::from_secs(10),
        })
    }

    fn salesforce_client(&self, reads: ReadSettings) -> SalesforceClient {
        SalesforceClient::new(SalesforceSettings {
            login_url: self.base.clone(),
            client_id: "sandbox-sf-client-id".into(),
            client_secret: Secret::new("sandbox-sf-client-secret"),
            api_version: "62.0".into(),
            external_id_field: "SyncRoot_Id__c".into(),
            fields: FieldMap::defaults(&salesforce::default_fields()),
            last_name_placeholder: "[not provided]".into(),
            match_by_email: true,
            client_name: "syncroot".into(),
            rate_limit_per_second: 0,
            batching: true,
            timeout: Duration::from_secs(10),
            reads,
        })
    }
}

async fn bind() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Reads from `from` to the end; returns the pages.
async fn read_all(reader: &impl ContactReader, from: Option<ReadPosition>) -> Vec<ReadPage> {
    let mut pages = Vec::new();
    let mut at = from;
    loop {
        let page = reader.read_page(at.as_ref()).await.unwrap();
        at = page.next.clone();
        pages.push(page);
        if at.is_none() {
            return pages;
        }
    }
}

fn ids(pages: &[ReadPage]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| p.records.iter().map(|r| r.remote_id.clone()))
        .collect()
}

/// Asserts a resumed read met exactly the records of the rest of the first read, in order.
fn same_order(resumed: &[String], rest: &[String]) {
    let first_difference = resumed.iter().zip(rest).position(|(a, b)| a != b);
    assert!(
        resumed == rest,
        "resumed read: {} records, the rest of the first read: {}, first difference at {first_difference:?}",
        resumed.len(),
        rest.len()
    );
}

/// Asserts every id appears once and the ids are exactly `expected`, naming a few of the
/// differences rather than printing thousands of ids.
fn exactly_once(ids: &[String], expected: &BTreeSet<String>) {
    let set: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(
        set.len(),
        ids.len(),
        "{} records were read twice",
        ids.len() - set.len()
    );
    let missing: Vec<_> = expected.difference(&set).take(3).collect();
    let extra: Vec<_> = set.difference(expected).take(3).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "read {} records, expected {}; missing e.g. {missing:?}, unexpected e.g. {extra:?}",
        set.len(),
        expected.len()
    );
}

const SF_SEEDED: usize = 4_321;

/// Query jobs polled every few milliseconds, so tests do not wait Salesforce's seconds.
const FAST_POLLING: BulkPolling = BulkPolling {
    first_interval: Duration::from_millis(5),
    max_interval: Duration::from_millis(20),
    max_wait: Duration::from_secs(60),
};

/// Seeds the Salesforce population: `Person{i}@Example.COM` (mixed case, to see it normalised)
/// and a title; the first 21 are then deleted by a person. Returns the live ids.
async fn seed_salesforce(sf: &Crm) -> BTreeSet<String> {
    let records = (0..SF_SEEDED)
        .map(|i| json!({"LastName": format!("Person{i}"), "Email": format!("Person{i}@Example.COM"), "Title": if i % 3 == 0 { Value::Null } else { json!("Engineer, \"senior\"") }}))
        .collect();
    let ids = sf.seed(records).await;
    for id in &ids[..21] {
        sf.control(Method::DELETE, &format!("ui/contacts/{id}"), None)
            .await;
    }
    ids[21..].iter().cloned().collect()
}

#[tokio::test]
async fn hubspot_reader_reads_every_live_contact_once_in_the_fewest_pages_and_resumes() {
    let hs = Crm::hubspot().await;
    let records = (0..2_345)
        .map(|i| json!({"email": format!("Person{i}@Example.COM"), "firstname": format!("P{i}"), "company": "Acme"}))
        .collect();
    let seeded = hs.seed(records).await;
    for id in &seeded[..45] {
        hs.control(Method::DELETE, &format!("ui/contacts/{id}"), None)
            .await;
    }
    let live: BTreeSet<String> = seeded[45..].iter().cloned().collect();
    hs.reset_counters().await;
    let client = hs.hubspot_client();

    let pages = read_all(&client, None).await;
    exactly_once(&ids(&pages), &live);
    assert_eq!(pages.len(), 23, "2,300 live records, 100 a page");
    assert_eq!(hs.calls().await, BTreeMap::from([(HS_LIST.to_owned(), 23)]));
    let first: &RemoteRecord = &pages[0].records[0];
    assert_eq!(first.remote_id, seeded[45]);
    assert_eq!(first.email(), Some("person45@example.com"));
    assert!(first.modified_at < chrono::Utc::now());

    // A job that stored the position after page 7 reads the rest, and only the rest.
    let resumed = read_all(&client, pages[6].next.clone()).await;
    same_order(&ids(&resumed), &ids(&pages[7..]));
}

#[tokio::test]
async fn salesforce_soql_reader_reads_every_live_contact_once_and_resumes_even_after_its_locator_expired()
 {
    let sf = Crm::salesforce().await;
    let live = seed_salesforce(&sf).await;
    let reads = ReadSettings {
        bulk_threshold: None,
        ..ReadSettings::default()
    };
    let client = sf.salesforce_client(reads);
    sf.reset_counters().await;

    let pages = read_all(&client, None).await;
    exactly_once(&ids(&pages), &live);
    assert_eq!(
        pages.iter().map(|p| p.records.len()).collect::<Vec<_>>(),
        [2_000, 2_000, 300]
    );
    let calls = sf.calls().await;
    assert_eq!((calls[SF_QUERY], calls[SF_QUERY_MORE]), (1, 2), "{calls:?}");
    let record = &pages[0].records[0];
    assert_eq!(record.email(), Some("person21@example.com"));

    let resumed = read_all(&client, pages[0].next.clone()).await;
    same_order(&ids(&resumed), &ids(&pages[1..]));

    // The same position with a locator Salesforce no longer knows: the read goes on after the
    // last id it had read, with nothing skipped or repeated.
    let stored = pages[0].next.as_ref().unwrap().as_str();
    let (head, _) = stored.rsplit_once("/query/").unwrap();
    let expired = ReadPosition::new(format!("{head}/query/01g000000000999AAA-2000"));
    let recovered = read_all(&client, Some(expired)).await;
    exactly_once(&ids(&recovered), &ids(&pages[1..]).into_iter().collect());
}

#[tokio::test]
async fn salesforce_bulk_reader_agrees_with_soql_in_the_fewest_calls_and_resumes_by_locator() {
    let sf = Crm::salesforce().await;
    let live = seed_salesforce(&sf).await;
    let soql = sf.salesforce_client(ReadSettings {
        bulk_threshold: None,
        ..ReadSettings::default()
    });
    let bulk = sf.salesforce_client(ReadSettings {
        bulk_threshold: Some(1_000),
        bulk_page_records: 1_000,
        bulk_polling: FAST_POLLING,
    });
    let by_soql: BTreeMap<String, RemoteRecord> = read_all(&soql, None)
        .await
        .into_iter()
        .flat_map(|p| p.records)
        .map(|r| (r.remote_id.clone(), r))
        .collect();
    sf.reset_counters().await;

    let pages = read_all(&bulk, None).await;
    exactly_once(&ids(&pages), &live);
    assert_eq!(pages.len(), 5, "4,300 records, 1,000 a set");
    let calls = sf.calls().await;
    let expected = [
        (SF_QUERY, 1),
        (SF_JOB_CREATE, 1),
        (SF_JOB_STATE, 2),
        (SF_JOB_RESULTS, 5),
    ];
    assert_eq!(
        calls,
        expected.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        "one probe page, one job, two state reads (the sandbox answers InProgress once), one call per set"
    );
    let by_bulk: BTreeMap<String, RemoteRecord> = pages
        .iter()
        .flat_map(|p| p.records.iter().cloned())
        .map(|r| (r.remote_id.clone(), r))
        .collect();
    assert_eq!(
        by_bulk, by_soql,
        "the Bulk API and SOQL paths read the same records alike"
    );

    sf.reset_counters().await;
    let resumed = read_all(&bulk, pages[1].next.clone()).await;
    same_order(&ids(&resumed), &ids(&pages[2..]));
    assert_eq!(
        sf.calls().await,
        BTreeMap::from([(SF_JOB_RESULTS.to_owned(), 3)]),
        "resuming reads results only"
    );
}

#[tokio::test]
async fn a_failed_bulk_query_job_fails_the_read_without_retrying_it() {
    let sf = Crm::salesforce().await;
    seed_salesforce(&sf).await;
    sf.control(
        Method::PUT,
        "bulk-query",
        Some(json!({"polls_in_progress": 0, "fail": true})),
    )
    .await;
    let client = sf.salesforce_client(ReadSettings {
        bulk_threshold: Some(10),
        bulk_polling: FAST_POLLING,
        ..ReadSettings::default()
    });
    match client.read_page(None).await {
        Err(ProviderError::Rejected {
            code, retryable, ..
        }) => {
            assert_eq!((code.as_str(), retryable), ("BULK_QUERY_FAILED", false));
        }
        other => panic!("expected a rejected read, got {other:?}"),
    }
    let refused = client
        .read_page(Some(&ReadPosition::new("hubspot-after:1001")))
        .await;
    assert_eq!(refused.unwrap_err().code(), "INVALID_READ_POSITION");
}
