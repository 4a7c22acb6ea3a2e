//! What becomes of a delivery task after an attempt: the one place that maps an outcome to
//! acknowledge, retry after a delay (in which tier) or dead-letter (with which reason).
//!
//! Not here: carrying it out (publishing, acknowledging), which the delivery worker does.
//!
//! ```text
//! synced                              → ack
//! failed, retryable, tiers left       → a copy with attempt + 1 into tier `attempt` (or the
//!                                       first longer tier the CRM's Retry-After asks for) → ack
//! failed, retryable, no tier left     → dead-letter "retries_exhausted" → ack
//! failed for good                     → dead-letter "permanent" at once → ack
//! deferred (daily allowance spent)    → a copy, attempt unchanged, into the tier matching the
//!                                       wait; an allowance running out is not the contact's fault
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::change::{AttemptError, DeliveryTask};
use crate::providers::ProviderError;

/// How one contact's attempt ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The CRM holds the contact's current version (now, or already).
    Synced,
    Failed(ProviderError),
    /// Not attempted: the CRM's allowance is spent; try again after `retry_after`.
    Deferred {
        retry_after: Option<Duration>,
    },
}

impl Outcome {
    /// Classifies a provider error: a spent allowance defers, anything else is a failure.
    pub fn from_error(e: ProviderError) -> Self {
        match e {
            ProviderError::QuotaExhausted { retry_after } => Self::Deferred {
                retry_after: Some(retry_after),
            },
            e => Self::Failed(e),
        }
    }
}

/// Why a task goes to the dead-letter queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadReason {
    /// The CRM refused it for a reason retrying cannot fix.
    Permanent,
    /// It kept failing for a reason that might pass, through every retry tier.
    RetriesExhausted,
}

impl DeadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Permanent => "permanent",
            Self::RetriesExhausted => "retries_exhausted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "permanent" => Some(Self::Permanent),
            "retries_exhausted" => Some(Self::RetriesExhausted),
            _ => None,
        }
    }
}

/// What to do with the task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    Ack,
    /// Publish `task` into retry tier `tier` (0-based), then acknowledge.
    Retry {
        tier: usize,
        task: DeliveryTask,
    },
    /// Publish `task` to the dead-letter exchange with `reason`, then acknowledge.
    DeadLetter {
        reason: DeadReason,
        task: DeliveryTask,
    },
}

/// Decides a task's disposition. `tiers` are the retry tiers' waits, shortest first.
pub fn decide(
    mut task: DeliveryTask,
    outcome: &Outcome,
    tiers: &[Duration],
    now: DateTime<Utc>,
) -> Disposition {
    let error = match outcome {
        Outcome::Synced => return Disposition::Ack,
        Outcome::Deferred { retry_after } => {
            return match tier_for_wait(tiers, 0, *retry_after) {
                Some(tier) => Disposition::Retry { tier, task },
                None => Disposition::DeadLetter {
                    reason: DeadReason::RetriesExhausted,
                    task,
                },
            };
        }
        Outcome::Failed(e) => e,
    };
    task.attempt = task.attempt.saturating_add(1);
    task.push_error(AttemptError {
        at: now,
        code: error.code().to_owned(),
        message: error.to_string(),
        retryable: error.is_retryable(),
    });
    if !error.is_retryable() {
        return Disposition::DeadLetter {
            reason: DeadReason::Permanent,
            task,
        };
    }
    // The n-th failure waits in tier n-1.
    let first = task.attempt as usize - 1;
    match tier_for_wait(tiers, first, error.retry_after()) {
        Some(tier) if first < tiers.len() => Disposition::Retry { tier, task },
        _ => Disposition::DeadLetter {
            reason: DeadReason::RetriesExhausted,
            task,
        },
    }
}

/// The tier to wait in: `from`, or a later one when the CRM asked for a longer wait (the first
/// tier at least as long, else the last). `None` when there are no tiers.
pub fn tier_for_wait(tiers: &[Duration], from: usize, wanted: Option<Duration>) -> Option<usize> {
    let last = tiers.len().checked_sub(1)?;
    let from = from.min(last);
    let Some(wanted) = wanted else {
        return Some(from);
    };
    Some(
        (from..tiers.len())
            .find(|&i| tiers[i] >= wanted)
            .unwrap_or(last),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ContactId, Crm};

    fn tiers() -> Vec<Duration> {
        [1, 5, 30, 120, 600]
            .into_iter()
            .map(Duration::from_secs)
            .collect()
    }

    fn task(attempt: u32) -> DeliveryTask {
        let mut t = DeliveryTask::new(ContactId::new(), 3, Crm::Hubspot);
        t.attempt = attempt;
        t
    }

    fn unavailable() -> Outcome {
        Outcome::Failed(ProviderError::Unavailable("HTTP 502".into()))
    }

    #[test]
    fn synced_is_acknowledged() {
        assert_eq!(
            decide(task(2), &Outcome::Synced, &tiers(), Utc::now()),
            Disposition::Ack
        );
    }

    #[test]
    fn each_retryable_failure_waits_in_the_next_tier_then_dead_letters() {
        let mut t = task(0);
        for expected in 0..5 {
            match decide(t.clone(), &unavailable(), &tiers(), Utc::now()) {
                Disposition::Retry { tier, task } => {
                    assert_eq!(tier, expected);
                    assert_eq!(task.attempt as usize, expected + 1);
                    assert_eq!(task.errors.len(), expected + 1);
                    assert_eq!(task.errors[expected].code, "UNAVAILABLE");
                    t = task;
                }
                other => panic!("attempt {expected}: {other:?}"),
            }
        }
        match decide(t, &unavailable(), &tiers(), Utc::now()) {
            Disposition::DeadLetter { reason, task } => {
                assert_eq!(reason, DeadReason::RetriesExhausted);
                assert_eq!(task.attempt, 6);
                assert_eq!(task.errors.len(), 6);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn permanent_failures_skip_the_tiers() {
        let refused = Outcome::Failed(ProviderError::Rejected {
            code: "REQUIRED_FIELD_MISSING".into(),
            message: "Required fields are missing: [LastName]".into(),
            retryable: false,
        });
        match decide(task(0), &refused, &tiers(), Utc::now()) {
            Disposition::DeadLetter { reason, task } => {
                assert_eq!(reason, DeadReason::Permanent);
                assert_eq!(task.errors[0].code, "REQUIRED_FIELD_MISSING");
                assert!(!task.errors[0].retryable);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_picks_a_longer_tier_but_never_beyond_the_last() {
        let t = tiers();
        assert_eq!(tier_for_wait(&t, 0, Some(Duration::from_secs(3))), Some(1));
        assert_eq!(tier_for_wait(&t, 0, Some(Duration::from_secs(5))), Some(1));
        assert_eq!(tier_for_wait(&t, 2, Some(Duration::from_secs(1))), Some(2));
        assert_eq!(
            tier_for_wait(&t, 0, Some(Duration::from_secs(86_400))),
            Some(4)
        );
        assert_eq!(tier_for_wait(&[], 0, None), None);
        let limited = Outcome::Failed(ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(20)),
        });
        assert!(matches!(
            decide(task(0), &limited, &t, Utc::now()),
            Disposition::Retry { tier: 2, .. }
        ));
    }

    #[test]
    fn a_spent_allowance_defers_without_counting_an_attempt() {
        let spent = Outcome::from_error(ProviderError::QuotaExhausted {
            retry_after: Duration::from_secs(3600),
        });
        match decide(task(2), &spent, &tiers(), Utc::now()) {
            Disposition::Retry { tier, task } => {
                assert_eq!(tier, 4);
                assert_eq!(task.attempt, 2);
                assert!(task.errors.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_tiers_a_retryable_failure_goes_straight_to_the_dead_letter_worker() {
        assert!(matches!(
            decide(task(0), &unavailable(), &[], Utc::now()),
            Disposition::DeadLetter {
                reason: DeadReason::RetriesExhausted,
                ..
            }
        ));
    }
}
