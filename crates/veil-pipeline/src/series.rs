//! Stages that need a whole series before any of its instances can be released (defacing needs
//! the volume). The per-file stages defer such instances; when every file has been seen, the
//! deferred ones are grouped by the key their stage gave, each group is planned (one group at a
//! time, so memory holds one series), and then each instance goes through the per-file stages
//! again with its series' plan applied before header de-identification.

use dicom_object::{FileDicomObject, InMemDicomObject};
use serde::Serialize;
use std::collections::BTreeMap;

/// What a series stage decides from an instance's header (pixels not parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeriesGate {
    /// Not the stage's business: the instance goes on alone.
    Pass,
    /// Hold the instance back (e.g. a photograph while nothing proves it free of faces).
    Hold { reason: String, detail: String },
    /// The stage must see the whole series first: the instance waits in the group `key`
    /// (identifying, e.g. the original Series Instance UID: kept in memory, never logged).
    Collect { key: String },
}

/// Reads one member of a group, parsed whole (Pixel Data included), or says why it cannot.
pub type MemberReader<'a> =
    dyn Fn(usize) -> Result<FileDicomObject<InMemDicomObject>, String> + Sync + 'a;

/// A stage over whole series.
pub trait SeriesStage: Send + Sync {
    /// Looks at one instance's header.
    fn gate(&self, file: &FileDicomObject<InMemDicomObject>) -> SeriesGate;
    /// Plans a group of `members` instances (read with `read`). `Err` holds every member back.
    fn plan(
        &self,
        members: usize,
        read: &MemberReader<'_>,
    ) -> Result<Box<dyn SeriesPlan>, SeriesRefusal>;
}

/// What a plan did to one instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeriesApplied {
    /// Pixels were changed (the instance is marked as cleaned of recognizable features).
    pub modified: bool,
    /// The instance was examined as part of a series judged free of a face (or cleaned of it):
    /// its Recognizable Visual Features may be said to be NO.
    pub examined: bool,
}

/// A planned series, applied to each of its instances.
pub trait SeriesPlan: Send + Sync {
    /// Applies the plan to one member (parsed whole). `Err` holds this instance back.
    fn apply(&self, file: &mut FileDicomObject<InMemDicomObject>) -> Result<SeriesApplied, String>;
    /// What was decided for the series, for the run report (no identifying values).
    fn summary(&self) -> SeriesSummary;
    /// Will `apply` look at pixels? When not, Pixel Data stays carried as bytes (never decoded
    /// or re-encoded), as for an instance no stage needs.
    fn needs_pixels(&self) -> bool {
        true
    }
}

/// Why a whole group is held back.
#[derive(Debug, Clone)]
pub struct SeriesRefusal {
    pub reason: String,
    pub detail: String,
    pub summary: Box<SeriesSummary>,
}

/// One series in the run report. `series_ref` is a keyed reference (the pipeline fills it in),
/// never a UID.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SeriesSummary {
    pub series_ref: String,
    pub stage: String,
    pub instances: usize,
    /// e.g. `defaced`, `no_face_found`, `not_a_head`, `held_back`.
    pub outcome: String,
    pub detail: String,
    /// Figures (volumes in mL, distances in mm, seconds), by name.
    pub measures: BTreeMap<String, f64>,
}
