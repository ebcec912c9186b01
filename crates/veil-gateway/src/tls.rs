//! DICOM TLS (PS3.15 Annex B, the secure transport connection profiles): rustls on the
//! listener and on associations the gateway opens (destinations, pulls).
//!
//! The listener presents its certificate chain and, when the configuration names a client CA,
//! accepts only senders whose certificate that CA signed (mutual TLS, as the BCP 195 profile
//! asks of nodes that exchange patient data). Destinations are verified against the CA file a
//! route names, or the system's trust store (which honours `SSL_CERT_FILE`); the gateway can
//! present its own certificate to destinations that ask for one. TLS 1.2 and 1.3 only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS setting cannot be used; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {what}")]
    Pem { path: PathBuf, what: String },
    #[error("{0}")]
    Config(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// Every certificate of a PEM file (a chain, or a set of CAs); at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    let certs = certs.map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        what: format!("not a PEM certificate file: {e}"),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            what: "holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks)".into(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        what: format!("no private key in it: {e}"),
    })
}

fn roots(certs: Vec<CertificateDer<'static>>) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::Config("no usable CA certificate".into()));
    }
    Ok(store)
}

/// The listener's TLS: its certificate chain and key, and the CA that signs senders'
/// certificates (None: senders are not asked for one; the AE allow-list still applies).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier =
                rustls::server::WebPkiClientVerifier::builder(Arc::new(roots(certificates(ca)?)?))
                    .build()
                    .map_err(|e| TlsError::Config(format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certificates(cert)?, private_key(key)?)
        .map_err(|e| TlsError::Config(format!("{} and {}: {e}", cert.display(), key.display())))?;
    Ok(Arc::new(config))
}

/// TLS to a destination or a PACS: whom to trust, and the certificate to present.
#[derive(Clone)]
pub struct ClientTls {
    /// The CA file destinations are checked against (None: the system's trust store).
    pub ca: Option<PathBuf>,
    /// The gateway's own certificate chain and key, for peers that ask for one.
    pub identity: Option<(PathBuf, PathBuf)>,
    pub config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca", &self.ca)
            .field("identity", &self.identity)
            .finish()
    }
}

impl PartialEq for ClientTls {
    fn eq(&self, other: &ClientTls) -> bool {
        self.ca == other.ca && self.identity == other.identity
    }
}

impl Eq for ClientTls {}

impl ClientTls {
    /// Loads the trust roots (`ca`, else the system's) and the identity, if any.
    pub fn load(
        ca: Option<&Path>,
        identity: Option<(&Path, &Path)>,
    ) -> Result<ClientTls, TlsError> {
        let roots = match ca {
            Some(ca) => roots(certificates(ca)?)?,
            None => {
                let system = rustls_native_certs::load_native_certs().map_err(|e| {
                    TlsError::Config(format!("cannot read the system's trust store: {e}"))
                })?;
                roots(system)?
            }
        };
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(certificates(cert)?, private_key(key)?)
                .map_err(|e| {
                    TlsError::Config(format!("{} and {}: {e}", cert.display(), key.display()))
                })?,
        };
        Ok(ClientTls {
            ca: ca.map(Path::to_path_buf),
            identity: identity.map(|(c, k)| (c.to_path_buf(), k.to_path_buf())),
            config: Arc::new(config),
        })
    }
}
