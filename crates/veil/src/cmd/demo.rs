//! `veil demo`: generates a small synthetic hospital export full of planted identifiers, runs
//! the real pipeline on it with a fresh key, checks every output byte for every planted value,
//! and shows what happened. Needs no network and no test data.

use std::path::PathBuf;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use veil_app::demo::{generate, head_phantom, pixel_module, scan, MARKER};
use veil_keys::Key;

#[derive(clap::Args)]
pub struct Args {
    /// Directory for the demo's input, key, output and quarantine (recreated on each run).
    #[arg(long, default_value = "veil-demo")]
    pub dir: PathBuf,
    /// Take the images' pixel module from this real DICOM file (uncompressed) instead of the
    /// synthetic phantom, e.g. pydicom's CT_small.dcm.
    #[arg(long)]
    pub pixels_from: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let dir = &args.dir;
    if dir.exists() {
        if !dir.join(MARKER).exists() {
            return Err(crate::exit::usage(format!(
                "{} exists and was not made by `veil demo`; choose another --dir",
                dir.display()
            )));
        }
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(MARKER), "made by veil demo\n")?;
    let input = dir.join("input");
    let pixels = args
        .pixels_from
        .as_deref()
        .map(pixel_module)
        .transpose()
        .map_err(|e| crate::exit::app_error(e.into()))?;
    let planted =
        generate(&input, pixels.as_deref()).map_err(|e| crate::exit::app_error(e.into()))?;
    let head_slices = head_phantom(&input).map_err(|e| crate::exit::app_error(e.into()))?;
    let key_path = dir.join("demo.key");
    let key = Key::write_new(&key_path)?;
    println!(
        "veil demo: wrote a synthetic export with {} planted identifying values to {}",
        planted.len(),
        input.display()
    );
    println!("  (names, MRNs, birth dates, phones, e-mails, addresses, accession numbers, UIDs, staff and institution,");
    println!("   in standard tags, sequences three deep, an unknown private block with a UN value, free text and file meta)");
    println!(
        "  and a head CT of {head_slices} slices with a face, which the face stage must remove"
    );
    println!(
        "  key: {} (mode 0600, fingerprint {})",
        key_path.display(),
        key.fingerprint()
    );
    println!();

    let out = dir.join("output");
    let demo_key = key.clone();
    // The same builder as `veil deid`: the ultrasound goes through the pixel stage.
    // No policy file: the built-in default.
    let resolved = veil_app::Settings {
        out: out.clone(),
        quarantine: Some(dir.join("quarantine")),
        ..Default::default()
    }
    .resolve_with_key(key)
    .map_err(crate::exit::app_error)?;
    let pipeline = veil_app::build(resolved);
    let report = super::deid::run_pipeline(&pipeline, std::slice::from_ref(&input), true)?;
    super::deid::print_summary(&report, &pipeline);

    let (files, bytes, hits) =
        scan(&out, &planted).map_err(|e| crate::exit::app_error(e.into()))?;
    println!();
    println!(
        "check: searched every byte of {files} output files ({:.1} MB) for all {} planted values, case-insensitive: {} found",
        bytes as f64 / 1e6,
        planted.len(),
        hits.len()
    );
    for h in hits.iter().take(10) {
        println!("  LEAK {h}");
    }
    // The same instance before and after: its output is named by its keyed new SOP Instance UID.
    let before = dicom_object::open_file(input.join("export/p1/s1/se1/img1.dcm"))?;
    let before_sop = before
        .element(tags::SOP_INSTANCE_UID)?
        .to_str()?
        .trim_end_matches('\0')
        .to_string();
    let wanted = format!("{}.dcm", demo_key.derive_uid(&before_sop));
    let sample = walkdir::WalkDir::new(&out)
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy() == wanted);
    if let Some(sample) = sample {
        // The demo's data is synthetic, so showing values here reveals no one.
        let after = dicom_object::open_file(sample.path())?;
        let show = |o: &InMemDicomObject, t: Tag| {
            o.get(t)
                .and_then(|e| e.to_str().ok().map(|s| s.to_string()))
                .unwrap_or_else(|| "(absent)".into())
        };
        println!();
        println!("  one instance, before → after:");
        for (label, t) in [
            ("Patient's Name", tags::PATIENT_NAME),
            ("Patient ID", tags::PATIENT_ID),
            ("Birth Date", tags::PATIENT_BIRTH_DATE),
            ("Patient's Age", tags::PATIENT_AGE),
            ("Study Date", tags::STUDY_DATE),
            ("Study Description", tags::STUDY_DESCRIPTION),
            ("Accession Number", tags::ACCESSION_NUMBER),
            ("Institution Name", tags::INSTITUTION_NAME),
            ("SOP Instance UID", tags::SOP_INSTANCE_UID),
        ] {
            println!(
                "    {label:<18} {:<42} → {}",
                show(&before, t),
                show(&after, t)
            );
        }
        println!("  look at it: dcmdump {}", sample.path().display());
    }
    println!(
        "  held back: {} (see {}/*.json for the reasons)",
        report.quarantined + report.rejected,
        dir.join("quarantine").display()
    );
    let defaced = report.series.iter().find(|s| s.outcome == "defaced");
    match defaced {
        Some(s) => println!(
            "  faces: the head CT was defaced ({} mL removed, {} mm from the brain); Recognizable Visual Features is NO in its outputs",
            s.measures.get("removed_ml").map_or(0.0, |v| v.round()),
            s.measures.get("clearance_mm").map_or(0.0, |v| v.round())
        ),
        None => println!("  FAILED: the head CT was not defaced"),
    }
    println!();
    let trusted = trust(dir, &input, &demo_key, &planted)?;
    println!();
    let networked = network(dir, &input, &key_path, &planted)?;
    Ok(
        if hits.is_empty() && defaced.is_some() && trusted && networked {
            crate::exit::OK
        } else {
            crate::exit::FINDINGS
        },
    )
}

/// The consent gate, the ledger and its outside checks on the same export: one patient refuses
/// research, a release for research leaves them out, every disclosure and the refusal are
/// entries of the signed log, a receipt checks with the public key alone, and a consent row
/// edited in SQL (on a copy) is named. True when all of it holds.
fn trust(
    dir: &std::path::Path,
    input: &std::path::Path,
    key: &Key,
    planted: &[String],
) -> anyhow::Result<bool> {
    let fail = |e: veil_store::StoreError| crate::exit::app_error(e.into());
    let settings = veil_store::Settings::default();
    let db = dir.join("veil.db");
    let store =
        veil_store::Store::open(Some(&db.display().to_string()), Some(key)).map_err(fail)?;
    store
        .add_recipient("demo-lab", &["internal-research".into()], "", &settings)
        .map_err(fail)?;
    let refusal = veil_app::demo::refusing_patient();
    store.record_consent(&refusal, &settings).map_err(fail)?;
    let outcome = veil_app::release::run(veil_app::release::ReleaseRequest {
        store: &store,
        institution: &settings,
        master: key,
        recipient: "demo-lab".into(),
        purpose: "internal-research".into(),
        inputs: vec![input.to_path_buf()],
        settings: veil_app::Settings {
            out: dir.join("release"),
            quarantine: Some(dir.join("release.quarantine")),
            ..Default::default()
        },
        ledger_batch: 256,
    })
    .map_err(crate::exit::app_error)?;
    let (files, _, hits) =
        scan(&dir.join("release"), planted).map_err(|e| crate::exit::app_error(e.into()))?;
    println!(
        "consent and ledger: one patient refused research (C-1); release {} to demo-lab for research: {} instance(s) released and recorded, {} excluded by consent; {} planted values found in its {files} files",
        outcome.release_id, outcome.recorded, outcome.report.excluded, hits.len()
    );
    let report = store.verify_ledger().map_err(fail)?;
    let pk = store.ledger_public_key().unwrap_or_default();
    println!(
        "  ledger verify: {} ({} entries: the refusal and every released instance, under {} signed tree head(s); heads also in {})",
        if report.ok() { "intact" } else { "FAILED" },
        report.entries,
        report.tree_heads,
        store.witness_file().map_or("-".into(), |p| p.display().to_string())
    );
    let receipt = store.receipt(report.tip_seq).map_err(fail)?;
    let receipt_ok = receipt.check(&pk).is_ok();
    let receipt_path = dir.join("receipt.json");
    std::fs::write(
        &receipt_path,
        serde_json::to_string_pretty(&receipt)? + "\n",
    )?;
    println!(
        "  receipt for entry {}: {}; anyone can check it offline: veil ledger check {} --public-key {pk}",
        receipt.entry.seq,
        if receipt_ok { "holds" } else { "FAILS" },
        receipt_path.display()
    );
    store.close();
    // Tampering, on a copy: the refusal edited into a grant in SQL.
    let copy = dir.join("tampered.db");
    std::fs::copy(&db, &copy)?;
    let wal = dir.join("veil.db-wal");
    if wal.exists() {
        std::fs::copy(&wal, dir.join("tampered.db-wal"))?;
    }
    let tampered =
        veil_store::Store::open(Some(&copy.display().to_string()), Some(key)).map_err(fail)?;
    tampered
        .execute_raw("UPDATE consent_records SET state = 'granted'")
        .map_err(fail)?;
    let caught = tampered.verify_ledger().map_err(fail)?.consent_problems;
    println!(
        "  a copy with the refusal edited into a grant in SQL: ledger verify says: {}",
        caught.first().map_or("nothing (FAILED)", String::as_str)
    );
    tampered.close();
    Ok(report.ok()
        && receipt_ok
        && !caught.is_empty()
        && outcome.report.excluded > 0
        && hits.is_empty())
}

/// The DICOM network front on the same export: every file is sent with C-STORE to a gateway
/// (as a modality would), which spools it sealed, de-identifies it with the default policy
/// (the head CT as one series, once quiet) and forwards it to a second, receive-only gateway
/// standing in for a research PACS. What arrives there is searched for every planted value.
/// True when something arrived and nothing planted did.
fn network(
    dir: &std::path::Path,
    input: &std::path::Path,
    key_path: &std::path::Path,
    planted: &[String],
) -> anyhow::Result<bool> {
    use veil_gateway::scu::{Outgoing, Sender};
    let net = dir.join("network");
    std::fs::create_dir_all(&net)?;
    // Absolute: the configuration files take relative paths from their own directory.
    let key_path = &std::fs::canonicalize(key_path)?;
    let key = key_path.display();
    let node = |name: &str,
                ae: &str,
                allow: &str,
                route: &str|
     -> anyhow::Result<veil_app::gateway::Gateway> {
        let config = net.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!("[listen]\naddress = \"127.0.0.1:0\"\nae_title = \"{ae}\"\n\n[[allow]]\nae_title = \"{allow}\"\n\n[spool]\ndir = \"{name}-spool\"\nkey = \"{key}\"\n{route}"),
        )?;
        veil_app::gateway::Gateway::open(&config).map_err(crate::exit::app_error)
    };
    let receiver = node("research-pacs", "RESEARCH", "VEIL", "")?;
    let route = format!(
        "\n[route]\ndestination = \"dicom://RESEARCH@{}\"\nseries_quiet_seconds = 1\n",
        receiver.local_addr()
    );
    let gateway = node("gateway", "VEIL", "MODALITY", &route)?;
    let to_gateway: veil_gateway::Destination = format!("dicom://VEIL@{}", gateway.local_addr())
        .parse()
        .map_err(anyhow::Error::msg)?;
    let stop = veil_gateway::Stop::default();
    let serving: Vec<_> = [receiver, gateway]
        .into_iter()
        .map(|g| {
            let stop = stop.clone();
            std::thread::spawn(move || g.serve(stop))
        })
        .collect();
    // The modality: every file of the export, in batches of one association each.
    let files: Vec<Vec<u8>> = walkdir::WalkDir::new(input)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    let outgoing: Vec<Outgoing> = files.iter().filter_map(|b| Outgoing::of(b).ok()).collect();
    let mut acknowledged = 0;
    for batch in outgoing.chunks(32) {
        let refs: Vec<&Outgoing> = batch.iter().collect();
        let mut sender = Sender::open(&to_gateway, "MODALITY", &refs)?;
        acknowledged += batch.iter().filter(|o| sender.store(o).is_ok()).count();
        sender.close();
    }
    // Delivered once the gateway's queue is empty.
    let status =
        veil_app::gateway::status(&net.join("gateway.toml")).map_err(crate::exit::app_error);
    let started = std::time::Instant::now();
    let mut last = status?;
    while last.waiting > 0 && started.elapsed() < std::time::Duration::from_secs(180) {
        std::thread::sleep(std::time::Duration::from_millis(250));
        last =
            veil_app::gateway::status(&net.join("gateway.toml")).map_err(crate::exit::app_error)?;
    }
    stop.stop();
    for s in serving {
        let _ = s.join();
    }
    // What the research PACS holds, opened with the key only to search it.
    let spool =
        veil_gateway::Spool::attach(&net.join("research-pacs-spool"), &Key::load(key_path)?)?;
    let arrived = net.join("arrived");
    std::fs::create_dir_all(&arrived)?;
    let list = spool.list()?;
    for (i, p) in list.iter().enumerate() {
        std::fs::write(arrived.join(format!("{i:04}.dcm")), spool.read(p)?)?;
    }
    let (_, _, hits) = scan(&arrived, planted).map_err(|e| crate::exit::app_error(e.into()))?;
    println!(
        "DICOM network: the export's {} DICOM files sent with C-STORE to a gateway (AE VEIL), {acknowledged} acknowledged, each only once sealed and fsync'd in its spool; de-identified and forwarded to a receiving node: {} arrived, {} held back, {} still waiting; {} planted values found in what arrived",
        outgoing.len(),
        list.len(),
        last.drain.held_back,
        last.waiting,
        hits.len()
    );
    for h in hits.iter().take(10) {
        println!("  LEAK {h}");
    }
    println!(
        "  serve it for real: veil gateway --config {} (its AE title VEIL accepts MODALITY)",
        net.join("gateway.toml").display()
    );
    Ok(!list.is_empty() && hits.is_empty() && last.waiting == 0)
}
