//! The org's daily API allowance: the `Sforce-Limit-Info` header, the `/limits` resource and
//! `403 REQUEST_LIMIT_EXCEEDED` once the allowance is spent.
//!
//! What it is not: a rolling 24-hour window. Usage only grows until `/__sandbox/limits` or
//! `/__sandbox/reset` sets it back, which makes tests deterministic. No concurrency limit for
//! long-running requests is modelled.
//!
//! Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_api_usage.htm
//! ("Limit Info Header") and https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_limits.htm

use serde_json::{Value, json};

use super::errors::{ErrorCode, SfError};

/// Response header carrying `api-usage=USED/MAX`.
pub const LIMIT_INFO_HEADER: &str = "Sforce-Limit-Info";

/// Daily API usage of the org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meter {
    /// Calls allowed per day.
    pub daily_limit: u32,
    /// Calls counted so far.
    pub used: u32,
}

impl Meter {
    pub fn new(daily_limit: u32) -> Self {
        Self {
            daily_limit,
            used: 0,
        }
    }

    /// Counts one call, or refuses it when the allowance is spent (a refused call is not
    /// counted, so usage never exceeds the limit).
    pub fn consume(&mut self) -> Result<(), SfError> {
        if self.used >= self.daily_limit {
            return Err(SfError::new(
                ErrorCode::RequestLimitExceeded,
                "TotalRequests Limit exceeded.",
            ));
        }
        self.used += 1;
        Ok(())
    }

    /// Value of the `Sforce-Limit-Info` header.
    pub fn header_value(&self) -> String {
        format!("api-usage={}/{}", self.used, self.daily_limit)
    }

    /// Body of `GET /services/data/vXX.X/limits`; only `DailyApiRequests` is modelled.
    pub fn limits_body(&self) -> Value {
        json!({
            "DailyApiRequests": {
                "Max": self.daily_limit,
                "Remaining": self.daily_limit.saturating_sub(self.used),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowance_is_counted_then_refused() {
        let mut m = Meter::new(2);
        assert!(m.consume().is_ok());
        assert_eq!(m.header_value(), "api-usage=1/2");
        assert!(m.consume().is_ok());
        let e = m.consume().unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                ErrorCode::RequestLimitExceeded,
                "TotalRequests Limit exceeded."
            )
        );
        assert_eq!(e.status.as_u16(), 403);
        assert_eq!(m.header_value(), "api-usage=2/2");
        assert_eq!(m.limits_body()["DailyApiRequests"]["Remaining"], 0);
    }
}
