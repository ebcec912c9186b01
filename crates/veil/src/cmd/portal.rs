//! The web portal (issue 21): `veil serve` runs it; `veil portal code` issues a patient's
//! one-time access code; `veil portal officer add` creates a privacy-office account. The portal
//! itself lives in crate `veil-portal`; this module parses, prints and maps errors.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::registry::StoreArgs;
use crate::exit;

/// Environment variable holding a new officer's password (else it is read from stdin).
const PASSWORD_ENV: &str = "VEIL_OFFICER_PASSWORD";

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address and port to listen on. Plain HTTP only on a loopback address (127.0.0.1, ::1);
    /// any other address needs --tls-cert and --tls-key. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Store to serve: a SQLite path or postgres:// URL (same as --db; default $VEIL_DB, else
    /// ./.veil/veil.db).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// PEM certificate chain for HTTPS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (with --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub store_args: StoreArgs,
}

#[derive(clap::Subcommand)]
pub enum PortalCommand {
    /// Print a one-time access code for a patient (for a letter or e-mail). The code works once,
    /// expires, and is stored only as a keyed hash.
    #[command(
        after_help = "Exit codes: 0 code printed; 1 runtime failure (database); 2 usage error (unknown patient, no key, bad --valid-days)."
    )]
    Code(CodeArgs),
    /// Privacy-office accounts.
    #[command(subcommand)]
    Officer(OfficerCommand),
}

#[derive(clap::Args)]
pub struct CodeArgs {
    /// The patient's ID, as in the consent registry and the images.
    pub patient: String,
    /// Issuer of the patient ID (empty: none).
    #[arg(long, default_value = "")]
    pub issuer: String,
    /// Days until the code expires (1 to 90).
    #[arg(long, default_value_t = 14)]
    pub valid_days: u32,
    /// Who issues the code, for the audit log.
    #[arg(long, default_value = "operator")]
    pub issued_by: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(clap::Subcommand)]
pub enum OfficerCommand {
    /// Add a privacy-office account: password (argon2-hashed) from $VEIL_OFFICER_PASSWORD or the
    /// first line of stdin; prints the TOTP secret and otpauth:// URI once, for an authenticator app.
    #[command(
        after_help = "Exit codes: 0 account added; 1 runtime failure (database); 2 usage error (name taken or malformed, password shorter than 12 characters, no key)."
    )]
    Add(OfficerAddArgs),
}

#[derive(clap::Args)]
pub struct OfficerAddArgs {
    /// Account name (letters, digits, dots, dashes, underscores).
    pub name: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

fn portal_error(e: veil_portal::PortalError) -> anyhow::Error {
    if e.is_usage() {
        exit::usage(e.to_string())
    } else {
        anyhow::Error::from(e)
    }
}

fn open(a: &StoreArgs, db: Option<&str>) -> anyhow::Result<veil_store::Store> {
    let mut store = veil_app::registry::open_store(db.or(a.db.as_deref()), a.key.as_deref(), true)
        .map_err(exit::app_error)?;
    if let Some(p) = &a.tree_heads {
        store.set_witness_file(Some(p.clone()));
    }
    Ok(store)
}

pub fn serve(a: ServeArgs) -> anyhow::Result<u8> {
    let settings = veil_app::registry::institution_settings(a.store_args.config.as_deref())
        .map_err(exit::app_error)?;
    let store = open(&a.store_args, a.store.as_deref())?;
    let location = store.location().to_string();
    let tls = a.tls_cert.zip(a.tls_key);
    veil_portal::serve(
        veil_portal::ServeOptions {
            listen: a.listen,
            tls,
            store,
            settings,
        },
        |bound, scheme| {
            println!("veil serve: portal at {scheme}://{bound}/ (store {location}); patients sign in at /sign-in, the privacy office at /office/sign-in; stop with Ctrl-C");
        },
    )
    .map_err(portal_error)?;
    Ok(exit::OK)
}

pub fn run(c: PortalCommand) -> anyhow::Result<u8> {
    match c {
        PortalCommand::Code(a) => {
            let store = open(&a.store, None)?;
            let issued = veil_portal::access::issue_code(
                &store,
                &a.patient,
                &a.issuer,
                &a.issued_by,
                a.valid_days,
            )
            .map_err(portal_error)?;
            println!("{}", issued.code);
            eprintln!(
                "access code for patient reference {}: works once, until {}; only a keyed hash of it is stored",
                issued.patient_ref, issued.expires_at
            );
            Ok(exit::OK)
        }
        PortalCommand::Officer(OfficerCommand::Add(a)) => {
            let password = match std::env::var(PASSWORD_ENV) {
                Ok(p) => p,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            let store = open(&a.store, None)?;
            let new = veil_portal::access::add_officer(&store, &a.name, &password)
                .map_err(portal_error)?;
            println!(
                "officer {} added. Add this to an authenticator app now; it is not shown again:",
                a.name
            );
            println!("  TOTP secret: {}", new.totp_secret_base32);
            println!("  {}", new.otpauth_uri);
            Ok(exit::OK)
        }
    }
}
