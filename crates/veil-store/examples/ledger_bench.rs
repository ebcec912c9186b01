//! Ledger benchmark (run by scripts/bench-ledger.sh): appends per second one entry per
//! transaction (as `veil release` commits each instance) and in batches, then a full-chain verify.
//! Usage: ledger_bench DB_PATH SINGLE_APPENDS TOTAL_ENTRIES

use std::time::Instant;

use veil_store::ledger::{NewEntry, Uids};
use veil_store::Store;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let db = a.get(1).expect("DB path");
    let single: usize = a.get(2).map(|s| s.parse().unwrap()).unwrap_or(20_000);
    let total: usize = a.get(3).map(|s| s.parse().unwrap()).unwrap_or(1_000_000);
    let key = veil_keys::Key::from_bytes([9; 32]);
    let store = Store::open(Some(db), Some(&key)).unwrap();
    let pids: Vec<(String, String)> = (0..1000)
        .map(|i| {
            let id = format!("MRN{i:06}");
            let r = store.patient_ref(&id, "").unwrap();
            (id, r)
        })
        .collect();
    let mk = |n: usize| {
        let (pid, pref) = &pids[n % pids.len()];
        NewEntry {
            release_id: "R0001".into(),
            recipient: "lab".into(),
            purpose: "internal-research".into(),
            consent_ref: "C-1".into(),
            patient_ref: pref.clone(),
            patient_id: pid.clone(),
            issuer: String::new(),
            patient_pseudonym: format!("VEIL-{:012X}", n % 1000),
            original: Uids {
                study: format!("1.2.840.1.{n}"),
                series: format!("1.2.840.1.{n}.1"),
                sop: format!("1.2.840.1.{n}.1.1"),
            },
            released: Uids {
                study: format!("2.25.{}", 10u128.pow(30) + n as u128),
                series: format!("2.25.{}", 2 * 10u128.pow(30) + n as u128),
                sop: format!("2.25.{}", 3 * 10u128.pow(30) + n as u128),
            },
            output_path: format!("VEIL-X/2.25.1/2.25.2/2.25.{n}.dcm"),
            output_sha256: "ab".repeat(32),
            policy_hash: "cd".repeat(32),
            veil_version: "0.1.0".into(),
        }
    };
    let t = Instant::now();
    for n in 0..single {
        store.append(&mk(n), || Ok(())).unwrap();
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "appends, one transaction each (as in releases): {single} in {s:.2} s = {:.0}/s",
        single as f64 / s
    );
    let t = Instant::now();
    let mut n = single;
    while n < total {
        let batch: Vec<NewEntry> = (n..(n + 10_000).min(total)).map(mk).collect();
        store.append_batch(&batch).unwrap();
        n += batch.len();
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "appends, batches of 10,000: {} in {s:.2} s = {:.0}/s",
        total - single,
        (total - single) as f64 / s
    );
    store.checkpoint().unwrap();
    let t = Instant::now();
    let r = store.verify_ledger().unwrap();
    let s = t.elapsed().as_secs_f64();
    assert!(r.ok(), "{r:?}");
    println!(
        "verify full chain: {} entries in {s:.2} s ({:.0} entries/s)",
        r.entries,
        r.entries as f64 / s
    );
}
