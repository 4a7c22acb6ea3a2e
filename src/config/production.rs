//! What a production role (`api`, `forwarder`, `delivery`, `webhooks`, `dlq-worker`,
//! `subscriptions`) refuses to
//! start with: no API keys, a development default credential (RabbitMQ's `guest:guest`, a
//! password-less Postgres URL), the CRM sandboxes' addresses or credentials for an enabled CRM.
//! Each has an explicit opt-out (`allow_insecure_*`) for running the roles against local
//! services, as the test harness and the chaos run do.
//!
//! Not here: `syncroot all`, the development mode (see [`development_problems`]), and checks
//! every mode shares (parsing in `layers`/`parse`).

use super::{Config, ENV_PREFIX};
use crate::domain::Crm;

/// The production roles, for what each one needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Api,
    Forwarder,
    Delivery,
    Webhooks,
    DeadLetter,
    Subscriptions,
}

impl Role {
    fn command(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Forwarder => "forwarder",
            Role::Delivery => "delivery",
            Role::Webhooks => "webhooks",
            Role::DeadLetter => "dlq-worker",
            Role::Subscriptions => "subscriptions",
        }
    }

    /// Roles that use RabbitMQ (the subscription sender reads Postgres only).
    fn uses_broker(self) -> bool {
        self != Role::Subscriptions
    }

    /// Roles that call the CRMs.
    fn calls_crms(self) -> bool {
        matches!(self, Role::Delivery | Role::Webhooks)
    }
}

/// What the CRM sandboxes accept, which is also what the built-in defaults point at: fine for
/// `make run`, never for production.
const SANDBOX_HUBSPOT_TOKEN: &str = "pat-na1-sandbox-token";
const SANDBOX_SALESFORCE_CLIENT_ID: &str = "sandbox-sf-client-id";
const SANDBOX_SALESFORCE_CLIENT_SECRET: &str = "sandbox-sf-client-secret";

/// Opt-outs of the production checks, each for local testing only.
#[derive(Clone, Debug, Default)]
pub struct InsecureAllowed {
    /// RabbitMQ as `guest:guest` (or without credentials, which means `guest:guest`).
    pub broker: bool,
    /// Postgres without a password in the URL.
    pub database: bool,
    /// The CRM sandboxes' addresses and credentials.
    pub crms: bool,
}

fn env(name: &str) -> String {
    format!("{ENV_PREFIX}{}", name.to_ascii_uppercase())
}

/// Every reason `role` must not start with `cfg`, one line each naming the setting; empty: fine.
pub fn production_problems(cfg: &Config, role: Role) -> Vec<String> {
    let mut problems = Vec::new();
    let allowed = &cfg.insecure;
    if role == Role::Api && cfg.api.keys.is_empty() && cfg.api.read_keys.is_empty() {
        problems.push(format!(
            "{}: no API keys configured, nor {} (every /contacts request would be refused); generated keys are a development-mode feature of `syncroot all`",
            env("api_keys"),
            env("read_keys")
        ));
    }
    if role.uses_broker() && !allowed.broker && broker_is_guest(cfg.queue.amqp_url.expose()) {
        problems.push(format!(
            "{}: RabbitMQ's development default credential guest:guest (set a user and password; {}=true allows it for local testing)",
            env("amqp_url"),
            env("allow_insecure_broker")
        ));
    }
    if !allowed.database && database_has_no_password(cfg.database.url.expose()) {
        problems.push(format!(
            "{}: Postgres URL without a password (set one, or a client certificate with sslcert/sslkey; {}=true allows it for local testing)",
            env("database_url"),
            env("allow_insecure_database")
        ));
    }
    if role.calls_crms() && !allowed.crms {
        problems.extend(sandbox_crm_settings(cfg));
    }
    problems
}

/// The message `main` stops a production role with.
pub fn refusal(role: Role, problems: &[String]) -> String {
    let mut out = format!(
        "refusing to start `syncroot {}` in production mode ({} problem(s)):\n",
        role.command(),
        problems.len()
    );
    for p in problems {
        out.push_str(&format!("  - {p}\n"));
    }
    out.push_str(
        "`syncroot all` is the development mode (generated keys, CRM sandboxes, loopback only).",
    );
    out
}

/// Why `syncroot all` (the development mode) must not start: it only serves on loopback.
pub fn development_problems(cfg: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if !cfg.api.listen.ip().is_loopback() {
        problems.push(format!(
            "{}: {} is not a loopback address; `syncroot all` is a development mode and binds to loopback only (run the production roles to serve others)",
            env("api_listen"),
            cfg.api.listen
        ));
    }
    problems
}

fn broker_is_guest(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    let user = match u.username() {
        "" => "guest",
        user => user,
    };
    let password = u.password().unwrap_or("guest");
    user == "guest" && password == "guest"
}

fn database_has_no_password(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    let in_query = u
        .query_pairs()
        .any(|(k, v)| (k == "password" && !v.is_empty()) || k == "sslcert");
    u.password().is_none_or(str::is_empty) && !in_query
}

/// Each enabled CRM's settings that are still the sandboxes'.
fn sandbox_crm_settings(cfg: &Config) -> Vec<String> {
    let d = &cfg.delivery;
    let allow = env("allow_insecure_crms");
    let mut problems = Vec::new();
    let mut flag = |name: &str, what: &str| {
        problems.push(format!(
            "{}: {what} while {} is enabled ({allow}=true allows it for local testing)",
            env(name),
            if name.starts_with("hubspot") {
                "HubSpot"
            } else {
                "Salesforce"
            }
        ));
    };
    for crm in &d.crms {
        match crm {
            Crm::Hubspot => {
                if is_loopback_url(&d.hubspot.base_url) {
                    flag("hubspot_base_url", "a loopback address (the local sandbox)");
                }
                if d.hubspot.token.expose() == SANDBOX_HUBSPOT_TOKEN {
                    flag("hubspot_token", "the sandbox's token");
                }
            }
            Crm::Salesforce => {
                if is_loopback_url(&d.salesforce.login_url) {
                    flag(
                        "salesforce_login_url",
                        "a loopback address (the local sandbox)",
                    );
                }
                if d.salesforce.client_id == SANDBOX_SALESFORCE_CLIENT_ID {
                    flag("salesforce_client_id", "the sandbox's client id");
                }
                if d.salesforce.client_secret.expose() == SANDBOX_SALESFORCE_CLIENT_SECRET {
                    flag("salesforce_client_secret", "the sandbox's client secret");
                }
            }
        }
    }
    problems
}

/// Why a URL SyncRoot sends credentials or signed data to is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboundUrlError {
    /// Not a URL, or not `http(s)://` with a host.
    NotHttps,
    /// `http://` to a host that is not loopback, without `allow_insecure_crms`.
    PlainHttp,
}

/// The rule for every URL SyncRoot calls out to (a CRM's base URL, a subscription's target):
/// `https://`; `http://` on loopback only (the sandboxes, a local receiver); `http://` to any
/// host with `allow_insecure_crms` (local testing: the sandboxes on a Compose network).
pub fn outbound_url(raw: &str, allow_insecure: bool) -> Result<url::Url, OutboundUrlError> {
    let u = url::Url::parse(raw).map_err(|_| OutboundUrlError::NotHttps)?;
    if !u.has_host() {
        return Err(OutboundUrlError::NotHttps);
    }
    match u.scheme() {
        "https" => Ok(u),
        "http" if allow_insecure || is_loopback_url(raw) => Ok(u),
        "http" => Err(OutboundUrlError::PlainHttp),
        _ => Err(OutboundUrlError::NotHttps),
    }
}

/// True for `http(s)://` URLs whose host is `localhost` or a loopback IP address.
pub fn is_loopback_url(url: &str) -> bool {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        // Hosts of schemes the URL standard does not know (postgres://) stay text.
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_broker_and_password_less_database_are_recognised() {
        assert!(broker_is_guest("amqp://guest:guest@127.0.0.1:5672/%2f"));
        assert!(broker_is_guest("amqp://rabbit.internal:5672/%2f"));
        assert!(!broker_is_guest("amqps://sync:s3cret@rabbit.internal/%2f"));
        assert!(database_has_no_password("postgres://postgres@db:5432/x"));
        assert!(!database_has_no_password("postgres://sync:pw@db:5432/x"));
        assert!(!database_has_no_password(
            "postgres://sync@db/x?sslmode=verify-full&sslcert=/c.pem&sslkey=/k.pem"
        ));
    }

    #[test]
    fn loopback_urls() {
        assert!(is_loopback_url("http://127.0.0.1:8091"));
        assert!(is_loopback_url("http://localhost:8091"));
        assert!(is_loopback_url("http://[::1]:8091"));
        assert!(!is_loopback_url("https://api.hubapi.com"));
        assert!(!is_loopback_url("http://127.0.0.1.example.com"));
        assert!(is_loopback_url("postgres://u@127.0.0.1:5432/db"));
        assert!(!is_loopback_url("postgres://u@10.0.0.5:5432/db"));
    }

    #[test]
    fn outbound_urls_are_https_or_loopback_http_unless_insecure_is_allowed() {
        assert!(outbound_url("https://hooks.example.com/x", false).is_ok());
        assert!(outbound_url("http://127.0.0.1:9000/x", false).is_ok());
        assert_eq!(
            outbound_url("http://hooks.example.com/x", false),
            Err(OutboundUrlError::PlainHttp)
        );
        assert!(outbound_url("http://hooks.example.com/x", true).is_ok());
        for bad in ["ftp://example.com", "not a url", "https://", "mailto:a@b.c"] {
            assert_eq!(
                outbound_url(bad, true),
                Err(OutboundUrlError::NotHttps),
                "{bad}"
            );
        }
    }
}
