//! (stub: being written)
pub mod archive;
