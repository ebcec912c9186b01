//! `veil risk`: measures re-identification risk of a DICOM directory, a `veil deid` output, or a
//! CSV/Parquet metadata table, and optionally searches the least generalisation meeting a
//! k-anonymity target, written as a `[generalize]` policy fragment for `veil deid --policy`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use veil_risk::report;

#[derive(clap::Args)]
#[command(
    after_help = "Exit codes: 0 measured; 2 usage error, or the target cannot be met; \
                        3 measured, but some input files were not readable DICOM (listed)."
)]
pub struct Args {
    /// A directory of DICOM files (headers are read up to Pixel Data), one DICOM file, a .csv or a .parquet table.
    pub input: PathBuf,
    /// Quasi-identifiers, comma separated (DICOM keywords or column names; `Name:kind` with kind
    /// age|date|number|category sets the hierarchy). Default: the imaging defaults present in the input.
    #[arg(long, value_delimiter = ',')]
    pub quasi: Vec<String>,
    /// Sensitive attribute for l-diversity.
    #[arg(long)]
    pub sensitive: Option<String>,
    /// Attribute that identifies the person, so class sizes count people, not files or series
    /// (default PatientID when present; "none" counts rows).
    #[arg(long)]
    pub subject: Option<String>,
    /// Population size the data is a sample of: journalist/marketer risk and population uniqueness (Pitman model).
    #[arg(long)]
    pub population: Option<u64>,
    /// Print one JSON document (the risk report) on stdout instead of the human-readable text.
    #[arg(long)]
    pub json: bool,
    /// Write a self-contained HTML report with plots to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Search the least generalisation that makes every released class at least this large.
    #[arg(long, value_name = "K")]
    pub target_k: Option<u32>,
    /// Also require distinct l-diversity of the --sensitive attribute in every released class
    /// (needs --target-k and --sensitive).
    #[arg(long, value_name = "L")]
    pub target_l: Option<u32>,
    /// Largest share of records the search may suppress: a fraction (0.05) or a percentage (5%).
    #[arg(long, value_name = "S", default_value = "5%")]
    pub max_suppression: String,
    /// Write the chosen generalisation as a `[generalize]` policy fragment (needs --target-k).
    #[arg(long, value_name = "FILE")]
    pub write_policy: Option<PathBuf>,
}

fn parse_share(s: &str) -> Option<f64> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok()? / 100.0,
        None => t.parse::<f64>().ok()?,
    };
    (0.0..=1.0).contains(&v).then_some(v)
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    match run_inner(args) {
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<veil_risk::RiskError>()
                    .is_some_and(|r| r.is_usage())
            }) =>
        {
            Err(crate::exit::usage(format!("{e:#}")))
        }
        other => other,
    }
}

fn run_inner(args: Args) -> anyhow::Result<u8> {
    let max_suppression = parse_share(&args.max_suppression).ok_or_else(|| {
        crate::exit::usage(format!(
            "--max-suppression {}: give a share between 0 and 1 (0.05) or a percentage (5%)",
            args.max_suppression
        ))
    })?;
    if args.write_policy.is_some() && args.target_k.is_none() {
        return Err(crate::exit::usage("--write-policy needs --target-k K"));
    }
    if args.target_l.is_some() && (args.target_k.is_none() || args.sensitive.is_none()) {
        return Err(crate::exit::usage(
            "--target-l needs --target-k K and --sensitive FIELD",
        ));
    }
    if args.target_k == Some(0) {
        return Err(crate::exit::usage("--target-k must be at least 1"));
    }
    let opts = veil_risk::LoadOptions {
        quasi: args.quasi.clone(),
        sensitive: args.sensitive.clone(),
        subject: args.subject.as_deref().map(|s| {
            if s == "none" {
                String::new()
            } else {
                s.to_string()
            }
        }),
    };
    let reading = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_message(format!("reading {}", args.input.display()));
        b.enable_steady_tick(std::time::Duration::from_millis(200));
        b
    });
    let table = veil_risk::load(&args.input, &opts);
    if let Some(b) = reading {
        b.finish_and_clear();
    }
    let mut table = table?;
    for (path, reason) in table.rejected.iter().take(5) {
        eprintln!("veil: rejected {path}: {reason}");
    }
    if table.rejected.len() > 5 {
        eprintln!(
            "veil: ... and {} more rejected files",
            table.rejected.len() - 5
        );
    }
    table.dedupe();
    let mopts = veil_risk::MeasureOptions {
        population: args.population,
        k: args.target_k.unwrap_or(5).max(2),
        top_values: 25,
    };
    let risk = veil_risk::measure(&table, &mopts);

    let mut found = None;
    if let Some(k) = args.target_k {
        // The search can take a minute on a large table: on a terminal, say what it is doing.
        let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .expect("valid template"),
            );
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b
        });
        let mut search = veil_risk::Search::new(
            &table,
            veil_risk::SearchOptions {
                k,
                l: args.target_l,
                max_suppression,
            },
        );
        if let Some(b) = &bar {
            let b = b.clone();
            search = search.with_progress(move |evaluated, lattice| {
                if evaluated % 16 == 1 {
                    b.set_message(format!(
                        "searching the least generalisation with k={k}: {evaluated} of {lattice:.0} combinations evaluated (gives up after 45 s with the best found)"
                    ));
                }
            });
        }
        let f = search.run().map_err(crate::exit::usage);
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let f = f?;
        found = Some(f);
    }
    let after = found
        .as_ref()
        .map(|f| veil_risk::measure(&f.released, &mopts));

    if let (Some(path), Some(f)) = (&args.write_policy, &found) {
        let text = report::fragment(&f.spec, &f.result, &risk.source)?;
        veil_risk::write_atomic(path, text.as_bytes())
            .with_context(|| format!("--write-policy {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        let page = report::html(&risk, found.as_ref().map(|f| &f.result), after.as_ref());
        veil_risk::write_atomic(path, page.as_bytes())
            .with_context(|| format!("--html {}", path.display()))?;
    }
    if args.json {
        let run = report::RunReport {
            risk: &risk,
            search: found.as_ref().map(|f| &f.result),
            after: after.as_ref(),
        };
        println!("{}", serde_json::to_string_pretty(&run)?);
    } else {
        print!(
            "{}",
            report::text(&risk, found.as_ref().map(|f| &f.result), after.as_ref())
        );
        if let Some(p) = &args.write_policy {
            println!("  policy fragment written to {}", p.display());
        }
        if let Some(p) = &args.html {
            println!("  HTML report written to {}", p.display());
        }
    }
    Ok(if table.rejected.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::QUARANTINED
    })
}
