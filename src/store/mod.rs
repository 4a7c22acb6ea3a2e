//! Postgres access: the connection pool, migrations, and one module of queries per table.
//!
//! Queries are plain `sqlx::query` calls with bound parameters; row types stay in this module
//! tree and are converted to domain types before they leave it.

pub mod address_index;
pub mod audit;
pub mod backfill;
pub mod contacts;
pub mod dead_letters;
pub mod heads;
pub mod history;
pub mod idempotency;
pub mod inbound;
pub mod jobs;
pub mod links;
pub mod subscriptions;

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};

use crate::config::DatabaseConfig;

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens a pool. Connections are made lazily, so a process can start (and report not-ready)
/// while Postgres is away. Every connection carries the configured `statement_timeout` and
/// `lock_timeout`, so no query and no lock wait holds a pooled connection forever.
pub fn connect_lazy(cfg: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    pool(cfg, 0)
}

/// [`connect_lazy`], for a long-running role: the pool keeps `warm` connections open even
/// when idle and opens them now, in the background. A new connection costs a backend start
/// and, over TLS, a handshake (about 100 ms measured on loopback with `sslmode=prefer`), which the
/// first changes after a start, or after a quiet spell in which idle connections were closed,
/// would otherwise each pay. Postgres being away is not an error here: the pool connects on
/// demand once it is back.
pub fn connect_warm(cfg: &DatabaseConfig, warm: u32) -> Result<PgPool, sqlx::Error> {
    let warm = warm.min(cfg.max_connections);
    let db = pool(cfg, warm)?;
    let pool = db.clone();
    tokio::spawn(async move {
        let opened = futures_util::future::join_all((0..warm).map(|_| pool.acquire())).await;
        let failed = opened.iter().filter(|c| c.is_err()).count();
        tracing::debug!(
            opened = opened.len() - failed,
            failed,
            "Postgres connections opened ahead of use"
        );
    });
    Ok(db)
}

/// True when the URL says how to use TLS (`sslmode`, or sqlx's `ssl-mode`).
///
/// One that does not, to a Postgres on this host, connects without TLS: it protects nothing
/// on loopback, and costs a handshake per connection (about 100 ms) and, with this sqlx
/// (0.9.0, which leaves Nagle's algorithm on), about 40 ms on every statement larger than a
/// TLS record (16 KB), such as a delivery batch's 100 link rows: the second record waits for
/// the server's delayed acknowledgement of the first. A URL or `PGSSLMODE` that names a mode
/// is always obeyed.
fn names_ssl_mode(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| {
        u.query_pairs()
            .any(|(k, _)| k.eq_ignore_ascii_case("sslmode") || k.eq_ignore_ascii_case("ssl-mode"))
    })
}

/// A host name or address that reaches this machine only (a Unix socket path is not a host
/// and never uses TLS).
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn pool(cfg: &DatabaseConfig, min_connections: u32) -> Result<PgPool, sqlx::Error> {
    let mut settings = Vec::new();
    if let Some(t) = cfg.statement_timeout {
        settings.push(("statement_timeout", format!("{}ms", t.as_millis())));
    }
    if let Some(t) = cfg.lock_timeout {
        settings.push(("lock_timeout", format!("{}ms", t.as_millis())));
    }
    // Sent in the startup packet (`options=-c …`): no extra round trip per connection.
    let mut options = PgConnectOptions::from_str(cfg.url.expose())?.options(settings);
    let asked = std::env::var_os("PGSSLMODE").is_some() || names_ssl_mode(cfg.url.expose());
    if !asked && is_loopback(options.get_host()) {
        options = options.ssl_mode(PgSslMode::Disable);
    }
    Ok(PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .min_connections(min_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// Creates the database named in the URL if it does not exist yet, then applies migrations.
///
/// Safe to run several times at once (a Helm hook Job beside an all-in-one process, two
/// rollouts): a database another run created first counts as created, and the migrator holds
/// a Postgres advisory lock on the database while it applies migrations, so the second run
/// waits, then finds nothing left to apply.
pub async fn migrate(cfg: &DatabaseConfig) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let url = cfg.url.expose();
    if !sqlx::Postgres::database_exists(url)
        .await
        .context("checking whether the database exists")?
    {
        match sqlx::Postgres::create_database(url).await {
            Ok(()) => tracing::info!("created database"),
            // Another run created it since we looked: Postgres answers 42P04 duplicate_database,
            // or, when both CREATEs overlap, a unique violation on pg_database's name index.
            Err(e) if sqlx::Postgres::database_exists(url).await.unwrap_or(false) => {
                tracing::info!(error = %e, "database created concurrently by another run");
            }
            Err(e) => return Err(e).context("creating the database"),
        }
    }
    // `Migrator::run` takes `pg_advisory_lock` (keyed by the database name) unless locking is
    // turned off (tests/it/migrate.rs checks it is on). A migration may rewrite a large table:
    // no statement timeout for it.
    let pool = connect_lazy(&DatabaseConfig {
        statement_timeout: None,
        ..cfg.clone()
    })?;
    MIGRATOR.run(&pool).await.context("applying migrations")?;
    pool.close().await;
    Ok(())
}

/// True when a query failed on the named unique index or constraint.
pub fn is_unique_violation(err: &sqlx::Error, constraint: &str) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation() && db.constraint() == Some(constraint))
}

/// Readiness probe: one round trip.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// The readiness probes' Postgres check (the API's and the workers'): `"ok"`, or why not.
/// The probes are open to anyone, so the cause goes to the log, not into the answer.
pub async fn readiness(pool: &PgPool) -> String {
    match tokio::time::timeout(std::time::Duration::from_secs(2), ping(pool)).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: Postgres check failed");
            "error: unreachable".to_owned()
        }
        Err(_) => "error: no answer within 2 s".to_owned(),
    }
}

/// Errors that go away by themselves: connection trouble, a restart or failover, too many
/// connections, lock or statement timeouts, serialization failures, even a schema not migrated
/// yet. Only errors about the data itself (SQLSTATE classes 22 data exception and 23 integrity
/// violation) and decoding errors are not: retrying those cannot help.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .is_none_or(|c| !(c.starts_with("22") || c.starts_with("23"))),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::RowNotFound
        | sqlx::Error::Configuration(_)
        | sqlx::Error::Migrate(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_that_names_a_tls_mode_is_obeyed() {
        for url in [
            "postgres://u@127.0.0.1/db?sslmode=require",
            "postgres://u@localhost/db?application_name=x&SSLMODE=prefer",
            "postgres://u@[::1]:5433/db?ssl-mode=verify-full",
        ] {
            assert!(names_ssl_mode(url), "{url}");
        }
        assert!(!names_ssl_mode("postgres://u@127.0.0.1:5432/db"));
        assert!(!names_ssl_mode(
            "postgres://u@127.0.0.1/db?application_name=sslmode"
        ));
    }

    #[test]
    fn loopback_hosts_are_this_machine_only() {
        for host in [
            "127.0.0.1",
            "127.3.2.1",
            "localhost",
            "LocalHost",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "db.internal",
            "10.0.0.5",
            "localhost.example.com",
            "/var/run/postgresql",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
