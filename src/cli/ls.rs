//! `lkcache ls`: what the cache holds, as a table or as JSON.

use std::collections::HashMap;
use std::io::{self, Write};

use clap::Args;

use lkcache::digest::Digest;
use lkcache::list::{self, ListEntry, Listing};
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
    // One write per buffer, not per line: a cache can hold many thousand
    // names.
    let mut out = io::BufWriter::new(io::stdout().lock());
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &listing.images)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        write_table(&mut out, &listing)
    };
    match written.and_then(|()| out.flush()) {
        // A reader that stops early (`lkcache ls | head`) is not a failure.
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Failure::failed(format!(
            "could not write the listing to standard output: {e}"
        ))),
        _ => Ok(0),
    }
}

fn write_table(out: &mut impl Write, listing: &Listing) -> io::Result<()> {
    let entries = &listing.images;
    let width = entries
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:width$}  {:<19}  {:<13}  {:>10}  {:>10}  PLATFORMS",
        "NAME", "DIGEST", "TYPE", "SIZE", "SHARED"
    )?;
    // Every column but the name describes the root, and many names share
    // a root: format those columns once per root.
    let mut columns: HashMap<&Digest, String> = HashMap::new();
    for entry in entries {
        let root_columns = columns
            .entry(&entry.digest)
            .or_insert_with(|| root_columns(entry));
        writeln!(out, "{:width$}  {root_columns}", entry.name)?;
    }
    let unreachable = listing.total_bytes.saturating_sub(listing.reachable_bytes);
    writeln!(
        out,
        "{} images, {} on disk ({} in use, {} unreachable: `lkcache gc` frees it)",
        entries.len(),
        human_bytes(listing.total_bytes),
        human_bytes(listing.reachable_bytes),
        human_bytes(unreachable)
    )
}

/// Formats the columns after the name: digest, type, sizes and platforms.
fn root_columns(entry: &ListEntry) -> String {
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
    format!(
        "{digest:<19}  {:<13}  {:>10}  {:>10}  {platforms}",
        short_media_type(&entry.media_type),
        human_bytes(entry.size_bytes),
        human_bytes(entry.shared_bytes),
    )
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
