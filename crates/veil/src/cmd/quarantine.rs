//! `veil quarantine`: the operator's view of held-back inputs.

use std::path::PathBuf;

use veil_pipeline::heldback::HeldBackList;

#[derive(clap::Subcommand)]
pub enum QuarantineCommand {
    /// Name every input still held back (quarantined or rejected) by this and earlier runs, with
    /// its reason. The list is kept encrypted in QUARANTINE/.veil/held-back.log (input paths
    /// often carry patients' names) and opens only with the key the runs used.
    #[command(
        after_help = "Exit codes: 0 nothing is held back; 1 the list cannot be read; 2 bad arguments or the wrong key; 3 some inputs are held back (listed)."
    )]
    List {
        /// The quarantine directory of the runs (`veil deid`'s --quarantine; default there:
        /// <OUT>.quarantine beside the output).
        quarantine: PathBuf,
        /// Key file written by `veil key new`. Without --key: VEIL_KEY_FILE=FILE names the
        /// file, or VEIL_KEY holds the key itself (its 64 hex digits).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Print one JSON document (an array of {input, input_ref, status, reason, detail, at})
        /// on stdout instead of the human-readable text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: QuarantineCommand) -> anyhow::Result<u8> {
    let QuarantineCommand::List {
        quarantine,
        key,
        json,
    } = cmd;
    if !quarantine.is_dir() {
        return Err(crate::exit::usage(format!(
            "quarantine {}: no such directory (give the --quarantine of the runs, by default <OUT>.quarantine)",
            quarantine.display()
        )));
    }
    let key = super::key::load(key.as_deref())?;
    let list = HeldBackList::read(&quarantine.join(".veil"), &key).map_err(|e| match e {
        veil_pipeline::heldback::HeldBackError::Read { .. } => anyhow::Error::from(e),
        other => crate::exit::usage(other.to_string()),
    })?;
    let current = list.current();
    if json {
        println!("{}", serde_json::to_string_pretty(&current)?);
    } else {
        for r in &current {
            let copy = quarantine.join(format!("{}.dcm", r.input_ref));
            let held = if r.status == "quarantined" && copy.is_file() {
                format!("copy {}", copy.display())
            } else if r.status == "quarantined" {
                "copy removed".to_string()
            } else {
                "not copied".to_string()
            };
            println!("{}\t{}\t{}\t{}", r.status, r.input, r.reason, held);
        }
        eprintln!(
            "{} input(s) held back{}",
            current.len(),
            if list.unreadable > 0 {
                format!(
                    "; {} damaged record(s) in the list were skipped",
                    list.unreadable
                )
            } else {
                String::new()
            }
        );
    }
    Ok(if current.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::QUARANTINED
    })
}
