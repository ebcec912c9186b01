//! The registry commands' arguments (clap definitions only).

use std::path::PathBuf;

/// Where the store is and which key opens it.
#[derive(clap::Args, Clone)]
pub struct StoreArgs {
    /// Store: SQLite file path or postgres://user@host:port/db (default: $VEIL_DB, else ./.veil/veil.db).
    #[arg(long, global = true)]
    pub db: Option<String>,
    /// Key file written by `veil key new`. Without --key: VEIL_KEY_FILE=FILE names the file, or
    /// VEIL_KEY holds the key itself (its 64 hex digits).
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    /// Institution settings (TOML: extra_purposes, [defaults]); default $VEIL_CONFIG or ./.veil/config.toml.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Witness file every signed tree head is appended to (JSON Lines), for auditors to keep
    /// outside the database (default: $VEIL_TREE_HEADS, else <db>.tree-heads.jsonl beside a
    /// SQLite store; PostgreSQL: none).
    #[arg(long, global = true, value_name = "FILE")]
    pub tree_heads: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum RegistryCommand {
    /// Consent registry: set, show, import, history.
    #[command(subcommand)]
    #[command(
        after_help = "Exit codes: 0 done; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field). `consent import`: 3 some records were refused (listed)."
    )]
    Consent(ConsentCommand),
    /// Recipients of releases.
    #[command(subcommand)]
    #[command(
        after_help = "Exit codes: 0 done; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field)."
    )]
    Recipient(RecipientCommand),
    /// De-identify for a recipient under a purpose, admitting only consented patients, recording every instance in the ledger.
    #[command(
        after_help = "Exit codes: 0 every input released or excluded by consent; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field); 3 finished, but some inputs were held back (quarantined or rejected)."
    )]
    Release(ReleaseArgs),
    /// The disclosure ledger (a transparency log): verify, export, head, prove, check, reconcile.
    #[command(subcommand)]
    #[command(
        after_help = "Exit codes: 0 done; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field). `ledger verify`: 4 the chain or a checkpoint does not verify (the first bad entry is named)."
    )]
    Ledger(LedgerCommand),
    /// A patient's accounting of disclosures (HTML for the patient, or JSON).
    #[command(
        after_help = "Exit codes: 0 done; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field)."
    )]
    Disclosures(DisclosuresArgs),
    /// Patients and studies released to a recipient, for breach notification (CSV or JSON).
    #[command(
        after_help = "Exit codes: 0 done; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field)."
    )]
    Breach(BreachArgs),
    /// Find the release and recipient a released (leaked) file came from.
    #[command(
        after_help = "Exit codes: 0 found in the ledger; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field); 4 not released by Veil from this store."
    )]
    Trace(TraceArgs),
    /// Record a withdrawal and list the recipients already holding the patient's data for that purpose.
    #[command(
        after_help = "Exit codes: 0 done; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field)."
    )]
    Withdraw(WithdrawArgs),
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand)]
pub enum ConsentCommand {
    /// Record one consent statement (appended; history is never changed).
    #[command(
        after_help = "Exit codes: 0 done; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field)."
    )]
    Set(SetArgs),
    /// Effective consent per purpose for a patient.
    #[command(
        after_help = "Exit codes: 0 done; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field)."
    )]
    Show(PatientArgs),
    /// Import FHIR R4 Consent JSON (single or Bundle) or CSV.
    #[command(
        after_help = "Exit codes: 0 every record imported; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field); 3 some records were refused (listed)."
    )]
    Import(ImportArgs),
    /// Every recorded statement for a patient, oldest first.
    #[command(
        after_help = "Exit codes: 0 done; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field)."
    )]
    History(PatientArgs),
}

#[derive(clap::Args)]
pub struct SetArgs {
    /// Patient ID as in the images' Patient ID.
    pub patient: String,
    /// The purpose the statement is about (research, commercial_ai_training, teaching,
    /// quality_improvement, or an institution's own from --config).
    #[arg(long)]
    pub purpose: String,
    /// granted | refused | withdrawn
    #[arg(long)]
    pub state: String,
    /// Issuer of Patient ID (empty: applies under any issuer).
    #[arg(long, default_value = "")]
    pub issuer: String,
    /// Restrict to modalities (CT,MR).
    #[arg(long, value_delimiter = ',')]
    pub modality: Vec<String>,
    /// Study dates from (YYYYMMDD or YYYY-MM-DD).
    #[arg(long)]
    pub from: Option<String>,
    /// Study dates to (inclusive).
    #[arg(long)]
    pub to: Option<String>,
    /// When the patient stated it (default: now).
    #[arg(long)]
    pub time: Option<String>,
    /// In force from (YYYY-MM-DD or RFC 3339; default: at once). Decisions before it ignore
    /// the statement.
    #[arg(long, value_name = "TIME")]
    pub valid_from: Option<String>,
    /// In force until (exclusive; default: until changed). Afterwards decisions ignore the
    /// statement: the earlier one, or the institution default, applies again.
    #[arg(long, value_name = "TIME")]
    pub valid_until: Option<String>,
    /// Where the statement came from (form, portal, …).
    #[arg(long, default_value = "cli")]
    pub source: String,
    /// Reference of the evidence (scanned form, document id); stored encrypted.
    #[arg(long, default_value = "")]
    pub evidence: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(clap::Args)]
pub struct PatientArgs {
    /// Patient ID (0010,0020) as in the original images.
    pub patient: String,
    /// Issuer of Patient ID (0010,0021) as in the images; empty: the patient under any issuer.
    #[arg(long, default_value = "")]
    pub issuer: String,
    /// Print one JSON document on stdout instead of the human-readable text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The file to import: FHIR R4 Consent JSON (one resource or a Bundle of them), or CSV with
    /// the columns of `veil consent set` (docs/consent-ledger.md).
    pub file: PathBuf,
    /// fhir | csv (default: from the extension, .csv = csv, else fhir).
    #[arg(long)]
    pub format: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(clap::Subcommand)]
pub enum RecipientCommand {
    /// Register a recipient and the purposes it may receive data for.
    #[command(
        after_help = "Exit codes: 0 done; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field)."
    )]
    Add(RecipientAddArgs),
    /// List recipients.
    #[command(
        after_help = "Exit codes: 0 done; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field)."
    )]
    List {
        /// Print one JSON document on stdout instead of the human-readable text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(clap::Args)]
pub struct RecipientAddArgs {
    /// The recipient's name, as given to `veil release --recipient` (also its key: pseudonyms
    /// and UIDs differ from one recipient to the next, so their data cannot be linked).
    pub name: String,
    /// Purposes it may receive data for, comma separated (research, commercial_ai_training,
    /// teaching, quality_improvement, or an institution's own from --config).
    #[arg(long, required = true, value_delimiter = ',')]
    pub purpose: Vec<String>,
    /// Who to contact for deletion requests and breach handling.
    #[arg(long, default_value = "")]
    pub contact: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(clap::Args)]
pub struct ReleaseArgs {
    /// Input DICOM files and directories (walked recursively; never modified).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The registered recipient (`veil recipient add`).
    #[arg(long)]
    pub recipient: String,
    /// The purpose of this release; only patients whose consent allows it are released.
    #[arg(long)]
    pub purpose: String,
    /// Output root for this recipient: OUT/<patient pseudonym>/<study>/<series>/<sop>.dcm. It
    /// holds nothing about patients who were not released.
    #[arg(long)]
    pub out: PathBuf,
    /// Policy file (TOML); default: the built-in default policy (`veil policy show`).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The operator's side: held-back inputs, reasons, journal and the full release report,
    /// never inside OUT (default: <OUT>.quarantine beside it).
    #[arg(long)]
    pub quarantine: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Outputs recorded per ledger transaction. Larger is faster; an interrupted release redoes
    /// at most this many outputs (and at most 2 seconds' worth).
    #[arg(long, default_value_t = veil_store::publish::BATCH as u32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub ledger_batch: u32,
    /// Print one JSON document (the release report) on stdout instead of the human-readable text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(clap::Subcommand)]
pub enum LedgerCommand {
    /// Check the hash chain, signed checkpoints and tree heads, and the consent registry against
    /// the log; exit 4 naming the first bad entry.
    #[command(
        after_help = "Exit codes: 0 intact; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field); 4 the chain, a checkpoint, a tree head or a consent record does not verify (the first bad entry is named)."
    )]
    Verify {
        /// Verify an export file instead of the database. It needs the ledger's public key as
        /// the auditor pinned it (--public-key), or --key: a key found in the export itself is
        /// never trusted.
        #[arg(long)]
        export: Option<PathBuf>,
        /// The ledger's Ed25519 public key (64 hex digits, as `veil ledger export` and `veil
        /// ledger head` print it), pinned by the auditor: every checkpoint and tree head must be
        /// signed by it.
        #[arg(long, value_name = "HEX")]
        public_key: Option<String>,
        /// Tree heads saved outside the database (a witness file, or one head as `veil ledger
        /// head` prints it); repeatable. The log must still hold, unchanged, every entry each
        /// covers: truncation, rollback and rewriting are found.
        #[arg(long, value_name = "FILE")]
        sth: Vec<PathBuf>,
        /// Print one JSON document on stdout instead of the human-readable text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Settle an output directory after an interrupted `veil release`: outputs whose ledger entry
    /// never committed are removed (a rerun of the release produces them again).
    #[command(
        after_help = "Exit codes: 0 done; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field)."
    )]
    Reconcile {
        /// The release's output directory.
        #[arg(long)]
        out: PathBuf,
        /// Print one JSON document on stdout instead of the human-readable text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write the chain (JSON Lines, originals sealed) for an external auditor.
    #[command(
        after_help = "Exit codes: 0 done; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field)."
    )]
    /// Needs the key: the export carries the ledger's public key and its fingerprint, which
    /// are also printed for the auditor to pin (`veil ledger verify --export F --public-key`).
    Export {
        /// Where to write the export (JSON Lines).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the latest signed tree head (JSON) for a witness to keep.
    #[command(
        after_help = "Exit codes: 0 done; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field)."
    )]
    Head {
        /// Sign a head over every entry first if none covers the tip (needs the key; only after
        /// checking those entries: a store from before tree heads, say).
        #[arg(long)]
        sign: bool,
        /// Also write the head to this file (atomically).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write a receipt anyone can check offline with the public key alone: an entry with its
    /// inclusion proof (--entry), or the proof that today's log extends a saved head (--since).
    #[command(
        after_help = "Exit codes: 0 done; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field)."
    )]
    Prove {
        /// The entry's sequence number.
        #[arg(long, conflicts_with = "since", required_unless_present = "since")]
        entry: Option<i64>,
        /// A saved tree head (JSON, as `veil ledger head` prints it).
        #[arg(long, value_name = "FILE")]
        since: Option<PathBuf>,
        /// Where to write the receipt (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Check a receipt from `veil ledger prove` offline, with the ledger's public key only.
    #[command(
        after_help = "Exit codes: 0 the receipt holds; 2 usage or configuration error (the message names the argument, file or field); 4 it does not (edited, or the log was rewritten)."
    )]
    Check {
        /// The receipt (JSON).
        receipt: PathBuf,
        /// The ledger's Ed25519 public key (64 hex digits), as the checker pinned it.
        #[arg(long, value_name = "HEX", required = true)]
        public_key: String,
    },
}

#[derive(clap::Args)]
pub struct DisclosuresArgs {
    /// Patient ID (0010,0020) as in the original images.
    pub patient: String,
    /// Issuer of Patient ID (0010,0021) as in the images; empty: the patient under any issuer.
    #[arg(long, default_value = "")]
    pub issuer: String,
    /// html | json
    #[arg(long, default_value = "html")]
    pub format: String,
    /// Write here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(clap::Args)]
pub struct BreachArgs {
    /// The recipient whose data was breached.
    #[arg(long)]
    pub recipient: String,
    /// Only releases recorded at or after this time (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// csv | json
    #[arg(long, default_value = "csv")]
    pub format: String,
    /// Write here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(clap::Args)]
pub struct TraceArgs {
    /// A released (for example leaked) DICOM file: its SOP Instance UID and bytes are looked up
    /// in the ledger.
    pub file: PathBuf,
    /// Print one JSON document on stdout instead of the human-readable text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(clap::Args)]
pub struct WithdrawArgs {
    /// Patient ID (0010,0020) as in the original images.
    pub patient: String,
    /// The purpose consent is withdrawn for.
    #[arg(long)]
    pub purpose: String,
    /// Issuer of Patient ID (0010,0021) as in the images; empty: the patient under any issuer.
    #[arg(long, default_value = "")]
    pub issuer: String,
    /// Where the withdrawal came from (form, portal, …).
    #[arg(long, default_value = "cli")]
    pub source: String,
    /// Reference of the evidence (scanned form, document id); stored encrypted.
    #[arg(long, default_value = "")]
    pub evidence: String,
    /// Print one JSON document on stdout instead of the human-readable text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}
