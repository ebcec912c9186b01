//! Clear errors (issue 8, part 4): bad CLI arguments, a bad policy, a missing or bad key, an
//! unreadable input, a full disk and a database that is down each end with a one-line cause that
//! names the file, field or location and what to do, the documented exit code (README.md,
//! crates/veil/src/exit.rs: 1 runtime failure, 2 usage or configuration, 3 some inputs held back),
//! and nothing lost: inputs unchanged, no partial output, and a rerun after the fix completes.
//!
//! Runs the same way as root and as a normal user: as root (CI containers) the commands that
//! must meet a permission error run as `nobody`, since root reads a mode-000 file.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // The owner of a file we just created is our effective uid.
    let p = std::env::temp_dir().join(format!("veil-euid-{}", std::process::id()));
    std::fs::write(&p, b"").unwrap();
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&p).unwrap());
    let _ = std::fs::remove_file(&p);
    uid == 0
}

fn veil(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_veil"));
    c.current_dir(dir)
        .env_remove("VEIL_KEY")
        .env_remove("VEIL_DB")
        .env_remove("VEIL_CONFIG")
        .env_remove("VEIL_LOG");
    c
}

/// A `veil deid` command that meets permission errors even as root: as root it runs as `nobody`
/// (root reads a mode-000 file), from a copy of the binary in the test directory (the build
/// directory may sit under a home `nobody` cannot enter), with the test directory, the inputs and
/// the key handed to `nobody`. `extra` are paths to hand over besides (e.g. a locked directory).
fn deid_meeting_permissions(s: &Setup, extra: &[&Path]) -> Command {
    if !is_root() {
        let mut c = veil(&s.dir);
        c.args(["deid", "--key", "k.key", "--out", "o", "in"]);
        return c;
    }
    let bin = s.dir.join("veil-bin");
    std::fs::copy(env!("CARGO_BIN_EXE_veil"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut owned = vec![s.dir.clone(), s.dir.join("in"), s.dir.join("k.key")];
    owned.extend(veil_fuzz::walk(&s.dir.join("in")));
    owned.extend(extra.iter().map(|p| p.to_path_buf()));
    for p in owned {
        std::os::unix::fs::chown(&p, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    std::fs::set_permissions(&s.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = Command::new(&bin);
    c.current_dir(&s.dir)
        .env_remove("VEIL_KEY")
        .env_remove("VEIL_DB")
        .env_remove("VEIL_CONFIG")
        .env_remove("VEIL_LOG")
        .args(["deid", "--key", "k.key", "--out", "o", "in"])
        .uid(NOBODY)
        .gid(NOBODY);
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let o: Output = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Every file under `root` with its bytes.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    veil_fuzz::walk(root)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap_or_default();
            (p, b)
        })
        .collect()
}

/// The single `veil: error:` line of a failed command (after any log lines).
fn error_line(stderr: &str) -> String {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("veil: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "exactly one error line expected: {stderr}");
    errors[0].to_string()
}

fn no_partial_files(root: &Path) {
    for p in veil_fuzz::walk(root) {
        let s = p.to_string_lossy();
        assert!(
            !s.ends_with(".part") || s.contains("/.veil/tmp/"),
            "partial file left: {s}"
        );
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    inputs: BTreeMap<PathBuf, Vec<u8>>,
}

/// Two generated CT files in `in/`, a key, and a third generated file kept aside (`spare`) for
/// tests that add an input.
fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(dir.join("in")).unwrap();
    let kit = common::generated(&dir.join("kit"));
    for (i, f) in kit.iter().take(2).enumerate() {
        std::fs::copy(f, dir.join("in").join(format!("ct{i}.dcm"))).unwrap();
    }
    std::fs::copy(kit.last().unwrap(), dir.join("spare.dcm")).unwrap();
    std::fs::remove_dir_all(dir.join("kit")).unwrap();
    let (code, _, err) = run(veil(&dir).args(["key", "new", "k.key"]));
    assert_eq!(code, 0, "{err}");
    let inputs = snapshot(&dir.join("in"));
    Setup {
        _tmp: tmp,
        dir,
        inputs,
    }
}

/// Panics naming the files that differ (not dumping their bytes).
fn same_files(got: &BTreeMap<PathBuf, Vec<u8>>, want: &BTreeMap<PathBuf, Vec<u8>>) {
    let differ: Vec<&PathBuf> = got
        .keys()
        .chain(want.keys())
        .filter(|p| got.get(*p) != want.get(*p))
        .collect();
    assert!(differ.is_empty(), "inputs were changed: {differ:?}");
}

impl Setup {
    fn inputs_unchanged(&self) {
        same_files(&snapshot(&self.dir.join("in")), &self.inputs);
    }
}

#[test]
fn bad_arguments_exit_2_naming_the_argument() {
    let s = setup();
    for (args, names) in [
        (
            vec![
                "deid",
                "--threads",
                "abc",
                "--key",
                "k.key",
                "--out",
                "o",
                "in",
            ],
            "--threads",
        ),
        (vec!["deid", "--key", "k.key", "in"], "--out"),
        (
            vec!["deid", "--key", "k.key", "--out", "o", "--frobnicate", "in"],
            "--frobnicate",
        ),
        (vec!["frobnicate"], "frobnicate"),
        (
            vec!["risk", "in", "--max-suppression", "lots"],
            "--max-suppression",
        ),
    ] {
        let (code, _, err) = run(veil(&s.dir).args(&args));
        assert_eq!(code, 2, "{args:?}: {err}");
        // clap's message: the cause (one line, or the line and the missing argument under it),
        // then the usage.
        let cause = err.split("\n\n").next().unwrap_or_default();
        assert!(
            (err.starts_with("error:") || err.starts_with("veil: error:"))
                && cause.lines().count() <= 2
                && cause.contains(names),
            "{args:?}: the cause must name {names}: {err}"
        );
        assert!(!s.dir.join("o").exists(), "{args:?} created output");
    }
    // An input that does not exist: named, exit 2, nothing created.
    let (code, _, err) =
        run(veil(&s.dir).args(["deid", "--key", "k.key", "--out", "o", "in/nope.dcm"]));
    assert_eq!(code, 2, "{err}");
    let line = error_line(&err);
    assert!(
        line.contains("in/nope.dcm") && line.contains("no such file"),
        "{line}"
    );
    assert!(!s.dir.join("o").exists());
    s.inputs_unchanged();
}

#[test]
fn a_bad_policy_names_the_file_line_and_field() {
    let s = setup();
    std::fs::write(
        s.dir.join("bad.toml"),
        "# site policy\n[profile]\noptions = [\"clean-descriptors\"]\nretian = true\n",
    )
    .unwrap();
    let (code, out, err) = run(veil(&s.dir).args(["policy", "check", "bad.toml"]));
    assert_eq!(code, 2, "{out}{err}");
    let text = format!("{out}{err}");
    assert!(
        text.contains("bad.toml") && text.contains("line 4") && text.contains("retian"),
        "policy check must name the file, line and field: {text}"
    );
    let (code, _, err) = run(veil(&s.dir).args([
        "deid", "--key", "k.key", "--out", "o", "--policy", "bad.toml", "in",
    ]));
    assert_eq!(code, 2, "{err}");
    let line = error_line(&err);
    assert!(
        line.contains("bad.toml") && line.contains("line 4") && line.contains("retian"),
        "{line}"
    );
    assert!(
        !s.dir.join("o").exists(),
        "a bad policy must stop before any output"
    );
    // A policy file that does not exist.
    let (code, _, err) = run(veil(&s.dir).args([
        "deid",
        "--key",
        "k.key",
        "--out",
        "o",
        "--policy",
        "nope.toml",
        "in",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(error_line(&err).contains("nope.toml"), "{err}");
    assert!(!s.dir.join("o").exists());
    s.inputs_unchanged();
}

#[test]
fn a_missing_or_bad_key_says_how_to_get_one() {
    let s = setup();
    std::fs::write(s.dir.join("bad.key"), "not a key\n").unwrap();
    std::fs::set_permissions(
        s.dir.join("bad.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    for (args, env, wants) in [
        (
            vec!["deid", "--out", "o", "in"],
            None,
            vec!["no key", "--key", "veil key new", "VEIL_KEY"],
        ),
        (
            vec!["deid", "--key", "missing.key", "--out", "o", "in"],
            None,
            vec!["missing.key"],
        ),
        (
            vec!["deid", "--key", "bad.key", "--out", "o", "in"],
            None,
            vec!["bad.key", "64 hexadecimal digits"],
        ),
        (
            vec!["deid", "--out", "o", "in"],
            Some("xyz"),
            vec!["VEIL_KEY", "64 hexadecimal digits"],
        ),
    ] {
        let mut c = veil(&s.dir);
        c.args(&args);
        if let Some(v) = env {
            c.env("VEIL_KEY", v);
        }
        let (code, _, err) = run(&mut c);
        assert_eq!(code, 2, "{args:?}: {err}");
        let line = error_line(&err);
        for w in wants {
            assert!(line.contains(w), "{args:?}: {line} should mention {w}");
        }
        assert!(!s.dir.join("o").exists(), "{args:?} created output");
    }
    s.inputs_unchanged();
}

#[test]
fn an_unreadable_input_is_reported_by_name_and_the_rest_goes_through() {
    let s = setup();
    let root = is_root();
    let locked = s.dir.join("in/locked.dcm");
    std::fs::copy(s.dir.join("spare.dcm"), &locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let mut c = deid_meeting_permissions(&s, &[]);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 3, "some inputs held back → exit 3: {err}");
    eprintln!("unreadable (as root: {root}): {err}");
    assert!(
        err.lines()
            .any(|l| l.contains("locked.dcm") && l.contains("unreadable")),
        "stderr must name the unreadable file: {err}"
    );
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.dir.join("o.quarantine/.veil/run-report.json")).expect("run report"),
    )
    .expect("JSON report");
    assert_eq!(report["rejected"], 1, "{report}");
    assert_eq!(report["reasons"]["unreadable"], 1, "{report}");
    assert_eq!(
        report["written"].as_u64().unwrap_or(0) + report["quarantined"].as_u64().unwrap_or(0),
        2,
        "{report}"
    );
    no_partial_files(&s.dir.join("o"));
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut expected = s.inputs.clone();
    expected.insert(
        locked.clone(),
        std::fs::read(s.dir.join("spare.dcm")).unwrap(),
    );
    same_files(&snapshot(&s.dir.join("in")), &expected);
}

#[test]
fn an_unreadable_input_directory_stops_before_anything_is_written() {
    let s = setup();
    let sub = s.dir.join("in/locked");
    std::fs::create_dir(&sub).unwrap();
    std::fs::copy(s.dir.join("spare.dcm"), sub.join("rtplan.dcm")).unwrap();
    let mut expected = s.inputs.clone();
    expected.insert(
        sub.join("rtplan.dcm"),
        std::fs::read(s.dir.join("spare.dcm")).unwrap(),
    );
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o000)).unwrap();
    let mut c = deid_meeting_permissions(&s, &[&sub]);
    let (code, _, err) = run(&mut c);
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        code, 1,
        "an input that cannot be listed is a runtime failure: {err}"
    );
    let line = error_line(&err);
    assert!(
        line.contains("in/locked"),
        "the error must name the directory: {line}"
    );
    assert_eq!(
        line.matches("Permission denied").count(),
        1,
        "the cause, once: {line}"
    );
    assert!(
        line.contains("readable"),
        "the error must say what to do: {line}"
    );
    assert!(
        veil_fuzz::walk(&s.dir.join("o"))
            .iter()
            .all(|p| p.extension().is_none_or(|e| e != "dcm")),
        "no output when the inputs cannot all be listed"
    );
    same_files(&snapshot(&s.dir.join("in")), &expected);
}

#[test]
fn a_full_disk_stops_the_run_naming_where_and_a_rerun_completes() {
    let s = setup();
    let (code, _, err) = run(veil(&s.dir).args(["deid", "--key", "k.key", "--out", "ref", "in"]));
    assert!(code == 0 || code == 3, "{err}");
    // A file-size limit makes every write past 20 kB fail as on a full disk (EFBIG; SIGXFSZ is
    // ignored so the write returns the error instead of killing the process).
    let bin = env!("CARGO_BIN_EXE_veil");
    let mut c = Command::new("sh");
    c.current_dir(&s.dir).env_remove("VEIL_KEY").args([
        "-c",
        "trap '' XFSZ; exec prlimit --fsize=20000 -- \"$0\" deid --key k.key --out out in",
        bin,
    ]);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 1, "a full disk is a runtime failure (exit 1): {err}");
    let line = error_line(&err);
    let out = s.dir.join("out");
    assert!(
        line.contains(&out.display().to_string()) || line.contains(" out/"),
        "the error must name where it could not write: {line}"
    );
    let cause = ["File too large", "No space"]
        .iter()
        .map(|c| line.matches(c).count())
        .sum::<usize>();
    assert_eq!(cause, 1, "the cause, once: {line}");
    assert!(
        line.contains("rerun"),
        "the error must say what to do: {line}"
    );
    eprintln!("full disk: {line}");
    no_partial_files(&out);
    s.inputs_unchanged();
    // Nothing lost: the rerun with space completes and gives the uninterrupted tree.
    let (code, _, err) = run(veil(&s.dir).args(["deid", "--key", "k.key", "--out", "out", "in"]));
    assert!(code == 0 || code == 3, "{err}");
    let strip = |root: &Path| -> BTreeMap<PathBuf, Vec<u8>> {
        snapshot(root)
            .into_iter()
            .filter(|(p, _)| !p.strip_prefix(root).unwrap().starts_with(".veil"))
            .map(|(p, b)| (p.strip_prefix(root).unwrap().to_path_buf(), b))
            .collect()
    };
    assert_eq!(
        strip(&out),
        strip(&s.dir.join("ref")),
        "rerun differs from a clean run"
    );
}

#[test]
fn a_database_that_is_down_is_named_without_its_password() {
    let s = setup();
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let url = "postgres://veil:s3cret-pw@127.0.0.1:1/veil";
    for args in [
        vec!["consent", "show", "P1", "--key", "k.key", "--db", url],
        vec![
            "release",
            "in",
            "--recipient",
            "lab",
            "--purpose",
            "internal-research",
            "--out",
            "rel",
            "--key",
            "k.key",
            "--db",
            url,
        ],
    ] {
        let (code, out, err) = run(veil(&s.dir).args(&args));
        assert_eq!(
            code, 1,
            "{args:?}: database down is a runtime failure: {err}"
        );
        let line = error_line(&err);
        assert!(
            line.contains("127.0.0.1:1"),
            "{args:?}: the error must name the database: {line}"
        );
        assert!(
            line.contains("cannot connect") || line.contains("refused"),
            "{args:?}: the error must say the database cannot be reached: {line}"
        );
        assert!(
            !format!("{out}{err}").contains("s3cret-pw"),
            "{args:?}: the password was printed"
        );
        assert!(
            !s.dir.join("rel").exists(),
            "{args:?}: output without a ledger"
        );
    }
    s.inputs_unchanged();
}
