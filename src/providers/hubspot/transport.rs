//! Sending one request to HubSpot: waits for the pacer, authenticates with the private-app
//! token, feeds HubSpot's rate-limit headers back to the pacer and hands every failure to
//! `errors.rs` for classification.
//!
//! Two lanes, because HubSpot counts two allowances: the search endpoints have their own
//! per-second limit and send no rate-limit headers ([`Transport::search`]); every other call
//! is paced by the rolling 10 s burst window its headers describe ([`Transport::post`],
//! [`Transport::get`]).
//!
//! It knows nothing of contacts or batches, and never retries: what to do about a failure is
//! the caller's decision. The token is only ever written into the `Authorization` header.
//! <https://developers.hubspot.com/docs/api/usage-details> (crm-apis.md §1.5, §1.6)

use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Serialize;
use tokio::time::Instant;

use super::HubspotSettings;
use super::errors::{self, Failure, Pause};
use crate::domain::Crm;
use crate::providers::pacing::Pacer;
use crate::providers::{ProviderError, http_client};
use crate::secret::Secret;

/// HubSpot's burst allowance is counted over a rolling 10 s.
const BURST_WINDOW: Duration = Duration::from_secs(10);
/// The search endpoints' own allowance: 5 requests a second (crm-apis.md §1.5; it was 1, then
/// 4, over the years). Search answers carry no headers to learn it from, so it is fixed here.
const SEARCH_PER_SECOND: u32 = 5;
const SEARCH_WINDOW: Duration = Duration::from_secs(1);
/// Longest `Retry-After` honoured. A longer one is more likely a misreading than a plan, and
/// the next answer says again how long to wait.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
const DAILY_SPENT: &str = "HubSpot's daily API allowance is spent";

pub struct Transport {
    http: reqwest::Client,
    /// Without a trailing `/`.
    base_url: String,
    token: Secret,
    pacer: Pacer,
    /// Paces the search endpoints, which HubSpot limits apart from the burst window.
    search_pacer: Pacer,
    /// When the daily allowance comes back, once HubSpot said it is spent.
    daily_reset: Mutex<Option<Instant>>,
}

impl Transport {
    pub fn new(settings: &HubspotSettings) -> Self {
        Self {
            http: http_client(settings.timeout),
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            token: settings.token.clone(),
            pacer: Pacer::new(settings.rate_limit, BURST_WINDOW),
            search_pacer: Pacer::new(SEARCH_PER_SECOND, SEARCH_WINDOW),
            daily_reset: Mutex::new(None),
        }
    }

    /// POSTs `body` as JSON to `path` and returns the body of a 2xx answer.
    pub async fn post<T: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<Vec<u8>, Failure> {
        self.post_json(Lane::Burst, path, body).await
    }

    /// Like [`Transport::post`], for a search endpoint: paced by the search allowance instead
    /// of the burst window, and a 429 holds back only further searches.
    pub async fn search<T: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<Vec<u8>, Failure> {
        self.post_json(Lane::Search, path, body).await
    }

    /// GETs `path` with the `query` pairs (a list page) and returns the body of a 2xx
    /// answer; paced like [`Transport::post`].
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Vec<u8>, Failure> {
        let request = self
            .http
            .get(format!("{}{path}", self.base_url))
            .query(query);
        self.send(Lane::Burst, request).await
    }

    async fn post_json<T: Serialize + ?Sized>(
        &self,
        lane: Lane,
        path: &str,
        body: &T,
    ) -> Result<Vec<u8>, Failure> {
        let request = self
            .http
            .post(format!("{}{path}", self.base_url))
            .json(body);
        self.send(lane, request).await
    }

    async fn send(&self, lane: Lane, request: reqwest::RequestBuilder) -> Result<Vec<u8>, Failure> {
        self.lane(lane).acquire().await;
        let request = request.bearer_auth(self.token.expose());
        let sent = crate::providers::send(Crm::Hubspot, request).await;
        let response = sent.map_err(errors::transport)?;
        let now = Utc::now();
        self.observe(response.headers(), now);
        let status = response.status();
        let retry_after = retry_after(response.headers(), now);
        let bytes = crate::providers::read_body(response)
            .await
            .map_err(|e| match e {
                crate::providers::BodyError::Transport(e) => errors::transport(e),
                crate::providers::BodyError::TooLarge => Failure::Call {
                    error: crate::providers::BodyError::too_large("HubSpot"),
                    pause: None,
                },
            })?;
        if status.is_success() {
            return Ok(bytes);
        }
        let failure = errors::classify(status.as_u16(), retry_after, &bytes, now);
        if let Failure::Call {
            error,
            pause: Some(pause),
        } = &failure
        {
            match (lane, error) {
                (Lane::Search, ProviderError::RateLimited { .. }) => {
                    self.search_pacer.block(pause.wait, pause.reason);
                }
                _ => self.hold(pause, error),
            }
        }
        Err(failure)
    }

    fn lane(&self, lane: Lane) -> &Pacer {
        match lane {
            Lane::Burst => &self.pacer,
            Lane::Search => &self.search_pacer,
        }
    }

    /// Why requests are held back right now, if they are. A held-back search lane alone is
    /// not reported: delivery does not search.
    pub fn paused(&self) -> Option<String> {
        self.pacer.paused()
    }

    /// How long until the daily allowance comes back, while it is spent. Delivery asks this
    /// before sending anything: waiting in the pacer until midnight would hold a batch (and
    /// its queue messages) for hours.
    pub fn daily_allowance_spent(&self) -> Option<Duration> {
        let mut reset = lock(&self.daily_reset);
        let left = (*reset)?.saturating_duration_since(Instant::now());
        if left.is_zero() {
            *reset = None;
            return None;
        }
        Some(left)
    }

    /// Applies `X-HubSpot-RateLimit-*`: the burst figures tighten the pacer, the daily ones are
    /// exported as the CRM's quota, and a daily remainder of 0 holds every request until the
    /// allowance resets.
    fn observe(&self, headers: &HeaderMap, now: DateTime<Utc>) {
        let max = header::<u32>(headers, "x-hubspot-ratelimit-max");
        let remaining = header::<u32>(headers, "x-hubspot-ratelimit-remaining");
        let window = header::<u64>(headers, "x-hubspot-ratelimit-interval-milliseconds")
            .map(Duration::from_millis);
        self.pacer.observe(max, remaining, window);
        let daily_remaining = header::<u64>(headers, "x-hubspot-ratelimit-daily-remaining");
        if let (Some(left), Some(daily)) = (
            daily_remaining,
            header(headers, "x-hubspot-ratelimit-daily"),
        ) {
            crate::metrics::crm_quota(crate::domain::Crm::Hubspot.as_str(), left, daily);
        }
        if daily_remaining == Some(0) {
            let wait = errors::until_next_utc_midnight(now);
            self.hold(
                &Pause {
                    wait,
                    reason: DAILY_SPENT,
                },
                &ProviderError::QuotaExhausted { retry_after: wait },
            );
        }
    }

    fn hold(&self, pause: &Pause, error: &ProviderError) {
        tracing::warn!(
            reason = pause.reason,
            wait_s = pause.wait.as_secs(),
            "HubSpot requests paused"
        );
        self.pacer.block(pause.wait, pause.reason);
        if let ProviderError::QuotaExhausted { retry_after } = error {
            *lock(&self.daily_reset) = Some(Instant::now() + *retry_after);
        }
    }
}

/// Which allowance a request counts against.
#[derive(Clone, Copy, Debug)]
enum Lane {
    /// The rolling 10 s burst window and the daily allowance.
    Burst,
    /// The search endpoints' per-second limit.
    Search,
}

/// A header's value parsed as a number; absent or malformed is `None`.
fn header<T: FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3), capped.
fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match raw.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = DateTime::parse_from_rfc2822(raw).ok()?;
            (at.with_timezone(&Utc) - now)
                .to_std()
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while setting a plain value.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_capped() {
        let now: DateTime<Utc> = "2026-03-05T18:00:00Z".parse().unwrap();
        let secs = headers(&[("retry-after", "7")]);
        assert_eq!(retry_after(&secs, now), Some(Duration::from_secs(7)));
        let date = headers(&[("retry-after", "Thu, 05 Mar 2026 18:00:30 GMT")]);
        assert_eq!(retry_after(&date, now), Some(Duration::from_secs(30)));
        let huge = headers(&[("retry-after", "999999")]);
        assert_eq!(retry_after(&huge, now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn rate_limit_headers_parse_as_numbers() {
        let h = headers(&[
            ("x-hubspot-ratelimit-max", "190"),
            ("x-hubspot-ratelimit-remaining", " 12 "),
            ("x-hubspot-ratelimit-daily-remaining", "many"),
        ]);
        assert_eq!(header::<u32>(&h, "x-hubspot-ratelimit-max"), Some(190));
        assert_eq!(header::<u32>(&h, "x-hubspot-ratelimit-remaining"), Some(12));
        assert_eq!(
            header::<u64>(&h, "x-hubspot-ratelimit-daily-remaining"),
            None
        );
    }
}
