//! The DICOM network front of Veil (`veil gateway`, issue 20).
//!
//! Owns: the gateway's configuration file ([`config`]); accepting associations from the
//! application entities it lists, by calling AE title and address ([`scp`]); the DIMSE services a
//! sender needs (C-ECHO, and C-STORE of any storage SOP class in any transfer syntax the
//! dicom-rs registry reads); and the durable spool ([`spool`]) where every received instance is
//! written, encrypted and fsync'd before the sender is told it was stored.
//!
//! Does not own: de-identification, consent and the ledger (the application layer's pipeline
//! reads the spool like any other input), nor forwarding to destinations.

pub mod config;
mod dimse;
pub mod scp;
pub mod spool;

pub use config::{ConfigError, GatewayConfig};
pub use scp::{serve, ServeError, Stop};
pub use spool::{Spool, SpoolError};
