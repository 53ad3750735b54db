//! `lkcache ls`: what the cache holds, as a table or as JSON.

use clap::Args;

use lkcache::list::{self, Listing};
use lkcache::media_type;

use super::{Cli, Failure, open_store};

#[derive(Debug, Args)]
pub(super) struct LsArgs {
    /// Print a JSON array of objects, for scripts.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(cli: &Cli, args: &LsArgs) -> Result<u8, Failure> {
    let store = open_store(cli)?;
    let listing = list::list(&store).map_err(Failure::failed)?;
    if args.json {
        let json = serde_json::to_string_pretty(&listing.images).expect("entries always serialise");
        println!("{json}");
    } else {
        print_table(&listing);
    }
    Ok(0)
}

fn print_table(listing: &Listing) {
    let entries = &listing.images;
    let width = entries
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:width$}  {:<19}  {:<13}  {:>10}  {:>10}  PLATFORMS",
        "NAME", "DIGEST", "TYPE", "SIZE", "SHARED"
    );
    for entry in entries {
        let digest = format!(
            "{}:{}",
            entry.digest.algorithm().name(),
            entry.digest.short()
        );
        let platforms = if entry.is_broken {
            "(root missing or unreadable)".to_string()
        } else {
            entry.platforms.join(",")
        };
        println!(
            "{:width$}  {digest:<19}  {:<13}  {:>10}  {:>10}  {platforms}",
            entry.name,
            short_media_type(&entry.media_type),
            human_bytes(entry.size_bytes),
            human_bytes(entry.shared_bytes),
        );
    }
    let unreachable = listing.total_bytes.saturating_sub(listing.reachable_bytes);
    println!(
        "{} images, {} on disk ({} in use, {} unreachable: `lkcache gc` frees it)",
        entries.len(),
        human_bytes(listing.total_bytes),
        human_bytes(listing.reachable_bytes),
        human_bytes(unreachable)
    );
}

/// Names a root media type in a few characters for the table.
fn short_media_type(media_type: &str) -> &str {
    match media_type {
        media_type::OCI_INDEX => "oci-index",
        media_type::OCI_MANIFEST => "oci-manifest",
        media_type::DOCKER_MANIFEST_LIST => "docker-list",
        media_type::DOCKER_MANIFEST => "docker-image",
        other => other,
    }
}

/// Formats a byte count with a binary unit: `3.2 MiB`.
pub(super) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
