//! Per-key request limits: a token bucket (a sustained rate and a burst) and a cap on the
//! requests a key has in flight, so one client cannot take the capacity every other client
//! shares (the listener's in-flight slots, the database pool). Over either limit a request is
//! answered 429 with `Retry-After` at once; other keys are not affected.
//!
//! In process and per API process: no database round trip, no shared state between replicas,
//! so with N API replicas a key may reach N times its limits. Not here: the listener-wide caps
//! (`syncroot_serve`) and the pacing of SyncRoot's own calls to the CRMs
//! (`providers::pacing`, which waits instead of refusing).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::problem::ApiError;
use crate::config::KeyLimits;

/// One key's limits and what it has used of them.
pub struct KeyLimiter {
    limits: KeyLimits,
    bucket: Mutex<Bucket>,
    in_flight: Arc<Semaphore>,
}

impl KeyLimiter {
    pub fn new(limits: KeyLimits) -> Self {
        Self {
            limits,
            bucket: Mutex::new(Bucket::full(limits.burst, Instant::now())),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight as usize)),
        }
    }

    /// Admits one request: the permit is its in-flight slot, held until it is answered.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            return Err(ApiError::RateLimited {
                retry_after: Duration::from_secs(1),
                detail: format!(
                    "this key already has {} requests in flight, its limit (api_key_max_in_flight); retry when one is answered",
                    self.limits.max_in_flight
                ),
            });
        };
        let taken = self
            .bucket
            .lock()
            // A poisoned lock only means another thread panicked mid-update of two numbers.
            .unwrap_or_else(|p| p.into_inner())
            .take(Instant::now(), &self.limits);
        match taken {
            Ok(()) => Ok(permit),
            Err(wait) => Err(ApiError::RateLimited {
                retry_after: wait,
                detail: format!(
                    "this key exceeded its rate of {} requests per second (burst {}; api_key_rate_per_sec, api_key_burst)",
                    self.limits.rate_per_sec, self.limits.burst
                ),
            }),
        }
    }
}

/// A token bucket: holds up to `burst` tokens, refills at `rate_per_sec`, a request takes one.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            at: now,
        }
    }

    /// Takes a token at `now`, or says how long until one is there.
    fn take(&mut self, now: Instant, limits: &KeyLimits) -> Result<(), Duration> {
        let rate = f64::from(limits.rate_per_sec.max(1));
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(limits.burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u32, burst: u32) -> KeyLimits {
        KeyLimits {
            rate_per_sec: rate,
            burst,
            max_in_flight: 4,
        }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let l = limits(10, 3);
        let t0 = Instant::now();
        let mut b = Bucket::full(l.burst, t0);
        for _ in 0..3 {
            assert_eq!(b.take(t0, &l), Ok(()));
        }
        // Empty: the next token is 1/10 s away.
        let wait = b.take(t0, &l).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(b.take(t0 + Duration::from_millis(99), &l).is_err());
        assert_eq!(b.take(t0 + Duration::from_millis(200), &l), Ok(()));
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.take(later, &l), Ok(()));
        }
        assert!(b.take(later, &l).is_err());
    }

    #[test]
    fn a_key_over_its_in_flight_cap_is_refused_until_a_request_ends() {
        let limiter = KeyLimiter::new(KeyLimits {
            rate_per_sec: 1000,
            burst: 1000,
            max_in_flight: 2,
        });
        let a = limiter.admit().unwrap();
        let _b = limiter.admit().unwrap();
        assert!(matches!(limiter.admit(), Err(ApiError::RateLimited { .. })));
        drop(a);
        assert!(limiter.admit().is_ok());
    }
}
