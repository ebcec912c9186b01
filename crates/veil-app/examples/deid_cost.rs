//! What the verify stage costs `veil deid`: the real pipeline (engine, default policy, 2 worker
//! threads unless `THREADS` says otherwise) run over a corpus with the stage and without it,
//! alternating, each several times; prints wall and CPU time side by side.
//!
//!   cargo run --release -p veil-app --example deid_cost -- CORPUS_DIR WORK_DIR [REPS]
//!
//! The stage is the one every pipeline gets (`veil_app::verify_stage`).
//! `PHASES=1` instead times each step single-threaded on 500 files.

use std::path::PathBuf;
use std::time::Instant;

use veil_pipeline::{Config, OutputVerifier, Pipeline};
use veil_profile::Policy;
use veil_verify::Verifier;

use veil_app::verify_stage as verify_adapter;

// The allocator `veil` itself uses, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// (user, system) CPU seconds of this process so far.
fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    (t(ru.ru_utime), t(ru.ru_stime))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: deid_cost CORPUS_DIR WORK_DIR [REPS]");
        std::process::exit(2);
    }
    let corpus = PathBuf::from(&args[1]);
    let work = PathBuf::from(&args[2]);
    let reps: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(3);
    let threads = std::env::var("THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let policy = Policy::default_policy();
    let verifier = Verifier::new(verify_adapter::policy_spec(&policy), true).scan_pixel_data(false);
    if std::env::var_os("PHASES").is_some() {
        phases(&corpus, &verifier);
        return;
    }
    let mut rows: Vec<(&str, f64, f64, f64, u64, u64)> = Vec::new();
    for rep in 0..reps {
        // Alternate which goes first, so a change in the machine's load hits both.
        let order: [bool; 2] = if rep % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for with_stage in order {
            let out = work.join("out");
            let _ = std::fs::remove_dir_all(&out);
            let _ = std::fs::remove_dir_all(work.join("out.quarantine"));
            let deid = veil_deid::Deidentifier::new(
                Policy::default_policy(),
                veil_keys::Key::from_bytes([9; 32]),
                None,
            );
            let mut config = Config::new(out.clone());
            config.threads = Some(threads);
            let stage: Option<Box<dyn OutputVerifier>> = if with_stage {
                verify_adapter::pipeline_verifier(&Policy::default_policy())
            } else {
                None
            };
            let pipeline = Pipeline::new(deid, stage, config);
            let (t, c) = (Instant::now(), cpu_seconds());
            let r = pipeline
                .run(std::slice::from_ref(&corpus), &|_| {})
                .expect("run");
            let (u, s) = cpu_seconds();
            rows.push((
                if with_stage { "with verify" } else { "without" },
                t.elapsed().as_secs_f64(),
                u - c.0,
                s - c.1,
                r.written,
                r.quarantined,
            ));
        }
    }
    println!("| run | wall s | user CPU s | system CPU s | written | quarantined |");
    println!("|---|---|---|---|---|---|");
    for (name, wall, user, sys, w, q) in &rows {
        println!("| {name} | {wall:.2} | {user:.2} | {sys:.2} | {w} | {q} |");
    }
    type Row<'a> = (&'a str, f64, f64, f64, u64, u64);
    let best = |name: &str, f: fn(&Row) -> f64| {
        rows.iter()
            .filter(|r| r.0 == name)
            .map(f)
            .fold(f64::INFINITY, f64::min)
    };
    let (w0, w1) = (best("without", |r| r.1), best("with verify", |r| r.1));
    let (u0, u1) = (best("without", |r| r.2), best("with verify", |r| r.2));
    let (c0, c1) = (
        best("without", |r| r.2 + r.3),
        best("with verify", |r| r.2 + r.3),
    );
    println!(
        "best of {reps}: wall {w0:.2} s → {w1:.2} s ({:+.1} %), user CPU {u0:.2} s → {u1:.2} s ({:+.1} %), user+system {c0:.2} s → {c1:.2} s ({:+.1} %)",
        (w1 / w0 - 1.0) * 100.0,
        (u1 / u0 - 1.0) * 100.0,
        (c1 / c0 - 1.0) * 100.0
    );
}

/// Single-threaded time per step of the stage (the adapter's prepare and check), beside the
/// engine's, on 500 files.
fn phases(corpus: &std::path::Path, _verifier: &Verifier) {
    let deid = veil_deid::Deidentifier::new(
        Policy::default_policy(),
        veil_keys::Key::from_bytes([9; 32]),
        None,
    );
    let stage = verify_adapter::pipeline_verifier(&Policy::default_policy()).unwrap();
    let files = veil_pipeline::walk_inputs(&[corpus.to_path_buf()], &[]).unwrap();
    let (mut t_parse, mut t_deid, mut t_prep, mut t_check) = (0f64, 0f64, 0f64, 0f64);
    let mut n = 0;
    for f in files.iter().take(500) {
        let bytes = std::fs::read(f).unwrap();
        let t = Instant::now();
        let Ok(file) = dicom_object::OpenFileOptions::new()
            .read_preamble(dicom_object::file::ReadPreamble::Never)
            .from_reader(&bytes[128..])
        else {
            continue;
        };
        t_parse += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let check = stage.prepare(&file, &bytes);
        t_prep += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (out, _) = deid.deidentify(file).unwrap();
        let mut buf = Vec::new();
        out.write_all(&mut buf).unwrap();
        t_deid += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let findings = check.verify(&buf);
        t_check += t.elapsed().as_secs_f64();
        assert!(findings.is_empty(), "{findings:?}");
        n += 1;
    }
    let us = |t: f64| t * 1e6 / n as f64;
    println!(
        "{n} files, µs per file: parse {:.0}, engine + encode {:.0}; verify stage: prepare {:.0}, check {:.0}",
        us(t_parse),
        us(t_deid),
        us(t_prep),
        us(t_check)
    );
}
