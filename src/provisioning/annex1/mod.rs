pub mod apply;
/// Builds small workbooks for tests (a stored zip with inline strings, no
/// compression); not used by the server.
#[doc(hidden)]
pub mod fixture;
pub mod limits;
pub mod parse;
pub mod plan;
mod text;
mod workbook;

pub use parse::*;
