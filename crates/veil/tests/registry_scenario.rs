//! The issue-6 scenario through the `veil` binary, on SQLite and on PostgreSQL
//! (VEIL_TEST_POSTGRES_URL from scripts/setup.d/postgres.sh; required when CI=true).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn veil(dir: &Path, db: &str, args: &[&str]) -> (i32, String) {
    let mut with_key = args.to_vec();
    with_key.extend(["--key", "k.key"]);
    keyless(dir, db, &with_key)
}

/// `veil release in --recipient R --purpose P --out OUT`, with the key.
fn release(dir: &Path, db: &str, recipient: &str, purpose: &str, out: &str) -> (i32, String) {
    veil(
        dir,
        db,
        &[
            "release",
            "in",
            "--recipient",
            recipient,
            "--purpose",
            purpose,
            "--out",
            out,
        ],
    )
}

/// As an outside auditor runs it: no key in the arguments or the environment.
fn keyless(dir: &Path, db: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_veil"))
        .current_dir(dir)
        .env("VEIL_DB", db)
        .env_remove("VEIL_KEY")
        .env_remove("VEIL_KEY_FILE")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// After more releases: the saved head is still in the log, receipts check offline with the
/// public key alone, and the pinned key is enforced on the database too.
fn transparency_checks(dir: &Path, db: &str, pk: &str) {
    let (rc, out) = keyless(
        dir,
        db,
        &[
            "ledger",
            "verify",
            "--public-key",
            pk,
            "--sth",
            "head1.json",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    if !db.starts_with("postgres") {
        // Every head the SQLite store signed is also in its witness file.
        let witness = format!("{db}.tree-heads.jsonl");
        let lines = std::fs::read_to_string(&witness).unwrap().lines().count();
        assert!(lines >= 6, "{lines} heads in {witness}");
        let (rc, out) = keyless(
            dir,
            db,
            &["ledger", "verify", "--public-key", pk, "--sth", &witness],
        );
        assert_eq!(rc, 0, "{out}");
    }
    let (rc, out) = keyless(
        dir,
        db,
        &["ledger", "verify", "--public-key", &"ab".repeat(32)],
    );
    assert_eq!(rc, 4, "{out}");
    assert!(
        out.contains("signed by a key other than the pinned one"),
        "{out}"
    );
    let check =
        |file: &str, key: &str| keyless(dir, db, &["ledger", "check", file, "--public-key", key]);
    let (rc, out) = keyless(
        dir,
        db,
        &[
            "ledger",
            "prove",
            "--since",
            "head1.json",
            "--out",
            "c.json",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = check("c.json", pk);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("extends the log of 9 entries"), "{out}");
    let (rc, out) = keyless(
        dir,
        db,
        &["ledger", "prove", "--entry", "6", "--out", "r.json"],
    );
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = check("r.json", pk);
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("receipt holds: entry 6 is in the log"),
        "{out}"
    );
    let receipt = std::fs::read_to_string(dir.join("r.json")).unwrap();
    let edited = receipt.replacen("\"recipient\": \"", "\"recipient\": \"x", 1);
    assert_ne!(edited, receipt);
    std::fs::write(dir.join("r2.json"), edited).unwrap();
    let (rc, out) = check("r2.json", pk);
    assert_eq!(rc, 4, "{out}");
    let (rc, out) = check("r.json", &"ab".repeat(32));
    assert_eq!(rc, 4, "{out}");
}

fn dbs(tag: &str, dir: &Path) -> Vec<String> {
    let mut v = vec![dir.join("v.db").display().to_string()];
    match std::env::var("VEIL_TEST_POSTGRES_URL") {
        Ok(admin) if !admin.is_empty() => {
            let name = format!("veil_cli_{tag}_{}", std::process::id());
            v.push(common::fresh_postgres_db(&admin, &name));
        }
        _ => assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true needs VEIL_TEST_POSTGRES_URL"
        ),
    }
    v
}

fn uids_of(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for e in walk(dir) {
        for c in e.components() {
            let s = c
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".dcm")
                .to_string();
            if s.starts_with("2.25.") || s.starts_with("VEIL-") {
                v.push(s);
            }
        }
    }
    v
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            let p = e.path();
            if p.file_name().unwrap() == ".veil" {
                continue;
            }
            if p.is_dir() {
                out.extend(walk(&p));
            } else if p.extension().is_some_and(|x| x == "dcm") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn consent_gated_releases_and_the_ledger_questions() {
    let Some(td) = common::pydicom() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for (i, db) in dbs("scenario", tmp.path()).iter().enumerate() {
        let dir = tmp.path().join(format!("b{i}"));
        std::fs::create_dir_all(dir.join("in")).unwrap();
        // Three patients: 1CT1 (CT), 4MR1 (MR), and the MR file again under another patient is not
        // available, so two real files carry the two patients.
        std::fs::copy(td.join("CT_small.dcm"), dir.join("in/ct.dcm")).unwrap();
        std::fs::copy(td.join("MR_small.dcm"), dir.join("in/mr.dcm")).unwrap();
        let st = Command::new(env!("CARGO_BIN_EXE_veil"))
            .current_dir(&dir)
            .args(["key", "new", "k.key"])
            .status()
            .unwrap();
        assert!(st.success());
        // FHIR: 1CT1 allows research but refuses commercial AI; 4MR1 grants both; one bad resource.
        let bundle = r#"{"resourceType":"Bundle","entry":[
          {"resource":{"resourceType":"Consent","id":"a","status":"active","patient":{"reference":"Patient/1CT1"},"dateTime":"2024-01-01",
             "provision":{"type":"permit","purpose":[{"code":"internal-research"}],"provision":[{"type":"deny","purpose":[{"code":"commercial-ai-training"}]}]}}},
          {"resource":{"resourceType":"Consent","id":"b","status":"active","patient":{"reference":"Patient/4MR1"},"dateTime":"2024-01-01",
             "provision":{"type":"permit","purpose":[{"code":"internal-research"},{"code":"commercial-ai-training"}]}}},
          {"resource":{"resourceType":"Consent","id":"c","status":"active","patient":{"reference":"Patient/X"},"provision":{"type":"sometimes","purpose":[{"code":"internal-research"}]}}}
        ]}"#;
        std::fs::write(dir.join("c.json"), bundle).unwrap();
        let (rc, out) = veil(&dir, db, &["consent", "import", "c.json"]);
        assert_eq!(rc, 3, "{out}");
        assert!(
            out.contains("resource 2: entry[2].resource.provision.type"),
            "{out}"
        );
        assert_eq!(
            veil(
                &dir,
                db,
                &["recipient", "add", "lab", "--purpose", "internal-research"]
            )
            .0,
            0
        );
        assert_eq!(
            veil(
                &dir,
                db,
                &[
                    "recipient",
                    "add",
                    "acme",
                    "--purpose",
                    "commercial-ai-training",
                    "--contact",
                    "dpo@acme.test"
                ]
            )
            .0,
            0
        );
        let (rc, out) = release(&dir, db, "acme", "commercial-ai-training", "acme");
        assert_eq!(rc, 0, "{out}");
        assert!(
            out.contains("1 instance(s) released") && out.contains("1 excluded"),
            "{out}"
        );
        let (rc, out) = release(&dir, db, "lab", "internal-research", "lab");
        assert_eq!(rc, 0, "{out}");
        assert!(out.contains("2 instance(s) released"), "{out}");
        // Refused patient absent from the commercial release: only the MR file went out.
        assert_eq!(walk(&dir.join("acme")).len(), 1);
        // Recipients share no pseudonym or UID.
        let a = uids_of(&dir.join("acme"));
        let l = uids_of(&dir.join("lab"));
        assert!(!a.is_empty() && !l.is_empty());
        assert!(
            a.iter().all(|u| !l.contains(u)),
            "shared identifiers: {a:?} {l:?}"
        );
        // Disclosures of 1CT1: exactly the lab release.
        let (rc, out) = veil(&dir, db, &["disclosures", "1CT1", "--format", "json"]);
        assert_eq!(rc, 0, "{out}");
        assert_eq!(out.matches("\"release_id\"").count(), 1, "{out}");
        assert!(out.contains("\"recipient\": \"lab\""));
        // Each disclosure carries its entries' inclusion proofs, checked against the head.
        let doc: serde_json::Value = serde_json::from_str(&out[out.find('{').unwrap()..]).unwrap();
        let proof = &doc["disclosures"][0]["proof"];
        // The patient's own study, told apart from others (CT_small.dcm's date, modality and
        // description).
        let study = &doc["disclosures"][0]["study"];
        assert_eq!(
            (
                study["date"].as_str(),
                study["modalities"][0].as_str(),
                study["description"].as_str()
            ),
            (Some("20040119"), Some("CT"), Some("e+1")),
            "{out}"
        );
        assert_eq!(proof["status"], "verified", "{out}");
        assert!(proof["proofs"][0]["inclusion_path"].is_array(), "{out}");
        let (_, html) = veil(&dir, db, &["disclosures", "4MR1"]);
        assert!(
            html.contains("<ol class=\"t\">")
                && html.contains("acme")
                && html.contains("lab")
                && !html.contains("4MR1")
                && html.contains("checked against the signed public log of")
                && html.contains("Images from your 2004-08-26 MR study"),
            "{html}"
        );
        // Breach of acme: exactly 4MR1.
        let (rc, out) = veil(&dir, db, &["breach", "--recipient", "acme"]);
        assert_eq!(rc, 0);
        assert!(
            out.contains("4MR1") && !out.contains("1CT1") && out.contains("1 patient(s)"),
            "{out}"
        );
        let exposed = |out: &str| {
            out.lines()
                .find(|l| l.starts_with("breach of acme"))
                .unwrap_or_default()
                .to_string()
        };
        let before = exposed(&out);
        // The same instance released to acme again (another release, another folder): still
        // one exposed instance.
        let (rc, again) = release(&dir, db, "acme", "commercial-ai-training", "acme-again");
        assert_eq!(rc, 0, "{again}");
        let (_, out) = veil(&dir, db, &["breach", "--recipient", "acme"]);
        assert_eq!(exposed(&out), before, "{out}");
        assert!(before.contains("1 instance(s)"), "{before}");
        // Trace a lab file.
        let f = walk(&dir.join("lab")).into_iter().next().unwrap();
        let (rc, out) = veil(&dir, db, &["trace", f.to_str().unwrap()]);
        assert_eq!(rc, 0, "{out}");
        assert!(
            out.contains("to lab for internal-research") && out.contains("original patient"),
            "{out}"
        );
        // 4MR1 withdraws from commercial AI: notice names acme; the next release excludes them.
        let (rc, out) = veil(
            &dir,
            db,
            &["withdraw", "4MR1", "--purpose", "commercial-ai-training"],
        );
        assert_eq!(rc, 0);
        assert!(
            out.contains("ask acme to delete") && !out.contains("ask lab"),
            "{out}"
        );
        let (rc, out) = release(&dir, db, "acme", "commercial-ai-training", "acme2");
        assert_eq!(rc, 0, "{out}");
        assert!(
            out.contains("0 instance(s) released") && out.contains("withdrawn"),
            "{out}"
        );
        assert_eq!(walk(&dir.join("acme2")).len(), 0);
        // The ledger holds 4 disclosure entries (acme's instance twice) and the 5 consent
        // records as entries of the same chain, and verifies; export verifies too.
        let (rc, out) = veil(&dir, db, &["ledger", "verify"]);
        assert_eq!(rc, 0, "{out}");
        assert!(
            out.contains("9 entries") && out.contains("the latest covers 9 entries"),
            "{out}"
        );
        assert_eq!(
            veil(&dir, db, &["ledger", "export", "--out", "l.jsonl"]).0,
            0
        );
        assert_eq!(
            veil(&dir, db, &["ledger", "verify", "--export", "l.jsonl"]).0,
            0
        );
        // The hash formula in docs/consent-ledger.md, recomputed outside Veil, gives every hash.
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ledger-rehash.py");
        let rehash = std::process::Command::new("python3")
            .arg(script)
            .arg(dir.join("l.jsonl"))
            .output()
            .unwrap();
        assert!(
            rehash.status.success(),
            "{}",
            String::from_utf8_lossy(&rehash.stdout)
        );
        // A keyless audit: the auditor's pinned public key, never the one in the export.
        let (rc, out) = keyless(&dir, db, &["ledger", "verify", "--export", "l.jsonl"]);
        assert_eq!(rc, 2, "no pinned key, no audit: {out}");
        let (rc, out) = veil(&dir, db, &["ledger", "export", "--out", "l2.jsonl"]);
        assert_eq!(rc, 0, "{out}");
        let pk = out
            .split_whitespace()
            .skip_while(|w| *w != "key")
            .nth(1)
            .expect("the export prints the public key")
            .to_string();
        let header: serde_json::Value = serde_json::from_str(
            std::fs::read_to_string(dir.join("l2.jsonl"))
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["public_key"], pk.as_str());
        assert!(header["public_key_fingerprint"]
            .as_str()
            .is_some_and(|f| f.len() == 16));
        let (rc, out) = keyless(
            &dir,
            db,
            &[
                "ledger",
                "verify",
                "--export",
                "l2.jsonl",
                "--public-key",
                &pk,
            ],
        );
        assert_eq!(rc, 0, "{out}");
        // A history signed by any other key fails against the pinned one.
        let other = "ab".repeat(32);
        let (rc, out) = keyless(
            &dir,
            db,
            &[
                "ledger",
                "verify",
                "--export",
                "l2.jsonl",
                "--public-key",
                &other,
            ],
        );
        assert_eq!(rc, 4, "{out}");
        assert!(out.contains("signed by a key other than"), "{out}");
        // A witness saves today's signed tree head.
        let (rc, out) = keyless(&dir, db, &["ledger", "head", "--out", "head1.json"]);
        assert_eq!(rc, 0, "{out}");
        // A mistyped patient: no empty accounting, no withdrawal for nobody (exit 2, the ID
        // not repeated).
        for args in [
            vec!["disclosures", "4MR9"],
            vec!["withdraw", "4MR9", "--purpose", "internal-research"],
        ] {
            let (rc, out) = veil(&dir, db, &args);
            assert_eq!(rc, 2, "{args:?}: {out}");
            assert!(
                out.contains("no consent record and no release") && !out.contains("4MR9"),
                "{out}"
            );
        }
        // A purpose nobody granted and everyone refuses by default: refused before a release
        // id is used (four releases so far: the next is R0005).
        let (rc, out) = veil(
            &dir,
            db,
            &[
                "recipient",
                "add",
                "open",
                "--purpose",
                "public-dataset-release",
            ],
        );
        assert_eq!(rc, 0, "{out}");
        let (rc, out) = release(&dir, db, "open", "public-dataset-release", "open1");
        assert_eq!(rc, 2, "{out}");
        assert!(
            out.contains("nobody may be released for public-dataset-release"),
            "{out}"
        );
        assert!(!dir.join("open1").exists());
        let (rc, out) = release(&dir, db, "lab", "internal-research", "lab3");
        assert_eq!(rc, 0, "{out}");
        assert!(out.contains("release R0005 "), "{out}");
        transparency_checks(&dir, db, &pk);
    }
}
