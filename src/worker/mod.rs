//! Queue consumers. `forwarder` applies contact changes to Postgres.
//!
//! Not here: publishing (that is `queue::publisher`) or HTTP.

pub mod batch;
pub mod delivery;
pub mod forwarder;
