pub mod apply;
mod cell;
/// Builds small workbooks for tests (a stored zip with inline strings, no
/// compression); not used by the server.
#[doc(hidden)]
pub mod fixture;
mod header;
pub mod limits;
pub mod parse;
pub mod plan;
mod row;
mod text;
mod workbook;

pub use parse::*;
pub use row::{AnnexRow, ListKind};
