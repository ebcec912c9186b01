//! Consent registry, recipients, consent-gated releases and the disclosure ledger (issue 6):
//! `veil consent …`, `veil recipient …`, `veil release`, `veil ledger …`, `veil disclosures`,
//! `veil breach`, `veil trace`, `veil withdraw`. The store is chosen by `--db` (a SQLite path or a
//! `postgres://` URL), else `VEIL_DB`, else `./.veil/veil.db`; institution settings by `--config`,
//! else `VEIL_CONFIG`, else `./.veil/config.toml` when present, else the built-in defaults.

use std::io::Write;
use std::path::{Path, PathBuf};

use veil_store::consent::{describe_purpose, ConsentInput, ConsentState, Decision, Scope};
use veil_store::ledger::Uids;
use veil_store::{Settings, Store};

use crate::exit;

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
    /// The disclosure ledger: verify, export.
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
    /// Check the hash chain and signed checkpoints; exit 4 naming the first bad entry.
    #[command(
        after_help = "Exit codes: 0 intact; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field); 4 the chain or a checkpoint does not verify (the first bad entry is named)."
    )]
    Verify {
        /// Verify an export file instead of the database.
        #[arg(long)]
        export: Option<PathBuf>,
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
    Export {
        /// Where to write the export (JSON Lines).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
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

fn usage_or_fail(e: veil_store::StoreError) -> anyhow::Error {
    if e.is_usage() {
        exit::usage(e.to_string())
    } else {
        anyhow::Error::new(e)
    }
}

fn settings(a: &StoreArgs) -> anyhow::Result<Settings> {
    let path = a
        .config
        .clone()
        .or_else(|| std::env::var_os("VEIL_CONFIG").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from(".veil/config.toml")).filter(|p| p.exists()));
    match path {
        Some(p) => Settings::load(&p).map_err(usage_or_fail),
        None => Ok(Settings::default()),
    }
}

fn open(a: &StoreArgs, need_key: bool) -> anyhow::Result<Store> {
    let key = if need_key {
        Some(super::key::load(a.key.as_deref())?)
    } else {
        match (&a.key, veil_keys::Key::from_env()) {
            (Some(p), _) => Some(veil_keys::Key::load(p).map_err(|e| exit::usage(e.to_string()))?),
            (None, Ok(k)) => k,
            (None, Err(e)) => return Err(exit::usage(e.to_string())),
        }
    };
    Store::open(a.db.as_deref(), key.as_ref()).map_err(usage_or_fail)
}

fn write_out(out: &Option<PathBuf>, bytes: &[u8]) -> anyhow::Result<()> {
    match out {
        Some(p) => {
            let tmp = p.with_extension("tmp-veil");
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, p)?;
        }
        None => std::io::stdout().write_all(bytes)?,
    }
    Ok(())
}

pub fn run(cmd: RegistryCommand) -> anyhow::Result<u8> {
    match cmd {
        RegistryCommand::Consent(c) => consent(c),
        RegistryCommand::Recipient(c) => recipient(c),
        RegistryCommand::Release(a) => release(a),
        RegistryCommand::Ledger(c) => ledger(c),
        RegistryCommand::Disclosures(a) => disclosures(a),
        RegistryCommand::Breach(a) => breach(a),
        RegistryCommand::Trace(a) => trace(a),
        RegistryCommand::Withdraw(a) => withdraw(a),
    }
}

fn consent(c: ConsentCommand) -> anyhow::Result<u8> {
    match c {
        ConsentCommand::Set(a) => {
            let settings = settings(&a.store)?;
            let state = ConsentState::parse(&a.state).ok_or_else(|| {
                exit::usage(format!(
                    "--state `{}`: granted, refused or withdrawn",
                    a.state
                ))
            })?;
            let date = |v: &Option<String>, f: &str| -> anyhow::Result<String> {
                match v {
                    None => Ok(String::new()),
                    Some(s) => veil_store::time::normalize_date(s).ok_or_else(|| {
                        exit::usage(format!("--{f} `{s}`: expected YYYYMMDD or YYYY-MM-DD"))
                    }),
                }
            };
            let effective_at = match &a.time {
                None => String::new(),
                Some(t) => veil_store::time::normalize_timestamp(t).ok_or_else(|| {
                    exit::usage(format!("--time `{t}`: expected YYYY-MM-DD or RFC 3339"))
                })?,
            };
            let input = ConsentInput {
                patient_id: a.patient.clone(),
                issuer: a.issuer.clone(),
                purpose: a.purpose.clone(),
                state,
                scope: Scope {
                    modalities: a
                        .modality
                        .iter()
                        .map(|m| m.trim().to_ascii_uppercase())
                        .filter(|m| !m.is_empty())
                        .collect(),
                    from: date(&a.from, "from")?,
                    to: date(&a.to, "to")?,
                },
                effective_at,
                source: a.source.clone(),
                evidence: a.evidence.clone(),
            };
            let store = open(&a.store, true)?;
            let id = store
                .record_consent(&input, &settings)
                .map_err(usage_or_fail)?;
            println!(
                "recorded C-{id}: {} {} ({})",
                a.purpose,
                state.as_str(),
                input.scope.describe()
            );
            Ok(exit::OK)
        }
        ConsentCommand::Show(a) => {
            let settings = settings(&a.store)?;
            let store = open(&a.store, true)?;
            let summary = store
                .consent_summary(&a.patient, &a.issuer, &settings)
                .map_err(usage_or_fail)?;
            if a.json {
                let v: Vec<serde_json::Value> = summary
                    .iter()
                    .map(|(p, recs, d)| {
                        let (state, r) = match d {
                            Decision::Admit { consent_ref } => ("granted", consent_ref),
                            Decision::Exclude { reason, consent_ref } => (reason.as_str(), consent_ref),
                        };
                        serde_json::json!({"purpose": p, "state_all_imaging": state, "consent_ref": r, "records": recs})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (p, recs, d) in &summary {
                    let state = match d {
                        Decision::Admit { consent_ref } => format!("granted ({consent_ref})"),
                        Decision::Exclude {
                            reason,
                            consent_ref,
                        } => format!("{reason} ({consent_ref})"),
                    };
                    let scoped = recs.iter().filter(|r| !r.scope.is_all()).count();
                    let extra = if scoped > 0 {
                        format!("; {scoped} scoped record(s), see history")
                    } else {
                        String::new()
                    };
                    println!("{p:28} {state}{extra}");
                }
            }
            Ok(exit::OK)
        }
        ConsentCommand::History(a) => {
            let store = open(&a.store, true)?;
            let h = store
                .consent_history(&a.patient, &a.issuer)
                .map_err(usage_or_fail)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&h)?);
            } else {
                if h.is_empty() {
                    println!("no consent records (institution defaults apply)");
                }
                for r in &h {
                    println!(
                        "C-{:<5} {} {:28} {:9} {} source={} recorded={}",
                        r.id,
                        r.effective_at,
                        r.purpose,
                        r.state.as_str(),
                        r.scope.describe(),
                        r.source,
                        r.recorded_at
                    );
                }
            }
            Ok(exit::OK)
        }
        ConsentCommand::Import(a) => {
            let settings = settings(&a.store)?;
            let text = std::fs::read_to_string(&a.file)
                .map_err(|e| exit::usage(format!("{}: {e}", a.file.display())))?;
            let origin = a
                .file
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let is_csv = match a.format.as_deref() {
                Some("csv") => true,
                Some("fhir") => false,
                Some(f) => return Err(exit::usage(format!("--format `{f}`: fhir or csv"))),
                None => a
                    .file
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("csv")),
            };
            let parsed = if is_csv {
                veil_store::csv_import::parse(&text, &origin, &settings)
            } else {
                veil_store::fhir::parse(&text, &origin, &settings)
            };
            let (good, bad) = parsed.map_err(exit::usage)?;
            let store = open(&a.store, true)?;
            let ids = store
                .record_consents(&good, &settings)
                .map_err(usage_or_fail)?;
            let what = if is_csv { "line" } else { "resource" };
            for b in &bad {
                eprintln!(
                    "veil: rejected {} {what} {}: {}: {}",
                    a.file.display(),
                    b.index,
                    b.field,
                    b.message
                );
            }
            println!(
                "imported {} consent record(s) from {}; {} {what}(s) rejected",
                ids.len(),
                a.file.display(),
                bad.len()
            );
            Ok(if bad.is_empty() {
                exit::OK
            } else {
                exit::QUARANTINED
            })
        }
    }
}

fn recipient(c: RecipientCommand) -> anyhow::Result<u8> {
    match c {
        RecipientCommand::Add(a) => {
            let settings = settings(&a.store)?;
            let store = open(&a.store, true)?;
            let r = store
                .add_recipient(&a.name, &a.purpose, &a.contact, &settings)
                .map_err(usage_or_fail)?;
            println!(
                "recipient {} may receive data for: {}",
                r.name,
                r.purposes.join(", ")
            );
            Ok(exit::OK)
        }
        RecipientCommand::List { json, store } => {
            let s = open(&store, false)?;
            let rs = s.recipients().map_err(usage_or_fail)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rs)?);
            } else {
                for r in rs {
                    println!("{:24} {:50} {}", r.name, r.purposes.join(","), r.contact);
                }
            }
            Ok(exit::OK)
        }
    }
}

fn release(a: ReleaseArgs) -> anyhow::Result<u8> {
    let institution = settings(&a.store)?;
    let master = super::key::load(a.store.key.as_deref())?;
    let store = Store::open(a.store.db.as_deref(), Some(&master)).map_err(usage_or_fail)?;
    let outcome = veil_app::release::run(veil_app::release::ReleaseRequest {
        store: &store,
        institution: &institution,
        master: &master,
        recipient: a.recipient.clone(),
        purpose: a.purpose.clone(),
        inputs: a.inputs.clone(),
        settings: veil_app::Settings {
            policy: a.policy.clone(),
            out: a.out.clone(),
            quarantine: a.quarantine.clone(),
            threads: a.threads,
            ..Default::default()
        },
        ledger_batch: a.ledger_batch as usize,
    })
    .map_err(exit::app_error)?;
    let r = &outcome.reconciled;
    if r.rolled_back > 0 || r.foreign > 0 {
        eprintln!(
            "veil: an interrupted release left {} output(s) without a ledger entry: removed (they are produced again now){}",
            r.rolled_back,
            if r.foreign > 0 {
                format!("; {} path(s) hold other files and were left alone", r.foreign)
            } else {
                String::new()
            }
        );
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome.operator_report)?
        );
    } else {
        print_release(&outcome, &a);
    }
    Ok(if outcome.held() > 0 {
        exit::QUARANTINED
    } else {
        exit::OK
    })
}

fn print_release(o: &veil_app::release::ReleaseOutcome, a: &ReleaseArgs) {
    println!(
        "release {} to {} for {}: {} instance(s) released and recorded, {} excluded by consent ({} patient(s)), {} held back",
        o.release_id,
        a.recipient,
        a.purpose,
        o.recorded,
        o.report.excluded,
        o.excluded.len(),
        o.held()
    );
    if o.already_recorded > 0 {
        println!(
            "  {} instance(s) were already published and recorded by an interrupted earlier run",
            o.already_recorded
        );
    }
    for (p, (reason, n)) in &o.excluded {
        println!("  excluded {p}: {reason} ({n} instance(s))");
    }
    println!(
        "  operator's report (not shipped): {}",
        o.operator_report_path.display()
    );
}

fn ledger(c: LedgerCommand) -> anyhow::Result<u8> {
    match c {
        LedgerCommand::Verify {
            export,
            json,
            store,
        } => {
            let report = match export {
                Some(path) => {
                    let key = match &store.key {
                        Some(p) => {
                            Some(veil_keys::Key::load(p).map_err(|e| exit::usage(e.to_string()))?)
                        }
                        None => {
                            veil_keys::Key::from_env().map_err(|e| exit::usage(e.to_string()))?
                        }
                    };
                    let expected = key.map(|k| veil_store::ledger::public_key_hex_for(&k));
                    let f = std::fs::File::open(&path)
                        .map_err(|e| exit::usage(format!("{}: {e}", path.display())))?;
                    veil_store::ledger::verify_export(
                        &mut std::io::BufReader::new(f),
                        expected.as_deref(),
                    )
                    .map_err(usage_or_fail)?
                }
                None => open(&store, false)?
                    .verify_ledger()
                    .map_err(usage_or_fail)?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if report.ok() {
                println!(
                    "ledger intact: {} entries, tip {} (hash {}), {} signed checkpoint(s), signed through entry {}",
                    report.entries, report.tip_seq, &report.tip_hash[..16], report.checkpoints, report.signed_through
                );
                if report.signed_through < report.tip_seq {
                    println!(
                        "note: entries {}..{} are not yet covered by a signed checkpoint",
                        report.signed_through + 1,
                        report.tip_seq
                    );
                }
            } else {
                if let Some(b) = &report.first_bad {
                    println!("ledger TAMPERED: first bad entry {}: {}", b.seq, b.what);
                }
                for p in &report.checkpoint_problems {
                    println!("ledger TAMPERED: {p}");
                }
            }
            Ok(if report.ok() {
                exit::OK
            } else {
                exit::FINDINGS
            })
        }
        LedgerCommand::Reconcile { out, json, store } => {
            if !out.is_dir() {
                return Err(exit::usage(format!(
                    "--out {}: no such directory",
                    out.display()
                )));
            }
            let s = open(&store, false)?;
            let r = veil_store::publish::reconcile(&s, &out).map_err(usage_or_fail)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{}: {} pending output(s): {} recorded in the ledger, {} removed (never recorded), {} never published, {} path(s) holding other files left alone",
                    out.display(),
                    r.intents,
                    r.recorded,
                    r.rolled_back,
                    r.not_published,
                    r.foreign
                );
            }
            Ok(exit::OK)
        }
        LedgerCommand::Export { out, store } => {
            let s = open(&store, false)?;
            let tmp = out.with_extension("tmp-veil");
            let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            let n = s.export_ledger(&mut f).map_err(usage_or_fail)?;
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, &out)?;
            println!("exported {n} ledger entries to {}", out.display());
            Ok(exit::OK)
        }
    }
}

fn disclosures(a: DisclosuresArgs) -> anyhow::Result<u8> {
    let store = open(&a.store, true)?;
    let d = store
        .disclosures(&a.patient, &a.issuer)
        .map_err(usage_or_fail)?;
    let pref = veil_store::short_ref(
        &store
            .patient_ref(&a.patient, &a.issuer)
            .map_err(usage_or_fail)?,
    );
    let bytes = match a.format.as_str() {
        "json" => serde_json::to_vec_pretty(
            &serde_json::json!({"patient_ref": pref, "generated_at": veil_store::time::now_utc(), "disclosures": d}),
        )?,
        "html" => disclosures_html(&pref, &d).into_bytes(),
        f => return Err(exit::usage(format!("--format `{f}`: html or json"))),
    };
    write_out(&a.out, &bytes)?;
    Ok(exit::OK)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn disclosures_html(pref: &str, d: &[veil_store::queries::Disclosure]) -> String {
    let mut h = String::new();
    h.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Where your images went</title><style>");
    h.push_str("body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;line-height:1.5;color:#222}ol.t{list-style:none;border-left:3px solid #4a7;padding-left:1.2rem}ol.t li{margin:0 0 1.2rem;position:relative}ol.t li:before{content:'';position:absolute;left:-1.75rem;top:.4rem;width:.8rem;height:.8rem;border-radius:50%;background:#4a7}.when{font-weight:600}.small{color:#666;font-size:.9em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}");
    h.push_str("</style></head><body><h1>Where your images went</h1>");
    h.push_str(&format!(
        "<p>This is the record of every time images from your scans were shared, with whom, when, and why. Your name and ID were removed from every image before it was shared. Reference: {}.</p>",
        esc(pref)
    ));
    if d.is_empty() {
        h.push_str("<p><strong>None of your images have been shared.</strong></p>");
    } else {
        h.push_str(&format!(
            "<p>{} study release(s) in total.</p><h2>Timeline</h2><ol class=\"t\">",
            d.len()
        ));
        for x in d {
            let consent = if x.consent_ref.starts_with("default:") {
                "the hospital's standing rule for this purpose (you had not said yes or no)"
                    .to_string()
            } else {
                format!("your consent record {}", esc(&x.consent_ref))
            };
            h.push_str(&format!(
                "<li><div class=\"when\">{}</div><div>Images from one study ({} image(s)) were shared with <strong>{}</strong> for <strong>{}</strong>, under {}.</div><div class=\"small\">Release {}{}</div></li>",
                esc(&x.first_released_at[..10]),
                x.instances,
                esc(&x.recipient),
                esc(&x.purpose_description.to_lowercase()),
                consent,
                esc(&x.release_id),
                if x.recipient_contact.is_empty() { String::new() } else { format!(" · recipient contact: {}", esc(&x.recipient_contact)) }
            ));
        }
        h.push_str("</ol><h2>Details</h2><table><tr><th>Date</th><th>Recipient</th><th>Purpose</th><th>Consent</th><th>Study (hospital)</th><th>Images</th></tr>");
        for x in d {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&x.first_released_at[..10]),
                esc(&x.recipient),
                esc(&x.purpose_description),
                esc(&x.consent_ref),
                esc(&x.original_study_uid),
                x.instances
            ));
        }
        h.push_str("</table>");
    }
    h.push_str(&format!(
        "<p class=\"small\">You can withdraw your consent for any purpose at any time; recipients that already hold your images will be asked to delete them. Purposes: {}.</p></body></html>\n",
        veil_store::consent::BUILTIN_PURPOSES.iter().map(|(_, d)| esc(d)).collect::<Vec<_>>().join("; ")
    ));
    h
}

fn breach(a: BreachArgs) -> anyhow::Result<u8> {
    let since = match &a.since {
        None => None,
        Some(s) => Some(veil_store::time::normalize_timestamp(s).ok_or_else(|| {
            exit::usage(format!("--since `{s}`: expected YYYY-MM-DD or RFC 3339"))
        })?),
    };
    let store = open(&a.store, true)?;
    let rows = store
        .breach(&a.recipient, since.as_deref())
        .map_err(usage_or_fail)?;
    let patients: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.patient_ref.as_str()).collect();
    let studies: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.released_study_uid.as_str()).collect();
    let instances: i64 = rows.iter().map(|r| r.instances).sum();
    let bytes = match a.format.as_str() {
        "json" => serde_json::to_vec_pretty(&serde_json::json!({
            "recipient": a.recipient, "since": since, "patients": patients.len(), "studies": studies.len(), "instances": instances, "rows": rows,
        }))?,
        "csv" => veil_store::queries::breach_csv(&rows).map_err(usage_or_fail)?,
        f => return Err(exit::usage(format!("--format `{f}`: csv or json"))),
    };
    write_out(&a.out, &bytes)?;
    eprintln!(
        "breach of {}: {} patient(s), {} study(ies), {} instance(s)",
        a.recipient,
        patients.len(),
        studies.len(),
        instances
    );
    Ok(exit::OK)
}

fn read_uids(path: &Path) -> anyhow::Result<Uids> {
    use dicom_dictionary_std::tags;
    let obj = dicom_object::OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| {
            exit::usage(format!(
                "{}: not a readable DICOM file: {e}",
                path.display()
            ))
        })?;
    let get = |t| {
        obj.element(t)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .unwrap_or_default()
    };
    Ok(Uids {
        study: get(tags::STUDY_INSTANCE_UID),
        series: get(tags::SERIES_INSTANCE_UID),
        sop: get(tags::SOP_INSTANCE_UID),
    })
}

fn trace(a: TraceArgs) -> anyhow::Result<u8> {
    let uids = read_uids(&a.file)?;
    let store = open(&a.store, false)?;
    let t = store.trace(&uids).map_err(usage_or_fail)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"file": a.file, "uids": uids, "matches": t})
            )?
        );
    } else if t.is_empty() {
        println!(
            "{}: no release in this ledger carries these UIDs",
            a.file.display()
        );
    } else {
        let first = &t[0];
        println!(
            "{}: matched by {} UID: release {} to {} for {} (ledger entry {}, recorded {}){}",
            a.file.display(),
            first.matched_by,
            first.entry.release_id,
            first.entry.recipient,
            first.entry.purpose,
            first.entry.seq,
            first.entry.recorded_at,
            if t.len() > 1 {
                format!("; {} entries match", t.len())
            } else {
                String::new()
            }
        );
        if let (Some(pid), Some(o)) = (&first.patient_id, &first.original) {
            println!(
                "  original patient {pid}{}, study {}, instance {}",
                if first.issuer.as_deref().unwrap_or("").is_empty() {
                    String::new()
                } else {
                    format!(" ({})", first.issuer.as_deref().unwrap())
                },
                o.study,
                o.sop
            );
        } else {
            println!("  original patient: needs the key");
        }
    }
    Ok(if t.is_empty() {
        exit::FINDINGS
    } else {
        exit::OK
    })
}

fn withdraw(a: WithdrawArgs) -> anyhow::Result<u8> {
    let settings = settings(&a.store)?;
    let store = open(&a.store, true)?;
    let (id, holders) = store
        .withdraw(
            &a.patient,
            &a.issuer,
            &a.purpose,
            &a.source,
            &a.evidence,
            &settings,
        )
        .map_err(usage_or_fail)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"consent_ref": format!("C-{id}"), "purpose": a.purpose, "holders": holders})
            )?
        );
    } else {
        println!("recorded withdrawal C-{id} for {} ({}); future releases for this purpose exclude the patient", a.purpose, describe_purpose(&a.purpose));
        if holders.is_empty() {
            println!("no recipient holds this patient's data for {}", a.purpose);
        }
        for h in &holders {
            println!(
                "ask {} to delete: {} instance(s) in {} study(ies), pseudonym {}, releases {}{}",
                h.recipient,
                h.instances,
                h.released_study_uids.len(),
                h.patient_pseudonym,
                h.releases.join(","),
                if h.contact.is_empty() {
                    String::new()
                } else {
                    format!(", contact {}", h.contact)
                }
            );
        }
    }
    Ok(exit::OK)
}
