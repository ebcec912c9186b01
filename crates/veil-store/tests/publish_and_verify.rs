//! On both back-ends: batched appends and the SQLite verification path agree with the entry
//! hash definition (including multi-byte text and field boundaries), and the release publishing
//! protocol (intent, rename, batched commit, reconcile) keeps outputs and entries one to one.

mod common;

use std::path::Path;

use sha2::{Digest, Sha256};
use veil_store::ledger::{NewEntry, Uids};
use veil_store::publish::{self, Published, Publisher};
use veil_store::Store;

fn entry(store: &Store, n: usize, bytes: &[u8]) -> NewEntry {
    let pid = format!("MRN-{}", n % 4);
    NewEntry {
        release_id: "R0001".into(),
        recipient: "Zürich Ω lab".into(),
        purpose: "internal-research".into(),
        consent_ref: "default:internal-research".into(),
        patient_ref: store.patient_ref(&pid, "").unwrap(),
        patient_id: pid,
        issuer: String::new(),
        patient_pseudonym: format!("VEIL-{:04}", n % 4),
        original: Uids {
            study: format!("1.2.3.{}", n / 10),
            series: format!("1.2.3.{}.1", n / 5),
            sop: format!("1.2.3.{n}.1.1"),
        },
        released: Uids {
            study: format!("2.25.{}", 1000 + n / 10),
            series: format!("2.25.{}", 2000 + n / 5),
            sop: format!("2.25.{}", 3000 + n),
        },
        output_path: format!("VEIL-{:04}/é/{n}.dcm", n % 4),
        output_sha256: hex::encode(Sha256::digest(bytes)),
        policy_hash: "ab".repeat(32),
        veil_version: "test".into(),
    }
}

fn open(b: &common::Fresh) -> Store {
    Store::open(Some(&b.url), Some(&common::key())).unwrap()
}

fn count(store: &Store) -> i64 {
    store.verify_ledger().unwrap().entries
}

#[test]
fn batched_appends_verify_and_field_boundaries_count() {
    for b in common::backends("batchverify") {
        let store = open(&b);
        store.append(&entry(&store, 0, b"x"), || Ok(())).unwrap();
        let batch: Vec<NewEntry> = (1..1205).map(|n| entry(&store, n, b"x")).collect();
        assert_eq!(store.append_batch(&batch).unwrap(), 1205);
        // The batch crossed entry 1,000, so its tip was signed without being asked.
        let r = store.verify_ledger().unwrap();
        assert!(r.ok(), "{}: {r:?}", b.name);
        assert_eq!(
            (r.entries, r.checkpoints, r.signed_through),
            (1205, 1, 1205),
            "{}",
            b.name
        );
        // Every stored hash is the documented one (what an auditor recomputes from an export).
        let mut n = 0;
        store
            .scan_ledger(|e| {
                assert_eq!(e.compute_hash(), e.entry_hash);
                n += 1;
                true
            })
            .unwrap();
        assert_eq!(n, 1205);

        // Moving one byte from one field to the next keeps the concatenation but not the
        // length-prefixed encoding: detected.
        store
            .execute_raw("UPDATE ledger SET release_id = 'R000', recipient = '1Zürich Ω lab' WHERE seq = 700")
            .unwrap();
        let r = store.verify_ledger().unwrap();
        let bad = r.first_bad.expect("boundary shift not detected");
        assert_eq!(bad.seq, 700, "{}: {}", b.name, bad.what);
        assert!(bad.what.contains("edited"), "{}", bad.what);
        store
            .execute_raw("UPDATE ledger SET release_id = 'R0001', recipient = 'Zürich Ω lab' WHERE seq = 700")
            .unwrap();
        assert!(store.verify_ledger().unwrap().ok());

        // A multi-byte character swapped for two one-byte ones (same text length in
        // characters, different in bytes): detected.
        store
            .execute_raw("UPDATE ledger SET recipient = 'Zurich Ω lab' WHERE seq = 3")
            .unwrap();
        assert_eq!(store.verify_ledger().unwrap().first_bad.unwrap().seq, 3);
        store
            .execute_raw("UPDATE ledger SET recipient = 'Zürich Ω lab' WHERE seq = 3")
            .unwrap();

        // A stored hash spelled in capitals is not the stored hash: detected at that entry.
        store
            .execute_raw("UPDATE ledger SET entry_hash = UPPER(entry_hash) WHERE seq = 9")
            .unwrap();
        assert_eq!(store.verify_ledger().unwrap().first_bad.unwrap().seq, 9);
        store.close();
    }
}

/// Stages `bytes` as the pipeline does (a temp file) and returns it.
fn stage(dir: &Path, n: usize, bytes: &[u8]) -> std::path::PathBuf {
    let t = dir.join(format!("{n}.part"));
    std::fs::write(&t, bytes).unwrap();
    t
}

fn publish_one(p: &Publisher, store: &Store, out: &Path, tmp: &Path, n: usize) -> Published {
    let bytes = format!("output {n}").into_bytes();
    let e = entry(store, n, &bytes);
    let dest = out.join(&e.output_path);
    let from = stage(tmp, n, &bytes);
    p.publish(e, &dest.clone(), &mut || {
        if dest.exists() {
            return Ok(()); // the pipeline found an identical file in place
        }
        std::fs::create_dir_all(dest.parent().unwrap())?;
        std::fs::rename(&from, &dest)
    })
    .unwrap()
}

fn outputs(out: &Path) -> usize {
    fn walk(d: &Path, n: &mut usize) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.file_name().unwrap() == ".veil" {
                continue;
            }
            if p.is_dir() {
                walk(&p, n);
            } else {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(out, &mut n);
    n
}

#[test]
fn publishing_keeps_outputs_and_entries_one_to_one() {
    for b in common::backends("publish") {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let store = open(&b);

        // A release dies before its batch commits: its outputs are in place, unrecorded.
        {
            let (p, settled) = Publisher::open(&store, &out, "R0001", 10).unwrap();
            assert_eq!(settled, publish::Reconciled::default());
            for n in 0..3 {
                assert_eq!(publish_one(&p, &store, &out, &tmp, n), Published::Queued);
            }
            // One release per directory at a time.
            let second = Publisher::open(&store, &out, "R0002", 10);
            assert!(
                matches!(&second, Err(e) if e.to_string().contains("another release")),
                "{}: second publisher was not refused",
                b.name
            );
            assert_eq!(outputs(&out), 3);
            // Dropped without finish(): as if killed.
        }
        let r = publish::reconcile(&store, &out).unwrap();
        assert_eq!((r.intents, r.rolled_back), (3, 3), "{}: {r:?}", b.name);
        assert_eq!(outputs(&out), 0, "{}", b.name);
        assert_eq!(count(&store), 0);
        // Reconciling twice finds nothing more to do.
        assert_eq!(publish::reconcile(&store, &out).unwrap().intents, 0);

        // A full run: batches of 2 commit along the way, finish() commits the rest.
        {
            let (p, _) = Publisher::open(&store, &out, "R0002", 2).unwrap();
            for n in 0..5 {
                publish_one(&p, &store, &out, &tmp, n);
            }
            // An output taken back before its commit (the pipeline retracting a conflicting
            // version) gets no entry.
            std::fs::remove_file(out.join(entry(&store, 4, b"").output_path)).unwrap();
            assert_eq!(p.finish().unwrap(), (4, 0), "{}", b.name);
        }
        assert_eq!((outputs(&out), count(&store)), (4, 4), "{}", b.name);
        assert_eq!(
            std::fs::metadata(publish::intent_log(&out)).unwrap().len(),
            0
        );

        // Resumed after a kill that came after the commit but before the pipeline noted the
        // file: the identical file in place is recognised, no second entry.
        {
            let (p, _) = Publisher::open(&store, &out, "R0003", 2).unwrap();
            assert_eq!(
                publish_one(&p, &store, &out, &tmp, 2),
                Published::AlreadyRecorded,
                "{}",
                b.name
            );
            assert_eq!(p.finish().unwrap(), (0, 1));
        }
        assert_eq!(count(&store), 4);

        // An intent left behind for an entry that did commit, and one whose path now holds a
        // different file: both kept.
        let committed = entry(&store, 1, b"output 1");
        let foreign = entry(&store, 7, b"output 7");
        std::fs::create_dir_all(out.join(&foreign.output_path).parent().unwrap()).unwrap();
        std::fs::write(out.join(&foreign.output_path), b"someone else's file").unwrap();
        let mut log = String::new();
        for e in [&committed, &foreign] {
            log.push_str(&format!(
                "R0004\t{}\t{}\t{}\n",
                e.released.sop, e.output_path, e.output_sha256
            ));
        }
        log.push_str("R0004\t2.25.9\tcut short");
        std::fs::write(publish::intent_log(&out), log).unwrap();
        let r = publish::reconcile(&store, &out).unwrap();
        assert_eq!(
            (r.intents, r.recorded, r.foreign, r.rolled_back),
            (2, 1, 1, 0),
            "{}: {r:?}",
            b.name
        );
        assert!(out.join(&committed.output_path).exists());
        assert!(out.join(&foreign.output_path).exists());
        assert!(store.verify_ledger().unwrap().ok());
        store.close();
    }
}

/// A release with several writers (a Spark job): the coordinator holds the lock, workers publish
/// through intent logs of their own, and settling the directory keeps outputs and entries one to
/// one whether a worker finished, was killed, or was killed and retried.
#[test]
fn workers_under_one_coordinator_keep_outputs_and_entries_one_to_one() {
    for b in common::backends("workers") {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let store = open(&b);
        let lock = publish::OutLock::take(&out).unwrap();
        // No other release or reconcile while the coordinator holds the directory.
        assert!(Publisher::open(&store, &out, "R0002", 10).is_err());
        assert!(publish::reconcile(&store, &out).is_err());
        let workers = |range: std::ops::Range<usize>, finish: bool| {
            // Its own store, as each Spark task's Python worker opens one.
            let own = open(&b);
            let p = Publisher::open_worker(&own, &out, "R0001", 100).unwrap();
            for n in range {
                publish_one(&p, &own, &out, &tmp, n);
            }
            if finish {
                p.finish().unwrap();
            }
            // Dropped without finish(): as if killed before its commit.
        };
        std::thread::scope(|s| {
            s.spawn(|| workers(0..3, true));
            s.spawn(|| workers(3..6, false));
        });
        assert_eq!((outputs(&out), count(&store)), (6, 3), "{}", b.name);
        // Only the killed worker's log is left.
        let logs = || {
            std::fs::read_dir(publish::intent_dir(&out))
                .unwrap()
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "tsv"))
                .count()
        };
        assert_eq!(logs(), 1, "{}", b.name);
        let r = lock.reconcile(&store).unwrap();
        assert_eq!((r.intents, r.rolled_back), (3, 3), "{}: {r:?}", b.name);
        assert_eq!((outputs(&out), logs()), (3, 0), "{}", b.name);

        // Killed again, then retried: the retry records what its killed attempt published.
        workers(3..6, false);
        workers(3..6, true);
        let r = lock.reconcile(&store).unwrap();
        assert_eq!(
            (r.intents, r.recorded, r.rolled_back),
            (3, 3, 0),
            "{}: {r:?}",
            b.name
        );
        assert_eq!(
            (outputs(&out), count(&store), logs()),
            (6, 6, 0),
            "{}",
            b.name
        );
        // A retry of a worker whose entries did commit adds none.
        workers(0..3, true);
        assert_eq!(count(&store), 6, "{}", b.name);
        // Closing waits for a worker still publishing; once closed, no worker starts.
        let running = Publisher::open_worker(&store, &out, "R0001", 100).unwrap();
        let short = std::time::Duration::from_millis(300);
        let refused = lock.close_release("R0001", short).unwrap_err();
        assert!(
            refused.to_string().contains("still publishing"),
            "{refused}"
        );
        drop(running);
        lock.close_release("R0001", short).unwrap();
        let late = Publisher::open_worker(&store, &out, "R0001", 100);
        assert!(
            matches!(&late, Err(e) if e.to_string().contains("is closed")),
            "{}: a worker started after the release was closed",
            b.name
        );
        drop(lock);
        assert_eq!(publish::reconcile(&store, &out).unwrap().intents, 0);
        assert!(store.verify_ledger().unwrap().ok());
        store.close();
    }
}

#[test]
fn two_writers_appending_batches_keep_one_chain() {
    for b in common::backends("twowriters") {
        let first = open(&b);
        first.append(&entry(&first, 0, b"x"), || Ok(())).unwrap();
        std::thread::scope(|s| {
            for w in 0..2 {
                let url = b.url.clone();
                s.spawn(move || {
                    // Its own store: its own connection (another process would do the same).
                    let store = Store::open(Some(&url), Some(&common::key())).unwrap();
                    for round in 0..10 {
                        let batch: Vec<NewEntry> = (0..20)
                            .map(|i| entry(&store, 1 + w * 1000 + round * 20 + i, b"x"))
                            .collect();
                        store.append_batch(&batch).unwrap();
                    }
                    store.close();
                });
            }
        });
        let r = first.verify_ledger().unwrap();
        assert!(r.ok(), "{}: {r:?}", b.name);
        assert_eq!(r.entries, 401, "{}", b.name);
        first.close();
    }
}

#[test]
fn a_retracted_entry_leaves_every_query_and_the_chain_still_verifies() {
    for b in common::backends("retract") {
        let store = open(&b);
        let batch: Vec<NewEntry> = (0..8).map(|n| entry(&store, n, b"x")).collect();
        store.append_batch(&batch).unwrap();
        // Entry 5 (n = 4): patient MRN-0, who also has entry 1 (n = 0).
        let e = &batch[4];
        let instances = |s: &Store| -> i64 {
            s.disclosures("MRN-0", "")
                .unwrap()
                .iter()
                .map(|d| d.instances)
                .sum()
        };
        assert_eq!(instances(&store), 2, "{}", b.name);
        assert_eq!(store.trace(&e.released).unwrap().len(), 1);
        assert!(store
            .is_recorded(&e.released.sop, &e.output_path, &e.output_sha256)
            .unwrap());

        let r = store
            .retract(&e.released.sop, &e.output_path, &e.output_sha256, "R0002")
            .unwrap()
            .expect("the entry is retracted");
        assert_eq!(r.seq, 5, "{}", b.name);
        // Taking it back twice (a crash between the entry and the file's removal) adds nothing.
        assert!(store
            .retract(&e.released.sop, &e.output_path, &e.output_sha256, "R0002")
            .unwrap()
            .is_none());
        // An output that was never recorded has nothing to retract.
        assert!(store
            .retract(&e.released.sop, &e.output_path, &"0".repeat(64), "R0002")
            .unwrap()
            .is_none());

        assert_eq!(instances(&store), 1, "{}", b.name);
        // (Trace then falls back to the study: the other instances of it, not this one.)
        assert!(
            store
                .trace(&e.released)
                .unwrap()
                .iter()
                .all(|t| t.matched_by == "study" && t.entry.released_sop != e.released.sop),
            "{}",
            b.name
        );
        assert!(!store
            .is_recorded(&e.released.sop, &e.output_path, &e.output_sha256)
            .unwrap());
        // The retraction is an ordinary, chained entry: 9 entries, all verify.
        let v = store.verify_ledger().unwrap();
        assert!(v.ok(), "{}: {v:?}", b.name);
        assert_eq!(v.entries, 9, "{}", b.name);
        // Editing the retraction (to revive the entry) is caught like any other edit.
        store
            .execute_raw("UPDATE ledger SET output_sha256 = 'retracted:4' WHERE seq = 9")
            .unwrap();
        let v = store.verify_ledger().unwrap();
        assert!(!v.ok(), "{}: {v:?}", b.name);
    }
}
