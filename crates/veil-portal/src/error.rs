//! The portal's one error type. Front ends map it once: [`PortalError::is_usage`] errors are the
//! operator's to fix (the CLI's exit 2), the rest are runtime failures (exit 1). Messages name
//! the argument or file and what to do, never an identifying value.

/// Why starting the portal, issuing a code or adding an officer failed.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// A bad argument or setting, said in a sentence for the operator.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    App(#[from] veil_app::AppError),
    #[error(transparent)]
    Store(#[from] veil_store::StoreError),
    /// The TLS certificate or key could not be loaded (the message names the file).
    #[error("--tls-cert/--tls-key: {0}")]
    Tls(String),
    /// The address could not be bound, or the server stopped with an error.
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
}

impl PortalError {
    /// Is this the operator's to fix (arguments, key, store settings) rather than a failure at
    /// run time?
    pub fn is_usage(&self) -> bool {
        match self {
            PortalError::Usage(_) | PortalError::Tls(_) => true,
            PortalError::App(e) => e.is_usage(),
            PortalError::Store(e) => e.is_usage(),
            PortalError::Io { .. } => false,
        }
    }
}
