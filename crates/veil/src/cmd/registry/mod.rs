//! Consent registry, recipients, consent-gated releases and the disclosure ledger (issue 6):
//! `veil consent …`, `veil recipient …`, `veil release`, `veil ledger …`, `veil disclosures`,
//! `veil breach`, `veil trace`, `veil withdraw`. The store is chosen by `--db` (a SQLite path or a
//! `postgres://` URL), else `VEIL_DB`, else `./.veil/veil.db`; institution settings by `--config`,
//! else `VEIL_CONFIG`, else `./.veil/config.toml` when present, else the built-in defaults.

use std::io::Write;
use std::path::PathBuf;

use veil_store::consent::{describe_purpose, ConsentInput, ConsentState, Decision, Scope};
use veil_store::{Settings, Store};

use crate::exit;

mod args;
pub use args::*;

fn usage_or_fail(e: veil_store::StoreError) -> anyhow::Error {
    exit::app_error(e.into())
}

fn settings(a: &StoreArgs) -> anyhow::Result<Settings> {
    veil_app::registry::institution_settings(a.config.as_deref()).map_err(exit::app_error)
}

fn open(a: &StoreArgs, need_key: bool) -> anyhow::Result<Store> {
    let mut store = veil_app::registry::open_store(a.db.as_deref(), a.key.as_deref(), need_key)
        .map_err(exit::app_error)?;
    if let Some(p) = &a.tree_heads {
        store.set_witness_file(Some(p.clone()));
    }
    Ok(store)
}

/// Opens the store for a command that appends to the ledger, and says so when its signed tree
/// heads will stay inside the database only (PostgreSQL without a witness file).
fn open_appending(a: &StoreArgs) -> anyhow::Result<Store> {
    let store = open(a, true)?;
    note_witness(&store);
    Ok(store)
}

/// Warns (exit code unchanged) when a signed head could not be appended to the witness file:
/// the entries are recorded and the head is in the database.
fn report_witness(store: &Store) {
    if let Some(e) = store.take_witness_failure() {
        eprintln!("veil: warning: {e}");
    }
}

fn note_witness(store: &Store) {
    if store.witness_file().is_none() {
        eprintln!("note: signed tree heads are kept in the database only; give --tree-heads FILE (or VEIL_TREE_HEADS) so auditors have copies outside it (docs/consent-ledger.md)");
    }
}

/// Writes a document to `--out` (atomically) or to stdout.
fn write_out(out: &Option<PathBuf>, bytes: &[u8]) -> anyhow::Result<()> {
    match out {
        Some(p) => veil_app::registry::write_atomic(p, bytes).map_err(exit::app_error)?,
        None => std::io::stdout().write_all(bytes)?,
    }
    Ok(())
}

pub fn run(cmd: RegistryCommand) -> anyhow::Result<u8> {
    match cmd {
        RegistryCommand::Consent(c) => consent(c),
        RegistryCommand::Recipient(c) => recipient(c),
        RegistryCommand::Release(a) => release(a),
        RegistryCommand::Ledger(c) => ledger(c),
        RegistryCommand::Disclosures(a) => disclosures(a),
        RegistryCommand::Breach(a) => breach(a),
        RegistryCommand::Trace(a) => trace(a),
        RegistryCommand::Withdraw(a) => withdraw(a),
    }
}

fn consent(c: ConsentCommand) -> anyhow::Result<u8> {
    match c {
        ConsentCommand::Set(a) => {
            let settings = settings(&a.store)?;
            let state = ConsentState::parse(&a.state).ok_or_else(|| {
                exit::usage(format!(
                    "--state `{}`: granted, refused or withdrawn",
                    a.state
                ))
            })?;
            let date = |v: &Option<String>, f: &str| -> anyhow::Result<String> {
                match v {
                    None => Ok(String::new()),
                    Some(s) => veil_store::time::normalize_date(s).ok_or_else(|| {
                        exit::usage(format!("--{f} `{s}`: expected YYYYMMDD or YYYY-MM-DD"))
                    }),
                }
            };
            let timestamp = |v: &Option<String>, f: &str| -> anyhow::Result<String> {
                match v {
                    None => Ok(String::new()),
                    Some(t) => veil_store::time::normalize_timestamp(t).ok_or_else(|| {
                        exit::usage(format!("--{f} `{t}`: expected YYYY-MM-DD or RFC 3339"))
                    }),
                }
            };
            let effective_at = timestamp(&a.time, "time")?;
            let valid_from = timestamp(&a.valid_from, "valid-from")?;
            let valid_until = timestamp(&a.valid_until, "valid-until")?;
            if !valid_from.is_empty() && !valid_until.is_empty() && valid_until <= valid_from {
                return Err(exit::usage("--valid-until must be later than --valid-from"));
            }
            let input = ConsentInput {
                patient_id: a.patient.clone(),
                issuer: a.issuer.clone(),
                purpose: a.purpose.clone(),
                state,
                scope: Scope {
                    modalities: a
                        .modality
                        .iter()
                        .map(|m| m.trim().to_ascii_uppercase())
                        .filter(|m| !m.is_empty())
                        .collect(),
                    from: date(&a.from, "from")?,
                    to: date(&a.to, "to")?,
                },
                effective_at,
                valid_from,
                valid_until,
                source: a.source.clone(),
                evidence: a.evidence.clone(),
            };
            let store = open_appending(&a.store)?;
            let id = store
                .record_consent(&input, &settings)
                .map_err(usage_or_fail)?;
            report_witness(&store);
            println!(
                "recorded C-{id}: {} {} ({})",
                a.purpose,
                state.as_str(),
                input.scope.describe()
            );
            Ok(exit::OK)
        }
        ConsentCommand::Show(a) => {
            let settings = settings(&a.store)?;
            let store = open(&a.store, true)?;
            let summary = store
                .consent_summary(&a.patient, &a.issuer, &settings)
                .map_err(usage_or_fail)?;
            if a.json {
                let v: Vec<serde_json::Value> = summary
                    .iter()
                    .map(|(p, recs, d)| {
                        let (state, r) = match d {
                            Decision::Admit { consent_ref } => ("granted", consent_ref),
                            Decision::Exclude { reason, consent_ref } => (reason.as_str(), consent_ref),
                        };
                        serde_json::json!({"purpose": p, "state_all_imaging": state, "consent_ref": r, "records": recs})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (p, recs, d) in &summary {
                    let label = veil_store::consent::reference_label;
                    let state = match d {
                        Decision::Admit { consent_ref } => {
                            format!("granted ({})", label(consent_ref))
                        }
                        Decision::Exclude {
                            reason,
                            consent_ref,
                        } => format!("{reason} ({})", label(consent_ref)),
                    };
                    let scoped = recs.iter().filter(|r| !r.scope.is_all()).count();
                    let extra = if scoped > 0 {
                        format!("; {scoped} scoped record(s), see history")
                    } else {
                        String::new()
                    };
                    println!("{p:28} {state}{extra}");
                }
            }
            Ok(exit::OK)
        }
        ConsentCommand::History(a) => {
            let store = open(&a.store, true)?;
            let h = store
                .consent_history(&a.patient, &a.issuer)
                .map_err(usage_or_fail)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&h)?);
            } else {
                if h.is_empty() {
                    println!("no consent records (institution defaults apply)");
                }
                for r in &h {
                    let mut in_force = String::new();
                    if !r.valid_from.is_empty() {
                        in_force.push_str(&format!(" in-force-from={}", r.valid_from));
                    }
                    if !r.valid_until.is_empty() {
                        in_force.push_str(&format!(" in-force-until={}", r.valid_until));
                    }
                    println!(
                        "C-{:<5} {} {:28} {:9} {}{in_force} source={} recorded={}",
                        r.id,
                        r.effective_at,
                        r.purpose,
                        r.state.as_str(),
                        r.scope.describe(),
                        r.source,
                        r.recorded_at
                    );
                }
            }
            Ok(exit::OK)
        }
        ConsentCommand::Import(a) => {
            let settings = settings(&a.store)?;
            let text = std::fs::read_to_string(&a.file)
                .map_err(|e| exit::usage(format!("{}: {e}", a.file.display())))?;
            let origin = a
                .file
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let is_csv = match a.format.as_deref() {
                Some("csv") => true,
                Some("fhir") => false,
                Some(f) => return Err(exit::usage(format!("--format `{f}`: fhir or csv"))),
                None => a
                    .file
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("csv")),
            };
            let parsed = if is_csv {
                veil_store::csv_import::parse(&text, &origin, &settings)
            } else {
                veil_store::fhir::parse(&text, &origin, &settings)
            };
            let (good, bad) = parsed.map_err(exit::usage)?;
            let store = open_appending(&a.store)?;
            let ids = store
                .record_consents(&good, &settings)
                .map_err(usage_or_fail)?;
            report_witness(&store);
            let what = if is_csv { "line" } else { "resource" };
            for b in &bad {
                eprintln!(
                    "veil: rejected {} {what} {}: {}: {}",
                    a.file.display(),
                    b.index,
                    b.field,
                    b.message
                );
            }
            println!(
                "imported {} consent record(s) from {}; {} {what}(s) rejected",
                ids.len(),
                a.file.display(),
                bad.len()
            );
            Ok(if bad.is_empty() {
                exit::OK
            } else {
                exit::QUARANTINED
            })
        }
    }
}

fn recipient(c: RecipientCommand) -> anyhow::Result<u8> {
    match c {
        RecipientCommand::Add(a) => {
            let settings = settings(&a.store)?;
            let store = open(&a.store, true)?;
            let r = store
                .add_recipient(&a.name, &a.purpose, &a.contact, &settings)
                .map_err(usage_or_fail)?;
            println!(
                "recipient {} may receive data for: {}",
                r.name,
                r.purposes.join(", ")
            );
            Ok(exit::OK)
        }
        RecipientCommand::List { json, store } => {
            let s = open(&store, false)?;
            let rs = s.recipients().map_err(usage_or_fail)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rs)?);
            } else {
                for r in rs {
                    println!("{:24} {:50} {}", r.name, r.purposes.join(","), r.contact);
                }
            }
            Ok(exit::OK)
        }
    }
}

fn release(a: ReleaseArgs) -> anyhow::Result<u8> {
    let institution = settings(&a.store)?;
    let master = super::key::load(a.store.key.as_deref())?;
    let mut store = Store::open(a.store.db.as_deref(), Some(&master)).map_err(usage_or_fail)?;
    if let Some(p) = &a.store.tree_heads {
        store.set_witness_file(Some(p.clone()));
    }
    note_witness(&store);
    let outcome = veil_app::release::run(veil_app::release::ReleaseRequest {
        store: &store,
        institution: &institution,
        master: &master,
        recipient: a.recipient.clone(),
        purpose: a.purpose.clone(),
        inputs: a.inputs.clone(),
        settings: veil_app::Settings {
            policy: a.policy.clone(),
            out: a.out.clone(),
            quarantine: a.quarantine.clone(),
            threads: a.threads,
            ..Default::default()
        },
        ledger_batch: a.ledger_batch as usize,
    })
    .map_err(exit::app_error)?;
    report_witness(&store);
    let r = &outcome.reconciled;
    if r.rolled_back > 0 || r.foreign > 0 {
        eprintln!(
            "veil: an interrupted release left {} output(s) without a ledger entry: removed (they are produced again now){}",
            r.rolled_back,
            if r.foreign > 0 {
                format!("; {} path(s) hold other files and were left alone", r.foreign)
            } else {
                String::new()
            }
        );
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome.operator_report)?
        );
    } else {
        print_release(&outcome, &a);
    }
    Ok(if outcome.held() > 0 {
        exit::QUARANTINED
    } else {
        exit::OK
    })
}

fn print_release(o: &veil_app::release::ReleaseOutcome, a: &ReleaseArgs) {
    println!(
        "release {} to {} for {}: {} instance(s) released and recorded, {} excluded by consent ({} patient(s)), {} held back",
        o.release_id,
        a.recipient,
        a.purpose,
        o.recorded,
        o.report.excluded,
        o.excluded.len(),
        o.held()
    );
    if o.already_recorded > 0 {
        println!(
            "  {} instance(s) were already published and recorded by an interrupted earlier run",
            o.already_recorded
        );
    }
    for (p, (reason, n)) in &o.excluded {
        println!("  excluded {p}: {reason} ({n} instance(s))");
    }
    println!(
        "  operator's report (not shipped): {}",
        o.operator_report_path.display()
    );
}

fn ledger(c: LedgerCommand) -> anyhow::Result<u8> {
    match c {
        LedgerCommand::Verify {
            export,
            public_key,
            sth,
            json,
            store,
        } => {
            let mut saved = Vec::new();
            for p in &sth {
                saved.extend(veil_store::tree_head::read_heads(p).map_err(usage_or_fail)?);
            }
            let report = match export {
                Some(path) => {
                    let expected = pinned_public_key(public_key.as_deref(), &store)?;
                    let f = std::fs::File::open(&path)
                        .map_err(|e| exit::usage(format!("{}: {e}", path.display())))?;
                    veil_store::ledger::verify_export(
                        &mut std::io::BufReader::new(f),
                        &saved,
                        Some(&expected),
                    )
                    .map_err(usage_or_fail)?
                }
                None => {
                    let pinned = public_key.as_deref().map(parse_public_key).transpose()?;
                    let s = open(&store, false)?;
                    if pinned.is_none() && s.ledger_public_key().is_none() && !json {
                        eprintln!("note: no pinned key: each signature was checked against the key it names, which shows only that it was not edited; pin the ledger's public key (--public-key HEX) to catch a history re-signed with another key");
                    }
                    s.verify_ledger_with(&saved, pinned.as_deref())
                        .map_err(usage_or_fail)?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_verify(&report);
            }
            Ok(if report.ok() {
                exit::OK
            } else {
                exit::FINDINGS
            })
        }
        LedgerCommand::Reconcile { out, json, store } => {
            if !out.is_dir() {
                return Err(exit::usage(format!(
                    "--out {}: no such directory",
                    out.display()
                )));
            }
            let s = open(&store, false)?;
            let r = veil_store::publish::reconcile(&s, &out).map_err(usage_or_fail)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{}: {} pending output(s): {} recorded in the ledger, {} removed (never recorded), {} never published, {} path(s) holding other files left alone",
                    out.display(),
                    r.intents,
                    r.recorded,
                    r.rolled_back,
                    r.not_published,
                    r.foreign
                );
            }
            Ok(exit::OK)
        }
        LedgerCommand::Export { out, store } => {
            let s = open(&store, true)?;
            let n = veil_app::registry::write_atomic_with(&out, |w| Ok(s.export_ledger(w)?))
                .map_err(exit::app_error)?;
            println!("exported {n} ledger entries to {}", out.display());
            if let Some(pk) = s.ledger_public_key() {
                println!(
                    "ledger public key {pk} (fingerprint {}): give it to the auditor by another channel; they verify with --public-key",
                    veil_store::ledger::public_key_fingerprint(&pk)
                );
            }
            Ok(exit::OK)
        }
        LedgerCommand::Head { sign, out, store } => {
            let s = open(&store, sign)?;
            let head = if sign {
                s.sign_tree_head().map_err(usage_or_fail)?
            } else {
                s.latest_tree_head().map_err(usage_or_fail)?
            };
            let Some(head) = head else {
                return Err(exit::usage("the ledger has no signed tree head yet (it is empty, or older than tree heads: `veil ledger head --sign --key …`)"));
            };
            let text = serde_json::to_string_pretty(&head)? + "\n";
            write_out(&out, text.as_bytes())?;
            if out.is_some() {
                eprintln!(
                    "tree head of size {} (root {}…, key fingerprint {}) written",
                    head.size,
                    &head.root[..16],
                    veil_store::ledger::public_key_fingerprint(&head.public_key)
                );
            }
            Ok(exit::OK)
        }
        LedgerCommand::Prove {
            entry,
            since,
            out,
            store,
        } => {
            let s = open(&store, false)?;
            let text = match (entry, since) {
                (Some(seq), _) => {
                    serde_json::to_string_pretty(&s.receipt(seq).map_err(usage_or_fail)?)?
                }
                (None, Some(path)) => {
                    let old = veil_store::tree_head::read_heads(&path)
                        .map_err(usage_or_fail)?
                        .pop()
                        .ok_or_else(|| exit::usage(format!("{}: no tree head", path.display())))?;
                    serde_json::to_string_pretty(
                        &s.consistency_receipt(&old).map_err(usage_or_fail)?,
                    )?
                }
                (None, None) => return Err(exit::usage("give --entry SEQ or --since HEAD.json")),
            };
            write_out(&out, (text + "\n").as_bytes())?;
            Ok(exit::OK)
        }
        LedgerCommand::Check {
            receipt,
            public_key,
        } => {
            let key = parse_public_key(&public_key)?;
            let text = std::fs::read_to_string(&receipt)
                .map_err(|e| exit::usage(format!("{}: {e}", receipt.display())))?;
            match veil_store::tree_head::check_receipt(&text, &key)
                .map_err(|e| exit::usage(format!("{}: {e}", receipt.display())))?
            {
                veil_store::tree_head::ReceiptOutcome::Holds(what) => {
                    println!("receipt holds: {what}");
                    Ok(exit::OK)
                }
                veil_store::tree_head::ReceiptOutcome::Fails(why) => {
                    println!("receipt FAILS: {why}");
                    Ok(exit::FINDINGS)
                }
            }
        }
    }
}

fn print_verify(report: &veil_store::VerifyReport) {
    if report.ok() {
        println!(
            "ledger intact: {} entries, tip {} (hash {}), {} signed checkpoint(s), signed through entry {}; Merkle root {}…, {} tree head(s) match, the latest covers {} entries",
            report.entries,
            report.tip_seq,
            &report.tip_hash[..16],
            report.checkpoints,
            report.signed_through,
            &report.tree_root[..16],
            report.tree_heads,
            report.tree_signed_through
        );
        if report.signed_through < report.tip_seq {
            println!(
                "note: entries {}..{} are not yet covered by a signed checkpoint (tree heads cover them)",
                report.signed_through + 1,
                report.tip_seq
            );
        }
        return;
    }
    if let Some(b) = &report.first_bad {
        println!("ledger TAMPERED: first bad entry {}: {}", b.seq, b.what);
    }
    for p in report
        .checkpoint_problems
        .iter()
        .chain(&report.head_problems)
        .chain(&report.consent_problems)
    {
        println!("ledger TAMPERED: {p}");
    }
}

fn parse_public_key(given: &str) -> anyhow::Result<String> {
    let hex = given.trim().to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(exit::usage(
            "--public-key: 64 hex digits (the Ed25519 key `veil ledger export` and `veil ledger head` print)",
        ));
    }
    Ok(hex)
}

/// The public key an export must be signed with: the auditor's pinned one, or the one the key
/// derives. Never the one the export names.
fn pinned_public_key(given: Option<&str>, store: &StoreArgs) -> anyhow::Result<String> {
    if let Some(hex) = given {
        return parse_public_key(hex);
    }
    let key = match &store.key {
        Some(p) => Some(veil_keys::Key::load(p).map_err(|e| exit::usage(e.to_string()))?),
        None => veil_keys::Key::from_env().map_err(|e| exit::usage(e.to_string()))?,
    };
    key.map(|k| veil_store::ledger::public_key_hex_for(&k)).ok_or_else(|| {
        exit::usage("--export: give the ledger's public key as you pinned it (--public-key HEX, printed by `veil ledger export` at the institution) or --key; a key found in the export itself is never trusted")
    })
}

fn disclosures(a: DisclosuresArgs) -> anyhow::Result<u8> {
    let format = veil_app::registry::DocumentFormat::parse(&a.format).map_err(exit::app_error)?;
    let store = open(&a.store, true)?;
    let bytes = veil_app::registry::disclosures_document(&store, &a.patient, &a.issuer, format)
        .map_err(exit::app_error)?;
    write_out(&a.out, &bytes)?;
    Ok(exit::OK)
}

fn breach(a: BreachArgs) -> anyhow::Result<u8> {
    let store = open(&a.store, true)?;
    let report = veil_app::registry::breach_report(&store, &a.recipient, a.since.as_deref())
        .map_err(exit::app_error)?;
    write_out(
        &a.out,
        &report.document(&a.format).map_err(exit::app_error)?,
    )?;
    eprintln!(
        "breach of {}: {} patient(s), {} study(ies), {} instance(s)",
        a.recipient, report.patients, report.studies, report.instances
    );
    Ok(exit::OK)
}

fn trace(a: TraceArgs) -> anyhow::Result<u8> {
    let uids = veil_app::registry::read_uids(&a.file).map_err(exit::app_error)?;
    let store = open(&a.store, false)?;
    let t = store.trace(&uids).map_err(usage_or_fail)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"file": a.file, "uids": uids, "matches": t})
            )?
        );
    } else if t.is_empty() {
        println!(
            "{}: no release in this ledger carries these UIDs",
            a.file.display()
        );
    } else {
        let first = &t[0];
        println!(
            "{}: matched by {} UID: release {} to {} for {} (ledger entry {}, recorded {}){}",
            a.file.display(),
            first.matched_by,
            first.entry.release_id,
            first.entry.recipient,
            first.entry.purpose,
            first.entry.seq,
            first.entry.recorded_at,
            if t.len() > 1 {
                format!("; {} entries match", t.len())
            } else {
                String::new()
            }
        );
        if let (Some(pid), Some(o)) = (&first.patient_id, &first.original) {
            println!(
                "  original patient {pid}{}, study {}, instance {}",
                if first.issuer.as_deref().unwrap_or("").is_empty() {
                    String::new()
                } else {
                    format!(" ({})", first.issuer.as_deref().unwrap())
                },
                o.study,
                o.sop
            );
        } else {
            println!("  original patient: needs the key");
        }
    }
    Ok(if t.is_empty() {
        exit::FINDINGS
    } else {
        exit::OK
    })
}

fn withdraw(a: WithdrawArgs) -> anyhow::Result<u8> {
    let settings = settings(&a.store)?;
    let store = open_appending(&a.store)?;
    veil_app::registry::require_known_patient(&store, &a.patient, &a.issuer)
        .map_err(exit::app_error)?;
    let (id, holders) = store
        .withdraw(
            &a.patient,
            &a.issuer,
            &a.purpose,
            &a.source,
            &a.evidence,
            &settings,
        )
        .map_err(usage_or_fail)?;
    report_witness(&store);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"consent_ref": format!("C-{id}"), "purpose": a.purpose, "holders": holders})
            )?
        );
    } else {
        println!("recorded withdrawal C-{id} for {} ({}); future releases for this purpose exclude the patient", a.purpose, describe_purpose(&a.purpose));
        if holders.is_empty() {
            println!("no recipient holds this patient's data for {}", a.purpose);
        }
        for h in &holders {
            println!(
                "ask {} to delete: {} instance(s) in {} study(ies), pseudonym {}, releases {}{}",
                h.recipient,
                h.instances,
                h.released_study_uids.len(),
                h.patient_pseudonym,
                h.releases.join(","),
                if h.contact.is_empty() {
                    String::new()
                } else {
                    format!(", contact {}", h.contact)
                }
            );
        }
    }
    Ok(exit::OK)
}
