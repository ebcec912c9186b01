//! Reads a series' slices into the coarse grid: each slice is decoded, rescaled (HU for CT) and
//! reduced to block means and maxima as soon as it is read, so memory holds the coarse volume
//! and one slice per worker, never the full-resolution series.

use crate::grid::{Grid, COARSE_MM};
use crate::header::{says_head, SliceHeader};
use crate::stack::Stack;
use dicom_object::{FileDicomObject, InMemDicomObject};

/// One slice, read and reduced.
#[derive(Debug, Clone)]
pub struct Reduced {
    pub header: SliceHeader,
    /// The header says the series shows the head.
    pub says_head: bool,
    /// Block factors along columns and rows.
    pub factor: (usize, usize),
    /// Coarse size: columns, rows.
    pub size: (usize, usize),
    pub mean: Vec<f32>,
    pub max: Vec<f32>,
}

/// Why a slice cannot be read into the volume.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Geometry(#[from] crate::header::GeometryError),
    #[error("cannot decode its pixel data: {0}")]
    Decode(String),
    #[error("its pixel data is not one frame of grey samples")]
    NotGrey,
}

/// Block factor for a pixel spacing.
fn factor(spacing: f64) -> usize {
    ((COARSE_MM / spacing).floor() as usize).max(1)
}

/// Reads one slice: its geometry, and its rescaled values reduced to blocks.
pub fn reduce(file: &FileDicomObject<InMemDicomObject>) -> Result<Reduced, ReadError> {
    let header = SliceHeader::of(file)?;
    // Decoded only when it is one frame of a sane matrix (SliceHeader::of bounds it): a
    // hostile frame count never reaches the decoder's allocation.
    if header.frames != 1 {
        return Err(ReadError::NotGrey);
    }
    let px = veil_pixels::Pixels::decode(file).map_err(|e| ReadError::Decode(e.to_string()))?;
    if px.samples != 1
        || px.frames != 1
        || px.rows as usize != header.rows
        || px.cols as usize != header.cols
    {
        return Err(ReadError::NotGrey);
    }
    let (fx, fy) = (factor(header.spacing[1]), factor(header.spacing[0]));
    let (cx, cy) = (header.cols.div_ceil(fx), header.rows.div_ceil(fy));
    let mut sum = vec![0f32; cx * cy];
    let mut count = vec![0u16; cx * cy];
    let mut max = vec![f32::MIN; cx * cy];
    let (slope, intercept) = (header.slope as f32, header.intercept as f32);
    for r in 0..header.rows {
        for c in 0..header.cols {
            let v = sample(&px, r * header.cols + c) as f32 * slope + intercept;
            let b = (r / fy) * cx + c / fx;
            sum[b] += v;
            count[b] += 1;
            max[b] = max[b].max(v);
        }
    }
    let mean = sum.iter().zip(&count).map(|(s, &n)| s / n as f32).collect();
    Ok(Reduced {
        says_head: says_head(file),
        header,
        factor: (fx, fy),
        size: (cx, cy),
        mean,
        max,
    })
}

/// The stored value of sample `i` (one grey frame).
pub fn sample(px: &veil_pixels::Pixels, i: usize) -> i32 {
    let mask = if px.bits_stored >= 32 {
        u32::MAX
    } else {
        (1u32 << px.bits_stored) - 1
    };
    let raw = match px.bytes_per_sample {
        1 => px.data[i] as u32,
        _ => u16::from_le_bytes([px.data[2 * i], px.data[2 * i + 1]]) as u32,
    } & mask;
    if px.signed && px.bits_stored < 32 && raw & (1 << (px.bits_stored - 1)) != 0 {
        raw as i32 - (1i32 << px.bits_stored)
    } else {
        raw as i32
    }
}

/// Stacks reduced slices (in `stack` order) into the coarse grid: `fz` grid positions make a
/// coarse slice; a coarse slice no slice falls into (a gap) copies its neighbour.
pub fn grid(slices: &[Reduced], stack: &Stack) -> Grid {
    let first = &slices[stack.order[0]];
    let (nx, ny) = first.size;
    let fz = factor(stack.step);
    let nz = stack.positions.div_ceil(fz);
    let plane = nx * ny;
    let mut sum = vec![0f32; plane * nz];
    let mut max = vec![f32::MIN; plane * nz];
    let mut count = vec![0u32; nz];
    let mut origin = vec![[0.0f64; 3]; nz];
    let (fx, fy) = first.factor;
    let centre = |s: &SliceHeader| s.at((fx as f64 - 1.0) / 2.0, (fy as f64 - 1.0) / 2.0);
    for (&index, &at) in stack.order.iter().zip(&stack.grid) {
        let s = &slices[index];
        let z = at / fz;
        for i in 0..plane {
            sum[z * plane + i] += s.mean[i];
            max[z * plane + i] = max[z * plane + i].max(s.max[i]);
        }
        count[z] += 1;
        let c = centre(&s.header);
        for a in 0..3 {
            origin[z][a] += c[a];
        }
    }
    for z in 0..nz {
        if count[z] > 0 {
            for i in 0..plane {
                sum[z * plane + i] /= count[z] as f32;
            }
            origin[z] = origin[z].map(|v| v / count[z] as f64);
        }
    }
    fill_gaps(&mut sum, &mut max, &mut origin, &count, plane);
    let h = &first.header;
    let o = &h.orientation;
    let (dx, dy) = (h.spacing[1] * fx as f64, h.spacing[0] * fy as f64);
    Grid {
        nx,
        ny,
        nz,
        mean: sum,
        max,
        origin,
        step_x: [o[0] * dx, o[1] * dx, o[2] * dx],
        step_y: [o[3] * dy, o[4] * dy, o[5] * dy],
        size: [dx, dy, stack.step * fz as f64],
    }
}

/// Coarse slices without data take the nearest one's values, and a position interpolated
/// between their neighbours.
fn fill_gaps(
    mean: &mut [f32],
    max: &mut [f32],
    origin: &mut [[f64; 3]],
    count: &[u32],
    plane: usize,
) {
    let have: Vec<usize> = (0..count.len()).filter(|&z| count[z] > 0).collect();
    for z in 0..count.len() {
        if count[z] > 0 {
            continue;
        }
        let below = have.iter().rev().find(|&&k| k < z).copied();
        let above = have.iter().find(|&&k| k > z).copied();
        let (Some(b), Some(a)) = (below, above) else {
            continue; // the first and last coarse slices always hold data
        };
        let t = (z - b) as f64 / (a - b) as f64;
        origin[z] = [0, 1, 2].map(|i| origin[b][i] + t * (origin[a][i] - origin[b][i]));
        let from = if z - b <= a - z { b } else { a };
        mean.copy_within(from * plane..(from + 1) * plane, z * plane);
        max.copy_within(from * plane..(from + 1) * plane, z * plane);
    }
}
