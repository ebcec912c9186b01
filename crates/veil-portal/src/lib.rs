//! Veil's web portal, run by `veil serve`: patients see their imaging history, every
//! disclosure with its ledger proof status, their consent per purpose with a control to opt out,
//! breach notices that concern them and a download of their record; the privacy office sees
//! recipients, releases, consent statistics, withdrawals to notify, breaches and the ledger's
//! status, and issues patients' access codes.
//!
//! This crate owns the HTTP side: routing, server-rendered pages (minijinja, auto-escaped, no
//! JavaScript), sessions and CSRF tokens, sign-in rules (one-time codes, password + TOTP,
//! rate limits and lockout), security headers and the portal's audit trail. It does not own
//! data: the consent registry, ledger, disclosures and breach reports come from `veil-app` and
//! `veil-store` exactly as the CLI gets them, and a withdrawal here is the same
//! `Store::withdraw` as `veil withdraw`. It does not parse arguments or print: `veil serve` and
//! `veil portal …` in the `veil` binary do.

pub mod access;
mod error;
mod limits;
mod pages;
mod session;
mod web;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

pub use error::PortalError;
use veil_store::{Settings, Store};

/// How to run the portal.
pub struct ServeOptions {
    /// Address to listen on (port 0: any free port; the bound address is reported).
    pub listen: SocketAddr,
    /// PEM certificate chain and private key for HTTPS; `None`: plain HTTP (loopback only).
    pub tls: Option<(PathBuf, PathBuf)>,
    pub store: Store,
    pub settings: Settings,
}

/// Checks the options, binds the address and serves until the process is stopped.
/// `on_listening` is told the bound address and the scheme (`http` or `https`) once the portal
/// accepts connections.
pub fn serve(
    options: ServeOptions,
    on_listening: impl FnOnce(SocketAddr, &str),
) -> Result<(), PortalError> {
    if options.tls.is_none() && !options.listen.ip().is_loopback() {
        return Err(PortalError::Usage(format!(
            "--listen {}: plain HTTP is refused on an address other computers can reach; give --tls-cert and --tls-key, or listen on 127.0.0.1 behind a TLS proxy",
            options.listen
        )));
    }
    let tls = match &options.tls {
        Some((cert, key)) => Some(load_tls(cert, key)?),
        None => None,
    };
    let listener = TcpListener::bind(options.listen).map_err(|error| PortalError::Io {
        what: format!("--listen {}: cannot bind", options.listen),
        error,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|error| PortalError::Io {
            what: "listener".into(),
            error,
        })?;
    let bound = listener.local_addr().map_err(|error| PortalError::Io {
        what: "listener".into(),
        error,
    })?;
    let state = Arc::new(web::AppState::new(
        options.store,
        options.settings,
        tls.is_some(),
    ));
    let app = web::router(state.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| PortalError::Io {
            what: "runtime".into(),
            error,
        })?;
    runtime.block_on(async move {
        // The ledger's Merkle tree, which every disclosure page's proofs need, is built once now
        // in the background rather than by the first patient to open a page (seconds on a
        // million entries; requests that come sooner wait for it, once).
        let store = state.store.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.receipts(&[1]) {
                tracing::warn!("portal: ledger tree not prepared: {e}");
            }
        });
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let io = |error| PortalError::Io {
            what: format!("serving {bound}"),
            error,
        };
        match tls {
            Some(config) => {
                on_listening(bound, "https");
                axum_server::from_tcp_rustls(listener, config)
                    .serve(service)
                    .await
                    .map_err(io)
            }
            None => {
                let listener = tokio::net::TcpListener::from_std(listener).map_err(io)?;
                on_listening(bound, "http");
                axum::serve(listener, service).await.map_err(io)
            }
        }
    })
}

/// The rustls configuration from PEM files (ring provider, TLS 1.2 and 1.3).
fn load_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<axum_server::tls_rustls::RustlsConfig, PortalError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| PortalError::Tls(format!("{}: {e}", p.display())))
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    // ring: the provider the workspace already builds (ureq's TLS); aws-lc-rs, which rustls
    // now prefers for its post-quantum key exchange, would add a C and cmake build.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = <rustls::pki_types::CertificateDer<'static> as rustls::pki_types::pem::PemObject>::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<rustls::pki_types::CertificateDer<'static>>, _>>()
        .map_err(|e| PortalError::Tls(format!("{}: not a PEM certificate chain ({e})", cert.display())))?;
    if certs.is_empty() {
        return Err(PortalError::Tls(format!(
            "{}: no certificate in it",
            cert.display()
        )));
    }
    let private = <rustls::pki_types::PrivateKeyDer<'static> as rustls::pki_types::pem::PemObject>::from_pem_slice(&key_pem)
        .map_err(|e| PortalError::Tls(format!("{}: not a PEM private key ({e})", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PortalError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| PortalError::Tls(format!("{} and {}: {e}", cert.display(), key.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(
        Arc::new(config),
    ))
}
