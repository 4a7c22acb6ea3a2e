//! Logging: `tracing` to stderr, as text or JSON lines, filtered by the `log` setting.

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Installs the global subscriber. Safe to call more than once (later calls are ignored), which
/// the tests rely on.
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_new(&cfg.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if cfg.json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
