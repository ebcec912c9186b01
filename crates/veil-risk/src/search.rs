//! The search for the least generalisation that meets a k-anonymity target within a record
//! suppression budget (full-domain generalisation over the lattice of hierarchy levels).
//!
//! A lattice node gives one level per quasi-identifier. "Meets the target" is monotone: a more
//! general node only merges classes, so it never has more records in classes below k (the
//! records that must be suppressed). The search uses that twice: a node above a known good
//! node is good, a node below a known bad node is bad, without evaluating them.
//!
//! Strategy (a heuristic in the spirit of OLA, El Emam et al. JAMIA 2009, sized for a few
//! hundred evaluations at ~10-50 ms each on a million rows): climb from the bottom node, each
//! step raising the one field whose next level leaves the fewest records to suppress, until the
//! target is met; then walk back down while any one-step-less-general node still meets it,
//! picking the lowest information loss. Two climbs are run (by suppression alone, and by
//! suppression plus loss) and the better minimal node is kept. The result is minimal (no
//! single field can be made more precise) but not guaranteed to be the global optimum.
//!
//! Information loss is Sweeney's precision metric ("Achieving k-anonymity privacy protection
//! using generalization and suppression", IJUFKS 10(5), 2002), extended to suppression:
//! loss = (1/(n·q)) Σ_records Σ_fields level/height, a suppressed record counting as fully
//! generalised (1 per field). 0 = data unchanged, 1 = nothing left. The discernibility metric
//! (Bayardo & Agrawal, ICDE 2005: Σ f_j² over kept classes + n per suppressed record) is
//! reported beside it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use serde::Serialize;
use veil_profile::generalize::{FieldRule, GeneralizeSpec, Hierarchy};

use crate::classes::{partition, KeyColumn, Partition};
use crate::fxhash::FxMap;
use crate::table::{Column, QiTable};

#[derive(Debug, Clone)]
pub struct SearchOptions {
    pub k: u32,
    /// Optional distinct ℓ-diversity target on the table's sensitive attribute: classes with
    /// fewer than ℓ distinct (non-missing) sensitive values are suppressed too. Monotone like k:
    /// a merged class has at least as many distinct values as each of its parts.
    pub l: Option<u32>,
    /// Largest share of records that may be suppressed (0..1).
    pub max_suppression: f64,
}

/// One level of one field: code -> generalised code, and the generalised texts.
#[derive(Debug, Clone)]
struct Level {
    map: Vec<u32>,
    values: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchResult {
    pub k: u32,
    /// The distinct ℓ-diversity target, if one was set.
    pub l: Option<u32>,
    pub max_suppression: f64,
    /// Chosen level name per quasi-identifier.
    pub levels: BTreeMap<String, String>,
    /// Records (distinct subject and class) in suppressed classes.
    pub suppressed_records: usize,
    /// Rows (distinct subject and original values: a study or series) withheld, and all rows;
    /// the suppression budget is a share of rows, which only falls as generalisation rises.
    pub suppressed_rows: usize,
    pub rows: usize,
    pub suppressed_share: f64,
    /// Whether the branch and bound finished, so the node has the least loss in the lattice.
    pub optimal: bool,
    pub suppressed_classes: usize,
    pub precision_loss: f64,
    pub discernibility: f64,
    pub evaluated_nodes: usize,
    pub lattice_nodes: f64,
    pub seconds: f64,
}

/// The searcher owns the precomputed level maps of a table.
pub struct Search<'a> {
    table: &'a QiTable,
    levels: Vec<Vec<Level>>,
    keep: Vec<Vec<String>>,
    tops: Vec<usize>,
    n_records: usize,
    opts: SearchOptions,
    memo: HashMap<Vec<usize>, usize>,
    good: Vec<Vec<usize>>,
    bad: Vec<Vec<usize>>,
    evaluated: usize,
    /// Told the number of generalisations evaluated so far and the lattice's size, as the
    /// search goes (a terminal shows it; the search can take a minute on large tables).
    progress: Option<Box<dyn FnMut(usize, f64) + 'a>>,
}

impl<'a> Search<'a> {
    pub fn new(table: &'a QiTable, opts: SearchOptions) -> Self {
        let n = table.n_rows();
        let subject = table.subject.as_deref();
        let mut levels = Vec::new();
        let mut keep = Vec::new();
        for c in &table.columns {
            // Values held by at least k records stay at the "common" level; rarer ones merge.
            let counts = value_record_counts(c, subject);
            let kept: Vec<String> = (1..c.cardinality())
                .filter(|&code| counts[code] >= opts.k as usize)
                .map(|code| c.values[code].clone())
                .collect();
            let kept_set = kept.iter().cloned().collect();
            let lv: Vec<Level> = (0..=c.hierarchy.top())
                .map(|l| {
                    let mut index: HashMap<String, u32> = HashMap::new();
                    let mut values = Vec::new();
                    let map = (0..c.cardinality())
                        .map(|code| {
                            let raw = if code == 0 {
                                None
                            } else {
                                Some(c.values[code].as_str())
                            };
                            let g = c.hierarchy.generalize(l, raw, &kept_set);
                            *index.entry(g.clone()).or_insert_with(|| {
                                values.push(g);
                                (values.len() - 1) as u32
                            })
                        })
                        .collect();
                    Level { map, values }
                })
                .collect();
            levels.push(lv);
            keep.push(kept);
        }
        let tops = table.columns.iter().map(|c| c.hierarchy.top()).collect();
        let cols: Vec<KeyColumn> = table
            .columns
            .iter()
            .map(|c| KeyColumn {
                codes: &c.codes,
                map: None,
                card: c.cardinality() as u32,
            })
            .collect();
        let _ = cols;
        let n_records = n;
        Search {
            table,
            levels,
            keep,
            tops,
            n_records,
            opts,
            memo: HashMap::new(),
            good: Vec::new(),
            bad: Vec::new(),
            evaluated: 0,
            progress: None,
        }
    }

    /// Reports progress to `f` (evaluated nodes, lattice size) every few evaluations.
    pub fn with_progress(mut self, f: impl FnMut(usize, f64) + 'a) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    fn partition_at(&self, node: &[usize]) -> Partition {
        let cols: Vec<KeyColumn> = self
            .table
            .columns
            .iter()
            .zip(node)
            .enumerate()
            .map(|(i, (c, &l))| {
                let lv = &self.levels[i][l];
                KeyColumn {
                    codes: &c.codes,
                    map: Some(&lv.map),
                    card: lv.values.len() as u32,
                }
            })
            .collect();
        partition(&cols, self.table.n_rows(), self.table.subject.as_deref())
    }

    /// Records in classes below k at `node` (evaluated, memoised).
    fn suppressed_at(&mut self, node: &[usize]) -> usize {
        if let Some(&s) = self.memo.get(node) {
            return s;
        }
        let p = self.partition_at(node);
        let failing = self.failing(&p);
        let s = rows_failing(&p, &failing);
        self.evaluated += 1;
        if let Some(report) = self.progress.as_mut() {
            let lattice: f64 = self.tops.iter().map(|&t| (t + 1) as f64).product();
            report(self.evaluated, lattice);
        }
        self.memo.insert(node.to_vec(), s);
        if self.within_budget(s) {
            // Keep only the minimal good nodes: everything above them is good.
            if !self.good.iter().any(|g| le(g, node)) {
                self.good.retain(|g| !le(node, g));
                self.good.push(node.to_vec());
            }
        } else if !self.bad.iter().any(|b| le(node, b)) {
            // And only the maximal bad nodes: everything below them is bad.
            self.bad.retain(|b| !le(b, node));
            self.bad.push(node.to_vec());
        }
        s
    }

    /// Classes that must be suppressed: below k, or (with an ℓ target) with fewer than ℓ
    /// distinct sensitive values.
    fn failing(&self, p: &Partition) -> Vec<bool> {
        let k = self.opts.k;
        let mut fail: Vec<bool> = p.sizes.iter().map(|&f| f < k).collect();
        if let (Some(l), Some(sens)) = (self.opts.l, &self.table.sensitive) {
            // Up to l distinct values per class in a flat array: O(rows · l), no hashing.
            let l = l.max(1) as usize;
            let mut seen = vec![0u32; p.sizes.len() * l];
            let mut count = vec![0u32; p.sizes.len()];
            for (&c, &v) in p.row_class.iter().zip(&sens.codes) {
                let c = c as usize;
                let n = count[c] as usize;
                if v != 0 && n < l && !seen[c * l..c * l + n].contains(&v) {
                    seen[c * l + n] = v;
                    count[c] += 1;
                }
            }
            for (f, d) in fail.iter_mut().zip(count) {
                *f |= (d as usize) < l;
            }
        }
        fail
    }

    fn within_budget(&self, suppressed: usize) -> bool {
        suppressed as f64 <= self.opts.max_suppression * self.n_records as f64 + 1e-9
    }

    /// Whether `node` meets the target, using monotonicity before evaluating.
    fn meets(&mut self, node: &[usize]) -> bool {
        if self.good.iter().any(|g| le(g, node)) {
            return true;
        }
        if self.bad.iter().any(|b| le(node, b)) {
            return false;
        }
        let s = self.suppressed_at(node);
        self.within_budget(s)
    }

    fn generalisation_share(&self, node: &[usize]) -> f64 {
        let q = node.len().max(1) as f64;
        node.iter()
            .zip(&self.tops)
            .map(|(&l, &t)| l as f64 / t.max(1) as f64)
            .sum::<f64>()
            / q
    }

    /// Sweeney's precision loss with suppressed records fully generalised.
    fn loss(&self, node: &[usize], suppressed: usize) -> f64 {
        let n = self.n_records.max(1) as f64;
        let s = suppressed as f64;
        (n - s) / n * self.generalisation_share(node) + s / n
    }

    fn climb(&mut self, with_loss: bool) -> Vec<usize> {
        let q = self.tops.len();
        let mut cur = vec![0usize; q];
        while !self.meets(&cur) {
            let mut best: Option<(f64, Vec<usize>)> = None;
            for d in 0..q {
                if cur[d] >= self.tops[d] {
                    continue;
                }
                let mut cand = cur.clone();
                cand[d] += 1;
                let s = self.suppressed_at(&cand);
                let score = if with_loss {
                    s as f64 / self.n_records.max(1) as f64 + self.loss(&cand, 0)
                } else {
                    s as f64 + self.loss(&cand, 0) * 1e-6
                };
                if best.as_ref().is_none_or(|(b, _)| score < *b) {
                    best = Some((score, cand));
                }
            }
            match best {
                Some((_, c)) => cur = c,
                None => break,
            }
        }
        cur
    }

    fn minimise(&mut self, mut cur: Vec<usize>) -> Vec<usize> {
        loop {
            let mut best: Option<(f64, Vec<usize>)> = None;
            for d in 0..cur.len() {
                if cur[d] == 0 {
                    continue;
                }
                let mut cand = cur.clone();
                cand[d] -= 1;
                if self.meets(&cand) {
                    let s = self.suppressed_at(&cand);
                    let l = self.loss(&cand, s);
                    if best.as_ref().is_none_or(|(b, _)| l < *b) {
                        best = Some((l, cand));
                    }
                }
            }
            match best {
                Some((_, c)) => cur = c,
                None => return cur,
            }
        }
    }

    /// Exact search seeded with the greedy result: nodes in order of their generalisation
    /// share g (a lower bound of their loss, since loss = g + (s/n)(1 - g)); stops at the first
    /// node whose g cannot beat the best loss. Nodes below a node that failed the target are
    /// skipped unevaluated. Gives up (returns false) past 45 s or on lattices over 5M nodes.
    fn branch_and_bound(
        &mut self,
        best_loss: &mut f64,
        best: &mut Vec<usize>,
        start: Instant,
    ) -> bool {
        let size: f64 = self.tops.iter().map(|&t| (t + 1) as f64).product();
        if size > 5e6 {
            return false;
        }
        // Nodes as mixed-radix indices (8 bytes per node with their share), decoded on use.
        let radix: Vec<u32> = self.tops.iter().map(|&t| t as u32 + 1).collect();
        let decode = |mut i: u32| -> Vec<usize> {
            radix
                .iter()
                .map(|&r| {
                    let l = (i % r) as usize;
                    i /= r;
                    l
                })
                .collect()
        };
        let mut nodes: Vec<(f32, u32)> = (0..size as u32)
            .map(|i| (self.generalisation_share(&decode(i)) as f32, i))
            .collect();
        nodes.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (_, i) in nodes {
            let node = decode(i);
            let g = self.generalisation_share(&node);
            if g >= *best_loss - 1e-9 {
                return true;
            }
            if start.elapsed().as_secs_f64() > 45.0 {
                return false;
            }
            if self.bad.iter().any(|b| le(&node, b)) {
                continue;
            }
            let s = self.suppressed_at(&node);
            if self.within_budget(s) {
                let l = self.loss(&node, s);
                if l < *best_loss - 1e-12 {
                    *best_loss = l;
                    *best = node;
                }
            }
        }
        true
    }

    /// Runs the search. Errors when even the most general node needs more suppression than
    /// allowed.
    pub fn run(&mut self) -> Result<Found, String> {
        let start = Instant::now();
        let top = self.tops.clone();
        if !self.meets(&top) {
            let s = self.suppressed_at(&top);
            return Err(format!(
                "no generalisation reaches k={}{} within {:.1}% suppression: even the most general \
                 levels leave {} of {} rows ({:.1}%) in classes below the target; raise --max-suppression, \
                 lower the target or use fewer quasi-identifiers",
                self.opts.k,
                self.opts.l.map(|l| format!(", l={l}")).unwrap_or_default(),
                self.opts.max_suppression * 100.0,
                s,
                self.n_records,
                100.0 * s as f64 / self.n_records.max(1) as f64
            ));
        }
        let mut candidates = Vec::new();
        for with_loss in [false, true] {
            let c = self.climb(with_loss);
            let m = self.minimise(c);
            let s = self.suppressed_at(&m);
            candidates.push((self.loss(&m, s), m));
        }
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let (mut best_loss, mut node) = candidates.swap_remove(0);
        let optimal = self.branch_and_bound(&mut best_loss, &mut node, start);
        let p = self.partition_at(&node);
        let k = self.opts.k;
        let failing = self.failing(&p);
        let suppressed_rows = rows_failing(&p, &failing);
        let suppressed: usize = p
            .sizes
            .iter()
            .zip(&failing)
            .filter(|(_, f)| **f)
            .map(|(&s, _)| s as usize)
            .sum();
        let discernibility = p
            .sizes
            .iter()
            .zip(&failing)
            .map(|(&f, &fails)| {
                if fails {
                    f as f64 * self.n_records as f64
                } else {
                    (f as f64).powi(2)
                }
            })
            .sum();
        let lattice_nodes = self.tops.iter().map(|&t| (t + 1) as f64).product();
        let result = SearchResult {
            k,
            l: self.opts.l,
            max_suppression: self.opts.max_suppression,
            levels: self
                .table
                .columns
                .iter()
                .zip(&node)
                .map(|(c, &l)| (c.name.clone(), c.hierarchy.levels()[l].clone()))
                .collect(),
            suppressed_records: suppressed,
            suppressed_rows,
            rows: self.n_records,
            suppressed_share: suppressed_rows as f64 / self.n_records.max(1) as f64,
            suppressed_classes: failing.iter().filter(|f| **f).count(),
            precision_loss: self.loss(&node, suppressed_rows),
            optimal,
            discernibility,
            evaluated_nodes: self.evaluated,
            lattice_nodes,
            seconds: start.elapsed().as_secs_f64(),
        };
        let (spec, released) = self.build_outputs(&node, &p, &failing);
        Ok(Found {
            node,
            result,
            spec,
            released,
        })
    }

    /// The policy fragment and the released table (generalised, suppressed records removed).
    fn build_outputs(
        &self,
        node: &[usize],
        p: &Partition,
        failing: &[bool],
    ) -> (GeneralizeSpec, QiTable) {
        let k = self.opts.k;
        let cols = &self.table.columns;
        // Canonical tuple of each suppressed class, from any row of it.
        let mut tuples: BTreeSet<Vec<String>> = BTreeSet::new();
        let mut keep_row = vec![true; self.table.n_rows()];
        for (i, &c) in p.row_class.iter().enumerate() {
            if failing[c as usize] {
                keep_row[i] = false;
                tuples.insert(
                    cols.iter()
                        .enumerate()
                        .map(|(j, col)| {
                            let lv = &self.levels[j][node[j]];
                            lv.values[lv.map[col.codes[i] as usize] as usize].clone()
                        })
                        .collect(),
                );
            }
        }
        let mut field = BTreeMap::new();
        for (j, c) in cols.iter().enumerate() {
            let kind = (Hierarchy::for_field(&c.name) != c.hierarchy)
                .then(|| c.hierarchy.kind_name().to_string());
            let keep = if c.hierarchy.uses_keep(node[j]) {
                let mut v = self.keep[j].clone();
                v.sort();
                v
            } else {
                Vec::new()
            };
            field.insert(
                c.name.clone(),
                FieldRule {
                    level: c.hierarchy.levels()[node[j]].clone(),
                    kind,
                    keep,
                },
            );
        }
        let spec = GeneralizeSpec::new(
            cols.iter().map(|c| c.name.clone()).collect(),
            field,
            tuples.into_iter().collect(),
        );
        let pick = |codes: &[u32]| -> Vec<u32> {
            codes
                .iter()
                .zip(&keep_row)
                .filter(|(_, k)| **k)
                .map(|(c, _)| *c)
                .collect()
        };
        let released = QiTable {
            source: format!("{} (generalised, k={k})", self.table.source),
            columns: cols
                .iter()
                .enumerate()
                .map(|(j, c)| {
                    let lv = &self.levels[j][node[j]];
                    // Re-code so that code 0 stays "missing".
                    let mut values = vec![String::new()];
                    let mut recode = vec![0u32; lv.values.len()];
                    for (g, v) in lv.values.iter().enumerate() {
                        if !v.is_empty() {
                            values.push(v.clone());
                            recode[g] = (values.len() - 1) as u32;
                        }
                    }
                    let codes: Vec<u32> = c
                        .codes
                        .iter()
                        .map(|&x| recode[lv.map[x as usize] as usize])
                        .collect();
                    Column {
                        name: c.name.clone(),
                        hierarchy: c.hierarchy.clone(),
                        codes: pick(&codes),
                        values,
                    }
                })
                .collect(),
            subject: self.table.subject.as_deref().map(pick),
            subject_field: self.table.subject_field.clone(),
            sensitive: self.table.sensitive.as_ref().map(|s| Column {
                name: s.name.clone(),
                hierarchy: s.hierarchy.clone(),
                codes: pick(&s.codes),
                values: s.values.clone(),
            }),
            input_rows: keep_row.iter().filter(|k| **k).count(),
            rejected: Vec::new(),
        };
        (spec, released)
    }
}

/// What the search found.
pub struct Found {
    pub node: Vec<usize>,
    pub result: SearchResult,
    pub spec: GeneralizeSpec,
    /// The data as it will be released: generalised, suppressed records removed.
    pub released: QiTable,
}

fn rows_failing(p: &Partition, failing: &[bool]) -> usize {
    p.row_class.iter().filter(|&&c| failing[c as usize]).count()
}

fn le(a: &[usize], b: &[usize]) -> bool {
    a.iter().zip(b).all(|(x, y)| x <= y)
}

/// Records holding each code (distinct subjects when a subject is known).
fn value_record_counts(c: &Column, subject: Option<&[u32]>) -> Vec<usize> {
    let mut counts = vec![0usize; c.cardinality()];
    match subject {
        None => {
            for &code in &c.codes {
                counts[code as usize] += 1;
            }
        }
        Some(s) => {
            let mut seen: FxMap<u64, ()> = FxMap::default();
            for (&code, &subj) in c.codes.iter().zip(s) {
                if seen
                    .insert(((code as u64) << 32) | subj as u64, ())
                    .is_none()
                {
                    counts[code as usize] += 1;
                }
            }
        }
    }
    counts
}
