//! The cut: half-spaces that touch the brain from in front and below (the face) and from the
//! sides and below (the ears), each moved out by the clearance. Everything inside any of them is
//! removed; nothing within the clearance of the brain found can be, because each half-space
//! keeps that distance from every brain voxel (a point beyond a plane moved out by `c` from a
//! set is at least `c` from every point of it).
//!
//! Directions are in patient coordinates (LPS: +x left, +y posterior, +z superior), so the cut
//! follows the patient whatever the acquisition's orientation.

use crate::header::dot;

/// Face planes lean from straight ahead (0°) down to this many degrees below it.
const FACE_MAX_DEG: f64 = 60.0;
/// Ear planes lean from this many degrees below straight out to the side...
const EAR_MIN_DEG: f64 = 15.0;
/// ...down to this many.
const EAR_MAX_DEG: f64 = 60.0;
const STEP_DEG: f64 = 3.0;

/// Which part of the head a plane removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Face,
    LeftEar,
    RightEar,
}

/// A half-space `normal · p > offset` that is removed.
#[derive(Debug, Clone, Copy)]
pub struct Plane {
    pub normal: [f64; 3],
    pub offset: f64,
    pub part: Part,
}

/// The planes of one series.
#[derive(Debug, Clone)]
pub struct Cut {
    pub planes: Vec<Plane>,
}

fn directions(part: Part) -> Vec<[f64; 3]> {
    let (from, to) = match part {
        Part::Face => (0.0, FACE_MAX_DEG),
        _ => (EAR_MIN_DEG, EAR_MAX_DEG),
    };
    let steps = ((to - from) / STEP_DEG).round() as usize;
    (0..=steps)
        .map(|s| {
            let a = (from + s as f64 * STEP_DEG).to_radians();
            let (out, down) = (a.cos(), -a.sin());
            match part {
                // Anterior is −y.
                Part::Face => [0.0, -out, down],
                Part::LeftEar => [out, 0.0, down],
                Part::RightEar => [-out, 0.0, down],
            }
        })
        .collect()
}

impl Cut {
    /// Planes tangent to `brain` (voxel centres; `half_voxel` mm from centre to the farthest
    /// corner) moved out by `clearance` mm.
    pub fn around(brain: &[[f64; 3]], half_voxel: f64, clearance: f64, ears: bool) -> Cut {
        let mut parts = vec![Part::Face];
        if ears {
            parts.extend([Part::LeftEar, Part::RightEar]);
        }
        let planes = parts
            .into_iter()
            .flat_map(|part| directions(part).into_iter().map(move |n| (part, n)))
            .map(|(part, normal)| {
                let reach = brain
                    .iter()
                    .map(|&p| dot(normal, p))
                    .fold(f64::MIN, f64::max);
                Plane {
                    normal,
                    offset: reach + half_voxel + clearance,
                    part,
                }
            })
            .collect();
        Cut { planes }
    }

    /// Is the point removed?
    pub fn removes(&self, p: [f64; 3]) -> bool {
        self.planes.iter().any(|pl| dot(pl.normal, p) > pl.offset)
    }

    /// The removed pixels of a row that starts at `start` and moves `step` per pixel, as at
    /// most two runs: `[0, head)` and `[tail, len)`. Each plane removes a prefix or a suffix of
    /// a straight row (or all or none of it), so their union is one of each.
    pub fn row(&self, start: [f64; 3], step: [f64; 3], len: usize) -> (usize, usize) {
        let (mut head, mut tail) = (0usize, len);
        for pl in &self.planes {
            let g0 = dot(pl.normal, start) - pl.offset;
            let g1 = dot(pl.normal, step);
            if g1.abs() < 1e-12 {
                if g0 > 0.0 {
                    return (len, len);
                }
                continue;
            }
            // Pixel c is removed when g0 + c·g1 > 0.
            let edge = -g0 / g1;
            if g1 > 0.0 {
                let first = if edge < 0.0 {
                    0
                } else {
                    (edge.floor() as usize).saturating_add(1)
                };
                tail = tail.min(first.min(len));
            } else {
                let last = if edge <= 0.0 {
                    0
                } else {
                    (edge.ceil() as usize).min(len)
                };
                head = head.max(last);
            }
        }
        (head.min(len), tail.max(head.min(len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_clearance_and_removes_in_front_and_below() {
        // A "brain": a ball of radius 60 mm at the origin, sampled on its surface.
        let mut brain = Vec::new();
        for i in 0..40 {
            for j in 0..20 {
                let (t, f) = (i as f64 * 0.157, j as f64 * 0.157);
                brain.push([
                    60.0 * f.sin() * t.cos(),
                    60.0 * f.sin() * t.sin(),
                    60.0 * f.cos(),
                ]);
            }
        }
        let cut = Cut::around(&brain, 0.0, 10.0, true);
        // The nose: 90 mm in front, 20 below the centre.
        assert!(cut.removes([0.0, -90.0, -20.0]));
        // The top of the head and the back are kept, as is everything within 10 mm of the ball.
        assert!(!cut.removes([0.0, 0.0, 75.0]));
        assert!(!cut.removes([0.0, 75.0, 0.0]));
        for p in &brain {
            let n = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
            let out = [p[0] / n * 69.0, p[1] / n * 69.0, p[2] / n * 69.0];
            assert!(!cut.removes(out), "{out:?}");
        }
        // Rows agree with the point test.
        let (start, step) = ([-100.0, -100.0, -30.0], [0.0, 1.0, 0.0]);
        let (head, tail) = cut.row(start, step, 200);
        for c in 0..200 {
            let p = [start[0], start[1] + c as f64, start[2]];
            assert_eq!(c < head || c >= tail, cut.removes(p), "pixel {c}");
        }
    }
}
