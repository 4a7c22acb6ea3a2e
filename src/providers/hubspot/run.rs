//! The bookkeeping of one `sync` call: each item's outcome once known, whether a failure
//! stopped further calls, and whether HubSpot accepted anything before it did, which decides
//! between failing the whole call and failing the items left.

use super::batch::{self, Endpoint, Key, Pending, Report, Traced};
use super::transport::Transport;
use crate::providers::{ItemOutcome, ProviderError};

pub struct Run {
    /// Per item, in the order of the call; `None` until settled.
    outcomes: Vec<Option<ItemOutcome>>,
    /// The failure that ended all calls, once one did.
    stopped: Option<ProviderError>,
    /// Whether HubSpot accepted any write, which decides between `Err` and per-item failures.
    wrote: bool,
}

impl Run {
    pub fn new(items: usize) -> Self {
        Self {
            outcomes: vec![None; items],
            stopped: None,
            wrote: false,
        }
    }

    pub fn settle(&mut self, item: usize, outcome: ItemOutcome) {
        if let Some(slot) = self.outcomes.get_mut(item) {
            *slot = Some(outcome);
        }
    }

    /// Runs one write unless there is nothing to write or an earlier failure stopped the run.
    pub async fn write<T: serde::Serialize + Traced + Clone>(
        &mut self,
        transport: &Transport,
        endpoint: Endpoint,
        key: Key<'_>,
        inputs: Vec<Pending<T>>,
    ) -> Option<Report> {
        if inputs.is_empty() || self.stopped.is_some() {
            return None;
        }
        let mut report = batch::write(transport, endpoint, key, inputs).await;
        self.wrote |= report.wrote;
        self.stopped = report.stopped.take();
        Some(report)
    }

    /// `Err` when a failure stopped the call before HubSpot accepted anything; otherwise
    /// one outcome per item, items the failure kept from HubSpot failing with it.
    pub fn finish(self) -> Result<Vec<ItemOutcome>, ProviderError> {
        let fallback = match self.stopped {
            Some(err) if !self.wrote => return Err(err),
            Some(err) => err,
            // Every item is settled once no failure stopped the run; this only guards that.
            None => ProviderError::Decode("no outcome was recorded for this contact".into()),
        };
        Ok(self
            .outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| ItemOutcome::Failed(fallback.clone())))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synced(id: &str) -> ItemOutcome {
        ItemOutcome::Synced {
            remote_id: Some(id.into()),
        }
    }

    fn codes(outcomes: &[ItemOutcome]) -> Vec<String> {
        outcomes
            .iter()
            .map(|o| match o {
                ItemOutcome::Synced { remote_id } => format!("synced {remote_id:?}"),
                ItemOutcome::Failed(e) => format!("failed {}", e.code()),
                ItemOutcome::Gone { remote_id } => format!("gone {remote_id}"),
            })
            .collect()
    }

    #[test]
    fn a_stop_before_anything_was_written_fails_the_whole_call() {
        let mut run = Run::new(2);
        run.settle(0, ItemOutcome::Synced { remote_id: None });
        run.stopped = Some(ProviderError::Unavailable("down".into()));
        let err = run.finish().err();
        assert_eq!(err.as_ref().map(ProviderError::code), Some("UNAVAILABLE"));
    }

    #[test]
    fn a_stop_after_a_write_fails_only_the_items_left() {
        let mut run = Run::new(3);
        run.settle(0, synced("51"));
        run.wrote = true;
        run.stopped = Some(ProviderError::RateLimited { retry_after: None });
        let outcomes = run.finish().unwrap();
        assert_eq!(
            codes(&outcomes),
            [
                "synced Some(\"51\")",
                "failed RATE_LIMITED",
                "failed RATE_LIMITED"
            ]
        );
    }

    #[test]
    fn without_a_stop_every_settled_outcome_is_returned_in_order() {
        let mut run = Run::new(2);
        run.settle(1, synced("52"));
        run.settle(0, synced("51"));
        let outcomes = run.finish().unwrap();
        assert_eq!(
            codes(&outcomes),
            ["synced Some(\"51\")", "synced Some(\"52\")"]
        );
    }
}
