//! Defacing: removes the face (and ears) from head CT and MR series (PS3.15 E.3.2, Clean
//! Recognizable Visual Features), as a series stage of `veil-pipeline`.
//!
//! This crate owns: which instances are collected into series (CT and MR images) and which are
//! held back at once (photographs of the body surface, localizers, enhanced multi-frame CT and
//! MR while they cannot be assembled); assembling a series into one stack ([`stack`]) and a
//! coarse volume ([`volume`], [`grid`]); deciding from the volume whether it shows a head and
//! where its brain is ([`brain`]); the cut that keeps a clearance from that brain ([`cut`]);
//! and writing the cut into each instance's pixels. It does not own decoding and re-encoding
//! pixel data (`veil-pixels`), the order files are read in or where outputs go
//! (`veil-pipeline`), or the header markers (`veil-deid` sets Recognizable Visual Features and
//! the method code when told the face was removed).
//!
//! No registration and no template: the brain is found in the volume itself and the cut is
//! the union of half-spaces tangent to it from in front, below and the sides, moved out by the
//! clearance. The header's Body Part Examined and descriptions are hints only: a series they
//! call a head that cannot be checked is held back; they never let a face through.

pub mod brain;
pub mod cut;
pub mod grid;
pub mod header;
pub mod stack;
pub mod volume;

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};
use rayon::prelude::*;
use veil_pipeline::{
    MemberReader, SeriesApplied, SeriesGate, SeriesPlan, SeriesRefusal, SeriesStage, SeriesSummary,
};

use crate::cut::Cut;
use crate::header::{Kind, SliceHeader};
use crate::volume::Reduced;

/// Series with fewer slices are not assembled (too few to show a face as a volume).
pub const MIN_SLICES: usize = 16;
/// CT air, the value removed voxels get (HU).
const CT_AIR_HU: f64 = -1000.0;
/// CT: voxels at or below this are air already (noise around −1000 HU) and are left alone.
const CT_AIR_NOISE_HU: f64 = -900.0;
/// MR: voxels within this share of the robust maximum above the background are left alone.
const MR_NOISE_SHARE: f64 = 0.03;

/// The stage's settings (from the policy's `[faces]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub deface: bool,
    pub clearance_mm: f64,
    pub ears: bool,
    pub hold_photographs: bool,
}

impl From<&veil_profile::FaceSettings> for Settings {
    fn from(f: &veil_profile::FaceSettings) -> Settings {
        Settings {
            deface: f.deface(),
            clearance_mm: f.clearance_mm(),
            ears: f.ears(),
            hold_photographs: f.hold_photographs(),
        }
    }
}

/// The defacing stage.
pub struct FaceStage {
    settings: Settings,
}

impl FaceStage {
    pub fn new(settings: Settings) -> FaceStage {
        FaceStage { settings }
    }
}

impl SeriesStage for FaceStage {
    fn gate(&self, file: &FileDicomObject<InMemDicomObject>) -> SeriesGate {
        let media = file.meta().media_storage_sop_class_uid();
        match header::kind(file, media, self.settings.hold_photographs) {
            Kind::Hold(reason, detail) if self.settings.deface || reason == "face_photograph" => {
                SeriesGate::Hold {
                    reason: reason.into(),
                    detail,
                }
            }
            Kind::Slice { key } if self.settings.deface => SeriesGate::Collect { key },
            _ => SeriesGate::Pass,
        }
    }

    fn plan(
        &self,
        members: usize,
        read: &MemberReader<'_>,
    ) -> Result<Box<dyn SeriesPlan>, SeriesRefusal> {
        let started = Instant::now();
        let mut planner = Planner {
            settings: &self.settings,
            summary: SeriesSummary {
                stage: "faces".into(),
                instances: members,
                ..SeriesSummary::default()
            },
        };
        let plan = if members < MIN_SLICES {
            // Too few slices to render a surface from, whatever the header says: there is no
            // volume to find a face in (nothing is read).
            let detail = format!("{members} slice(s): not a volume; released as it is");
            Ok(planner.pass("too_few_slices", detail))
        } else {
            let read: Vec<Result<Reduced, String>> = (0..members)
                .into_par_iter()
                .map(|i| read(i).and_then(|f| volume::reduce(&f).map_err(|e| e.to_string())))
                .collect();
            let says_head = read.iter().any(|r| r.as_ref().is_ok_and(|s| s.says_head));
            planner.plan(read, says_head)
        };
        planner
            .summary
            .measures
            .insert("seconds".into(), started.elapsed().as_secs_f64());
        match plan {
            Ok(mut plan) => {
                plan.summary = planner.summary;
                Ok(Box::new(plan))
            }
            Err((reason, detail)) => {
                planner.summary.outcome = "held_back".into();
                planner.summary.detail = detail.clone();
                Err(SeriesRefusal {
                    reason: reason.into(),
                    detail,
                    summary: Box::new(planner.summary),
                })
            }
        }
    }
}

struct Planner<'a> {
    settings: &'a Settings,
    summary: SeriesSummary,
}

/// A refusal: reason code and explanation.
type Refused = (&'static str, String);

impl Planner<'_> {
    fn plan(
        &mut self,
        read: Vec<Result<Reduced, String>>,
        says_head: bool,
    ) -> Result<FacePlan, Refused> {
        let slices: Vec<Reduced> = read
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| unchecked(&format!("an instance cannot be read into the volume ({e})")))?;
        let headers: Vec<SliceHeader> = slices.iter().map(|s| s.header.clone()).collect();
        let stack = stack::assemble(&headers).map_err(|e| unchecked(&e.to_string()))?;
        let grid = volume::grid(&slices, &stack);
        let ct = headers[0].ct;
        self.summary
            .measures
            .insert("slice_step_mm".into(), stack.step);
        let head = match brain::find(&grid, ct) {
            Ok(head) => head,
            Err(why) if says_head || head_sized(&grid, ct) => {
                return Err(unchecked(&format!("it may show a head (its header or its size says so), but no brain was found to place the cut from: {why}")));
            }
            Err(why) => return Ok(self.pass("not_a_head", why)),
        };
        let points: Vec<[f64; 3]> = (0..grid.len())
            .filter(|&i| head.brain[i])
            .map(|i| grid.position(i))
            .collect();
        let half_voxel =
            0.5 * (grid.size[0].powi(2) + grid.size[1].powi(2) + grid.size[2].powi(2)).sqrt();
        let cut = Cut::around(
            &points,
            half_voxel,
            self.settings.clearance_mm,
            self.settings.ears,
        );
        let removed = (0..grid.len())
            .filter(|&i| head.body[i] && cut.removes(grid.position(i)))
            .count();
        let removed_ml = removed as f64 * grid.voxel_ml();
        let m = &mut self.summary.measures;
        m.insert("brain_ml".into(), head.brain_ml);
        m.insert("removed_ml".into(), removed_ml);
        m.insert("clearance_mm".into(), self.settings.clearance_mm);
        (self.summary.outcome, self.summary.detail) = if removed_ml > 1.0 {
            ("defaced".into(), format!("{}; removed {removed_ml:.0} mL in front of and below the brain ({:.0} mL), keeping {:.0} mm from it", head.evidence, head.brain_ml, self.settings.clearance_mm))
        } else {
            ("no_face_found".into(), format!("{}; nothing lies in front of or below the brain beyond the clearance (the field of view stops short of the face)", head.evidence))
        };
        let (fill, air) = if ct {
            (CT_AIR_HU, CT_AIR_NOISE_HU)
        } else {
            let background = grid::percentile(&grid.mean, 0.01) as f64;
            let robust = grid::percentile(&grid.mean, 0.995) as f64;
            (
                background,
                background + MR_NOISE_SHARE * (robust - background),
            )
        };
        Ok(FacePlan {
            cut: Some(cut),
            fill,
            air,
            members: headers.into_iter().map(|h| h.sop_uid).collect(),
            summary: SeriesSummary::default(),
        })
    }

    fn pass(&mut self, outcome: &str, detail: String) -> FacePlan {
        self.summary.outcome = outcome.into();
        self.summary.detail = detail;
        FacePlan {
            cut: None,
            fill: 0.0,
            air: 0.0,
            members: HashSet::new(),
            summary: SeriesSummary::default(),
        }
    }
}

fn unchecked(why: &str) -> Refused {
    (
        "face_unchecked",
        format!("this CT or MR series cannot be checked for a face, so it is held back: {why}"),
    )
}

/// Does the body have head-sized cross-sections over 6 cm of its length (so a series with no
/// brain found may still show a face: a facial-bone CT, a head cut above the brain)?
fn head_sized(grid: &grid::Grid, ct: bool) -> bool {
    let threshold = brain::body_threshold(grid, ct);
    let mut bins: BTreeMap<i64, grid::Bounds> = BTreeMap::new();
    for i in (0..grid.len()).filter(|&i| grid.mean[i] > threshold) {
        let p = grid.position(i);
        bins.entry((p[2] / 5.0).floor() as i64).or_default().add(p);
    }
    let head_like = bins
        .values()
        .map(grid::Bounds::size)
        .filter(|[w, d, _]| (100.0..=230.0).contains(w) && (120.0..=260.0).contains(d))
        .count();
    head_like >= 12
}

/// The plan for one series: the cut (none when the series shows no head) and the value
/// removed voxels get.
pub struct FacePlan {
    cut: Option<Cut>,
    /// Rescaled value (HU for CT) of what is removed.
    fill: f64,
    /// Rescaled values at or below this are air or background and stay as they are.
    air: f64,
    members: HashSet<String>,
    summary: SeriesSummary,
}

impl SeriesPlan for FacePlan {
    fn apply(&self, file: &mut FileDicomObject<InMemDicomObject>) -> Result<SeriesApplied, String> {
        let Some(cut) = &self.cut else {
            return Ok(SeriesApplied::default());
        };
        let h = SliceHeader::of(file).map_err(|e| format!("cannot place the cut: {e}"))?;
        if !self.members.contains(&h.sop_uid) || h.frames != 1 {
            return Err("the instance changed after its series was planned; rerun".into());
        }
        let runs: Vec<(usize, usize)> = (0..h.rows)
            .map(|r| {
                let start = h.at(0.0, r as f64);
                let next = h.at(1.0, r as f64);
                cut.row(start, [0, 1, 2].map(|a| next[a] - start[a]), h.cols)
            })
            .collect();
        let examined = SeriesApplied {
            modified: false,
            examined: true,
        };
        if runs.iter().all(|&(head, tail)| head == 0 && tail == h.cols) {
            return Ok(examined);
        }
        let mut px = veil_pixels::Pixels::decode(file)
            .map_err(|e| format!("cannot decode the pixels to remove the face: {e}"))?;
        let stored = stored_value(&px, (self.fill - h.intercept) / h.slope);
        // Only what is denser than air (brighter than background) changes: air outside the
        // body stays as it was, so the changed volume is the tissue removed.
        let above = |v: i32| (v as f64 * h.slope + h.intercept) > self.air;
        let mut changed = false;
        for (r, &(head, tail)) in runs.iter().enumerate() {
            for c in (0..head).chain(tail..h.cols) {
                let i = r * h.cols + c;
                if above(volume::sample(&px, i)) {
                    put_sample(&mut px, i, stored);
                    changed = true;
                }
            }
        }
        if !changed {
            return Ok(examined);
        }
        px.write_back(file)
            .map_err(|e| format!("cannot write the defaced pixels back: {e}"))?;
        // The smallest and largest pixel values may no longer hold; they are optional.
        file.remove_element(tags::SMALLEST_IMAGE_PIXEL_VALUE);
        file.remove_element(tags::LARGEST_IMAGE_PIXEL_VALUE);
        Ok(SeriesApplied {
            modified: true,
            examined: true,
        })
    }

    fn summary(&self) -> SeriesSummary {
        self.summary.clone()
    }

    fn needs_pixels(&self) -> bool {
        self.cut.is_some()
    }
}

/// The stored value nearest `value` that the samples can hold.
fn stored_value(px: &veil_pixels::Pixels, value: f64) -> i32 {
    let bits = px.bits_stored.clamp(1, 16) as i32;
    let (lo, hi) = if px.signed {
        (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    } else {
        (0, (1 << bits) - 1)
    };
    (value.round() as i64).clamp(lo as i64, hi as i64) as i32
}

fn put_sample(px: &mut veil_pixels::Pixels, i: usize, v: i32) {
    match px.bytes_per_sample {
        1 => px.data[i] = v as u8,
        _ => px.data[2 * i..2 * i + 2].copy_from_slice(&(v as u16).to_le_bytes()),
    }
}
