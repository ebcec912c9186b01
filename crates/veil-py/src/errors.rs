//! Veil's errors as the Python exceptions of `veil.errors`, with the CLI's exit semantics: a
//! usage error (exit 2) is the caller's to fix, anything else is a runtime failure (exit 1).
//! The exception classes are defined in Python (`veil/errors.py`) so that they can be caught,
//! documented and typed like any Python class; this module only raises them.

use pyo3::prelude::*;

/// Raises `veil.errors.<class_name>(message)`.
fn raise(py: Python<'_>, class_name: &str, message: String) -> PyErr {
    let class = py
        .import_bound("veil.errors")
        .and_then(|m| m.getattr(class_name));
    match class {
        Ok(class) => PyErr::from_value_bound(match class.call1((message.clone(),)) {
            Ok(e) => e,
            Err(e) => return e,
        }),
        // The package was imported without its Python half: still an error, never a pass.
        Err(_) => pyo3::exceptions::PyRuntimeError::new_err(message),
    }
}

/// An application-layer error as the exception the CLI's exit code corresponds to.
pub fn app_error(e: veil_app::AppError) -> PyErr {
    let usage = e.is_usage();
    let message = e.to_string();
    Python::with_gil(|py| {
        if usage {
            raise(py, "UsageError", message)
        } else {
            raise(py, "VeilRuntimeError", message)
        }
    })
}

/// A usage error in a sentence.
pub fn usage(message: impl Into<String>) -> PyErr {
    Python::with_gil(|py| raise(py, "UsageError", message.into()))
}

/// A runtime failure in a sentence.
pub fn runtime(message: impl Into<String>) -> PyErr {
    Python::with_gil(|py| raise(py, "VeilRuntimeError", message.into()))
}
