//! The integration tests: one binary, a module per area. Each starts what it needs (the real
//! application on port 0, the CRM sandboxes) through `syncroot_testkit`, against the real
//! Postgres and RabbitMQ (`make services`). The chaos run is apart (`tests/chaos/`).

mod after_write;
mod authz;
mod backfill;
mod broker;
mod broker_tls;
mod change_feed;
mod contacts_api;
mod convergence;
mod crm_readers;
mod crm_transport;
mod database;
mod delivery;
mod dlq_api;
mod dlq_cli;
mod dlq_replay;
mod docs_page;
mod drift;
mod failures;
mod group_commit;
mod hubspot_client;
mod listeners;
mod metrics;
mod migrate;
mod observability;
mod openapi;
mod ordering;
mod outbound_message;
mod production;
mod refused_publish;
mod salesforce_client;
mod stale;
mod subscriptions;
mod two_way;
