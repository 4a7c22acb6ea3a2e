//! Merging the layers: built-in defaults, the TOML file, the environment.

use std::path::Path;
use std::time::Duration;

use super::parse::Parser;
use super::*;

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
        let env: Vec<(String, String)> = env.into_iter().collect();
        let standard: Vec<(&'static str, &'static str, String)> = STANDARD_ENV
            .iter()
            .filter_map(|&(var, key)| {
                let (_, value) = env.iter().find(|(name, _)| name == var)?;
                Some((var, key, value.clone()))
            })
            .collect();
        let mut from_files = Vec::new();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if name == CONFIG_FILE_ENV {
                continue;
            }
            let lower = rest.to_ascii_lowercase();
            if let Some(k) = lower
                .strip_suffix("_file")
                .and_then(|base| KEYS.iter().find(|k| k.name == base && k.secret))
            {
                from_files.push((k, name, value));
                continue;
            }
            match KEYS.iter().find(|k| k.name == lower) {
                Some(k) => {
                    l.values.insert(k.name, (value, Origin::Env));
                }
                None => l
                    .errors
                    .push(format!("{name}: unknown setting (known: {})", env_names())),
            }
        }
        for (key, var, path) in from_files {
            l.read_secret_file(key, &var, &path);
        }
        // A standard variable fills its key unless the `SYNCROOT_*` variable gives a value:
        // the chart sets `SYNCROOT_OTLP_ENDPOINT=""` (off), which must not hide an
        // `OTEL_EXPORTER_OTLP_ENDPOINT` an operator adds.
        for (var, key, value) in standard {
            let set = matches!(l.values.get(key), Some((v, Origin::Env)) if !v.trim().is_empty());
            if !set {
                l.values.insert(key, (value, Origin::Standard(var)));
            }
        }
        l
    }

    /// `SYNCROOT_<KEY>_FILE=<path>`: a secret key's value is the file's content (as Kubernetes
    /// mounts secrets), without its trailing line break. Setting the key directly as well is an
    /// error: which one wins would be a guess. Errors name the file, never its content.
    fn read_secret_file(&mut self, key: &'static Key, var: &str, path: &str) {
        if matches!(self.values.get(key.name), Some((_, Origin::Env))) {
            let direct = format!("{ENV_PREFIX}{}", key.name.to_ascii_uppercase());
            return self
                .errors
                .push(format!("{var}: {direct} is set too; set one of them"));
        }
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let value = text.trim_end_matches(['\n', '\r']).to_owned();
                self.values.insert(key.name, (value, Origin::EnvFile));
            }
            Err(e) => self
                .errors
                .push(format!("{var}: cannot read the secret file {path}: {e}")),
        }
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
            // Only the position and the parser's message: the error's usual rendering quotes
            // the offending line, which may hold a secret.
            Err(e) => {
                let line = e
                    .span()
                    .map_or(0, |s| text[..s.start].matches('\n').count() + 1);
                self.errors.push(format!(
                    "{shown}: not valid TOML at line {line}: {}",
                    e.message()
                ));
            }
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
        let listen = p.socket_addr("api_listen");
        let cfg = Config {
            inbound: p.inbound(),
            api: ApiConfig {
                listen,
                keys: p.api_keys("api_keys"),
                read_keys: p.api_keys("read_keys"),
                admin_keys: p.api_keys("admin_keys"),
                key_limits: KeyLimits {
                    rate_per_sec: p.ranged("api_key_rate_per_sec", 1, 1_000_000),
                    burst: p.ranged("api_key_burst", 1, 1_000_000),
                    max_in_flight: p.ranged("api_key_max_in_flight", 1, 1_000_000),
                },
                max_body_bytes: p.ranged("api_max_body_bytes", 1024, 64 * 1024 * 1024),
                publish_timeout: Duration::from_millis(p.ranged(
                    "api_publish_timeout_ms",
                    100,
                    120_000,
                )),
                accept: crate::intake::group::GroupSettings {
                    lanes: p.ranged("api_accept_lanes", 1, 64),
                    max_batch: p.ranged("api_accept_batch_max", 1, 10_000),
                },
                idempotency_ttl: Duration::from_secs(
                    3600 * p.ranged::<u64>("api_idempotency_ttl_hours", 1, 24 * 30),
                ),
            },
            database: DatabaseConfig {
                url: p.database_url(),
                max_connections: p.ranged("database_max_connections", 2, 1000),
                statement_timeout: p.optional_ms("database_statement_timeout_ms"),
                lock_timeout: p.optional_ms("database_lock_timeout_ms"),
            },
            queue: QueueConfig {
                amqp_url: p.url("amqp_url", &["amqp", "amqps"]),
                amqp_ca: p.amqp_ca(),
                prefix: p.queue_prefix(),
                shards: p.ranged("queue_shards", 1, 256),
                delivery_limit: p.ranged("queue_delivery_limit", 1, 1000),
                pack_changes: p.boolean("queue_pack_changes"),
            },
            forwarder: ForwarderConfig {
                prefetch: p.ranged("forwarder_prefetch", 1, 2000),
                concurrency: p.ranged("forwarder_concurrency", 1, 10_000),
                linger: Duration::from_millis(p.ranged("forwarder_linger_ms", 0, 1_000)),
            },
            shutdown_grace: Duration::from_secs(p.ranged("shutdown_grace_secs", 1, 3600)),
            health_listen: p.optional_socket_addr("health_listen"),
            http: p.http_limits(),
            insecure: InsecureAllowed {
                broker: p.boolean("allow_insecure_broker"),
                database: p.boolean("allow_insecure_database"),
                crms: p.boolean("allow_insecure_crms"),
            },
            log: LogConfig {
                filter: p.raw("log").to_owned(),
                json: p.log_format(),
            },
            trace: p.trace(),
            delivery: p.delivery(),
            dead_letter: p.dead_letter(),
            subscriptions: p.subscriptions(),
            jobs: JobsConfig {
                lease: Duration::from_secs(p.ranged("job_lease_secs", 2, 3600)),
                drift_interval: match p.ranged::<u64>("drift_check_interval_secs", 0, 30 * 86_400) {
                    0 => None,
                    secs => Some(Duration::from_secs(secs)),
                },
                drift_repair: p.boolean("drift_check_repair"),
            },
        };
        let mut errors = self.errors.clone();
        errors.extend(p.errors);
        // The admin credential must be separate: a leaked write key must not open the DLQ.
        if cfg.api.admin_keys.iter().any(|a| cfg.api.keys.contains(a)) {
            errors.push("admin_keys: an admin key must not also be an API key".into());
        }
        // A key in two lists would have two sets of scopes; which one applies would be a guess.
        let listed_twice = |k: &Secret| cfg.api.keys.contains(k) || cfg.api.admin_keys.contains(k);
        if cfg.api.read_keys.iter().any(listed_twice) {
            errors.push("read_keys: a read key must not also be in api_keys or admin_keys".into());
        }
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(errors))
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
    super::env_names()
        .filter(|name| name != CONFIG_FILE_ENV)
        .collect::<Vec<_>>()
        .join(", ")
}
