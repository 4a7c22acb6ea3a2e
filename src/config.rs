//! Typed configuration, loaded once at start: built-in defaults, then an optional TOML file,
//! then `SYNCROOT_*` environment variables, each layer overriding the one before.
//!
//! Every key is declared once in [`KEYS`] (name, default, help), which is also what
//! `syncroot config` prints. Loading parses every key and reports **every** problem at once,
//! including unknown keys, so a typo such as `SYNCROOT_API_KEY` fails loudly instead of being
//! ignored. This is the only module that reads the process environment.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// A value that must never be printed: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One configuration key.
pub struct Key {
    /// Name in the file (`[api] listen` is `api_listen`) and, upper-cased after `SYNCROOT_`,
    /// in the environment.
    pub name: &'static str,
    pub default: &'static str,
    pub secret: bool,
    pub help: &'static str,
}

const fn key(name: &'static str, default: &'static str, help: &'static str) -> Key {
    Key {
        name,
        default,
        secret: false,
        help,
    }
}
const fn secret(name: &'static str, default: &'static str, help: &'static str) -> Key {
    Key {
        name,
        default,
        secret: true,
        help,
    }
}

/// Every key SyncRoot reads.
pub const KEYS: &[Key] = &[
    key(
        "api_listen",
        "127.0.0.1:8080",
        "address the REST API listens on",
    ),
    secret(
        "api_keys",
        "",
        "comma-separated bearer keys for /contacts (at least 16 characters each); `all` generates a development key when empty",
    ),
    key(
        "api_max_body_bytes",
        "65536",
        "largest accepted request body, in bytes (larger: 413)",
    ),
    key(
        "api_publish_timeout_ms",
        "5000",
        "how long the API waits for RabbitMQ's publisher confirm before answering 503",
    ),
    key(
        "api_idempotency_ttl_hours",
        "24",
        "how long an Idempotency-Key is remembered",
    ),
    secret(
        "database_url",
        "postgres://postgres@127.0.0.1:5432/syncroot",
        "Postgres connection URL",
    ),
    key(
        "database_max_connections",
        "32",
        "size of each process's Postgres connection pool",
    ),
    secret(
        "amqp_url",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        "RabbitMQ (AMQP 0-9-1) connection URL",
    ),
    key(
        "queue_prefix",
        "syncroot",
        "prefix of every exchange and queue name, so several installations can share a broker",
    ),
    key(
        "queue_shards",
        "8",
        "number of contact-change queues; a contact always maps to the same one (changing it reorders in-flight changes)",
    ),
    key(
        "queue_delivery_limit",
        "20",
        "deliveries of one message before RabbitMQ dead-letters it (poison-message backstop)",
    ),
    key(
        "forwarder_prefetch",
        "64",
        "unacknowledged messages per shard a forwarder holds",
    ),
    key(
        "forwarder_concurrency",
        "64",
        "changes a forwarder process applies at once",
    ),
    key(
        "shutdown_grace_secs",
        "30",
        "on SIGTERM/SIGINT, how long in-flight work may take before the process exits anyway",
    ),
    key(
        "crms",
        "hubspot,salesforce",
        "CRMs to deliver to, comma-separated (hubspot, salesforce); empty delivers nowhere",
    ),
    key(
        "delivery_batching",
        "true",
        "group writes into the CRMs' batch endpoints (false: one call per contact per CRM)",
    ),
    key(
        "delivery_linger_ms",
        "20",
        "how long a delivery worker waits for more changes before sending a partial batch",
    ),
    key(
        "delivery_prefetch",
        "1000",
        "unacknowledged deliveries a delivery worker holds per CRM (at least a batch)",
    ),
    key(
        "delivery_retry_min_ms",
        "500",
        "first wait before a failed delivery is tried again (doubling, with jitter)",
    ),
    key(
        "delivery_retry_max_ms",
        "60000",
        "longest wait between delivery attempts, unless the CRM asks for longer",
    ),
    key("crm_timeout_ms", "30000", "timeout of one CRM API call"),
    key(
        "hubspot_base_url",
        "http://127.0.0.1:8091",
        "HubSpot API base URL (https://api.hubapi.com; default: the local sandbox)",
    ),
    secret(
        "hubspot_token",
        "pat-na1-sandbox-token",
        "HubSpot private-app access token",
    ),
    key(
        "hubspot_id_property",
        "email",
        "HubSpot property identifying a contact before it is linked: email or a unique custom property",
    ),
    key(
        "hubspot_field_map",
        "",
        "overrides of the HubSpot field mapping: field=property pairs, '-' leaves a field out (e.g. job_title=jobtitle,company=-)",
    ),
    key(
        "hubspot_rate_limit",
        "100",
        "HubSpot requests per rolling 10 s SyncRoot allows itself (HubSpot's headers can only lower it)",
    ),
    key(
        "salesforce_login_url",
        "http://127.0.0.1:8092",
        "Salesforce My Domain URL where /services/oauth2/token is (default: the local sandbox)",
    ),
    key(
        "salesforce_client_id",
        "sandbox-sf-client-id",
        "Salesforce connected app consumer key (client-credentials flow)",
    ),
    secret(
        "salesforce_client_secret",
        "sandbox-sf-client-secret",
        "Salesforce connected app consumer secret",
    ),
    key(
        "salesforce_api_version",
        "62.0",
        "Salesforce REST API version",
    ),
    key(
        "salesforce_external_id_field",
        "SyncRoot_Id__c",
        "Contact external-id field (unique, External ID) holding SyncRoot's contact id",
    ),
    key(
        "salesforce_field_map",
        "",
        "overrides of the Salesforce field mapping: field=Field pairs, '-' leaves a field out (e.g. company=Company__c)",
    ),
    key(
        "salesforce_last_name_placeholder",
        "[not provided]",
        "LastName sent for contacts without a last name (Salesforce requires one)",
    ),
    key(
        "salesforce_match_by_email",
        "true",
        "link an existing Salesforce Contact with the same e-mail instead of creating a second one (one query per batch of new contacts)",
    ),
    key(
        "salesforce_client_name",
        "syncroot",
        "client name sent in Sforce-Call-Options, so change events name SyncRoot as the writer",
    ),
    key(
        "salesforce_rate_limit_per_second",
        "0",
        "Salesforce requests per second SyncRoot allows itself (0: unlimited; Salesforce limits per day)",
    ),
    key(
        "sandbox_hubspot_listen",
        "127.0.0.1:8091",
        "where the HubSpot sandbox listens (`sandbox`, `all`)",
    ),
    secret(
        "sandbox_hubspot_token",
        "pat-na1-sandbox-token",
        "private-app token the HubSpot sandbox accepts",
    ),
    secret(
        "sandbox_hubspot_client_secret",
        "sandbox-hubspot-client-secret",
        "client secret the HubSpot sandbox signs webhooks with",
    ),
    key(
        "sandbox_hubspot_app_id",
        "1160452",
        "app id the HubSpot sandbox reports as sourceId of changes made with its token",
    ),
    key(
        "sandbox_hubspot_burst_limit",
        "100",
        "HubSpot sandbox requests per rolling 10 s (Starter tier: 100)",
    ),
    key(
        "sandbox_hubspot_daily_limit",
        "250000",
        "HubSpot sandbox requests per day",
    ),
    key(
        "sandbox_hubspot_webhook_url",
        "",
        "where the HubSpot sandbox delivers webhooks (empty: none)",
    ),
    key(
        "sandbox_salesforce_listen",
        "127.0.0.1:8092",
        "where the Salesforce sandbox listens (`sandbox`, `all`)",
    ),
    key(
        "sandbox_salesforce_client_id",
        "sandbox-sf-client-id",
        "connected-app client id the Salesforce sandbox accepts",
    ),
    secret(
        "sandbox_salesforce_client_secret",
        "sandbox-sf-client-secret",
        "connected-app client secret the Salesforce sandbox accepts",
    ),
    key(
        "sandbox_salesforce_session_idle_secs",
        "7200",
        "idle time after which a Salesforce sandbox token is refused (INVALID_SESSION_ID)",
    ),
    key(
        "sandbox_salesforce_daily_limit",
        "100000",
        "Salesforce sandbox API requests per 24 h",
    ),
    key(
        "sandbox_salesforce_notify_url",
        "",
        "where the Salesforce sandbox posts change notifications (empty: none)",
    ),
    secret(
        "sandbox_salesforce_notify_secret",
        "sandbox-sf-notify-secret",
        "HMAC key of the Salesforce sandbox's change notifications",
    ),
    key(
        "sandbox_seed_fixtures",
        "false",
        "load a few fixture contacts into the sandboxes at start",
    ),
    key(
        "log",
        "info",
        "log filter (tracing EnvFilter syntax, e.g. `info,syncroot=debug`)",
    ),
    key("log_format", "text", "`text` or `json`"),
];

/// The loaded configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub api: ApiConfig,
    pub database: DatabaseConfig,
    pub queue: QueueConfig,
    pub forwarder: ForwarderConfig,
    pub shutdown_grace: Duration,
    pub log: LogConfig,
    pub sandbox: SandboxSettings,
    pub delivery: DeliveryConfig,
}

/// Delivery to the CRMs.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// The enabled CRMs.
    pub crms: Vec<crate::domain::Crm>,
    pub batching: bool,
    pub linger: Duration,
    pub prefetch: u16,
    /// Backoff bounds between delivery attempts.
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub hubspot: crate::providers::hubspot::HubspotSettings,
    pub salesforce: crate::providers::salesforce::SalesforceSettings,
}

/// Settings of the local CRM sandboxes (`syncroot sandbox`, `syncroot all`).
#[derive(Clone, Debug)]
pub struct SandboxSettings {
    pub hubspot_listen: SocketAddr,
    pub hubspot_token: Secret,
    pub hubspot_client_secret: Secret,
    pub hubspot_app_id: u64,
    pub hubspot_burst_limit: u32,
    pub hubspot_daily_limit: u32,
    pub hubspot_webhook_url: Option<String>,
    pub salesforce_listen: SocketAddr,
    pub salesforce_client_id: String,
    pub salesforce_client_secret: Secret,
    pub salesforce_session_idle: Duration,
    pub salesforce_daily_limit: u32,
    pub salesforce_notify_url: Option<String>,
    pub salesforce_notify_secret: Secret,
    pub seed_fixtures: bool,
}

#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub keys: Vec<Secret>,
    pub max_body_bytes: usize,
    pub publish_timeout: Duration,
    pub idempotency_ttl: Duration,
}

#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    pub url: Secret,
    pub max_connections: u32,
}

#[derive(Clone, Debug)]
pub struct QueueConfig {
    pub amqp_url: Secret,
    pub prefix: String,
    pub shards: u16,
    pub delivery_limit: u32,
}

#[derive(Clone, Debug)]
pub struct ForwarderConfig {
    pub prefetch: u16,
    pub concurrency: usize,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub filter: String,
    pub json: bool,
}

/// Every problem found while loading, one line each.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where a value came from, for error messages and `syncroot config`.
#[derive(Clone, Debug)]
pub enum Origin {
    Default,
    File(String),
    Env,
}

/// The merged raw values, before parsing.
#[derive(Debug, Default)]
pub struct Layers {
    values: BTreeMap<&'static str, (String, Origin)>,
    errors: Vec<String>,
}

const ENV_PREFIX: &str = "SYNCROOT_";
/// Environment variable naming the config file (read before the layers are merged).
pub const CONFIG_FILE_ENV: &str = "SYNCROOT_CONFIG";

impl Layers {
    /// Defaults, then the file (if any), then the given environment.
    pub fn gather(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut l = Self::default();
        for k in KEYS {
            l.values
                .insert(k.name, (k.default.to_owned(), Origin::Default));
        }
        if let Some(path) = file {
            l.read_file(path);
        }
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if name == CONFIG_FILE_ENV {
                continue;
            }
            let lower = rest.to_ascii_lowercase();
            match KEYS.iter().find(|k| k.name == lower) {
                Some(k) => {
                    l.values.insert(k.name, (value, Origin::Env));
                }
                None => l
                    .errors
                    .push(format!("{name}: unknown setting (known: {})", env_names())),
            }
        }
        l
    }

    fn read_file(&mut self, path: &Path) {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                return self
                    .errors
                    .push(format!("{shown}: cannot read config file: {e}"));
            }
        };
        match text.parse::<toml::Table>() {
            Ok(table) => self.flatten(&shown, "", &table),
            Err(e) => self.errors.push(format!("{shown}: not valid TOML: {e}")),
        }
    }

    fn flatten(&mut self, file: &str, prefix: &str, table: &toml::Table) {
        for (k, v) in table {
            let name = format!("{prefix}{k}");
            if let toml::Value::Table(t) = v {
                self.flatten(file, &format!("{name}_"), t);
                continue;
            }
            let Some(key) = KEYS.iter().find(|key| key.name == name) else {
                self.errors
                    .push(format!("{file}: unknown setting '{name}'"));
                continue;
            };
            match toml_scalar(v) {
                Some(s) => {
                    self.values
                        .insert(key.name, (s, Origin::File(file.to_owned())));
                }
                None => self.errors.push(format!(
                    "{file}: '{name}' must be a string, number, boolean or list of those"
                )),
            }
        }
    }

    /// The value and origin of a key, for `syncroot config`.
    pub fn get(&self, name: &str) -> Option<&(String, Origin)> {
        self.values.get(name)
    }

    /// Parses every key; returns every problem at once.
    pub fn parse(self) -> Result<Config, ConfigErrors> {
        let mut p = Parser {
            layers: &self,
            errors: Vec::new(),
        };
        let cfg = Config {
            api: ApiConfig {
                listen: p.socket_addr("api_listen"),
                keys: p.api_keys(),
                max_body_bytes: p.ranged("api_max_body_bytes", 1024, 64 * 1024 * 1024),
                publish_timeout: Duration::from_millis(p.ranged(
                    "api_publish_timeout_ms",
                    100,
                    120_000,
                )),
                idempotency_ttl: Duration::from_secs(
                    3600 * p.ranged::<u64>("api_idempotency_ttl_hours", 1, 24 * 30),
                ),
            },
            database: DatabaseConfig {
                url: p.url("database_url", &["postgres", "postgresql"]),
                max_connections: p.ranged("database_max_connections", 2, 1000),
            },
            queue: QueueConfig {
                amqp_url: p.url("amqp_url", &["amqp", "amqps"]),
                prefix: p.queue_prefix(),
                shards: p.ranged("queue_shards", 1, 256),
                delivery_limit: p.ranged("queue_delivery_limit", 1, 1000),
            },
            forwarder: ForwarderConfig {
                prefetch: p.ranged("forwarder_prefetch", 1, 2000),
                concurrency: p.ranged("forwarder_concurrency", 1, 10_000),
            },
            shutdown_grace: Duration::from_secs(p.ranged("shutdown_grace_secs", 1, 3600)),
            log: LogConfig {
                filter: p.raw("log").to_owned(),
                json: p.log_format(),
            },
            delivery: p.delivery(),
            sandbox: SandboxSettings {
                hubspot_listen: p.socket_addr("sandbox_hubspot_listen"),
                hubspot_token: Secret::new(p.raw("sandbox_hubspot_token")),
                hubspot_client_secret: Secret::new(p.raw("sandbox_hubspot_client_secret")),
                hubspot_app_id: p.ranged("sandbox_hubspot_app_id", 1, u64::MAX),
                hubspot_burst_limit: p.ranged("sandbox_hubspot_burst_limit", 1, 1_000_000),
                hubspot_daily_limit: p.ranged("sandbox_hubspot_daily_limit", 1, u32::MAX),
                hubspot_webhook_url: p.optional_url("sandbox_hubspot_webhook_url"),
                salesforce_listen: p.socket_addr("sandbox_salesforce_listen"),
                salesforce_client_id: p.raw("sandbox_salesforce_client_id").to_owned(),
                salesforce_client_secret: Secret::new(p.raw("sandbox_salesforce_client_secret")),
                salesforce_session_idle: Duration::from_secs(p.ranged(
                    "sandbox_salesforce_session_idle_secs",
                    1,
                    86_400 * 7,
                )),
                salesforce_daily_limit: p.ranged("sandbox_salesforce_daily_limit", 1, u32::MAX),
                salesforce_notify_url: p.optional_url("sandbox_salesforce_notify_url"),
                salesforce_notify_secret: Secret::new(p.raw("sandbox_salesforce_notify_secret")),
                seed_fixtures: p.boolean("sandbox_seed_fixtures"),
            },
        };
        let mut errors = self.errors.clone();
        errors.extend(p.errors);
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

/// Loads the configuration of this process: `file` (or `SYNCROOT_CONFIG`) and the environment.
pub fn load(file: Option<&Path>) -> Result<Config, ConfigErrors> {
    gather_process(file).parse()
}

/// The raw layers of this process, for `syncroot config`.
pub fn gather_process(file: Option<&Path>) -> Layers {
    let from_env = std::env::var_os(CONFIG_FILE_ENV).map(std::path::PathBuf::from);
    let file = file.map(Path::to_path_buf).or(from_env);
    Layers::gather(file.as_deref(), std::env::vars())
}

struct Parser<'a> {
    layers: &'a Layers,
    errors: Vec<String>,
}

impl Parser<'_> {
    fn raw(&self, name: &str) -> &str {
        self.layers.values.get(name).map_or("", |(v, _)| v.as_str())
    }

    fn fail(&mut self, name: &str, problem: String) {
        let shown = match self.layers.values.get(name) {
            Some((_, Origin::Env)) => format!("{ENV_PREFIX}{}", name.to_ascii_uppercase()),
            Some((_, Origin::File(f))) => format!("{f}: {name}"),
            _ => name.to_owned(),
        };
        self.errors.push(format!("{shown}: {problem}"));
    }

    fn get<T: FromStr + Default>(&mut self, name: &str, what: &str) -> T {
        let raw = self.raw(name).trim().to_owned();
        raw.parse().unwrap_or_else(|_| {
            self.fail(name, format!("'{raw}' is not {what}"));
            T::default()
        })
    }

    fn socket_addr(&mut self, name: &str) -> SocketAddr {
        let raw = self.raw(name).trim().to_owned();
        raw.parse().unwrap_or_else(|_| {
            self.fail(
                name,
                format!("'{raw}' is not a socket address such as 127.0.0.1:8080"),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    fn ranged<T>(&mut self, name: &str, min: T, max: T) -> T
    where
        T: FromStr + Default + PartialOrd + fmt::Display + Copy,
    {
        let v: T = self.get(name, &format!("a whole number from {min} to {max}"));
        if self.raw(name).trim().parse::<T>().is_ok() && (v < min || v > max) {
            self.fail(name, format!("{v} is out of range {min}..={max}"));
        }
        v
    }

    fn url(&mut self, name: &str, schemes: &[&str]) -> Secret {
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
        Secret(raw)
    }

    fn delivery(&mut self) -> DeliveryConfig {
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
            prefetch: self.ranged("delivery_prefetch", 1, 10_000),
            retry_min: Duration::from_millis(self.ranged("delivery_retry_min_ms", 10, 3_600_000)),
            retry_max: Duration::from_millis(self.ranged("delivery_retry_max_ms", 10, 3_600_000)),
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
            },
        }
    }

    /// A Contact external-id field is a custom field: letters, digits and `_`, ending `__c`.
    /// It goes into SOQL and URL paths, so nothing else may pass.
    fn external_id_field(&mut self) -> String {
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
    fn hubspot_id_property(&mut self) -> String {
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

    fn crms(&mut self) -> Vec<crate::domain::Crm> {
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

    fn field_map(
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

    fn base_url(&mut self, name: &str) -> String {
        let raw = self.raw(name).trim().trim_end_matches('/').to_owned();
        match url::Url::parse(&raw) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => self.fail(name, format!("'{raw}' is not an http(s) URL")),
        }
        raw
    }

    fn optional_url(&mut self, name: &str) -> Option<String> {
        let raw = self.raw(name).trim().to_owned();
        if raw.is_empty() {
            return None;
        }
        match url::Url::parse(&raw) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Some(raw),
            _ => {
                self.fail(name, format!("'{raw}' is not an http(s) URL"));
                None
            }
        }
    }

    fn boolean(&mut self, name: &str) -> bool {
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

    fn api_keys(&mut self) -> Vec<Secret> {
        let keys: Vec<Secret> = self
            .raw("api_keys")
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(Secret::new)
            .collect();
        if keys
            .iter()
            .any(|k| k.0.len() < 16 || k.0.chars().any(|c| !c.is_ascii_graphic()))
        {
            self.fail(
                "api_keys",
                "every key must be at least 16 printable ASCII characters without spaces".into(),
            );
        }
        keys
    }

    fn queue_prefix(&mut self) -> String {
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

    fn log_format(&mut self) -> bool {
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
}

fn toml_scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(toml_scalar)
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(",")),
        _ => None,
    }
}

fn env_names() -> String {
    KEYS.iter()
        .map(|k| format!("{ENV_PREFIX}{}", k.name.to_ascii_uppercase()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders the effective configuration with its origins; secrets are redacted.
pub fn describe(layers: &Layers) -> String {
    let mut out = String::new();
    for k in KEYS {
        let (value, origin) = layers
            .get(k.name)
            .cloned()
            .unwrap_or((String::new(), Origin::Default));
        let shown = if k.secret && !value.is_empty() {
            "[redacted]".to_owned()
        } else {
            value
        };
        let from = match origin {
            Origin::Default => "default".to_owned(),
            Origin::File(f) => f,
            Origin::Env => format!("{ENV_PREFIX}{}", k.name.to_ascii_uppercase()),
        };
        out.push_str(&format!(
            "{:<28} = {:<40} # {from}: {}\n",
            k.name, shown, k.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load() {
        let cfg = Layers::gather(None, env(&[])).parse().unwrap();
        assert_eq!(cfg.api.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(cfg.queue.shards, 8);
        assert!(cfg.api.keys.is_empty());
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("syncroot-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::write(
            &dir,
            "[api]\nlisten = \"127.0.0.1:9000\"\nmax_body_bytes = 2048\n[queue]\nshards = 3\n",
        )
        .unwrap();
        let cfg = Layers::gather(Some(&dir), env(&[("SYNCROOT_QUEUE_SHARDS", "5")]))
            .parse()
            .unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(cfg.api.listen.port(), 9000);
        assert_eq!(cfg.api.max_body_bytes, 2048);
        assert_eq!(cfg.queue.shards, 5);
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let errs = Layers::gather(
            None,
            env(&[
                ("SYNCROOT_API_LISTEN", "nowhere"),
                ("SYNCROOT_QUEUE_SHARDS", "0"),
                ("SYNCROOT_API_KEY", "typo"),
                ("SYNCROOT_API_KEYS", "short"),
                ("SYNCROOT_DATABASE_URL", "mysql://x"),
                ("SYNCROOT_LOG_FORMAT", "xml"),
            ]),
        )
        .parse()
        .unwrap_err();
        let text = errs.to_string();
        for needle in [
            "SYNCROOT_API_LISTEN",
            "SYNCROOT_QUEUE_SHARDS",
            "SYNCROOT_API_KEY:",
            "SYNCROOT_API_KEYS",
            "SYNCROOT_DATABASE_URL",
            "SYNCROOT_LOG_FORMAT",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        assert_eq!(errs.0.len(), 6, "{text}");
    }

    #[test]
    fn secrets_never_print() {
        let cfg = Layers::gather(None, env(&[("SYNCROOT_API_KEYS", "0123456789abcdefXYZ")]))
            .parse()
            .unwrap();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("0123456789abcdefXYZ"));
        assert!(!shown.contains("guest:guest"));
    }
}
