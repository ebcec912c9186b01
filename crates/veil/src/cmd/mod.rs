//! One module per subcommand: argument struct + `run`, returning an exit code.

pub mod deid;
pub mod demo;
pub mod gateway;
pub mod key;
pub mod pixels;
pub mod policy;
pub mod portal;
pub mod quarantine;
pub mod registry;
pub mod risk;
pub mod verify;
