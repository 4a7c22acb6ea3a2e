//! CRM clients: the contract every CRM implements ([`CrmClient`]: writing contacts, reading
//! records back as [`RemoteRecord`]s; reading every record page by page is
//! [`reading::ContactReader`]), its error vocabulary ([`ProviderError`], classified once
//! per CRM in that CRM's `errors.rs`), and what they share (field mapping, request pacing, the
//! HTTP client).
//!
//! Each CRM lives in its own folder; its wire types never leave it.

pub mod hubspot;
pub mod mapping;
pub mod pacing;
pub mod reading;
pub mod salesforce;

use std::future::Future;
use std::time::Duration;

use crate::domain::{ContactFields, ContactId, Crm, Email, FieldValues};

/// One contact to bring up to date in a CRM.
#[derive(Clone, Debug)]
pub struct SyncItem {
    pub contact_id: ContactId,
    /// The contact version being delivered.
    pub version: i64,
    /// The contact's state; `None` when it is deleted and the remote record must go.
    pub contact: Option<ContactFields>,
    /// The linked remote record, once known.
    pub remote_id: Option<String>,
    /// The addresses records created for the contact may carry though their answers were lost
    /// (so they were never linked), oldest first: every address written while unlinked, with a
    /// deleted contact's last address or a live one's current address last. A CRM that matches
    /// records by address looks at all of them first, keeps one record (the linked one, else
    /// the one at the newest address) and archives the rest. Empty when there is nothing to
    /// look for.
    pub left_emails: Vec<String>,
    /// For a live contact not yet linked: what a recent complete read of the CRM found at its
    /// address (`store::address_index`), so a CRM that would ask for records by address
    /// (Salesforce's matching query) need not. `None`: nothing known; ask as ever.
    pub known: Option<Known>,
}

/// What a recent complete read of a CRM found at a contact's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Known {
    /// No record carried it.
    Absent,
    /// This record alone carried it, and no other contact is linked to it.
    Record(String),
}

/// The kinds of write a CRM takes each in calls of its own (HubSpot's batch archive, update
/// and upsert; Salesforce's delete, update by id and upsert by external id), in the order
/// delivery sends them: deletions first free their addresses before a create claims one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WriteKind {
    Delete,
    /// A write onto a known record, by its id.
    Update,
    /// A contact not yet linked: created, or matched to a record the CRM finds for it.
    Create,
}

impl WriteKind {
    pub const ALL: [Self; 3] = [Self::Delete, Self::Update, Self::Create];

    /// The kind of write an item needs when nothing but its link is known.
    pub fn of(item: &SyncItem) -> Self {
        match (&item.contact, &item.remote_id) {
            (None, _) => Self::Delete,
            (Some(_), Some(_)) => Self::Update,
            (Some(_), None) => Self::Create,
        }
    }
}

/// What happened to one item of a batch.
#[derive(Clone, Debug)]
pub enum ItemOutcome {
    /// The CRM holds this version. `remote_id` is the record (kept after a delete, for audit).
    Synced { remote_id: Option<String> },
    /// This item failed; [`ProviderError::is_retryable`] says whether trying again can help.
    Failed(ProviderError),
    /// The linked record no longer exists in the CRM (deleted or merged away there); nothing
    /// was written. Whether to create a new one is the caller's decision, not the client's.
    Gone { remote_id: String },
}

/// A CRM record as it is now, in SyncRoot's vocabulary.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteRecord {
    /// The CRM's record id (HubSpot: digits; Salesforce: 18-character id).
    pub remote_id: String,
    /// The unified fields this CRM's field map holds, as the CRM reports them
    /// ([`FieldValues::set_reported`]: blank = empty, e-mail lower-cased); unmapped fields are
    /// absent.
    pub values: FieldValues,
    /// When the CRM last modified the record: HubSpot `lastmodifieddate` (falling back to
    /// `updatedAt`), Salesforce `SystemModstamp`.
    pub modified_at: chrono::DateTime<chrono::Utc>,
    /// The SyncRoot contact id the record carries, where the CRM stores one (Salesforce's
    /// external id field, `SyncRoot_Id__c` by default); `None` for HubSpot.
    pub external_id: Option<String>,
}

impl RemoteRecord {
    /// The record's e-mail address, normalised as [`FieldValues::set_reported`] does (trimmed,
    /// lower-cased); `None` when the record has none or the field map does not read it.
    pub fn email(&self) -> Option<&str> {
        self.values
            .get(crate::domain::fields::Field::Email)
            .and_then(Option::as_deref)
    }

    /// The record's address as SyncRoot stores addresses; `None` without a valid one.
    pub fn address(&self) -> Option<Email> {
        Email::parse(self.email()?).ok()
    }
}

/// Every way a CRM call can fail, in SyncRoot's vocabulary.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProviderError {
    /// Too many requests (HTTP 429, HubSpot `RATE_LIMIT`); wait `retry_after` if given.
    #[error("rate limited by the CRM")]
    RateLimited { retry_after: Option<Duration> },
    /// The CRM's daily API allowance is spent (HubSpot policy `DAILY`, Salesforce
    /// `REQUEST_LIMIT_EXCEEDED`); delivery pauses rather than failing contacts.
    #[error("the CRM's daily API allowance is spent")]
    QuotaExhausted { retry_after: Duration },
    /// Connection failure, timeout or 5xx.
    #[error("CRM unavailable: {0}")]
    Unavailable(String),
    /// Credentials refused even after a fresh login.
    #[error("CRM refused the credentials: {0}")]
    Unauthorized(String),
    /// The CRM refused this record. `retryable` for transient codes such as Salesforce
    /// `UNABLE_TO_LOCK_ROW`; validation errors are not.
    #[error("CRM rejected the record: {code}: {message}")]
    Rejected {
        code: String,
        message: String,
        retryable: bool,
    },
    /// The CRM answered something this client cannot read.
    #[error("unexpected CRM response: {0}")]
    Decode(String),
}

impl ProviderError {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::QuotaExhausted { .. } | Self::Unavailable(_) => true,
            Self::Rejected { retryable, .. } => *retryable,
            Self::Unauthorized(_) | Self::Decode(_) => false,
        }
    }

    /// How long the CRM asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            Self::QuotaExhausted { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// A short machine-readable code for status, logs and (later) dead-letter filters.
    pub fn code(&self) -> &str {
        match self {
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::QuotaExhausted { .. } => "QUOTA_EXHAUSTED",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::Unauthorized(_) => "UNAUTHORIZED",
            Self::Rejected { code, .. } => code,
            Self::Decode(_) => "DECODE",
        }
    }
}

/// A CRM SyncRoot delivers contacts to.
pub trait CrmClient: Send + Sync + 'static {
    fn crm(&self) -> Crm;

    /// Most items one call of [`CrmClient::sync`] takes: the CRM's batch cap (HubSpot 100,
    /// Salesforce 200), or 1 when batching is switched off.
    fn batch_cap(&self) -> usize;

    /// Brings every item up to date: upserts live contacts (linking a person who already exists
    /// in the CRM by e-mail instead of creating a second record), deletes tombstones (a record
    /// already gone counts as deleted). Items are distinct contacts, at most `batch_cap`.
    ///
    /// Returns one outcome per item, in order; `Err` when the whole call failed and nothing is
    /// known to have been written. Requests are paced by the CRM's rate-limit headers.
    fn sync(
        &self,
        items: &[SyncItem],
    ) -> impl Future<Output = Result<Vec<ItemOutcome>, ProviderError>> + Send;

    /// The kind of write [`CrmClient::sync`] makes of an item, so a batch's items can go out
    /// in calls that each carry one kind.
    fn write_kind(&self, item: &SyncItem) -> WriteKind {
        WriteKind::of(item)
    }

    /// Reads the current state of these records, batched (HubSpot
    /// `POST /crm/v3/objects/contacts/batch/read`, at most 100 ids a call, asking for the mapped
    /// properties plus `lastmodifieddate`; Salesforce one SOQL
    /// `SELECT Id, <mapped fields>, <external id field>, SystemModstamp FROM Contact WHERE Id IN (...)`,
    /// split to keep each URL short). Records that do not exist, are archived or deleted are
    /// absent from the result (not an error). Requests go through the same pacing and transport
    /// as writes; `Err` when a call failed as a whole. Ids that are not syntactically valid for
    /// the CRM (HubSpot: digits only; Salesforce: 15 or 18 alphanumerics, an 18-character id's
    /// case-safety suffix agreeing) are skipped, never interpolated into a query. Salesforce
    /// answers with the 18-character id whichever form was asked for.
    fn fetch(
        &self,
        remote_ids: &[String],
    ) -> impl Future<Output = Result<Vec<RemoteRecord>, ProviderError>> + Send;

    /// Records modified at or after `since`, in ascending modification order, at most `limit`
    /// (HubSpot: `POST /crm/v3/objects/contacts/search` filtering `lastmodifieddate` GTE `since`
    /// in epoch ms, sorted by `lastmodifieddate` ASCENDING, asking for the mapped properties plus
    /// `lastmodifieddate`, `limit` capped at HubSpot's 200 per page (one page is enough: the
    /// caller advances `since`); Salesforce: one SOQL
    /// `SELECT <read_fields> FROM Contact WHERE SystemModstamp >= <since as YYYY-MM-DDThh:mm:ssZ> ORDER BY SystemModstamp ASC LIMIT <limit>`).
    /// Archived/deleted records are not returned. Requests are paced like every other call; a
    /// whole-call failure is `Err`.
    ///
    /// `since` is rounded down to what the CRM keeps (HubSpot milliseconds, Salesforce
    /// seconds), so a record modified in the same millisecond or second as `since` is
    /// returned; a caller advancing `since` to the last record's `modified_at` sees that record
    /// again. HubSpot's search index lags writes by "a few moments", so a change may appear
    /// only in a later call: a poller should look back a little.
    fn changed_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RemoteRecord>, ProviderError>> + Send;

    /// The values this CRM holds of `contact` after a successful write (its field map's
    /// projection).
    fn project(&self, contact: &ContactFields) -> FieldValues;

    /// Why delivery is paused (e.g. the daily allowance is spent, until when), if it is.
    fn paused(&self) -> Option<String>;
}

/// The HTTP client every CRM client uses: bounded timeouts, no automatic retries (retries are
/// SyncRoot's decision, made once per outcome), a User-Agent naming SyncRoot, and **no
/// redirects**: every call carries a token or client secret, and a redirect (a misconfigured
/// proxy, a hijacked DNS name) must not carry it elsewhere. A 3xx is an error like any other.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(8)
        .user_agent(concat!("SyncRoot/", env!("CARGO_PKG_VERSION")))
        .build()
        // Building only fails when the TLS backend cannot initialise, which is a broken build.
        .unwrap_or_default()
}

/// Sends one CRM request in a client span (`crm.request`) named by its method and path, never
/// its query (a SOQL query holds e-mail addresses), and sends the span's trace context along
/// (W3C `traceparent`). Every CRM call goes through here.
pub async fn send(
    crm: Crm,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, reqwest::Error> {
    use tracing::Instrument as _;
    let (client, request) = request.build_split();
    let mut request = request?;
    let (method, path) = (request.method().clone(), request.url().path().to_owned());
    let span = tracing::info_span!(
        "crm.request",
        otel.name = %format_args!("{crm} {method} {path}"),
        otel.kind = "client",
        crm = %crm,
        http.request.method = %method,
        url.path = %path,
        http.response.status_code = tracing::field::Empty,
    );
    async move {
        crate::telemetry::context::inject_request(request.headers_mut());
        let sent = client.execute(request).await;
        if let Ok(resp) = &sent {
            let status = resp.status().as_u16();
            tracing::Span::current().record("http.response.status_code", status);
            tracing::debug!(status, "CRM answered");
        }
        sent
    }
    .instrument(span)
    .await
}

/// Largest CRM response body read, in bytes. HubSpot's biggest answers (a batch of 100
/// records, a search page of 200) and Salesforce's (200 records of a query) are a few hundred
/// KiB; anything far beyond is not a CRM answer worth holding in memory.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Why a response body could not be read.
#[derive(Debug)]
pub enum BodyError {
    Transport(reqwest::Error),
    /// Longer than [`MAX_RESPONSE_BYTES`].
    TooLarge,
}

impl BodyError {
    /// The error of a body that was too large, as the CRM client reports it.
    pub fn too_large(crm: &str) -> ProviderError {
        ProviderError::Decode(format!(
            "{crm} answered with a body over {MAX_RESPONSE_BYTES} bytes; not read"
        ))
    }
}

/// Reads a CRM response's body, at most [`MAX_RESPONSE_BYTES`] of it (checked against
/// `Content-Length` first, then while streaming).
pub async fn read_body(resp: reqwest::Response) -> Result<Vec<u8>, BodyError> {
    read_body_within(resp, MAX_RESPONSE_BYTES).await
}

/// Reads a response's body, at most `max` bytes of it (checked against `Content-Length`
/// first, then while streaming): every body SyncRoot reads from elsewhere goes through here.
pub async fn read_body_within(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
