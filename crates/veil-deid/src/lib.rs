//! placeholder
pub mod generalize;
