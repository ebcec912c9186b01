//! The ledger as a transparency log, on both back-ends: consent records under the chain, signed
//! tree heads in the database and saved outside it, receipts checked offline, and every kind of
//! tampering a database writer can attempt. The Merkle proofs are also checked against an
//! independent Python implementation of RFC 9162.

mod common;

use std::process::{Command, Stdio};

use common::consent;
use veil_store::consent::{decide, ConsentState, Decision};
use veil_store::ledger::{LedgerEntry, NewEntry, Uids};
use veil_store::merkle::{self, Tree};
use veil_store::tree_head::{self, TreeHead};
use veil_store::{Settings, Store};

const PURPOSE: &str = "commercial-ai-training";

fn release_entry(store: &Store, consent_ref: &str, n: usize) -> NewEntry {
    NewEntry {
        release_id: "R0001".into(),
        recipient: "vendor".into(),
        purpose: PURPOSE.into(),
        consent_ref: consent_ref.into(),
        patient_ref: store.patient_ref("MRN-A", "").unwrap(),
        patient_id: "MRN-A".into(),
        issuer: String::new(),
        patient_pseudonym: "PSN-A".into(),
        original: Uids {
            study: "1.2.3.1".into(),
            series: "1.2.3.1.1".into(),
            sop: format!("1.2.3.1.1.{n}"),
        },
        released: Uids {
            study: "2.25.1".into(),
            series: "2.25.11".into(),
            sop: format!("2.25.11{n}"),
        },
        output_path: format!("A/{n}.dcm"),
        output_sha256: "00".repeat(32),
        policy_hash: "ab".repeat(32),
        veil_version: "test".into(),
    }
}

/// A store with two consent records (A granted: C-1, B refused: C-2) and three release batches
/// for A under C-1: 2 consent entries + 9 release entries, 4 tree heads.
fn filled(b: &common::Fresh) -> Store {
    let settings = Settings::default();
    let store = Store::open(Some(&b.url), Some(&common::key())).unwrap();
    store
        .record_consents(
            &[
                consent("MRN-A", PURPOSE, ConsentState::Granted),
                consent("MRN-B", PURPOSE, ConsentState::Refused),
            ],
            &settings,
        )
        .unwrap();
    let records = store.consent_history("MRN-A", "").unwrap();
    let Decision::Admit { consent_ref } = decide(&records, &settings, PURPOSE, "CT", "20240101")
    else {
        panic!("A granted");
    };
    assert!(consent_ref.starts_with("C-1@"), "{consent_ref}");
    for batch in 0..3 {
        let entries: Vec<NewEntry> = (0..3)
            .map(|i| release_entry(&store, &consent_ref, batch * 3 + i))
            .collect();
        store.append_batch(&entries).unwrap();
    }
    store
}

fn entries(store: &Store) -> Vec<LedgerEntry> {
    let mut v = Vec::new();
    store
        .scan_ledger(|e| {
            v.push(e.clone());
            true
        })
        .unwrap();
    v
}

fn all_problems(r: &veil_store::VerifyReport) -> String {
    format!(
        "{:?} {:?} {:?} {:?}",
        r.first_bad, r.checkpoint_problems, r.head_problems, r.consent_problems
    )
}

#[test]
fn a_fresh_log_verifies_and_its_witness_file_holds_every_head() {
    for b in common::backends("tl_fresh") {
        let store = filled(&b);
        let r = store.verify_ledger().unwrap();
        assert!(r.ok(), "{}: {}", b.name, all_problems(&r));
        assert_eq!((r.entries, r.tree_signed_through), (11, 11), "{}", b.name);
        let heads = store.tree_heads().unwrap();
        assert_eq!(
            heads.iter().map(|h| h.size).collect::<Vec<_>>(),
            vec![2, 5, 8, 11]
        );
        assert_eq!(
            heads.last().unwrap().root,
            r.tree_root,
            "the latest head signs the root of every entry"
        );
        if b.name == "sqlite" {
            let witness = store
                .witness_file()
                .expect("SQLite stores have a witness file");
            assert_eq!(tree_head::read_heads(witness).unwrap(), heads);
        }
        // The consent entries are what the release entries name.
        let e = entries(&store);
        assert_eq!(e[0].release_id, "consent");
        assert_eq!(e[2].consent_ref, format!("C-1@{}", e[0].entry_hash));
        store.close();
    }
}

#[test]
fn consent_rows_edited_deleted_or_inserted_are_named() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "tl_cedit",
            "UPDATE consent_records SET state = 'granted' WHERE id = 2",
            "consent record C-2 differs from what ledger entry 2 recorded: edited",
        ),
        (
            "tl_cdel",
            "DELETE FROM consent_records WHERE id = 2",
            "consent record C-2 (ledger entry 2) is missing from the registry: deleted",
        ),
        (
            "tl_cins",
            "INSERT INTO consent_records SELECT 9, patient_ref, purpose, 'granted', scope_modalities, scope_from, scope_to, effective_at, recorded_at, source, evidence_enc, valid_from, valid_until FROM consent_records WHERE id = 2",
            "consent record C-9 has no ledger entry: inserted outside Veil",
        ),
    ];
    for (name, sql, expect) in cases {
        for b in common::backends(name) {
            let store = filled(&b);
            store.execute_raw(sql).unwrap();
            let r = store.verify_ledger().unwrap();
            assert!(!r.ok() && r.first_bad.is_none(), "{}: {name}", b.name);
            assert_eq!(r.consent_problems, vec![expect.to_string()], "{}", b.name);
            store.close();
        }
    }
}

#[test]
fn a_release_naming_a_refusal_is_reported() {
    for b in common::backends("tl_refused") {
        let store = filled(&b);
        let c2 = &entries(&store)[1];
        let bad = format!("C-2@{}", c2.entry_hash);
        store
            .append_batch(&[release_entry(&store, &bad, 99)])
            .unwrap();
        let r = store.verify_ledger().unwrap();
        assert_eq!(
            r.consent_problems,
            vec!["ledger entry 12: released under consent C-2, which the log records as refused (entry 2)".to_string()],
            "{}",
            b.name
        );
        store.close();
    }
}

#[test]
fn truncating_the_tail_with_its_checkpoint_and_heads_is_caught_by_a_saved_head() {
    for b in common::backends("tl_trunc") {
        let store = filled(&b);
        store.checkpoint().unwrap();
        let saved = store.tree_heads().unwrap();
        // The last release batch goes, with everything in the database that vouched for it.
        for sql in [
            "DELETE FROM ledger WHERE seq > 8",
            "DELETE FROM ledger_checkpoints WHERE seq > 8",
            "DELETE FROM ledger_tree_heads WHERE size > 8",
        ] {
            store.execute_raw(sql).unwrap();
        }
        // The database alone is consistent again: that is why heads are kept outside it.
        assert!(store.verify_ledger().unwrap().ok(), "{}", b.name);
        let r = store.verify_ledger_with(&saved, None).unwrap();
        assert!(!r.ok(), "{}", b.name);
        assert!(
            r.head_problems
                .iter()
                .any(|p| p.contains("saved tree head of size 11")
                    && p.contains("rolled back after entry 8 (entries 9..11 removed)")),
            "{}: {:?}",
            b.name,
            r.head_problems
        );
        store.close();
    }
}

#[test]
fn a_forged_append_with_a_correct_hash_is_covered_by_no_head() {
    for b in common::backends("tl_forge") {
        let store = filled(&b);
        let last = entries(&store).pop().unwrap();
        let mut forged = last.clone();
        forged.seq = 12;
        forged.released_sop = "2.25.999".into();
        forged.prev_hash = last.entry_hash.clone();
        forged.entry_hash = forged.compute_hash();
        let f = forged.fields();
        let quoted: Vec<String> = f.iter().map(|v| format!("'{v}'")).collect();
        store
            .execute_raw(&format!(
                "INSERT INTO ledger VALUES (12, {}, '{}')",
                quoted.join(", "),
                forged.entry_hash
            ))
            .unwrap();
        let r = store.verify_ledger().unwrap();
        assert!(r.first_bad.is_none(), "the chain links: {}", b.name);
        assert_eq!(
            r.head_problems,
            vec!["entries 12..12 are covered by no signed tree head: written outside Veil (or by a Veil from before tree heads: check them, then sign with `veil ledger head --sign`)".to_string()],
            "{}",
            b.name
        );
        store.close();
    }
}

#[test]
fn a_history_rewritten_and_re_signed_with_another_key_fails_the_pinned_key_and_saved_heads() {
    let forger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    for b in common::backends("tl_resign") {
        let store = filled(&b);
        let saved = store.tree_heads().unwrap();
        let pinned = store.ledger_public_key().unwrap();
        // Entry 4 goes to another recipient; every hash after it is recomputed, the
        // checkpoints dropped and one head signed over the new tree with the forger's key.
        let mut prev = veil_store::ledger::GENESIS.to_string();
        let mut leaves = Vec::new();
        for mut e in entries(&store) {
            if e.seq == 4 {
                e.recipient = "elsewhere".into();
            }
            e.prev_hash = prev.clone();
            e.entry_hash = e.compute_hash();
            prev = e.entry_hash.clone();
            leaves.push(tree_head::entry_leaf(&e.entry_hash).unwrap());
            store
                .execute_raw(&format!(
                    "UPDATE ledger SET recipient = '{}', prev_hash = '{}', entry_hash = '{}' WHERE seq = {}",
                    e.recipient, e.prev_hash, e.entry_hash, e.seq
                ))
                .unwrap();
        }
        store.execute_raw("DELETE FROM ledger_checkpoints").unwrap();
        store.execute_raw("DELETE FROM ledger_tree_heads").unwrap();
        let head = TreeHead::sign(&forger, 11, &Tree::from_leaves(leaves).root_at(11));
        store
            .execute_raw(&format!(
                "INSERT INTO ledger_tree_heads VALUES (11, '{}', '{}', '{}', '{}', '')",
                head.root, head.signed_at, head.public_key, head.signature
            ))
            .unwrap();
        // With the pinned key: the head is not the ledger's.
        let r = store.verify_ledger_with(&[], Some(&pinned)).unwrap();
        assert!(r.first_bad.is_none());
        assert!(
            r.head_problems[0].contains("signed by a key other than the pinned one"),
            "{}: {:?}",
            b.name,
            r.head_problems
        );
        // With the heads a witness saved: the first rewritten entry is located.
        let r = store.verify_ledger_with(&saved, Some(&pinned)).unwrap();
        let p = r.head_problems.join(" | ");
        assert!(
            p.contains("saved tree head of size 5")
                && p.contains("the first changed entry is among entries 3..5"),
            "{}: {p}",
            b.name
        );
        // A keyless export audit with the pinned key fails the same way.
        let mut buf = Vec::new();
        store.export_ledger(&mut buf).unwrap();
        let r = veil_store::ledger::verify_export(&mut &buf[..], &[], Some(&pinned)).unwrap();
        assert!(!r.ok(), "{}", b.name);
        store.close();
    }
}

#[test]
fn receipts_check_offline_with_the_public_key_and_fail_after_any_change() {
    for b in common::backends("tl_receipt") {
        let store = filled(&b);
        let pk = store.ledger_public_key().unwrap();
        let early = store.tree_heads().unwrap()[0].clone();
        for seq in 1..=11 {
            let r = store.receipt(seq).unwrap();
            assert_eq!(r.check(&pk), Ok(()), "{}: entry {seq}", b.name);
        }
        let r = store.receipt(4).unwrap();
        let mut edited = r.clone();
        edited.entry.recipient = "elsewhere".into();
        assert!(edited.check(&pk).unwrap_err().contains("edited"));
        let mut rehashed = edited.clone();
        rehashed.entry.entry_hash = rehashed.entry.compute_hash();
        assert!(rehashed.check(&pk).unwrap_err().contains("proof fails"));
        let mut moved = r.clone();
        moved.tree_head.root = "00".repeat(32);
        assert!(moved
            .check(&pk)
            .unwrap_err()
            .contains("signature does not verify"));
        let other = hex::encode(
            ed25519_dalek::SigningKey::from_bytes(&[7; 32])
                .verifying_key()
                .as_bytes(),
        );
        assert!(r.check(&other).is_err());
        let c = store.consistency_receipt(&early).unwrap();
        assert_eq!(c.check(&pk), Ok(()), "{}", b.name);
        let mut bent = c.clone();
        bent.consistency_path[0] = "11".repeat(32);
        assert!(bent.check(&pk).unwrap_err().contains("proof fails"));
        store.close();
    }
}

/// A small deterministic generator (no dependency): xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn proofs_agree_with_an_independent_python_implementation() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/merkle-rfc9162.py"
    );
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for round in 0..6 {
        let n = 1 + (rng.next() % 300) as usize + round * 50;
        let data: Vec<[u8; 32]> = (0..n)
            .map(|_| std::array::from_fn(|_| rng.next() as u8))
            .collect();
        let tree = Tree::from_leaves(data.iter().map(|d| merkle::leaf_hash(d)).collect());
        let roots: Vec<u64> = (0..8).map(|_| rng.next() % (n as u64 + 1)).collect();
        let inclusion: Vec<(u64, u64)> = (0..20)
            .map(|_| {
                let size = 1 + rng.next() % n as u64;
                (rng.next() % size, size)
            })
            .collect();
        let consistency: Vec<(u64, u64)> = (0..20)
            .map(|_| {
                let second = 1 + rng.next() % n as u64;
                (1 + rng.next() % second, second)
            })
            .collect();
        let request = serde_json::json!({
            "leaves": data.iter().map(hex::encode).collect::<Vec<_>>(),
            "roots": roots,
            "inclusion": inclusion,
            "consistency": consistency,
        });
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the independent implementation");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let hexes = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect()
        };
        let unhex = |s: &str| -> [u8; 32] { hex::decode(s).unwrap().try_into().unwrap() };
        for (m, r) in roots.iter().zip(hexes(&v["roots"])) {
            assert_eq!(hex::encode(tree.root_at(*m)), r, "root of {m} of {n}");
        }
        for ((i, size), p) in inclusion.iter().zip(v["inclusion"].as_array().unwrap()) {
            let theirs = hexes(p);
            let ours: Vec<String> = tree
                .inclusion_proof(*i, *size)
                .unwrap()
                .iter()
                .map(hex::encode)
                .collect();
            assert_eq!(ours, theirs, "inclusion of {i} in {size}");
            let path: Vec<[u8; 32]> = theirs.iter().map(|s| unhex(s)).collect();
            assert!(merkle::verify_inclusion(
                &merkle::leaf_hash(&data[*i as usize]),
                *i,
                *size,
                &path,
                &tree.root_at(*size)
            ));
        }
        for ((a, c), p) in consistency.iter().zip(v["consistency"].as_array().unwrap()) {
            let theirs = hexes(p);
            let ours: Vec<String> = tree
                .consistency_proof(*a, *c)
                .unwrap()
                .iter()
                .map(hex::encode)
                .collect();
            assert_eq!(ours, theirs, "consistency {a} -> {c}");
            let path: Vec<[u8; 32]> = theirs.iter().map(|s| unhex(s)).collect();
            assert!(merkle::verify_consistency(
                *a,
                *c,
                &tree.root_at(*a),
                &tree.root_at(*c),
                &path
            ));
        }
    }
}

#[test]
fn a_witness_file_that_cannot_be_written_does_not_undo_recorded_entries() {
    for b in common::backends("tl_witness") {
        let mut store = filled(&b);
        // A directory where the witness file should be: every append to it fails.
        let dir = tempfile::tempdir().unwrap();
        store.set_witness_file(Some(dir.path().to_path_buf()));
        let appended = store.append_batch(&[release_entry(&store, "default:x", 50)]);
        assert_eq!(appended.unwrap(), 12, "{}: the entry is recorded", b.name);
        let failure = store.take_witness_failure().expect("the failure is kept");
        assert!(failure.contains("witness file"), "{failure}");
        assert!(store.take_witness_failure().is_none(), "reported once");
        let r = store.verify_ledger().unwrap();
        assert!(
            r.ok() && r.tree_signed_through == 12,
            "{}: {}",
            b.name,
            all_problems(&r)
        );
        store.close();
    }
}
