//! HubSpot's request quotas: a rolling 10-second burst window per private app, a daily
//! allowance per account, and the separate per-second limit of the search endpoints.
//!
//! Pure bookkeeping: callers pass the current instant and UTC date, so the windows can be
//! tested without sleeping. The HTTP headers and 429 bodies are built by the request gate.
//! <https://developers.hubspot.com/docs/api/usage-details>

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::NaiveDate;

/// Length of the burst window, as reported in `X-HubSpot-RateLimit-Interval-Milliseconds`.
pub const BURST_WINDOW: Duration = Duration::from_secs(10);
const SECOND: Duration = Duration::from_secs(1);

/// Which quota refused a request; the names are HubSpot's `policyName` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    TenSecondlyRolling,
    Daily,
    /// The search endpoints' own per-second limit (policy name [UNVERIFIED]).
    Secondly,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Self::TenSecondlyRolling => "TEN_SECONDLY_ROLLING",
            Self::Daily => "DAILY",
            Self::Secondly => "SECONDLY",
        }
    }
}

/// Values for the `X-HubSpot-RateLimit-*` headers after a request was admitted or refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub max: u32,
    pub remaining: u32,
    pub daily: u32,
    pub daily_remaining: u32,
    /// The deprecated per-second figures, derived as a tenth of the burst window.
    pub secondly: u32,
    pub secondly_remaining: u32,
}

/// Current limits, changeable at run time through the control API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    pub burst_limit: u32,
    pub daily_limit: u32,
    pub search_limit_per_second: u32,
}

#[derive(Debug)]
pub struct RateLimiter {
    pub limits: Limits,
    /// Admission instants inside the burst window, oldest first.
    burst: VecDeque<Instant>,
    /// Admission instants of search calls inside the last second.
    search: VecDeque<Instant>,
    day: Option<NaiveDate>,
    daily_used: u32,
}

impl RateLimiter {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            burst: VecDeque::new(),
            search: VecDeque::new(),
            day: None,
            daily_used: 0,
        }
    }

    /// Forgets all usage (limits stay).
    pub fn reset(&mut self) {
        *self = Self::new(self.limits);
    }

    /// Admits or refuses a regular API call. Refused calls do not use up quota.
    pub fn check(&mut self, now: Instant, today: NaiveDate) -> Result<Quota, (Policy, Quota)> {
        self.roll(now, today);
        if self.daily_used >= self.limits.daily_limit {
            return Err((Policy::Daily, self.quota(now)));
        }
        if self.burst.len() >= self.limits.burst_limit as usize {
            return Err((Policy::TenSecondlyRolling, self.quota(now)));
        }
        self.burst.push_back(now);
        self.daily_used += 1;
        Ok(self.quota(now))
    }

    /// Admits or refuses a search call against the per-second search limit only.
    pub fn check_search(&mut self, now: Instant) -> Result<(), Policy> {
        let limit = self.limits.search_limit_per_second;
        if limit == 0 {
            return Ok(());
        }
        prune(&mut self.search, now, SECOND);
        if self.search.len() >= limit as usize {
            return Err(Policy::Secondly);
        }
        self.search.push_back(now);
        Ok(())
    }

    fn roll(&mut self, now: Instant, today: NaiveDate) {
        prune(&mut self.burst, now, BURST_WINDOW);
        // The daily allowance resets at midnight in the account's time zone (UTC here).
        if self.day != Some(today) {
            self.day = Some(today);
            self.daily_used = 0;
        }
    }

    fn quota(&self, now: Instant) -> Quota {
        let max = self.limits.burst_limit;
        let used = u32::try_from(self.burst.len()).unwrap_or(u32::MAX);
        let secondly = (max / 10).max(1);
        let last_second = self
            .burst
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < SECOND)
            .count();
        Quota {
            max,
            remaining: max.saturating_sub(used),
            daily: self.limits.daily_limit,
            daily_remaining: self.limits.daily_limit.saturating_sub(self.daily_used),
            secondly,
            secondly_remaining: secondly
                .saturating_sub(u32::try_from(last_second).unwrap_or(u32::MAX)),
        }
    }
}

/// Drops instants at or beyond `window` before `now`.
fn prune(window_log: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while let Some(&oldest) = window_log.front() {
        if now.saturating_duration_since(oldest) >= window {
            window_log.pop_front();
        } else {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, daily: u32) -> RateLimiter {
        let limits = Limits {
            burst_limit: burst,
            daily_limit: daily,
            search_limit_per_second: 5,
        };
        RateLimiter::new(limits)
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, d).unwrap_or_default()
    }

    #[test]
    fn burst_window_rolls_rather_than_resetting() {
        let mut rl = limiter(3, 1000);
        let t0 = Instant::now();
        assert_eq!(rl.check(t0, day(1)).map(|q| q.remaining), Ok(2));
        assert!(rl.check(t0 + Duration::from_secs(4), day(1)).is_ok());
        assert_eq!(
            rl.check(t0 + Duration::from_secs(8), day(1))
                .map(|q| q.remaining),
            Ok(0)
        );
        let refused = rl.check(t0 + Duration::from_millis(9_999), day(1));
        assert_eq!(refused.map_err(|(p, _)| p), Err(Policy::TenSecondlyRolling));
        // 10 s after the first call exactly one slot is free again, not all three.
        assert!(rl.check(t0 + Duration::from_secs(10), day(1)).is_ok());
        assert!(
            rl.check(t0 + Duration::from_millis(10_001), day(1))
                .is_err()
        );
        assert!(rl.check(t0 + Duration::from_secs(14), day(1)).is_ok());
    }

    #[test]
    fn daily_allowance_is_exhausted_then_resets_on_a_new_day() {
        let mut rl = limiter(100, 2);
        let t0 = Instant::now();
        assert_eq!(rl.check(t0, day(1)).map(|q| q.daily_remaining), Ok(1));
        assert!(rl.check(t0, day(1)).is_ok());
        let refused = rl.check(t0, day(1));
        assert_eq!(
            refused.map_err(|(p, q)| (p, q.daily_remaining)),
            Err((Policy::Daily, 0))
        );
        assert!(rl.check(t0, day(2)).is_ok());
    }

    #[test]
    fn refused_calls_do_not_consume_quota() {
        let mut rl = limiter(1, 10);
        let t0 = Instant::now();
        assert!(rl.check(t0, day(1)).is_ok());
        for i in 1..5 {
            assert!(rl.check(t0 + Duration::from_secs(i), day(1)).is_err());
        }
        assert!(rl.check(t0 + Duration::from_secs(10), day(1)).is_ok());
        assert_eq!(rl.daily_used, 2);
    }

    #[test]
    fn search_limit_is_per_rolling_second() {
        let mut rl = limiter(100, 1000);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(rl.check_search(t0).is_ok());
        }
        assert_eq!(
            rl.check_search(t0 + Duration::from_millis(999)),
            Err(Policy::Secondly)
        );
        assert!(rl.check_search(t0 + SECOND).is_ok());
    }

    #[test]
    fn deprecated_secondly_figures_are_a_tenth_of_the_burst() {
        let mut rl = limiter(100, 1000);
        let quota = rl.check(Instant::now(), day(1)).map_err(|_| ());
        assert_eq!(
            quota.map(|q| (q.secondly, q.secondly_remaining)),
            Ok((10, 9))
        );
    }
}
