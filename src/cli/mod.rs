//! Command-line parsing, dispatch, and how failures are shown.
//!
//! Results go to stdout; progress, logs and errors to stderr. Exit codes:
//! 0 success, 1 the operation failed, 2 the command line or its input was
//! wrong (an unknown flag, a malformed reference or platform).

mod args;
mod export;
mod gc;
mod import;
mod ls;
mod progress;
mod pull;
mod push;
mod rm;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use lkcache::Store;

/// Exit status when the operation failed.
const EXIT_FAILURE: u8 = 1;
/// Exit status when the command line or its arguments are wrong.
const EXIT_USAGE: u8 = 2;

/// A daemonless cache of container images, in LinuxKit's cache format.
#[derive(Debug, Parser)]
#[command(name = "lkcache", version, about)]
struct Cli {
    /// The cache directory [default: ~/.linuxkit/cache].
    #[arg(long, global = true, env = "LKCACHE_CACHE", value_name = "DIR")]
    cache: Option<PathBuf>,

    /// Print only results and errors: no progress, no notices.
    #[arg(short, long, global = true)]
    quiet: bool,

    /// Log decisions (-v) or every request (-vv) to stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pull images into the cache, from the registry only what is missing.
    Pull(pull::PullArgs),
    /// Push cached images to a registry, sending only what it lacks.
    Push(push::PushArgs),
    /// Import images from an OCI layout tar or a `docker save` archive.
    Import(import::ImportArgs),
    /// Export cached images as an OCI layout, a Docker archive or a root filesystem.
    Export(export::ExportArgs),
    /// List the cached images.
    Ls(ls::LsArgs),
    /// Remove names from the cache, and the blobs no other name uses.
    Rm(rm::RmArgs),
    /// Remove every name (or every published one) and the blobs they use.
    Clean(rm::CleanArgs),
    /// Remove blobs no name reaches and leftovers of interrupted commands.
    Gc(gc::GcArgs),
    /// Re-hash cached images and check that each is complete.
    Verify(verify::VerifyArgs),
}

/// A failure, with the exit status it maps to.
struct Failure {
    status: u8,
    error: Box<dyn std::error::Error>,
}

impl Failure {
    fn usage(error: impl Into<Box<dyn std::error::Error>>) -> Failure {
        Failure {
            status: EXIT_USAGE,
            error: error.into(),
        }
    }

    fn failed(error: impl Into<Box<dyn std::error::Error>>) -> Failure {
        Failure {
            status: EXIT_FAILURE,
            error: error.into(),
        }
    }
}

/// Runs the command line and returns the process's exit status.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet, cli.verbose);
    let result = match &cli.command {
        Command::Pull(args) => pull::run(&cli, args),
        Command::Push(args) => push::run(&cli, args),
        Command::Import(args) => import::run(&cli, args),
        Command::Export(args) => export::run(&cli, args),
        Command::Ls(args) => ls::run(&cli, args),
        Command::Rm(args) => rm::run_rm(&cli, args),
        Command::Clean(args) => rm::run_clean(&cli, args),
        Command::Gc(args) => gc::run(&cli, args),
        Command::Verify(args) => verify::run(&cli, args),
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(failure) => {
            print_error(failure.error.as_ref());
            ExitCode::from(failure.status)
        }
    }
}

/// Opens the cache the command line names.
fn open_store(cli: &Cli) -> Result<Store, Failure> {
    let root = match &cli.cache {
        Some(root) => root.clone(),
        None => Store::default_root().ok_or_else(|| {
            Failure::usage(
                "no home directory to put the cache in; name one with --cache or LKCACHE_CACHE",
            )
        })?,
    };
    Store::open(root).map_err(Failure::failed)
}

/// Prints an error and every cause beneath it.
fn print_error(error: &dyn std::error::Error) {
    eprintln!("error: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
}

fn init_logging(quiet: bool, verbose: u8) {
    let default = match (quiet, verbose) {
        (true, _) => "lkcache=warn",
        (false, 0) => "lkcache=info",
        (false, 1) => "lkcache=debug",
        (false, _) => "lkcache=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LKCACHE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
}
