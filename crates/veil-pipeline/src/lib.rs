//! The de-identification pipeline: sources → stages → sinks.
//!
//! This crate owns walking inputs, and for each file the stages read → classify → consent gate →
//! transform (`veil-deid`) → verify (any [`OutputVerifier`], e.g. `veil-verify`) → write; the
//! quarantine; atomic writes (temp + rename); resume through a journal of keyed input references;
//! parallel workers with memory bounded to one file each; and the run report. The CLI, a network
//! gateway or Python bindings drive the same [`Pipeline`]. Nothing here prints or exits.

pub mod classify;
pub mod heldback;
pub mod paths;
pub mod preflight;
pub mod report;
pub mod series;
mod splice;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject, OpenFileOptions};
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};
use veil_deid::{Deidentifier, InstanceUids};

pub use classify::Hold;
pub use report::{FileOutcome, RunReport};
pub use series::{
    MemberReader, SeriesApplied, SeriesGate, SeriesPlan, SeriesRefusal, SeriesStage, SeriesSummary,
};
pub use store::StateError;

/// A finding of an output verifier. It names where and what, never the value.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VerifyFinding {
    pub path: String,
    pub category: String,
    pub rule: String,
}

/// Checks prepared from one source dataset before it is transformed.
pub trait PreparedCheck: Send {
    /// Findings for the complete output file bytes; empty means clean.
    fn verify(&self, output: &[u8]) -> Vec<VerifyFinding>;
}

/// An independent checker every output must pass before it is written.
pub trait OutputVerifier: Send + Sync {
    /// Gathers what the check needs from the source (e.g. its identifying values): the parsed
    /// data set and the input file's bytes as read (Part 10), so that a checker can read the
    /// source with its own parser, file meta included, instead of trusting the engine's.
    fn prepare(&self, source: &InMemDicomObject, raw: &[u8]) -> Box<dyn PreparedCheck>;
}

/// What a pixel stage did to one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PixelOutcome {
    /// Frames looked at.
    pub frames_scanned: u64,
    /// Text regions filled.
    pub regions_redacted: u64,
    /// Pixel data was changed (and re-encoded); false leaves PixelData byte-identical.
    pub modified: bool,
}

/// Why a pixel stage will not let an instance through (an encoding it cannot decode, no OCR
/// engine on the machine): the instance is held back with this explanation.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PixelRefusal(pub String);

/// Why a release hook could not record, publish or take back an output. The run stops; the
/// publishing protocol leaves nothing half-recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Renaming the output into place failed.
    #[error("cannot publish the output: {0}")]
    Publish(#[from] std::io::Error),
    /// The observer's own record (the ledger) failed.
    #[error("the release record failed: {0}")]
    Record(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Removes identifying text burned into pixel data (issue 5). Runs on the source instance before
/// header de-identification, so it can compare text it finds with the file's own identifiers.
pub trait PixelStage: Send + Sync {
    /// `risk` is why the classify stage flagged the instance (None: not flagged). `Err(reason)`
    /// holds the instance back (e.g. an encoding it cannot decode); never pass pixels through
    /// unchecked when the instance was flagged.
    fn clean(
        &self,
        file: &mut FileDicomObject<InMemDicomObject>,
        risk: Option<&str>,
    ) -> Result<PixelOutcome, PixelRefusal>;

    /// Whether `clean` must look at this instance's pixels (`risk` as in `clean`), asked when the
    /// pipeline holds Pixel Data as the source's element bytes (`carried`: tag, VR, length and
    /// value) instead of parsing it. Answering `false` for an instance `clean` would have changed
    /// lets its pixels through unchanged, so the default is `true`.
    fn needs_pixels(
        &self,
        _file: &FileDicomObject<InMemDicomObject>,
        _risk: Option<&str>,
        _carried: Option<&[u8]>,
    ) -> bool {
        true
    }

    /// `clean` for an instance whose Pixel Data the pipeline holds as the source's element bytes
    /// (`element`: tag, VR, length, value) beside a `file` parsed without it, asked when
    /// `needs_pixels` said yes: the outcome and, when the pixels changed, the element's new value
    /// (same length). None when the stage cannot work on these bytes; the pipeline then parses
    /// the element into `file` and calls `clean`. Saves parsing a cine into a second copy.
    #[allow(clippy::type_complexity)]
    fn clean_carried(
        &self,
        _file: &FileDicomObject<InMemDicomObject>,
        _risk: Option<&str>,
        _element: &[u8],
    ) -> Option<Result<(PixelOutcome, Option<Vec<u8>>), PixelRefusal>> {
        None
    }
}

/// What the consent gate is told about an instance's patient (identifying: never logged).
#[derive(Debug, Clone)]
pub struct PatientContext {
    pub patient_id: String,
    pub issuer_of_patient_id: String,
    pub modality: String,
    pub study_date: String,
    /// Study Description (0008,1030), for the patient's own disclosure record.
    pub study_description: String,
    /// The pseudonym this patient gets in this run.
    pub patient_pseudonym: String,
}

/// The consent gate's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Release it, under this consent record (if any).
    Admit { consent_ref: Option<String> },
    /// Do not release it; the reason is a category, never an identifier.
    Exclude { reason: String },
}

/// A released instance at commit time.
#[derive(Debug, Clone)]
pub struct CommittedInstance {
    pub input: PathBuf,
    /// Final output path.
    pub output: PathBuf,
    /// Output path relative to the output root.
    pub output_relative: PathBuf,
    pub patient_pseudonym: String,
    pub patient: PatientContext,
    pub original: InstanceUids,
    pub released: InstanceUids,
    pub bytes: u64,
    /// SHA-256 of the output bytes (de-identified data, so an unkeyed digest is fine); empty
    /// when the observer does not ask for it.
    pub sha256: String,
    pub consent_ref: Option<String>,
}

/// Hooks for releases: a consent gate and a commit that can wrap the rename in a transaction.
pub trait ReleaseObserver: Sync {
    /// Called after classification, before de-identification.
    fn admit(&self, patient: &PatientContext) -> Admission;
    /// Called when an output is ready: must call `rename` exactly once to publish the file, and
    /// return an error (after undoing its own records) if it cannot record the release.
    fn commit(
        &self,
        instance: &CommittedInstance,
        rename: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> Result<(), RecordError>;
    /// Does the observer record [`CommittedInstance::sha256`]? (Hashing every output costs
    /// about a tenth of a plain `deid` run, so it is skipped when nobody records it.)
    fn wants_sha256(&self) -> bool {
        true
    }
    /// Called when an output published by [`ReleaseObserver::commit`] (in this run or an
    /// interrupted earlier one) is taken back before the run ends: the first version of an
    /// instance another input contradicts. `output` is still in place; the pipeline removes it
    /// after this returns `Ok` (so a crash in between leaves the file, and the resumed run
    /// retracts it again: this must be idempotent). An `Err` stops the run.
    fn retract(&self, _output: &Path, _output_relative: &Path) -> Result<(), RecordError> {
        Ok(())
    }
}

/// Where and how a run writes.
#[derive(Debug, Clone)]
pub struct Config {
    /// Output root.
    pub out: PathBuf,
    /// Quarantine directory (copies of held-back inputs + JSON reasons).
    pub quarantine: PathBuf,
    /// Worker threads (default: all cores).
    pub threads: Option<usize>,
    /// fsync each output before its rename (durable against power loss, slower).
    pub fsync: bool,
    /// Hold back instances with burned-in text risk even when a pixel stage is present.
    pub hold_burned_in: bool,
    /// Files larger than this are quarantined unread (bounds memory per worker).
    pub max_file_bytes: u64,
    /// Warnings every run report carries (e.g. defacing turned off by the policy).
    pub warnings: Vec<String>,
}

impl Config {
    /// Defaults for an output root: quarantine beside it as `<OUT>.quarantine`, whatever the
    /// spelling of `out` (a trailing slash never puts it inside).
    pub fn new(out: PathBuf) -> Config {
        Config {
            quarantine: paths::default_quarantine(&out),
            out,
            threads: None,
            fsync: false,
            hold_burned_in: true,
            max_file_bytes: 4 << 30,
            warnings: Vec::new(),
        }
    }
}

/// Fatal errors that stop a run before or outside per-file processing.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("input {path}: {error}; check that it exists and is readable, then rerun")]
    Input {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] StateError),
    /// The inputs, output and quarantine overlap, or cannot be resolved (a usage error).
    #[error(transparent)]
    Paths(#[from] paths::PathError),
    #[error("cannot start worker threads: {0}")]
    Threads(String),
}

/// One pipeline: engine, optional verifier, config.
pub struct Pipeline {
    deid: Deidentifier,
    verifier: Option<Box<dyn OutputVerifier>>,
    pixels: Option<Box<dyn PixelStage>>,
    series: Option<Box<dyn SeriesStage>>,
    config: Config,
}

struct NoObserver;
impl ReleaseObserver for NoObserver {
    fn wants_sha256(&self) -> bool {
        false
    }
    fn admit(&self, _: &PatientContext) -> Admission {
        Admission::Admit { consent_ref: None }
    }
    fn commit(
        &self,
        _: &CommittedInstance,
        rename: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> Result<(), RecordError> {
        Ok(rename()?)
    }
}

/// Lists the files under the inputs, sorted, skipping the run's own output and quarantine.
pub fn walk_inputs(inputs: &[PathBuf], exclude: &[&Path]) -> Result<Vec<PathBuf>, PipelineError> {
    let excluded: Vec<PathBuf> = exclude
        .iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    let mut files = Vec::new();
    for input in inputs {
        // Canonical roots once, so every file path below them is stable (resume keys on it)
        // without a canonicalisation per file.
        let input = &input.canonicalize().map_err(|error| PipelineError::Input {
            path: input.clone(),
            error,
        })?;
        let meta = std::fs::metadata(input).map_err(|error| PipelineError::Input {
            path: input.clone(),
            error,
        })?;
        if meta.is_file() {
            files.push(input.clone());
            continue;
        }
        let walker = walkdir::WalkDir::new(input)
            .follow_links(false)
            .sort_by_file_name();
        let mut it = walker.into_iter();
        while let Some(entry) = it.next() {
            let entry = entry.map_err(|e| PipelineError::Input {
                path: e
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| input.clone()),
                error: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("directory loop")),
            })?;
            if entry.file_type().is_dir() {
                if let Ok(c) = entry.path().canonicalize() {
                    if excluded.contains(&c) {
                        it.skip_current_dir();
                    }
                }
                continue;
            }
            if entry.file_type().is_file() {
                files.push(entry.into_path());
            }
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// The first input of a run that produced an output path. Kept small (36 bytes, keyed by a
/// 16-byte digest of the output path) so a run over millions of files stays lean.
struct Claim {
    digest: [u8; 16],
    /// Index of the input in the run's sorted file list.
    input: u32,
}

/// Outputs claimed in this run, and the output paths that had conflicting versions.
#[derive(Default)]
struct Claims {
    by_output: HashMap<[u8; 16], Claim>,
    conflicted: Vec<(PathBuf, u32)>,
}

/// A fast 128-bit fingerprint (XXH3) to tell identical outputs from different ones within a
/// run and across reruns. Outputs are de-identified, so an unkeyed fingerprint reveals nothing.
fn short_digest(bytes: &[u8]) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(bytes).to_le_bytes()
}

/// The key an output path is claimed under (one instance per path in a run).
fn output_key(relative: &Path) -> [u8; 16] {
    short_digest(relative.as_os_str().as_encoded_bytes())
}

/// Quarantines an input that reached the write stage but must not be released.
fn hold_back(
    state: &store::State,
    input_ref: &str,
    path: &Path,
    input_bytes: &[u8],
    reason: String,
    detail: String,
) -> Result<FileOutcome, StateError> {
    let q = state.quarantine(input_ref, input_bytes, &reason, &detail, &[])?;
    Ok(FileOutcome::quarantined(
        path,
        input_ref,
        reason,
        detail,
        Vec::new(),
        q,
    ))
}

/// The reason code and sentence for every version of an instance whose versions differ (also
/// used by the Spark scale-out, which settles claims per series).
pub fn conflict_reason() -> (String, String) {
    (
        "conflicting_duplicate".to_string(),
        "several inputs of this run are the same instance (same SOP Instance UID) with different content; none is released".to_string(),
    )
}

/// An instance held back by a stage, with its reason code and explanation.
fn held(reason: impl Into<String>, detail: impl Into<String>) -> Staged {
    Staged::Quarantine {
        reason: reason.into(),
        detail: detail.into(),
        findings: Vec::new(),
    }
}

/// What the per-file stages decided, before writing.
enum Staged {
    Rejected {
        reason: &'static str,
        detail: String,
    },
    Quarantine {
        reason: String,
        detail: String,
        findings: Vec<VerifyFinding>,
    },
    Excluded {
        reason: String,
        patient: Box<PatientContext>,
    },
    Suppressed,
    /// Waits for its whole series (the key groups it).
    Deferred {
        key: String,
    },
    Output(Box<Produced>),
}

/// A series stage's plan for `members` instances, a panic in it ending as a refusal that holds
/// every member back.
fn plan_series(
    stage: &dyn SeriesStage,
    members: usize,
    read: &MemberReader<'_>,
) -> Result<Box<dyn SeriesPlan>, SeriesRefusal> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stage.plan(members, read)))
        .unwrap_or_else(|_| {
            Err(SeriesRefusal {
                reason: "internal_error".into(),
                detail: "an internal error occurred while planning this series; every instance was held back".into(),
                summary: Box::default(),
            })
        })
}

/// An in-memory instance's outcome, from its last hop.
fn outcome_of(staged: Staged, observer: &dyn ReleaseObserver) -> InstanceOutcome {
    match staged {
        Staged::Output(p) => {
            let instance = Box::new(committed_instance(
                Path::new(""),
                Path::new(""),
                &p,
                observer,
            ));
            InstanceOutcome::Released {
                bytes: p.bytes,
                relative: p.relative,
                instance,
            }
        }
        Staged::Suppressed => InstanceOutcome::Suppressed,
        Staged::Excluded { reason, patient } => InstanceOutcome::Excluded { reason, patient },
        Staged::Rejected { reason, detail } => InstanceOutcome::HeldBack {
            reason: reason.into(),
            detail,
        },
        Staged::Quarantine { reason, detail, .. } => InstanceOutcome::HeldBack { reason, detail },
        Staged::Deferred { key } => InstanceOutcome::WaitsForSeries { key },
    }
}

/// What [`Pipeline::deidentify_bytes`] made of one instance.
#[derive(Debug)]
pub enum InstanceOutcome {
    /// The verified de-identified instance (Part 10), where `veil deid` would write it, and
    /// what a release records of it (`input` and `output` are empty: nothing was read from or
    /// written to a file).
    Released {
        bytes: Vec<u8>,
        relative: PathBuf,
        instance: Box<CommittedInstance>,
    },
    /// The policy suppresses this kind of instance.
    Suppressed,
    /// The release observer's consent gate did not admit the patient (its reason code), and
    /// who the gate was asked about (so that a release run elsewhere can name the patient in
    /// the operator's report by a keyed reference).
    Excluded {
        reason: String,
        patient: Box<PatientContext>,
    },
    /// Not released, with a reason code and a sentence (no identifying value in either).
    HeldBack { reason: String, detail: String },
    /// A series stage (defacing) needs the whole series, which `key` names (not identifying
    /// by itself, but not for logs either).
    WaitsForSeries { key: String },
}

/// How one input left `process_file`.
enum Processed {
    Done(Box<FileOutcome>),
    /// Deferred to its series (key), or skipped as done by an earlier run (`None`).
    Waiting(Option<String>),
}

struct Produced {
    bytes: Vec<u8>,
    relative: PathBuf,
    patient: PatientContext,
    original: InstanceUids,
    released: InstanceUids,
    counts: veil_deid::ActionCounts,
    consent_ref: Option<String>,
}

fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    veil_deid::text_of(obj, tag).unwrap_or_default()
}

/// Is this a DICOM Part 10 file (preamble + `DICM`)?
fn has_dicm(bytes: &[u8]) -> bool {
    bytes.len() >= 132 && &bytes[128..132] == b"DICM"
}

/// Does the file start like a bare data set (a group 0002 or 0008 element, in either byte
/// order, with a plausible VR or length)? Used only to tell DICOM content from other files.
fn looks_like_raw_dataset(bytes: &[u8]) -> bool {
    if bytes.len() < 8 {
        return false;
    }
    let le = u16::from_le_bytes([bytes[0], bytes[1]]);
    let be = u16::from_be_bytes([bytes[0], bytes[1]]);
    let group_ok = |g: u16| g == 0x0002 || g == 0x0008;
    if !(group_ok(le) || group_ok(be)) {
        return false;
    }
    let vr = &bytes[4..6];
    let explicit = vr.iter().all(|b| b.is_ascii_uppercase());
    let implicit_len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    explicit || implicit_len < (1 << 16)
}

/// A path component made only of characters safe everywhere.
fn path_safe(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        "_".to_string()
    } else {
        cleaned
    }
}

impl Pipeline {
    /// Builds a pipeline.
    pub fn new(
        deid: Deidentifier,
        verifier: Option<Box<dyn OutputVerifier>>,
        config: Config,
    ) -> Pipeline {
        Pipeline {
            deid,
            verifier,
            pixels: None,
            series: None,
            config,
        }
    }

    /// Adds a series stage (defacing): instances it collects wait until their whole series has
    /// been seen, and are released with its plan applied.
    pub fn with_series_stage(mut self, stage: Box<dyn SeriesStage>) -> Pipeline {
        self.series = Some(stage);
        self
    }

    /// Adds a pixel stage: instances with burned-in text risk then flow through it instead of
    /// the quarantine.
    pub fn with_pixel_stage(mut self, stage: Box<dyn PixelStage>) -> Pipeline {
        self.pixels = Some(stage);
        self.config.hold_burned_in = false;
        self
    }

    /// Holds back an input de-identified outside [`Pipeline::run`] (a Spark task) as a run
    /// holds it back, under this pipeline's key and policy: its copy and reason in `quarantine`
    /// and a record in the operator's held-back list. Returns the keyed input reference.
    pub fn hold_back(
        &self,
        quarantine: &Path,
        input: &Path,
        bytes: &[u8],
        reason: &str,
        detail: &str,
    ) -> Result<String, StateError> {
        store::hold_back_outside_run(
            quarantine,
            self.deid.key(),
            &self.deid.policy().digest,
            input,
            bytes,
            reason,
            detail,
        )
    }

    /// The engine.
    pub fn deidentifier(&self) -> &Deidentifier {
        &self.deid
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// De-identifies one Part 10 instance held in memory, with every stage of a run (classify,
    /// pixels, transform, encode, verify) and no release observer: how the network gateway
    /// processes what it received. Gives the same bytes as a run over the same file. An
    /// instance a series stage wants with its whole series is [`InstanceOutcome::WaitsForSeries`]:
    /// give the series to [`Pipeline::deidentify_group`].
    pub fn deidentify_bytes(&self, bytes: &[u8]) -> InstanceOutcome {
        self.deidentify_bytes_with(bytes, &NoObserver)
    }

    /// [`Pipeline::deidentify_bytes`] with a release observer's consent gate
    /// ([`ReleaseObserver::admit`]); recording the release is the caller's (nothing is written
    /// here, so [`ReleaseObserver::commit`] is not called).
    pub fn deidentify_bytes_with(
        &self,
        bytes: &[u8],
        observer: &dyn ReleaseObserver,
    ) -> InstanceOutcome {
        outcome_of(self.stage(bytes, observer, None), observer)
    }

    /// De-identifies a group of instances held in memory — a whole series, as the gateway
    /// collects it — as a run over the same files would: members a series stage waits for are
    /// planned together (one volume), the others go on their own. Outcomes in member order.
    pub fn deidentify_group(&self, members: &[Vec<u8>]) -> Vec<InstanceOutcome> {
        self.deidentify_group_with(members, &NoObserver)
    }

    /// [`Pipeline::deidentify_group`] with a release observer's consent gate, as
    /// [`Pipeline::deidentify_bytes_with`].
    pub fn deidentify_group_with(
        &self,
        members: &[Vec<u8>],
        observer: &dyn ReleaseObserver,
    ) -> Vec<InstanceOutcome> {
        let mut outcomes: Vec<Option<InstanceOutcome>> = (0..members.len()).map(|_| None).collect();
        let mut series: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, bytes) in members.iter().enumerate() {
            match self.stage(bytes, observer, None) {
                Staged::Deferred { key } => series.entry(key).or_default().push(i),
                other => outcomes[i] = Some(outcome_of(other, observer)),
            }
        }
        for (_, group) in series {
            let Some(stage) = &self.series else { break };
            let max = self.config.max_file_bytes;
            let read = |k: usize| read_whole_bytes(&members[group[k]], max);
            match plan_series(stage.as_ref(), group.len(), &read) {
                Ok(plan) => {
                    for &i in &group {
                        let staged = self.stage(&members[i], observer, Some(plan.as_ref()));
                        outcomes[i] = Some(outcome_of(staged, observer));
                    }
                }
                Err(refusal) => {
                    for &i in &group {
                        outcomes[i] = Some(InstanceOutcome::HeldBack {
                            reason: refusal.reason.clone(),
                            detail: refusal.detail.clone(),
                        });
                    }
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| match o {
                // A member the plan still defers (a second stage pass): never released.
                Some(InstanceOutcome::WaitsForSeries { .. }) | None => InstanceOutcome::HeldBack {
                    reason: "internal_error".into(),
                    detail: "the series stage did not take this instance; it was held back".into(),
                },
                Some(o) => o,
            })
            .collect()
    }

    /// Runs over inputs without a release observer (`veil deid`).
    pub fn run(
        &self,
        inputs: &[PathBuf],
        progress: &(dyn Fn(&FileOutcome) + Sync),
    ) -> Result<RunReport, PipelineError> {
        self.run_with(inputs, &NoObserver, progress)
    }

    /// Runs over inputs with a release observer (`veil release`).
    pub fn run_with(
        &self,
        inputs: &[PathBuf],
        observer: &dyn ReleaseObserver,
        progress: &(dyn Fn(&FileOutcome) + Sync),
    ) -> Result<RunReport, PipelineError> {
        let started = Instant::now();
        paths::check(inputs, &self.config.out, &self.config.quarantine)?;
        let files = walk_inputs(inputs, &[&self.config.out, &self.config.quarantine])?;
        let state = store::State::open(&self.config, self.deid.key(), &self.deid.policy().digest)?;
        // Events name counts, statuses, reasons and keyed references, never a path or a value.
        tracing::info!(
            files = files.len(),
            resuming = state.resuming(),
            "run started"
        );
        let mut report = RunReport::new(self.deid.policy(), self.deid.key(), files.len());
        report.warnings = self.config.warnings.clone();
        let report = Mutex::new(report);
        let claimed: Mutex<Claims> = Mutex::new(Claims::default());
        if state.resuming() {
            // Outputs an earlier, interrupted run released still claim their paths: a second
            // version of the same instance is then a conflict, as it is in an uninterrupted run,
            // instead of the first version staying released and the second an output_conflict.
            // Conflicts that run found but did not live to retract are retracted at the end.
            let mut claims = claimed.lock().unwrap();
            let mut contested = Vec::new();
            for (index, path) in files.iter().enumerate() {
                let input_ref = state.input_ref(path);
                if let Some((relative, digest)) = state.done_output(&input_ref) {
                    claims.by_output.insert(
                        output_key(&relative),
                        Claim {
                            digest,
                            input: index as u32,
                        },
                    );
                } else if let Some(relative) = state.done_conflict(&input_ref) {
                    contested.push(relative);
                }
            }
            for relative in contested {
                let key = output_key(&relative);
                if let Some(first) = claims.by_output.get(&key).map(|c| c.input) {
                    if !claims.conflicted.iter().any(|(r, _)| *r == relative) {
                        claims.conflicted.push((relative, first));
                    }
                }
            }
        }
        let run = Run {
            files: &files,
            state: &state,
            claimed: &claimed,
            observer,
            progress,
            report: &report,
            fatal: Mutex::new(None),
            stop: AtomicBool::new(false),
            waiting: Mutex::new(Vec::new()),
        };
        let work = || {
            let all: Vec<u32> = (0..files.len() as u32).collect();
            run.process(self, &all, None);
            if self.series.is_some() {
                self.run_series(&run);
            }
        };
        match self.config.threads {
            Some(n) => rayon::ThreadPoolBuilder::new()
                .num_threads(n.max(1))
                .build()
                .map_err(|e| PipelineError::Threads(e.to_string()))?
                .install(work),
            None => work(),
        }
        if let Some(e) = run.fatal.into_inner().unwrap() {
            return Err(e.into());
        }
        let mut report = report.into_inner().unwrap();
        self.retract_conflicts(
            claimed.into_inner().unwrap(),
            &files,
            &state,
            &mut report,
            observer,
        )?;
        report.held_back_total = state.held_back_total();
        report.finish(started.elapsed());
        tracing::info!(
            written = report.written,
            quarantined = report.quarantined,
            rejected = report.rejected,
            excluded = report.excluded,
            seconds = report.seconds,
            "run finished"
        );
        state.write_report(&report)?;
        Ok(report)
    }

    /// Plans each group of deferred instances, one series at a time (memory holds one), and
    /// releases or holds back its members with the plan.
    fn run_series(&self, run: &Run<'_>) {
        let Some(stage) = &self.series else {
            return;
        };
        let waiting = std::mem::take(&mut *run.waiting.lock().unwrap());
        let mut groups: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        let mut skipped = Vec::new();
        for (index, key) in waiting {
            match key {
                Some(key) => groups.entry(key).or_default().push(index),
                None => skipped.push(index),
            }
        }
        if groups.is_empty() {
            return;
        }
        // Resuming: members an earlier run finished still belong to their series' volume, so
        // the plan (and every output) is the same as in an uninterrupted run.
        let mut earlier: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for index in skipped {
            if let Some(key) = self.series_key_of(&run.files[index as usize]) {
                if groups.contains_key(&key) {
                    earlier.entry(key).or_default().push(index);
                }
            }
        }
        let mut untouched: Vec<(Vec<u32>, Box<dyn SeriesPlan>)> = Vec::new();
        for (key, mut members) in groups {
            if run.stop.load(Ordering::Relaxed) {
                return;
            }
            members.sort_unstable();
            let mut planning = members.clone();
            planning.extend(earlier.remove(&key).unwrap_or_default());
            planning.sort_unstable();
            let read =
                |i: usize| read_whole(&run.files[planning[i] as usize], self.config.max_file_bytes);
            let planned = plan_series(stage.as_ref(), planning.len(), &read);
            let (mut summary, plan) = match planned {
                Ok(plan) => (plan.summary(), Some(plan)),
                Err(refusal) => {
                    for &index in &members {
                        run.hold_member(index, &refusal.reason, &refusal.detail);
                    }
                    (*refusal.summary, None)
                }
            };
            summary.series_ref = run.state.keyed_ref("series", &key);
            summary.instances = planning.len();
            run.report.lock().unwrap().series.push(summary);
            match plan {
                // A plan that changes pixels is applied now, series by series.
                Some(plan) if plan.needs_pixels() => {
                    run.process(self, &members, Some(plan.as_ref()))
                }
                // The others (too few slices, not a head) hold nothing: their instances go
                // through together at the end, in parallel across series.
                Some(plan) => untouched.push((members, plan)),
                None => {}
            }
        }
        let work: Vec<(u32, usize)> = untouched
            .iter()
            .enumerate()
            .flat_map(|(g, (members, _))| members.iter().map(move |&i| (i, g)))
            .collect();
        work.par_iter()
            .for_each(|&(index, g)| run.process_one(self, index, Some(untouched[g].1.as_ref())));
    }

    /// The series key of an input an earlier run finished (read again to plan its series).
    fn series_key_of(&self, path: &Path) -> Option<String> {
        let bytes = std::fs::read(path).ok()?;
        let (file, _) = read_part10(&bytes).ok()?;
        match self.series.as_ref()?.gate(&file) {
            SeriesGate::Collect { key } => Some(key),
            _ => None,
        }
    }

    fn process_file(
        &self,
        index: u32,
        path: &Path,
        run: &Run<'_>,
        plan: Option<&dyn SeriesPlan>,
    ) -> Result<Processed, StateError> {
        let (state, claimed, observer) = (run.state, run.claimed, run.observer);
        let input_ref = state.input_ref(path);
        if let Some(done) = state.already_done(&input_ref) {
            return Ok(match plan {
                None => Processed::Done(Box::new(FileOutcome::skipped(path, done))),
                // Finished by an earlier run: it was read only to plan its series.
                Some(_) => Processed::Waiting(None),
            });
        }
        let mut bytes = Vec::new();
        let read = std::fs::File::open(path).and_then(|f| {
            let len = f.metadata()?.len();
            if len > self.config.max_file_bytes {
                return Err(std::io::Error::other(format!(
                    "file is {len} bytes, over the per-file limit of {} bytes",
                    self.config.max_file_bytes
                )));
            }
            bytes.reserve(len as usize);
            f.take(self.config.max_file_bytes + 1)
                .read_to_end(&mut bytes)
        });
        if let Err(e) = read {
            let outcome = FileOutcome::rejected(
                path,
                &input_ref,
                "unreadable",
                format!("cannot read the input: {e}"),
            );
            state.journal(&outcome)?;
            return Ok(Processed::Done(Box::new(outcome)));
        }
        let in_bytes = bytes.len() as u64;

        let staged = self.stage(&bytes, observer, plan);

        let outcome = match staged {
            Staged::Rejected { reason, detail } => {
                FileOutcome::rejected(path, &input_ref, reason, detail)
            }
            Staged::Excluded { reason, .. } => FileOutcome::excluded(path, &input_ref, reason),
            Staged::Suppressed => FileOutcome::suppressed(path, &input_ref),
            Staged::Deferred { key } => return Ok(Processed::Waiting(Some(key))),
            Staged::Quarantine {
                reason,
                detail,
                findings,
            } => {
                let qpath = state.quarantine(&input_ref, &bytes, &reason, &detail, &findings)?;
                FileOutcome::quarantined(path, &input_ref, reason, detail, findings, qpath)
            }
            Staged::Output(p) => self.write_output(
                index, path, &input_ref, in_bytes, *p, state, claimed, observer, &bytes,
            )?,
        };
        state.journal(&outcome)?;
        Ok(Processed::Done(Box::new(outcome)))
    }

    /// read (parse) → series gate → classify → consent → series plan → pixels → transform →
    /// encode → verify, all in memory. Each hop either hands the instance on or ends it (held back, rejected, excluded).
    ///
    /// Every hop runs under catch_unwind: a panic in a parser on hostile input must end as a
    /// quarantine, never as a crashed run or a passed-through file.
    fn stage(
        &self,
        bytes: &[u8],
        observer: &dyn ReleaseObserver,
        plan: Option<&dyn SeriesPlan>,
    ) -> Staged {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.hops(bytes, observer, plan)
                .unwrap_or_else(|ended| ended)
        }))
        .unwrap_or_else(|_| {
            held(
                "internal_error",
                "an internal error occurred while processing this file; it was held back",
            )
        })
    }

    fn hops(
        &self,
        bytes: &[u8],
        observer: &dyn ReleaseObserver,
        plan: Option<&dyn SeriesPlan>,
    ) -> Result<Staged, Staged> {
        let (mut file, mut carried) = read_part10(bytes)?;
        if plan.is_none() {
            // First, so an instance that waits for its series costs only this read of its
            // header here (classify and consent run once, when its series is released).
            self.gate_series(&file)?;
        }
        let risk = self.classify(&file, carried.is_some())?;
        let (patient, consent_ref) = admit(&self.deid, &file, observer)?;
        let mut carried_clean = None;
        if let Some(element) = carried.as_ref().map(|c| c.element(bytes)) {
            let series_reads = plan.is_some_and(|p| p.needs_pixels());
            let pixels_read = !series_reads
                && self
                    .pixels
                    .as_ref()
                    .is_some_and(|s| s.needs_pixels(&file, risk.as_deref(), Some(element)));
            if pixels_read {
                // Cleaned on the carried bytes where the stage can.
                carried_clean = self
                    .pixels
                    .as_ref()
                    .and_then(|s| s.clean_carried(&file, risk.as_deref(), element));
            }
            if series_reads || (pixels_read && carried_clean.is_none()) {
                // A pixel or series stage will look at this one: read it whole.
                carried = None;
                file = normalize(parse(&bytes[128..])?);
            }
        }
        let prepared = self.verifier.as_ref().map(|v| v.prepare(&file, bytes));
        let applied = match plan {
            Some(plan) => plan
                .apply(&mut file)
                .map_err(|why| held("series_stage", why))?,
            None => SeriesApplied::default(),
        };
        let (pixel_text, new_pixel_value) = match carried_clean {
            Some(done) => {
                let (outcome, value) = done.map_err(|refusal| held("pixel_stage", refusal.0))?;
                (pixel_text_clean(&outcome, risk.as_deref()), value)
            }
            None => (self.clean_pixels(&mut file, risk.as_deref())?, None),
        };
        let cleaned = veil_deid::Cleaned {
            pixel_text,
            faces: applied.modified,
            faces_examined: applied.examined,
        };
        let (out, outcome) = self
            .deid
            .deidentify_cleaned(file, cleaned)
            .map_err(|e| held("cannot_deidentify", e.to_string()))?;
        if outcome.suppressed {
            return Ok(Staged::Suppressed);
        }
        let buf = encode(bytes, out, carried.as_ref(), new_pixel_value)?;
        if let Some(check) = prepared {
            verify(check.as_ref(), &buf)?;
        }
        let relative = PathBuf::from(path_safe(&outcome.patient_pseudonym))
            .join(path_safe(&outcome.released.study))
            .join(path_safe(&outcome.released.series))
            .join(format!("{}.dcm", path_safe(&outcome.released.sop_instance)));
        Ok(Staged::Output(Box::new(Produced {
            bytes: buf,
            relative,
            patient,
            original: outcome.original,
            released: outcome.released,
            counts: outcome.counts,
            consent_ref,
        })))
    }

    /// The classify hop: held back, rejected, or on its way (with the burned-in text risk the
    /// pixel stage is to look at).
    fn classify(
        &self,
        file: &FileDicomObject<InMemDicomObject>,
        pixels_elsewhere: bool,
    ) -> Result<Option<String>, Staged> {
        let media_class = file.meta().media_storage_sop_class_uid().to_string();
        let Some(hold) = classify::classify(file, &media_class, pixels_elsewhere) else {
            return Ok(None);
        };
        let cleanable = self.pixels.is_some() && !self.config.hold_burned_in;
        match hold {
            Hold::Dicomdir => Err(Staged::Rejected {
                reason: "dicomdir",
                detail: hold.detail(),
            }),
            Hold::BurnedInRisk(why) if cleanable => Ok(Some(why)),
            // A slide overview, when the policy releases them: the pixel stage reads and
            // blanks its text (the label end of the slide) like any flagged image.
            Hold::SlideLabel(why)
                if cleanable
                    && why.contains("OVERVIEW")
                    && self.deid.policy().release_slide_overviews =>
            {
                Ok(Some(why))
            }
            _ => Err(held(hold.code(), hold.detail())),
        }
    }

    /// The series gate: on alone, held back, or deferred to its series.
    fn gate_series(&self, file: &FileDicomObject<InMemDicomObject>) -> Result<(), Staged> {
        let Some(stage) = &self.series else {
            return Ok(());
        };
        match stage.gate(file) {
            SeriesGate::Pass => Ok(()),
            SeriesGate::Hold { reason, detail } => Err(held(reason, detail)),
            SeriesGate::Collect { key } => Err(Staged::Deferred { key }),
        }
    }

    /// The pixel hop: whether the instance's pixels are now clean of burned-in text.
    fn clean_pixels(
        &self,
        file: &mut FileDicomObject<InMemDicomObject>,
        risk: Option<&str>,
    ) -> Result<bool, Staged> {
        let Some(stage) = &self.pixels else {
            return Ok(false);
        };
        match stage.clean(file, risk) {
            Ok(p) => Ok(pixel_text_clean(&p, risk)),
            Err(refusal) => Err(held("pixel_stage", refusal.0)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write_output(
        &self,
        index: u32,
        path: &Path,
        input_ref: &str,
        in_bytes: u64,
        p: Produced,
        state: &store::State,
        claimed: &Mutex<Claims>,
        observer: &dyn ReleaseObserver,
        input_bytes: &[u8],
    ) -> Result<FileOutcome, StateError> {
        let short = short_digest(&p.bytes);
        let output_key = output_key(&p.relative);
        {
            let mut claims = claimed.lock().unwrap();
            let Claims {
                by_output,
                conflicted,
            } = &mut *claims;
            if let Some(prev) = by_output.get(&output_key) {
                if prev.digest == short {
                    return Ok(FileOutcome::duplicate(path, input_ref, &p.relative));
                }
                // Which version would win depends on thread timing; releasing either would make
                // the output tree non-deterministic. Every version is held back (the one already
                // written is retracted when the run ends).
                if !conflicted.iter().any(|(r, _)| *r == p.relative) {
                    conflicted.push((p.relative.clone(), prev.input));
                }
                drop(claims);
                let (reason, detail) = conflict_reason();
                let mut o = hold_back(state, input_ref, path, input_bytes, reason, detail)?;
                // Journaled with the contested output path: a run resumed after a kill still
                // retracts the version already written.
                o.output = Some(p.relative.clone());
                return Ok(o);
            }
            by_output.insert(
                output_key,
                Claim {
                    digest: short,
                    input: index,
                },
            );
        }
        let final_path = self.config.out.join(&p.relative);
        // Resume: an identical file from an earlier run is already in place.
        if let Ok(existing) = std::fs::read(&final_path) {
            if existing == p.bytes {
                let instance = committed_instance(path, &final_path, &p, observer);
                observer
                    .commit(&instance, &mut || Ok(()))
                    .map_err(StateError::Commit)?;
                let mut o = FileOutcome::written(
                    path,
                    input_ref,
                    &p.relative,
                    in_bytes,
                    p.bytes.len() as u64,
                    p.counts,
                    true,
                );
                o.output_digest = Some(short);
                return Ok(o);
            }
            let detail = "the output path already holds a different file (another key or policy wrote to this output directory?)";
            return hold_back(
                state,
                input_ref,
                path,
                input_bytes,
                "output_conflict".into(),
                detail.into(),
            );
        }
        let temp = state.write_temp(&p.bytes, self.config.fsync)?;
        let instance = committed_instance(path, &final_path, &p, observer);
        let mut renamed = false;
        let result = observer.commit(&instance, &mut || {
            if let Some(parent) = final_path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(&temp, &final_path)?;
            renamed = true;
            Ok(())
        });
        if let Err(e) = result {
            if !renamed {
                let _ = std::fs::remove_file(&temp);
            }
            return Err(StateError::Commit(e));
        }
        let mut o = FileOutcome::written(
            path,
            input_ref,
            &p.relative,
            in_bytes,
            p.bytes.len() as u64,
            p.counts,
            false,
        );
        o.output_digest = Some(short);
        Ok(o)
    }

    /// Holds back the first-written version of every instance that had conflicting versions in
    /// this run, so the result does not depend on which worker finished first.
    fn retract_conflicts(
        &self,
        claims: Claims,
        files: &[PathBuf],
        state: &store::State,
        report: &mut RunReport,
        observer: &dyn ReleaseObserver,
    ) -> Result<(), StateError> {
        let mut conflicted = claims.conflicted;
        conflicted.sort();
        for (relative, first) in conflicted {
            let input = &files[first as usize];
            let input_ref = state.input_ref(input);
            // The first version may have been written by an earlier, interrupted run.
            let earlier = state.done_output(&input_ref).is_some();
            let bytes = std::fs::read(input).unwrap_or_default();
            let (reason, detail) = conflict_reason();
            let q = state.quarantine(&input_ref, &bytes, &reason, &detail, &[])?;
            let output = self.config.out.join(&relative);
            if output.exists() {
                // Recorded as released (a ledger entry): recorded as taken back before the
                // file goes, so no crash leaves an entry without its output.
                observer
                    .retract(&output, &relative)
                    .map_err(StateError::Commit)?;
            }
            let _ = std::fs::remove_file(&output);
            remove_empty_parents(&self.config.out, &output);
            let outcome =
                FileOutcome::quarantined(input, &input_ref, reason, detail, Vec::new(), q);
            state.journal(&outcome)?;
            if earlier {
                report.retract_skipped(&outcome);
            } else {
                report.retract_written(&outcome);
            }
        }
        Ok(())
    }
}

/// What a release records of a produced output read from `input` and published at `output`.
fn committed_instance(
    input: &Path,
    output: &Path,
    p: &Produced,
    observer: &dyn ReleaseObserver,
) -> CommittedInstance {
    CommittedInstance {
        input: input.to_path_buf(),
        output: output.to_path_buf(),
        output_relative: p.relative.clone(),
        patient_pseudonym: p.patient.patient_pseudonym.clone(),
        patient: p.patient.clone(),
        original: p.original.clone(),
        released: p.released.clone(),
        bytes: p.bytes.len() as u64,
        sha256: if observer.wants_sha256() {
            hex::encode(Sha256::digest(&p.bytes))
        } else {
            String::new()
        },
        consent_ref: p.consent_ref.clone(),
    }
}

/// The state of one run, shared by its workers.
struct Run<'a> {
    files: &'a [PathBuf],
    state: &'a store::State,
    claimed: &'a Mutex<Claims>,
    observer: &'a dyn ReleaseObserver,
    progress: &'a (dyn Fn(&FileOutcome) + Sync),
    report: &'a Mutex<RunReport>,
    /// The first failure of the output or quarantine area itself (disk full, permissions).
    fatal: Mutex<Option<StateError>>,
    stop: AtomicBool,
    /// Inputs deferred to their series (with its key), and, when resuming, inputs an earlier
    /// run finished (no key): they may belong to a deferred series.
    waiting: Mutex<Vec<(u32, Option<String>)>>,
}

impl Run<'_> {
    /// Processes these inputs in parallel (with a series plan for a planned group).
    fn process(&self, pipeline: &Pipeline, indices: &[u32], plan: Option<&dyn SeriesPlan>) {
        indices
            .par_iter()
            .for_each(|&index| self.process_one(pipeline, index, plan))
    }

    fn process_one(&self, pipeline: &Pipeline, index: u32, plan: Option<&dyn SeriesPlan>) {
        if self.stop.load(Ordering::Relaxed) {
            return;
        }
        let path = &self.files[index as usize];
        match pipeline.process_file(index, path, self, plan) {
            Ok(Processed::Done(outcome)) => {
                if outcome.status == report::Status::Skipped && self.state.resuming() {
                    self.waiting.lock().unwrap().push((index, None));
                }
                self.finish(&outcome);
            }
            Ok(Processed::Waiting(key)) => {
                if plan.is_none() {
                    self.waiting.lock().unwrap().push((index, key));
                }
            }
            Err(e) => self.fail(e),
        }
    }

    fn finish(&self, outcome: &FileOutcome) {
        tracing::debug!(
            input_ref = %outcome.input_ref,
            status = outcome.status.as_str(),
            reason = outcome.reason.as_deref().unwrap_or(""),
            "file finished"
        );
        (self.progress)(outcome);
        self.report.lock().unwrap().record(outcome);
    }

    /// The output or quarantine area itself failed: stop the run rather than lose track of
    /// inputs.
    fn fail(&self, e: StateError) {
        self.stop.store(true, Ordering::Relaxed);
        let mut f = self.fatal.lock().unwrap();
        if f.is_none() {
            *f = Some(e);
        }
    }

    /// Holds back a member of a series that could not be planned.
    fn hold_member(&self, index: u32, reason: &str, detail: &str) {
        let path = &self.files[index as usize];
        let input_ref = self.state.input_ref(path);
        let bytes = std::fs::read(path).unwrap_or_default();
        let held = hold_back(
            self.state,
            &input_ref,
            path,
            &bytes,
            reason.to_string(),
            detail.to_string(),
        )
        .and_then(|outcome| self.state.journal(&outcome).map(|()| outcome));
        match held {
            Ok(outcome) => self.finish(&outcome),
            Err(e) => self.fail(e),
        }
    }
}

/// Reads and parses an input whole (Pixel Data included), for a series stage's plan.
fn read_whole(path: &Path, max_bytes: u64) -> Result<FileDicomObject<InMemDicomObject>, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > max_bytes {
        return Err(format!("file is {len} bytes, over the per-file limit"));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    read_whole_bytes(&bytes, max_bytes)
}

/// [`read_whole`] of a file held in memory.
fn read_whole_bytes(
    bytes: &[u8],
    max_bytes: u64,
) -> Result<FileDicomObject<InMemDicomObject>, String> {
    if bytes.len() as u64 > max_bytes {
        return Err(format!(
            "file is {} bytes, over the per-file limit",
            bytes.len()
        ));
    }
    if !has_dicm(bytes) {
        return Err("not a DICOM Part 10 file".into());
    }
    // The framing is checked before the parser sees the bytes (declared lengths, nesting), as
    // on the per-file path.
    preflight::check(bytes).map_err(|e| format!("malformed DICOM framing: {e}"))?;
    match parse(&bytes[128..]) {
        Ok(file) => Ok(normalize(file)),
        Err(Staged::Quarantine { detail, .. }) => Err(detail),
        Err(_) => Err("cannot parse".into()),
    }
}

/// The read hop: a Part 10 file, framing checked, parsed (Pixel Data carried over as bytes
/// when the framing allows: decoded only if a stage needs it).
fn read_part10(
    bytes: &[u8],
) -> Result<
    (
        FileDicomObject<InMemDicomObject>,
        Option<splice::PixelBytes>,
    ),
    Staged,
> {
    if !has_dicm(bytes) && looks_like_raw_dataset(bytes) {
        // DICOM content (with whatever identifiers it holds) but no Part 10 header to say how
        // it is encoded: held back for an operator, never guessed at.
        return Err(held("no_file_meta", "a DICOM data set without the Part 10 preamble and file meta header (transfer syntax unknown); convert it to a Part 10 file (e.g. dcmconv) and rerun"));
    }
    if !has_dicm(bytes) {
        return Err(Staged::Rejected {
            reason: "not_dicom",
            detail:
                "not a DICOM Part 10 file (no 'DICM' marker after a 128-byte preamble); not copied"
                    .into(),
        });
    }
    let framing = preflight::check(bytes)
        .map_err(|e| held("unparseable", format!("malformed DICOM framing: {e}")))?;
    let carried = framing
        .pixel_data
        .clone()
        .and_then(|range| splice::PixelBytes::carry(bytes, range, &framing.transfer_syntax));
    let file = match &carried {
        Some(c) => {
            let (trimmed, marked) = c.without(bytes, Some(&framing.transfer_syntax));
            parse_until(&trimmed, marked.then_some(splice::END_MARK))?
        }
        None => parse(&bytes[128..])?,
    };
    Ok((normalize(file), carried))
}

/// The consent hop: what the gate is told about the patient (never logged), and its decision.
fn admit(
    deid: &Deidentifier,
    file: &FileDicomObject<InMemDicomObject>,
    observer: &dyn ReleaseObserver,
) -> Result<(PatientContext, Option<String>), Staged> {
    let patient = PatientContext {
        patient_id: text(file, tags::PATIENT_ID),
        issuer_of_patient_id: text(file, tags::ISSUER_OF_PATIENT_ID),
        modality: text(file, tags::MODALITY),
        study_date: text(file, tags::STUDY_DATE),
        study_description: text(file, tags::STUDY_DESCRIPTION),
        patient_pseudonym: deid.patient_of(file).id,
    };
    match observer.admit(&patient) {
        Admission::Admit { consent_ref } => Ok((patient, consent_ref)),
        Admission::Exclude { reason } => Err(Staged::Excluded {
            reason,
            patient: Box::new(patient),
        }),
    }
}

/// The encode hop: the de-identified instance as Part 10 bytes (carried pixels spliced back).
/// Whether the pixel stage's outcome makes the instance clean of burned-in text. A flagged
/// instance the stage examined is, whether or not it found any: its markers say so (Clean Pixel
/// Data, Burned In Annotation NO), and the verifier's OCR check applies to it.
fn pixel_text_clean(p: &PixelOutcome, risk: Option<&str>) -> bool {
    p.modified || (risk.is_some() && p.frames_scanned > 0)
}

/// Encodes the de-identified instance; `carried` Pixel Data goes back as the source's bytes, or
/// with `new_value` (the pixel stage's) in place of the source's value.
fn encode(
    bytes: &[u8],
    out: FileDicomObject<InMemDicomObject>,
    carried: Option<&splice::PixelBytes>,
    new_value: Option<Vec<u8>>,
) -> Result<Vec<u8>, Staged> {
    let mut buf = Vec::with_capacity(bytes.len() + 1024);
    let encoded = match carried {
        Some(pixels) => pixels.encode(bytes, out, new_value.as_deref(), &mut buf),
        None => out
            .write_all(&mut buf)
            .map_err(|e| report::describe_error(&e)),
    };
    encoded.map_err(|e| {
        held(
            "cannot_encode",
            format!("cannot encode the de-identified instance: {e}"),
        )
    })?;
    Ok(buf)
}

/// The verify hop: any finding holds the output back, with the findings.
fn verify(check: &dyn PreparedCheck, output: &[u8]) -> Result<(), Staged> {
    let findings = check.verify(output);
    if findings.is_empty() {
        return Ok(());
    }
    Err(Staged::Quarantine {
        reason: "verification_failed".into(),
        detail: format!(
            "the independent verifier found {} problem(s) in the output",
            findings.len()
        ),
        findings,
    })
}

/// Removes the directories above a removed output that it leaves empty (series, study, patient
/// folders), up to but not including the output root.
fn remove_empty_parents(root: &Path, removed: &Path) {
    let mut dir = removed.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || std::fs::remove_dir(d).is_err() {
            break; // not empty (or not ours): stop
        }
        dir = d.parent();
    }
}

/// Parses a Part 10 stream that starts at "DICM" (the preamble already skipped).
fn parse(stream: &[u8]) -> Result<FileDicomObject<InMemDicomObject>, Staged> {
    parse_until(stream, None)
}

/// [`parse`], stopping before the first top-level element at or after `until`.
fn parse_until(
    stream: &[u8],
    until: Option<dicom_core::Tag>,
) -> Result<FileDicomObject<InMemDicomObject>, Staged> {
    let mut options = OpenFileOptions::new().read_preamble(dicom_object::file::ReadPreamble::Never);
    if let Some(tag) = until {
        options = options.read_until(tag);
    }
    options.from_reader(stream).map_err(|e| {
        held(
            "unparseable",
            format!("DICOM parse error: {}", report::describe_error(&e)),
        )
    })
}

/// Standard attributes stored as UN are re-read with their dictionary VR before anyone looks at
/// them (classification, consent and the engine all need real values).
fn normalize(file: FileDicomObject<InMemDicomObject>) -> FileDicomObject<InMemDicomObject> {
    let meta = file.meta().clone();
    veil_deid::normalize::normalize_un(file.into_inner()).with_exact_meta(meta)
}
