//! `lkcache push`: images from the cache to a registry.

use clap::Args;

use lkcache::pull::DEFAULT_PARALLEL_BLOBS;
use lkcache::push::{self, PushOptions, PushReport};
use lkcache::{Platform, Reference};

use super::args::{RegistryArgs, parse_all};
use super::{Cli, EXIT_FAILURE, Failure, open_store, print_error};

#[derive(Debug, Args)]
pub(super) struct PushArgs {
    /// Cached names to push.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,

    /// Push under this name instead (one NAME only).
    #[arg(long, value_name = "REF")]
    remote_name: Option<String>,

    /// Also tag each platform's manifest as NAME-ARCH (`-arm-v7` with a
    /// variant).
    #[arg(long)]
    with_arch_tags: bool,

    /// Push even when the registry already serves the same digest.
    #[arg(long = "override")]
    force: bool,

    /// Push a new index of only these cached platforms; repeat for several.
    #[arg(long = "platform", value_name = "PLATFORM")]
    platforms: Vec<String>,

    /// How many blobs to send at once.
    #[arg(long, default_value_t = DEFAULT_PARALLEL_BLOBS, value_name = "N")]
    jobs: usize,

    #[command(flatten)]
    registry: RegistryArgs,
}

pub(super) fn run(cli: &Cli, args: &PushArgs) -> Result<u8, Failure> {
    let names = parse_all::<Reference>(&args.names, "name")?;
    let remote_name = parse_all::<Reference>(args.remote_name.as_slice(), "remote name")?.pop();
    if remote_name.is_some() && names.len() > 1 {
        return Err(Failure::usage("--remote-name takes one NAME to push"));
    }
    let options = PushOptions {
        remote_name,
        platforms: parse_all::<Platform>(&args.platforms, "platform")?,
        with_arch_tags: args.with_arch_tags,
        force: args.force,
        parallel_blobs: args.jobs,
    };
    let store = open_store(cli)?;
    let client = args.registry.client()?;

    let mut status = 0;
    for name in &names {
        match push::push(&store, &client, name, &options) {
            Ok(report) => print_report(&report),
            Err(error) => {
                print_error(&PushFailed {
                    name: name.to_string(),
                    source: error,
                });
                status = EXIT_FAILURE;
            }
        }
    }
    Ok(status)
}

#[derive(Debug, thiserror::Error)]
#[error("cannot push `{name}`")]
struct PushFailed {
    name: String,
    #[source]
    source: push::PushError,
}

fn print_report(report: &PushReport) {
    if report.is_up_to_date {
        println!("{} {} up to date", report.remote, report.digest);
        return;
    }
    let new = if report.is_new_index {
        " (new index)"
    } else {
        ""
    };
    println!(
        "{} {}{new} pushed: {} blobs uploaded, {} mounted, {} already there",
        report.remote, report.digest, report.uploaded, report.mounted, report.present
    );
    for tag in &report.arch_tags {
        println!("tagged {tag}");
    }
}
