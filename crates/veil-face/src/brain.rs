//! Finds the head and the brain in the coarse volume, and says whether the series shows a head
//! at all. CT: the soft tissue the skull encloses, slice by slice. MR: the bright core deep
//! under the head's surface, separated from the scalp by the dark skull and CSF.
//!
//! The brain found here is what the cut keeps its clearance from, so it errs large: a brain
//! found too small would let the cut come closer to the real one.

use crate::grid::{otsu, percentile, Bounds, Grid, Mask};

/// CT: bone is at least this many HU (block maxima, so thin bone still closes the ring).
const CT_BONE_HU: f32 = 300.0;
/// CT: brain, CSF and blood lie in this HU range (block means).
const CT_BRAIN_HU: (f32, f32) = (-20.0, 100.0);
/// CT: the body (skin and below) is above this HU.
const CT_BODY_HU: f32 = -500.0;
/// CT: share of the brain's surroundings within reach of bone (the skull encloses it).
const CT_MIN_BONE_COVER: f64 = 0.7;
/// MR: the body is above this share of the robust maximum.
const MR_BODY_SHARE: f32 = 0.1;
/// MR: the brain lies at least this deep under the head's surface (scalp and skull), mm.
const MR_MIN_DEPTH_MM: f32 = 8.0;
/// MR: erosions that part the brain from bright tissue below the skull base (the neck, the
/// tongue), which thin bridges through the foramina join it to.
const MR_EROSIONS: usize = 3;
/// MR: the brain's edge (grey matter, CSF) is tissue above this share of the bright split...
const MR_EDGE_SHARE: f32 = 0.3;
/// ...within this many blocks of the bright core.
const MR_EDGE_GROWTH: usize = 5;
/// MR: after the erosions, a part at least this share of the largest one belongs to the brain
/// too (the two hemispheres can part), unless it reaches far below it (the neck).
const MR_PART_SHARE: f64 = 0.1;
const MR_PART_BELOW_MM: f64 = 25.0;
/// A brain (adult or child, whole or cut by the field of view) is this large, mL.
const BRAIN_ML: (f64, f64) = (200.0, 2500.0);
/// A head's width (left–right) and depth (front–back) at the brain's centre, mm.
const HEAD_WIDTH_MM: (f64, f64) = (110.0, 230.0);
const HEAD_DEPTH_MM: (f64, f64) = (130.0, 260.0);
/// The brain's extent along each patient axis (left–right, front–back, up–down), mm.
const BRAIN_EXTENT_MM: [(f64, f64); 3] = [(70.0, 200.0), (80.0, 240.0), (40.0, 200.0)];

/// The head and brain found in a volume.
#[derive(Debug, Clone)]
pub struct Head {
    /// The body's voxels (skin and everything inside).
    pub body: Mask,
    pub brain: Mask,
    pub brain_ml: f64,
    /// What showed it is a head.
    pub evidence: String,
}

/// Looks for a head; `Err` says why the volume is not one.
pub fn find(grid: &Grid, ct: bool) -> Result<Head, String> {
    let head = if ct { find_ct(grid)? } else { find_mr(grid)? };
    let count = head.brain.iter().filter(|&&b| b).count();
    let brain_ml = count as f64 * grid.voxel_ml();
    if !(BRAIN_ML.0..=BRAIN_ML.1).contains(&brain_ml) {
        return Err(format!(
            "the largest brain-like region is {brain_ml:.0} mL, outside {:.0}–{:.0} mL",
            BRAIN_ML.0, BRAIN_ML.1
        ));
    }
    let extent = extent(grid, &head.brain);
    for (axis, ((lo, hi), e)) in BRAIN_EXTENT_MM.iter().zip(extent).enumerate() {
        if !(*lo..=*hi).contains(&e) {
            let name = ["left–right", "front–back", "up–down"][axis];
            return Err(format!(
                "the brain-like region spans {e:.0} mm {name}, outside {lo:.0}–{hi:.0} mm"
            ));
        }
    }
    let (width, depth) = body_section(grid, &head.body, &head.brain);
    if !(HEAD_WIDTH_MM.0..=HEAD_WIDTH_MM.1).contains(&width)
        || !(HEAD_DEPTH_MM.0..=HEAD_DEPTH_MM.1).contains(&depth)
    {
        return Err(format!(
            "the body around the brain-like region is {width:.0} mm wide and {depth:.0} mm deep, not a head's {:.0}–{:.0} by {:.0}–{:.0} mm",
            HEAD_WIDTH_MM.0, HEAD_WIDTH_MM.1, HEAD_DEPTH_MM.0, HEAD_DEPTH_MM.1
        ));
    }
    Ok(Head { brain_ml, ..head })
}

/// The body's width (left–right) and depth (front–back), mm, within 10 mm of the height of the
/// region's centre: a head there is 110–230 mm by 130–260 mm (a knee's marrow or a liver in a
/// trunk is not).
fn body_section(grid: &Grid, body: &[bool], region: &[bool]) -> (f64, f64) {
    let (mut sum, mut n) = (0.0, 0usize);
    for (i, _) in region.iter().enumerate().filter(|(_, &r)| r) {
        sum += grid.position(i)[2];
        n += 1;
    }
    let centre = sum / n.max(1) as f64;
    let mut section = Bounds::default();
    for (i, _) in body.iter().enumerate().filter(|(_, &b)| b) {
        let p = grid.position(i);
        if (p[2] - centre).abs() <= 10.0 {
            section.add(p);
        }
    }
    let [width, depth, _] = section.size();
    (width, depth)
}

/// The extent (mm) of a mask along the patient axes.
fn extent(grid: &Grid, mask: &[bool]) -> [f64; 3] {
    let mut b = Bounds::default();
    for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
        b.add(grid.position(i));
    }
    b.size()
}

/// The value the body (skin and everything inside) lies above: CT air and body split at
/// `CT_BODY_HU`; MR at `MR_BODY_SHARE` of the robust maximum.
pub fn body_threshold(grid: &Grid, ct: bool) -> f32 {
    if ct {
        CT_BODY_HU
    } else {
        MR_BODY_SHARE * percentile(&grid.mean, 0.995)
    }
}

fn find_ct(grid: &Grid) -> Result<Head, String> {
    let bone: Mask = grid.max.iter().map(|&v| v >= CT_BONE_HU).collect();
    let candidate: Mask = (0..grid.len())
        .map(|i| !bone[i] && (CT_BRAIN_HU.0..=CT_BRAIN_HU.1).contains(&grid.mean[i]))
        .collect();
    // Two erosions cut the thin bridges of soft tissue through the skull's openings (optic
    // canals, foramina, gaps between coarse bone voxels) that join the brain to the orbits,
    // the face and the neck; of what remains, the brain is the large region bone surrounds.
    let (labels, sizes) = grid.components(&grid.erode(&grid.erode(&candidate)));
    let min_voxels = (BRAIN_ML.0 / 2.0 / grid.voxel_ml()) as usize;
    let best = sizes
        .iter()
        .enumerate()
        .filter(|(_, &s)| s >= min_voxels)
        .map(|(l, _)| {
            let core: Mask = labels.iter().map(|&x| x == l as u32 + 1).collect();
            let region = grid.grow_within(&core, &candidate, 3);
            (bone_cover(grid, &region, &bone), region)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let Some((cover, brain)) = best else {
        return Err("no large region of soft tissue inside bone".into());
    };
    if cover < CT_MIN_BONE_COVER {
        return Err(format!(
            "bone surrounds {:.0} % of the largest soft-tissue region (a skull surrounds at least {:.0} %)",
            cover * 100.0,
            CT_MIN_BONE_COVER * 100.0
        ));
    }
    let threshold = body_threshold(grid, true);
    let body = body(grid, |v| v > threshold);
    Ok(Head {
        body,
        brain,
        brain_ml: 0.0,
        evidence: format!(
            "bone surrounds the brain-like region ({:.0} %)",
            cover * 100.0
        ),
    })
}

/// The brain's core in MR: the candidate eroded [`MR_EROSIONS`] times; its largest part, with
/// every other large part that does not reach more than [`MR_PART_BELOW_MM`] below it.
fn brain_core(grid: &Grid, candidate: &[bool]) -> Option<Mask> {
    let mut eroded = candidate.to_vec();
    for _ in 0..MR_EROSIONS {
        eroded = grid.erode(&eroded);
    }
    let (labels, sizes) = grid.components(&eroded);
    let (largest, &big) = sizes.iter().enumerate().max_by_key(|(_, &s)| s)?;
    let lowest = |label: u32| {
        labels
            .iter()
            .enumerate()
            .filter(|(_, &l)| l == label)
            .map(|(i, _)| grid.position(i)[2])
            .fold(f64::MAX, f64::min)
    };
    let floor = lowest(largest as u32 + 1) - MR_PART_BELOW_MM;
    let parts: Vec<u32> = sizes
        .iter()
        .enumerate()
        .filter(|(l, &s)| {
            *l == largest
                || (s as f64 >= MR_PART_SHARE * big as f64 && lowest(*l as u32 + 1) >= floor)
        })
        .map(|(l, _)| l as u32 + 1)
        .collect();
    Some(labels.iter().map(|l| parts.contains(l)).collect())
}

/// Share of the voxels just outside `region` that have bone within two voxels.
fn bone_cover(grid: &Grid, region: &[bool], bone: &[bool]) -> f64 {
    let near_bone = grid.dilate(&grid.dilate(bone));
    let grown = grid.dilate(region);
    let (mut shell, mut covered) = (0usize, 0usize);
    for i in 0..region.len() {
        if grown[i] && !region[i] {
            shell += 1;
            covered += near_bone[i] as usize;
        }
    }
    if shell == 0 {
        0.0
    } else {
        covered as f64 / shell as f64
    }
}

/// The body: the largest region above a threshold, holes filled slice by slice.
fn body(grid: &Grid, above: impl Fn(f32) -> bool) -> Mask {
    let mask: Mask = grid.mean.iter().map(|&v| above(v)).collect();
    let (largest, _) = grid.largest_component(&mask);
    grid.enclosed_2d(&largest)
}

fn find_mr(grid: &Grid) -> Result<Head, String> {
    let threshold = body_threshold(grid, false);
    if threshold <= 0.0 {
        return Err("the volume is empty".into());
    }
    let body = body(grid, |v| v > threshold);
    let inside: Vec<f32> = (0..grid.len())
        .filter(|&i| body[i])
        .map(|i| grid.mean[i])
        .collect();
    let bright = otsu(&inside);
    let depth = grid.depth(&body);
    let candidate: Mask = (0..grid.len())
        .map(|i| body[i] && grid.mean[i] > bright && depth[i] >= MR_MIN_DEPTH_MM)
        .collect();
    let core = brain_core(grid, &candidate)
        .ok_or_else(|| "no bright tissue deep inside the body".to_string())?;
    // Grow back over what the erosions took, then into the darker grey matter and CSF at the
    // brain's edge (tissue above a third of the split), so the brain found errs large.
    let regrown = grid.grow_within(&core, &candidate, MR_EROSIONS + 1);
    let tissue: Mask = (0..grid.len())
        .map(|i| {
            body[i] && grid.mean[i] > bright * MR_EDGE_SHARE && depth[i] >= MR_MIN_DEPTH_MM * 0.5
        })
        .collect();
    let brain = grid.grow_within(&regrown, &tissue, MR_EDGE_GROWTH);
    Ok(Head {
        body,
        brain,
        brain_ml: 0.0,
        evidence: "a bright core deep under the head's surface".into(),
    })
}
