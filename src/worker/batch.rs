//! Assembling a delivery batch: tasks for distinct contacts, up to the CRM's cap, with several
//! tasks for one contact coalesced into one entry (one write of the newest version), and how
//! long a batch waits for more ([`Gathering`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::settle::Parts;

use crate::domain::ContactId;
use crate::domain::change::DeliveryTask;

/// One contact in a batch, with every queued task that asked for it.
pub struct Entry {
    pub contact_id: ContactId,
    /// The newest version any task asked for.
    pub version: i64,
    /// The task that has been tried most often (its attempt count and error history carry
    /// on), with `version` raised to the newest.
    pub task: DeliveryTask,
    /// The tasks' messages (a message of several tasks is acknowledged with its last one);
    /// each task settled once the contact's outcome is durable.
    pub ackers: Vec<Arc<Parts>>,
    /// The span the entry is processed and settled in: the first task's, continuing the trace
    /// of the change it carries.
    pub span: tracing::Span,
    /// When its first task arrived.
    pub since: Instant,
}

/// Distinct contacts in arrival order.
#[derive(Default)]
pub struct Batch {
    pub entries: Vec<Entry>,
    index: HashMap<ContactId, usize>,
    /// Entries with a task that is not a job's ([`DeliveryTask::bulk`]).
    urgent: usize,
}

impl Batch {
    /// Adds a task; a contact already in the batch keeps one entry with the newest version
    /// (and its first task's span).
    pub fn add(&mut self, task: DeliveryTask, from: Arc<Parts>, span: tracing::Span) {
        self.absorb(Entry {
            contact_id: task.contact_id,
            version: task.version,
            task,
            ackers: vec![from],
            span,
            since: Instant::now(),
        });
    }

    /// Adds an entry (a new task's, or one taken from another batch), merged into the
    /// contact's entry if it has one.
    pub fn absorb(&mut self, entry: Entry) {
        match self.index.get(&entry.contact_id) {
            Some(&i) => {
                let e = &mut self.entries[i];
                e.version = e.version.max(entry.version);
                // A job's only while every task for the contact is.
                let bulk = e.task.bulk && entry.task.bulk;
                if e.task.bulk && !bulk {
                    self.urgent += 1;
                }
                if entry.task.attempt > e.task.attempt {
                    e.task = entry.task;
                }
                e.task.version = e.version;
                e.task.bulk = bulk;
                e.ackers.extend(entry.ackers);
                e.since = e.since.min(entry.since);
            }
            None => {
                self.urgent += usize::from(!entry.task.bulk);
                self.index.insert(entry.contact_id, self.entries.len());
                self.entries.push(entry);
            }
        }
    }

    /// True when the contact has an entry.
    pub fn contains(&self, contact: ContactId) -> bool {
        self.index.contains_key(&contact)
    }

    /// Distinct contacts.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when the batch holds only a job's tasks ([`DeliveryTask::bulk`]): nobody waits
    /// for them, so it may gather longer ([`Gathering::bulk_deadline`]).
    pub fn bulk(&self) -> bool {
        !self.is_empty() && self.urgent == 0
    }

    /// Removes and returns the entries whose contacts `keep` rejects, keeping the others.
    pub fn take_where(&mut self, mut done: impl FnMut(&Entry) -> bool) -> Vec<Entry> {
        let (taken, kept): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|e| done(e));
        self.entries = kept;
        self.urgent = self.entries.iter().filter(|e| !e.task.bulk).count();
        self.index = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.contact_id, i))
            .collect();
        taken
    }
}
/// How long a batch waits for more tasks.
///
/// ```text
/// tasks lately (about the last second) would fill a call within linger_max (a stream)
///   ─▶ wait while they keep coming: a gap of up to 20 tasks' average spacing is tolerated,
///      or of 4 messages' where tasks come packed (many to a message, so in clumps)
/// otherwise ─▶ wait a linger past the latest task (a lone change waits one linger)
/// never more than linger_max past the batch's first task
/// ```
///
/// So a steady stream, even an uneven one (tasks in clumps), goes out in full calls, sparing
/// the CRM's quota; changes at light load wait one linger; and the end of a fast burst waits
/// only a few tasks' spacing.
pub struct Gathering {
    linger: Duration,
    linger_max: Duration,
    /// Tasks one call takes.
    cap: usize,
    /// Tasks per second lately, as of `last`: each task adds 1/`RATE_WINDOW`, and the sum
    /// decays exponentially over `RATE_WINDOW`.
    rate: f64,
    /// Messages per second lately, the same way (a pack of tasks is one message).
    messages: f64,
    last: Option<Instant>,
}

/// The gap a stream may leave, in average spacings of its tasks …
const GAPS: f64 = 20.0;

/// … or of its messages, when they come packed: at 2,000 tasks a second in packs of 30, 20
/// tasks' spacing is shorter than one pack's.
const MESSAGE_GAPS: f64 = 4.0;

/// How far back the arrival rate looks.
const RATE_WINDOW: Duration = Duration::from_secs(1);

impl Gathering {
    pub fn new(linger: Duration, linger_max: Duration, cap: usize) -> Self {
        Self {
            linger,
            linger_max: linger_max.max(linger),
            cap: cap.max(1),
            rate: 0.0,
            messages: 0.0,
            last: None,
        }
    }

    /// A message of `tasks` tasks arrived at `now`.
    pub fn arrived(&mut self, now: Instant, tasks: usize) {
        let window = RATE_WINDOW.as_secs_f64();
        self.rate = self.per_sec(now) + tasks as f64 / window;
        self.messages = self.decayed(self.messages, now) + 1.0 / window;
        self.last = Some(now);
    }

    /// Tasks per second lately, as of `now`.
    pub fn per_sec(&self, now: Instant) -> f64 {
        self.decayed(self.rate, now)
    }

    fn decayed(&self, rate: f64, now: Instant) -> f64 {
        let Some(last) = self.last else {
            return 0.0;
        };
        let idle = now.saturating_duration_since(last).as_secs_f64();
        rate * (-idle / RATE_WINDOW.as_secs_f64()).exp()
    }

    /// True when tasks lately came fast enough to fill a call within `linger_max`: a stream,
    /// whose next tasks will fill what a batch leaves part empty. Never with calls of one
    /// (batching off).
    pub fn streaming(&self, now: Instant) -> bool {
        self.cap > 1 && self.per_sec(now) * self.linger_max.as_secs_f64() >= self.cap as f64
    }

    /// Until when a batch whose first task came at `first` waits for more, as of `now` (right
    /// after a task arrived).
    pub fn deadline(&self, first: Instant, now: Instant) -> Instant {
        let idle = match self.streaming(now) {
            true => {
                let tasks = GAPS / self.per_sec(now);
                let messages = MESSAGE_GAPS / self.decayed(self.messages, now);
                self.linger
                    .max(Duration::from_secs_f64(tasks.max(messages)))
            }
            false => self.linger,
        };
        (now + idle).min(first + self.linger_max)
    }

    /// Until when a batch of a job's tasks alone ([`Batch::bulk`]) whose first task came at
    /// `first` waits for more, as of `now`: while they keep coming, a gap of up to
    /// `linger_max` tolerated, at most [`BULK_WAIT`]. A job's writes needing a call come a
    /// few a second among many that need none; waited for this long they fill calls.
    pub fn bulk_deadline(&self, first: Instant, now: Instant) -> Instant {
        (now + self.linger_max).min(first + BULK_WAIT.max(self.linger_max))
    }
}

/// Longest a batch of a job's tasks alone waits for more.
pub const BULK_WAIT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    fn gathering() -> Gathering {
        Gathering::new(Duration::from_millis(20), Duration::from_secs(2), 100)
    }

    /// `n` arrivals, one every `gap`, from `start`; the time of the last.
    fn stream(g: &mut Gathering, start: Instant, n: u32, gap: Duration) -> Instant {
        let mut at = start;
        for i in 0..n {
            at = start + gap * i;
            g.arrived(at, 1);
        }
        at
    }

    #[test]
    fn a_lone_change_and_light_load_wait_one_linger() {
        let mut g = gathering();
        let t = Instant::now();
        g.arrived(t, 1);
        assert_eq!(g.deadline(t, t), t + Duration::from_millis(20));
        // 20 a second would take 5 s to fill a batch of 100: not worth waiting for.
        let mut g = gathering();
        let last = stream(&mut g, t, 60, Duration::from_millis(50));
        assert_eq!(g.deadline(last, last), last + Duration::from_millis(20));
    }

    #[test]
    fn a_stream_is_tasks_fast_enough_to_fill_a_call_within_linger_max() {
        let t = Instant::now();
        // 20 a second: 5 s to fill a call of 100, more than the 2 s linger_max.
        let mut g = gathering();
        let last = stream(&mut g, t, 60, Duration::from_millis(50));
        assert!(!g.streaming(last));
        // 1,000 a second: a call's worth in 0.1 s; no longer once they stop for seconds.
        let mut g = gathering();
        let last = stream(&mut g, t, 500, Duration::from_millis(1));
        assert!(g.streaming(last));
        assert!(!g.streaming(last + Duration::from_secs(5)));
        let mut g = Gathering::new(Duration::from_millis(20), Duration::from_secs(2), 1);
        let last = stream(&mut g, t, 500, Duration::from_millis(1));
        assert!(!g.streaming(last), "calls of one never wait");
    }

    #[test]
    fn calls_of_one_never_wait_for_a_stream() {
        let mut g = Gathering::new(Duration::from_millis(20), Duration::from_secs(2), 1);
        let t = Instant::now();
        let last = stream(&mut g, t, 10, Duration::from_millis(500));
        assert_eq!(g.deadline(last, last), last + Duration::from_millis(20));
    }

    #[test]
    fn a_stream_that_would_fill_a_call_in_time_waits_out_its_gaps_until_linger_max() {
        let mut g = gathering();
        let t = Instant::now();
        // 100 a second, in clumps with 72 ms gaps (longer than the linger).
        let mut at = t;
        for clump in 0..20u32 {
            let start = t + Duration::from_millis(80) * clump;
            at = stream(&mut g, start, 8, Duration::from_millis(1));
        }
        let rate = g.per_sec(at);
        assert!((80.0..125.0).contains(&rate), "{rate}");
        // A gap of 20 spacings (about 200 ms) is waited out, up to linger_max.
        let first = at - Duration::from_millis(500);
        let idle = Duration::from_secs_f64(20.0 / rate);
        assert_eq!(g.deadline(first, at), at + idle);
        assert!(idle > Duration::from_millis(72), "{idle:?}");
        let first = at - Duration::from_millis(1900);
        assert_eq!(g.deadline(first, at), first + Duration::from_secs(2));
        // Once the stream has stopped a while, a change waits one linger again.
        let later = at + Duration::from_secs(5);
        g.arrived(later, 1);
        assert_eq!(g.deadline(later, later), later + Duration::from_millis(20));
    }

    #[test]
    fn a_stream_of_packs_is_a_stream_by_its_tasks_and_waits_out_a_few_packs_spacing() {
        // 2,000 tasks a second for Salesforce (calls of 200), in packs of 30 every 15 ms.
        let mut g = Gathering::new(Duration::from_millis(20), Duration::from_secs(2), 200);
        let t = Instant::now();
        let mut at = t;
        for i in 0..60u32 {
            at = t + Duration::from_millis(15) * i;
            g.arrived(at, 30);
        }
        let rate = g.per_sec(at);
        assert!(rate > 1_000.0, "{rate}");
        assert!(g.streaming(at), "counted by messages it would not be");
        // The gap waited out is a few packs' spacing (not 20 of them, nor 20 tasks').
        let wait = g.deadline(at - Duration::from_millis(100), at) - at;
        assert!(wait > Duration::from_millis(30), "{wait:?}");
        assert!(wait < Duration::from_millis(120), "{wait:?}");
    }

    #[test]
    fn the_end_of_a_fast_burst_waits_only_a_few_spacings() {
        let mut g = gathering();
        let t = Instant::now();
        let last = stream(&mut g, t, 1000, Duration::from_millis(1));
        // About 20 ms at 1,000 a second (the estimate is still rising after one second).
        let wait = g.deadline(last, last) - last;
        assert!(wait <= Duration::from_millis(40), "{wait:?}");
    }

    /// An entry of one task, with no acker (nothing here settles it).
    fn entry(contact: ContactId, attempt: u32, bulk: bool) -> Entry {
        let mut task = DeliveryTask::new(contact, 1, crate::domain::Crm::Hubspot).in_bulk(bulk);
        task.attempt = attempt;
        Entry {
            contact_id: contact,
            version: 1,
            task,
            ackers: Vec::new(),
            span: tracing::Span::none(),
            since: Instant::now(),
        }
    }

    #[test]
    fn a_batch_is_a_jobs_only_while_every_task_in_it_is() {
        let (a, b) = (ContactId::new(), ContactId::new());
        let mut batch = Batch::default();
        assert!(!batch.bulk(), "an empty batch is nobody's");
        batch.absorb(entry(a, 0, true));
        batch.absorb(entry(b, 0, true));
        assert!(batch.bulk());
        // Someone's change for a contact already there: the batch is no longer a job's, and
        // the entry's task says so even though the job's task has been tried more often.
        batch.absorb(entry(a, 3, true));
        batch.absorb(entry(a, 0, false));
        assert!(!batch.bulk());
        assert_eq!(batch.entries[0].task.attempt, 3);
        assert!(!batch.entries[0].task.bulk);
        // Taking that entry out leaves a job's batch again.
        let taken = batch.take_where(|e| e.contact_id == a);
        assert_eq!(taken.len(), 1);
        assert!(batch.bulk());
        batch.absorb(taken.into_iter().next().unwrap());
        assert!(!batch.bulk());
    }

    #[test]
    fn a_jobs_batch_waits_out_gaps_of_linger_max_up_to_the_bulk_wait() {
        let g = gathering();
        let t = Instant::now();
        let at = |s| t + Duration::from_secs(s);
        assert_eq!(g.bulk_deadline(t, at(1)), at(3));
        assert_eq!(g.bulk_deadline(t, at(29)), t + BULK_WAIT);
    }

    #[test]
    fn a_quick_run_of_changes_shares_a_batch_up_to_linger_max() {
        let g = Gathering::new(Duration::from_millis(20), Duration::from_millis(50), 100);
        let t = Instant::now();
        let at = |ms| t + Duration::from_millis(ms);
        assert_eq!(g.deadline(t, at(10)), at(30));
        assert_eq!(g.deadline(t, at(45)), at(50));
    }
}
