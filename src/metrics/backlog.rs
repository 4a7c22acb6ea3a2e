//! How old a consumed queue's oldest ready message is, told honestly.
//!
//! RabbitMQ cannot show a queue's head without handing it to a consumer (and a `basic.get`
//! followed by a requeue counts toward a quorum queue's delivery limit), so the figure is an
//! **upper bound** built from what this process sees:
//!
//! - the AMQP `timestamp` of the newest message a consumer in this process received from the
//!   queue (the publisher sets it to when the message becomes ready there: publish time, or
//!   for a retry copy the end of its tier's wait). Quorum queues are FIFO, so every message
//!   still ready entered the queue after it, and none is older than `now − timestamp`;
//! - the last time this process's collector found the queue empty: every ready message entered
//!   after that.
//!
//! The age is `now − the later of the two` while messages are ready, 0 when none is, and not
//! exported while the process has seen neither (a standby consumer that never found the queue
//! empty). Several processes watching one queue each report a bound; the smallest is the
//! tightest (`min by (queue)`). Timestamps have whole seconds, and a message returned to the
//! queue after its consumer died may be older than the bound until it is delivered again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// What one process has seen of one queue.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Backlog {
    /// The newest timestamp of a message received from the queue.
    newest_received: Option<SystemTime>,
    /// When the queue was last found with no ready message.
    last_empty: Option<SystemTime>,
}

impl Backlog {
    /// A consumer received a message stamped `stamped`.
    pub fn received(&mut self, stamped: SystemTime) {
        self.newest_received = self.newest_received.max(Some(stamped));
    }

    /// The queue has `ready` messages at `now`: the bound of the oldest one's age, if known.
    pub fn observed(&mut self, ready: u32, now: SystemTime) -> Option<Duration> {
        if ready == 0 {
            self.last_empty = Some(now);
            return Some(Duration::ZERO);
        }
        let since = self.newest_received.max(self.last_empty)?;
        Some(now.duration_since(since).unwrap_or(Duration::ZERO))
    }
}

static QUEUES: Mutex<Option<HashMap<String, Backlog>>> = Mutex::new(None);

fn with<T>(queue: &str, f: impl FnOnce(&mut Backlog) -> T) -> T {
    // A poisoned lock only means a panic mid-update of two timestamps.
    let mut all = QUEUES.lock().unwrap_or_else(|p| p.into_inner());
    f(all
        .get_or_insert_with(HashMap::new)
        .entry(queue.to_owned())
        .or_default())
}

/// A consumer of this process received a message of `queue` with this AMQP `timestamp`
/// (seconds since the epoch); messages without one say nothing.
pub fn received(queue: &str, timestamp: Option<u64>) {
    if let Some(secs) = timestamp {
        let stamped = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        with(queue, |b| b.received(stamped));
    }
}

/// The collector found `ready` messages in `queue`: exports its depth and age bound.
pub fn observed(queue: &str, ready: u32) {
    let age = with(queue, |b| b.observed(ready, SystemTime::now()));
    super::queue_observed(queue, ready, age);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn unknown_until_the_queue_was_seen_empty_or_a_message_arrived() {
        let mut b = Backlog::default();
        assert_eq!(b.observed(3, at(100)), None);
        assert_eq!(b.observed(0, at(110)), Some(Duration::ZERO));
        assert_eq!(b.observed(2, at(125)), Some(Duration::from_secs(15)));
    }

    #[test]
    fn the_newest_received_message_bounds_the_age_while_consumers_work() {
        let mut b = Backlog::default();
        b.observed(0, at(10));
        b.received(at(95));
        b.received(at(90)); // a redelivered older one does not loosen the bound
        assert_eq!(b.observed(5, at(100)), Some(Duration::from_secs(5)));
        // Consumers stop: the bound grows with the wall clock.
        assert_eq!(b.observed(5, at(160)), Some(Duration::from_secs(65)));
        // A message stamped in the future (a retry copy not yet due) counts as age 0.
        b.received(at(200));
        assert_eq!(b.observed(1, at(170)), Some(Duration::ZERO));
    }
}
