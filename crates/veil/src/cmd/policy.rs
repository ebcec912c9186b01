//! `veil policy`: show the effective action per attribute, check a policy file.

use std::path::{Path, PathBuf};

use veil_profile::{table, Policy, PolicyError, Rules};

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Print what Veil does to every attribute of PS3.15 Table E.1-1 under a policy.
    ///
    /// Exit codes: 0 printed; 2 the policy file is unreadable or invalid.
    Show {
        /// Policy file (default: the built-in default policy).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Print one JSON document on stdout instead of the human-readable text.
        #[arg(long)]
        json: bool,
    },
    /// Validate a policy file; errors name the line, column and field, in line order.
    ///
    /// Exit codes: 0 valid; 2 unreadable or invalid (every problem is listed on stderr).
    Check {
        /// Policy file.
        file: PathBuf,
    },
}

/// Loads `--policy` or the default; a bad policy is a usage error (exit 2).
pub fn load(path: Option<&Path>) -> anyhow::Result<Policy> {
    match path {
        None => Ok(Policy::default_policy()),
        Some(p) => Policy::load(p).map_err(|e| match e {
            PolicyError::Read { .. } => crate::exit::usage(e.to_string()),
            PolicyError::Invalid { .. } => crate::exit::usage(e.to_string()),
        }),
    }
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<u8> {
    match cmd {
        PolicyCommand::Check { file } => match Policy::load(&file) {
            Ok(p) => {
                println!(
                    "{}: ok (options: basic_profile{}{})",
                    file.display(),
                    if p.options.is_empty() { "" } else { ", " },
                    p.options
                        .iter()
                        .map(|o| o.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                Ok(crate::exit::OK)
            }
            Err(PolicyError::Invalid { origin, issues }) => {
                for i in &issues {
                    eprintln!("{origin}: {i}");
                }
                eprintln!(
                    "{origin}: {} problem(s); fix them and run `veil policy check` again",
                    issues.len()
                );
                Ok(crate::exit::USAGE)
            }
            Err(e) => Err(crate::exit::usage(e.to_string())),
        },
        PolicyCommand::Show { policy, json } => {
            let policy = load(policy.as_deref())?;
            let rules = Rules::new(&policy);
            let mut rows = Vec::new();
            for row in table::table_e1_1() {
                let rule = match row.pattern {
                    table::TagPattern::Exact(t) => rules.for_tag(t),
                    table::TagPattern::Masked { value, .. } => rules.for_tag(value),
                    table::TagPattern::Private => Some(rules.private_default()),
                };
                let rule = rule.expect("every table row resolves");
                // Patient ID and Name get the policy's pseudonyms (unless overridden), whatever
                // the table says: studies of one patient stay linked.
                let pseudonym = match row.keyword.as_str() {
                    _ if rule.source == veil_profile::RuleSource::Override => None,
                    "PatientID" => Some(("patient_id", &policy.patient_id_template.text)),
                    "PatientName" => Some(("patient_name", &policy.patient_name_template.text)),
                    _ => None,
                };
                let (effective, source) = match pseudonym {
                    Some((field, template)) => (
                        format!("pseudonym {template}"),
                        format!("pseudonyms.{field}"),
                    ),
                    None => (rule.action.resolved().to_string(), rule.source.to_string()),
                };
                rows.push(serde_json::json!({
                    "tag": row.tag_text,
                    "keyword": row.keyword,
                    "name": row.name,
                    "basic": row.basic.code(),
                    "table_action": rule.action.code(),
                    "effective": effective,
                    "source": source,
                }));
            }
            for o in &policy.overrides {
                if let veil_profile::OverrideTarget::Private {
                    group,
                    creator,
                    element_low,
                } = &o.target
                {
                    rows.push(serde_json::json!({
                        "tag": format!("({group:04X},xx{element_low:02X})"),
                        "keyword": format!("private creator {creator:?}"),
                        "name": "",
                        "basic": "X",
                        "table_action": o.action.code(),
                        "effective": o.action.resolved(),
                        "source": "policy override",
                    }));
                }
            }
            if json {
                let doc = serde_json::json!({
                    "policy": policy.origin,
                    "policy_sha256": policy.digest,
                    "options": std::iter::once("basic_profile")
                        .chain(policy.options.iter().map(|o| o.name()))
                        .collect::<Vec<_>>(),
                    "date_shift_days": [policy.date_shift_days.0, policy.date_shift_days.1],
                    "patient_id": policy.patient_id_template.text,
                    "patient_name": policy.patient_name_template.text,
                    "attributes": rows,
                    "unlisted_standard_attributes": "keep; text values screened for the dataset's identifiers",
                    "unknown_attributes": "remove",
                    "private_attributes": if policy.has(veil_profile::ProfileOption::RetainSafePrivate) { "remove unless on the safe private list or kept by an override" } else { "remove unless kept by an override" },
                });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                println!(
                    "policy: {} (sha256 {})",
                    policy.origin,
                    &policy.digest[..16]
                );
                println!(
                    "options: basic_profile{}{}",
                    if policy.options.is_empty() { "" } else { ", " },
                    policy
                        .options
                        .iter()
                        .map(|o| o.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                println!(
                    "pseudonyms: patient_id {:?}, patient_name {:?}; date shift {}..{} days per patient",
                    policy.patient_id_template.text,
                    policy.patient_name_template.text,
                    policy.date_shift_days.0,
                    policy.date_shift_days.1
                );
                println!();
                println!("basic: the Basic Profile's code in Table E.1-1; effective: what Veil does under this policy (compound codes such as Z/D resolved); source: the option or override that decided it");
                println!();
                println!(
                    "{:<34} {:<44} {:<7} {:<26} source",
                    "tag", "keyword", "basic", "effective"
                );
                for r in &rows {
                    println!(
                        "{:<34} {:<44} {:<7} {:<26} {}",
                        r["tag"].as_str().unwrap_or(""),
                        r["keyword"].as_str().unwrap_or(""),
                        r["basic"].as_str().unwrap_or(""),
                        r["effective"].as_str().unwrap_or(""),
                        r["source"].as_str().unwrap_or("")
                    );
                }
                println!();
                println!("attributes not listed above: standard ones are kept with their text screened for the dataset's own identifiers; unknown ones are removed; private ones are removed unless kept");
            }
            Ok(crate::exit::OK)
        }
    }
}
