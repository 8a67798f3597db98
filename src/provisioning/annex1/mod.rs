pub mod apply;
pub mod parse;
pub mod plan;

pub use parse::*;
