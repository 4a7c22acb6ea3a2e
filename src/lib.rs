//! SyncRoot: contact-sync middleware between an application, Salesforce and HubSpot.
//!
//! Modules, in reading order:

/// Slack-compatible alerts when deliveries are dead-lettered or parked, rate-limited.
pub mod alerts;
/// The REST API and its OpenAPI document.
pub mod api;
/// Wiring of the above into running servers and workers.
pub mod app;
/// Command-line interface: subcommands per process role.
pub mod cli;
/// Typed, layered configuration (defaults → file → `SYNCROOT_*` environment).
pub mod config;
/// Pure domain types: contact, e-mail, fields and their rules, queued changes.
pub mod domain;
/// Accepting a change: the transaction the API and the webhook worker share.
pub mod intake;
/// Prometheus metrics: what is exported, recording, `/metrics`.
pub mod metrics;
/// Health probes of the worker processes.
pub mod probe;
/// CRM clients: the contract, HubSpot, Salesforce, field mapping, pacing.
pub mod providers;
/// Push subscriptions to the change feed: the event shape and its Standard Webhooks signature.
pub mod push;
/// RabbitMQ: topology, confirmed publisher, message encoding.
pub mod queue;
/// Sending dead letters through the normal path again (admin API, dead-letter worker).
pub mod replay;
/// Secret values that never print.
pub mod secret;
/// SIGTERM/SIGINT → one cancellation token.
pub mod shutdown;
/// Postgres: pool, migrations, queries.
pub mod store;
/// Logs (text or JSON lines) and optional OpenTelemetry traces; trace context across processes.
pub mod telemetry;
/// What the CRMs push: webhook signatures and payloads (pure).
pub mod webhooks;
/// Queue consumers: the forwarder, the delivery workers, the webhook workers, the dead-letter worker;
/// and the subscriptions' sender.
pub mod worker;
