//! Where a run reads and writes, resolved once and checked before anything is written.
//!
//! A run has two sides. The output root `OUT` is what a recipient gets: de-identified files and,
//! under `OUT/.veil/`, only state that identifies no one (temp files, the release lock, the
//! recipient-safe report). The operator's side, the quarantine directory (default: the sibling
//! `<OUT>.quarantine`), holds everything that may identify someone or talks about inputs that
//! were not released: copies of held-back originals, their reasons, the encrypted list of held-back
//! input paths, the run journal and the operator's run report.
//!
//! Paths are compared after resolving them the way the operating system would (absolute, `.` and
//! `..` applied, symlinks of existing parts followed, trailing slashes ignored), so no spelling of
//! `OUT` puts the quarantine inside it, and overlapping inputs, output and quarantine are refused.

use std::path::{Component, Path, PathBuf};

/// Why the paths of a run cannot be used together. Always a usage problem (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("{what} {path}: cannot resolve it: {error}")]
    Resolve {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the output directory {0} has no name (it is the file system root); choose a directory such as ./released")]
    RootOutput(PathBuf),
    #[error("{a_what} {a} and {b_what} {b} overlap (one is, or is inside, the other); {advice}")]
    Overlap {
        a_what: &'static str,
        a: PathBuf,
        b_what: &'static str,
        b: PathBuf,
        advice: &'static str,
    },
}

/// `path` made absolute and free of `.`, `..`, trailing slashes and symlinks in its existing
/// part; the part that does not exist yet is appended as written (`..` there removes a name).
pub fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let parts: Vec<Component> = absolute.components().collect();
    // The longest prefix that exists is canonicalised by the OS (symlinks and `..` as the
    // kernel sees them); the rest cannot contain symlinks, so lexical handling is exact there.
    for split in (1..=parts.len()).rev() {
        let prefix: PathBuf = parts[..split].iter().collect();
        if let Ok(mut resolved) = prefix.canonicalize() {
            for part in &parts[split..] {
                match part {
                    Component::ParentDir => {
                        resolved.pop();
                    }
                    Component::Normal(name) => resolved.push(name),
                    _ => {}
                }
            }
            return Ok(resolved);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "no part of the path exists",
    ))
}

/// The default quarantine of an output root: its sibling `<name>.quarantine`.
pub fn default_quarantine(out: &Path) -> PathBuf {
    let resolved = resolve(out).unwrap_or_else(|_| lexical(out));
    match resolved.file_name() {
        Some(name) => {
            let mut sibling = name.to_os_string();
            sibling.push(".quarantine");
            resolved.with_file_name(sibling)
        }
        // The root: refused by `check` before anything is written.
        None => resolved.join(".quarantine"),
    }
}

/// `.` and trailing separators dropped, `..` applied, without touching the file system.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The resolved paths of a run.
#[derive(Debug, Clone)]
pub struct Layout {
    pub out: PathBuf,
    pub quarantine: PathBuf,
    pub inputs: Vec<PathBuf>,
}

fn resolved(what: &'static str, path: &Path) -> Result<PathBuf, PathError> {
    resolve(path).map_err(|error| PathError::Resolve {
        what,
        path: path.to_path_buf(),
        error,
    })
}

fn overlap(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Resolves the output root, quarantine and inputs of a run and refuses any two that overlap.
pub fn check(inputs: &[PathBuf], out: &Path, quarantine: &Path) -> Result<Layout, PathError> {
    let out_r = resolved("output directory", out)?;
    if out_r.file_name().is_none() {
        return Err(PathError::RootOutput(out.to_path_buf()));
    }
    let q_r = resolved("quarantine directory", quarantine)?;
    if overlap(&out_r, &q_r) {
        return Err(PathError::Overlap {
            a_what: "the output directory",
            a: out.to_path_buf(),
            b_what: "the quarantine directory",
            b: quarantine.to_path_buf(),
            advice: "held-back originals must never sit in the folder that is shipped: choose a quarantine outside the output (the default is <OUT>.quarantine beside it)",
        });
    }
    let mut inputs_r = Vec::with_capacity(inputs.len());
    for input in inputs {
        let i_r = resolved("input", input)?;
        let pairs = [
            (
                &out_r,
                out,
                "the output directory",
                "write the output outside the inputs (and the inputs outside the output)",
            ),
            (
                &q_r,
                quarantine,
                "the quarantine directory",
                "put the quarantine outside the inputs (and the inputs outside the quarantine)",
            ),
        ];
        for (side, given, what, advice) in pairs {
            if overlap(side, &i_r) {
                return Err(PathError::Overlap {
                    a_what: "the input",
                    a: input.clone(),
                    b_what: what,
                    b: given.to_path_buf(),
                    advice,
                });
            }
        }
        inputs_r.push(i_r);
    }
    Ok(Layout {
        out: out_r,
        quarantine: q_r,
        inputs: inputs_r,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_quarantine_is_a_sibling_whatever_the_spelling() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        std::fs::create_dir(base.join("released")).unwrap();
        let want = base.join("released.quarantine");
        for spelling in [
            "released",
            "released/",
            "released/.",
            "./released//",
            "x/../released",
        ] {
            assert_eq!(default_quarantine(&base.join(spelling)), want, "{spelling}");
        }
        // Not created yet: the same answer.
        assert_eq!(
            default_quarantine(&base.join("later/")),
            base.join("later.quarantine")
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_followed_before_comparing() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(base.join("in/sub")).unwrap();
        std::os::unix::fs::symlink(base.join("in/sub"), base.join("link")).unwrap();
        let e = check(&[base.join("in")], &base.join("link/out"), &base.join("q")).unwrap_err();
        assert!(matches!(e, PathError::Overlap { .. }), "{e}");
        let e = check(&[base.join("in")], &base.join("o"), &base.join("o/./q/")).unwrap_err();
        assert!(e.to_string().contains("quarantine"), "{e}");
        assert!(check(
            &[base.join("in")],
            &base.join("o/"),
            &base.join("o.quarantine")
        )
        .is_ok());
    }
}
