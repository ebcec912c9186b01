//! The DICOM network front of Veil (`veil gateway`, issue 20).
//!
//! Owns: the gateway's configuration file ([`config`]); accepting associations from the
//! application entities it lists, by calling AE title and address ([`scp`]); the DIMSE services a
//! sender needs (C-ECHO, and C-STORE of any storage SOP class in any transfer syntax the
//! dicom-rs registry reads); and the durable spool ([`spool`]) where every received instance is
//! written, encrypted and fsync'd before the sender is told it was stored.
//!
//! It pulls cohorts ([`pull`]: C-FIND, then C-MOVE to itself or C-GET; [`web_pull`]: QIDO-RS
//! and WADO-RS) and drains the spool ([`forward`]): each instance is handed to a [`forward::Deidentify`]
//! and the result stored at the route's destination with C-STORE ([`scu`]), then taken off the
//! spool. Does not own: de-identification itself, consent and the ledger — the application layer
//! builds the pipeline that implements [`forward::Deidentify`].

pub mod config;
mod dimse;
pub mod forward;
pub mod pull;
pub mod scp;
pub mod scu;
pub mod spool;
pub mod stow;
pub mod tls;
pub mod web_pull;

pub use config::{ConfigError, GatewayConfig, Lane, Target};
pub use forward::{Deidentify, Drained, Forwarder, Prepared};
pub use scp::{serve, ServeError, Stop};
pub use scu::Destination;
pub use spool::{DrainStatus, Spool, SpoolError};
