//! The application layer: what every front end of Veil — the command line, a network gateway,
//! a web portal, Python bindings — runs, built once.
//!
//! This crate owns turning what a user gave into a pipeline ([`build()`]: key, policy, patient map,
//! the engine, the pixel stage and the independent verify stage), release orchestration with the
//! consent gate and the ledger writer ([`release`]; [`release_job`] when many workers, a Spark
//! job's tasks, publish one release), the demo's synthetic export with planted
//! identifiers ([`demo`], also a test kit), the registry's shared steps and documents
//! ([`registry`], [`pages`]: HTML from templates with auto-escaping), and the network gateway's setup ([`gateway`]), and the one error type front ends map to their exit
//! codes or responses ([`AppError`]). It does not parse arguments, print, or exit: front ends do.
//! Rules live in `veil-profile`, transformation in `veil-deid`, the per-file stages in
//! `veil-pipeline`, the checks in `veil-verify` and `veil-pixels`, the registry and ledger in
//! `veil-store`.

pub mod build;
pub mod demo;
pub mod error;
pub mod gateway;
pub mod pages;
pub mod pixel_stage;
pub mod registry;
pub mod release;
pub mod release_job;
pub mod verify_files;
pub mod verify_stage;

pub use build::{build, Resolved, Settings};
pub use error::AppError;
