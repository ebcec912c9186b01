//! `veil.risk`: re-identification risk of a table, measured as `veil risk TABLE.csv --json`
//! measures it. The Python side writes the caller's table (pandas, Arrow or rows) to a CSV file
//! first, so both read it with the same loader.

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::errors;

fn risk_error(e: veil_risk::RiskError) -> PyErr {
    if e.is_usage() {
        errors::usage(e.to_string())
    } else {
        errors::runtime(e.to_string())
    }
}

/// Measures the risk of the table in a CSV file. `subject=""` counts rows instead of people.
/// Returns the CLI's `--json` report.
#[pyfunction]
#[pyo3(signature = (csv_path, quasi=Vec::new(), sensitive=None, subject=None, population=None, k=5))]
pub fn risk_csv(
    py: Python<'_>,
    csv_path: PathBuf,
    quasi: Vec<String>,
    sensitive: Option<String>,
    subject: Option<String>,
    population: Option<u64>,
    k: u32,
) -> PyResult<String> {
    let opts = veil_risk::LoadOptions {
        quasi,
        sensitive,
        subject,
    };
    py.allow_threads(|| {
        let mut table = veil_risk::table::load_csv(&csv_path, &opts).map_err(risk_error)?;
        table.dedupe();
        let measure_opts = veil_risk::MeasureOptions {
            population,
            // As the CLI: classes under k (at least 2) are the ones at risk.
            k: k.max(2),
            top_values: 25,
        };
        let risk = veil_risk::measure(&table, &measure_opts);
        let run = veil_risk::report::RunReport {
            risk: &risk,
            search: None,
            after: None,
        };
        serde_json::to_string(&run).map_err(|e| errors::runtime(e.to_string()))
    })
}
