//! Small tables whose classes, k, uniques and risks were computed by hand (in the comments).

use veil_profile::generalize::Hierarchy;
use veil_risk::table::{ColumnBuilder, QiTable};
use veil_risk::{measure, MeasureOptions, Search, SearchOptions};

fn table(
    cols: &[(&str, &[&str])],
    subject: Option<&[&str]>,
    sensitive: Option<&[&str]>,
) -> QiTable {
    let build = |name: &str, vals: &[&str]| {
        let mut b = ColumnBuilder::new(name, Hierarchy::for_field(name));
        for v in vals {
            b.push(Some(v));
        }
        b.finish()
    };
    let n = cols[0].1.len();
    QiTable {
        source: "hand".into(),
        columns: cols.iter().map(|(n, v)| build(n, v)).collect(),
        subject: subject.map(|s| build("subject", s).codes),
        subject_field: subject.map(|_| "PatientID".to_string()),
        sensitive: sensitive.map(|s| build("Diagnosis", s)),
        input_rows: n,
        rejected: Vec::new(),
    }
}

const AGE: &[&str] = &["30", "30", "30", "40", "40", "40", "50"];
const SEX: &[&str] = &["M", "M", "F", "F", "F", "F", "M"];
const DX: &[&str] = &["A", "B", "A", "A", "A", "C", "B"];

// Rows (age, sex): r1 30M, r2 30M, r3 30F, r4 40F, r5 40F, r6 40F, r7 50M.
// Classes: 30M {r1,r2} f=2; 30F {r3} f=1; 40F {r4,r5,r6} f=3; 50M {r7} f=1.
// n = 7, |J| = 4, k = min f = 1, uniques = r3, r7 = 2 (2/7).
// Prosecutor: max = 1/1 = 1; average = Σ_records 1/f_j / n = (2·½ + 1 + 3·⅓ + 1)/7 = 4/7 = |J|/n.
// Records with risk > 0.5 (f = 1): 2; > 0.33 (f ≤ 3): 7.
// No population: journalist = prosecutor, marketer = |J|/n = 4/7.
// Population N = 70: π = 0.1, F̂ = f/π = {20, 10, 30, 10}; journalist max = 1/10,
// journalist average = |J|/ΣF̂ = 4/70; marketer = (1/n)Σ f_j/F̂_j = (4 · 0.1)/7 = 0.4/7.
// Without age: M {r1,r2,r7} 3, F {r3..r6} 4 → 0 uniques. Without sex: 30 {3}, 40 {3}, 50 {1} → 1.
// Diagnosis per class: 30M {A,B}, 30F {A}, 40F {A,A,C}, 50M {B}: distinct ℓ = 1, entropy ℓ = 1,
// records in single-valued classes = 30F + 50M = 2.
#[test]
fn measures_match_hand_computation() {
    let t = table(&[("PatientAge", AGE), ("PatientSex", SEX)], None, Some(DX));
    let r = measure(&t, &MeasureOptions::default());
    assert_eq!(r.records, 7);
    assert_eq!(r.classes, 4);
    assert_eq!(r.k, 1);
    assert_eq!(r.unique_records, 2);
    assert!((r.unique_share - 2.0 / 7.0).abs() < 1e-12);
    assert_eq!(r.prosecutor.max, 1.0);
    assert!((r.prosecutor.average - 4.0 / 7.0).abs() < 1e-12);
    assert_eq!(r.journalist.max, 1.0);
    assert!((r.marketer - 4.0 / 7.0).abs() < 1e-12);
    let at = |tau: f64| {
        r.records_at_risk
            .iter()
            .find(|a| a.threshold == tau)
            .unwrap()
            .records
    };
    assert_eq!(at(0.5), 2);
    assert_eq!(at(0.33), 7);
    let sizes: Vec<(String, usize, usize)> = r
        .class_sizes
        .iter()
        .filter(|b| b.classes > 0)
        .map(|b| (b.label.clone(), b.classes, b.records))
        .collect();
    assert_eq!(
        sizes,
        vec![("1".into(), 2, 2), ("2".into(), 1, 2), ("3".into(), 1, 3)]
    );
    let imp: Vec<usize> = r
        .field_importance
        .iter()
        .map(|f| f.unique_records_without)
        .collect();
    assert_eq!(imp, vec![0, 1]);
    let l = r.l_diversity.as_ref().unwrap();
    assert_eq!(l.distinct_l, 1);
    assert!((l.entropy_l - 1.0).abs() < 1e-12);
    assert_eq!(l.records_in_homogeneous_classes, 2);

    let p = measure(
        &t,
        &MeasureOptions {
            population: Some(70),
            ..Default::default()
        },
    );
    assert!((p.journalist.max - 0.1).abs() < 1e-12);
    assert!((p.journalist.average - 4.0 / 70.0).abs() < 1e-12);
    assert!((p.marketer - 0.4 / 7.0).abs() < 1e-12);
    // Prosecutor risk does not depend on the population.
    assert!((p.prosecutor.average - 4.0 / 7.0).abs() < 1e-12);
}

// Same rows, but r1 and r2 are one person (s1) with two series: class 30M holds one person,
// so it is a unique: records = 6, uniques = 30M, 30F, 50M = 3, |J| = 4, average = 4/6.
#[test]
fn class_sizes_count_people_not_rows() {
    let subj = ["s1", "s1", "s3", "s4", "s5", "s6", "s7"];
    let t = table(
        &[("PatientAge", AGE), ("PatientSex", SEX)],
        Some(&subj),
        None,
    );
    let r = measure(&t, &MeasureOptions::default());
    assert_eq!(r.records, 6);
    assert_eq!(r.unique_records, 3);
    assert!((r.prosecutor.average - 4.0 / 6.0).abs() < 1e-12);
}

// Ages 31 33 42 44 47, sexes F F M M M; Age levels exact/5y/10y/20y/suppress (height 4),
// Sex exact/common/suppress (height 2); loss = g + (s/n)(1−g), g = mean of level/height.
// k = 3, at most 40% suppressed (2 of 5 rows):
//   (5y, exact): 30-34F 2, 40-44M 2, 45-49M 1 → 5 rows below k: too many.
//   (10y, exact): 30-39F 2, 40-49M 3 → 2 rows suppressed (40%): g = (2/4 + 0)/2 = 0.25,
//      loss = 0.25 + 0.4 · 0.75 = 0.55.
//   (suppress, exact): F 2, M 3 → 2 suppressed, g = 0.5, loss = 0.7. (20y, exact): same classes
//      as 10y, g = 0.375, loss = 0.625. Any node with sex above exact has g ≥ 0.25 + ... ≥ 0.5
//      once age is at 10y, and below 10y age stays too fine. So (10y, exact) with the tuple
//      ("30-39", "F") suppressed is the optimum, loss 0.55.
#[test]
fn search_finds_hand_computed_optimum() {
    let ages = ["31", "33", "42", "44", "47"];
    let sexes = ["F", "F", "M", "M", "M"];
    let t = table(&[("PatientAge", &ages), ("PatientSex", &sexes)], None, None);
    let mut s = Search::new(
        &t,
        SearchOptions {
            k: 3,
            l: None,
            max_suppression: 0.4,
        },
    );
    let f = s.run().unwrap();
    assert_eq!(f.result.levels["PatientAge"], "10y");
    assert_eq!(f.result.levels["PatientSex"], "exact");
    assert_eq!(f.result.suppressed_rows, 2);
    assert!((f.result.precision_loss - 0.55).abs() < 1e-12);
    assert!(f.result.optimal);
    assert_eq!(
        f.spec.suppress,
        vec![vec!["30-39".to_string(), "F".to_string()]]
    );
    let after = measure(&f.released, &MeasureOptions::default());
    assert_eq!(after.records, 3);
    assert_eq!(after.k, 3);

    // k = 2 without suppression: (10y, exact) gives 2 and 3 → loss 0.25; (5y, exact) leaves
    // 47M alone; nothing with g < 0.25 works.
    let mut s = Search::new(
        &t,
        SearchOptions {
            k: 2,
            l: None,
            max_suppression: 0.0,
        },
    );
    let f = s.run().unwrap();
    assert_eq!(f.result.levels["PatientAge"], "10y");
    assert!((f.result.precision_loss - 0.25).abs() < 1e-12);
    assert!(f.spec.suppress.is_empty());

    // k = 6 > n: impossible at any level.
    let mut s = Search::new(
        &t,
        SearchOptions {
            k: 6,
            l: None,
            max_suppression: 0.5,
        },
    );
    assert!(s.run().is_err());
}

// Pitman estimator sanity: a population N equal to the sample size cannot hold more uniques
// than records, and a larger population holds more uniques (U grows as N^α).
#[test]
fn pitman_uniques_grow_with_population() {
    use std::collections::BTreeMap;
    let ff: BTreeMap<u32, u64> = [(1, 500), (2, 200), (3, 80), (5, 30), (20, 5)].into();
    let n: u64 = ff.iter().map(|(s, c)| *s as u64 * c).sum();
    let (_, alpha, u_small) = veil_risk::measure::pitman_uniques(&ff, n, n * 10).unwrap();
    let (_, _, u_big) = veil_risk::measure::pitman_uniques(&ff, n, n * 1000).unwrap();
    assert!(alpha > 0.0 && alpha < 1.0);
    assert!(u_small > 0.0 && u_small < u_big);
    assert!((u_big / u_small - 100f64.powf(alpha)).abs() < 1e-6 * u_big / u_small);
    // ln Γ checks: Γ(5) = 24, Γ(0.5) = √π.
    assert!((veil_risk::measure::ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
    assert!((veil_risk::measure::ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
}

// ℓ target. Same 5 rows with diagnoses a b a a a (31F a, 33F b, 42M a, 44M a, 47M a); k = 2,
// distinct ℓ = 2, at most 40% suppressed. Every node that separates the men leaves them in a
// class with the single diagnosis a (3 rows = 60% to suppress): (10y, exact), (20y, exact),
// (suppress, exact), any level with sex exact or "common" (F and M both held by ≥ 2 records, so
// nothing merges). With sex suppressed, age at 5y/10y/20y still splits 42-47 from 31-33
// (40-44 {a,a}, 45-49 {a}, 40-59 {a,a,a}). Only the top node (age and sex suppressed) puts all
// five in one class with {a, b}: loss = (4/4 + 2/2)/2 = 1, nothing suppressed.
#[test]
fn search_with_l_diversity_target() {
    let ages = ["31", "33", "42", "44", "47"];
    let sexes = ["F", "F", "M", "M", "M"];
    let dx = ["a", "b", "a", "a", "a"];
    let t = table(
        &[("PatientAge", &ages), ("PatientSex", &sexes)],
        None,
        Some(&dx),
    );
    let mut s = Search::new(
        &t,
        SearchOptions {
            k: 2,
            l: Some(2),
            max_suppression: 0.4,
        },
    );
    let f = s.run().unwrap();
    assert_eq!(f.result.levels["PatientAge"], "suppress");
    assert_eq!(f.result.levels["PatientSex"], "suppress");
    assert_eq!(f.result.suppressed_rows, 0);
    assert!((f.result.precision_loss - 1.0).abs() < 1e-12);
    let after = measure(&f.released, &MeasureOptions::default());
    assert_eq!(after.l_diversity.unwrap().distinct_l, 2);

    // Without the ℓ target the k = 2 optimum is (10y, exact), loss 0.25 (see above).
    let mut s = Search::new(
        &t,
        SearchOptions {
            k: 2,
            l: None,
            max_suppression: 0.4,
        },
    );
    assert_eq!(s.run().unwrap().result.levels["PatientAge"], "10y");
}

// The HTML report carries rare values from the data: they are text, never markup.
#[test]
fn html_report_escapes_values_and_shows_the_measures() {
    let odd: &[&str] = &["<script>x</script>", "A&B", "C", "C", "C", "D", "D"];
    let t = table(&[("InstitutionName", odd), ("PatientSex", SEX)], None, None);
    let r = measure(&t, &MeasureOptions::default());
    let page = veil_risk::report::html(&r, None, None);
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains("&lt;script&gt;"));
    assert!(page.contains("A&amp;B"));
    assert!(
        page.contains("<td class=\"l\">measured</td><td>7</td>"),
        "{page}"
    );
    assert_eq!(page.matches("<svg").count(), 3);
}
