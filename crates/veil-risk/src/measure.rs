//! Risk measures on equivalence classes.
//!
//! Definitions follow K. El Emam and F. K. Dankar, "Protecting privacy using k-anonymity",
//! JAMIA 15(5):627-637, 2008, and K. El Emam, "Guide to the De-Identification of Personal Health
//! Information", CRC Press, 2013 (ch. "Measuring re-identification risk"); marketer risk from
//! F. K. Dankar and K. El Emam, "A method for evaluating marketer re-identification risk",
//! PAIS 2010. With n records in classes j of sample size f_j and population size F_j:
//!
//! * prosecutor (the attacker knows the target is in the data): a record's risk is 1/f_j;
//!   maximum = 1/min f_j; average = (1/n) Σ_records 1/f_j = |J|/n; "records at risk" =
//!   share of records whose 1/f_j exceeds a threshold τ.
//! * journalist (the attacker does not know whether the target is in the data and matches
//!   against a population register): 1/F_j in place of 1/f_j; maximum = 1/min F_j,
//!   average = |J| / Σ_j F_j.
//! * marketer (the attacker tries to re-identify as many records as possible):
//!   (1/n) Σ_j f_j / F_j.
//!
//! Without a population size the data set is taken as the population (F_j = f_j): journalist
//! equals prosecutor and marketer is |J|/n. With `--population N`, F_j is estimated as f_j / π
//! with sampling fraction π = n/N (the moment estimate under simple random sampling; it is the
//! expected population class size, so it under-states the risk of sample uniques that are
//! population uniques). Population uniqueness is estimated separately with the Pitman model
//! (below).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::classes::{partition, KeyColumn, Partition};
use crate::table::QiTable;

/// Options of a measurement.
#[derive(Debug, Clone)]
pub struct MeasureOptions {
    /// Population size for journalist/marketer risk and population uniqueness.
    pub population: Option<u64>,
    /// Records in classes smaller than this are "at risk" in the rare-value analysis.
    pub k: u32,
    /// How many rare values to list.
    pub top_values: usize,
}

impl Default for MeasureOptions {
    fn default() -> Self {
        MeasureOptions {
            population: None,
            k: 5,
            top_values: 25,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RiskReport {
    pub source: String,
    pub quasi: Vec<String>,
    pub subject_field: Option<String>,
    /// Rows read (files, series, table rows).
    pub input_rows: usize,
    /// Inputs that could not be read.
    pub rejected: usize,
    /// Records: distinct (subject, class) pairs, or rows when there is no subject.
    pub records: usize,
    pub classes: usize,
    /// k-anonymity: the smallest class size.
    pub k: u32,
    /// Records alone in their class.
    pub unique_records: usize,
    pub unique_share: f64,
    pub class_sizes: Vec<SizeBucket>,
    pub prosecutor: RiskTriple,
    pub journalist: RiskTriple,
    pub marketer: f64,
    /// Records whose prosecutor risk exceeds each threshold.
    pub records_at_risk: Vec<AtRisk>,
    /// The `--population` given, if any.
    pub population_size: Option<u64>,
    pub population: Option<PopulationEstimate>,
    pub l_diversity: Option<LDiversity>,
    pub field_importance: Vec<FieldImportance>,
    pub rare_values: Vec<RareValue>,
    /// Records in classes below `k_threshold` (used for rare values).
    pub k_threshold: u32,
    pub records_below_k_threshold: usize,
    /// Prosecutor risk per record, sorted from highest, sampled to at most 200 points
    /// (share of records, risk) for the "risk by record" plot.
    pub risk_curve: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SizeBucket {
    pub label: String,
    pub min: u32,
    pub max: u32,
    pub classes: usize,
    pub records: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RiskTriple {
    pub max: f64,
    pub average: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AtRisk {
    pub threshold: f64,
    pub records: usize,
    pub share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PopulationEstimate {
    pub population: u64,
    pub sampling_fraction: f64,
    pub estimator: String,
    pub theta: f64,
    pub alpha: f64,
    /// Expected number of population uniques on the quasi-identifiers.
    pub population_uniques: f64,
    pub population_unique_share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LDiversity {
    pub field: String,
    /// Distinct ℓ-diversity: smallest number of distinct sensitive values in a class.
    pub distinct_l: usize,
    /// Entropy ℓ-diversity: smallest exp(entropy) of the sensitive values in a class.
    pub entropy_l: f64,
    /// Records in classes where every record has the same sensitive value.
    pub records_in_homogeneous_classes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldImportance {
    pub field: String,
    pub distinct_values: usize,
    pub missing_share: f64,
    /// Unique records if this field were left out: the drop from `unique_records` is what
    /// this field contributes.
    pub unique_records_without: usize,
    /// Records in classes below the k threshold that hold a value of this field that fewer
    /// than k records hold: how much this field's rare values drive the risk.
    pub at_risk_with_rare_value: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RareValue {
    pub field: String,
    pub value: String,
    /// Records holding the value.
    pub records: usize,
    /// Of those, records in classes below the k threshold.
    pub records_at_risk: usize,
}

fn key_columns(t: &QiTable) -> Vec<KeyColumn<'_>> {
    t.columns
        .iter()
        .map(|c| KeyColumn {
            codes: &c.codes,
            map: None,
            card: c.cardinality() as u32,
        })
        .collect()
}

/// Measures the risk of `t` on all its quasi-identifiers.
pub fn measure(t: &QiTable, opts: &MeasureOptions) -> RiskReport {
    let n = t.n_rows();
    let subject = t.subject.as_deref();
    let cols = key_columns(t);
    let p = partition(&cols, n, subject);
    let mut r = summarize(&p, opts.population);
    r.source = t.source.clone();
    r.quasi = t.quasi_names();
    r.subject_field = t.subject_field.clone();
    r.input_rows = t.input_rows;
    r.rejected = t.rejected.len();
    r.k_threshold = opts.k;

    // Which fields matter: uniques with each field left out.
    r.field_importance = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let rest: Vec<KeyColumn> = cols
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, k)| *k)
                .collect();
            let q = partition(&rest, n, subject);
            let missing = p
                .row_is_record
                .iter()
                .zip(&c.codes)
                .filter(|(rec, code)| **rec && **code == 0)
                .count();
            FieldImportance {
                field: c.name.clone(),
                distinct_values: c.cardinality() - 1,
                missing_share: ratio(missing, p.n_records),
                unique_records_without: q.sizes.iter().filter(|&&s| s == 1).count(),
                at_risk_with_rare_value: 0,
            }
        })
        .collect();

    // Rare values driving the risk: values held by fewer than k records, ranked by how many
    // at-risk records (classes below k) hold them.
    let mut rare = Vec::new();
    let mut below = 0usize;
    for (i, rec) in p.row_is_record.iter().enumerate() {
        if *rec && p.sizes[p.row_class[i] as usize] < opts.k {
            below += 1;
        }
    }
    r.records_below_k_threshold = below;
    for (ci, c) in t.columns.iter().enumerate() {
        let mut total = vec![0usize; c.cardinality()];
        let mut at_risk = vec![0usize; c.cardinality()];
        for (i, rec) in p.row_is_record.iter().enumerate() {
            if !*rec {
                continue;
            }
            let code = c.codes[i] as usize;
            total[code] += 1;
            if p.sizes[p.row_class[i] as usize] < opts.k {
                at_risk[code] += 1;
            }
        }
        for code in 1..c.cardinality() {
            if total[code] < opts.k as usize && at_risk[code] > 0 {
                r.field_importance[ci].at_risk_with_rare_value += at_risk[code];
                rare.push(RareValue {
                    field: c.name.clone(),
                    value: c.values[code].clone(),
                    records: total[code],
                    records_at_risk: at_risk[code],
                });
            }
        }
    }
    rare.sort_by(|a, b| {
        b.records_at_risk
            .cmp(&a.records_at_risk)
            .then(a.records.cmp(&b.records))
            .then(a.field.cmp(&b.field))
            .then(a.value.cmp(&b.value))
    });
    rare.truncate(opts.top_values);
    r.rare_values = rare;

    if let Some(s) = &t.sensitive {
        r.l_diversity = Some(l_diversity(&p, &s.codes, &s.name));
    }
    r
}

/// Class-level measures of a partition.
pub fn summarize(p: &Partition, population: Option<u64>) -> RiskReport {
    let n = p.n_records;
    let classes = p.sizes.iter().filter(|&&s| s > 0).count();
    let k = p
        .sizes
        .iter()
        .copied()
        .filter(|&s| s > 0)
        .min()
        .unwrap_or(0);
    let unique = p.sizes.iter().filter(|&&s| s == 1).count();

    let bounds: [(u32, u32, &str); 10] = [
        (1, 1, "1"),
        (2, 2, "2"),
        (3, 3, "3"),
        (4, 4, "4"),
        (5, 10, "5-10"),
        (11, 20, "11-20"),
        (21, 50, "21-50"),
        (51, 100, "51-100"),
        (101, 1000, "101-1000"),
        (1001, u32::MAX, ">1000"),
    ];
    let mut class_sizes: Vec<SizeBucket> = bounds
        .iter()
        .map(|(lo, hi, l)| SizeBucket {
            label: l.to_string(),
            min: *lo,
            max: *hi,
            classes: 0,
            records: 0,
        })
        .collect();
    for &s in &p.sizes {
        if s == 0 {
            continue;
        }
        if let Some(b) = class_sizes.iter_mut().find(|b| s >= b.min && s <= b.max) {
            b.classes += 1;
            b.records += s as usize;
        }
    }

    let prosecutor = RiskTriple {
        max: if k > 0 { 1.0 / k as f64 } else { 0.0 },
        average: ratio(classes, n),
    };
    let (journalist, marketer) = match population {
        Some(big_n) if n > 0 && big_n as usize >= n => {
            let pi = n as f64 / big_n as f64;
            // F_j estimated as f_j / π, at least f_j.
            let f_hat = |f: u32| (f as f64 / pi).max(f as f64);
            let sum_f: f64 = p.sizes.iter().filter(|&&s| s > 0).map(|&s| f_hat(s)).sum();
            let marketer: f64 = p
                .sizes
                .iter()
                .filter(|&&s| s > 0)
                .map(|&s| s as f64 / f_hat(s))
                .sum::<f64>()
                / n as f64;
            (
                RiskTriple {
                    max: if k > 0 { 1.0 / f_hat(k) } else { 0.0 },
                    average: classes as f64 / sum_f,
                },
                marketer,
            )
        }
        _ => (prosecutor.clone(), ratio(classes, n)),
    };

    let records_at_risk = [0.5, 0.33, 0.2, 0.09, 0.05]
        .iter()
        .map(|&tau| {
            let recs: usize = p
                .sizes
                .iter()
                .filter(|&&s| s > 0 && 1.0 / s as f64 > tau)
                .map(|&s| s as usize)
                .sum();
            AtRisk {
                threshold: tau,
                records: recs,
                share: ratio(recs, n),
            }
        })
        .collect();

    // Risk by record, highest first: classes sorted by size ascending, each contributing
    // f_j records at risk 1/f_j; sampled to at most 200 points.
    let mut sizes: Vec<u32> = p.sizes.iter().copied().filter(|&s| s > 0).collect();
    sizes.sort_unstable();
    let mut curve = Vec::new();
    let step = (n / 200).max(1);
    let mut seen = 0usize;
    let mut next_mark = 0usize;
    for s in sizes {
        let end = seen + s as usize;
        while next_mark < end {
            curve.push((next_mark as f64 / n as f64, 1.0 / s as f64));
            next_mark += step;
        }
        seen = end;
    }
    if n > 0 {
        let last = curve.last().map(|c| c.1).unwrap_or(0.0);
        curve.push((1.0, last));
    }

    let population_est = population.and_then(|big_n| {
        let mut ff: BTreeMap<u32, u64> = BTreeMap::new();
        for &s in p.sizes.iter().filter(|&&s| s > 0) {
            *ff.entry(s).or_default() += 1;
        }
        pitman_uniques(&ff, n as u64, big_n).map(|(theta, alpha, u)| PopulationEstimate {
            population: big_n,
            sampling_fraction: n as f64 / big_n as f64,
            estimator: "Pitman (Hoshino 2001), maximum likelihood".into(),
            theta,
            alpha,
            population_uniques: u,
            population_unique_share: u / big_n as f64,
        })
    });

    RiskReport {
        source: String::new(),
        quasi: Vec::new(),
        subject_field: None,
        input_rows: 0,
        rejected: 0,
        records: n,
        classes,
        k,
        unique_records: unique,
        unique_share: ratio(unique, n),
        class_sizes,
        prosecutor,
        journalist,
        marketer,
        records_at_risk,
        population_size: population,
        population: population_est,
        l_diversity: None,
        field_importance: Vec::new(),
        rare_values: Vec::new(),
        k_threshold: 0,
        records_below_k_threshold: 0,
        risk_curve: curve,
    }
}

/// Distinct and entropy ℓ-diversity (Machanavajjhala et al., "ℓ-Diversity: Privacy beyond
/// k-anonymity", ACM TKDD 2007) of a sensitive attribute over the classes of `p`. Missing
/// sensitive values are not counted as a value; classes with none are left out.
pub fn l_diversity(p: &Partition, sensitive: &[u32], name: &str) -> LDiversity {
    let mut per_class: Vec<BTreeMap<u32, usize>> = vec![BTreeMap::new(); p.sizes.len()];
    for (i, rec) in p.row_is_record.iter().enumerate() {
        if *rec && sensitive[i] != 0 {
            *per_class[p.row_class[i] as usize]
                .entry(sensitive[i])
                .or_default() += 1;
        }
    }
    let mut distinct_l = usize::MAX;
    let mut entropy_l = f64::INFINITY;
    let mut homogeneous = 0usize;
    for (c, m) in per_class.iter().enumerate() {
        if m.is_empty() {
            continue;
        }
        distinct_l = distinct_l.min(m.len());
        let total: usize = m.values().sum();
        let h: f64 = m
            .values()
            .map(|&x| {
                let q = x as f64 / total as f64;
                -q * q.ln()
            })
            .sum();
        entropy_l = entropy_l.min(h.exp());
        if m.len() == 1 {
            homogeneous += p.sizes[c] as usize;
        }
    }
    LDiversity {
        field: name.to_string(),
        distinct_l: if distinct_l == usize::MAX {
            0
        } else {
            distinct_l
        },
        entropy_l: if entropy_l.is_finite() {
            entropy_l
        } else {
            0.0
        },
        records_in_homogeneous_classes: homogeneous,
    }
}

/// Expected number of population uniques under the Pitman sampling model, as proposed for
/// disclosure risk by N. Hoshino, "Applying Pitman's sampling formula to microdata disclosure
/// risk assessment", J. Official Statistics 17(4), 2001. Chosen because it needs only the
/// sample's frequencies of class sizes (no count of possible combinations, unlike the
/// Bethlehem/Poisson-gamma model) and because F. K. Dankar, K. El Emam et al. ("Estimating the
/// re-identification risk of clinical data sets", BMC Med Inform Decis Mak 12:66, 2012) found it
/// the most accurate of the estimators they compared at small sampling fractions, which is the
/// case for an imaging cohort against a regional or national population.
///
/// θ, α maximise the Pitman log-likelihood of the sample's partition
///   L = Σ_{i=1}^{K-1} ln(θ + iα) − Σ_{i=1}^{n-1} ln(θ + i) + Σ_j Σ_{i=1}^{f_j − 1} ln(i − α)
/// (K classes, n records), found by Newton's method with step halving inside θ > −α,
/// 0 < α < 1; then E[population uniques] ≈ Γ(θ+1) / Γ(θ+α) · N^α.
/// Returns (θ, α, uniques); `None` when the likelihood has no interior maximum (e.g. no
/// sample uniques, where the estimate degenerates to α = 0).
pub fn pitman_uniques(
    freq_of_freq: &BTreeMap<u32, u64>,
    n: u64,
    big_n: u64,
) -> Option<(f64, f64, f64)> {
    let k: u64 = freq_of_freq.values().sum();
    let c1 = *freq_of_freq.get(&1).unwrap_or(&0) as f64;
    if n < 2 || k < 2 || c1 == 0.0 {
        return None;
    }
    // For Σ_j Σ_{i=1}^{f_j−1} g(i): g(i) is summed over every class with f_j > i, i.e.
    // weight(i) = number of classes of size > i.
    let max_f = *freq_of_freq.keys().last()? as usize;
    let mut weight = vec![0f64; max_f + 1];
    {
        let mut above = k as f64;
        for (i, w) in weight.iter_mut().enumerate().skip(1) {
            above -= *freq_of_freq.get(&(i as u32)).unwrap_or(&0) as f64;
            *w = above; // classes with size > i
        }
    }
    let loglik = |theta: f64, alpha: f64| -> f64 {
        let mut l = 0.0;
        for i in 1..k {
            l += (theta + i as f64 * alpha).ln();
        }
        for i in 1..n {
            l -= (theta + i as f64).ln();
        }
        for (i, w) in weight.iter().enumerate().skip(1) {
            if *w > 0.0 {
                l += w * (i as f64 - alpha).ln();
            }
        }
        l
    };
    let grad_hess = |theta: f64, alpha: f64| {
        let (mut gt, mut ga, mut htt, mut hta, mut haa) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in 1..k {
            let i = i as f64;
            let d = theta + i * alpha;
            gt += 1.0 / d;
            ga += i / d;
            htt -= 1.0 / (d * d);
            hta -= i / (d * d);
            haa -= i * i / (d * d);
        }
        for i in 1..n {
            let d = theta + i as f64;
            gt -= 1.0 / d;
            htt += 1.0 / (d * d);
        }
        for (i, w) in weight.iter().enumerate().skip(1) {
            if *w > 0.0 {
                let d = i as f64 - alpha;
                ga -= w / d;
                haa -= w / (d * d);
            }
        }
        (gt, ga, htt, hta, haa)
    };
    let valid = |t: f64, a: f64| a > 0.0 && a < 1.0 && t > -a && t.is_finite();
    // Start: α from the share of uniques among classes, θ from the class count.
    let mut alpha: f64 = (c1 / k as f64).clamp(0.05, 0.95);
    let mut theta: f64 = (k as f64 * (1.0 - alpha)).max(1.0);
    let mut l = loglik(theta, alpha);
    for _ in 0..200 {
        let (gt, ga, htt, hta, haa) = grad_hess(theta, alpha);
        let det = htt * haa - hta * hta;
        // Newton direction (H negative definite at a maximum); fall back to gradient ascent.
        let (mut dt, mut da) = if det > 0.0 && htt < 0.0 {
            (-(haa * gt - hta * ga) / det, -(-hta * gt + htt * ga) / det)
        } else {
            (gt * theta.abs().max(1.0) * 1e-3, ga * 1e-3)
        };
        let mut improved = false;
        for _ in 0..60 {
            let (t2, a2) = (theta + dt, alpha + da);
            if valid(t2, a2) {
                let l2 = loglik(t2, a2);
                if l2 >= l {
                    theta = t2;
                    alpha = a2;
                    improved = (l2 - l).abs() > 1e-10 * l.abs().max(1.0);
                    l = l2;
                    break;
                }
            }
            dt *= 0.5;
            da *= 0.5;
        }
        if !improved {
            break;
        }
    }
    if !valid(theta, alpha) || alpha < 1e-6 {
        return None;
    }
    let u = (ln_gamma(theta + 1.0) - ln_gamma(theta + alpha)).exp() * (big_n as f64).powf(alpha);
    Some((theta, alpha, u.min(big_n as f64)))
}

/// ln Γ(x) for x > 0 (Lanczos approximation, g = 7, 9 terms; relative error < 1e-13).
pub fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}
