//! What the CRMs push to SyncRoot, before it is queued: signature verification and each CRM's
//! payload, turned into [`crate::domain::inbound::InboundEvent`]s. Pure: no HTTP, no I/O (the
//! receivers are in `api::webhooks`, the worker in `worker::inbound`).

pub mod hubspot;
pub mod salesforce;
pub mod salesforce_outbound;
pub mod verify;
