//! What both sandboxes share, so their control APIs (`/__sandbox/`) behave the same: the
//! answers of control routes (`control`), the checks of fault settings (`faults`), and the
//! batch cap with its tally of every batch call (`batches`).
//!
//! Not here: anything of a vendor's own wire protocol; each sandbox renders faults and errors
//! in its vendor's shape.

pub mod batches;
pub mod control;
pub mod faults;
