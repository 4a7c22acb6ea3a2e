//! What both sandboxes share, so their control APIs (`/__sandbox/`) behave the same: the
//! answers of control routes (`control`), the checks of fault settings (`faults`), the
//! faults that hit an answer after its write was committed (`after_write`), the log of
//! record versions written (`writes`), the batch cap with its tally of every batch call
//! (`batches`), and bulk seeding of a realistic population (`seed`).
//!
//! Not here: anything of a vendor's own wire protocol; each sandbox renders faults and errors
//! in its vendor's shape.

pub mod after_write;
pub mod batches;
pub mod control;
pub mod faults;
pub mod seed;
pub mod writes;
