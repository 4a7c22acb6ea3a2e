//! What both sandboxes share, so their control APIs (`/__sandbox/`) behave the same: the
//! answers of control routes (`control`) and the checks of fault settings (`faults`).
//!
//! Not here: anything of a vendor's own wire protocol; each sandbox renders faults and errors
//! in its vendor's shape.

pub mod control;
pub mod faults;
