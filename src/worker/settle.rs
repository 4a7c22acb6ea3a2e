//! Acknowledging and rejecting deliveries, bounded in time, and counting each settlement
//! (`syncroot_messages_total`): the one place every consumer settles a message.
//!
//! lapin can wait forever on a frame it cannot send once the connection is gone (it reports
//! some broken connections only through the consumer stream, which a worker busy settling a
//! batch is not reading). A settle that does not finish within [`SETTLE_TIMEOUT`] is treated as
//! a lost connection: the caller ends its session, the broker requeues whatever was not
//! acknowledged, and redelivery is harmless because every worker is idempotent.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicRejectOptions};
use lapin::types::DeliveryTag;

use crate::metrics::{self, Settled};

/// Longest wait for one acknowledgement or rejection to be handed to the broker.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error("the broker connection did not take an acknowledgement within {0:?}")]
    Timeout(Duration),
}

/// The deliveries of one channel not yet settled, so that acknowledgements can be folded.
///
/// One `basic.ack` with `multiple` settles every delivery up to its tag on the channel; a
/// quorum queue then records one settlement instead of one per message, which under load is
/// most of what a consumer costs the broker. It is only sent when every delivery it would cover
/// is one the caller is acknowledging now: the ledger knows every delivery the channel handed
/// over and has not settled, and settlements go out one after another in the order they were
/// decided, so a fold never passes a delivery that is still held (or rejected).
#[derive(Default)]
pub struct Ledger {
    /// Tags handed over and not yet settled. Recorded without waiting (deliveries are taken
    /// from the stream in a poll that must not be abandoned half-way).
    open: Mutex<BTreeSet<DeliveryTag>>,
    /// Held while a settlement is decided and handed to the channel, so frames leave in the
    /// order their folds were computed.
    sending: tokio::sync::Mutex<()>,
}

impl Ledger {
    fn open(&self) -> std::sync::MutexGuard<'_, BTreeSet<DeliveryTag>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Settles one delivery; knows the role and queue its settlement is counted under, and the
/// ledger of its channel.
pub struct Acker {
    inner: lapin::Acker,
    tag: DeliveryTag,
    ledger: Arc<Ledger>,
    role: &'static str,
    queue: Arc<str>,
}

impl Acker {
    /// A delivery just handed over on the channel `ledger` keeps.
    pub fn new(
        inner: lapin::Acker,
        tag: DeliveryTag,
        ledger: Arc<Ledger>,
        role: &'static str,
        queue: Arc<str>,
    ) -> Self {
        ledger.open().insert(tag);
        Self {
            inner,
            tag,
            ledger,
            role,
            queue,
        }
    }
}

/// A message whose items (a pack's changes or tasks; a plain message has one) are settled one
/// by one: it is acknowledged with its last item, and counted once, as the most serious of
/// its items' outcomes.
pub struct Parts {
    acker: Acker,
    left: AtomicUsize,
    outcome: Mutex<Settled>,
}

impl Parts {
    pub fn new(acker: Acker, items: usize) -> Arc<Self> {
        Arc::new(Self {
            acker,
            left: AtomicUsize::new(items),
            outcome: Mutex::new(Settled::Acked),
        })
    }

    /// The message's own acker (to reject it whole).
    pub fn acker(&self) -> &Acker {
        &self.acker
    }

    /// Counts one item settled as `outcome`. For the last item, the message's acknowledgement
    /// is due: its acker and what it counts as (for [`ack_all`]).
    pub fn settled(&self, outcome: Settled) -> Option<(&Acker, Settled)> {
        let worst = {
            let mut o = self
                .outcome
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *o = (*o).max(outcome);
            *o
        };
        (self.left.fetch_sub(1, Ordering::AcqRel) == 1).then_some((&self.acker, worst))
    }
}

/// Acknowledges one delivery that was handled.
pub async fn ack(acker: &Acker) -> Result<(), SettleError> {
    ack_all([(acker, Settled::Acked)]).await
}

/// Acknowledges deliveries, each counted as its outcome (`Acked`; `Retried` or `DeadLettered`
/// when the caller handed a copy on), in as few frames as the deliveries still held allow:
/// those below every held one of their channel in one `multiple` ack, the others one by one.
/// A delivery already settled is skipped.
pub async fn ack_all<'a>(
    settled: impl IntoIterator<Item = (&'a Acker, Settled)>,
) -> Result<(), SettleError> {
    // Usually one channel; a batch that outlived a reconnect may mix two.
    type Settling<'a> = Vec<(&'a Acker, Settled)>;
    let mut by_ledger: Vec<(&Arc<Ledger>, Settling<'a>)> = Vec::new();
    for (acker, outcome) in settled {
        match by_ledger
            .iter_mut()
            .find(|(l, _)| Arc::ptr_eq(l, &acker.ledger))
        {
            Some((_, these)) => these.push((acker, outcome)),
            None => by_ledger.push((&acker.ledger, vec![(acker, outcome)])),
        }
    }
    for (ledger, these) in by_ledger {
        let _order = ledger.sending.lock().await;
        let (fold, alone) = {
            let mut open = ledger.open();
            let these: Vec<_> = these
                .into_iter()
                .filter(|(a, _)| open.remove(&a.tag))
                .collect();
            let held = open.first().copied();
            split_fold(these, |(a, _)| a.tag, held)
        };
        if let Some((last, _)) = fold.last() {
            let multiple = BasicAckOptions { multiple: true };
            bounded(last.inner.ack(multiple)).await?;
        }
        for (acker, _) in &alone {
            bounded(acker.inner.ack(BasicAckOptions::default())).await?;
        }
        for (acker, outcome) in fold.iter().chain(&alone) {
            metrics::message_settled(acker.role, &acker.queue, *outcome);
        }
    }
    Ok(())
}

/// Splits settlements into those one `multiple` ack can carry (every tag below `held`, the
/// lowest tag still held; sorted, the last one the ack's) and the rest.
fn split_fold<T>(
    mut these: Vec<T>,
    tag: impl Fn(&T) -> DeliveryTag,
    held: Option<DeliveryTag>,
) -> (Vec<T>, Vec<T>) {
    these.sort_by_key(&tag);
    let below = these.partition_point(|t| held.is_none_or(|h| tag(t) < h));
    let alone = these.split_off(below);
    (these, alone)
}

/// Rejects one delivery without requeueing: RabbitMQ dead-letters it.
pub async fn dead_letter(acker: &Acker) -> Result<(), SettleError> {
    let _order = acker.ledger.sending.lock().await;
    if !acker.ledger.open().remove(&acker.tag) {
        return Ok(());
    }
    bounded(acker.inner.reject(BasicRejectOptions { requeue: false })).await?;
    metrics::message_settled(acker.role, &acker.queue, Settled::DeadLettered);
    Ok(())
}

async fn bounded<T>(f: impl Future<Output = Result<T, lapin::Error>>) -> Result<(), SettleError> {
    match tokio::time::timeout(SETTLE_TIMEOUT, f).await {
        Ok(r) => r.map(|_| ()).map_err(SettleError::from),
        Err(_) => Err(SettleError::Timeout(SETTLE_TIMEOUT)),
    }
}

#[cfg(test)]
mod tests {
    use super::split_fold;

    fn split(these: &[u64], held: Option<u64>) -> (Vec<u64>, Vec<u64>) {
        split_fold(these.to_vec(), |t| *t, held)
    }

    #[test]
    fn a_fold_stops_below_the_lowest_delivery_still_held() {
        assert_eq!(split(&[3, 1, 2], None), (vec![1, 2, 3], vec![]));
        assert_eq!(split(&[5, 1, 2, 7], Some(4)), (vec![1, 2], vec![5, 7]));
        assert_eq!(split(&[5, 6], Some(4)), (vec![], vec![5, 6]));
        assert_eq!(split(&[], Some(4)), (vec![], vec![]));
    }
}
