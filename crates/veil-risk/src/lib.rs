//! Re-identification risk of imaging metadata, and its reduction before release.
//!
//! This crate owns: reading quasi-identifiers from DICOM headers, CSV or Parquet
//! ([`table`]); equivalence classes ([`classes`]); El Emam's prosecutor, journalist and
//! marketer risk, ℓ-diversity and Pitman population uniqueness ([`measure()`]); the search for the
//! least generalisation meeting a k target within a suppression budget ([`search`]), whose
//! result is a `[generalize]` policy fragment that `veil deid` applies through
//! `veil_deid::generalize::apply`; and the text/JSON/HTML reports ([`report`]). The
//! generalisation hierarchies are shared with the de-identifier in
//! `veil_profile::generalize`, so the released data has the classes that were measured.

pub mod classes;
mod fxhash;
pub mod measure;
pub mod report;
pub mod search;
pub mod table;

pub use measure::{measure, MeasureOptions, RiskReport};
pub use search::{Found, Search, SearchOptions, SearchResult};
pub use table::{load, LoadOptions, QiTable, DEFAULT_QUASI};

/// Why a risk measurement could not be made: the user's to fix (a missing column, a bad
/// argument: the CLI's exit 2), or a failure reading or writing (exit 1). Messages name the file
/// and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

impl RiskError {
    /// Is this the user's to fix?
    pub fn is_usage(&self) -> bool {
        matches!(self, RiskError::Usage(_))
    }
}

/// Results of this crate.
pub type Result<T, E = RiskError> = std::result::Result<T, E>;

/// A failure with what was being done, for any error: `.with_context(|| "file: cannot open")`.
pub(crate) trait Context<T> {
    fn with_context<F: FnOnce() -> String>(self, what: F) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn with_context<F: FnOnce() -> String>(self, what: F) -> Result<T> {
        self.map_err(|e| RiskError::Failed(format!("{}: {e}", what())))
    }
}

pub(crate) fn usage(msg: impl Into<String>) -> RiskError {
    RiskError::Usage(msg.into())
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, then rename).
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("{}: cannot rename into place", path.display()))?;
    Ok(())
}
