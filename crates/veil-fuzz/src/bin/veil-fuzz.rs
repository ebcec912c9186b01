//! Longer fuzz runs (scripts/fuzz.sh): `veil-fuzz [--seconds N] [--seed S] [--exhaustive]
//! [--rounds R] [--bomb-mb M] FILE_OR_DIR…` prints counts, cases per second, the slowest case and
//! the largest peak RSS, and exits 1 when any case broke the property. Rounds repeat the seeds
//! with new random choices until the time budget is spent (default: as many as fit).

use std::path::PathBuf;
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut seconds = 300u64;
    let mut seed = 1u64;
    let mut exhaustive = false;
    let mut bomb_mb = 0u64;
    let mut rounds = usize::MAX;
    let mut inputs = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--seconds N")
            }
            "--seed" => seed = args.next().and_then(|s| s.parse().ok()).expect("--seed S"),
            "--bomb-mb" => {
                bomb_mb = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--bomb-mb M")
            }
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--rounds R")
            }
            "--exhaustive" => exhaustive = true,
            _ => inputs.push(PathBuf::from(a)),
        }
    }
    let mut seeds: Vec<PathBuf> = Vec::new();
    for i in &inputs {
        if i.is_dir() {
            seeds.extend(veil_fuzz::walk(i));
        } else {
            seeds.push(i.clone());
        }
    }
    seeds.retain(|p| {
        std::fs::read(p)
            .map(|b| b.len() > 132 && &b[128..132] == b"DICM")
            .unwrap_or(false)
    });
    let work = tempfile::tempdir().expect("temp dir");
    // Failing cases stay on disk (input, output, quarantine) for a regression test.
    let work = match std::env::var_os("VEIL_FUZZ_KEEP") {
        Some(d) => {
            let _ = work;
            tempfile::TempDir::with_prefix_in("fuzz-", std::path::PathBuf::from(d))
                .expect("keep dir")
                .keep()
        }
        None => work.keep(),
    };
    let limit = Duration::from_secs(60);
    let started = std::time::Instant::now();
    let mut summary = veil_fuzz::fuzz_corpus(
        &seeds,
        &work,
        seed,
        exhaustive,
        12,
        limit,
        Duration::from_secs(seconds),
        rounds,
    );
    if bomb_mb > 0 {
        let bomb = veil_fuzz::mutate::deflate_bomb(bomb_mb << 20);
        eprintln!(
            "deflate bomb: {} bytes inflating to {} MB",
            bomb.len(),
            bomb_mb
        );
        let r = veil_fuzz::run_case(
            "deflate-bomb",
            bomb,
            &[b"BOMB^PLANTED".to_vec()],
            &work,
            limit,
        );
        println!(
            "deflate bomb: {:?} {} in {:?}, peak RSS {} kB",
            r.status,
            r.reason.as_deref().unwrap_or("-"),
            r.elapsed,
            r.peak_rss_kb.unwrap_or(0)
        );
        veil_fuzz::record(&mut summary, r);
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "seeds {}  rounds {}  cases {} in {took:.0} s ({:.1} cases/s)  written {}  quarantined {}  rejected {}  failures {}",
        seeds.len(),
        summary.rounds,
        summary.cases,
        summary.cases as f64 / took.max(1e-9),
        summary.written,
        summary.quarantined,
        summary.rejected,
        summary.failures.len()
    );
    println!(
        "max time per file {:?} ({})",
        summary.max_elapsed, summary.max_elapsed_label
    );
    println!(
        "max peak RSS {} kB ({})",
        summary.max_rss_kb, summary.max_rss_label
    );
    for f in &summary.failures {
        println!("FAIL {}: {:?} {:?}", f.label, f.status, f.violations);
    }
    std::process::exit(if summary.failures.is_empty() { 0 } else { 1 });
}
