//! Parsing the merged raw values into typed settings, collecting every problem.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use super::*;

pub(super) struct Parser<'a> {
    pub(super) layers: &'a Layers,
    pub(super) errors: Vec<String>,
}

impl Parser<'_> {
    pub(super) fn raw(&self, name: &str) -> &str {
        self.layers.values.get(name).map_or("", |(v, _)| v.as_str())
    }

    pub(super) fn fail(&mut self, name: &str, problem: String) {
        let shown = match self.layers.values.get(name) {
            Some((_, Origin::Env)) => format!("{ENV_PREFIX}{}", name.to_ascii_uppercase()),
            Some((_, Origin::EnvFile)) => {
                format!("{ENV_PREFIX}{}_FILE", name.to_ascii_uppercase())
            }
            Some((_, Origin::File(f))) => format!("{f}: {name}"),
            Some((_, Origin::Standard(var))) => (*var).to_owned(),
            _ => name.to_owned(),
        };
        self.errors.push(format!("{shown}: {problem}"));
    }

    pub(super) fn get<T: FromStr + Default>(&mut self, name: &str, what: &str) -> T {
        let raw = self.raw(name).trim().to_owned();
        raw.parse().unwrap_or_else(|_| {
            self.fail(name, format!("'{raw}' is not {what}"));
            T::default()
        })
    }

    pub(super) fn socket_addr(&mut self, name: &str) -> SocketAddr {
        let raw = self.raw(name).trim().to_owned();
        raw.parse().unwrap_or_else(|_| {
            self.fail(
                name,
                format!("'{raw}' is not a socket address such as 127.0.0.1:8080"),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    pub(super) fn ranged<T>(&mut self, name: &str, min: T, max: T) -> T
    where
        T: FromStr + Default + PartialOrd + fmt::Display + Copy,
    {
        let v: T = self.get(name, &format!("a whole number from {min} to {max}"));
        if self.raw(name).trim().parse::<T>().is_ok() && (v < min || v > max) {
            self.fail(name, format!("{v} is out of range {min}..={max}"));
        }
        v
    }

    pub(super) fn url(&mut self, name: &str, schemes: &[&str]) -> Secret {
        let raw = self.raw(name).to_owned();
        match url::Url::parse(&raw) {
            Ok(u) if schemes.contains(&u.scheme()) => {}
            // Never echo the value: URLs carry passwords.
            Ok(u) => self.fail(
                name,
                format!(
                    "scheme '{}' is not one of {}",
                    u.scheme(),
                    schemes.join(", ")
                ),
            ),
            Err(e) => self.fail(name, format!("not a valid URL ({e})")),
        }
        Secret::new(raw)
    }

    /// The CA certificates of `amqp_url`'s `cacertfile=<path>` (RabbitMQ's URI query
    /// parameter): only with `amqps://`, a readable file of PEM certificates.
    pub(super) fn amqp_ca(&mut self) -> Option<String> {
        let raw = self.raw("amqp_url").to_owned();
        let u = url::Url::parse(&raw).ok()?;
        let path = u
            .query_pairs()
            .find(|(k, _)| k == "cacertfile")
            .map(|(_, v)| v.into_owned())?;
        if u.scheme() != "amqps" {
            self.fail(
                "amqp_url",
                "cacertfile is given, but the scheme is not amqps".to_owned(),
            );
            return None;
        }
        match std::fs::read_to_string(&path) {
            Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => Some(pem),
            Ok(_) => {
                self.fail(
                    "amqp_url",
                    format!("cacertfile '{path}' holds no PEM certificate"),
                );
                None
            }
            Err(e) => {
                self.fail(
                    "amqp_url",
                    format!("cacertfile '{path}' cannot be read ({e})"),
                );
                None
            }
        }
    }

    pub(super) fn delivery(&mut self) -> DeliveryConfig {
        use crate::providers::{hubspot, salesforce};
        let batching = self.boolean("delivery_batching");
        let timeout = Duration::from_millis(self.ranged("crm_timeout_ms", 100, 600_000));
        let crms = self.crms();
        let hs_fields = self.field_map("hubspot_field_map", &hubspot::default_fields());
        let sf_fields = self.field_map("salesforce_field_map", &salesforce::default_fields());
        DeliveryConfig {
            crms,
            batching,
            linger: Duration::from_millis(self.ranged("delivery_linger_ms", 0, 60_000)),
            linger_max: Duration::from_millis(self.ranged("delivery_linger_max_ms", 0, 60_000)),
            prefetch: self.ranged("delivery_prefetch", 1, 10_000),
            concurrency: self.ranged("delivery_concurrency", 1, 16),
            address_trust: Duration::from_secs(self.ranged(
                "address_index_trust_secs",
                0,
                7 * 86_400,
            )),
            retry_tiers: self.retry_tiers(),
            hubspot: hubspot::HubspotSettings {
                base_url: self.base_url("hubspot_base_url"),
                token: Secret::new(self.raw("hubspot_token")),
                id_property: self.hubspot_id_property(),
                fields: hs_fields,
                rate_limit: self.ranged("hubspot_rate_limit", 1, 100_000),
                batching,
                timeout,
            },
            salesforce: salesforce::SalesforceSettings {
                login_url: self.base_url("salesforce_login_url"),
                client_id: self.raw("salesforce_client_id").trim().to_owned(),
                client_secret: Secret::new(self.raw("salesforce_client_secret")),
                api_version: self.raw("salesforce_api_version").trim().to_owned(),
                external_id_field: self.external_id_field(),
                fields: sf_fields,
                last_name_placeholder: self.raw("salesforce_last_name_placeholder").to_owned(),
                match_by_email: self.boolean("salesforce_match_by_email"),
                client_name: self.raw("salesforce_client_name").trim().to_owned(),
                rate_limit_per_second: self.ranged("salesforce_rate_limit_per_second", 0, 100_000),
                batching,
                timeout,
                reads: salesforce::ReadSettings {
                    bulk_threshold: Some(self.ranged(
                        "salesforce_bulk_read_threshold",
                        0,
                        u64::MAX,
                    )),
                    bulk_page_records: self.ranged("salesforce_bulk_read_page_records", 1, 50_000),
                    ..salesforce::ReadSettings::default()
                },
            },
        }
    }

    /// A Contact external-id field is a custom field: letters, digits and `_`, ending `__c`.
    /// It goes into SOQL and URL paths, so nothing else may pass.
    pub(super) fn external_id_field(&mut self) -> String {
        let f = self.raw("salesforce_external_id_field").trim().to_owned();
        let body = f.strip_suffix("__c").unwrap_or("");
        let ok = body.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && body.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            self.fail(
                "salesforce_external_id_field",
                format!("'{f}' is not a custom field name such as SyncRoot_Id__c"),
            );
        }
        f
    }

    /// HubSpot property internal names: lower-case letters, digits and `_`.
    pub(super) fn hubspot_id_property(&mut self) -> String {
        let p = self.raw("hubspot_id_property").trim().to_owned();
        let ok = !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            self.fail(
                "hubspot_id_property",
                format!("'{p}' is not a HubSpot property name such as email"),
            );
        }
        p
    }

    pub(super) fn crms(&mut self) -> Vec<crate::domain::Crm> {
        let raw = self.raw("crms").to_owned();
        let mut crms = Vec::new();
        for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name.parse::<crate::domain::Crm>() {
                Ok(c) if !crms.contains(&c) => crms.push(c),
                Ok(_) => {}
                Err(e) => self.fail("crms", e),
            }
        }
        crms
    }

    pub(super) fn field_map(
        &mut self,
        name: &str,
        defaults: &[(crate::domain::fields::Field, Option<&str>)],
    ) -> crate::providers::mapping::FieldMap {
        let raw = self.raw(name).to_owned();
        crate::providers::mapping::FieldMap::parse(defaults, &raw).unwrap_or_else(|e| {
            self.fail(name, e);
            crate::providers::mapping::FieldMap::defaults(defaults)
        })
    }

    /// A CRM's base URL: `https://`, or `http://` on loopback only (the sandboxes), because
    /// every call to it carries a token or client secret. `allow_insecure_crms` (local testing:
    /// the sandboxes on another host of a Compose network) lets `http://` reach any host.
    pub(super) fn base_url(&mut self, name: &str) -> String {
        let raw = self.raw(name).trim().trim_end_matches('/').to_owned();
        let allow_insecure = self.boolean("allow_insecure_crms");
        match super::outbound_url(&raw, allow_insecure) {
            Ok(_) => {}
            Err(super::OutboundUrlError::PlainHttp) => self.fail(
                name,
                format!("'{raw}' is http:// to a host that is not loopback; CRM calls carry credentials, so https:// is required (SYNCROOT_ALLOW_INSECURE_CRMS=true allows it for local testing)"),
            ),
            Err(_) => self.fail(name, format!("'{raw}' is not an https URL")),
        }
        raw
    }

    /// The Postgres URL. A database that is not on loopback must be reached over TLS
    /// (`sslmode=require`, `verify-ca` or `verify-full`; `prefer`, the default, falls back to
    /// cleartext without a word) unless `allow_plaintext_database` says otherwise.
    pub(super) fn database_url(&mut self) -> Secret {
        let url = self.url("database_url", &["postgres", "postgresql"]);
        let Ok(u) = url::Url::parse(url.expose()) else {
            return url;
        };
        if !matches!(u.scheme(), "postgres" | "postgresql") {
            return url;
        }
        let mode = u
            .query_pairs()
            .find(|(k, _)| k == "sslmode" || k == "ssl-mode")
            .map(|(_, v)| v.to_ascii_lowercase())
            .unwrap_or_else(|| "prefer".to_owned());
        let tls = matches!(mode.as_str(), "require" | "verify-ca" | "verify-full");
        // No host: a Unix socket, which never leaves the machine.
        let local = u.host().is_none() || super::is_loopback_url(url.expose());
        if !tls && !local && !self.boolean("allow_plaintext_database") {
            self.fail(
                "database_url",
                format!("a database that is not on loopback without TLS (sslmode={mode}); use sslmode=verify-full with sslrootcert=<CA file>, or set SYNCROOT_ALLOW_PLAINTEXT_DATABASE=true"),
            );
        }
        url
    }

    /// A duration in milliseconds where 0 means none.
    pub(super) fn optional_ms(&mut self, name: &str) -> Option<Duration> {
        let ms: u64 = self.ranged(name, 0, 86_400_000);
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    pub(super) fn optional_socket_addr(&mut self, name: &str) -> Option<SocketAddr> {
        if self.raw(name).trim().is_empty() {
            return None;
        }
        Some(self.socket_addr(name))
    }

    pub(super) fn boolean(&mut self, name: &str) -> bool {
        match self.raw(name).trim() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" | "" => false,
            other => {
                let other = other.to_owned();
                self.fail(name, format!("'{other}' is not true or false"));
                false
            }
        }
    }

    pub(super) fn api_keys(&mut self, name: &str) -> Vec<Secret> {
        let keys: Vec<Secret> = self
            .raw(name)
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(Secret::new)
            .collect();
        if keys
            .iter()
            .any(|k| k.expose().len() < 16 || k.expose().chars().any(|c| !c.is_ascii_graphic()))
        {
            self.fail(
                name,
                "every key must be at least 16 printable ASCII characters without spaces".into(),
            );
        }
        keys
    }

    pub(super) fn queue_prefix(&mut self) -> String {
        let p = self.raw("queue_prefix").to_owned();
        let ok = !p.is_empty()
            && p.len() <= 64
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            self.fail(
                "queue_prefix",
                format!("'{p}' must be 1 to 64 letters, digits, '_', '.' or '-'"),
            );
        }
        p
    }

    /// The traces' settings: an `http(s)` endpoint without credentials in it (a collector's
    /// credentials go in `OTEL_EXPORTER_OTLP_HEADERS`), and a service name.
    pub(super) fn trace(&mut self) -> TraceConfig {
        let raw = self.raw("otlp_endpoint").trim().to_owned();
        let otlp_endpoint = if raw.is_empty() {
            None
        } else {
            match url::Url::parse(&raw) {
                Ok(u) if !matches!(u.scheme(), "http" | "https") || !u.has_host() => {
                    self.fail("otlp_endpoint", "must be an http:// or https:// URL".into());
                    None
                }
                Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                    self.fail(
                        "otlp_endpoint",
                        "must not hold credentials; give them in OTEL_EXPORTER_OTLP_HEADERS".into(),
                    );
                    None
                }
                Ok(u) if u.query().is_some() || u.fragment().is_some() => {
                    self.fail("otlp_endpoint", "must not have a query or fragment".into());
                    None
                }
                Ok(u) => Some(u),
                Err(e) => {
                    self.fail("otlp_endpoint", format!("not a valid URL ({e})"));
                    None
                }
            }
        };
        let service_name = self.raw("otlp_service_name").trim().to_owned();
        if service_name.is_empty() {
            self.fail("otlp_service_name", "must not be empty".into());
        }
        TraceConfig {
            otlp_endpoint,
            service_name,
        }
    }

    pub(super) fn log_format(&mut self) -> bool {
        match self.raw("log_format") {
            "text" => false,
            "json" => true,
            other => {
                let other = other.to_owned();
                self.fail("log_format", format!("'{other}' is not 'text' or 'json'"));
                false
            }
        }
    }

    /// The retry tiers' waits: a comma-separated list of durations, each at most a day (a
    /// message held longer than RabbitMQ's consumer timeout is fine, since a tier is a TTL
    /// queue no one consumes, but a day is already past any CRM's outage worth waiting out).
    pub(super) fn retry_tiers(&mut self) -> Vec<Duration> {
        let raw = self.raw("delivery_retry_tiers").to_owned();
        let mut tiers = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match parse_duration(part) {
                Some(d) if d >= Duration::from_millis(10) && d <= Duration::from_secs(86_400) => {
                    tiers.push(d)
                }
                _ => {
                    self.fail(
                        "delivery_retry_tiers",
                        format!("'{part}' is not a duration between 10ms and 24h (e.g. 500ms, 5s, 2m, 1h)"),
                    );
                    return tiers;
                }
            }
        }
        if tiers.len() > 20 {
            self.fail(
                "delivery_retry_tiers",
                format!("{} tiers; at most 20", tiers.len()),
            );
        }
        if tiers.windows(2).any(|w| w[0] > w[1]) {
            self.fail("delivery_retry_tiers", "tiers must not get shorter".into());
        }
        tiers
    }

    /// The listeners' bounds; the idle timeout must exceed the request timeout, or a slow but
    /// legitimate request would lose its connection before it is answered.
    pub(super) fn http_limits(&mut self) -> syncroot_serve::Limits {
        let ms = |p: &mut Self, name: &str| Duration::from_millis(p.ranged(name, 100, 3_600_000));
        let limits = syncroot_serve::Limits {
            header_read_timeout: ms(self, "http_header_timeout_ms"),
            request_timeout: ms(self, "http_request_timeout_ms"),
            idle_timeout: ms(self, "http_idle_timeout_ms"),
            max_connections: self.ranged("http_max_connections", 1, 1_000_000),
            max_in_flight: self.ranged("http_max_in_flight", 1, 1_000_000),
        };
        if limits.idle_timeout <= limits.request_timeout {
            self.fail(
                "http_idle_timeout_ms",
                "must be longer than http_request_timeout_ms".into(),
            );
        }
        limits
    }

    pub(super) fn subscriptions(&mut self) -> SubscriptionConfig {
        let ms = |p: &mut Self, name: &str, min: u64, max: u64| {
            Duration::from_millis(p.ranged(name, min, max))
        };
        let retry_min = ms(self, "subscription_retry_min_ms", 10, 86_400_000);
        let retry_max = ms(self, "subscription_retry_max_ms", 10, 86_400_000);
        if retry_max < retry_min {
            self.fail(
                "subscription_retry_max_ms",
                "must not be less than subscription_retry_min_ms".into(),
            );
        }
        SubscriptionConfig {
            poll: ms(self, "subscription_poll_ms", 10, 3_600_000),
            timeout: ms(self, "subscription_timeout_ms", 100, 300_000),
            retry_min,
            retry_max,
            disable_after: Duration::from_secs(self.ranged(
                "subscription_disable_after_secs",
                1,
                90 * 86_400,
            )),
            concurrency: self.ranged("subscription_concurrency", 1, 1000),
            log_retention: Duration::from_secs(
                3600 * self.ranged::<u64>("subscription_log_retention_hours", 1, 24 * 365),
            ),
        }
    }

    pub(super) fn dead_letter(&mut self) -> DeadLetterConfig {
        let retry_min = Duration::from_millis(self.ranged("dlq_retry_min_ms", 10, 86_400_000));
        let retry_max = Duration::from_millis(self.ranged("dlq_retry_max_ms", 10, 86_400_000));
        if retry_max < retry_min {
            self.fail(
                "dlq_retry_max_ms",
                "must not be less than dlq_retry_min_ms".into(),
            );
        }
        let url = self.raw("alert_url").trim().to_owned();
        let alert_url = if url.is_empty() {
            None
        } else {
            Some(self.url("alert_url", &["http", "https"]))
        };
        DeadLetterConfig {
            retry_min,
            retry_max,
            retry_times: self.ranged("dlq_retry_times", 0, 1000),
            alert_url,
            alert_interval: Duration::from_secs(self.ranged("alert_interval_secs", 1, 86_400)),
        }
    }
}

/// `500ms`, `5s`, `2m`, `1h`; a bare number is milliseconds.
pub(super) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" | "min" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}
