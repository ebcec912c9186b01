//! Per-file outcomes and the run report (counts, reasons, actions, throughput). Nothing here
//! holds an identifying value: inputs are named by path (the operator's own) and keyed reference.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use veil_deid::ActionCounts;
use veil_keys::Key;
use veil_profile::Policy;

use crate::store::Done;
use crate::VerifyFinding;

/// Final state of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A verified output was written (or an identical one was already in place).
    Written,
    /// Finished by an earlier run; nothing to do.
    Skipped,
    /// Same instance as another input of this run, identical output.
    Duplicate,
    /// Held back: a copy and a JSON reason are in the quarantine.
    Quarantined,
    /// Not DICOM, unreadable, or a DICOMDIR: reported, not copied.
    Rejected,
    /// The consent gate excluded it.
    Excluded,
    /// Generalisation suppresses its class.
    Suppressed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Written => "written",
            Status::Skipped => "skipped",
            Status::Duplicate => "duplicate",
            Status::Quarantined => "quarantined",
            Status::Rejected => "rejected",
            Status::Excluded => "excluded",
            Status::Suppressed => "suppressed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "written" => Status::Written,
            "skipped" => Status::Skipped,
            "duplicate" => Status::Duplicate,
            "quarantined" => Status::Quarantined,
            "rejected" => Status::Rejected,
            "excluded" => Status::Excluded,
            "suppressed" => Status::Suppressed,
            _ => return None,
        })
    }
}

/// What happened to one input.
#[derive(Debug, Clone, Serialize)]
pub struct FileOutcome {
    pub input: PathBuf,
    pub input_ref: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Output path relative to the output root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<PathBuf>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<VerifyFinding>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// An identical output from an earlier run was already in place.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub already_in_place: bool,
    #[serde(skip)]
    pub counts: ActionCounts,
    /// Fingerprint of the output bytes (written outputs), kept in the journal so that a resumed
    /// run still knows which version of an instance an earlier run released.
    #[serde(skip)]
    pub output_digest: Option<[u8; 16]>,
}

impl FileOutcome {
    fn base(input: &Path, input_ref: &str, status: Status) -> FileOutcome {
        FileOutcome {
            input: input.to_path_buf(),
            input_ref: input_ref.to_string(),
            status,
            reason: None,
            detail: None,
            output: None,
            quarantine: None,
            findings: Vec::new(),
            bytes_in: 0,
            bytes_out: 0,
            already_in_place: false,
            counts: ActionCounts::default(),
            output_digest: None,
        }
    }

    pub(crate) fn skipped(input: &Path, done: Done) -> FileOutcome {
        let mut o = FileOutcome::base(input, "", Status::Skipped);
        o.output = done.relative;
        o.reason = Some(format!("{} by an earlier run", done.status.as_str()));
        o
    }

    pub(crate) fn rejected(input: &Path, r: &str, reason: &str, detail: String) -> FileOutcome {
        let mut o = FileOutcome::base(input, r, Status::Rejected);
        o.reason = Some(reason.to_string());
        o.detail = Some(detail);
        o
    }

    pub(crate) fn excluded(input: &Path, r: &str, reason: String) -> FileOutcome {
        let mut o = FileOutcome::base(input, r, Status::Excluded);
        o.reason = Some(reason);
        o
    }

    pub(crate) fn suppressed(input: &Path, r: &str) -> FileOutcome {
        let mut o = FileOutcome::base(input, r, Status::Suppressed);
        o.reason =
            Some("suppressed by the policy's generalisation (re-identification risk)".into());
        o
    }

    pub(crate) fn quarantined(
        input: &Path,
        r: &str,
        reason: String,
        detail: String,
        findings: Vec<VerifyFinding>,
        qpath: PathBuf,
    ) -> FileOutcome {
        let mut o = FileOutcome::base(input, r, Status::Quarantined);
        o.reason = Some(reason);
        o.detail = Some(detail);
        o.findings = findings;
        o.quarantine = Some(qpath);
        o
    }

    pub(crate) fn duplicate(input: &Path, r: &str, rel: &Path) -> FileOutcome {
        let mut o = FileOutcome::base(input, r, Status::Duplicate);
        o.output = Some(rel.to_path_buf());
        o
    }

    pub(crate) fn written(
        input: &Path,
        r: &str,
        rel: &Path,
        bytes_in: u64,
        bytes_out: u64,
        counts: ActionCounts,
        already_in_place: bool,
    ) -> FileOutcome {
        let mut o = FileOutcome::base(input, r, Status::Written);
        o.output = Some(rel.to_path_buf());
        o.bytes_in = bytes_in;
        o.bytes_out = bytes_out;
        o.counts = counts;
        o.already_in_place = already_in_place;
        o
    }
}

/// A held-back input, as listed in the report (keyed reference, not path).
#[derive(Debug, Clone, Serialize)]
pub struct HeldBack {
    pub input_ref: String,
    pub status: Status,
    pub reason: String,
}

/// The operator's run report: `<quarantine>/.veil/run-report.json` and the human summary.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub veil_version: &'static str,
    pub policy: String,
    pub policy_sha256: String,
    pub options: Vec<&'static str>,
    pub key_fingerprint: String,
    pub inputs: usize,
    pub written: u64,
    pub already_in_place: u64,
    pub skipped_done_earlier: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub rejected: u64,
    pub excluded: u64,
    pub suppressed: u64,
    pub reasons: BTreeMap<String, u64>,
    pub held_back: Vec<HeldBack>,
    /// Inputs held back now, this run's and earlier runs' (`veil quarantine list` names them).
    pub held_back_total: u64,
    pub actions: ActionCounts,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub seconds: f64,
    pub files_per_second: f64,
    pub megabytes_per_second: f64,
    /// Series a series stage (defacing) planned: what it decided and measured, by series.
    pub series: Vec<crate::series::SeriesSummary>,
    /// What the operator must know about this run's settings (e.g. faces left in place).
    pub warnings: Vec<String>,
}

impl RunReport {
    pub(crate) fn new(policy: &Policy, key: &Key, inputs: usize) -> RunReport {
        RunReport {
            veil_version: env!("CARGO_PKG_VERSION"),
            policy: policy.origin.clone(),
            policy_sha256: policy.digest.clone(),
            options: policy.options.iter().map(|o| o.name()).collect(),
            key_fingerprint: key.fingerprint(),
            inputs,
            written: 0,
            already_in_place: 0,
            skipped_done_earlier: 0,
            duplicates: 0,
            quarantined: 0,
            rejected: 0,
            excluded: 0,
            suppressed: 0,
            reasons: BTreeMap::new(),
            held_back: Vec::new(),
            held_back_total: 0,
            actions: ActionCounts::default(),
            bytes_in: 0,
            bytes_out: 0,
            seconds: 0.0,
            files_per_second: 0.0,
            megabytes_per_second: 0.0,
            series: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(crate) fn record(&mut self, o: &FileOutcome) {
        match o.status {
            Status::Written => {
                self.written += 1;
                if o.already_in_place {
                    self.already_in_place += 1;
                }
            }
            Status::Skipped => self.skipped_done_earlier += 1,
            Status::Duplicate => self.duplicates += 1,
            Status::Quarantined => self.quarantined += 1,
            Status::Rejected => self.rejected += 1,
            Status::Excluded => self.excluded += 1,
            Status::Suppressed => self.suppressed += 1,
        }
        if let (Some(r), true) = (
            &o.reason,
            matches!(
                o.status,
                Status::Quarantined | Status::Rejected | Status::Excluded | Status::Suppressed
            ),
        ) {
            *self.reasons.entry(r.clone()).or_default() += 1;
            self.held_back.push(HeldBack {
                input_ref: o.input_ref.clone(),
                status: o.status,
                reason: r.clone(),
            });
        }
        self.actions.add(&o.counts);
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
    }

    /// An output counted as written was held back after all.
    pub(crate) fn retract_written(&mut self, quarantined: &FileOutcome) {
        self.written = self.written.saturating_sub(1);
        self.record(quarantined);
    }

    /// As [`RunReport::retract_written`], for an output an earlier run wrote (counted as
    /// skipped in this run).
    pub(crate) fn retract_skipped(&mut self, quarantined: &FileOutcome) {
        self.skipped_done_earlier = self.skipped_done_earlier.saturating_sub(1);
        self.record(quarantined);
    }

    pub(crate) fn finish(&mut self, elapsed: Duration) {
        self.held_back.sort_by(|a, b| a.input_ref.cmp(&b.input_ref));
        self.series.sort_by(|a, b| a.series_ref.cmp(&b.series_ref));
        self.seconds = elapsed.as_secs_f64();
        let s = self.seconds.max(1e-9);
        let processed = self.written
            + self.duplicates
            + self.quarantined
            + self.rejected
            + self.excluded
            + self.suppressed;
        self.files_per_second = processed as f64 / s;
        self.megabytes_per_second = self.bytes_in as f64 / 1e6 / s;
    }

    /// Did every input end as an output (or an earlier run's output)?
    pub fn all_released(&self) -> bool {
        self.quarantined == 0 && self.rejected == 0
    }
}

/// One line describing a dicom-rs error chain (no values: dicom-rs errors name tags and
/// positions, not contents).
pub fn describe_error(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.contains(&t) {
            parts.push(t);
        }
        src = s.source();
    }
    let mut line = parts.join(": ");
    if line.len() > 300 {
        line.truncate(300);
        line.push('…');
    }
    line
}
