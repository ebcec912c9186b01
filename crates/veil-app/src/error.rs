//! The application layer's one error type. Every front end maps it once: [`AppError::is_usage`]
//! errors are the user's to fix (the CLI's exit 2), the rest are runtime failures (exit 1).

use std::path::PathBuf;

/// Why an application-level operation failed. Messages name the file or field and what to do,
/// never an identifying value.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A bad argument or setting, said in a sentence for the user.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Key(#[from] veil_keys::KeyError),
    #[error(transparent)]
    Policy(#[from] veil_profile::PolicyError),
    #[error(transparent)]
    PatientMap(#[from] veil_deid::patient::PatientMapError),
    #[error(transparent)]
    Pipeline(#[from] veil_pipeline::PipelineError),
    #[error(transparent)]
    Store(#[from] veil_store::StoreError),
    /// The demo's synthetic data could not be made.
    #[error("demo: {0}")]
    Demo(String),
    /// An output could not be read or OCR'd for verification (the message names the file).
    #[error("{0}")]
    Verify(String),
    /// A page template failed to render (a bug: templates are compiled in and tested).
    #[error("cannot render a page: {0}")]
    Render(String),
    #[error("{what} {path}: {error}")]
    Io {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
}

impl AppError {
    /// Is this the user's to fix (arguments, key, policy, overlapping paths, a store setting)
    /// rather than a failure at run time?
    pub fn is_usage(&self) -> bool {
        use veil_pipeline::{PipelineError, StateError};
        match self {
            AppError::Usage(_)
            | AppError::Key(_)
            | AppError::Policy(_)
            | AppError::PatientMap(_) => true,
            AppError::Pipeline(PipelineError::Paths(_))
            | AppError::Pipeline(PipelineError::State(StateError::HeldBack(_))) => true,
            AppError::Pipeline(_) => false,
            AppError::Store(e) => e.is_usage(),
            AppError::Io { .. } | AppError::Demo(_) | AppError::Render(_) | AppError::Verify(_) => {
                false
            }
        }
    }

    /// An I/O failure on a named path.
    pub fn io<'a>(
        what: &'static str,
        path: &'a std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> AppError + 'a {
        move |error| AppError::Io {
            what,
            path: path.to_path_buf(),
            error,
        }
    }
}
