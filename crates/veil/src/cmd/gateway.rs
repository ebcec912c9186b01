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
        (None, Some(config)) => {
            let gateway =
                veil_app::gateway::Gateway::open(&config).map_err(crate::exit::app_error)?;
            let route = gateway
                .destination()
                .map(|d| format!("de-identified instances go to {d}"))
                .unwrap_or_else(|| "no [route]: instances stay in the spool".into());
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
