//! The `veil` Python package's native module (`veil._veil`), built with PyO3 and maturin.
//!
//! This crate owns the boundary between Python and Veil: handing bytes, paths, keys and
//! policies from Python to the application layer (`veil-app`), outcomes and reports back, and
//! Veil's errors as Python exceptions with the CLI's exit codes (module `errors`). It also owns the
//! per-task work of the Spark scale-out (module `spark`): keyed references of an instance for the
//! pre-pass, writing one series' outputs atomically, and the driver's and executors' sides of a
//! consent-gated release with its ledger entries (module `release`). It does not own any rule,
//! transformation or check: the pipeline every front end runs is built by `veil_app::build`,
//! so what Python writes is what `veil deid` writes, byte for byte. The Python side
//! (`python/veil/`) owns argument conversion (pandas/Arrow tables, pydicom datasets, paths)
//! and the Spark job itself.
//!
//! Heavy work runs with the GIL released. No key bytes ever reach a `repr`, a message or a log:
//! a key is shown by its fingerprint only.

// PyO3 0.22's `#[pyfunction]`/`#[pymethods]` expansion converts every returned `PyErr` into a
// `PyErr`, which clippy flags at each function returning `PyResult`; nothing in our code.
#![allow(clippy::useless_conversion)]

use pyo3::prelude::*;

mod engine;
mod errors;
mod release;
mod risk;
mod run;
mod spark;

/// The native module, imported by `veil/__init__.py`.
#[pymodule]
fn _veil(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<engine::Key>()?;
    m.add_class::<engine::Policy>()?;
    m.add_class::<engine::Deidentifier>()?;
    m.add_function(wrap_pyfunction!(run::deid_paths, m)?)?;
    m.add_function(wrap_pyfunction!(run::verify, m)?)?;
    m.add_function(wrap_pyfunction!(risk::risk_csv, m)?)?;
    m.add_function(wrap_pyfunction!(spark::instance_refs, m)?)?;
    m.add_function(wrap_pyfunction!(spark::write_series, m)?)?;
    m.add_function(wrap_pyfunction!(spark::walk_inputs, m)?)?;
    m.add_class::<release::ReleaseJob>()?;
    m.add_class::<release::ReleaseWorker>()?;
    m.add_function(wrap_pyfunction!(release::release_partition, m)?)?;
    Ok(())
}
