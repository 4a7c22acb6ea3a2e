//! Queue consumers, each a role under the one supervisor in `consumer` (session, reconnect,
//! readiness, waiting out a dependency): `forwarder` applies contact changes to Postgres; `delivery` brings each CRM
//! up to date, handing failures to the retry tiers or the dead-letter queue as `disposition`
//! decides; `dead_letter` keeps what reached the dead-letter queue and gives it slower rounds;
//! `subscriptions` pushes the change feed to subscribers (it reads Postgres, not a queue).
//! `jobs` runs the admin jobs (the drift check) from their table, not from a queue.
//!
//! Not here: publishing (that is `queue::publisher`) or HTTP.

pub mod batch;
pub mod consumer;
pub mod dead_letter;
pub mod delivery;
pub mod disposition;
pub mod forwarder;
pub mod inbound;
pub mod jobs;
pub mod settle;
pub mod subscriptions;
