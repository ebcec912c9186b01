//! Orders a series' slices into one stack: one orientation and matrix, distinct positions along
//! the slice normal, evenly spaced apart from missing slices. Anything else cannot be assembled
//! safely and is refused with the reason.

use crate::header::{dot, SliceHeader};

/// How far orientations, spacings and steps may differ and still be one stack.
const ORIENTATION_TOLERANCE: f64 = 1e-3;
const SPACING_TOLERANCE: f64 = 1e-3;
/// Share of the regular step a gap may be off a whole number of steps.
const STEP_TOLERANCE: f64 = 0.2;
/// At most this share of the stack's slice positions may be missing.
const MAX_MISSING_SHARE: f64 = 0.25;

/// Why a series is not one stack.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StackError {
    #[error(
        "its instances have different image orientations (several stacks or a localizer mixed in)"
    )]
    MixedOrientation,
    #[error("its instances have different matrices or pixel spacings")]
    MixedMatrix,
    #[error("two instances lie at the same position")]
    DuplicatePosition,
    #[error("its slices are not evenly spaced (a step of {0:.2} mm against a regular step of {1:.2} mm)")]
    IrregularSpacing(f64, f64),
    #[error("{0} of its slice positions are missing (more than a quarter)")]
    TooManyGaps(usize),
    #[error("an instance has {0} frames; only single-frame images are assembled")]
    MultiFrame(u32),
}

/// Slices in stack order with their place on a regular grid of positions.
#[derive(Debug, Clone)]
pub struct Stack {
    /// Indices into the slices given, ordered along the normal.
    pub order: Vec<usize>,
    /// The grid position of each ordered slice (0 for the first; gaps skip numbers).
    pub grid: Vec<usize>,
    /// Grid positions in all (last grid position + 1).
    pub positions: usize,
    /// The regular step between grid positions, mm.
    pub step: f64,
}

/// Assembles slices (at least two) into a stack.
pub fn assemble(slices: &[SliceHeader]) -> Result<Stack, StackError> {
    let first = &slices[0];
    for s in slices {
        if s.frames > 1 {
            return Err(StackError::MultiFrame(s.frames));
        }
        if s.orientation
            .iter()
            .zip(&first.orientation)
            .any(|(a, b)| (a - b).abs() > ORIENTATION_TOLERANCE)
        {
            return Err(StackError::MixedOrientation);
        }
        if s.rows != first.rows
            || s.cols != first.cols
            || (s.spacing[0] - first.spacing[0]).abs() > SPACING_TOLERANCE
            || (s.spacing[1] - first.spacing[1]).abs() > SPACING_TOLERANCE
        {
            return Err(StackError::MixedMatrix);
        }
    }
    let normal = first.normal();
    let along: Vec<f64> = slices.iter().map(|s| dot(s.position, normal)).collect();
    let mut order: Vec<usize> = (0..slices.len()).collect();
    order.sort_by(|&a, &b| along[a].total_cmp(&along[b]));
    let steps: Vec<f64> = order
        .windows(2)
        .map(|w| along[w[1]] - along[w[0]])
        .collect();
    if steps.iter().any(|&d| d < 0.01) {
        return Err(StackError::DuplicatePosition);
    }
    let mut sorted = steps.clone();
    sorted.sort_by(f64::total_cmp);
    let step = sorted[sorted.len() / 2];
    let mut grid = vec![0usize];
    for &d in &steps {
        let k = (d / step).round();
        if k < 1.0 || (d / step - k).abs() > STEP_TOLERANCE {
            return Err(StackError::IrregularSpacing(d, step));
        }
        grid.push(grid.last().unwrap() + k as usize);
    }
    let positions = grid.last().unwrap() + 1;
    let missing = positions - slices.len();
    if missing as f64 > MAX_MISSING_SHARE * positions as f64 {
        return Err(StackError::TooManyGaps(missing));
    }
    Ok(Stack {
        order,
        grid,
        positions,
        step,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(z: f64) -> SliceHeader {
        SliceHeader {
            sop_uid: format!("1.{z}"),
            ct: true,
            rows: 4,
            cols: 4,
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            position: [0.0, 0.0, z],
            spacing: [1.0, 1.0],
            slope: 1.0,
            intercept: 0.0,
            frames: 1,
        }
    }

    #[test]
    fn orders_by_position_and_places_gaps() {
        let slices: Vec<SliceHeader> = [3.0, 0.0, 1.5, 7.5, 6.0, 4.5, 10.5, 9.0]
            .iter()
            .map(|&z| slice(z))
            .collect();
        let mut with_gap = slices.clone();
        with_gap.remove(5); // z = 4.5
        let s = assemble(&with_gap).unwrap();
        assert_eq!(s.positions, 8);
        assert_eq!(s.grid, vec![0, 1, 2, 4, 5, 6, 7]);
        assert_eq!(with_gap[s.order[0]].position[2], 0.0);
        assert!((s.step - 1.5).abs() < 1e-9);
    }

    #[test]
    fn refuses_what_is_not_one_stack() {
        let mut dup: Vec<SliceHeader> = (0..5).map(|i| slice(i as f64)).collect();
        dup.push(slice(2.0));
        assert_eq!(assemble(&dup).unwrap_err(), StackError::DuplicatePosition);
        let mut mixed: Vec<SliceHeader> = (0..5).map(|i| slice(i as f64)).collect();
        mixed[2].orientation = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0];
        assert_eq!(assemble(&mixed).unwrap_err(), StackError::MixedOrientation);
        let odd: Vec<SliceHeader> = [0.0, 1.0, 2.0, 3.4, 4.4, 5.4]
            .iter()
            .map(|&z| slice(z))
            .collect();
        assert!(matches!(
            assemble(&odd),
            Err(StackError::IrregularSpacing(..))
        ));
        let sparse: Vec<SliceHeader> = [0.0, 1.0, 5.0, 6.0].iter().map(|&z| slice(z)).collect();
        assert_eq!(assemble(&sparse).unwrap_err(), StackError::TooManyGaps(3));
    }
}
