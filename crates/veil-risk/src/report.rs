//! Reports: a human summary, the policy fragment, and a self-contained HTML page with inline
//! SVG plots (class-size histogram, risk by record, which fields matter). JSON is the serde
//! form of [`crate::RiskReport`] and [`crate::SearchResult`].
//!
//! Reports list quasi-identifier values (rare values): they are as sensitive as the data
//! measured and must not be released with it.

use std::fmt::Write;

use minijinja::context;
use serde::Serialize;
use veil_profile::generalize::GeneralizeSpec;

use crate::measure::RiskReport;
use crate::search::SearchResult;

/// Everything one `veil risk` run produced, for `--json`.
#[derive(Debug, Serialize)]
pub struct RunReport<'a> {
    pub risk: &'a RiskReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<&'a SearchResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<&'a RiskReport>,
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// The human summary printed on stdout.
pub fn text(r: &RiskReport, search: Option<&SearchResult>, after: Option<&RiskReport>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "veil risk: {}", r.source);
    let unit = match &r.subject_field {
        Some(f) => format!("records = distinct ({f}, quasi-identifiers)"),
        None => "records = rows".to_string(),
    };
    let _ = writeln!(
        s,
        "  input rows {}, rejected {}, {}",
        r.input_rows, r.rejected, unit
    );
    let _ = writeln!(s, "  quasi-identifiers: {}", r.quasi.join(", "));
    summary_lines(&mut s, r);
    if !r.field_importance.is_empty() {
        let _ = writeln!(
            s,
            "  which fields matter: unique records if the field were left out; records in classes \
             below k={} that hold a value fewer than {} records hold:",
            r.k_threshold, r.k_threshold
        );
        for f in &r.field_importance {
            let _ = writeln!(
                s,
                "    {:<24} {:>8} distinct {:>7} missing {:>8} uniques without (-{:<6}) {:>8} at risk with a rare value",
                f.field,
                f.distinct_values,
                pct(f.missing_share),
                f.unique_records_without,
                r.unique_records.saturating_sub(f.unique_records_without),
                f.at_risk_with_rare_value
            );
        }
    }
    if !r.rare_values.is_empty() {
        let _ = writeln!(
            s,
            "  rare values (held by < {} records) in classes below k={}:",
            r.k_threshold, r.k_threshold
        );
        for v in r.rare_values.iter().take(10) {
            let _ = writeln!(
                s,
                "    {}={:?}: {} records, {} at risk",
                v.field,
                truncate(&v.value, 48),
                v.records,
                v.records_at_risk
            );
        }
    }
    if let Some(sr) = search {
        let _ = writeln!(
            s,
            "  reduction to k={}{} with at most {} suppressed: {} nodes evaluated of {:.0} in {:.1} s",
            sr.k,
            sr.l.map(|l| format!(", l={l}")).unwrap_or_default(),
            pct(sr.max_suppression),
            sr.evaluated_nodes,
            sr.lattice_nodes,
            sr.seconds
        );
        let levels: Vec<String> = sr.levels.iter().map(|(f, l)| format!("{f}={l}")).collect();
        let _ = writeln!(s, "    levels: {}", levels.join(", "));
        let _ = writeln!(
            s,
            "    suppressed: {} records in {} classes ({} of {} rows, {})",
            sr.suppressed_records,
            sr.suppressed_classes,
            sr.suppressed_rows,
            sr.rows,
            pct(sr.suppressed_share)
        );
        let _ = writeln!(
            s,
            "    {}",
            if sr.optimal {
                "least information loss in the lattice (branch and bound finished)"
            } else {
                "minimal, not proven optimal (lattice too large or time budget reached)"
            }
        );
        let _ = writeln!(
            s,
            "    information loss: precision loss {:.4} (0 = none, 1 = all), discernibility {:.4e}",
            sr.precision_loss, sr.discernibility
        );
    }
    if let Some(a) = after {
        let _ = writeln!(s, "  after reduction (the released data):");
        summary_lines(&mut s, a);
    }
    s
}

fn summary_lines(s: &mut String, r: &RiskReport) {
    let _ = writeln!(
        s,
        "  records {}, classes {}, k = {}, unique records {} ({})",
        r.records,
        r.classes,
        r.k,
        r.unique_records,
        pct(r.unique_share)
    );
    let _ = writeln!(
        s,
        "  prosecutor risk max {:.4} avg {:.4}; journalist max {:.4} avg {:.4}; marketer {:.4}",
        r.prosecutor.max, r.prosecutor.average, r.journalist.max, r.journalist.average, r.marketer
    );
    let at: Vec<String> = r
        .records_at_risk
        .iter()
        .map(|a| format!(">{}: {}", a.threshold, pct(a.share)))
        .collect();
    let _ = writeln!(
        s,
        "  records above prosecutor risk threshold: {}",
        at.join(", ")
    );
    if let Some(p) = &r.population {
        let _ = writeln!(
            s,
            "  population {} (sampling fraction {:.3e}): {} estimates {:.0} population uniques ({}); theta {:.3}, alpha {:.4}",
            p.population,
            p.sampling_fraction,
            p.estimator,
            p.population_uniques,
            pct(p.population_unique_share),
            p.theta,
            p.alpha
        );
    } else {
        let _ = writeln!(
            s,
            "  (no --population: journalist = prosecutor, the data set is taken as the population)"
        );
    }
    if let Some(l) = &r.l_diversity {
        let _ = writeln!(
            s,
            "  l-diversity of {}: distinct l = {}, entropy l = {:.2}, records in homogeneous classes {}",
            l.field, l.distinct_l, l.entropy_l, l.records_in_homogeneous_classes
        );
    }
}

fn truncate(v: &str, n: usize) -> String {
    if v.chars().count() <= n {
        v.to_string()
    } else {
        format!("{}…", v.chars().take(n).collect::<String>())
    }
}

/// The `[generalize]` policy fragment, with a header saying what it guarantees.
pub fn fragment(spec: &GeneralizeSpec, sr: &SearchResult, source: &str) -> crate::Result<String> {
    #[derive(Serialize)]
    struct Wrapper<'a> {
        generalize: &'a GeneralizeSpec,
    }
    let body = toml::to_string(&Wrapper { generalize: spec })
        .map_err(|e| crate::RiskError::Failed(format!("the policy fragment: {e}")))?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Written by `veil risk --target-k {}{} --max-suppression {}` on {}.",
        sr.k,
        sr.l.map(|l| format!(" --target-l {l}")).unwrap_or_default(),
        sr.max_suppression,
        source.replace('\n', " ")
    );
    let _ = writeln!(s, "# Applied by `veil deid --policy` after the Annex E rules, it generalises the quasi-identifiers");
    let _ = writeln!(s, "# below and withholds the records whose generalised values are listed in `suppress`, so the");
    let _ = writeln!(
        s,
        "# released data has k >= {}{} ({} records suppressed, precision loss {:.4}).",
        sr.k,
        sr.l.map(|l| format!(" and distinct l >= {l}"))
            .unwrap_or_default(),
        sr.suppressed_records,
        sr.precision_loss
    );
    let _ = writeln!(s, "# Measured on the data as Annex E leaves it (run `veil risk` on a `veil deid` output made with the");
    let _ = writeln!(
        s,
        "# same key and policy). `suppress` lists rare value combinations: keep this file private."
    );
    s.push_str(&body);
    Ok(s)
}

/// An SVG label or title, HTML-escaped by the template engine's own escaper.
fn esc(v: &str) -> String {
    minijinja::HtmlEscape(v).to_string()
}

/// Vertical bar chart (labels under bars), log-free, values printed above bars.
fn bar_chart(title: &str, labels: &[String], values: &[f64], color: &str) -> String {
    let (w, h, pad) = (640.0, 240.0, 40.0);
    let max = values.iter().cloned().fold(0.0f64, f64::max).max(1e-12);
    let bw = (w - 2.0 * pad) / values.len().max(1) as f64;
    let mut s = format!(
        "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" role=\"img\">",
        esc(title),
        h + 40.0
    );
    for (i, (l, v)) in labels.iter().zip(values).enumerate() {
        let bh = (h - pad) * v / max;
        let x = pad + i as f64 * bw;
        let y = h - bh;
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            x + 2.0,
            y,
            (bw - 4.0).max(1.0),
            bh,
            x + bw / 2.0,
            y - 3.0,
            fmt_count(*v),
            x + bw / 2.0,
            h + 14.0,
            esc(l)
        );
    }
    let _ = write!(
        s,
        "<line x1=\"{pad}\" y1=\"{h}\" x2=\"{}\" y2=\"{h}\" stroke=\"#333\"/></svg></figure>",
        w - pad
    );
    s
}

/// Horizontal bar chart for per-field numbers.
fn hbar_chart(title: &str, labels: &[String], values: &[f64], color: &str) -> String {
    let (w, row, left) = (640.0, 22.0, 190.0);
    let max = values.iter().cloned().fold(0.0f64, f64::max).max(1e-12);
    let h = row * values.len() as f64 + 10.0;
    let mut s = format!(
        "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\">",
        esc(title)
    );
    for (i, (l, v)) in labels.iter().zip(values).enumerate() {
        let y = i as f64 * row + 4.0;
        let bw = (w - left - 80.0) * v / max;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>\
             <rect x=\"{left}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
            left - 6.0,
            y + 13.0,
            esc(l),
            row - 6.0,
            left + bw + 4.0,
            y + 13.0,
            fmt_count(*v)
        );
    }
    s.push_str("</svg></figure>");
    s
}

/// Step line of prosecutor risk by record (records sorted from highest risk).
/// A named curve of (share of records, risk) points and its colour.
type Curve<'a> = (&'a str, &'a [(f64, f64)], &'a str);

fn risk_curve(title: &str, curves: &[Curve]) -> String {
    let (w, h, pad) = (640.0, 240.0, 40.0);
    let mut s = format!(
        "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" role=\"img\">",
        esc(title),
        h + 30.0
    );
    let x = |f: f64| pad + f * (w - 2.0 * pad);
    let y = |r: f64| h - r * (h - pad);
    for (i, (name, pts, color)) in curves.iter().enumerate() {
        let mut d = String::new();
        for (j, (f, r)) in pts.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1} ",
                if j == 0 { "M" } else { "L" },
                x(*f),
                y(*r)
            );
        }
        let _ = write!(
            s,
            "<path d=\"{d}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"{color}\">{}</text>",
            w - pad - 150.0,
            pad + 14.0 * i as f64,
            esc(name)
        );
    }
    for r in [0.0, 0.2, 0.5, 1.0] {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{r}</text>",
            pad - 4.0,
            y(r) + 3.0
        );
    }
    let _ = write!(
        s,
        "<line x1=\"{pad}\" y1=\"{h}\" x2=\"{}\" y2=\"{h}\" stroke=\"#333\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{h}\" stroke=\"#333\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">share of records (highest risk first)</text></svg></figure>",
        w - pad,
        w / 2.0,
        h + 24.0
    );
    s
}

fn fmt_count(v: f64) -> String {
    if v == v.trunc() {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
    }
}

/// SVG of the class-size histogram (records per class-size bucket).
pub fn svg_class_sizes(r: &RiskReport, title: &str) -> String {
    let labels: Vec<String> = r.class_sizes.iter().map(|b| b.label.clone()).collect();
    let values: Vec<f64> = r.class_sizes.iter().map(|b| b.records as f64).collect();
    bar_chart(title, &labels, &values, "#4a78b5")
}

/// SVG of unique records removed by leaving out each field.
pub fn svg_fields(r: &RiskReport, title: &str) -> String {
    let labels: Vec<String> = r.field_importance.iter().map(|f| f.field.clone()).collect();
    let values: Vec<f64> = r
        .field_importance
        .iter()
        .map(|f| r.unique_records.saturating_sub(f.unique_records_without) as f64)
        .collect();
    hbar_chart(title, &labels, &values, "#c0504d")
}

/// SVG of risk by record, before and (optionally) after reduction.
pub fn svg_risk(r: &RiskReport, after: Option<&RiskReport>, title: &str) -> String {
    let mut curves: Vec<Curve> = vec![("measured", &r.risk_curve, "#c0504d")];
    if let Some(a) = after {
        curves.push(("after reduction", &a.risk_curve, "#4a78b5"));
    }
    risk_curve(title, &curves)
}

/// The self-contained HTML report, from `templates/report.html` (values HTML-escaped by the
/// template engine; the plots are SVG this module built with escaped labels).
pub fn html(r: &RiskReport, search: Option<&SearchResult>, after: Option<&RiskReport>) -> String {
    let mut rows = vec![("measured", r)];
    if let Some(a) = after {
        rows.push(("after reduction", a));
    }
    let measures: Vec<_> = rows
        .iter()
        .map(|(name, x)| {
            let cells = [
                x.records.to_string(),
                x.classes.to_string(),
                x.k.to_string(),
                format!("{} ({})", x.unique_records, pct(x.unique_share)),
                format!("{:.4}", x.prosecutor.max),
                format!("{:.4}", x.prosecutor.average),
                format!("{:.4}", x.journalist.max),
                format!("{:.4}", x.journalist.average),
                format!("{:.4}", x.marketer),
            ];
            context! { name, cells }
        })
        .collect();
    let population = r.population.as_ref().map(|p| {
        context! {
            size => p.population,
            estimator => &p.estimator,
            uniques => format!("{:.0}", p.population_uniques),
            share => pct(p.population_unique_share),
        }
    });
    let diversity: Vec<_> = rows
        .iter()
        .filter_map(|(name, x)| x.l_diversity.as_ref().map(|l| (name, l)))
        .map(|(name, l)| {
            context! {
                name, field => &l.field, distinct => l.distinct_l,
                entropy => format!("{:.2}", l.entropy_l),
                homogeneous => l.records_in_homogeneous_classes,
            }
        })
        .collect();
    let search = search.map(|sr| {
        context! {
            k => sr.k,
            levels => sr.levels.iter().map(|(f, l)| format!("{f} = {l}")).collect::<Vec<_>>(),
            suppressed => sr.suppressed_records,
            suppressed_share => pct(sr.suppressed_share),
            suppressed_classes => sr.suppressed_classes,
            precision_loss => format!("{:.4}", sr.precision_loss),
            discernibility => format!("{:.4e}", sr.discernibility),
            evaluated => sr.evaluated_nodes,
            lattice => format!("{:.0}", sr.lattice_nodes),
            seconds => format!("{:.1}", sr.seconds),
        }
    });
    let mut plots = vec![svg_class_sizes(
        r,
        "Records by equivalence-class size (measured)",
    )];
    if let Some(a) = after {
        plots.push(svg_class_sizes(
            a,
            "Records by equivalence-class size (after reduction)",
        ));
    }
    plots.push(svg_risk(r, after, "Prosecutor risk by record"));
    plots.push(svg_fields(
        r,
        "Which fields matter: unique records that leaving the field out would remove",
    ));
    let rare_values: Vec<_> = r
        .rare_values
        .iter()
        .map(|v| {
            context! {
                field => &v.field, value => truncate(&v.value, 60),
                records => v.records, at_risk => v.records_at_risk,
            }
        })
        .collect();
    let mut env = minijinja::Environment::new();
    env.add_template("report.html", include_str!("../templates/report.html"))
        .expect("the report template parses");
    let page = env
        .get_template("report.html")
        .and_then(|t| {
            t.render(context! {
                source => &r.source, quasi => &r.quasi, measures, population, diversity, search,
                plots, rare_values, k_threshold => r.k_threshold,
            })
        })
        .expect("the report template renders plain values");
    page + "\n"
}
