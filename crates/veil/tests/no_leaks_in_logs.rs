//! Secrets and logs (issue 8, part 3): every command runs at the most verbose log level
//! (`-vvv` and `VEIL_LOG=trace`) on data with planted identifiers, and no planted identifier and
//! no key material may appear in what it prints or leaves behind: stdout, stderr, run reports,
//! journals, quarantine reasons, ledger exports, the registry database. A key file readable by
//! others is refused with a clear message and exit code 2.
//!
//! Planted data: identifiers written into real pydicom files (names, IDs, accession number,
//! institution, staff, phone, e-mail, in standard attributes, free text and a private element),
//! plus everything `veil demo` plants (read back from its input files).
//!
//! Some outputs exist to name a patient to the operator who asked (`breach` lists the patients a
//! recipient received, `trace` names the original patient of a leaked file, `disclosures` is the
//! patient's own accounting, `consent show/history` answer about the patient given on the command
//! line, and `veil demo` shows one synthetic instance before and after): their stdout is exempt,
//! their logs are not.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;

/// Identifying values planted into real files (each distinctive, so a hit is a real leak).
const PLANTED: &[&str] = &[
    "Quirrelford",
    "Philomena",
    "PLNT7734219",
    "ALTID-5582901",
    "ACCX99017734",
    "Saint Wulfstan Infirmary",
    "Grimsditch",
    "Horatio",
    "Pettigrew-Ambler",
    "+44 20 7946 0321",
    "philomena.q@example.org",
    "19571103",
    "SN-4471-PLANT",
];

/// The patient ID the registry commands are given (it is also planted in the images).
const PATIENT: &str = "PLNT7734219";

/// Writes real pydicom files with the planted identifiers into `dir`.
fn plant(td: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, name) in ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"]
        .iter()
        .enumerate()
    {
        let mut obj = dicom_object::open_file(td.join(name)).unwrap();
        let s = |tag, vr, v: &str| DataElement::new(tag, vr, PrimitiveValue::from(v));
        obj.put(s(tags::PATIENT_NAME, VR::PN, "Quirrelford^Philomena"));
        obj.put(s(tags::PATIENT_ID, VR::LO, PATIENT));
        obj.put(s(dicom_core::Tag(0x0010, 0x1000), VR::LO, "ALTID-5582901"));
        obj.put(s(tags::ACCESSION_NUMBER, VR::SH, "ACCX99017734"));
        obj.put(s(tags::PATIENT_BIRTH_DATE, VR::DA, "19571103"));
        obj.put(s(
            tags::INSTITUTION_NAME,
            VR::LO,
            "Saint Wulfstan Infirmary",
        ));
        obj.put(s(
            tags::REFERRING_PHYSICIAN_NAME,
            VR::PN,
            "Grimsditch^Horatio",
        ));
        obj.put(s(tags::OPERATORS_NAME, VR::PN, "Pettigrew-Ambler^Jo"));
        obj.put(s(
            tags::PATIENT_TELEPHONE_NUMBERS,
            VR::SH,
            "+44 20 7946 0321",
        ));
        obj.put(s(tags::DEVICE_SERIAL_NUMBER, VR::LO, "SN-4471-PLANT"));
        obj.put(s(
            tags::STUDY_DESCRIPTION,
            VR::LO,
            "CT for Philomena Quirrelford PLNT7734219",
        ));
        obj.put(s(
            tags::IMAGE_COMMENTS,
            VR::LT,
            "Call Horatio Grimsditch, philomena.q@example.org",
        ));
        // An unknown private block holding an identifier.
        obj.put(s(dicom_core::Tag(0x0011, 0x0010), VR::LO, "PLANT CREATOR"));
        obj.put(s(dicom_core::Tag(0x0011, 0x1001), VR::LO, "Quirrelford"));
        obj.write_to_file(dir.join(format!("p{i}.dcm"))).unwrap();
    }
    // Held back: a truncated copy (unparseable), a burned-in annotation (quarantined), a text file
    // naming the patient (rejected, never copied).
    let full = std::fs::read(dir.join("p0.dcm")).unwrap();
    std::fs::write(dir.join("cut.dcm"), &full[..full.len() * 2 / 3]).unwrap();
    // The data set without its Part 10 header (quarantined: no_file_meta).
    let ds = veil_fuzz::mutate::elements(&full)
        .into_iter()
        .find(|e| e.tag.0 != 0x0002)
        .unwrap()
        .start;
    std::fs::write(dir.join("bare.dcm"), &full[ds..]).unwrap();
    let mut us = dicom_object::open_file(dir.join("p1.dcm")).unwrap();
    us.put(DataElement::new(
        tags::BURNED_IN_ANNOTATION,
        VR::CS,
        PrimitiveValue::from("YES"),
    ));
    us.put(DataElement::new(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from("1.2.826.0.1.3680043.10.1137.77.1"),
    ));
    us.meta_mut().media_storage_sop_instance_uid = "1.2.826.0.1.3680043.10.1137.77.1".into();
    us.write_to_file(dir.join("burned.dcm")).unwrap();
    std::fs::write(
        dir.join("notes.txt"),
        "Quirrelford^Philomena PLNT7734219 +44 20 7946 0321\n",
    )
    .unwrap();
}

/// Names, IDs, accession numbers and institutions from every DICOM file `veil demo` wrote.
fn demo_planted(input: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for p in veil_fuzz::walk(input) {
        let Ok(obj) = dicom_object::open_file(&p) else {
            continue;
        };
        for t in [
            tags::PATIENT_NAME,
            tags::PATIENT_ID,
            tags::ACCESSION_NUMBER,
            tags::INSTITUTION_NAME,
            tags::REFERRING_PHYSICIAN_NAME,
            tags::PATIENT_ADDRESS,
            tags::PATIENT_TELEPHONE_NUMBERS,
        ] {
            if let Some(v) = obj.get(t).and_then(|e| e.to_str().ok()) {
                for part in v.split(['^', '\\']) {
                    let part = part.trim_matches(|c: char| c == '\0' || c.is_whitespace());
                    if part.len() >= 5 {
                        out.push(part.to_string());
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

struct Secrets {
    /// Identifying values (case-insensitive search).
    planted: Vec<String>,
    /// Key material: the key's hex (both cases) in 16-digit windows, and its raw bytes in
    /// 8-byte windows: any of them is part of a key.
    key_hex_windows: Vec<String>,
    key_raw_windows: Vec<Vec<u8>>,
}

impl Secrets {
    fn add_key(&mut self, key_file: &Path) {
        let hex = std::fs::read_to_string(key_file)
            .unwrap()
            .trim()
            .to_string();
        assert_eq!(hex.len(), 64, "key file format changed");
        let lower = hex.to_ascii_lowercase();
        for i in 0..=lower.len() - 16 {
            self.key_hex_windows.push(lower[i..i + 16].to_string());
        }
        let raw = hex::decode(&lower).unwrap();
        for i in 0..=raw.len() - 8 {
            self.key_raw_windows.push(raw[i..i + 8].to_vec());
        }
    }

    /// Returns a description of the first secret found in `bytes`, if any.
    fn find(&self, bytes: &[u8], check_planted: bool) -> Option<String> {
        let lower: Vec<u8> = bytes.to_ascii_lowercase();
        let has =
            |needle: &[u8]| !needle.is_empty() && lower.windows(needle.len()).any(|w| w == needle);
        for w in &self.key_hex_windows {
            if has(w.as_bytes()) {
                return Some("16 hex digits of the key".into());
            }
        }
        for w in &self.key_raw_windows {
            if bytes.windows(w.len()).any(|x| x == &w[..]) {
                return Some("8 raw bytes of the key".into());
            }
        }
        if check_planted {
            for p in &self.planted {
                if has(p.to_ascii_lowercase().as_bytes()) {
                    return Some(format!("planted identifier {p:?}"));
                }
            }
        }
        None
    }
}

struct Runner {
    dir: PathBuf,
    db: String,
    env_key: Option<String>,
    commands: usize,
    failures: Vec<String>,
}

impl Runner {
    fn run(&mut self, args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_veil"));
        c.current_dir(&self.dir)
            .arg("-vvv")
            .args(args)
            .env("VEIL_LOG", "trace")
            .env("RUST_LOG", "trace")
            .env("VEIL_DB", &self.db)
            .env_remove("VEIL_CONFIG")
            .env("NO_COLOR", "1");
        match &self.env_key {
            Some(k) => c.env("VEIL_KEY", k),
            None => c.env_remove("VEIL_KEY"),
        };
        let o = c.output().unwrap();
        self.commands += 1;
        o
    }

    /// Runs a command and checks its stdout (unless `stdout_names_patient`) and stderr.
    fn check(
        &mut self,
        secrets: &Secrets,
        args: &[&str],
        stdout_names_patient: bool,
        ok_codes: &[i32],
    ) -> Output {
        let o = self.run(args);
        let code = o.status.code().unwrap_or(-1);
        let what = args.join(" ");
        if !ok_codes.contains(&code) {
            self.failures.push(format!(
                "`veil {what}` exited {code}: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        if let Some(f) = secrets.find(&o.stderr, true) {
            self.failures
                .push(format!("`veil {what}`: {f} in stderr (logs)"));
        }
        if let Some(f) = secrets.find(&o.stdout, !stdout_names_patient) {
            self.failures.push(format!("`veil {what}`: {f} in stdout"));
        }
        o
    }

    /// Checks every file under `root` except DICOM copies/outputs (`.dcm`) — quarantine copies
    /// hold identifiers by design, and outputs are checked by the deid tests.
    fn check_files(&mut self, secrets: &Secrets, root: &Path, what: &str) -> usize {
        let mut n = 0;
        for p in veil_fuzz::walk(root) {
            if p.extension().is_some_and(|e| e == "dcm") {
                continue;
            }
            n += 1;
            let bytes = std::fs::read(&p).unwrap();
            if let Some(f) = secrets.find(&bytes, true) {
                self.failures
                    .push(format!("{what}: {f} in {}", p.display()));
            }
        }
        n
    }
}

#[test]
fn no_identifier_or_key_material_in_any_log_report_or_reason() {
    let Some(td) = common::pydicom() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    if let Some(keep) = std::env::var_os("VEIL_TEST_KEEP") {
        let _ = tmp.keep();
        eprintln!("keeping {} ({keep:?})", dir.display());
    }
    plant(&td, &dir.join("in"));
    std::fs::copy(td.join("CT_small.dcm"), dir.join("plain.dcm")).unwrap();
    let mut r = Runner {
        dir: dir.clone(),
        db: dir.join("registry.db").display().to_string(),
        env_key: None,
        commands: 0,
        failures: Vec::new(),
    };
    let mut secrets = Secrets {
        planted: PLANTED.iter().map(|s| s.to_string()).collect(),
        key_hex_windows: Vec::new(),
        key_raw_windows: Vec::new(),
    };

    // veil demo: its own planted data and key.
    let o = r.run(&["demo", "--dir", "demo"]);
    assert!(
        matches!(o.status.code(), Some(0) | Some(4)),
        "demo failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    secrets.add_key(&dir.join("demo/demo.key"));
    let demo_values = demo_planted(&dir.join("demo/input"));
    assert!(demo_values.len() >= 5, "demo plants: {demo_values:?}");
    secrets.planted.extend(demo_values);
    // Its stdout shows one synthetic instance before and after, by design: every other line is
    // checked.
    let stdout = String::from_utf8_lossy(&o.stdout);
    let mut shown = false;
    let rest: String = stdout
        .lines()
        .filter(|l| {
            if l.contains("before → after") {
                shown = true;
            }
            let keep = !shown;
            if l.contains("look at it:") {
                shown = false;
            }
            keep
        })
        .map(|l| format!("{l}\n"))
        .collect();
    if let Some(f) = secrets.find(rest.as_bytes(), true) {
        r.failures.push(format!("`veil demo`: {f} in stdout"));
    }
    if let Some(f) = secrets.find(&o.stderr, true) {
        r.failures.push(format!("`veil demo`: {f} in stderr"));
    }
    let demo_files = r.check_files(&secrets, &dir.join("demo/output"), "demo output state")
        + r.check_files(&secrets, &dir.join("demo/quarantine"), "demo quarantine");

    // The key for everything else: a file, and the same key in VEIL_KEY for some commands.
    assert!(r.run(&["key", "new", "k.key"]).status.success());
    secrets.add_key(&dir.join("k.key"));
    let key_hex = std::fs::read_to_string(dir.join("k.key"))
        .unwrap()
        .trim()
        .to_string();
    r.check(&secrets, &["key", "fingerprint", "k.key"], false, &[0]);

    // deid, human and JSON, with quarantines and rejections; then a resume.
    r.check(
        &secrets,
        &[
            "deid",
            "--key",
            "k.key",
            "--out",
            "out",
            "--quarantine",
            "q",
            "in",
        ],
        false,
        &[3],
    );
    r.check(
        &secrets,
        &[
            "deid",
            "--key",
            "k.key",
            "--out",
            "out",
            "--quarantine",
            "q",
            "--json",
            "in",
        ],
        false,
        &[3],
    );
    r.env_key = Some(key_hex.clone());
    r.check(
        &secrets,
        &[
            "deid",
            "--out",
            "out2",
            "--quarantine",
            "q2",
            "--json",
            "in",
        ],
        false,
        &[3],
    );
    r.env_key = None;
    let reasons = veil_fuzz::walk(&dir.join("q"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .count();
    assert!(reasons >= 2, "expected quarantine reasons, found {reasons}");

    // A policy with an error, and a good one.
    std::fs::write(
        dir.join("bad.toml"),
        "[profile]\noptions = [\"retain-everything\"]\n",
    )
    .unwrap();
    r.check(&secrets, &["policy", "check", "bad.toml"], false, &[2]);
    r.check(&secrets, &["policy", "show"], false, &[0]);

    // verify: outputs against the planted originals (findings are masked).
    r.check(
        &secrets,
        &["verify", "out", "--against", "in"],
        false,
        &[0, 3, 4],
    );
    r.check(
        &secrets,
        &["verify", "out", "--against", "in", "--json"],
        false,
        &[0, 3, 4],
    );
    // risk: its reports list rare quasi-identifier values and are as sensitive as the data
    // measured (crates/veil-risk/src/report.rs), so on the originals only its logs are checked
    // (StudyDescription, a default quasi-identifier, may hold a name); on the de-identified
    // outputs everything is.
    r.check(&secrets, &["risk", "in"], true, &[0, 3]);
    r.check(&secrets, &["risk", "in", "--json"], true, &[0, 3]);
    r.check(&secrets, &["risk", "out"], false, &[0, 3]);
    r.check(
        &secrets,
        &["risk", "out", "--html", "risk.html"],
        false,
        &[0, 3],
    );
    // pixels scan without --show-text.
    r.check(&secrets, &["pixels", "scan", "in"], false, &[0, 3, 4]);
    r.check(
        &secrets,
        &["pixels", "scan", "in", "--json"],
        false,
        &[0, 3, 4],
    );

    // The registry: consent, recipients, a release, the ledger, and the questions.
    r.check(
        &secrets,
        &[
            "consent",
            "set",
            PATIENT,
            "--purpose",
            "internal-research",
            "--state",
            "granted",
            "--evidence",
            "form signed by Philomena Quirrelford",
            "--key",
            "k.key",
        ],
        false,
        &[0],
    );
    std::fs::write(
        dir.join("consent.csv"),
        format!("patient_id,purpose,state\n{PATIENT},commercial-ai-training,refused\n"),
    )
    .unwrap();
    r.check(
        &secrets,
        &["consent", "import", "consent.csv", "--key", "k.key"],
        false,
        &[0, 3],
    );
    r.check(
        &secrets,
        &["consent", "show", PATIENT, "--key", "k.key"],
        true,
        &[0],
    );
    r.check(
        &secrets,
        &["consent", "history", PATIENT, "--key", "k.key"],
        true,
        &[0],
    );
    r.check(
        &secrets,
        &[
            "recipient",
            "add",
            "lab",
            "--purpose",
            "internal-research",
            "--key",
            "k.key",
        ],
        false,
        &[0],
    );
    r.check(
        &secrets,
        &["recipient", "list", "--key", "k.key"],
        false,
        &[0],
    );
    r.env_key = Some(key_hex.clone());
    r.check(
        &secrets,
        &[
            "release",
            "in",
            "--recipient",
            "lab",
            "--purpose",
            "internal-research",
            "--out",
            "rel",
            "--quarantine",
            "relq",
        ],
        false,
        &[0, 3],
    );
    r.env_key = None;
    r.check(
        &secrets,
        &["ledger", "verify", "--key", "k.key"],
        false,
        &[0],
    );
    r.check(
        &secrets,
        &[
            "ledger",
            "export",
            "--out",
            "ledger.jsonl",
            "--key",
            "k.key",
        ],
        false,
        &[0],
    );
    r.check(
        &secrets,
        &["disclosures", PATIENT, "--format", "json", "--key", "k.key"],
        true,
        &[0],
    );
    r.check(
        &secrets,
        &[
            "disclosures",
            PATIENT,
            "--out",
            "disclosures.html",
            "--key",
            "k.key",
        ],
        true,
        &[0],
    );
    r.check(
        &secrets,
        &["breach", "--recipient", "lab", "--key", "k.key"],
        true,
        &[0],
    );
    let released = veil_fuzz::walk(&dir.join("rel"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "dcm"));
    match released {
        Some(f) => {
            let f = f.display().to_string();
            r.check(&secrets, &["trace", &f, "--key", "k.key"], true, &[0]);
        }
        None => r
            .failures
            .push("the release wrote no file to trace".to_string()),
    }
    r.check(
        &secrets,
        &[
            "withdraw",
            PATIENT,
            "--purpose",
            "internal-research",
            "--evidence",
            "letter from Philomena Quirrelford",
            "--key",
            "k.key",
        ],
        false,
        &[0],
    );
    // The portal's access code (issue 21): printed for the letter, stored only as a keyed hash,
    // the patient it opens sealed; neither log nor database may name the patient.
    r.check(
        &secrets,
        &["portal", "code", PATIENT, "--key", "k.key"],
        false,
        &[0],
    );

    // Everything left behind: run reports, journals, quarantine reasons, ledger export, risk
    // report, and the registry database (identifiers there must be keyed or encrypted).
    let mut files = demo_files;
    for (d, what) in [
        ("out", "deid state"),
        ("q", "quarantine"),
        ("out2", "deid state"),
        ("q2", "quarantine"),
        ("rel", "release state"),
        ("relq", "release quarantine"),
    ] {
        files += r.check_files(&secrets, &dir.join(d), what);
    }
    for f in ["ledger.jsonl", "risk.html"] {
        let p = dir.join(f);
        if p.exists() {
            files += 1;
            if let Some(x) = secrets.find(&std::fs::read(&p).unwrap(), true) {
                r.failures.push(format!("{f}: {x}"));
            }
        }
    }
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("registry.db") {
            files += 1;
            if let Some(x) = secrets.find(&std::fs::read(entry.path()).unwrap(), true) {
                r.failures.push(format!(
                    "registry database {name}: {x} (stored unencrypted)"
                ));
            }
        }
    }
    eprintln!(
        "{} commands at trace level, {files} state/report/reason files checked, {} planted values, {} leaks",
        r.commands,
        secrets.planted.len(),
        r.failures.len()
    );
    assert!(r.failures.is_empty(), "{}", r.failures.join("\n"));
}

#[test]
fn a_key_file_readable_by_others_is_refused_with_a_clear_message() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let k = tmp.path().join("k.key");
    let veil = || Command::new(env!("CARGO_BIN_EXE_veil"));
    assert!(veil()
        .args(["key", "new"])
        .arg(&k)
        .status()
        .unwrap()
        .success());
    let hex = std::fs::read_to_string(&k).unwrap();
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::create_dir(tmp.path().join("in")).unwrap();
    let before = std::fs::read(&k).unwrap();
    for args in [
        vec!["key", "fingerprint"],
        vec!["deid", "--out", "o", "in", "--key"],
    ] {
        let o = veil()
            .current_dir(tmp.path())
            .args(&args)
            .arg(&k)
            .env_remove("VEIL_KEY")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {err}");
        assert!(
            lines[0].starts_with("veil: error: key file ")
                && lines[0].contains(&k.display().to_string())
                && lines[0].contains("0644")
                && lines[0].contains("chmod 600"),
            "{err}"
        );
        assert!(
            !err.contains(hex.trim()) && !String::from_utf8_lossy(&o.stdout).contains(hex.trim())
        );
        assert!(
            !tmp.path().join("o").exists(),
            "no output for a refused key"
        );
    }
    assert_eq!(std::fs::read(&k).unwrap(), before, "key file untouched");
}
