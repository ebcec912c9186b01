//! `veil`: the command line. It parses arguments, calls the library crates, formats what they
//! return for a person or a pipeline, and maps outcomes to documented exit codes. No
//! de-identification logic lives here: the same crates serve a gateway or bindings later.

mod cmd;
mod exit;

// Every file allocates and frees buffers of its own size; mimalloc reuses them instead of mapping
// fresh pages from the kernel for each one (page faults were a seventh of a deid run).
// Built with mimalloc's `no_thp`: with transparent huge pages its fresh pages come 2 MB at a
// time, each zeroed whole on first touch (about a quarter of the samples of a run over small
// files), while per-file work touches little of each. Interleaved runs of both builds
// (2026-12-07, release, 3 each): peak RSS 85-97 -> 43-44 MB over 500 small MR files, 90-97 ->
// 49-51 MB over 2,000 512x512 CT files, 146-177 -> 134-136 MB defacing a 300-slice head CT;
// wall time the same or lower.
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
    ///
    /// Keyed: pseudonyms, new UIDs and date shifts derive from your key, so the same patient gets
    /// the same pseudonym in every run. Fail-closed: whatever Veil cannot process safely (an
    /// unparseable file, pixels it cannot decode, an output its verifier finds anything in) is
    /// held back in the quarantine with a reason, never passed through.
    #[command(
        after_help = "Exit codes: 0 every input released; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field); 3 finished, but some inputs were held back (quarantined or rejected: `veil quarantine list`)."
    )]
    Deid(cmd::deid::Args),
    /// Run the built-in demo: generate planted-identifier data, de-identify, verify, summarise.
    #[command(
        after_help = "Exit codes: 0 no planted value survived in any output; 1 runtime failure (I/O, database; nothing half-written is left); 2 usage or configuration error (the message names the argument, file or field); 4 a planted value was found in an output."
    )]
    Demo(cmd::demo::Args),
    /// Receive DICOM from PACS and modalities over the network (C-ECHO, C-STORE) into a sealed spool.
    ///
    /// Only the AE titles (and addresses) listed in the configuration may send; each instance is
    /// encrypted and fsync'd in the spool before the sender is told it was stored.
    #[command(
        after_help = "Exit codes: 0 valid (check) or stopped; 1 runtime failure (the port cannot be bound); 2 usage or configuration error (the message names the file, line and field)."
    )]
    Gateway(cmd::gateway::Args),
    /// Manage key files.
    #[command(subcommand)]
    #[command(
        after_help = "Exit codes: 0 done; 2 usage error: the key file exists already, is missing, is readable by others or is malformed."
    )]
    Key(cmd::key::KeyCommand),
    /// Show or check de-identification policies.
    #[command(subcommand)]
    #[command(
        after_help = "Exit codes: 0 done; 2 the policy file is unreadable or invalid (every problem listed, with line and column)."
    )]
    Policy(cmd::policy::PolicyCommand),
    /// List the inputs runs held back, by path, with reasons (operator only; needs the key).
    #[command(subcommand)]
    #[command(after_help = "Exit codes: see `veil quarantine list --help`.")]
    Quarantine(cmd::quarantine::QuarantineCommand),
    /// Scan de-identified files for leaks (independent of the de-identifier).
    ///
    /// Findings name the file, the attribute path and tag, a category and a rule, and show the
    /// value masked. Marker findings about "CID 7050" refer to DICOM's list of de-identification
    /// method codes (113100 Basic Profile, 113101 Clean Pixel Data, ...), one per option applied.
    #[command(
        after_help = "Exit codes: 0 no findings; 1 a file could not be read (named); 2 usage error (arguments, policy); 4 findings (listed)."
    )]
    Verify(cmd::verify::Args),
    /// Find and remove text burned into pixel data.
    #[command(subcommand)]
    #[command(after_help = "Exit codes: see `veil pixels scan --help`.")]
    Pixels(cmd::pixels::PixelsCommand),
    /// Measure and reduce re-identification risk.
    ///
    /// Quasi-identifiers are values an attacker can know from elsewhere (age, sex, dates, site,
    /// scanner); patients who share all of them form a class. k-anonymity: every class holds at
    /// least k patients. l-diversity (ℓ-diversity): every class holds at least l different values
    /// of a sensitive attribute, so membership alone reveals nothing. Prosecutor risk: the attacker
    /// knows the person is in the data (1 / class size); journalist risk: the attacker matches
    /// against a population register (1 / the class's size in the population); marketer risk: the
    /// share of all records an attacker who tries everyone would re-identify. The Pitman model
    /// estimates, from the sample, how many records are unique in the whole population.
    Risk(cmd::risk::Args),
    #[command(flatten)]
    Registry(cmd::registry::RegistryCommand),
    /// Run the web portal: patients see their imaging, every disclosure and their consent, and
    /// can opt out; the privacy office sees releases, consent, withdrawals, breaches and the ledger.
    ///
    /// Patients sign in with a one-time code from `veil portal code`; officers with a password
    /// and TOTP (`veil portal officer add`). Needs the store's key. Plain HTTP only on loopback.
    #[command(
        after_help = "Exit codes: 0 stopped; 1 runtime failure (the address cannot be bound, database); 2 usage or configuration error (plain HTTP on a non-loopback address, unreadable TLS files, no key)."
    )]
    Serve(cmd::portal::ServeArgs),
    /// Portal access: patients' one-time codes and privacy-office accounts.
    #[command(subcommand)]
    #[command(after_help = "Exit codes: see `veil portal code --help`.")]
    Portal(cmd::portal::PortalCommand),
}

fn main() -> std::process::ExitCode {
    // Like other Unix filters, stop quietly when the reader of stdout goes away
    // (`veil policy show | head`) instead of panicking on the failed write. Outputs are written
    // atomically and runs resume, so being stopped this way loses nothing.
    // SAFETY: called first thing, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // One OCR thread per worker (Tesseract's OpenMP reads this once, when loaded). Set here,
    // before any other thread exists, never from a worker.
    let (omp, one) = veil_pixels::ocr::OMP_THREAD_LIMIT;
    if std::env::var_os(omp).is_none() {
        // SAFETY: still single-threaded (first thing in main).
        unsafe { std::env::set_var(omp, one) };
    }
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Deid(args) => cmd::deid::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Gateway(args) => cmd::gateway::run(args),
        Command::Key(c) => cmd::key::run(c),
        Command::Policy(c) => cmd::policy::run(c),
        Command::Quarantine(c) => cmd::quarantine::run(c),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Pixels(c) => cmd::pixels::run(c),
        Command::Risk(args) => cmd::risk::run(args),
        Command::Registry(c) => cmd::registry::run(c),
        Command::Serve(args) => cmd::portal::serve(args),
        Command::Portal(c) => cmd::portal::run(c),
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
    // Colour only for a person at a terminal: codes in a redirected log are noise.
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Leaf commands (the ones a person runs) and their path from `veil`.
    fn leaves(c: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        for sub in c.get_subcommands().filter(|s| s.get_name() != "help") {
            let p = format!("{path} {}", sub.get_name());
            if sub.has_subcommands() {
                leaves(sub, &p, out);
            } else {
                out.push((p, sub.clone()));
            }
        }
    }

    #[test]
    fn every_command_documents_its_exit_codes_and_every_argument() {
        let mut all = Vec::new();
        leaves(&Cli::command(), "veil", &mut all);
        assert!(all.len() >= 24, "{} commands", all.len());
        let mut problems = Vec::new();
        for (path, c) in &all {
            let text = [c.get_after_help(), c.get_long_about(), c.get_about()]
                .into_iter()
                .flatten()
                .map(|s| s.to_string())
                .collect::<String>();
            if !text.contains("Exit codes:") {
                problems.push(format!("{path}: no exit codes in its help"));
            }
            for a in c.get_arguments() {
                let builtin = matches!(a.get_id().as_str(), "help" | "version");
                if !builtin && a.get_help().is_none() && a.get_long_help().is_none() {
                    problems.push(format!("{path}: argument {} has no help", a.get_id()));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn json_is_described_one_way_everywhere() {
        let mut all = Vec::new();
        leaves(&Cli::command(), "veil", &mut all);
        for (path, c) in &all {
            if let Some(a) = c.get_arguments().find(|a| a.get_id() == "json") {
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(
                    help.starts_with("Print one JSON document")
                        && help.contains("on stdout instead of the human-readable text"),
                    "{path}: --json says {help:?}"
                );
            }
        }
    }
}
