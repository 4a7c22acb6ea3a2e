//! Request pacing: keeps SyncRoot's request rate to a CRM inside that CRM's allowance, so it
//! never causes a 429 storm and still uses the allowance fully when there is a backlog.
//!
//! A [`Pacer`] keeps a log of this process's requests over a rolling window (HubSpot's
//! allowance is "N requests per rolling 10 s") and makes [`Pacer::acquire`] wait when the next
//! request would exceed it. The CRM's own rate-limit headers tighten the limit
//! ([`Pacer::observe`]); a 429's `Retry-After` or a spent daily allowance blocks all requests
//! for a while ([`Pacer::block`]), which [`Pacer::paused`] reports for status and logs.
//!
//! One pacer per CRM per process. Several delivery processes would each pace on their own,
//! which is why one delivery consumer per CRM is active at a time (single active consumer).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Requests kept in reserve below the allowance, against clock skew between us and the CRM.
const HEADROOM: u32 = 1;
/// Added to the window for the same reason: a request we logged as sent may reach the CRM a
/// little later, and so leave the CRM's window a little later too.
const WINDOW_SLACK: Duration = Duration::from_millis(150);

pub struct Pacer {
    state: Mutex<State>,
}

struct State {
    /// Requests per window this process allows itself; 0 is unlimited.
    limit: u32,
    window: Duration,
    /// Send times of our requests still inside the window, oldest first.
    sent: VecDeque<Instant>,
    /// No request before this instant, and why.
    blocked: Option<(Instant, String)>,
}

impl Pacer {
    /// `limit` requests per `window`; `limit` 0 paces nothing until the CRM's headers say more.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                limit,
                window,
                sent: VecDeque::new(),
                blocked: None,
            }),
        }
    }

    /// Waits until a request may be sent, and counts it as sent.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut s = self.lock();
                let now = Instant::now();
                match s.next_slot(now) {
                    None => {
                        s.sent.push_back(now);
                        return;
                    }
                    Some(at) => at.saturating_duration_since(now),
                }
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    /// Applies the CRM's view: its allowance per window and what is left of it.
    pub fn observe(&self, max: Option<u32>, remaining: Option<u32>, window: Option<Duration>) {
        let mut s = self.lock();
        if let Some(w) = window.filter(|w| !w.is_zero()) {
            s.window = w;
        }
        if let Some(max) = max.filter(|m| *m > 0) {
            s.limit = if s.limit == 0 { max } else { s.limit.min(max) };
        }
        if remaining == Some(0) && s.limit > 0 {
            // Someone else (another tool on the same app) used the allowance: wait for a slot.
            let slot = s.window / s.limit;
            let until = Instant::now() + slot;
            s.blocked = Some((until, "the CRM's rate-limit window is full".into()));
        }
    }

    /// Blocks every request for `wait` (a 429's Retry-After, a spent daily allowance).
    pub fn block(&self, wait: Duration, reason: impl Into<String>) {
        let until = Instant::now() + wait;
        let mut s = self.lock();
        if s.blocked.as_ref().is_none_or(|(t, _)| *t < until) {
            s.blocked = Some((until, reason.into()));
        }
    }

    /// Why requests are blocked right now, with the remaining wait.
    pub fn paused(&self) -> Option<String> {
        let s = self.lock();
        let (until, why) = s.blocked.as_ref()?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then(|| format!("{why}; paused for another {}s", left.as_secs().max(1)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update of plain counters.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// `None` if a request may go now; otherwise the earliest instant it may.
    fn next_slot(&mut self, now: Instant) -> Option<Instant> {
        if let Some((until, _)) = &self.blocked {
            if *until > now {
                return Some(*until);
            }
            self.blocked = None;
        }
        if self.limit == 0 {
            return None;
        }
        let span = self.window + WINDOW_SLACK;
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= span)
        {
            self.sent.pop_front();
        }
        let allowed = self.limit.saturating_sub(HEADROOM).max(1) as usize;
        if self.sent.len() < allowed {
            None
        } else {
            self.sent.front().map(|t| *t + span)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_beyond_the_allowance_wait_for_the_window_to_roll() {
        let p = Pacer::new(10, Duration::from_secs(10));
        let start = Instant::now();
        for _ in 0..9 {
            p.acquire().await;
        }
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the first 9 (10 minus headroom) go at once"
        );
        p.acquire().await;
        assert!(
            start.elapsed() >= Duration::from_secs(10),
            "the 10th waits for the first to leave the window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn headers_tighten_the_limit_and_a_block_pauses_everything() {
        let p = Pacer::new(0, Duration::from_secs(10));
        p.observe(Some(3), Some(3), Some(Duration::from_secs(1)));
        let start = Instant::now();
        for _ in 0..3 {
            p.acquire().await;
        }
        assert!(start.elapsed() >= Duration::from_secs(1));
        p.block(Duration::from_secs(30), "daily allowance spent");
        assert!(p.paused().unwrap().contains("daily allowance spent"));
        let before = Instant::now();
        p.acquire().await;
        assert!(before.elapsed() >= Duration::from_secs(30));
        assert!(p.paused().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_pacers_never_wait() {
        let p = Pacer::new(0, Duration::from_secs(10));
        let start = Instant::now();
        for _ in 0..1000 {
            p.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
