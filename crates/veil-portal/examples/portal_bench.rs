//! Load figures for the portal (scripts/bench-portal.sh runs this).
//!
//! `portal_bench make DIR PATIENTS ENTRIES_PER_PATIENT SESSIONS`: a store in DIR (veil.db,
//! bench.key) with PATIENTS patients, each granted internal research, ENTRIES_PER_PATIENT ledger
//! entries per patient released to one of three recipients, one study's details each, and
//! SESSIONS one-time codes written to DIR/codes.txt (0600) with the patient IDs of the first
//! SESSIONS patients in DIR/patients.txt.
//!
//! `portal_bench codes DIR SESSIONS`: fresh codes for a store `make` made.
//!
//! `portal_bench load URL CODES SECONDS`: one thread per code signs in and reads the patient's
//! pages in turn for SECONDS; prints requests, errors, p50/p90/p99/max latency.

use std::io::Write;
use std::time::{Duration, Instant};

use veil_store::ledger::{NewEntry, Uids};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("make") => make(&args[1], num(&args[2]), num(&args[3]), num(&args[4])),
        Some("load") => load(&args[1], &args[2], num(&args[3])),
        Some("codes") => codes(&args[1], num(&args[2])),
        _ => {
            eprintln!("usage: portal_bench make DIR PATIENTS ENTRIES_PER_PATIENT SESSIONS | codes DIR SESSIONS | load URL CODES SECONDS");
            std::process::exit(2);
        }
    }
}

fn num(s: &str) -> usize {
    s.parse().unwrap_or_else(|_| panic!("{s}: a number"))
}

fn make(dir: &str, patients: usize, per_patient: usize, sessions: usize) {
    let dir = std::path::Path::new(dir);
    std::fs::create_dir_all(dir).unwrap();
    let key = veil_keys::Key::write_new(&dir.join("bench.key")).unwrap();
    let db = dir.join("veil.db").display().to_string();
    let store = veil_store::Store::open(Some(&db), Some(&key)).unwrap();
    let settings = veil_store::Settings::default();
    let recipients = ["lab-north", "lab-south", "uni-east"];
    for r in recipients {
        store
            .add_recipient(
                r,
                &["internal-research".into()],
                "dpo@example.test",
                &settings,
            )
            .unwrap();
    }
    let t0 = Instant::now();
    for chunk in (0..patients).collect::<Vec<_>>().chunks(5_000) {
        let consents: Vec<veil_store::ConsentInput> = chunk
            .iter()
            .map(|&p| veil_store::ConsentInput {
                patient_id: id(p),
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
    }
    eprintln!(
        "consents: {patients} in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let t0 = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    let mut total = 0usize;
    for p in 0..patients {
        let pid = id(p);
        let pref = store.patient_ref(&pid, "").unwrap();
        let study = format!("1.2.826.0.1.3680043.10.9.{p}");
        if p < sessions.max(1_000) {
            store
                .record_study_details(&pref, &study, "CT", "20240301", "CT HEAD")
                .unwrap();
        }
        for e in 0..per_patient {
            let recipient = recipients[(p + e / 4) % recipients.len()];
            batch.push(NewEntry {
                release_id: format!("R-{}", (p / 1_000) * 3 + (p + e / 4) % 3),
                recipient: recipient.into(),
                purpose: "internal-research".into(),
                consent_ref: "default:internal-research".into(),
                patient_ref: pref.clone(),
                patient_id: pid.clone(),
                issuer: String::new(),
                patient_pseudonym: format!("PSN{p:07}{}", (p + e / 4) % 3),
                original: Uids {
                    study: study.clone(),
                    series: format!("{study}.1"),
                    sop: format!("{study}.1.{e}"),
                },
                released: Uids {
                    study: format!("2.25.{p}{}", (p + e / 4) % 3),
                    series: format!("2.25.{p}.1"),
                    sop: format!("2.25.{p}.1.{e}"),
                },
                output_path: format!("out/{p}/{e}.dcm"),
                output_sha256: format!("{:064x}", p * 1_000 + e),
                policy_hash: "bench".into(),
                veil_version: "bench".into(),
            });
            if batch.len() == 10_000 {
                total += batch.len();
                store.append_batch(&batch).unwrap();
                batch.clear();
            }
        }
    }
    total += batch.len();
    if !batch.is_empty() {
        store.append_batch(&batch).unwrap();
    }
    eprintln!(
        "ledger: {total} entries in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    write_codes(&store, dir, sessions);
    store.close();
}

fn id(p: usize) -> String {
    format!("BENCH-{p:07}")
}

/// Issues a code for each of the first `sessions` patients: DIR/codes.txt (0600), and their
/// IDs in DIR/patients.txt.
fn write_codes(store: &veil_store::Store, dir: &std::path::Path, sessions: usize) {
    let mut codes = std::fs::File::create(dir.join("codes.txt")).unwrap();
    let mut ids = std::fs::File::create(dir.join("patients.txt")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("codes.txt"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    for p in 0..sessions {
        let issued = veil_portal::access::issue_code(store, &id(p), "", "bench", 1).unwrap();
        writeln!(codes, "{}", issued.code).unwrap();
        writeln!(ids, "{}", id(p)).unwrap();
    }
}

/// `codes DIR SESSIONS`: fresh codes for a store `make` made.
fn codes(dir: &str, sessions: usize) {
    let dir = std::path::Path::new(dir);
    let key = veil_keys::Key::load(&dir.join("bench.key")).unwrap();
    let db = dir.join("veil.db").display().to_string();
    let store = veil_store::Store::open(Some(&db), Some(&key)).unwrap();
    write_codes(&store, dir, sessions);
    store.close();
}

/// One session: sign in, then read the pages in turn until `until`; latencies in µs.
fn session(base: &str, code: &str, until: Instant) -> (Vec<u64>, usize) {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(30))
        .build();
    let cookie = |r: &ureq::Response| {
        r.header("set-cookie")
            .map(|c| c.split(';').next().unwrap_or_default().to_string())
    };
    let form = agent
        .get(&format!("{base}/sign-in"))
        .call()
        .expect("sign-in form");
    let anon = cookie(&form).expect("a session cookie");
    let body = form.into_string().unwrap();
    let at = body.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = &body[at..at + 64];
    let signed = match agent
        .post(&format!("{base}/sign-in"))
        .set("Cookie", &anon)
        .send_form(&[("csrf", csrf), ("code", code)])
    {
        Ok(r) => r,
        Err(ureq::Error::Status(s, _)) => panic!("sign-in refused ({s})"),
        Err(e) => panic!("sign-in: {e}"),
    };
    let session = cookie(&signed).expect("a new session cookie");
    let pages = ["/me", "/me/disclosures", "/me/consent", "/me/notices"];
    let (mut lat, mut errors, mut i) = (Vec::new(), 0, 0);
    while Instant::now() < until {
        let t = Instant::now();
        let ok = match agent
            .get(&format!("{base}{}", pages[i % pages.len()]))
            .set("Cookie", &session)
            .call()
        {
            Ok(r) => r.status() == 200 && r.into_string().is_ok(),
            Err(_) => false,
        };
        lat.push(t.elapsed().as_micros() as u64);
        errors += usize::from(!ok);
        i += 1;
    }
    (lat, errors)
}

fn load(base: &str, codes: &str, seconds: usize) {
    let codes: Vec<String> = std::fs::read_to_string(codes)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let until = Instant::now() + Duration::from_secs(seconds as u64);
    let handles: Vec<_> = codes
        .into_iter()
        .map(|c| {
            let base = base.to_string();
            std::thread::spawn(move || session(&base, &c, until))
        })
        .collect();
    let n = handles.len();
    let (mut lat, mut errors) = (Vec::new(), 0);
    for h in handles {
        let (l, e) = h.join().unwrap();
        lat.extend(l);
        errors += e;
    }
    lat.sort_unstable();
    let q = |f: f64| {
        lat.get(((lat.len() as f64 * f) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "{n} sessions, {seconds} s: {} requests ({:.0}/s), {errors} errors; latency ms p50 {:.1}, p90 {:.1}, p99 {:.1}, max {:.1}",
        lat.len(),
        lat.len() as f64 / seconds as f64,
        q(0.50),
        q(0.90),
        q(0.99),
        q(1.0)
    );
}
