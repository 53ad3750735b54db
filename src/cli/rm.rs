//! `lkcache rm` and `lkcache clean`: remove names, then sweep the blobs
//! that no remaining name uses.

use clap::Args;

use lkcache::registry::{Client, RegistryError};
use lkcache::store::{Store, Sweep};
use lkcache::{Digest, Reference};

use super::args::{RegistryArgs, parse_all};
use super::ls::human_bytes;
use super::{Cli, EXIT_FAILURE, Failure, open_store};

#[derive(Debug, Args)]
pub(super) struct RmArgs {
    /// Names to remove: `alpine:3.19` means `docker.io/library/alpine:3.19`.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,

    /// Remove a name only while its registry still serves the same digest.
    #[arg(long)]
    published_only: bool,

    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub(super) struct CleanArgs {
    /// Remove only the names whose registry still serves the same digest.
    #[arg(long)]
    published_only: bool,

    #[command(flatten)]
    registry: RegistryArgs,
}

pub(super) fn run_rm(cli: &Cli, args: &RmArgs) -> Result<u8, Failure> {
    let references = parse_all::<Reference>(&args.names, "name")?;
    let store = open_store(cli)?;
    let names: Vec<String> = references.iter().map(Reference::to_string).collect();
    let client = args
        .published_only
        .then(|| args.registry.client())
        .transpose()?;
    let mut status = 0;
    for name in &names {
        if store.lookup(name).map_err(Failure::failed)?.is_none() {
            eprintln!("error: `{name}` is not in the cache");
            status = EXIT_FAILURE;
        }
    }
    remove_and_sweep(&store, client.as_ref(), names)?;
    Ok(status)
}

pub(super) fn run_clean(cli: &Cli, args: &CleanArgs) -> Result<u8, Failure> {
    let store = open_store(cli)?;
    let index = store.read_index().map_err(Failure::failed)?;
    let names: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.ref_name())
        .map(str::to_string)
        .collect();
    let client = args
        .published_only
        .then(|| args.registry.client())
        .transpose()?;
    if !args.published_only {
        // Unnamed images have no registry to be published at.
        let unnamed = store.remove_unnamed().map_err(Failure::failed)?;
        if unnamed > 0 {
            println!("removed {unnamed} unnamed images");
        }
    }
    remove_and_sweep(&store, client.as_ref(), names)?;
    Ok(0)
}

/// Removes `names` (with a client: only those still published), then
/// sweeps, and reports both.
fn remove_and_sweep(
    store: &Store,
    client: Option<&Client>,
    names: Vec<String>,
) -> Result<(), Failure> {
    let mut doomed = Vec::new();
    for name in names {
        match client
            .map(|client| why_keep(store, client, &name))
            .transpose()?
        {
            Some(Some(reason)) => println!("kept {name}: {reason}"),
            _ => doomed.push(name),
        }
    }
    for name in store.remove_names(&doomed).map_err(Failure::failed)? {
        println!("removed {name}");
    }
    let sweep = store.sweep(false).map_err(Failure::failed)?;
    print_sweep(&sweep, false);
    Ok(())
}

/// Returns why a name must stay under `--published-only`, or `None` when
/// the registry serves the same digest the cache holds.
fn why_keep(store: &Store, client: &Client, name: &str) -> Result<Option<String>, Failure> {
    let Some(root) = store.lookup(name).map_err(Failure::failed)? else {
        return Ok(None);
    };
    let Ok(reference) = name.parse::<Reference>() else {
        return Ok(Some(
            "the name is not a reference a registry could serve".to_string(),
        ));
    };
    Ok(match client.current_digest(&reference) {
        Ok(digest) if digest == root.digest => None,
        Ok(digest) => Some(differs(&digest, &root.digest)),
        Err(RegistryError::NotFound { .. }) => Some("the registry does not have it".to_string()),
        Err(err) => Some(format!("cannot ask the registry: {err}")),
    })
}

fn differs(published: &Digest, cached: &Digest) -> String {
    format!("the registry serves {published}, the cache holds {cached}")
}

/// Prints what a sweep removed (or, in a dry run, would remove).
pub(super) fn print_sweep(sweep: &Sweep, dry_run: bool) {
    let verb = if dry_run { "would remove" } else { "removed" };
    for (digest, size) in &sweep.blobs {
        println!("{verb} blob {digest} ({})", human_bytes(*size));
    }
    for (path, size) in &sweep.temp_files {
        println!(
            "{verb} leftover {} ({})",
            path.display(),
            human_bytes(*size)
        );
    }
    let freed = if dry_run { "would free" } else { "freed" };
    println!(
        "{freed} {} in {} blobs and {} leftover files",
        human_bytes(sweep.freed_bytes()),
        sweep.blobs.len(),
        sweep.temp_files.len()
    );
}
