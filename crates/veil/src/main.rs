//! `veil`: the command line. It parses arguments, calls the library crates, formats what they
//! return for a person or a pipeline, and maps outcomes to documented exit codes. No
//! de-identification logic lives here: the same crates serve a gateway or bindings later.

mod cmd;
mod exit;

// Every file allocates and frees buffers of its own size; mimalloc reuses them instead of mapping
// fresh pages from the kernel for each one (page faults were a seventh of a deid run).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "veil",
    version,
    about = "De-identify DICOM for sharing, verify it, gate releases on consent, and account for every disclosure",
    long_about = None,
    after_help = "Exit codes: 0 success; 1 runtime failure (I/O, database); 2 usage or configuration error; \
                  3 finished, but some inputs were quarantined or rejected; 4 findings (verify, ledger verify)."
)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace). Logs never carry identifying values.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// De-identify DICOM files and directories into OUT (PS3.15 Annex E, keyed, fail-closed).
    Deid(cmd::deid::Args),
    /// Run the built-in demo: generate planted-identifier data, de-identify, verify, summarise.
    Demo(cmd::demo::Args),
    /// Manage key files.
    #[command(subcommand)]
    Key(cmd::key::KeyCommand),
    /// Show or check de-identification policies.
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCommand),
    /// Scan de-identified files for leaks (independent of the de-identifier).
    Verify(cmd::verify::Args),
    /// Find and remove text burned into pixel data.
    #[command(subcommand)]
    Pixels(cmd::pixels::PixelsCommand),
    /// Measure and reduce re-identification risk.
    Risk(cmd::risk::Args),
    #[command(flatten)]
    Registry(cmd::registry::RegistryCommand),
}

fn main() -> std::process::ExitCode {
    // Like other Unix filters, stop quietly when the reader of stdout goes away
    // (`veil policy show | head`) instead of panicking on the failed write. Outputs are written
    // atomically and runs resume, so being stopped this way loses nothing.
    // SAFETY: called first thing, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Deid(args) => cmd::deid::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Key(c) => cmd::key::run(c),
        Command::Policy(c) => cmd::policy::run(c),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Pixels(c) => cmd::pixels::run(c),
        Command::Risk(args) => cmd::risk::run(args),
        Command::Registry(c) => cmd::registry::run(c),
    };
    exit::finish(result)
}

fn init_logging(verbose: u8) {
    // Dependencies' warnings (e.g. about odd file meta) stay quiet unless asked for.
    let level = match verbose {
        0 => "error,veil=warn",
        1 => "warn,veil=info",
        2 => "info,veil=debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("VEIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
