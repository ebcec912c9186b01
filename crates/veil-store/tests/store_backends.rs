//! The store on both back-ends: consent history and decisions, encryption at rest, the ledger's
//! chain and its tamper detection, and the ledger's questions.

mod common;

use common::consent;
use veil_store::consent::{decide, ConsentState, Decision};
use veil_store::ledger::{NewEntry, Uids};
use veil_store::{Settings, Store};

fn entry(store: &Store, release: &str, recipient: &str, pid: &str, n: usize) -> NewEntry {
    NewEntry {
        release_id: release.into(),
        recipient: recipient.into(),
        purpose: "internal-research".into(),
        consent_ref: "default:internal-research".into(),
        patient_ref: store.patient_ref(pid, "").unwrap(),
        patient_id: pid.into(),
        issuer: String::new(),
        patient_pseudonym: format!("PSN-{recipient}-{}", pid.len()),
        original: Uids {
            study: format!("1.2.3.{pid}.1"),
            series: format!("1.2.3.{pid}.1.1"),
            sop: format!("1.2.3.{pid}.1.1.{n}"),
        },
        released: Uids {
            study: format!("2.25.{recipient}{}1", pid.len()),
            series: format!("2.25.{recipient}{}11", pid.len()),
            sop: format!("2.25.{recipient}{}11{n}", pid.len()),
        },
        output_path: format!("{}/{n}.dcm", pid.len()),
        output_sha256: "00".repeat(32),
        policy_hash: "ab".repeat(32),
        veil_version: "test".into(),
    }
}

#[test]
fn consent_history_is_append_only_and_decides() {
    let settings = Settings::default();
    for b in common::backends("consent") {
        let store = Store::open(Some(&b.url), Some(&common::key())).unwrap();
        store
            .record_consent(
                &consent("MRN-1001", "commercial-ai-training", ConsentState::Granted),
                &settings,
            )
            .unwrap();
        store
            .record_consent(
                &consent(
                    "MRN-1001",
                    "commercial-ai-training",
                    ConsentState::Withdrawn,
                ),
                &settings,
            )
            .unwrap();
        let mut ct = consent("MRN-1001", "internal-research", ConsentState::Refused);
        ct.scope.modalities = vec!["MR".into()];
        store.record_consent(&ct, &settings).unwrap();
        let h = store.consent_history("MRN-1001", "").unwrap();
        assert_eq!(h.len(), 3, "{}", b.name);
        assert_eq!(
            h[0].state,
            ConsentState::Granted,
            "the grant is still in the history"
        );
        assert_eq!(h[0].evidence, "form-MRN-1001");
        assert!(
            matches!(decide(&h, &settings, "commercial-ai-training", "CT", "20200101"), Decision::Exclude { ref reason, .. } if reason == "withdrawn")
        );
        assert!(matches!(
            decide(&h, &settings, "internal-research", "MR", "20200101"),
            Decision::Exclude { .. }
        ));
        assert!(matches!(
            decide(&h, &settings, "internal-research", "CT", "20200101"),
            Decision::Admit { .. }
        ));
        // Consents without issuer apply to the ID under any issuer.
        assert_eq!(
            store.consent_history("MRN-1001", "HOSP-A").unwrap().len(),
            3
        );
        // An unknown purpose is refused.
        assert!(store
            .record_consent(
                &consent("MRN-1001", "marketing", ConsentState::Granted),
                &settings
            )
            .is_err());
        store.close();
        // Another key cannot open the store.
        let other = veil_keys::Key::from_bytes([1; 32]);
        let e = Store::open(Some(&b.url), Some(&other))
            .err()
            .expect("wrong key refused")
            .to_string();
        assert!(e.contains("different key"), "{e}");
    }
}

#[test]
fn nothing_identifying_in_the_sqlite_file() {
    let b = common::backends("clear").remove(0);
    let settings = Settings::default();
    let store = Store::open(Some(&b.url), Some(&common::key())).unwrap();
    store
        .record_consent(
            &consent("MRN-SECRET-777", "internal-research", ConsentState::Granted),
            &settings,
        )
        .unwrap();
    store
        .add_recipient(
            "lab",
            &["internal-research".into()],
            "lab@example.org",
            &settings,
        )
        .unwrap();
    let e = entry(&store, "R0001", "lab", "MRN-SECRET-777", 1);
    store.append(&e, || Ok(())).unwrap();
    store.close();
    let mut bytes = std::fs::read(&b.url).unwrap();
    if let Ok(wal) = std::fs::read(format!("{}-wal", b.url)) {
        bytes.extend(wal);
    }
    for needle in [
        "MRN-SECRET-777",
        "1.2.3.MRN-SECRET-777",
        "form-MRN-SECRET-777",
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} stored in clear"
        );
    }
}

fn filled(b: &common::Fresh, n: usize) -> Store {
    let settings = Settings::default();
    let store = Store::open(Some(&b.url), Some(&common::key())).unwrap();
    store
        .add_recipient("lab", &["internal-research".into()], "", &settings)
        .unwrap();
    for i in 0..n {
        store
            .append(
                &entry(&store, "R0001", "lab", &format!("P{}", i % 3), i),
                || Ok(()),
            )
            .unwrap();
    }
    store.checkpoint().unwrap();
    store
}

#[test]
fn ledger_verifies_and_names_the_first_tampered_entry() {
    for b in common::backends("tamper") {
        // Edit.
        let store = filled(&b, 12);
        let r = store.verify_ledger().unwrap();
        assert!(r.ok(), "{}: {r:?}", b.name);
        assert_eq!((r.entries, r.signed_through), (12, 12));
        store
            .execute_raw("UPDATE ledger SET recipient = 'other' WHERE seq = 5")
            .unwrap();
        let r = store.verify_ledger().unwrap();
        assert_eq!(r.first_bad.as_ref().unwrap().seq, 5, "{}: {r:?}", b.name);
        assert!(r.first_bad.unwrap().what.contains("edited"));
        store.execute_raw("DELETE FROM ledger").unwrap();
        store.execute_raw("DELETE FROM ledger_checkpoints").unwrap();
        store.close();
    }
}

fn tamper_case(name: &str, sql: &[&str], expect_seq: i64, expect_word: &str) {
    for b in common::backends(name) {
        let store = filled(&b, 10);
        assert!(store.verify_ledger().unwrap().ok());
        for s in sql {
            store.execute_raw(s).unwrap();
        }
        let r = store.verify_ledger().unwrap();
        let bad = r
            .first_bad
            .clone()
            .unwrap_or_else(|| panic!("{}: {name} not detected: {r:?}", b.name));
        assert_eq!(bad.seq, expect_seq, "{}: {name}: {r:?}", b.name);
        assert!(
            bad.what.contains(expect_word),
            "{}: {name}: {}",
            b.name,
            bad.what
        );
        store.close();
    }
}

#[test]
fn deletion_is_detected() {
    tamper_case(
        "delete",
        &["DELETE FROM ledger WHERE seq = 4"],
        4,
        "missing",
    );
}

#[test]
fn deletion_with_renumbering_is_detected() {
    tamper_case(
        "renumber",
        &[
            "DELETE FROM ledger WHERE seq = 4",
            "UPDATE ledger SET seq = seq - 1 WHERE seq > 4",
        ],
        4,
        "does not link",
    );
}

#[test]
fn insertion_is_detected() {
    // A copy of entry 3 inserted as a new entry 4, the rest shifted up.
    tamper_case(
        "insert",
        &[
            "UPDATE ledger SET seq = seq + 1000 WHERE seq >= 4",
            "UPDATE ledger SET seq = seq - 999 WHERE seq >= 1004",
            "INSERT INTO ledger SELECT 4, release_id, recipient, purpose, consent_ref, patient_ref, patient_pseudonym, original_study_enc, original_series_enc, original_sop_enc, released_study, released_series, released_sop, output_path, output_sha256, recorded_at, policy_hash, veil_version, prev_hash, entry_hash FROM ledger WHERE seq = 3",
        ],
        4,
        "",
    );
}

#[test]
fn reordering_is_detected() {
    tamper_case(
        "reorder",
        &[
            "UPDATE ledger SET seq = 100 WHERE seq = 6",
            "UPDATE ledger SET seq = 6 WHERE seq = 7",
            "UPDATE ledger SET seq = 7 WHERE seq = 100",
        ],
        6,
        "does not link",
    );
}

#[test]
fn truncation_below_a_checkpoint_is_detected() {
    for b in common::backends("truncate") {
        let store = filled(&b, 10);
        store
            .execute_raw("DELETE FROM ledger WHERE seq > 7")
            .unwrap();
        let r = store.verify_ledger().unwrap();
        assert!(r.first_bad.is_none());
        assert!(!r.ok(), "{}: {r:?}", b.name);
        assert!(
            r.checkpoint_problems[0].contains("truncated after entry 7"),
            "{:?}",
            r.checkpoint_problems
        );
        store.close();
    }
}

#[test]
fn rewritten_history_fails_the_signed_checkpoint() {
    // Whoever can write the database can recompute every hash; the signature still catches it.
    for b in common::backends("rewrite") {
        let store = filled(&b, 6);
        let mut entries = Vec::new();
        store
            .scan_ledger(|e| {
                entries.push(e.clone());
                true
            })
            .unwrap();
        let mut prev = veil_store::ledger::GENESIS.to_string();
        for e in &mut entries {
            if e.seq == 2 {
                e.recipient = "other".into();
            }
            e.prev_hash = prev.clone();
            e.entry_hash = e.compute_hash();
            prev = e.entry_hash.clone();
            store
                .execute_raw(&format!(
                    "UPDATE ledger SET recipient = '{}', prev_hash = '{}', entry_hash = '{}' WHERE seq = {}",
                    e.recipient, e.prev_hash, e.entry_hash, e.seq
                ))
                .unwrap();
        }
        let r = store.verify_ledger().unwrap();
        assert!(
            r.first_bad.is_none(),
            "the chain itself is consistent again"
        );
        assert!(
            !r.ok() && r.checkpoint_problems[0].contains("entry 6"),
            "{}: {r:?}",
            b.name
        );
        store.close();
    }
}

#[test]
fn export_verifies_without_the_database() {
    for b in common::backends("export") {
        let store = filled(&b, 5);
        let mut buf = Vec::new();
        assert_eq!(store.export_ledger(&mut buf).unwrap(), 5);
        let pk = store.ledger_public_key();
        let r = veil_store::ledger::verify_export(&mut &buf[..], &[], pk.as_deref()).unwrap();
        assert!(r.ok(), "{r:?}");
        let text = String::from_utf8(buf).unwrap().replacen(
            "\"recipient\":\"lab\"",
            "\"recipient\":\"bad\"",
            1,
        );
        let r =
            veil_store::ledger::verify_export(&mut text.as_bytes(), &[], pk.as_deref()).unwrap();
        assert_eq!(r.first_bad.unwrap().seq, 1);
        store.close();
    }
}

#[test]
fn questions_the_ledger_answers() {
    let settings = Settings::default();
    for b in common::backends("questions") {
        let store = Store::open(Some(&b.url), Some(&common::key())).unwrap();
        store
            .add_recipient(
                "lab",
                &["internal-research".into()],
                "lab@example.org",
                &settings,
            )
            .unwrap();
        store
            .add_recipient("acme", &["internal-research".into()], "", &settings)
            .unwrap();
        for (rel, rcp, pid, n) in [
            ("R0001", "lab", "A", 1),
            ("R0001", "lab", "A", 2),
            ("R0001", "lab", "B", 3),
            ("R0002", "acme", "A", 4),
        ] {
            store
                .append(&entry(&store, rel, rcp, pid, n), || Ok(()))
                .unwrap();
        }
        let d = store.disclosures("A", "").unwrap();
        assert_eq!(d.len(), 2, "{}: {d:?}", b.name);
        assert_eq!(
            (
                d[0].recipient.as_str(),
                d[0].instances,
                d[0].original_study_uid.as_str()
            ),
            ("lab", 2, "1.2.3.A.1")
        );
        assert_eq!(d[1].recipient, "acme");
        let br = store.breach("lab", None).unwrap();
        let pids: Vec<&str> = br.iter().map(|r| r.patient_id.as_str()).collect();
        assert_eq!(br.len(), 2);
        assert!(pids.contains(&"A") && pids.contains(&"B"));
        assert!(store
            .breach("lab", Some("2999-01-01T00:00:00.000000Z"))
            .unwrap()
            .is_empty());
        assert!(store.breach("nobody", None).is_err());
        let t = store
            .trace(&Uids {
                study: String::new(),
                series: String::new(),
                sop: "2.25.lab1113".into(),
            })
            .unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].entry.recipient.as_str(), t[0].patient_id.as_deref()),
            ("lab", Some("B"))
        );
        assert_eq!(t[0].original.as_ref().unwrap().sop, "1.2.3.B.1.1.3");
        let (_, holders) = store
            .withdraw("A", "", "internal-research", "test", "", &settings)
            .unwrap();
        assert_eq!(
            holders
                .iter()
                .map(|h| h.recipient.as_str())
                .collect::<Vec<_>>(),
            vec!["acme", "lab"]
        );
        let h = store.consent_history("A", "").unwrap();
        assert_eq!(h.last().unwrap().state, ConsentState::Withdrawn);
        store.close();
        // Without the key: verification works, identifying answers are refused.
        let keyless = Store::open(Some(&b.url), None).unwrap();
        assert!(keyless.verify_ledger().unwrap().first_bad.is_none());
        assert!(keyless.disclosures("A", "").is_err());
        let t = keyless
            .trace(&Uids {
                study: String::new(),
                series: String::new(),
                sop: "2.25.lab1113".into(),
            })
            .unwrap();
        assert!(t[0].patient_id.is_none());
        keyless.close();
    }
}
