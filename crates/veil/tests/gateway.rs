//! `veil gateway` as an operator runs it: `check` names the line and field of a mistake; what
//! the gateway acknowledged is in its spool after a SIGKILL, once. And the gateway between real
//! peers: dcmtk's `storescu` sends real files to `veil gateway`, which
//! de-identifies them and stores them in a real Orthanc (Debian `orthanc`, started by the test
//! on free ports and read back through its REST API), or in dcmtk's `storescp` in bit-preserving
//! mode. What arrives is what `veil deid` writes for the same file with the same key and policy:
//! byte for byte at storescp, attribute for attribute in Orthanc (which rewrites some sequences
//! with explicit lengths). While Orthanc is down the instance waits in the spool and arrives once
//! it is back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn veil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veil"))
}

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn testdata(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel);
    if p.exists() {
        return Some(p);
    }
    assert!(!ci(), "{rel} missing: run scripts/fetch-testdata.sh");
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 POST of `body` on loopback: the status.
fn post(port: u16, path: &str, body: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    String::from_utf8_lossy(&raw)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A plain HTTP/1.0 GET on loopback: status and body.
fn get(port: u16, path: &str) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, raw[split + 4..].to_vec()))
}

struct Orthanc {
    child: Child,
    dicom: u16,
    http: u16,
    config: PathBuf,
}

/// Debian's orthanc-dicomweb plugin (STOW-RS at /dicom-web/studies).
const DICOMWEB_PLUGIN: &str = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

impl Orthanc {
    /// Writes every instance it holds into `dir` as `pacs-<n>.dcm` (what a PACS would export).
    fn export_to(&self, dir: &Path) -> Vec<PathBuf> {
        self.instances()
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let p = dir.join(format!("pacs-{i}.dcm"));
                std::fs::write(&p, self.file(id)).unwrap();
                p
            })
            .collect()
    }

    fn start(dir: &Path) -> Orthanc {
        Orthanc::start_with(dir, &[])
    }

    fn start_with(dir: &Path, plugins: &[&str]) -> Orthanc {
        Orthanc::start_as(dir, "ORTHANC", plugins, "")
    }

    /// An Orthanc called `aet` in its own directory under `dir`, with `extra` JSON members.
    fn start_as(dir: &Path, aet: &str, plugins: &[&str], extra: &str) -> Orthanc {
        let (dicom, http) = (free_port(), free_port());
        let storage = dir.join(format!("orthanc-db-{aet}"));
        let config = dir.join(format!("orthanc-{aet}.json"));
        std::fs::write(
            &config,
            format!(
                r#"{{"Name": "veil-test", "StorageDirectory": "{s}", "IndexDirectory": "{s}",
"DicomAet": "{aet}", "DicomPort": {dicom}, "HttpPort": {http}, "RemoteAccessAllowed": false, {extra}
"AuthenticationEnabled": false, "DicomCheckCalledAet": true, "DicomAlwaysAllowStore": true,
"Plugins": {plugins:?}, "StorageCompression": false}}"#,
                s = storage.display()
            ),
        )
        .unwrap();
        let mut o = Orthanc {
            child: Command::new("Orthanc")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("Orthanc runs (Debian package orthanc)"),
            dicom,
            http,
            config,
        };
        o.wait_up();
        o
    }

    fn wait_up(&mut self) {
        let t = Instant::now();
        while get(self.http, "/system").map(|r| r.0) != Some(200) {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "Orthanc did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn restart(&mut self) {
        self.child = Command::new("Orthanc")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.wait_up();
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Orthanc's instance IDs.
    fn instances(&self) -> Vec<String> {
        let (_, body) = get(self.http, "/instances").unwrap_or((0, b"[]".to_vec()));
        serde_json::from_slice(&body).unwrap_or_default()
    }

    fn file(&self, id: &str) -> Vec<u8> {
        get(self.http, &format!("/instances/{id}/file")).unwrap().1
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Gateway(Child);

impl Drop for Gateway {
    // SIGKILL: no chance to flush anything.
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_gateway(config: &Path) -> (Gateway, u16) {
    let mut child = veil()
        .args(["gateway", "--config"])
        .arg(config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    err.read_line(&mut line).unwrap();
    // Keep reading its log so that the gateway never writes into a closed pipe.
    std::thread::spawn(move || for _ in err.lines() {});
    let port = line
        .split("listening on 127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (Gateway(child), port)
}

fn storescu(port: u16, files: &[PathBuf]) -> bool {
    storescu_as("VEIL", port, files)
}

fn storescu_as(called: &str, port: u16, files: &[PathBuf]) -> bool {
    Command::new("storescu")
        .args([
            "-aet",
            "SENDER",
            "-aec",
            called,
            "127.0.0.1",
            &port.to_string(),
        ])
        .args(files)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The data set of a Part 10 file: what follows the file meta group.
fn data_set(part10: &[u8]) -> &[u8] {
    assert_eq!(&part10[128..132], b"DICM");
    let group = u32::from_le_bytes(part10[140..144].try_into().unwrap()) as usize;
    &part10[144 + group..]
}

fn sop_instance(part10: &[u8]) -> String {
    dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Always)
        .from_reader(part10)
        .unwrap()
        .meta()
        .media_storage_sop_instance_uid()
        .trim_end_matches('\0')
        .to_string()
}

fn parse(part10: &[u8]) -> dicom_object::InMemDicomObject {
    dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Always)
        .from_reader(part10)
        .unwrap()
        .into_inner()
}

/// The same attributes with the same values, sequences item by item.
fn assert_same_attributes(
    got: &dicom_object::InMemDicomObject,
    want: &dicom_object::InMemDicomObject,
    path: &str,
) {
    use dicom_core::value::Value;
    let tags = |o: &dicom_object::InMemDicomObject| -> Vec<dicom_core::Tag> {
        o.iter().map(|e| e.header().tag).collect()
    };
    assert_eq!(tags(got), tags(want), "{path}: attributes differ");
    for (g, w) in got.iter().zip(want.iter()) {
        let here = format!("{path}/{}", g.header().tag);
        match (g.value(), w.value()) {
            (Value::Sequence(a), Value::Sequence(b)) => {
                assert_eq!(a.items().len(), b.items().len(), "{here}: items differ");
                for (i, (x, y)) in a.items().iter().zip(b.items()).enumerate() {
                    assert_same_attributes(x, y, &format!("{here}[{i}]"));
                }
            }
            (a, b) => assert!(
                a.to_bytes().ok() == b.to_bytes().ok(),
                "{here}: values differ"
            ),
        }
    }
}

/// A gateway without a route: it receives and spools only.
fn receive_only_config(dir: &Path) -> PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        "[listen]\naddress = \"127.0.0.1:0\"\nae_title = \"VEIL\"\n\n[[allow]]\nae_title = \"SENDER\"\naddress = \"127.0.0.1\"\n\n[spool]\ndir = \"spool\"\nkey = \"site.key\"\n",
    )
    .unwrap();
    path
}

/// `n` copies of `src` in `dir`, each with its own SOP Instance UID (under `uid_branch` of
/// Veil's test root) and whatever `tweak` changes in copy `i`.
fn copies(
    src: &Path,
    dir: &Path,
    n: u32,
    uid_branch: &str,
    tweak: impl Fn(&mut dicom_object::DefaultDicomObject, u32),
) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let mut obj = dicom_object::OpenFileOptions::new().open_file(src).unwrap();
            let uid = format!("1.2.826.0.1.3680043.10.1139.{uid_branch}.{i}");
            obj.put(dicom_core::DataElement::new(
                dicom_dictionary_std::tags::SOP_INSTANCE_UID,
                dicom_core::VR::UI,
                dicom_core::PrimitiveValue::from(uid.as_str()),
            ));
            obj.update_meta(|m| m.media_storage_sop_instance_uid = uid.clone());
            tweak(&mut obj, i);
            let p = dir.join(format!("{i:02}.dcm"));
            obj.write_to_file(&p).unwrap();
            p
        })
        .collect()
}

/// The instance of `expected` (veil deid's outputs) with the SOP Instance UID of `got`.
fn counterpart<'a>(expected: &'a [Vec<u8>], got: &[u8]) -> &'a [u8] {
    let uid = sop_instance(got);
    expected
        .iter()
        .find(|e| sop_instance(e) == uid)
        .expect("the receiver holds an instance veil deid did not write")
}

/// Every instance Orthanc holds is, attribute for attribute, veil deid's output (Orthanc writes
/// some sequences back with explicit lengths, so bytes are compared at storescp +B).
fn assert_holds_veil_deid_output(orthanc: &Orthanc, expected: &[Vec<u8>]) {
    for id in orthanc.instances() {
        let got = orthanc.file(&id);
        assert_same_attributes(&parse(&got), &parse(counterpart(expected, &got)), "");
    }
}

/// Every data set a bit-preserving storescp wrote into `dir` is byte for byte veil deid's.
fn assert_received_veil_deid_output(dir: &Path, expected: &[Vec<u8>]) {
    for path in files_in(dir) {
        let got = std::fs::read(path).unwrap();
        assert!(
            data_set(&got) == data_set(counterpart(expected, &got)),
            "a data set received differs from veil deid's output"
        );
    }
}

/// The peers (programs that must run, or files such as a plugin that must exist) and the test
/// files a test needs: None when one is missing, which fails the test under CI (scripts/test.sh
/// installs and fetches them all) and skips it, said on stderr, elsewhere.
fn needs(peers: &[&str], rels: &[&str]) -> Option<Vec<PathBuf>> {
    let missing: Vec<&str> = peers
        .iter()
        .copied()
        .filter(|p| match p.starts_with('/') {
            true => !Path::new(p).exists(),
            false => Command::new(p).arg("--version").output().is_err(),
        })
        .collect();
    assert!(
        missing.is_empty() || !ci(),
        "{missing:?} missing (scripts/test.sh installs the peers)"
    );
    let files: Vec<PathBuf> = rels.iter().filter_map(|r| testdata(r)).collect();
    if !missing.is_empty() || files.len() < rels.len() {
        eprintln!("skipping: {missing:?} or test data missing");
        return None;
    }
    Some(files)
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn instances_arrive_in_orthanc_as_veil_deid_writes_them_and_wait_while_it_is_down() {
    let Some(mut files) = needs(
        &["storescu", "Orthanc"],
        &[
            "pydicom/CT_small.dcm",
            "pydicom/MR_small.dcm",
            "deid-data/ultrasounds/GREYSCALE_IMAGE.dcm",
            "deid-data/ultrasounds/RGB_IMAGE.dcm",
        ],
    ) else {
        return;
    };
    let late = files.pop().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut orthanc = Orthanc::start(dir.path());
    let (key, policy, _gateway, port) = gateway_to(
        dir.path(),
        &format!("dicom://ORTHANC@127.0.0.1:{}", orthanc.dicom),
    );
    assert!(storescu(port, &files), "storescu failed");
    wait_for("the instances in Orthanc", Duration::from_secs(120), || {
        orthanc.instances().len() == files.len()
    });

    // What `veil deid` writes for the same files, same key and policy.
    let expected = veil_deid(&key, Some(&policy), &dir.path().join("deid-out"), &files);
    assert_eq!(expected.len(), files.len());
    for id in orthanc.instances() {
        let got = orthanc.file(&id);
        let uid = sop_instance(&got);
        let want = expected
            .iter()
            .find(|e| sop_instance(e) == uid)
            .unwrap_or_else(|| panic!("Orthanc holds an instance veil deid did not write"));
        // Orthanc writes some instances back with DCMTK, which gives sequences explicit
        // lengths: compared attribute by attribute, value bytes equal (the byte-for-byte
        // comparison is the bit-preserving storescp test below).
        assert_same_attributes(&parse(&got), &parse(want), "");
    }

    // Orthanc down: the next instance waits in the spool, and arrives when it is back.
    orthanc.stop();
    assert!(
        storescu(port, &[late]),
        "the gateway did not take an instance"
    );
    std::thread::sleep(Duration::from_secs(2));
    let spool = veil_gateway::Spool::attach(
        &dir.path().join("spool"),
        &veil_keys::Key::load(&key).unwrap(),
    )
    .unwrap();
    let queued = || spool.list().unwrap().len() + spool.list_outgoing().unwrap().len();
    assert_eq!(queued(), 1, "the instance is not waiting in the spool");
    // The operator sees it: one waiting, the destination failing (exit 4).
    let config = dir.path().join("gateway.toml");
    let status = |json: bool| {
        let mut c = veil();
        c.args(["gateway", "status", "--config"]).arg(&config);
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    // The drain reports the failure once it has tried (the ultrasound is OCR'd first, which
    // takes a few seconds on a busy machine).
    wait_for(
        "the status to report the failure",
        Duration::from_secs(60),
        || status(false).status.code() == Some(4),
    );
    let down = status(false);
    let text = String::from_utf8_lossy(&down.stdout).to_string();
    assert_eq!(down.status.code(), Some(4), "{text}");
    assert!(
        text.contains("1 instance(s) waiting") && text.contains("FAILING"),
        "{text}"
    );
    orthanc.restart();
    wait_for(
        "the waiting instance in Orthanc",
        Duration::from_secs(120),
        || orthanc.instances().len() == files.len() + 1,
    );
    wait_for("the spool to empty", Duration::from_secs(10), || {
        queued() == 0
    });
    wait_for("the status to clear", Duration::from_secs(10), || {
        status(false).status.code() == Some(0)
    });
    let up: serde_json::Value = serde_json::from_slice(&status(true).stdout).unwrap();
    assert_eq!(up["waiting"], 0);
    assert_eq!(up["drain"]["delivered"], files.len() as u64 + 1);
    assert!(up["drain"]["failing"].is_null());
}

/// Two routes, three destinations: route "research" stores in Orthanc A and in a bit-preserving
/// storescp, route "archive" in Orthanc B. Every instance reaches all three as `veil deid` writes
/// it; with Orthanc B down, A and storescp still get the next instance while B's lane waits
/// (status: that lane failing, exit 4), and B gets it once it is back.
#[test]
fn several_routes_and_destinations_each_get_every_instance_and_fail_apart() {
    let Some(mut files) = needs(
        &["storescu", "storescp", "Orthanc"],
        &[
            "pydicom/CT_small.dcm",
            "pydicom/MR_small.dcm",
            "pydicom/examples_overlay.dcm",
        ],
    ) else {
        return;
    };
    let late = files.pop().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = Orthanc::start_as(dir.path(), "ORTHANC_A", &[], "");
    let mut b = Orthanc::start_as(dir.path(), "ORTHANC_B", &[], "");
    let received = dir.path().join("received");
    let (_storescp, scp_port) = storescp(&received);
    let key = dir.path().join("site.key");
    assert!(veil()
        .args(["key", "new"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let policy = dir.path().join("route.toml");
    std::fs::write(&policy, "[faces]\ndeface = false\n").unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\naddress = \"127.0.0.1:0\"\nae_title = \"VEIL\"\n\n[[allow]]\nae_title = \"SENDER\"\n\n[spool]\ndir = \"spool\"\nkey = \"site.key\"\n\n[[route]]\nname = \"research\"\npolicy = \"route.toml\"\ndestination = [\"dicom://ORTHANC_A@127.0.0.1:{}\", \"dicom://STORESCP@127.0.0.1:{scp_port}\"]\n\n[[route]]\nname = \"archive\"\npolicy = \"route.toml\"\ndestination = \"dicom://ORTHANC_B@127.0.0.1:{}\"\n",
            a.dicom, b.dicom
        ),
    )
    .unwrap();
    let (_gateway, port) = start_gateway(&config);
    assert!(storescu(port, &files), "storescu failed");
    let everywhere = |n: usize| a.instances().len() == n && files_in(&received).len() == n;
    wait_for(
        "both instances at A and storescp",
        Duration::from_secs(120),
        || everywhere(2),
    );
    wait_for("both instances at B", Duration::from_secs(120), || {
        b.instances().len() == 2
    });
    let expected = veil_deid(&key, Some(&policy), &dir.path().join("deid-out"), &files);
    assert_holds_veil_deid_output(&a, &expected);
    assert_holds_veil_deid_output(&b, &expected);
    assert_received_veil_deid_output(&received, &expected);

    b.stop();
    assert!(
        storescu(port, std::slice::from_ref(&late)),
        "storescu failed"
    );
    wait_for(
        "the late instance at A and storescp",
        Duration::from_secs(120),
        || everywhere(3),
    );
    let status = || {
        let out = veil()
            .args(["gateway", "status", "--json", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), json)
    };
    wait_for(
        "archive's lane to report the failure",
        Duration::from_secs(60),
        || {
            let (code, s) = status();
            let archive = s["lanes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["route"] == "archive")
                .cloned();
            code == Some(4)
                && archive.is_some_and(|l| l["waiting"] == 1 && !l["drain"]["failing"].is_null())
        },
    );
    // Research's lanes are not held up by archive's.
    wait_for(
        "research's lanes to be clear",
        Duration::from_secs(30),
        || {
            let (_, s) = status();
            let lanes = s["lanes"].as_array().unwrap().clone();
            let research: Vec<_> = lanes.iter().filter(|l| l["route"] == "research").collect();
            research.len() == 2
                && research
                    .iter()
                    .all(|l| l["waiting"] == 0 && l["drain"]["delivered"] == 3)
        },
    );
    b.restart();
    wait_for("the late instance at B", Duration::from_secs(120), || {
        b.instances().len() == 3
    });
    wait_for("the status to clear", Duration::from_secs(30), || {
        status().0 == Some(0)
    });
    let mut all = files.clone();
    all.push(late);
    let expected = veil_deid(&key, Some(&policy), &dir.path().join("deid-all"), &all);
    assert_holds_veil_deid_output(&b, &expected);
}

/// Sets up key, route policy and a gateway routed to `destination`; returns the key path, the
/// policy path and the running gateway with its port.
fn gateway_to(dir: &Path, destination: &str) -> (PathBuf, PathBuf, Gateway, u16) {
    // Defacing off: instances go on their own, without waiting for their series to be quiet.
    let policy = dir.join("route.toml");
    std::fs::write(&policy, "[faces]\ndeface = false\n").unwrap();
    let (key, gateway, port) = gateway_routed(dir, destination, "policy = \"route.toml\"\n");
    (key, policy, gateway, port)
}

/// A new key and a running gateway routed to `destination`, `route_extra` added to its
/// `[route]`; returns the key path, the gateway and its port.
fn gateway_routed(dir: &Path, destination: &str, route_extra: &str) -> (PathBuf, Gateway, u16) {
    let key = dir.join("site.key");
    let made = veil().args(["key", "new"]).arg(&key).output().unwrap();
    assert!(made.status.success());
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\naddress = \"127.0.0.1:0\"\nae_title = \"VEIL\"\n\n[[allow]]\nae_title = \"SENDER\"\n\n[spool]\ndir = \"spool\"\nkey = \"site.key\"\n\n[route]\ndestination = \"{destination}\"\n{route_extra}"
        ),
    )
    .unwrap();
    let (gateway, port) = start_gateway(&config);
    (key, gateway, port)
}

/// `veil deid` of `files` with the key and policy: the outputs' bytes.
fn veil_deid(key: &Path, policy: Option<&Path>, out: &Path, files: &[PathBuf]) -> Vec<Vec<u8>> {
    let mut command = veil();
    command.args(["deid", "--key"]).arg(key);
    if let Some(p) = policy {
        command.arg("--policy").arg(p);
    }
    let status = command.arg("--out").arg(out).args(files).output().unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    walkdir::WalkDir::new(out)
        .into_iter()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "dcm"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect()
}

/// dcmtk's `storescp` in bit-preserving mode (+B: each data set written exactly as it came over
/// the network) on a free port, writing into `dir`.
fn storescp(dir: &Path) -> (Gateway, u16) {
    std::fs::create_dir_all(dir).unwrap();
    let port = free_port();
    let child = Command::new("storescp")
        .args(["+B", "-aet", "STORESCP", "-od"])
        .arg(dir)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Listening once a C-ECHO goes through.
    wait_for("storescp", Duration::from_secs(30), || {
        Command::new("echoscu")
            .args(["-aec", "STORESCP", "127.0.0.1", &port.to_string()])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    (Gateway(child), port)
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// storescu re-encodes what it sends (it drops Data Set Trailing Padding and trailing spaces of
/// some texts), so the reference is `veil deid` of exactly what storescu sends: captured first by
/// a bit-preserving storescp, then sent again through the gateway to another one.
#[test]
fn a_bit_preserving_receiver_gets_the_data_set_veil_deid_writes_byte_for_byte() {
    let Some(files) = needs(
        &["storescp"],
        &[
            "pydicom/CT_small.dcm",
            "pydicom/MR_small.dcm",
            "deid-data/ultrasounds/GREYSCALE_IMAGE.dcm",
            "deid-data/ultrasounds/RGB_IMAGE.dcm",
        ],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_capture, capture_port) = storescp(&dir.path().join("as-sent"));
    assert!(
        storescu_as("STORESCP", capture_port, &files),
        "storescu to storescp failed"
    );
    let sent = files_in(&dir.path().join("as-sent"));
    assert_eq!(sent.len(), files.len());

    let (_receiver, port) = storescp(&dir.path().join("received"));
    let (key, policy, _gateway, gw_port) =
        gateway_to(dir.path(), &format!("dicom://STORESCP@127.0.0.1:{port}"));
    assert!(storescu(gw_port, &files), "storescu to the gateway failed");
    wait_for(
        "the instances at storescp",
        Duration::from_secs(120),
        || files_in(&dir.path().join("received")).len() == files.len(),
    );
    let expected = veil_deid(&key, Some(&policy), &dir.path().join("deid-out"), &sent);
    assert_eq!(expected.len(), files.len());
    assert_received_veil_deid_output(&dir.path().join("received"), &expected);
}

/// A test PKI made with the openssl command: a CA, and certificates it signs for `names`
/// (each valid for 127.0.0.1 and localhost), plus one self-signed "rogue" certificate; PEM
/// files `<name>.crt` and `<name>.key` in `dir`.
fn test_pki(dir: &Path, names: &[&str]) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let subject = |cn: &str| format!("/CN={cn}");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        &subject("Veil test CA"),
    ]);
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\n",
    )
    .unwrap();
    for name in names.iter().chain(&["rogue"]) {
        let (crt, key, csr) = (
            format!("{name}.crt"),
            format!("{name}.key"),
            format!("{name}.csr"),
        );
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subject(name),
        ]);
        let signer: &[&str] = match *name {
            "rogue" => &["-signkey", &key],
            _ => &["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"],
        };
        let mut args = vec!["x509", "-req", "-in", &csr, "-out", &crt, "-days", "2"];
        args.extend_from_slice(signer);
        args.extend_from_slice(&["-extfile", "san.cnf"]);
        openssl(&args);
    }
}

/// DICOM TLS both ways: the listener takes only TLS from senders whose certificate the site CA
/// signed (storescu with such a certificate gets through; in clear, or with a self-signed
/// certificate, it is refused), and the route reaches a TLS storescp that itself demands the
/// gateway's certificate; what arrives is byte for byte `veil deid`'s output.
#[test]
fn dicom_tls_on_the_listener_and_to_the_destination() {
    let Some(files) = needs(
        &["storescu", "storescp", "openssl"],
        &["pydicom/CT_small.dcm", "pydicom/MR_small.dcm"],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    test_pki(&pki, &["gateway", "sender", "pacs"]);
    let pem = |f: &str| pki.join(f).display().to_string();
    // The destination: storescp over TLS, requiring a client certificate from the CA.
    let received = dir.path().join("received");
    std::fs::create_dir_all(&received).unwrap();
    let dest_port = free_port();
    let storescp = Command::new("storescp")
        .args(["+B", "-aet", "STORESCP", "-od"])
        .arg(&received)
        .args([
            "+tls",
            &pem("pacs.key"),
            &pem("pacs.crt"),
            "+cf",
            &pem("ca.crt"),
            "--require-peer-cert",
        ])
        .arg(dest_port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _storescp = Gateway(storescp);
    let route = format!(
        "policy = \"route.toml\"\ntls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        pem("ca.crt"),
        pem("gateway.crt"),
        pem("gateway.key")
    );
    std::fs::write(dir.path().join("route.toml"), "[faces]\ndeface = false\n").unwrap();
    let key = dir.path().join("site.key");
    assert!(veil()
        .args(["key", "new"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\naddress = \"127.0.0.1:0\"\nae_title = \"VEIL\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntls_client_ca = \"{}\"\n\n[[allow]]\nae_title = \"SENDER\"\n\n[spool]\ndir = \"spool\"\nkey = \"site.key\"\n\n[route]\ndestination = \"dicom+tls://STORESCP@127.0.0.1:{dest_port}\"\n{route}",
            pem("gateway.crt"),
            pem("gateway.key"),
            pem("ca.crt")
        ),
    )
    .unwrap();
    let (_gateway, port) = start_gateway(&config);
    let send = |tls: Option<&str>| {
        let mut c = Command::new("storescu");
        c.args(["-aet", "SENDER", "-aec", "VEIL"]);
        if let Some(name) = tls {
            let (k, c2) = (pem(&format!("{name}.key")), pem(&format!("{name}.crt")));
            c.args(["+tls", &k, &c2, "+cf", &pem("ca.crt")]);
        }
        c.args(["127.0.0.1", &port.to_string()]).args(&files);
        c.output().unwrap().status.success()
    };
    assert!(!send(None), "a sender in clear must be refused");
    assert!(
        !send(Some("rogue")),
        "a certificate the CA did not sign must be refused"
    );
    assert!(send(Some("sender")), "storescu over TLS failed");
    wait_for(
        "the instances at the TLS storescp",
        Duration::from_secs(120),
        || files_in(&received).len() == files.len(),
    );
    let expected = veil_deid(
        &key,
        Some(&dir.path().join("route.toml")),
        &dir.path().join("deid-out"),
        &files,
    );
    // storescu re-encodes a little (see the bit-preserving test): compare with what it sends,
    // which is what the gateway spooled; here the files have no element it changes.
    assert_received_veil_deid_output(&received, &expected);
}

/// SIGKILL at several points while instances are being received and forwarded, then a restart:
/// every instance storescu was told is stored arrives in Orthanc, once (Orthanc keys instances
/// by SOP Instance UID, and a resent instance is the same object).
#[test]
fn killed_while_forwarding_every_acknowledged_instance_arrives_once() {
    let Some(found) = needs(&["storescu", "Orthanc"], &["pydicom/MR_small.dcm"]) else {
        return;
    };
    let mr = found[0].clone();
    let dir = tempfile::tempdir().unwrap();
    // Twelve instances of a real MR, each with its own SOP Instance UID.
    let files = copies(&mr, &dir.path().join("inputs"), 12, "99", |_, _| {});
    let orthanc = Orthanc::start(dir.path());
    let (_key, _policy, gateway, mut port) = gateway_to(
        dir.path(),
        &format!("dicom://ORTHANC@127.0.0.1:{}", orthanc.dicom),
    );
    let config = dir.path().join("gateway.toml");
    let mut gateway = Some(gateway);
    // Kill points: as storescu starts, 20 ms into its association, and right after it was told
    // every instance is stored (while the drain forwards them).
    for (round, chunk) in files.chunks(4).enumerate() {
        let sender = {
            let chunk = chunk.to_vec();
            std::thread::spawn(move || storescu(port, &chunk))
        };
        let acknowledged = match round {
            0 | 1 => {
                std::thread::sleep(Duration::from_millis(20 * round as u64));
                drop(gateway.take()); // SIGKILL
                sender.join().unwrap()
            }
            _ => {
                let ok = sender.join().unwrap();
                assert!(ok, "storescu failed");
                drop(gateway.take()); // SIGKILL
                ok
            }
        };
        let (g, p) = start_gateway(&config);
        gateway = Some(g);
        port = p;
        if !acknowledged {
            // storescu saw the kill: as a sender would, it sends again.
            assert!(storescu(port, chunk), "storescu failed after the restart");
        }
    }
    wait_for(
        "every instance in Orthanc",
        Duration::from_secs(120),
        || orthanc.instances().len() == files.len(),
    );
    // And none twice: Orthanc holds exactly the twelve.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(orthanc.instances().len(), files.len());
}

/// A DICOMweb destination: the gateway posts batches with STOW-RS to Orthanc's DICOMweb plugin
/// (Debian `orthanc-dicomweb`); what arrives is, attribute for attribute, `veil deid`'s output.
#[test]
fn stow_rs_delivers_to_orthanc_dicomweb() {
    let Some(files) = needs(
        &["storescu", DICOMWEB_PLUGIN],
        &[
            "pydicom/CT_small.dcm",
            "pydicom/MR_small.dcm",
            "deid-data/ultrasounds/GREYSCALE_IMAGE.dcm",
        ],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let orthanc = Orthanc::start_with(dir.path(), &[DICOMWEB_PLUGIN]);
    let (key, policy, _gateway, port) = gateway_to(
        dir.path(),
        &format!("http://127.0.0.1:{}/dicom-web/studies", orthanc.http),
    );
    assert!(storescu(port, &files), "storescu failed");
    wait_for("the instances in Orthanc", Duration::from_secs(120), || {
        orthanc.instances().len() == files.len()
    });
    let expected = veil_deid(&key, Some(&policy), &dir.path().join("deid-out"), &files);
    assert_holds_veil_deid_output(&orthanc, &expected);
}

/// Pulling a cohort: a second Orthanc plays the PACS, holding real CT and MR studies; `veil
/// gateway pull` finds each listed patient's studies (C-FIND) and moves them (C-MOVE) to the
/// running gateway, which routes them to the destination Orthanc de-identified. A patient the
/// PACS does not know is reported by row number, and the exit code says the pull is incomplete.
#[test]
fn a_cohort_is_pulled_from_a_pacs_with_c_find_and_c_move() {
    let Some(files) = needs(
        &["Orthanc"],
        &["pydicom/CT_small.dcm", "pydicom/MR_small.dcm"],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dest = Orthanc::start(dir.path());
    let key = dir.path().join("site.key");
    assert!(veil()
        .args(["key", "new"])
        .arg(&key)
        .output()
        .unwrap()
        .status
        .success());
    let policy = dir.path().join("route.toml");
    std::fs::write(&policy, "[faces]\ndeface = false\n").unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\naddress = \"127.0.0.1:0\"\nae_title = \"VEIL\"\n\n[[allow]]\nae_title = \"PACS\"\naddress = \"127.0.0.1\"\n\n[spool]\ndir = \"spool\"\nkey = \"site.key\"\n\n[route]\npolicy = \"route.toml\"\ndestination = \"dicom://ORTHANC@127.0.0.1:{}\"\n",
            dest.dicom
        ),
    )
    .unwrap();
    let (_gateway, port) = start_gateway(&config);
    let pacs = Orthanc::start_as(
        dir.path(),
        "PACS",
        &[],
        &format!(r#""DicomModalities": {{"veil": ["VEIL", "127.0.0.1", {port}]}},"#),
    );
    for f in &files {
        assert_eq!(
            post(pacs.http, "/instances", &std::fs::read(f).unwrap()),
            Some(200)
        );
    }
    let cohort = dir.path().join("cohort.csv");
    std::fs::write(&cohort, "patient_id\n1CT1\n4MR1\nNOT_IN_THE_PACS\n").unwrap();
    let out = veil()
        .args(["gateway", "pull", "--config"])
        .arg(&config)
        .args(["--from", &format!("dicom://PACS@127.0.0.1:{}", pacs.dicom)])
        .arg(&cohort)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("row 1: 1 study(ies), 1 instance(s) retrieved, 0 failed"),
        "{text}"
    );
    assert!(
        text.contains("row 2: 1 study(ies), 1 instance(s) retrieved, 0 failed"),
        "{text}"
    );
    assert!(text.contains("row 3: 0 study(ies)"), "{text}");
    assert!(
        !text.contains("1CT1") && !text.contains("NOT_IN_THE_PACS"),
        "{text}"
    );
    wait_for(
        "the pulled instances at the destination",
        Duration::from_secs(120),
        || dest.instances().len() == 2,
    );
    // De-identified as veil deid de-identifies what the PACS holds.
    let held = pacs.export_to(dir.path());
    let expected = veil_deid(&key, Some(&policy), &dir.path().join("deid-out"), &held);
    assert_holds_veil_deid_output(&dest, &expected);
}

/// A consent-gated route: the route releases to a registered recipient for a purpose, so only
/// patients whose consent allows that purpose are sent (1CT1 refused it, 4MR1 granted it), each
/// instance sent is recorded in the disclosure ledger (the patient's `veil disclosures` shows
/// the recipient), and what arrives is what `veil release` gives that recipient.
#[test]
fn a_consent_gated_route_sends_only_consenting_patients_and_records_each_in_the_ledger() {
    let Some(files) = needs(
        &["storescu", "Orthanc"],
        &["pydicom/CT_small.dcm", "pydicom/MR_small.dcm"],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dest = Orthanc::start(dir.path());
    let key = dir.path().join("site.key");
    assert!(veil()
        .args(["key", "new"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let db = dir.path().join("veil.db");
    let registry = |args: &[&str]| {
        let out = veil()
            .current_dir(dir.path())
            .env("VEIL_DB", &db)
            .env("VEIL_KEY_FILE", &key)
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.code(), text, err)
    };
    for (patient, state) in [("1CT1", "refused"), ("4MR1", "granted")] {
        let args = [
            "consent",
            "set",
            patient,
            "--purpose",
            "internal-research",
            "--state",
            state,
        ];
        let (code, _, err) = registry(&args);
        assert_eq!(code, Some(0), "{err}");
    }
    let (code, _, err) = registry(&["recipient", "add", "lab", "--purpose", "internal-research"]);
    assert_eq!(code, Some(0), "{err}");
    let policy = dir.path().join("route.toml");
    std::fs::write(&policy, "[faces]\ndeface = false\n").unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\naddress = \"127.0.0.1:0\"\nae_title = \"VEIL\"\n\n[[allow]]\nae_title = \"SENDER\"\n\n[spool]\ndir = \"spool\"\nkey = \"site.key\"\n\n[route]\npolicy = \"route.toml\"\ndestination = \"dicom://ORTHANC@127.0.0.1:{}\"\nrecipient = \"lab\"\npurpose = \"internal-research\"\nstore = \"veil.db\"\n",
            dest.dicom
        ),
    )
    .unwrap();
    let (_gateway, port) = start_gateway(&config);
    assert!(storescu(port, &files), "storescu failed");
    let status = || {
        let out = veil()
            .args(["gateway", "status", "--json", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    wait_for(
        "one delivered, one excluded",
        Duration::from_secs(120),
        || {
            let s = status();
            s["drain"]["delivered"] == 1 && s["drain"]["excluded"] == 1 && s["waiting"] == 0
        },
    );
    assert_eq!(dest.instances().len(), 1);
    assert_eq!(
        status()["held_back"],
        serde_json::json!({}),
        "nothing held back"
    );
    // The ledger: 4MR1's record names the recipient; 1CT1's names nobody.
    let (code, text, err) = registry(&["disclosures", "4MR1", "--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        text.contains("\"lab\"") && text.contains("internal-research"),
        "{text}"
    );
    let (code, text, err) = registry(&["disclosures", "1CT1", "--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!text.contains("\"lab\""), "{text}");
    // What arrived is what `veil release` gives the same recipient for the same files.
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for f in &files {
        std::fs::copy(f, inputs.join(f.file_name().unwrap())).unwrap();
    }
    let (code, text, err) = registry(&[
        "release",
        "in",
        "--recipient",
        "lab",
        "--purpose",
        "internal-research",
        "--policy",
        "route.toml",
        "--out",
        "rel",
    ]);
    assert_eq!(code, Some(0), "{text}{err}");
    let released: Vec<Vec<u8>> = walkdir::WalkDir::new(dir.path().join("rel"))
        .into_iter()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "dcm"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    assert_eq!(released.len(), 1);
    assert_holds_veil_deid_output(&dest, &released);
}

/// Pulling with C-GET and with WADO-RS: the PACS (a second Orthanc, with the DICOMweb plugin)
/// sends the studies back on the pull's own association (C-GET; a JPEG 2000 instance stays JPEG
/// 2000, since the pull offers every transfer syntax it reads) or in a WADO-RS multipart answer;
/// both go into the gateway's spool, and the running gateway routes them to the destination
/// exactly as `veil deid` de-identifies the PACS's files.
#[test]
fn a_cohort_is_pulled_with_c_get_and_with_wado_rs() {
    let Some(files) = needs(
        &["Orthanc", DICOMWEB_PLUGIN],
        &[
            "pydicom/CT_small.dcm",
            "pydicom/JPEG2000.dcm",
            "pydicom/MR_small.dcm",
        ],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dest = Orthanc::start(dir.path());
    let (key, policy, _gateway, port) = gateway_to(
        dir.path(),
        &format!("dicom://ORTHANC@127.0.0.1:{}", dest.dicom),
    );
    let config = dir.path().join("gateway.toml");
    // The PACS knows the gateway (C-FIND and C-GET need a known modality in Orthanc) but the
    // gateway does not accept it as a sender (only SENDER): nothing can arrive by C-MOVE or
    // C-STORE.
    let pacs = Orthanc::start_as(
        dir.path(),
        "PACS",
        &[DICOMWEB_PLUGIN],
        &format!(r#""DicomModalities": {{"veil": ["VEIL", "127.0.0.1", {port}]}},"#),
    );
    for f in &files {
        assert_eq!(
            post(pacs.http, "/instances", &std::fs::read(f).unwrap()),
            Some(200)
        );
    }
    let pull = |from: String, retrieve: Option<&str>, cohort: &str| {
        let list = dir.path().join("cohort.csv");
        std::fs::write(&list, cohort).unwrap();
        let mut cmd = veil();
        cmd.args(["gateway", "pull", "--config"])
            .arg(&config)
            .args(["--from", &from]);
        if let Some(r) = retrieve {
            cmd.args(["--retrieve", r]);
        }
        let out = cmd.arg(&list).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let text = pull(
        format!("dicom://PACS@127.0.0.1:{}", pacs.dicom),
        Some("get"),
        "patient_id\n1CT1\n8NM1\n",
    );
    for row in 1..=2 {
        let line = format!("row {row}: 1 study(ies), 1 instance(s) retrieved, 0 failed");
        assert!(text.contains(&line), "{text}");
    }
    wait_for(
        "the C-GET instances at the destination",
        Duration::from_secs(120),
        || dest.instances().len() == 2,
    );
    let web = format!("http://127.0.0.1:{}/dicom-web", pacs.http);
    let text = pull(web, None, "patient_id\n4MR1\n");
    assert!(
        text.contains("row 1: 1 study(ies), 1 instance(s) retrieved, 0 failed"),
        "{text}"
    );
    wait_for(
        "the WADO-RS instance at the destination",
        Duration::from_secs(120),
        || dest.instances().len() == 3,
    );
    let held = pacs.export_to(dir.path());
    let expected = veil_deid(&key, Some(&policy), &dir.path().join("deid-out"), &held);
    assert_holds_veil_deid_output(&dest, &expected);
}

/// With the default policy (defacing on), CT and MR instances wait for their whole series: once
/// the series has been quiet for the route's quiet period it is planned as one volume and sent,
/// each instance as `veil deid` writes it when given the same files.
#[test]
fn a_series_waits_until_it_is_quiet_and_goes_to_the_series_stage_whole() {
    let Some(found) = needs(&["storescu", "Orthanc"], &["pydicom/CT_small.dcm"]) else {
        return;
    };
    let ct = found[0].clone();
    let dir = tempfile::tempdir().unwrap();
    // Five slices of one series, each its own instance, 5 mm apart.
    let files = copies(&ct, &dir.path().join("inputs"), 5, "98", |obj, i| {
        use dicom_core::{DataElement, PrimitiveValue as V, VR};
        use dicom_dictionary_std::tags as t;
        let z = format!("{}", 5 * i);
        obj.put(DataElement::new(
            t::INSTANCE_NUMBER,
            VR::IS,
            V::from((i + 1).to_string()),
        ));
        let position = ["0".to_string(), "0".to_string(), z].into_iter().collect();
        obj.put(DataElement::new(
            t::IMAGE_POSITION_PATIENT,
            VR::DS,
            V::Strs(position),
        ));
    });
    let orthanc = Orthanc::start(dir.path());
    let destination = format!("dicom://ORTHANC@127.0.0.1:{}", orthanc.dicom);
    let (key, _gateway, port) =
        gateway_routed(dir.path(), &destination, "series_quiet_seconds = 2\n");
    let config = dir.path().join("gateway.toml");
    let t = Instant::now();
    assert!(storescu(port, &files), "storescu failed");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        t.elapsed() >= Duration::from_secs(2) || orthanc.instances().is_empty(),
        "instances left before their series was quiet"
    );
    wait_for("the series in Orthanc", Duration::from_secs(120), || {
        orthanc.instances().len() == files.len()
    });
    // A slice of the same series arriving after it was planned and sent cannot be checked for
    // a face alone: held back, never sent.
    let late = {
        let mut obj = dicom_object::OpenFileOptions::new()
            .open_file(&files[0])
            .unwrap();
        let uid = "1.2.826.0.1.3680043.10.1139.98.99";
        obj.put(dicom_core::DataElement::new(
            dicom_dictionary_std::tags::SOP_INSTANCE_UID,
            dicom_core::VR::UI,
            dicom_core::PrimitiveValue::from(uid),
        ));
        obj.update_meta(|m| m.media_storage_sop_instance_uid = uid.into());
        let p = dir.path().join("late.dcm");
        obj.write_to_file(&p).unwrap();
        p
    };
    assert!(storescu(port, &[late]));
    let status = || -> serde_json::Value {
        let out = veil()
            .args(["gateway", "status", "--json", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    wait_for("the late slice held back", Duration::from_secs(30), || {
        status()["held_back"]["late_series_member"] == 1
    });
    assert_eq!(
        orthanc.instances().len(),
        files.len(),
        "the late slice was sent"
    );
    let expected = veil_deid(&key, None, &dir.path().join("deid-out"), &files);
    assert_eq!(expected.len(), files.len());
    assert_holds_veil_deid_output(&orthanc, &expected);
}

/// A real head CT (InVesalius' example, built into a series by scripts/faces/make-series.py)
/// through the gateway with the default policy: the series waits until quiet, is defaced as one
/// volume, and every data set received (bit-preserving storescp) is byte for byte what `veil
/// deid` writes for exactly what storescu sent — which `veil deid` reports as defaced.
#[test]
fn a_head_ct_through_the_gateway_is_defaced_as_veil_deid_defaces_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/faces/src");
    let have = src.join("Cranium.inv3").is_file()
        && Command::new("storescp").arg("--version").output().is_ok();
    assert!(
        have || !ci(),
        "head CT or dcmtk missing (scripts/setup.d/faces.sh, test.sh)"
    );
    if !have {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases");
    let made = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/faces/make-series.py"))
        .arg(&cases)
        .args(["--cases", "cranium-ct", "--src"])
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(cases.join("cranium-ct/dicom"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();

    let (_capture, capture_port) = storescp(&dir.path().join("as-sent"));
    assert!(storescu_as("STORESCP", capture_port, &files));
    let sent = files_in(&dir.path().join("as-sent"));
    assert_eq!(sent.len(), files.len());

    let (_receiver, port) = storescp(&dir.path().join("received"));
    let destination = format!("dicom://STORESCP@127.0.0.1:{port}");
    let (key, _gateway, gw_port) =
        gateway_routed(dir.path(), &destination, "series_quiet_seconds = 2\n");
    assert!(storescu(gw_port, &files), "storescu to the gateway failed");
    wait_for(
        "the defaced series at storescp",
        Duration::from_secs(300),
        || files_in(&dir.path().join("received")).len() == files.len(),
    );

    let out = dir.path().join("deid-out");
    let run = veil()
        .args(["deid", "--json", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(&out)
        .args(&sent)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(run.status.success(), "{text}");
    let report: serde_json::Value = serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap();
    assert_eq!(report["series"][0]["outcome"], "defaced", "{report}");
    let expected: Vec<Vec<u8>> = walkdir::WalkDir::new(&out)
        .into_iter()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "dcm"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    assert_eq!(expected.len(), files.len());
    assert_received_veil_deid_output(&dir.path().join("received"), &expected);
}

#[test]
fn check_names_the_line_and_field_of_a_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let good = receive_only_config(dir.path());
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
    let Some(files) = needs(
        &["storescu"],
        &["pydicom/CT_small.dcm", "pydicom/MR_small.dcm"],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = receive_only_config(dir.path());
    let key = veil_keys::Key::write_new(&dir.path().join("site.key")).unwrap();

    let (gateway, port) = start_gateway(&cfg);
    assert!(storescu(port, &files), "storescu failed");
    // SIGKILL, no chance to flush anything: what was acknowledged must already be on disk.
    drop(gateway);
    let spool = veil_gateway::Spool::attach(&dir.path().join("spool"), &key).unwrap();
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
    let (gateway, port) = start_gateway(&cfg);
    assert!(storescu(port, &files));
    drop(gateway);
    assert_eq!(spool.list().unwrap().len(), 2);
}
