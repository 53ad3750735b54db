//! `lkcache gc`: sweep blobs no name reaches and leftovers of processes
//! that are gone.

use clap::Args;

use super::rm::print_sweep;
use super::{Cli, Failure, open_store};

#[derive(Debug, Args)]
pub(super) struct GcArgs {
    /// Only show what would be removed.
    #[arg(long)]
    dry_run: bool,
}

pub(super) fn run(cli: &Cli, args: &GcArgs) -> Result<u8, Failure> {
    let store = open_store(cli)?;
    let sweep = store.sweep(args.dry_run).map_err(Failure::failed)?;
    print_sweep(&sweep, args.dry_run);
    Ok(0)
}
