pub mod apply;
/// Builds small workbooks for tests (a stored zip with inline strings, no
/// compression); not used by the server.
#[doc(hidden)]
pub mod fixture;
pub mod parse;
pub mod plan;

pub use parse::*;
