//! Exit codes, one place. Documented in README.md and in `veil --help`.

use std::process::ExitCode;

/// Everything asked was done.
pub const OK: u8 = 0;
/// A runtime failure: I/O, database, an internal error. Nothing half-written is left behind.
pub const FAILURE: u8 = 1;
/// Bad arguments, bad policy, bad key file: fix the named file or field and rerun.
pub const USAGE: u8 = 2;
/// The run finished but some inputs were quarantined or rejected (see the run report).
pub const QUARANTINED: u8 = 3;
/// A check found problems (`veil verify` findings, `veil ledger verify` tampering).
pub const FINDINGS: u8 = 4;

/// An error caused by what the user gave (arguments, config, key file): exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand for returning a usage error from a command.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// Prints the error chain on one line and turns the outcome into the process exit code.
pub fn finish(result: anyhow::Result<u8>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("veil: error: {err:#}");
            if err.chain().any(|e| e.is::<UsageError>()) {
                ExitCode::from(USAGE)
            } else {
                ExitCode::from(FAILURE)
            }
        }
    }
}

/// A pipeline error as the CLI reports it (see [`app_error`]).
pub fn pipeline_error(e: veil_pipeline::PipelineError) -> anyhow::Error {
    app_error(e.into())
}

/// An application-layer error as the CLI reports it: the user's to fix (exit 2) or a runtime
/// failure (exit 1), decided once by `AppError::is_usage`.
pub fn app_error(e: veil_app::AppError) -> anyhow::Error {
    if e.is_usage() {
        usage(e.to_string())
    } else {
        anyhow::Error::from(e)
    }
}
