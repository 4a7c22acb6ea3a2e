//! Typed configuration, loaded once at start: built-in defaults, then an optional TOML file,
//! then `SYNCROOT_*` environment variables, each layer overriding the one before.
//!
//! Every key is declared once in [`KEYS`] (name, default, help), which is also what
//! `syncroot config` prints. Loading parses every key and reports **every** problem at once,
//! including unknown keys, so a typo such as `SYNCROOT_API_KEY` fails loudly instead of being
//! ignored. This is the only module that reads the process environment.

use std::collections::BTreeMap;
use std::fmt;

use crate::secret::Secret;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

mod inbound;
mod keys;
mod layers;
mod parse;
mod production;

pub use keys::{KEYS, Key, STANDARD_ENV};
pub use production::{
    InsecureAllowed, OutboundUrlError, Role, development_problems, is_loopback_url, outbound_url,
    production_problems, refusal,
};

/// The loaded configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub api: ApiConfig,
    pub database: DatabaseConfig,
    pub queue: QueueConfig,
    pub forwarder: ForwarderConfig,
    pub shutdown_grace: Duration,
    /// Where worker processes serve their health probes, if anywhere.
    pub health_listen: Option<SocketAddr>,
    /// Timeouts and caps of every HTTP listener (API and probes).
    pub http: syncroot_serve::Limits,
    pub log: LogConfig,
    pub trace: TraceConfig,
    pub delivery: DeliveryConfig,
    pub dead_letter: DeadLetterConfig,
    pub inbound: InboundConfig,
    pub subscriptions: SubscriptionConfig,
    pub jobs: JobsConfig,
    /// Opt-outs of the production roles' refusals, for local testing.
    pub insecure: InsecureAllowed,
}

/// Two-way sync: the webhook receivers and the conflict policy.
#[derive(Clone, Debug)]
pub struct InboundConfig {
    /// Scheme, host and path prefix the CRMs call SyncRoot at (behind a proxy or ingress, the
    /// public one): HubSpot signs the full URL it called. `None`: `http://` and the address
    /// the API is bound to.
    pub public_url: Option<String>,
    /// HubSpot app client secrets webhooks may be signed with (several during a rotation);
    /// empty: every HubSpot webhook is refused.
    pub hubspot_secrets: Vec<Secret>,
    /// Accept HubSpot's older signatures, which carry no timestamp (no replay protection).
    pub hubspot_allow_v1: bool,
    pub hubspot_allow_v2: bool,
    /// SyncRoot's HubSpot app id: events with `changeSource` INTEGRATION and this `sourceId`
    /// are SyncRoot's own writes. Empty: not used.
    pub hubspot_app_id: String,
    /// Secrets of Salesforce's signed notifications; empty: every one is refused.
    pub salesforce_secrets: Vec<Secret>,
    /// Salesforce user id SyncRoot writes as: events it committed are SyncRoot's own. Empty:
    /// not used.
    pub salesforce_integration_user: String,
    /// The org whose Outbound Messages are accepted (compared by its 15-character form);
    /// empty: the Outbound Message receiver is off.
    pub salesforce_org_id: String,
    /// Secret last path segment of the Outbound Message receiver; `None`: no segment.
    pub salesforce_outbound_token: Option<Secret>,
    /// Largest difference between a webhook's timestamp and the clock.
    pub window: std::time::Duration,
    pub policy: crate::domain::merge::Policy,
    /// What a record deleted in a CRM does to its contact.
    pub deletes: crate::domain::inbound::DeletePolicy,
    /// What a CRM's privacy deletion does.
    pub privacy_deletions: crate::domain::inbound::PrivacyPolicy,
    /// How often each CRM is asked for records modified since the last poll (changes whose
    /// webhooks were lost); `None`: never.
    pub poll_interval: Option<std::time::Duration>,
}

/// The subscriptions role: delivering the change feed to subscribers.
#[derive(Clone, Debug)]
pub struct SubscriptionConfig {
    /// How often a caught-up subscription is looked at for new feed entries.
    pub poll: Duration,
    /// Timeout of one delivery (connect, send, answer).
    pub timeout: Duration,
    /// Bounds of the waits between a failing delivery's attempts (doubling, with jitter).
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Failing without a success for this long disables a subscription.
    pub disable_after: Duration,
    /// Subscriptions one process delivers to at once.
    pub concurrency: usize,
    /// How long delivery-log rows are kept.
    pub log_retention: Duration,
}

/// The admin job runner (in the webhooks role) and the drift check's schedule.
#[derive(Clone, Debug)]
pub struct JobsConfig {
    /// How long a runner's claim on a job holds without a heartbeat; a job whose runner died is
    /// resumed by another after this.
    pub lease: Duration,
    /// Queue a drift check when none was created within this long; `None`: never.
    pub drift_interval: Option<Duration>,
    /// Whether scheduled drift checks repair what they find.
    pub drift_repair: bool,
}

/// The dead-letter worker and alerts.
#[derive(Clone, Debug)]
pub struct DeadLetterConfig {
    /// Bounds of the slower schedule for deliveries that exhausted the retry tiers.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Rounds of that schedule before a delivery is parked.
    pub retry_times: u32,
    /// Slack-compatible incoming-webhook URL (it embeds a token, hence secret).
    pub alert_url: Option<Secret>,
    /// At most one alert per interval.
    pub alert_interval: Duration,
}

/// Delivery to the CRMs.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// The enabled CRMs.
    pub crms: Vec<crate::domain::Crm>,
    pub batching: bool,
    pub linger: Duration,
    /// Longest a batch waits for companions while they keep coming.
    pub linger_max: Duration,
    pub prefetch: u16,
    /// CRM calls in flight at once per CRM.
    pub concurrency: usize,
    /// How long a complete read's address index is used instead of a matching query.
    pub address_trust: Duration,
    /// Waits of the retry tiers, shortest first.
    pub retry_tiers: Vec<Duration>,
    pub hubspot: crate::providers::hubspot::HubspotSettings,
    pub salesforce: crate::providers::salesforce::SalesforceSettings,
}

#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Keys that may read and write contacts (`api_keys`).
    pub keys: Vec<Secret>,
    /// Keys that may only read contacts (`read_keys`).
    pub read_keys: Vec<Secret>,
    /// Keys of the admin API (`/dlq`, `/admin/audit`).
    pub admin_keys: Vec<Secret>,
    /// Each key's own limits.
    pub key_limits: KeyLimits,
    pub max_body_bytes: usize,
    pub publish_timeout: Duration,
    /// How writes are grouped into shared transactions (group commit).
    pub accept: crate::intake::group::GroupSettings,
    pub idempotency_ttl: Duration,
}

/// The limits every API key is held to on its own (per API process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyLimits {
    /// Requests per second, sustained.
    pub rate_per_sec: u32,
    /// Requests above the rate at once (the token bucket's size).
    pub burst: u32,
    /// Requests handled at once.
    pub max_in_flight: u32,
}

impl Default for KeyLimits {
    /// The built-in defaults of `api_key_rate_per_sec`, `api_key_burst`,
    /// `api_key_max_in_flight`.
    fn default() -> Self {
        Self {
            rate_per_sec: 500,
            burst: 1000,
            max_in_flight: 64,
        }
    }
}

#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    pub url: Secret,
    pub max_connections: u32,
    /// `statement_timeout` of the pool's connections (`None`: Postgres's, unlimited).
    pub statement_timeout: Option<Duration>,
    /// `lock_timeout` of the pool's connections (`None`: Postgres's, unlimited).
    pub lock_timeout: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct QueueConfig {
    pub amqp_url: Secret,
    /// PEM certificates of the CAs trusted for `amqps://` besides the system's: the file the
    /// URL's `cacertfile` query parameter names (RabbitMQ's URI convention), read at start.
    pub amqp_ca: Option<String>,
    pub prefix: String,
    pub shards: u16,
    pub delivery_limit: u32,
    /// Changes accepted together for one shard travel as one message (`ChangePack`).
    pub pack_changes: bool,
}

#[derive(Clone, Debug)]
pub struct ForwarderConfig {
    pub prefetch: u16,
    pub concurrency: usize,
    /// While changes arrive together, how long a group waits for more before it is applied.
    pub linger: Duration,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub filter: String,
    pub json: bool,
}

/// OpenTelemetry traces; off without an endpoint.
#[derive(Clone, Debug)]
pub struct TraceConfig {
    /// Base URL of an OTLP/HTTP collector (`/v1/traces` is appended).
    pub otlp_endpoint: Option<url::Url>,
    /// `service.name` of the spans.
    pub service_name: String,
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
    /// Read from the file `SYNCROOT_<KEY>_FILE` names (secret keys only).
    EnvFile,
    /// Read from a standard variable ([`keys::STANDARD_ENV`]) such as `OTEL_SERVICE_NAME`.
    Standard(&'static str),
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

/// Every environment variable SyncRoot reads: one per key (`SYNCROOT_` and the key's name
/// upper-cased), then `SYNCROOT_CONFIG`.
pub fn env_names() -> impl Iterator<Item = String> {
    KEYS.iter()
        .map(|k| format!("{ENV_PREFIX}{}", k.name.to_ascii_uppercase()))
        .chain(std::iter::once(CONFIG_FILE_ENV.to_owned()))
}

/// One setting as it may be shown anywhere (a terminal, the log): secrets redacted.
#[derive(Clone, Debug)]
pub struct Shown {
    pub key: &'static Key,
    /// The value, or `[redacted]` for a secret that is set.
    pub value: String,
    /// Where it came from: `default`, a file, or the variable that set it.
    pub from: String,
}

impl Shown {
    pub fn is_default(&self) -> bool {
        self.from == "default"
    }
}

/// Every setting with its origin, secrets redacted: what `syncroot config` prints and what
/// a process logs at start-up.
pub fn shown(layers: &Layers) -> Vec<Shown> {
    KEYS.iter()
        .map(|k| {
            let (value, origin) = layers
                .get(k.name)
                .cloned()
                .unwrap_or((String::new(), Origin::Default));
            let value = if k.secret && !value.is_empty() {
                "[redacted]".to_owned()
            } else {
                value
            };
            let from = match origin {
                Origin::Default => "default".to_owned(),
                Origin::File(f) => f,
                Origin::Env => format!("{ENV_PREFIX}{}", k.name.to_ascii_uppercase()),
                Origin::EnvFile => format!("{ENV_PREFIX}{}_FILE", k.name.to_ascii_uppercase()),
                Origin::Standard(var) => var.to_owned(),
            };
            Shown {
                key: k,
                value,
                from,
            }
        })
        .collect()
}

/// Renders the effective configuration with its origins; secrets are redacted.
pub fn describe(layers: &Layers) -> String {
    let mut out = String::new();
    for s in shown(layers) {
        out.push_str(&format!(
            "{:<28} = {:<40} # {}: {}\n",
            s.key.name, s.value, s.from, s.key.help
        ));
    }
    out
}

/// The start-up audit events (target `audit`): which command runs, and every setting that is
/// not at its default, with where it came from, secrets redacted.
pub fn log_startup(command: &str, settings: &[Shown]) {
    let changed = settings.iter().filter(|s| !s.is_default()).count();
    tracing::info!(target: "audit", event = "config", command, changed, "starting with this configuration");
    for s in settings.iter().filter(|s| !s.is_default()) {
        tracing::info!(
            target: "audit", event = "setting", name = s.key.name, value = %s.value,
            from = %s.from, "configuration setting"
        );
    }
}

/// The README's configuration table, one row per key (a unit test keeps README.md equal to it).
pub fn markdown_table() -> String {
    let mut out = String::from("| Variable | Default | Meaning |\n|---|---|---|\n");
    for k in KEYS {
        let default = if k.default.is_empty() {
            "(empty)"
        } else {
            k.default
        };
        out.push_str(&format!(
            "| `{ENV_PREFIX}{}` | `{default}` | {} |\n",
            k.name.to_ascii_uppercase(),
            k.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_configuration_table_is_generated_from_keys() {
        let readme = include_str!("../../README.md");
        let table = markdown_table();
        assert!(
            readme.contains(&table),
            "README.md's configuration table differs from KEYS; replace it with:\n\n{table}"
        );
    }

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
    fn traces_are_off_by_default_and_the_standard_otel_variables_yield_to_syncroot_ones() {
        let cfg = Layers::gather(None, env(&[])).parse().unwrap();
        assert_eq!(cfg.trace.otlp_endpoint, None);
        assert_eq!(cfg.trace.service_name, "syncroot");
        let standard = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SERVICE_NAME", "crm-sync"),
        ];
        let cfg = Layers::gather(None, env(&standard)).parse().unwrap();
        let endpoint = cfg.trace.otlp_endpoint.map(String::from);
        assert_eq!(endpoint.as_deref(), Some("http://collector:4318/"));
        assert_eq!(cfg.trace.service_name, "crm-sync");
        // The chart's empty SYNCROOT_OTLP_ENDPOINT does not hide the standard variable.
        let mut chart = standard.to_vec();
        chart.push(("SYNCROOT_OTLP_ENDPOINT", ""));
        let cfg = Layers::gather(None, env(&chart)).parse().unwrap();
        assert!(cfg.trace.otlp_endpoint.is_some());
        let mut both = standard.to_vec();
        both.push(("SYNCROOT_OTLP_ENDPOINT", "https://otel.example:4318/otlp"));
        let layers = Layers::gather(None, env(&both));
        assert!(describe(&layers).contains("OTEL_SERVICE_NAME"));
        let cfg = layers.parse().unwrap();
        let endpoint = cfg.trace.otlp_endpoint.map(String::from);
        assert_eq!(endpoint.as_deref(), Some("https://otel.example:4318/otlp"));
    }

    #[test]
    fn an_otlp_endpoint_with_credentials_or_another_scheme_is_refused_without_echoing_it() {
        for (bad, why) in [
            ("grpc://collector:4317", "http:// or https://"),
            ("https://user:hunter2-secret@collector:4318", "credentials"),
            ("http://collector:4318/?token=hunter2-secret", "query"),
            ("not a url", "not a valid URL"),
        ] {
            let errs = Layers::gather(None, env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", bad)]))
                .parse()
                .unwrap_err()
                .to_string();
            assert!(errs.contains("OTEL_EXPORTER_OTLP_ENDPOINT: "), "{errs}");
            assert!(errs.contains(why), "{bad}: {errs}");
            assert!(!errs.contains("hunter2"), "{errs}");
        }
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

    #[test]
    fn secrets_come_from_files_named_by_file_variables() {
        let dir = std::env::temp_dir().join(format!("syncroot-secret-{}", uuid::Uuid::new_v4()));
        std::fs::write(&dir, "pat-na1-from-a-file\n").unwrap();
        let path = dir.display().to_string();
        let cfg = Layers::gather(None, env(&[("SYNCROOT_HUBSPOT_TOKEN_FILE", &path)]))
            .parse()
            .unwrap();
        assert_eq!(cfg.delivery.hubspot.token.expose(), "pat-na1-from-a-file");
        let layers = Layers::gather(None, env(&[("SYNCROOT_HUBSPOT_TOKEN_FILE", &path)]));
        let shown = describe(&layers);
        assert!(shown.contains("SYNCROOT_HUBSPOT_TOKEN_FILE"), "{shown}");
        assert!(!shown.contains("from-a-file"), "{shown}");

        let both = Layers::gather(
            None,
            env(&[
                ("SYNCROOT_HUBSPOT_TOKEN_FILE", &path),
                ("SYNCROOT_HUBSPOT_TOKEN", "direct"),
            ]),
        )
        .parse()
        .unwrap_err()
        .to_string();
        assert!(both.contains("SYNCROOT_HUBSPOT_TOKEN is set too"), "{both}");
        std::fs::remove_file(&dir).unwrap();

        let missing = Layers::gather(
            None,
            env(&[("SYNCROOT_DATABASE_URL_FILE", "/nonexistent/db-url")]),
        )
        .parse()
        .unwrap_err()
        .to_string();
        assert!(
            missing.contains(
                "SYNCROOT_DATABASE_URL_FILE: cannot read the secret file /nonexistent/db-url"
            ),
            "{missing}"
        );
        // Only secret keys have a _FILE variant.
        let plain = Layers::gather(None, env(&[("SYNCROOT_LOG_FILE", &path)]))
            .parse()
            .unwrap_err()
            .to_string();
        assert!(
            plain.contains("SYNCROOT_LOG_FILE: unknown setting"),
            "{plain}"
        );
    }

    #[test]
    fn bad_secret_values_are_never_echoed() {
        const MARK: &str = "S3CRET-MARK";
        let bad = format!("no good {MARK}");
        let pairs: Vec<(String, String)> = KEYS
            .iter()
            .filter(|k| k.secret)
            .map(|k| {
                (
                    format!("SYNCROOT_{}", k.name.to_ascii_uppercase()),
                    bad.clone(),
                )
            })
            .collect();
        let errs = Layers::gather(None, pairs).parse().unwrap_err().to_string();
        assert!(!errs.contains(MARK), "{errs}");
        assert!(errs.contains("SYNCROOT_DATABASE_URL"), "{errs}");
        // Nor does a broken config file quote the line holding one.
        let file = std::env::temp_dir().join(format!("syncroot-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::write(&file, format!("[api]\nkeys = \"{MARK}\n")).unwrap();
        let errs = Layers::gather(Some(&file), env(&[]))
            .parse()
            .unwrap_err()
            .to_string();
        std::fs::remove_file(&file).unwrap();
        assert!(errs.contains("not valid TOML at line 2"), "{errs}");
        assert!(!errs.contains(MARK), "{errs}");
    }

    #[test]
    fn a_remote_database_without_tls_is_refused_unless_allowed() {
        let db = |url: &str, allow: &str| {
            Layers::gather(
                None,
                env(&[
                    ("SYNCROOT_DATABASE_URL", url),
                    ("SYNCROOT_ALLOW_PLAINTEXT_DATABASE", allow),
                ]),
            )
            .parse()
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        for plain in [
            "postgres://u:p@db.internal/x",
            "postgres://u:p@db.internal/x?sslmode=prefer",
            "postgres://u:p@10.0.0.5/x?sslmode=disable",
        ] {
            let err = db(plain, "false").unwrap_err();
            assert!(
                err.contains(
                    "SYNCROOT_DATABASE_URL: a database that is not on loopback without TLS"
                ),
                "{plain}: {err}"
            );
            assert!(!err.contains("u:p@"), "{err}");
            assert_eq!(db(plain, "true"), Ok(()), "{plain}");
        }
        for fine in [
            "postgres://u:p@db.internal/x?sslmode=verify-full&sslrootcert=/ca.pem",
            "postgres://u:p@db.internal/x?sslmode=require",
            "postgres://u@127.0.0.1:5432/x",
            "postgres://u@localhost/x?sslmode=disable",
        ] {
            assert_eq!(db(fine, "false"), Ok(()), "{fine}");
        }
    }

    #[test]
    fn retry_tiers_and_the_dead_letter_schedule_parse() {
        let cfg = Layers::gather(
            None,
            env(&[("SYNCROOT_DELIVERY_RETRY_TIERS", "200ms, 1s,2m,1h")]),
        )
        .parse()
        .unwrap();
        let ms: Vec<u128> = cfg
            .delivery
            .retry_tiers
            .iter()
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(ms, [200, 1000, 120_000, 3_600_000]);
        assert_eq!(cfg.dead_letter.retry_times, 6);
        assert!(cfg.dead_letter.alert_url.is_none());
        let defaults = Layers::gather(None, env(&[])).parse().unwrap();
        assert_eq!(defaults.delivery.retry_tiers.len(), 5);
    }

    #[test]
    fn bad_tiers_and_shared_admin_keys_are_refused() {
        for tiers in ["5s,1s", "1x", "2d", "1s,,-3"] {
            let errs = Layers::gather(None, env(&[("SYNCROOT_DELIVERY_RETRY_TIERS", tiers)]))
                .parse()
                .unwrap_err();
            assert!(
                errs.to_string().contains("SYNCROOT_DELIVERY_RETRY_TIERS"),
                "{tiers}: {errs}"
            );
        }
        let errs = Layers::gather(
            None,
            env(&[
                ("SYNCROOT_API_KEYS", "0123456789abcdefXYZ"),
                ("SYNCROOT_ADMIN_KEYS", "0123456789abcdefXYZ"),
                ("SYNCROOT_ALERT_URL", "ftp://x"),
            ]),
        )
        .parse()
        .unwrap_err();
        let text = errs.to_string();
        assert!(
            text.contains("admin key must not also be an API key"),
            "{text}"
        );
        assert!(text.contains("SYNCROOT_ALERT_URL"), "{text}");
    }

    #[test]
    fn key_lists_are_disjoint_and_key_limits_parse() {
        let defaults = Layers::gather(None, env(&[])).parse().unwrap();
        assert_eq!(defaults.api.key_limits, KeyLimits::default());
        let cfg = Layers::gather(
            None,
            env(&[
                ("SYNCROOT_READ_KEYS", "reader-0123456789abcdef"),
                ("SYNCROOT_API_KEY_RATE_PER_SEC", "7"),
                ("SYNCROOT_API_KEY_BURST", "9"),
                ("SYNCROOT_API_KEY_MAX_IN_FLIGHT", "2"),
            ]),
        )
        .parse()
        .unwrap();
        assert_eq!(cfg.api.read_keys.len(), 1);
        let limits = cfg.api.key_limits;
        assert_eq!(
            (limits.rate_per_sec, limits.burst, limits.max_in_flight),
            (7, 9, 2)
        );
        let errs = Layers::gather(
            None,
            env(&[
                ("SYNCROOT_API_KEYS", "0123456789abcdefXYZ"),
                (
                    "SYNCROOT_READ_KEYS",
                    "reader-0123456789abcdef,0123456789abcdefXYZ",
                ),
                ("SYNCROOT_API_KEY_BURST", "0"),
            ]),
        )
        .parse()
        .unwrap_err()
        .to_string();
        assert!(
            errs.contains("read key must not also be in api_keys"),
            "{errs}"
        );
        assert!(errs.contains("SYNCROOT_API_KEY_BURST"), "{errs}");
        assert!(!errs.contains("0123456789abcdefXYZ"), "{errs}");
    }

    #[test]
    fn every_listed_variable_is_one_the_environment_layer_takes() {
        let names: Vec<String> = env_names().collect();
        assert_eq!(names.len(), KEYS.len() + 1);
        assert!(names.contains(&"SYNCROOT_API_KEYS".to_owned()));
        assert_eq!(names.last().map(String::as_str), Some(CONFIG_FILE_ENV));
        // Each key's variable, set to its own default, is accepted (no unknown setting).
        let env = KEYS
            .iter()
            .zip(&names)
            .map(|(k, name)| (name.clone(), k.default.to_owned()))
            .collect::<Vec<_>>();
        let layers = Layers::gather(None, env);
        assert!(layers.errors.is_empty(), "{:?}", layers.errors);
    }
}
