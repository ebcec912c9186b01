//! `veil gateway`: the DICOM network front, set up from its configuration file.
//!
//! This slice receives: it accepts listed senders, answers C-ECHO, and spools every C-STORE
//! durably and sealed (see `veil-gateway`). De-identifying the spool and forwarding are later
//! steps of issue 20; the spool is the pipeline's input then.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use veil_gateway::{GatewayConfig, Spool, Stop};

use crate::build::load_key;
use crate::AppError;

/// Reads and checks a gateway configuration (errors name file, line, column and field).
pub fn check(path: &Path) -> Result<GatewayConfig, AppError> {
    GatewayConfig::load(path).map_err(|e| AppError::Usage(e.to_string()))
}

/// A gateway ready to serve: configuration checked, key loaded, spool open, port bound.
pub struct Gateway {
    config: Arc<GatewayConfig>,
    spool: Arc<Spool>,
    listener: TcpListener,
}

impl Gateway {
    /// Everything that can be wrong with the setup fails here, before the first association.
    pub fn open(config_path: &Path) -> Result<Gateway, AppError> {
        let config = check(config_path)?;
        let key = load_key(config.key.as_deref())?;
        let spool = Spool::open(&config.spool_dir, &key)
            .map_err(|e| AppError::Usage(format!("spool: {e}")))?;
        let listener = TcpListener::bind(config.listen).map_err(|error| AppError::Io {
            what: "cannot listen on",
            path: config.listen.to_string().into(),
            error,
        })?;
        Ok(Gateway {
            config: Arc::new(config),
            spool: Arc::new(spool),
            listener,
        })
    }

    /// Where it listens (the port chosen when the configuration says 0).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// The AE title senders call.
    pub fn ae_title(&self) -> &str {
        &self.config.ae_title
    }

    /// Serves until `stop` (a process is usually stopped by a signal: nothing acknowledged is
    /// lost, since every instance is spooled before its C-STORE response).
    pub fn serve(self, stop: Stop) -> Result<(), AppError> {
        veil_gateway::serve(self.config, self.spool, self.listener, stop)
            .map_err(|e| AppError::Usage(e.to_string()))
    }
}
