//! The one place a HubSpot answer becomes a failure: HTTP status, `Retry-After` and error body
//! (or a transport error) in, a [`Failure`] out, which says both the [`ProviderError`] and what
//! the client must do about it (stop, pause the pacer, split the batch, re-link the record).
//!
//! It does not send requests, pace them, or decide which items a failure belongs to; the
//! transport and the batch writer do that with what this module returns.
//! <https://developers.hubspot.com/docs/api-reference/error-handling> (crm-apis.md §1.4, §1.6)

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::wire::{BatchError, ErrorBody, ErrorDetail};
use crate::providers::ProviderError;

/// How long to wait after a 423 Locked: HubSpot asks for "at least 2 seconds".
const LOCKED_WAIT: Duration = Duration::from_secs(2);
/// Wait after a 429 that names no `Retry-After`, which HubSpot does not document sending.
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);
/// Error codes about property *names*. Every input of a batch carries the same property
/// names (the field map's targets), so such an error is every input's error, and splitting
/// the batch to find a culprit would only repeat it.
const PROPERTY_NAME_CODES: [&str; 2] = ["PROPERTY_DOESNT_EXIST", "READ_ONLY_VALUE"];

/// What a failed request (or one failed input of a 207) means for the client.
#[derive(Clone, Debug)]
pub enum Failure {
    /// Nothing more can succeed now (credentials, rate limit, outage, unreadable answer):
    /// stop sending, and report `error` for every item not yet done. `pause` holds every
    /// request for a while.
    Call {
        error: ProviderError,
        pause: Option<Pause>,
    },
    /// The record does not exist (any more): a person deleted it in HubSpot.
    Gone,
    /// A unique value (the e-mail) already belongs to record `existing` (409 CONFLICT).
    Taken {
        existing: Option<String>,
        error: ProviderError,
    },
    /// HubSpot refused the data. Unless `every_input`, only some inputs of the batch may be
    /// at fault, and splitting it finds them.
    Refused {
        error: ProviderError,
        every_input: bool,
    },
}

/// A wait every request must respect, for the pacer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pause {
    pub wait: Duration,
    pub reason: &'static str,
}

impl Failure {
    /// The error to report for an item this failure ends.
    pub fn into_error(self) -> ProviderError {
        match self {
            Self::Call { error, .. } | Self::Taken { error, .. } | Self::Refused { error, .. } => {
                error
            }
            // Trying again upserts the contact afresh, which is why this one is retryable.
            Self::Gone => ProviderError::Rejected {
                code: "OBJECT_NOT_FOUND".into(),
                message: "the HubSpot record no longer exists".into(),
                retryable: true,
            },
        }
    }
}

/// Classifies an error status with its `Retry-After` (already parsed) and body.
pub fn classify(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Failure {
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|b| b.message.clone())
        .unwrap_or_else(|| format!("HTTP {status}"));
    match (status, parsed) {
        (401, _) => call(ProviderError::Unauthorized(message)),
        (403, _) => call(ProviderError::Unauthorized(format!(
            "the token lacks a required scope: {message}"
        ))),
        (404, Some(_)) => Failure::Gone,
        (409, Some(body)) => Failure::Taken {
            existing: existing_id(&message),
            error: rejected(status, body.category.as_deref(), &body.errors, message),
        },
        (423, _) => call(ProviderError::RateLimited {
            retry_after: Some(LOCKED_WAIT),
        }),
        (429, body) => rate_limited(body, retry_after, now),
        (477, _) => Failure::Call {
            error: ProviderError::Unavailable("the account is moving between data centres".into()),
            pause: retry_after.map(|wait| Pause {
                wait,
                reason: "HubSpot is migrating the account",
            }),
        },
        (500..=599, _) => call(ProviderError::Unavailable(format!(
            "HubSpot answered {status}"
        ))),
        (400..=499, Some(body)) => Failure::Refused {
            every_input: names_properties(&body.errors, &message),
            error: rejected(status, body.category.as_deref(), &body.errors, message),
        },
        // A 4xx without HubSpot's error body (a proxy's page, a wrong base URL) says nothing
        // about the data, so it must not send the batch writer splitting it.
        (400..=499, None) => call(ProviderError::Decode(format!(
            "HubSpot answered {status} without an error body"
        ))),
        _ => call(ProviderError::Decode(format!(
            "unexpected HTTP status {status}"
        ))),
    }
}

/// Classifies one failed input of a 207 multi-status answer.
pub fn classify_item(err: &BatchError) -> Failure {
    let message = err.message.clone().unwrap_or_default();
    let category = err.category.as_deref();
    match category {
        Some("OBJECT_NOT_FOUND") => Failure::Gone,
        Some("CONFLICT") => Failure::Taken {
            existing: existing_id(&message),
            error: rejected(409, category, &err.errors, message),
        },
        _ => Failure::Refused {
            every_input: false,
            error: rejected(400, category, &err.errors, message),
        },
    }
}

/// A transport failure: no answer, or no complete one. The URL is left out of the message
/// (it names nothing secret, but nothing in it helps either).
pub fn transport(err: reqwest::Error) -> Failure {
    let what = if err.is_timeout() {
        "HubSpot did not answer in time"
    } else if err.is_connect() {
        "could not connect to HubSpot"
    } else {
        "the request to HubSpot failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    call(ProviderError::Unavailable(format!("{what}{detail}")))
}

/// A 2xx answer this client cannot read.
pub fn undecodable(what: &str, err: &serde_json::Error) -> Failure {
    call(ProviderError::Decode(format!("{what}: {err}")))
}

/// The record id in HubSpot's conflict message, `"Contact already exists. Existing ID: 123"`;
/// HubSpot puts it nowhere else.
pub fn existing_id(message: &str) -> Option<String> {
    let (_, tail) = message.split_once("Existing ID:")?;
    let digits: String = tail
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!digits.is_empty()).then_some(digits)
}

/// Time left until the next midnight UTC. HubSpot resets the daily allowance at midnight in
/// the account's time zone, which the API does not tell; UTC is never more than 14 h off and
/// the headers of the first call after the reset correct any early guess.
pub fn until_next_utc_midnight(now: DateTime<Utc>) -> Duration {
    let midnight = now
        .date_naive()
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc());
    midnight
        .and_then(|m| (m - now).to_std().ok())
        // Only the last day chrono can represent has no successor.
        .unwrap_or(Duration::from_secs(24 * 3600))
}

fn call(error: ProviderError) -> Failure {
    let pause = match &error {
        ProviderError::RateLimited {
            retry_after: Some(wait),
        } => Some(Pause {
            wait: *wait,
            reason: "HubSpot rate limit reached",
        }),
        _ => None,
    };
    Failure::Call { error, pause }
}

fn rate_limited(
    body: Option<ErrorBody>,
    retry_after: Option<Duration>,
    now: DateTime<Utc>,
) -> Failure {
    let policy = body.and_then(|b| b.policy_name);
    if policy.as_deref() == Some("DAILY") {
        let wait = until_next_utc_midnight(now);
        return Failure::Call {
            error: ProviderError::QuotaExhausted { retry_after: wait },
            pause: Some(Pause {
                wait,
                reason: "HubSpot's daily API allowance is spent",
            }),
        };
    }
    call(ProviderError::RateLimited {
        retry_after: Some(retry_after.unwrap_or(RATE_LIMIT_WAIT)),
    })
}

/// `Rejected` with the most specific code and message HubSpot gave: `errors[]` (one line per
/// property, where the top-level message embeds them as JSON), else `category` and `message`.
fn rejected(
    status: u16,
    category: Option<&str>,
    details: &[ErrorDetail],
    message: String,
) -> ProviderError {
    let code = details
        .iter()
        .find_map(|e| e.code.clone())
        .or_else(|| category.map(str::to_owned))
        .unwrap_or_else(|| format!("HTTP_{status}"));
    let lines: Vec<&str> = details
        .iter()
        .filter_map(|e| e.message.as_deref())
        .collect();
    let message = if lines.is_empty() {
        message
    } else {
        lines.join("; ")
    };
    ProviderError::Rejected {
        code,
        message,
        retryable: false,
    }
}

/// Whether the refusal is about property names. HubSpot lists property verdicts in
/// `errors[]`, or only inside `message` as embedded JSON, so both are searched.
fn names_properties(details: &[ErrorDetail], message: &str) -> bool {
    PROPERTY_NAME_CODES.iter().any(|code| {
        message.contains(code) || details.iter().any(|e| e.code.as_deref() == Some(code))
    })
}

#[cfg(test)]
#[path = "errors_tests.rs"]
mod tests;
