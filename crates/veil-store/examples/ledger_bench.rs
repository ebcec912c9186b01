//! Ledger benchmark (run by scripts/bench-ledger.sh, which also times `veil ledger verify` and
//! `veil release` against `veil deid`). Measures, on one store:
//!
//! 1. appends as a release makes them ([`Publisher`]: intent line, rename of a real file into
//!    place, entries committed in batches of `publish::BATCH`);
//! 2. appends one transaction each ([`Store::append`], how releases recorded entries before
//!    batching), for comparison;
//! 3. bulk appends (batches of 10,000) filling the ledger to TOTAL entries for the verify timing;
//! 4. the transparency log over all of it: building the Merkle tree from the stored entries,
//!    then inclusion proofs (made and checked) and a consistency proof.
//!
//! Usage: ledger_bench DB_PATH WORK_DIR RELEASE_APPENDS SINGLE_APPENDS TOTAL_ENTRIES

use std::path::Path;
use std::time::Instant;

use veil_store::ledger::{NewEntry, Uids};
use veil_store::publish::{Publisher, BATCH};
use veil_store::Store;

// The `veil` binary's allocator, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: usize| a.get(i).map(|s| s.parse().unwrap()).unwrap_or(d);
    let db = a.get(1).expect("DB path");
    let work = Path::new(a.get(2).expect("work dir"));
    let release_n = arg(3, 50_000);
    let single = arg(4, 5_000);
    let total = arg(5, 1_000_000);
    let key = veil_keys::Key::from_bytes([9; 32]);
    let store = Store::open(Some(db), Some(&key)).unwrap();
    let pids: Vec<(String, String)> = (0..1000)
        .map(|i| {
            let id = format!("MRN{i:06}");
            let r = store.patient_ref(&id, "").unwrap();
            (id, r)
        })
        .collect();
    // Every patient granted research: 1,000 consent entries, and each release entry names its
    // patient's by hash, as a release does.
    let settings = veil_store::Settings::default();
    let consents: Vec<veil_store::ConsentInput> = pids
        .iter()
        .map(|(id, _)| veil_store::ConsentInput {
            patient_id: id.clone(),
            issuer: String::new(),
            purpose: "internal-research".into(),
            state: veil_store::ConsentState::Granted,
            scope: veil_store::Scope::default(),
            effective_at: String::new(),
            valid_from: String::new(),
            valid_until: String::new(),
            source: "bench".into(),
            evidence: String::new(),
        })
        .collect();
    store.record_consents(&consents, &settings).unwrap();
    let consent_refs: Vec<String> = pids
        .iter()
        .map(|(id, _)| store.consent_history(id, "").unwrap()[0].reference())
        .collect();
    // Released UIDs are random-looking 2.25 UIDs, as the de-identifier makes them (their index
    // takes random inserts); instances come patient by patient (50 each), as a release walks
    // its sorted inputs.
    let uid = |tag: u8, n: usize| {
        let d = key.mac("bench", &[&[tag][..], &(n as u64).to_be_bytes()].concat());
        format!(
            "2.25.{}",
            u128::from_be_bytes(d[..16].try_into().unwrap()) >> 1
        )
    };
    let mk = |n: usize| {
        let (pid, pref) = &pids[(n / 50) % pids.len()];
        let consent_ref = consent_refs[(n / 50) % pids.len()].clone();
        let pseudonym = format!("VEIL-{:012X}", (n / 50) % 1000);
        let released = Uids {
            study: uid(1, n / 10),
            series: uid(2, n / 5),
            sop: uid(3, n),
        };
        // Laid out as the pipeline writes outputs: patient / study / series / instance.
        let output_path = format!(
            "{pseudonym}/{}/{}/{}.dcm",
            released.study, released.series, released.sop
        );
        NewEntry {
            release_id: "R0001".into(),
            recipient: "lab".into(),
            purpose: "internal-research".into(),
            consent_ref,
            patient_ref: pref.clone(),
            patient_id: pid.clone(),
            issuer: String::new(),
            patient_pseudonym: pseudonym,
            original: Uids {
                study: format!("1.2.840.1.{n}"),
                series: format!("1.2.840.1.{n}.1"),
                sop: format!("1.2.840.1.{n}.1.1"),
            },
            released,
            output_path,
            output_sha256: "ab".repeat(32),
            policy_hash: "cd".repeat(32),
            veil_version: "0.1.0".into(),
        }
    };

    // 1. The release path, with real files renamed into place (created beforehand, untimed).
    let out = work.join("out");
    let staged = work.join("staged");
    let part = |n: usize| staged.join(format!("{}/{n}.part", n / 1000));
    for n in 0..release_n {
        if n % 1000 == 0 {
            std::fs::create_dir_all(part(n).parent().unwrap()).unwrap();
        }
        std::fs::write(part(n), [0u8; 64]).unwrap();
    }
    // The rename (with its mkdir) is the pipeline's, and `veil deid` pays it too: it is timed
    // apart, and the ledger's rate is over what remains (entry building included).
    let mut renaming = std::time::Duration::ZERO;
    let t = Instant::now();
    let (publisher, _) = Publisher::open(&store, &out, "R0001", BATCH).unwrap();
    for n in 0..release_n {
        let e = mk(n);
        let from = part(n);
        let to = out.join(&e.output_path);
        publisher
            .publish(e, &to.clone(), &mut || {
                let r = Instant::now();
                std::fs::create_dir_all(to.parent().unwrap())?;
                let done = std::fs::rename(&from, &to);
                renaming += r.elapsed();
                done
            })
            .unwrap();
    }
    let (recorded, _) = publisher.finish().unwrap();
    drop(publisher);
    let s = t.elapsed().as_secs_f64();
    let r = renaming.as_secs_f64();
    assert_eq!(recorded as usize, release_n);
    println!(
        "ledger appends within a release (intent line + batches of {BATCH}): {release_n} in {:.2} s = {:.0} appends/s \
         (whole publish step {s:.2} s, of which {r:.2} s the pipeline's mkdir + rename)",
        s - r,
        release_n as f64 / (s - r)
    );

    // 2. One transaction per entry.
    let t = Instant::now();
    for n in release_n..release_n + single {
        store.append(&mk(n), || Ok(())).unwrap();
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "one transaction per entry (Store::append): {single} in {s:.2} s = {:.0} appends/s",
        single as f64 / s
    );

    // 3. Bulk fill.
    let t = Instant::now();
    let mut n = release_n + single;
    let start = n;
    // The consent entries count towards the total.
    let releases_total = total.saturating_sub(pids.len());
    while n < releases_total {
        let batch: Vec<NewEntry> = (n..(n + 10_000).min(releases_total)).map(mk).collect();
        store.append_batch(&batch).unwrap();
        n += batch.len();
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "bulk (batches of 10,000): {} in {s:.2} s = {:.0} appends/s",
        n - start,
        (n - start) as f64 / s
    );
    store.checkpoint().unwrap();
    println!(
        "ledger now holds {} entries ({} consent entries, {n} release entries)",
        n + pids.len(),
        pids.len()
    );
    transparency(&store);
}

/// 4. The Merkle tree over every entry and proofs against the latest signed head.
fn transparency(store: &Store) {
    use veil_store::merkle;
    let t = Instant::now();
    let tree = store.ledger_tree().unwrap();
    let built = t.elapsed().as_secs_f64();
    let head = store
        .latest_tree_head()
        .unwrap()
        .expect("appends sign heads");
    let size = head.size as u64;
    let root = head.root_hash().unwrap();
    assert_eq!(tree.root_at(size), root, "the head signs the tree's root");
    let proofs = 10_000u64;
    let t = Instant::now();
    let mut path_len = 0;
    for i in 0..proofs {
        let m = (i * 7_919 * 104_729) % size;
        let p = tree.inclusion_proof(m, size).unwrap();
        path_len += p.len();
        assert!(merkle::verify_inclusion(
            &tree.leaf(m).unwrap(),
            m,
            size,
            &p,
            &root
        ));
    }
    let per = t.elapsed().as_secs_f64() / proofs as f64;
    let t = Instant::now();
    let c = tree.consistency_proof(size / 3, size).unwrap();
    assert!(merkle::verify_consistency(
        size / 3,
        size,
        &tree.root_at(size / 3),
        &root,
        &c
    ));
    let cons = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let receipt = store.receipt(head.size / 2).unwrap();
    receipt.check(&head.public_key).unwrap();
    let one = t.elapsed().as_secs_f64();
    println!(
        "Merkle tree over {size} entries: built from the database in {built:.2} s; inclusion proof made + checked: {:.1} µs each ({proofs} proofs, {:.0} hashes each); consistency proof {}→{size} made + checked: {:.1} ms; one receipt from a cold start (tree read, proof, signature check): {one:.2} s",
        per * 1e6,
        path_len as f64 / proofs as f64,
        size / 3,
        cons * 1e3
    );
}
