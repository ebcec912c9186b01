//! `veil gateway` as an operator runs it: `check` names the line and field of a mistake; the
//! served gateway takes files from dcmtk's `storescu`, and what it acknowledged is in its spool
//! after a SIGKILL, once, also when the sender sends it again after the restart.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use veil_gateway::Spool;
use veil_keys::Key;

fn veil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veil"))
}

fn testdata(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel);
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{rel} missing: run scripts/fetch-testdata.sh"
    );
    None
}

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        "[listen]\naddress = \"127.0.0.1:0\"\nae_title = \"VEIL\"\n\n[[allow]]\nae_title = \"SENDER\"\naddress = \"127.0.0.1\"\n\n[spool]\ndir = \"spool\"\nkey = \"site.key\"\n",
    )
    .unwrap();
    path
}

/// Starts the gateway; returns it and the port it says it listens on.
fn start(config: &Path) -> (Child, u16) {
    let mut child = veil()
        .args(["gateway", "--config"])
        .arg(config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .split("listening on 127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (child, port)
}

fn storescu(port: u16, files: &[PathBuf]) -> bool {
    Command::new("storescu")
        .args([
            "-aet",
            "SENDER",
            "-aec",
            "VEIL",
            "127.0.0.1",
            &port.to_string(),
        ])
        .args(files)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn check_names_the_line_and_field_of_a_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let good = config(dir.path());
    let out = veil()
        .args(["gateway", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("ok (listens on 127.0.0.1:0 as VEIL; 1 sender(s) allowed"));
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&good)
        .unwrap()
        .replace("\"127.0.0.1\"\n", "\"127.0.0\"\n");
    std::fs::write(&bad, text).unwrap();
    let out = veil()
        .args(["gateway", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:7:11: allow.address: not an IP address"),
        "{err}"
    );
}

#[test]
fn acknowledged_instances_survive_a_kill_and_land_once() {
    let have = Command::new("storescu").arg("--version").output().is_ok();
    assert!(
        have || std::env::var("CI").as_deref() != Ok("true"),
        "dcmtk missing"
    );
    let files: Vec<PathBuf> = ["pydicom/CT_small.dcm", "pydicom/MR_small.dcm"]
        .iter()
        .filter_map(|r| testdata(r))
        .collect();
    if !have || files.len() < 2 {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let key = Key::write_new(&dir.path().join("site.key")).unwrap();

    let (mut gateway, port) = start(&cfg);
    assert!(storescu(port, &files), "storescu failed");
    // SIGKILL, no chance to flush anything: what was acknowledged must already be on disk.
    gateway.kill().unwrap();
    gateway.wait().unwrap();
    let spool = Spool::attach(&dir.path().join("spool"), &key).unwrap();
    let spooled = spool.list().unwrap();
    assert_eq!(spooled.len(), 2, "an acknowledged instance was lost");
    for p in &spooled {
        let bytes = spool.read(p).unwrap();
        assert_eq!(&bytes[128..132], b"DICM");
    }
    let mode = std::fs::metadata(dir.path().join("spool")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o700
    );

    // The sender, unsure, sends again to the restarted gateway: still one copy of each.
    let (mut gateway, port) = start(&cfg);
    assert!(storescu(port, &files));
    gateway.kill().unwrap();
    gateway.wait().unwrap();
    assert_eq!(spool.list().unwrap().len(), 2);
}
