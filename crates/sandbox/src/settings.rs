//! The sandboxes' own settings: where each listens and what it accepts, from `SANDBOX_*`
//! environment variables over built-in defaults.
//!
//! Every key is declared once in [`KEYS`] (name, default, help), which is also what
//! `syncroot-sandbox --help` prints. Loading reports every problem at once, unknown `SANDBOX_*`
//! names included, so a typo fails loudly. SyncRoot's own configuration knows nothing of these.

use std::net::SocketAddr;

use crate::hubspot::HubspotSandboxConfig;
use crate::kit::control::ControlToken;
use crate::salesforce::SalesforceSandboxConfig;

/// Prefix of the sandboxes' environment variables.
pub const ENV_PREFIX: &str = "SANDBOX_";

/// One setting: lower-case name (the variable is `SANDBOX_` + upper case), default, meaning.
pub struct Key {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

const fn key(name: &'static str, default: &'static str, help: &'static str) -> Key {
    Key {
        name,
        default,
        help,
    }
}

/// Every setting the sandboxes read.
pub const KEYS: &[Key] = &[
    key(
        "hubspot_listen",
        "127.0.0.1:8091",
        "where the HubSpot sandbox listens",
    ),
    key(
        "hubspot_token",
        "pat-na1-sandbox-token",
        "private-app token the HubSpot sandbox accepts",
    ),
    key(
        "hubspot_client_secret",
        "sandbox-hubspot-client-secret",
        "client secret the HubSpot sandbox signs webhooks with",
    ),
    key(
        "hubspot_app_id",
        "1160452",
        "app id the HubSpot sandbox reports as sourceId of changes made with its token",
    ),
    key(
        "hubspot_burst_limit",
        "100",
        "HubSpot sandbox requests per rolling 10 s (Starter tier: 100)",
    ),
    key(
        "hubspot_daily_limit",
        "250000",
        "HubSpot sandbox requests per day",
    ),
    key(
        "hubspot_webhook_url",
        "",
        "where the HubSpot sandbox delivers webhooks (empty: none)",
    ),
    key(
        "salesforce_listen",
        "127.0.0.1:8092",
        "where the Salesforce sandbox listens",
    ),
    key(
        "salesforce_client_id",
        "sandbox-sf-client-id",
        "connected-app client id the Salesforce sandbox accepts",
    ),
    key(
        "salesforce_client_secret",
        "sandbox-sf-client-secret",
        "connected-app client secret the Salesforce sandbox accepts",
    ),
    key(
        "salesforce_session_idle_secs",
        "7200",
        "idle time after which a Salesforce sandbox token is refused (INVALID_SESSION_ID)",
    ),
    key(
        "salesforce_daily_limit",
        "100000",
        "Salesforce sandbox API requests per 24 h",
    ),
    key(
        "salesforce_notify_url",
        "",
        "where the Salesforce sandbox posts change notifications (empty: none)",
    ),
    key(
        "salesforce_notify_secret",
        "sandbox-sf-notify-secret",
        "HMAC key of the Salesforce sandbox's change notifications",
    ),
    key(
        "seed_fixtures",
        "false",
        "load a few fixture contacts into the sandboxes at start",
    ),
    key(
        "control_token",
        "",
        "token the /__sandbox/ control API requires in the X-Sandbox-Token header, at least 16 characters (empty: a random one for each run, printed at start)",
    ),
    key(
        "allow_non_loopback",
        "false",
        "let the sandboxes listen on an address other than loopback (docker-compose); whoever reaches them can use the CRM test credentials, and with the control token read every contact and redirect webhooks",
    ),
    key(
        "log",
        "info",
        "log filter of the sandbox binary (tracing EnvFilter syntax)",
    ),
];

/// Both sandboxes' settings.
#[derive(Clone)]
pub struct Settings {
    pub hubspot_listen: SocketAddr,
    pub salesforce_listen: SocketAddr,
    pub hubspot: HubspotSandboxConfig,
    pub salesforce: SalesforceSandboxConfig,
    /// The token both control APIs require (also in `hubspot` and `salesforce`).
    pub control_token: ControlToken,
    /// Whether `control_token` was generated for this run rather than configured.
    pub control_token_generated: bool,
    /// Log filter of the `syncroot-sandbox` binary.
    pub log: String,
}

impl Default for Settings {
    /// The built-in defaults (what [`Settings::from_env`] gives with no variables set).
    fn default() -> Self {
        Self::from_vars(std::iter::empty()).unwrap_or_else(|_| unreachable!("defaults parse"))
    }
}

impl Settings {
    /// Defaults, overridden by this process's `SANDBOX_*` variables.
    pub fn from_env() -> Result<Self, Vec<String>> {
        Self::from_vars(std::env::vars())
    }

    /// Defaults, overridden by the given variables (others than `SANDBOX_*` are ignored);
    /// every problem is listed.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Vec<String>> {
        let mut p = Values::default();
        for k in KEYS {
            p.set(k.name, k.default.to_owned());
        }
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let lower = rest.to_ascii_lowercase();
            match KEYS.iter().find(|k| k.name == lower) {
                Some(k) => p.set(k.name, value),
                None => p.errors.push(format!("{name}: unknown setting")),
            }
        }
        let settings = p.settings();
        if p.errors.is_empty() {
            Ok(settings)
        } else {
            Err(p.errors)
        }
    }
}

/// Raw values by key name, and the problems found parsing them.
#[derive(Default)]
struct Values {
    raw: std::collections::BTreeMap<&'static str, String>,
    errors: Vec<String>,
}

impl Values {
    fn set(&mut self, name: &'static str, value: String) {
        self.raw.insert(name, value);
    }

    fn text(&self, name: &str) -> String {
        self.raw.get(name).cloned().unwrap_or_default()
    }

    /// An optional http(s) URL: empty is `None`.
    fn optional_url(&mut self, name: &str) -> Option<String> {
        let raw = self.text(name).trim().to_owned();
        if raw.is_empty() {
            return None;
        }
        match url::Url::parse(&raw) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Some(raw),
            _ => {
                let var = format!("{ENV_PREFIX}{}", name.to_ascii_uppercase());
                self.errors
                    .push(format!("{var}: '{raw}' is not an http(s) URL"));
                None
            }
        }
    }

    /// Parses a value, recording a problem (and using the default) when it does not parse.
    fn parsed<T: std::str::FromStr>(&mut self, name: &str, what: &str) -> Option<T> {
        let raw = self.text(name);
        match raw.trim().parse() {
            Ok(v) => Some(v),
            Err(_) => {
                let var = format!("{ENV_PREFIX}{}", name.to_ascii_uppercase());
                self.errors.push(format!("{var}: '{raw}' is not {what}"));
                None
            }
        }
    }

    fn settings(&mut self) -> Settings {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let hubspot_listen = self.parsed("hubspot_listen", "host:port").unwrap_or(any);
        let salesforce_listen = self.parsed("salesforce_listen", "host:port").unwrap_or(any);
        // The wire-protocol routes take the well-known sandbox credentials: loopback unless
        // explicitly allowed.
        let allow_any = self
            .parsed("allow_non_loopback", "true or false")
            .unwrap_or(false);
        for (name, addr) in [
            ("hubspot_listen", hubspot_listen),
            ("salesforce_listen", salesforce_listen),
        ] {
            if !allow_any && !addr.ip().is_loopback() {
                let var = format!("{ENV_PREFIX}{}", name.to_ascii_uppercase());
                self.errors.push(format!(
                    "{var}: {addr} is not a loopback address; the sandboxes accept well-known test credentials (set {ENV_PREFIX}ALLOW_NON_LOOPBACK=true to serve them anyway)"
                ));
            }
        }
        let seed_fixtures = self
            .parsed("seed_fixtures", "true or false")
            .unwrap_or(false);
        let (control_token, control_token_generated) = self.control_token();
        let hubspot = HubspotSandboxConfig {
            access_token: self.text("hubspot_token"),
            client_secret: self.text("hubspot_client_secret"),
            app_id: self.parsed("hubspot_app_id", "a number").unwrap_or(1),
            burst_limit: self.parsed("hubspot_burst_limit", "a number").unwrap_or(1),
            daily_limit: self.parsed("hubspot_daily_limit", "a number").unwrap_or(1),
            webhook_url: self.optional_url("hubspot_webhook_url"),
            seed_fixtures,
            control_token: control_token.clone(),
            ..Default::default()
        };
        let salesforce = SalesforceSandboxConfig {
            client_id: self.text("salesforce_client_id"),
            client_secret: self.text("salesforce_client_secret"),
            session_idle_timeout_secs: self
                .parsed("salesforce_session_idle_secs", "a number of seconds")
                .unwrap_or(1),
            daily_limit: self
                .parsed("salesforce_daily_limit", "a number")
                .unwrap_or(1),
            notify_url: self.optional_url("salesforce_notify_url"),
            notify_secret: self.text("salesforce_notify_secret"),
            seed_fixtures,
            control_token: control_token.clone(),
            ..Default::default()
        };
        Settings {
            hubspot_listen,
            salesforce_listen,
            hubspot,
            salesforce,
            control_token,
            control_token_generated,
            log: self.text("log"),
        }
    }

    /// The configured control token, or a random one (and `true`) when none is set.
    fn control_token(&mut self) -> (ControlToken, bool) {
        let raw = self.text("control_token").trim().to_owned();
        if raw.is_empty() {
            return (ControlToken::generate(), true);
        }
        if raw.chars().count() < ControlToken::MIN_LEN {
            // The value is a secret: say what is wrong, never echo it.
            self.errors.push(format!(
                "{ENV_PREFIX}CONTROL_TOKEN: shorter than {} characters",
                ControlToken::MIN_LEN
            ));
        }
        (ControlToken::new(raw), false)
    }
}

/// The settings table, for `--help`.
pub fn describe() -> String {
    let mut out = String::from("Settings (environment variables):\n");
    for k in KEYS {
        let var = format!("{ENV_PREFIX}{}", k.name.to_ascii_uppercase());
        out.push_str(&format!(
            "  {var:<36} {}  [default: {}]\n",
            k.help, k.default
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_match_the_crm_clients_defaults() {
        let s = Settings::default();
        assert_eq!(s.hubspot_listen.to_string(), "127.0.0.1:8091");
        assert_eq!(s.salesforce_listen.to_string(), "127.0.0.1:8092");
        assert_eq!(s.hubspot.access_token, "pat-na1-sandbox-token");
        assert_eq!(s.salesforce.client_id, "sandbox-sf-client-id");
        assert_eq!(s.hubspot.webhook_url, None);
    }

    #[test]
    fn a_non_loopback_listen_address_is_refused_unless_allowed() {
        let Err(errors) = Settings::from_vars(vars(&[("SANDBOX_HUBSPOT_LISTEN", "0.0.0.0:8091")]))
        else {
            panic!("0.0.0.0 was accepted");
        };
        let errors = errors.join("\n");
        assert!(
            errors.contains("SANDBOX_HUBSPOT_LISTEN: 0.0.0.0:8091 is not a loopback address"),
            "{errors}"
        );
        let s = Settings::from_vars(vars(&[
            ("SANDBOX_HUBSPOT_LISTEN", "0.0.0.0:8091"),
            ("SANDBOX_ALLOW_NON_LOOPBACK", "true"),
        ]))
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(s.hubspot_listen.to_string(), "0.0.0.0:8091");
    }

    #[test]
    fn the_control_token_is_random_unless_set_and_a_short_one_is_refused() {
        let (a, b) = (Settings::default(), Settings::default());
        assert!(a.control_token_generated);
        assert_eq!(a.control_token.expose().len(), 32);
        assert_ne!(a.control_token, b.control_token, "each run has its own");
        assert_eq!(a.hubspot.control_token, a.control_token);
        assert_eq!(a.salesforce.control_token, a.control_token);
        let set = "a-control-token-of-some-length";
        let s = Settings::from_vars(vars(&[("SANDBOX_CONTROL_TOKEN", set)])).unwrap();
        assert!(!s.control_token_generated);
        assert_eq!(s.control_token.expose(), set);
        assert_eq!(s.hubspot.control_token.expose(), set);
        let Err(errors) = Settings::from_vars(vars(&[("SANDBOX_CONTROL_TOKEN", "short-secret")]))
        else {
            panic!("a 12-character token was accepted");
        };
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("SANDBOX_CONTROL_TOKEN: shorter than 16"));
        assert!(!errors[0].contains("short-secret"), "the secret is echoed");
    }

    #[test]
    fn every_problem_is_listed() {
        let errors = Settings::from_vars(vars(&[
            ("SANDBOX_HUBSPOT_LISTEN", "nowhere"),
            ("SANDBOX_SALESFORCE_DAILY_LIMIT", "lots"),
            ("SANDBOX_HUBSPOT_TOKN", "x"),
            ("SYNCROOT_API_KEYS", "ignored"),
        ]))
        .err()
        .unwrap();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("SANDBOX_HUBSPOT_LISTEN")));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("SANDBOX_SALESFORCE_DAILY_LIMIT"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("SANDBOX_HUBSPOT_TOKN: unknown"))
        );
    }

    #[test]
    fn variables_override_defaults() {
        let s = Settings::from_vars(vars(&[
            ("SANDBOX_SALESFORCE_LISTEN", "127.0.0.1:0"),
            (
                "SANDBOX_HUBSPOT_WEBHOOK_URL",
                "http://127.0.0.1:9/webhooks/hubspot",
            ),
            ("SANDBOX_SEED_FIXTURES", "true"),
        ]))
        .unwrap();
        assert_eq!(s.salesforce_listen.port(), 0);
        assert_eq!(
            s.hubspot.webhook_url.as_deref(),
            Some("http://127.0.0.1:9/webhooks/hubspot")
        );
        assert!(s.hubspot.seed_fixtures && s.salesforce.seed_fixtures);
    }
}
