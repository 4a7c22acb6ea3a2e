//! Batch writes that fail per input, not per batch.
//!
//! HubSpot fails a whole batch for one bad input on several endpoints (an upsert by e-mail
//! never answers 207; the 409 names only the first duplicate). The writer sends each batch
//! once; when HubSpot refuses it over the data without saying which input is at fault, it
//! halves the batch and sends both halves, down to single inputs, so the good inputs are
//! written and each bad one gets its own failure. One bad input among 100 costs about 15
//! calls instead of 100. Where HubSpot does answer per input (a 207 naming each input's
//! `objectWriteTraceId`, or the record ids it could not find), no split is needed.
//!
//! It does not decide what a failure means for a contact (re-upsert, link, fail); `mod.rs`
//! does, with the [`Report`] returned here.

use super::errors::{self, Failure};
use super::transport::Transport;
use super::wire::{BatchRequest, BatchResponse, IdInput, Record, WriteInput, context_strings};
use crate::providers::ProviderError;

/// "Batch operations are limited to 100 records at a time."
/// <https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/guide>
pub const BATCH_MAX: usize = 100;

/// The contacts batch endpoints the client writes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Update,
    Upsert,
    Archive,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Self::Update => "/crm/v3/objects/contacts/batch/update",
            Self::Upsert => "/crm/v3/objects/contacts/batch/upsert",
            Self::Archive => "/crm/v3/objects/contacts/batch/archive",
        }
    }
}

/// How a record in HubSpot's answer names the input it came from, when no trace id is
/// echoed: HubSpot returns records, not positions.
#[derive(Clone, Copy, Debug)]
pub enum Key<'a> {
    /// By record id (update, archive).
    RecordId,
    /// By the value of this unique property (upsert).
    Property(&'a str),
}

/// One input bound for a batch endpoint, tied to the item it serves.
#[derive(Clone, Debug)]
pub struct Pending<T> {
    /// Position of the item in the `sync` call.
    pub item: usize,
    /// What names the input in HubSpot's answer (see [`Key`]).
    pub key: String,
    pub input: T,
}

/// The trace id of an input, if it carries one.
pub trait Traced {
    fn trace(&self) -> Option<&str>;
}

impl Traced for WriteInput {
    fn trace(&self) -> Option<&str> {
        Some(&self.object_write_trace_id)
    }
}

impl Traced for IdInput {
    fn trace(&self) -> Option<&str> {
        None
    }
}

/// What happened to the inputs of one write.
#[derive(Debug, Default)]
pub struct Report {
    /// Per item: the record written, or why not.
    pub done: Vec<(usize, Result<String, Failure>)>,
    /// The failure that stopped the write; inputs missing from `done` were not written.
    pub stopped: Option<ProviderError>,
    /// Whether HubSpot accepted anything, i.e. whether a record may have changed.
    pub wrote: bool,
}

/// Writes every input through `endpoint`, splitting batches HubSpot refuses as a whole.
pub async fn write<T: serde::Serialize + Traced + Clone>(
    transport: &Transport,
    endpoint: Endpoint,
    key: Key<'_>,
    inputs: Vec<Pending<T>>,
) -> Report {
    let mut report = Report::default();
    // A stack of batches still to send, the first batch on top.
    let mut queue: Vec<Vec<Pending<T>>> = inputs.chunks(BATCH_MAX).map(<[_]>::to_vec).collect();
    queue.reverse();
    while let Some(mut batch) = queue.pop() {
        let Err(failure) = send(transport, endpoint, key, &batch, &mut report).await else {
            continue;
        };
        match failure {
            Failure::Call { error, .. } => {
                report.stopped = Some(error);
                break;
            }
            Failure::Refused {
                every_input: true, ..
            } => report
                .done
                .extend(batch.iter().map(|p| (p.item, Err(failure.clone())))),
            failure if batch.len() == 1 => report.done.push((batch[0].item, Err(failure))),
            _ => {
                let back = batch.split_off(batch.len() / 2);
                queue.push(back);
                queue.push(batch);
            }
        }
    }
    report
}

/// Sends one batch and records each input's verdict; `Err` when the batch failed as a whole.
async fn send<T: serde::Serialize + Traced>(
    transport: &Transport,
    endpoint: Endpoint,
    key: Key<'_>,
    batch: &[Pending<T>],
    report: &mut Report,
) -> Result<(), Failure> {
    let body = BatchRequest {
        inputs: batch.iter().map(|p| &p.input).collect(),
    };
    let bytes = transport.post(endpoint.path(), &body).await?;
    // HubSpot took the batch: even if its answer cannot be read, records may have changed.
    let done = attribute(endpoint, key, batch, &bytes).inspect_err(|_| report.wrote = true)?;
    report.wrote |= done.iter().any(|(_, r)| r.is_ok());
    report.done.extend(done);
    Ok(())
}

type Verdicts = Vec<(usize, Result<String, Failure>)>;

/// Reads a 2xx answer: each input's record, or its own error in a 207.
fn attribute<T: Traced>(
    endpoint: Endpoint,
    key: Key<'_>,
    batch: &[Pending<T>],
    bytes: &[u8],
) -> Result<Verdicts, Failure> {
    // Archive answers 204 without a body: every id is gone, whether it was there or not.
    if endpoint == Endpoint::Archive {
        return Ok(batch.iter().map(|p| (p.item, Ok(p.key.clone()))).collect());
    }
    let answer: BatchResponse = serde_json::from_slice(bytes)
        .map_err(|e| errors::undecodable("HubSpot's batch answer", &e))?;
    Ok(batch
        .iter()
        .map(|p| (p.item, verdict(p, key, &answer)))
        .collect())
}

fn verdict<T: Traced>(
    p: &Pending<T>,
    key: Key<'_>,
    answer: &BatchResponse,
) -> Result<String, Failure> {
    let trace = p.input.trace();
    if let Some(record) = answer.results.iter().find(|r| names(r, trace, key, &p.key)) {
        return Ok(record.id.clone());
    }
    let blamed = answer.errors.iter().find(|e| {
        let traced =
            trace.is_some_and(|t| context_strings(&e.context, "objectWriteTraceId").contains(&t));
        traced
            || context_strings(&e.context, "ids")
                .iter()
                .any(|id| id.eq_ignore_ascii_case(&p.key))
    });
    match blamed {
        Some(err) => Err(errors::classify_item(err)),
        None => Err(Failure::Refused {
            error: ProviderError::Decode("HubSpot's answer does not mention this contact".into()),
            every_input: false,
        }),
    }
}

/// Whether `record` is the one written for the input with this trace id and key.
fn names(record: &Record, trace: Option<&str>, key: Key<'_>, value: &str) -> bool {
    if trace.is_some() && record.object_write_trace_id.as_deref() == trace {
        return true;
    }
    match key {
        Key::RecordId => record.id == value,
        // Unique values compare case-insensitively, as HubSpot matches them.
        Key::Property(name) => record
            .properties
            .get(name)
            .and_then(Option::as_deref)
            .is_some_and(|v| v.eq_ignore_ascii_case(value)),
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
