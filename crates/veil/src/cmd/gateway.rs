//! `veil gateway`: receive DICOM over the network (C-ECHO, C-STORE) into a sealed spool.

use std::path::PathBuf;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<GatewayCommand>,
    /// The gateway's configuration file (see docs/gateway.md).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum GatewayCommand {
    /// Validate a gateway configuration; errors name the line, column and field.
    #[command(after_help = "Exit codes: 0 valid; 2 unreadable or invalid.")]
    Check {
        /// Configuration file.
        file: PathBuf,
    },
    /// Pull a cohort from a PACS: C-FIND each row's studies, then C-MOVE them to the running
    /// gateway (listed at the PACS under the gateway's AE title), which de-identifies and
    /// routes them. Rows are reported by number, never by value.
    #[command(
        after_help = "Exit codes: 0 every row's studies retrieved; 2 bad configuration, --from or list; 3 finished, but some rows found no study or had failures (listed)."
    )]
    Pull {
        /// The gateway's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The PACS: dicom://AE_TITLE@host:port, or a DICOMweb root https://…/dicom-web
        /// (QIDO-RS and WADO-RS; plain http only to this machine).
        #[arg(long)]
        from: String,
        /// For a dicom:// source: move (C-MOVE to the running gateway, the default) or get
        /// (C-GET into the spool; the PACS needs no route to the gateway).
        #[arg(long, value_name = "move|get")]
        retrieve: Option<String>,
        /// For a DICOMweb source: environment variable holding a bearer token.
        #[arg(long, value_name = "VAR")]
        token_env: Option<String>,
        /// CSV whose first column's header is accession, patient_id or study_uid.
        cohort: PathBuf,
        /// Print one JSON document on stdout instead of the human-readable text.
        #[arg(long)]
        json: bool,
    },
    /// Show the queue (instances waiting), what was held back and why, deliveries, and whether
    /// the destination is failing. Reads the spool; works while the gateway runs.
    #[command(
        after_help = "Exit codes: 0 printed; 2 bad configuration, key, or no spool yet; 4 the destination is failing."
    )]
    Status {
        /// The gateway's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Print one JSON document on stdout instead of the human-readable text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    match (args.command, args.config) {
        (Some(GatewayCommand::Check { file }), _) => {
            let c = veil_app::gateway::check(&file).map_err(crate::exit::app_error)?;
            println!(
                "{}: ok (listens on {} as {}; {} sender(s) allowed; spool {})",
                file.display(),
                c.listen,
                c.ae_title,
                c.allow.len(),
                c.spool_dir.display()
            );
            Ok(crate::exit::OK)
        }
        (
            Some(GatewayCommand::Pull {
                config,
                from,
                retrieve,
                token_env,
                cohort,
                json,
            }),
            _,
        ) => {
            let source =
                veil_app::gateway::PullSource::parse(&from, retrieve.as_deref(), token_env)
                    .map_err(crate::exit::app_error)?;
            let rows = veil_app::gateway::pull(&config, &source, &cohort)
                .map_err(crate::exit::app_error)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in &rows {
                    let error = r
                        .error
                        .as_deref()
                        .map(|e| format!("; {e}"))
                        .unwrap_or_default();
                    println!(
                        "row {}: {} study(ies), {} instance(s) retrieved, {} failed{error}",
                        r.row, r.studies, r.retrieved, r.failed
                    );
                }
            }
            let incomplete = rows
                .iter()
                .any(|r| r.studies == 0 || r.failed > 0 || r.error.is_some());
            Ok(if incomplete {
                crate::exit::QUARANTINED
            } else {
                crate::exit::OK
            })
        }
        (Some(GatewayCommand::Status { config, json }), _) => {
            let s = veil_app::gateway::status(&config).map_err(crate::exit::app_error)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_status(&s);
            }
            Ok(match s.drain.failing {
                Some(_) => crate::exit::FINDINGS,
                None => crate::exit::OK,
            })
        }
        (None, Some(config)) => {
            let gateway =
                veil_app::gateway::Gateway::open(&config).map_err(crate::exit::app_error)?;
            let destinations = gateway.destinations();
            let route = match destinations.is_empty() {
                true => "no [route]: instances stay in the spool".to_string(),
                false => format!("de-identified instances go to {}", destinations.join(", ")),
            };
            eprintln!(
                "veil gateway: listening on {} as {}; {route} (stop with Ctrl-C; every acknowledged instance is already spooled)",
                gateway.local_addr(),
                gateway.ae_title()
            );
            gateway
                .serve(veil_gateway::Stop::default())
                .map_err(crate::exit::app_error)?;
            Ok(crate::exit::OK)
        }
        (None, None) => Err(crate::exit::usage(
            "veil gateway: pass --config FILE to serve, or `veil gateway check FILE`",
        )),
    }
}

fn print_status(s: &veil_app::gateway::GatewayStatus) {
    println!(
        "spool {}: {} instance(s) waiting ({:.1} MB)",
        s.spool.display(),
        s.waiting,
        s.waiting_bytes as f64 / 1e6
    );
    let held: Vec<String> = s
        .held_back
        .iter()
        .map(|(r, n)| format!("{r}: {n}"))
        .collect();
    if !held.is_empty() {
        println!("held back (see held/ in the spool): {}", held.join(", "));
    }
    if s.destination.is_none() {
        println!("no [route]: instances stay in the spool");
        return;
    }
    for lane in &s.lanes {
        let excluded = match lane.drain.excluded {
            0 => String::new(),
            n => format!(", {n} excluded by consent"),
        };
        let waiting = match s.lanes.len() {
            1 => String::new(),
            _ => format!(", {} waiting", lane.waiting),
        };
        println!(
            "{} ({}): {} delivered, {} held back{excluded}{waiting} since the spool was created",
            lane.destination, lane.route, lane.drain.delivered, lane.drain.held_back
        );
        if let Some(why) = &lane.drain.failing {
            println!("FAILING: {why} (instances wait and are retried)");
        }
    }
}
