//! The write log both sandboxes keep: every record version written, with the call that wrote
//! it, so a test can count records by any identity (e-mail, SyncRoot id, record id) from what
//! the CRM really stored, not from a unique key the sandbox happens to enforce.
//!
//! Read at `GET /__sandbox/writes[?since=<seq>]`; emptied by `POST /__sandbox/reset`; bounded
//! to the newest [`CAPACITY`] entries. The call a write belongs to comes from
//! [`within_call`], which the API gate and the control routes wrap every request in.
//!
//! What it is not: the vendors' own change feeds (webhooks, change events), which have their
//! own shapes and rules.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Most entries kept; older ones are dropped first.
pub const CAPACITY: usize = 10_000;

/// Numbers calls across both sandboxes of the process, so a call's number is never reused.
static NEXT_CALL: AtomicU64 = AtomicU64::new(1);

/// The request a write was made by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Call {
    /// Increasing per request; every record version written by one request shares it.
    pub number: u64,
    pub method: String,
    pub path: String,
}

tokio::task_local! {
    static CALL: Call;
}

/// Runs a request's handling as call `method path`, so the writes it makes name it.
pub async fn within_call<F: Future>(method: &str, path: &str, handling: F) -> F::Output {
    CALL.scope(next_call(method, path), handling).await
}

/// [`within_call`] for handling that does not await.
pub fn within_call_sync<R>(method: &str, path: &str, handling: impl FnOnce() -> R) -> R {
    CALL.sync_scope(next_call(method, path), handling)
}

fn next_call(method: &str, path: &str) -> Call {
    Call {
        number: NEXT_CALL.fetch_add(1, Ordering::Relaxed),
        method: method.to_owned(),
        path: path.to_owned(),
    }
}

/// Who wrote: SyncRoot (or any API client) or a person in the CRM's UI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Integration,
    Ui,
}

/// What the write did to the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Created,
    Updated,
    Deleted,
}

/// One record version written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    /// Position in this sandbox's log, from 1; `?since=` takes the last one seen.
    pub seq: u64,
    /// `None` only for writes made outside any request (fixtures at start).
    pub call: Option<Call>,
    pub source: Source,
    pub at: DateTime<Utc>,
    pub record_id: String,
    pub kind: Kind,
    /// The record's values after the write (before it, for a delete).
    pub values: Map<String, Value>,
}

/// What a sandbox reports of one record version; the log adds the rest.
pub struct Written {
    pub source: Source,
    pub record_id: String,
    pub kind: Kind,
    pub values: Map<String, Value>,
}

/// The newest record versions written, oldest first.
#[derive(Debug, Default)]
pub struct WriteLog {
    entries: VecDeque<Entry>,
    last_seq: u64,
}

impl WriteLog {
    /// Appends a version written now, by the current call if there is one.
    pub fn record(&mut self, written: Written) {
        if self.entries.len() == CAPACITY {
            self.entries.pop_front();
        }
        self.last_seq += 1;
        self.entries.push_back(Entry {
            seq: self.last_seq,
            call: CALL.try_with(Call::clone).ok(),
            source: written.source,
            at: Utc::now(),
            record_id: written.record_id,
            kind: written.kind,
            values: written.values,
        });
    }

    /// Entries after `since` (all with 0).
    pub fn since(&self, since: u64) -> Vec<Entry> {
        self.entries
            .iter()
            .filter(|e| e.seq > since)
            .cloned()
            .collect()
    }

    /// Forgets every entry; sequence numbers keep counting so `since` stays meaningful.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// The query of `GET /__sandbox/writes`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinceQuery {
    #[serde(default)]
    pub since: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(id: &str, kind: Kind) -> Written {
        Written {
            source: Source::Integration,
            record_id: id.into(),
            kind,
            values: Map::new(),
        }
    }

    #[tokio::test]
    async fn entries_name_their_call_and_since_skips_what_was_seen() {
        let mut log = WriteLog::default();
        log.record(written("a", Kind::Created));
        within_call("PATCH", "/x", async {
            log.record(written("a", Kind::Updated));
            log.record(written("b", Kind::Created));
        })
        .await;
        let all = log.since(0);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].call, None);
        let (one, two) = (all[1].call.clone(), all[2].call.clone());
        assert_eq!(one, two, "one request, one call");
        assert_eq!(
            one.map(|c| (c.method, c.path)),
            Some(("PATCH".into(), "/x".into()))
        );
        let later: Vec<u64> = log.since(1).iter().map(|e| e.seq).collect();
        assert_eq!(later, [2, 3]);
        log.clear();
        log.record(written("c", Kind::Deleted));
        assert_eq!(log.since(0)[0].seq, 4, "numbers survive a clear");
    }
}
