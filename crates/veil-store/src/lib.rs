//! Veil's store: the consent registry, recipients, releases and the disclosure ledger.
//!
//! One schema and one set of migrations (`migrations/*.sql`, portable SQL) serve two back-ends
//! through sqlx's `Any` driver: an embedded SQLite file (the default, `./.veil/veil.db`) and
//! PostgreSQL (`postgres://…`). The crate owns:
//!
//! - encryption at rest: original identifiers (patient IDs, issuers, original UIDs, consent
//!   evidence references) are sealed with XChaCha20-Poly1305 under `key.subkey("store", "aead")`
//!   and found again by keyed hash (`key.mac`), so nothing identifying is stored in clear;
//! - the consent registry ([`consent`]), with FHIR R4 `Consent` ([`fhir`]) and CSV ([`csv_import`])
//!   import, institution defaults per purpose and an append-only history;
//! - recipients and releases;
//! - the hash-chained, Ed25519-checkpointed ledger ([`ledger`]) and the questions it answers
//!   (disclosures, breach, trace, withdraw: [`queries`]);
//! - the web portal's tables ([`portal`]: access codes, officer accounts, audit log, breaches);
//! - publishing a release's outputs so that a crash leaves neither an output without its ledger
//!   entry nor an entry without its output ([`publish`]).
//!
//! The API is synchronous: a small current-thread tokio runtime inside [`Store`] drives sqlx, so
//! callers (the `veil` binary, the pipeline's rayon workers) need no async code.

pub mod config;
pub mod consent;
pub mod consent_log;
pub mod crypto;
pub mod csv_import;
pub mod fhir;
pub mod ledger;
pub mod merkle;
pub mod portal;
pub mod publish;
pub mod queries;
pub mod studies;
pub mod time;
pub mod tree_head;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::{Executor, Row};
use veil_keys::Key;

pub use config::Settings;
pub use consent::{ConsentInput, ConsentRecord, ConsentState, Decision, Scope};
pub use ledger::{LedgerEntry, NewEntry, VerifyReport};

/// Environment variable naming the database (a SQLite path or a `postgres://` URL).
pub const DB_ENV: &str = "VEIL_DB";
/// Where the store lives when neither `--db` nor `VEIL_DB` says otherwise.
pub const DEFAULT_DB: &str = ".veil/veil.db";

/// The migrations, in order: (version, name, SQL). Embedded at build time.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "tree_heads",
        include_str!("../migrations/0002_tree_heads.sql"),
    ),
    (3, "portal", include_str!("../migrations/0003_portal.sql")),
];

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Errors of the store. Messages never carry identifying values or key material.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database {location}: cannot connect ({reason}); check that the server is running and reachable and that --db / VEIL_DB names it, then rerun (nothing was written)")]
    Connect { location: String, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error("store {0}: it was created with a different key (fingerprints differ); use the key it was created with")]
    WrongKey(String),
    #[error("this operation needs the key (pass --key, or set VEIL_KEY_FILE or VEIL_KEY)")]
    NeedsKey,
    #[error("store schema: {0}")]
    Schema(String),
    #[error("stored value cannot be decrypted ({0}): wrong key or tampered row")]
    Decrypt(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// Is this the user's to fix (a bad setting, the wrong key, no key) rather than a failure
    /// at run time?
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            StoreError::Usage(_) | StoreError::WrongKey(_) | StoreError::NeedsKey
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Keys derived from the master key for the store.
pub(crate) struct StoreKeys {
    pub master: Key,
    pub sealer: crypto::Sealer,
    pub signer: ed25519_dalek::SigningKey,
}

/// An open store.
pub struct Store {
    rt: tokio::runtime::Runtime,
    pub(crate) pool: AnyPool,
    backend: Backend,
    location: String,
    /// The SQLite file, for the read-only connection that streams the ledger.
    pub(crate) sqlite_path: Option<PathBuf>,
    pub(crate) keys: Option<StoreKeys>,
    /// Serialises this process's appends (other processes wait on the database's lock).
    pub(crate) tip: Mutex<()>,
    /// Patient references known to have a row in `patients` (saves a query per append).
    pub(crate) known_patients: Mutex<std::collections::HashSet<String>>,
    /// Where signed tree heads are appended outside the database ([`tree_head`]).
    pub(crate) witness: Option<PathBuf>,
    /// A failure to append to the witness file, kept for the caller to report.
    pub(crate) witness_failure: Mutex<Option<String>>,
    /// The ledger's Merkle tree as last built for receipts, reused while it matches the latest
    /// signed head (a long-running reader, the portal, would otherwise read every entry's hash
    /// for each patient's page).
    pub(crate) tree_cache: Mutex<Option<std::sync::Arc<merkle::Tree>>>,
}

/// Turns `--db` / `VEIL_DB` / the default into a connection URL and a printable location.
pub fn resolve_location(db: Option<&str>) -> Result<(String, String, Backend)> {
    let raw = match db {
        Some(d) => d.to_string(),
        None => std::env::var(DB_ENV).unwrap_or_else(|_| DEFAULT_DB.to_string()),
    };
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        // Printable form without credentials.
        let shown = match (raw.find("://"), raw.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}://…@{}", &raw[..s], &raw[at + 1..]),
            _ => raw.clone(),
        };
        return Ok((raw, shown, Backend::Postgres));
    }
    let path = raw
        .strip_prefix("sqlite://")
        .or_else(|| raw.strip_prefix("sqlite:"))
        .unwrap_or(&raw);
    if path.is_empty() {
        return Err(StoreError::Usage("--db: empty path".into()));
    }
    let path = PathBuf::from(path);
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            create_private_dir(parent)?;
        }
    }
    let abs = if path.is_absolute() {
        path.clone()
    } else {
        std::env::current_dir()?.join(&path)
    };
    let url = format!("sqlite://{}?mode=rwc", abs.display());
    Ok((url, path.display().to_string(), Backend::Sqlite))
}

/// A driver's message with the connection URL's password taken out, should it quote the URL.
fn strip_credentials(message: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, pw)| pw)
        .filter(|pw| !pw.is_empty());
    match password {
        Some(pw) => message.replace(pw, "…"),
        None => message.to_string(),
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating and migrating when needed) the store at `db` (`None`: `VEIL_DB` or the
    /// default). With a key, identifiers can be sealed and read back and checkpoints signed; a
    /// store refuses a key other than the one it was created with. Without a key only the
    /// ledger's verification and export work.
    pub fn open(db: Option<&str>, key: Option<&Key>) -> Result<Store> {
        let (url, location, backend) = resolve_location(db)?;
        sqlx::any::install_default_drivers();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let pool = rt.block_on(async {
            let mut opts = AnyPoolOptions::new();
            if backend == Backend::Sqlite {
                // One connection: SQLite serialises writers anyway, and the pragmas below are set
                // on every (re)connect.
                opts = opts.max_connections(1).after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        // Releases append in batches: statement journals in memory (no temp
                        // file per multi-row INSERT), a page cache that holds the ledger's
                        // index pages, and fewer WAL checkpoints (each one fsyncs).
                        conn.execute("PRAGMA temp_store = MEMORY").await?;
                        conn.execute("PRAGMA cache_size = -32768").await?;
                        conn.execute("PRAGMA wal_autocheckpoint = 8192").await?;
                        Ok(())
                    })
                });
            } else {
                // The default waits 30 s for a server that is down; ten is plenty on a network.
                opts = opts
                    .max_connections(4)
                    .acquire_timeout(std::time::Duration::from_secs(10));
            }
            match opts.connect(&url).await {
                Ok(pool) => Ok(pool),
                Err(e) => {
                    // The pool reports only that it timed out: one direct attempt tells why
                    // (refused, unknown host, authentication failed).
                    let reason = match e {
                        sqlx::Error::PoolTimedOut => {
                            use sqlx::Connection;
                            match tokio::time::timeout(
                                std::time::Duration::from_secs(5),
                                sqlx::AnyConnection::connect(&url),
                            )
                            .await
                            {
                                Ok(Err(direct)) => direct.to_string(),
                                _ => e.to_string(),
                            }
                        }
                        other => other.to_string(),
                    };
                    Err(StoreError::Connect {
                        location: location.clone(),
                        reason: strip_credentials(&reason, &url),
                    })
                }
            }
        })?;
        if backend == Backend::Sqlite {
            restrict_file(&url);
        }
        let keys = key.map(|k| StoreKeys {
            master: k.clone(),
            sealer: crypto::Sealer::new(&k.subkey("store", "aead")),
            signer: ed25519_dalek::SigningKey::from_bytes(k.subkey("ledger", "ed25519").as_bytes()),
        });
        let sqlite_path = (backend == Backend::Sqlite).then(|| sqlite_file(&url));
        let store = Store {
            rt,
            pool,
            backend,
            witness: tree_head::witness_file(sqlite_path.as_deref()),
            witness_failure: Mutex::new(None),
            tree_cache: Mutex::new(None),
            sqlite_path,
            location,
            keys,
            tip: Mutex::new(()),
            known_patients: Mutex::new(Default::default()),
        };
        store.migrate()?;
        store.check_key()?;
        Ok(store)
    }

    /// Which engine this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The store's location, printable (no password).
    pub fn location(&self) -> &str {
        &self.location
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first cannot wait for another
    /// process's write lock when it upgrades and fails at once with "database is locked";
    /// waiting at BEGIN is covered by the busy timeout.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    pub(crate) fn keys(&self) -> Result<&StoreKeys> {
        self.keys.as_ref().ok_or(StoreError::NeedsKey)
    }

    /// Applies pending migrations, each in its own transaction; a migration whose text changed
    /// after it was applied is refused.
    fn migrate(&self) -> Result<()> {
        self.block_on(async {
            // One transaction for the whole upgrade; on PostgreSQL an advisory lock keeps two
            // processes opening a new database at once from racing.
            let mut tx = self.begin_write().await?;
            if self.backend == Backend::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock(5627301)").execute(&mut *tx).await?;
            }
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS veil_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, sha256 TEXT NOT NULL, applied_at TEXT NOT NULL)",
            )
            .execute(&mut *tx)
            .await?;
            let rows = sqlx::query("SELECT version, sha256 FROM veil_migrations ORDER BY version")
                .fetch_all(&mut *tx)
                .await?;
            let applied: Vec<(i64, String)> = rows
                .iter()
                .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?)))
                .collect::<Result<_, sqlx::Error>>()?;
            if let Some((v, _)) = applied.iter().find(|(v, _)| !MIGRATIONS.iter().any(|m| m.0 == *v)) {
                return Err(StoreError::Schema(format!(
                    "database has migration {v}, unknown to this Veil version (upgrade Veil)"
                )));
            }
            for (version, name, sql) in MIGRATIONS {
                let digest = hex::encode(Sha256::digest(sql.as_bytes()));
                if let Some((_, d)) = applied.iter().find(|(v, _)| v == version) {
                    if *d != digest {
                        return Err(StoreError::Schema(format!(
                            "migration {version} ({name}) differs from the one applied to this database"
                        )));
                    }
                    continue;
                }
                for statement in split_statements(sql) {
                    sqlx::query(&statement).execute(&mut *tx).await?;
                }
                sqlx::query("INSERT INTO veil_migrations (version, name, sha256, applied_at) VALUES ($1, $2, $3, $4)")
                    .bind(*version)
                    .bind(*name)
                    .bind(digest)
                    .bind(time::now_utc())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// A store remembers a keyed check value of the key it was created with.
    fn check_key(&self) -> Result<()> {
        let Some(keys) = &self.keys else {
            return Ok(());
        };
        let check = hex::encode(keys.master.mac("veil-store/key-check", b"veil"));
        self.block_on(async {
            let row = sqlx::query("SELECT value FROM store_meta WHERE name = 'key_check'")
                .fetch_optional(&self.pool)
                .await?;
            match row {
                Some(r) => {
                    let v: String = r.try_get(0)?;
                    if v != check {
                        return Err(StoreError::WrongKey(self.location.clone()));
                    }
                }
                None => {
                    sqlx::query("INSERT INTO store_meta (name, value) VALUES ('key_check', $1)")
                        .bind(check)
                        .execute(&self.pool)
                        .await?;
                }
            }
            Ok(())
        })
    }

    /// The keyed reference of a patient: what the store uses instead of the patient ID.
    /// An empty issuer means "any issuer" (consents recorded without one apply to all).
    pub fn patient_ref(&self, patient_id: &str, issuer: &str) -> Result<String> {
        Ok(patient_ref(&self.keys()?.master, patient_id, issuer))
    }

    /// Runs a statement on the raw database: for tamper tests and administration only.
    pub fn execute_raw(&self, sql: &str) -> Result<u64> {
        self.block_on(async { Ok(sqlx::query(sql).execute(&self.pool).await?.rows_affected()) })
    }

    /// Closes the pool (waits for connections to finish).
    pub fn close(self) {
        self.rt.block_on(self.pool.close());
    }
}

/// The keyed reference of a patient (hex of `key.mac`).
pub fn patient_ref(master: &Key, patient_id: &str, issuer: &str) -> String {
    let mut v = Vec::with_capacity(patient_id.len() + issuer.len() + 1);
    v.extend_from_slice(issuer.trim().as_bytes());
    v.push(0);
    v.extend_from_slice(patient_id.trim().as_bytes());
    hex::encode(master.mac("veil-store/patient-ref", &v))
}

/// The short form of a patient reference shown in reports (`P-` + 16 hex digits).
pub fn short_ref(patient_ref: &str) -> String {
    format!("P-{}", &patient_ref[..16.min(patient_ref.len())])
}

/// The file of a `sqlite://PATH?…` URL.
fn sqlite_file(url: &str) -> PathBuf {
    let p = url.strip_prefix("sqlite://").unwrap_or(url);
    PathBuf::from(p.split('?').next().unwrap_or(p))
}

fn restrict_file(url: &str) {
    #[cfg(unix)]
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .and_then(|p| p.split('?').next())
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

/// Splits a migration into statements (on `;` at line ends; comments dropped).
fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in sql.lines() {
        let line = line.trim_end();
        if line.trim_start().starts_with("--") || line.trim().is_empty() {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if line.ends_with(';') {
            out.push(cur.trim().trim_end_matches(';').to_string());
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}
