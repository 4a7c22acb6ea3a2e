//! Webhook receivers: requests that CRMs push to SyncRoot.
//!
//! For now this holds only [`verify`], the pure signature check a receiver runs on the raw
//! request before parsing anything. Not for: parsing payloads or answering HTTP, which the
//! receivers do around it.

pub mod verify;
