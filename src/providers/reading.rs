//! Reading every live contact of a CRM, page by page, from a position a caller can store and
//! resume from: what a backfill needs to match a CRM's population with SyncRoot's contacts by
//! normalised e-mail.
//!
//! Each CRM implements [`ContactReader`] in its own folder (HubSpot: the list endpoint's
//! `after` cursor; Salesforce: SOQL `query`/`queryMore`, or a Bulk API 2.0 query job for large
//! orgs). Records come as [`RemoteRecord`]s, mapped as every other read maps them. What it is
//! not: the job that walks the pages, stores positions and matches records (the caller's).

use std::future::Future;

use super::{ProviderError, RemoteRecord};

/// Where a read stands: opaque text only the CRM client that wrote it can read, small enough
/// to store with a job's checkpoint. A position stays valid as long as the CRM keeps what it
/// names (HubSpot: always; Salesforce: a query locator about 15 minutes idle, a Bulk API job
/// about 7 days; a position whose locator expired restarts after the last record id read).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReadPosition(String);

impl ReadPosition {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ReadPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One page of a full read.
#[derive(Clone, Debug, Default)]
pub struct ReadPage {
    /// Live records, each once over the whole read, in the CRM's order.
    pub records: Vec<RemoteRecord>,
    /// Where the next page starts; `None` once every record has been read.
    pub next: Option<ReadPosition>,
}

/// A CRM whose every live contact can be read page by page.
pub trait ContactReader: Send + Sync {
    /// The page at `from` (`None`: the first). Calls are paced and authenticated like every
    /// other call to the CRM, and failures classified the same way; a failed page can be
    /// read again from the same position. A position this client did not write is refused
    /// with [`ProviderError::Rejected`] (`INVALID_READ_POSITION`, not retryable).
    fn read_page(
        &self,
        from: Option<&ReadPosition>,
    ) -> impl Future<Output = Result<ReadPage, ProviderError>> + Send;
}

/// The error for a position a client cannot read.
pub fn invalid_position(position: &ReadPosition, why: &str) -> ProviderError {
    ProviderError::Rejected {
        code: "INVALID_READ_POSITION".into(),
        message: format!("read position {position:?} {why}"),
        retryable: false,
    }
}
