//! Pure types of the contact domain: the unified contact, its validated fields, and the
//! change that travels from the API through the queue to the forwarder.
//!
//! Nothing here does I/O; the API, queue and store layers build on these types.

pub mod change;
pub mod contact;
pub mod crm;
pub mod email;
pub mod fields;
pub mod inbound;
pub mod job;
pub mod merge;
pub mod values;

pub use change::{ChangeOp, ContactChange};
pub use contact::{ContactFields, ContactId};
pub use crm::Crm;
pub use email::Email;
pub use values::{FieldValues, Origin};
