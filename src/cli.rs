//! The command line: one binary, one subcommand per role, and `dlq`, `drift` and `backfill`,
//! clients of the admin API.

pub mod backfill;
pub mod dlq;
mod dlq_client;
mod dlq_render;
pub mod drift;
mod job_follow;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// SyncRoot keeps contacts consistent between your application, Salesforce and HubSpot.
///
/// Configuration: built-in defaults, then the TOML file given with --config (or
/// SYNCROOT_CONFIG), then SYNCROOT_* environment variables. `syncroot config` lists every
/// setting.
#[derive(Debug, Parser)]
#[command(name = "syncroot", version, about, long_about)]
pub struct Cli {
    /// TOML configuration file ([api] listen = "…" is the setting api_listen).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the REST API server.
    Api,
    /// Run the forwarder: applies queued contact changes to Postgres.
    Forwarder,
    /// Run the delivery workers: bring each enabled CRM up to date (one active per CRM).
    Delivery,
    /// Run the webhook workers: apply the changes the CRMs' webhooks report (one active per
    /// CRM).
    Webhooks,
    /// Run the dead-letter worker: keeps what reached the dead-letter queue, retries deliveries
    /// on a slower schedule, parks the rest, sends alerts.
    DlqWorker,
    /// Run the subscription sender: POSTs every change of the feed to each enabled push
    /// subscription, signed (Standard Webhooks), retrying what fails.
    Subscriptions,
    /// Run everything in one process: migrations, the API and every worker. A development
    /// mode: it serves on loopback only.
    ///
    /// Delivers to the CRMs the configuration names (by default the local sandboxes that
    /// `make run` starts beside it). Generates and prints a development API key and admin key
    /// when none is configured.
    All,
    /// Create the database if needed and apply migrations.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Print the effective configuration and where each value came from (secrets redacted).
    Config(ConfigArgs),
    /// Inspect, replay and discard dead letters through the admin API of a running SyncRoot.
    ///
    /// Talks to http://<api_listen> with the first of admin_keys unless --url and --key say
    /// otherwise.
    Dlq(Box<dlq::DlqArgs>),
    /// Check the CRMs' records against SyncRoot (a drift check job through the admin API of a
    /// running SyncRoot), follow its progress, and print what it found.
    ///
    /// Talks to http://<api_listen> with the first of admin_keys unless --url and --key say
    /// otherwise. The job runs in the webhooks role (or `all`).
    Drift(drift::DriftArgs),
    /// Match every live record of the enabled CRMs with SyncRoot's contacts by e-mail (a
    /// backfill job through the admin API of a running SyncRoot): link, merge or create; follow
    /// its progress, and print what it did.
    ///
    /// Talks to http://<api_listen> with the first of admin_keys unless --url and --key say
    /// otherwise. The job runs in the webhooks role (or `all`).
    Backfill(backfill::BackfillArgs),
}

/// Options of `syncroot config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// Print only the name of every environment variable SyncRoot reads, one a line (for
    /// deployment tooling that checks what it sets).
    #[arg(long)]
    pub keys: bool,
}
