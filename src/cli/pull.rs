//! `lkcache pull`: images into the cache, cache first.

use std::io::IsTerminal;

use clap::Args;

use lkcache::pull::{DEFAULT_PARALLEL_BLOBS, NoProgress, Progress, PullReport};
use lkcache::{Platform, PullOptions, Puller, Reference};

use super::args::{RegistryArgs, parse_all};
use super::ls::human_bytes;
use super::progress::BlobBars;
use super::{Cli, Failure, open_store};

#[derive(Debug, Args)]
pub(super) struct PullArgs {
    /// Images to pull: `alpine:3.19`, `ghcr.io/org/app@sha256:…`.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,

    /// A platform to pull, `os/arch[/variant]`; repeat for several
    /// [default: the host's].
    #[arg(long = "platform", value_name = "PLATFORM")]
    platforms: Vec<String>,

    /// Pull every platform an index names.
    #[arg(long, conflicts_with = "platforms")]
    all_platforms: bool,

    /// Ask the registry even when the cache holds the image.
    #[arg(long)]
    pull: bool,

    #[command(flatten)]
    registry: RegistryArgs,

    /// How many blobs to download at once.
    #[arg(long, default_value_t = DEFAULT_PARALLEL_BLOBS, value_name = "N")]
    jobs: usize,
}

pub(super) fn run(cli: &Cli, args: &PullArgs) -> Result<u8, Failure> {
    let references = parse_all::<Reference>(&args.images, "image reference")?;
    let platforms = parse_all::<Platform>(&args.platforms, "platform")?;
    let store = open_store(cli)?;
    let client = args.registry.client()?;
    let options = PullOptions {
        platforms,
        all_platforms: args.all_platforms,
        force: args.pull,
        parallel_blobs: args.jobs,
    };

    let bars;
    let progress: &dyn Progress = if !cli.quiet && std::io::stderr().is_terminal() {
        bars = BlobBars::new();
        &bars
    } else {
        &NoProgress
    };
    let puller = Puller::new(&store, &client, options, progress);
    let results = puller.pull_all(&references);

    let mut status = 0;
    for (reference, result) in references.iter().zip(results) {
        match result {
            Ok(report) => print_report(&report),
            Err(error) => {
                super::print_error(&PullFailed {
                    reference: reference.to_string(),
                    source: error,
                });
                status = super::EXIT_FAILURE;
            }
        }
    }
    Ok(status)
}

#[derive(Debug, thiserror::Error)]
#[error("cannot pull `{reference}`")]
struct PullFailed {
    reference: String,
    #[source]
    source: lkcache::pull::PullError,
}

fn print_report(report: &PullReport) {
    let platforms: Vec<String> = report.platforms.iter().map(Platform::to_string).collect();
    let what = if !report.contacted_registry {
        "cached".to_string()
    } else if report.transferred.blobs == 0 {
        "up to date".to_string()
    } else {
        format!(
            "pulled {} blobs, {}",
            report.transferred.blobs,
            human_bytes(report.transferred.bytes)
        )
    };
    println!(
        "{} {} {what} [{}]",
        report.name,
        report.root.digest,
        platforms.join(",")
    );
}
