//! Ledger appends from many writers at once, as the tasks of a Spark release make them (run by
//! scripts/bench-ledger-writers.sh). Each writer is a thread with a store of its own (its own
//! connection, as each Spark task's Python worker has), appending batches of entries to one
//! hash-chained ledger; the chain serialises them (PostgreSQL: an advisory lock per
//! transaction; SQLite: `BEGIN IMMEDIATE`). Prints one line per (writers, batch): entries/s and
//! the mean and worst commit latency, then checks that the chain is whole.
//!
//! Usage: ledger_writers DB ENTRIES_PER_WRITER WRITERS,.. BATCH,..

use std::time::{Duration, Instant};

use veil_store::ledger::{NewEntry, Uids};
use veil_store::Store;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn list(s: &str) -> Vec<usize> {
    s.split(',').map(|v| v.parse().expect("a number")).collect()
}

/// Entry `n` of a release to one recipient: patient by patient (50 instances each), released
/// UIDs random-looking 2.25 UIDs as the de-identifier makes them.
fn entry(key: &veil_keys::Key, refs: &[(String, String)], run: usize, n: usize) -> NewEntry {
    let uid = |tag: u8, m: usize| {
        let d = key.mac(
            "bench",
            &[&[tag, run as u8][..], &(m as u64).to_be_bytes()].concat(),
        );
        format!(
            "2.25.{}",
            u128::from_be_bytes(d[..16].try_into().unwrap()) >> 1
        )
    };
    let (pid, pref) = &refs[(n / 50) % refs.len()];
    let pseudonym = format!("VEIL-{:012X}", (n / 50) % refs.len());
    let released = Uids {
        study: uid(1, n / 10),
        series: uid(2, n / 5),
        sop: uid(3, n),
    };
    NewEntry {
        release_id: format!("R{run:04}"),
        recipient: "lab".into(),
        purpose: "internal-research".into(),
        consent_ref: String::new(),
        patient_ref: pref.clone(),
        patient_id: pid.clone(),
        issuer: String::new(),
        output_path: format!(
            "{pseudonym}/{}/{}/{}.dcm",
            released.study, released.series, released.sop
        ),
        patient_pseudonym: pseudonym,
        original: Uids {
            study: format!("1.2.840.1.{n}"),
            series: format!("1.2.840.1.{n}.1"),
            sop: format!("1.2.840.1.{n}.1.1"),
        },
        released,
        output_sha256: "ab".repeat(32),
        policy_hash: "cd".repeat(32),
        veil_version: "0.1.0".into(),
    }
}

/// One writer's share: its own store, entries built ahead (untimed), batches appended.
/// Returns the latency of each commit.
fn writer(
    db: &str,
    key: &veil_keys::Key,
    run: usize,
    first: usize,
    per: usize,
    batch: usize,
) -> Vec<Duration> {
    let store = Store::open(Some(db), Some(key)).expect("store");
    let refs: Vec<(String, String)> = (0..200)
        .map(|i| {
            let id = format!("MRN{:06}", (first / 50 + i) % 100_000);
            let r = store.patient_ref(&id, "").unwrap();
            (id, r)
        })
        .collect();
    let entries: Vec<NewEntry> = (first..first + per)
        .map(|n| entry(key, &refs, run, n))
        .collect();
    entries
        .chunks(batch)
        .map(|chunk| {
            let t = Instant::now();
            store.append_batch(chunk).expect("append");
            t.elapsed()
        })
        .collect()
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let db = a
        .get(1)
        .expect("DB (SQLite path or postgres:// URL)")
        .clone();
    let per: usize = a.get(2).map(|s| s.parse().unwrap()).unwrap_or(20_000);
    let writers = list(a.get(3).map(String::as_str).unwrap_or("1,2,4,8,16"));
    let batches = list(a.get(4).map(String::as_str).unwrap_or("16,256"));
    let key = veil_keys::Key::from_bytes([9; 32]);
    // Migrations once, before any timing.
    drop(Store::open(Some(&db), Some(&key)).expect("store"));
    println!(
        "| writers | batch | entries | seconds | entries/s | mean commit ms | worst commit ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut run = 0;
    for &batch in &batches {
        for &w in &writers {
            run += 1;
            let t = Instant::now();
            let latencies: Vec<Duration> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..w)
                    .map(|i| {
                        let (db, key) = (&db, &key);
                        s.spawn(move || writer(db, key, run, i * per, per, batch))
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap())
                    .collect()
            });
            let secs = t.elapsed().as_secs_f64();
            let n = w * per;
            let mean =
                latencies.iter().sum::<Duration>().as_secs_f64() * 1e3 / latencies.len() as f64;
            let worst = latencies.iter().max().unwrap().as_secs_f64() * 1e3;
            println!(
                "| {w} | {batch} | {n} | {secs:.2} | {:.0} | {mean:.1} | {worst:.1} |",
                n as f64 / secs
            );
        }
    }
    let store = Store::open(Some(&db), Some(&key)).expect("store");
    let report = store.verify_ledger().expect("verify");
    println!("\nchain after all runs: {report:?}");
}
