//! A coarse copy of the volume (about 2 mm voxels) that the brain is looked for in, and the
//! few mask operations that needs: thresholds, 2-D hole filling, one-voxel erosion and
//! dilation, connected components and depth below a surface.

use std::collections::VecDeque;

/// Coarse voxels are about this size (mm): fine enough to place a cut with millimetres to
/// spare, coarse enough that a 512×512×300 CT is analysed in a fraction of a second.
pub const COARSE_MM: f64 = 2.0;

/// The coarse volume: block means and maxima of the rescaled values (HU for CT).
#[derive(Debug, Clone)]
pub struct Grid {
    pub nx: usize,
    pub ny: usize,
    pub nz: usize,
    pub mean: Vec<f32>,
    pub max: Vec<f32>,
    /// Patient position (mm, LPS) of the centre of voxel (0, 0, k), per k.
    pub origin: Vec<[f64; 3]>,
    /// Patient displacement of one coarse voxel along x (columns) and y (rows).
    pub step_x: [f64; 3],
    pub step_y: [f64; 3],
    /// Voxel edge lengths (mm): x, y, z.
    pub size: [f64; 3],
}

/// One boolean per voxel.
pub type Mask = Vec<bool>;

/// The smallest box along the patient axes that holds the points added.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    lo: [f64; 3],
    hi: [f64; 3],
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            lo: [f64::MAX; 3],
            hi: [f64::MIN; 3],
        }
    }
}

impl Bounds {
    pub fn add(&mut self, p: [f64; 3]) {
        for (a, v) in p.into_iter().enumerate() {
            self.lo[a] = self.lo[a].min(v);
            self.hi[a] = self.hi[a].max(v);
        }
    }

    /// Edge lengths (mm) along x, y, z; 0 when empty.
    pub fn size(&self) -> [f64; 3] {
        [0, 1, 2].map(|a| (self.hi[a] - self.lo[a]).max(0.0))
    }
}

impl Grid {
    pub fn len(&self) -> usize {
        self.nx * self.ny * self.nz
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn index(&self, x: usize, y: usize, z: usize) -> usize {
        (z * self.ny + y) * self.nx + x
    }

    /// Patient position of a voxel's centre.
    pub fn position(&self, i: usize) -> [f64; 3] {
        let x = (i % self.nx) as f64;
        let y = ((i / self.nx) % self.ny) as f64;
        let o = self.origin[i / (self.nx * self.ny)];
        [
            o[0] + x * self.step_x[0] + y * self.step_y[0],
            o[1] + x * self.step_x[1] + y * self.step_y[1],
            o[2] + x * self.step_x[2] + y * self.step_y[2],
        ]
    }

    /// Volume of one voxel in mL.
    pub fn voxel_ml(&self) -> f64 {
        self.size[0] * self.size[1] * self.size[2] / 1000.0
    }

    /// The 6 face neighbours of voxel `i`.
    fn neighbours(&self, i: usize, out: &mut Vec<usize>) {
        out.clear();
        let (x, y, z) = (
            i % self.nx,
            (i / self.nx) % self.ny,
            i / (self.nx * self.ny),
        );
        let plane = self.nx * self.ny;
        if x > 0 {
            out.push(i - 1);
        }
        if x + 1 < self.nx {
            out.push(i + 1);
        }
        if y > 0 {
            out.push(i - self.nx);
        }
        if y + 1 < self.ny {
            out.push(i + self.nx);
        }
        if z > 0 {
            out.push(i - plane);
        }
        if z + 1 < self.nz {
            out.push(i + plane);
        }
    }

    /// The 6-connected components of `mask`: a label per voxel (0 outside, components from 1)
    /// and each component's size (index = label − 1).
    pub fn components(&self, mask: &[bool]) -> (Vec<u32>, Vec<usize>) {
        let mut label = vec![0u32; mask.len()];
        let mut sizes = Vec::new();
        let mut queue = VecDeque::new();
        let mut nb = Vec::with_capacity(6);
        for start in 0..mask.len() {
            if !mask[start] || label[start] != 0 {
                continue;
            }
            sizes.push(0);
            let current = sizes.len() as u32;
            label[start] = current;
            queue.push_back(start);
            while let Some(i) = queue.pop_front() {
                sizes[current as usize - 1] += 1;
                self.neighbours(i, &mut nb);
                for &j in &nb {
                    if mask[j] && label[j] == 0 {
                        label[j] = current;
                        queue.push_back(j);
                    }
                }
            }
        }
        (label, sizes)
    }

    /// The largest 6-connected component of `mask`, and its size.
    pub fn largest_component(&self, mask: &[bool]) -> (Mask, usize) {
        let (label, sizes) = self.components(mask);
        let Some((best, &size)) = sizes.iter().enumerate().max_by_key(|(_, &s)| s) else {
            return (vec![false; mask.len()], 0);
        };
        let best = best as u32 + 1;
        (label.iter().map(|&l| l == best).collect(), size)
    }

    /// `mask` grown by `n` voxels, never outside `within`.
    pub fn grow_within(&self, mask: &[bool], within: &[bool], n: usize) -> Mask {
        let mut out = mask.to_vec();
        for _ in 0..n {
            out = self
                .dilate(&out)
                .iter()
                .zip(within)
                .map(|(&a, &b)| a && b)
                .collect();
        }
        out
    }

    /// Per slice (fixed z): the pixels a 4-connected path through non-`barrier` pixels cannot
    /// reach from the slice's border (what the barrier encloses, barrier included).
    pub fn enclosed_2d(&self, barrier: &[bool]) -> Mask {
        let (nx, ny) = (self.nx, self.ny);
        let mut out = vec![true; barrier.len()];
        let mut queue = VecDeque::new();
        for z in 0..self.nz {
            let base = z * nx * ny;
            let seed = |x: usize, y: usize, out: &mut Mask, q: &mut VecDeque<usize>| {
                let i = base + y * nx + x;
                if !barrier[i] && out[i] {
                    out[i] = false;
                    q.push_back(i);
                }
            };
            for x in 0..nx {
                seed(x, 0, &mut out, &mut queue);
                seed(x, ny - 1, &mut out, &mut queue);
            }
            for y in 0..ny {
                seed(0, y, &mut out, &mut queue);
                seed(nx - 1, y, &mut out, &mut queue);
            }
            while let Some(i) = queue.pop_front() {
                let (x, y) = ((i - base) % nx, (i - base) / nx);
                let mut visit = |j: usize, out: &mut Mask| {
                    if !barrier[j] && out[j] {
                        out[j] = false;
                        queue.push_back(j);
                    }
                };
                if x > 0 {
                    visit(i - 1, &mut out);
                }
                if x + 1 < nx {
                    visit(i + 1, &mut out);
                }
                if y > 0 {
                    visit(i - nx, &mut out);
                }
                if y + 1 < ny {
                    visit(i + nx, &mut out);
                }
            }
        }
        out
    }

    /// One-voxel erosion (a voxel stays if it and its 6 neighbours are set). The volume's
    /// edge is where the field of view stops, not where the tissue does: what lies beyond it
    /// counts as set.
    pub fn erode(&self, mask: &[bool]) -> Mask {
        let mut nb = Vec::with_capacity(6);
        (0..mask.len())
            .map(|i| {
                mask[i] && {
                    self.neighbours(i, &mut nb);
                    nb.iter().all(|&j| mask[j])
                }
            })
            .collect()
    }

    /// One-voxel dilation (6 neighbours).
    pub fn dilate(&self, mask: &[bool]) -> Mask {
        let mut out = mask.to_vec();
        let mut nb = Vec::with_capacity(6);
        for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
            self.neighbours(i, &mut nb);
            for &j in &nb {
                out[j] = true;
            }
        }
        out
    }

    /// Distance (mm, chamfer approximation) from each voxel of `mask` to the nearest voxel
    /// outside it; 0 outside the mask. The volume's edge is not a surface (the field of view
    /// cuts through the body there): beyond it counts as inside.
    pub fn depth(&self, mask: &[bool]) -> Vec<f32> {
        let (nx, ny, nz) = (self.nx as isize, self.ny as isize, self.nz as isize);
        let big = f32::MAX / 4.0;
        let mut d: Vec<f32> = mask.iter().map(|&m| if m { big } else { 0.0 }).collect();
        // Forward and backward passes over the 13 half-neighbourhoods of a 3×3×3 block.
        let mut offsets = Vec::new();
        for dz in -1isize..=1 {
            for dy in -1isize..=1 {
                for dx in -1isize..=1 {
                    if (dz, dy, dx) < (0, 0, 0) {
                        let w = ((dx as f64 * self.size[0]).powi(2)
                            + (dy as f64 * self.size[1]).powi(2)
                            + (dz as f64 * self.size[2]).powi(2))
                        .sqrt() as f32;
                        offsets.push((dx, dy, dz, w));
                    }
                }
            }
        }
        let at = |x: isize, y: isize, z: isize| ((z * ny + y) * nx + x) as usize;
        let inside =
            |x: isize, y: isize, z: isize| x >= 0 && y >= 0 && z >= 0 && x < nx && y < ny && z < nz;
        for pass in 0..2 {
            let sign = if pass == 0 { 1 } else { -1 };
            let zs: Vec<isize> = if pass == 0 {
                (0..nz).collect()
            } else {
                (0..nz).rev().collect()
            };
            for &z in &zs {
                for yy in 0..ny {
                    let y = if pass == 0 { yy } else { ny - 1 - yy };
                    for xx in 0..nx {
                        let x = if pass == 0 { xx } else { nx - 1 - xx };
                        let i = at(x, y, z);
                        if d[i] == 0.0 {
                            continue;
                        }
                        let mut best = d[i];
                        for &(dx, dy, dz, w) in &offsets {
                            let (a, b, c) = (x + sign * dx, y + sign * dy, z + sign * dz);
                            let v = if inside(a, b, c) { d[at(a, b, c)] } else { big };
                            best = best.min(v + w);
                        }
                        d[i] = best;
                    }
                }
            }
        }
        d
    }
}

/// Otsu's threshold of `values` (the split that best separates two classes), over 256 bins.
pub fn otsu(values: &[f32]) -> f32 {
    let (lo, hi) = values
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if values.is_empty() || hi <= lo {
        return lo;
    }
    let bins = 256usize;
    let width = (hi - lo) / bins as f32;
    let mut hist = vec![0f64; bins];
    for &v in values {
        hist[(((v - lo) / width) as usize).min(bins - 1)] += 1.0;
    }
    let total: f64 = hist.iter().sum();
    let sum_all: f64 = hist.iter().enumerate().map(|(i, h)| i as f64 * h).sum();
    let (mut w0, mut sum0, mut best, mut best_i) = (0.0, 0.0, -1.0, 0);
    for (i, h) in hist.iter().enumerate() {
        w0 += h;
        sum0 += i as f64 * h;
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let (m0, m1) = (sum0 / w0, (sum_all - sum0) / w1);
        let between = w0 * w1 * (m0 - m1).powi(2);
        if between > best {
            (best, best_i) = (between, i);
        }
    }
    lo + (best_i as f32 + 1.0) * width
}

/// The value below which `share` of `values` lie.
pub fn percentile(values: &[f32], share: f64) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    let k = ((v.len() - 1) as f64 * share).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(k, f32::total_cmp);
    *x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cube(n: usize) -> Grid {
        Grid {
            nx: n,
            ny: n,
            nz: n,
            mean: vec![0.0; n * n * n],
            max: vec![0.0; n * n * n],
            origin: (0..n).map(|k| [0.0, 0.0, 2.0 * k as f64]).collect(),
            step_x: [2.0, 0.0, 0.0],
            step_y: [0.0, 2.0, 0.0],
            size: [2.0, 2.0, 2.0],
        }
    }

    #[test]
    fn components_rings_and_depth() {
        let g = cube(9);
        let mut mask = vec![false; g.len()];
        // A 5×5×5 block and a lone voxel far from it.
        for z in 2..7 {
            for y in 2..7 {
                for x in 2..7 {
                    mask[g.index(x, y, z)] = true;
                }
            }
        }
        mask[g.index(0, 0, 0)] = true;
        let (big, n) = g.largest_component(&mask);
        assert_eq!(n, 125);
        assert!(!big[g.index(0, 0, 0)]);
        let d = g.depth(&big);
        assert!(
            (d[g.index(4, 4, 4)] - 6.0).abs() < 0.01,
            "{}",
            d[g.index(4, 4, 4)]
        );
        assert!((d[g.index(2, 4, 4)] - 2.0).abs() < 0.01);
        assert_eq!(g.erode(&big).iter().filter(|&&b| b).count(), 27);
        // A ring in each slice encloses its middle.
        let mut ring = vec![false; g.len()];
        for z in 0..9 {
            for t in 2..7 {
                for (x, y) in [(t, 2), (t, 6), (2, t), (6, t)] {
                    ring[g.index(x, y, z)] = true;
                }
            }
        }
        let inside = g.enclosed_2d(&ring);
        assert!(inside[g.index(4, 4, 3)] && inside[g.index(2, 2, 3)] && !inside[g.index(1, 4, 3)]);
    }

    #[test]
    fn otsu_splits_two_classes() {
        let v: Vec<f32> = (0..100)
            .map(|i| {
                if i < 60 {
                    10.0 + (i % 5) as f32
                } else {
                    100.0 + (i % 7) as f32
                }
            })
            .collect();
        let t = otsu(&v);
        assert!(t > 14.0 && t < 100.0, "{t}");
        assert_eq!(percentile(&v, 0.0), 10.0);
    }
}
