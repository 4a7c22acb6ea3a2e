//! Push subscriptions: what SyncRoot sends to a subscriber's URL for each change-feed entry
//! (the event's JSON shape) and how it signs it (the Standard Webhooks scheme). Pure: no I/O.
//!
//! Not here: the subscriptions' rows (`store::subscriptions`), their admin API
//! (`api::subscriptions`) or the sender that reads the feed and POSTs
//! (`worker::subscriptions`).

pub mod event;
pub mod signature;
