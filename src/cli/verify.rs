//! `lkcache verify`: re-hash cached images, check they are complete, and
//! with `--repair` mend them from their registries.

use clap::Args;

use lkcache::Reference;
use lkcache::repair;
use lkcache::store::{Problem, Store};

use super::args::{RegistryArgs, parse_all};
use super::{Cli, EXIT_FAILURE, Failure, open_store, print_error};

#[derive(Debug, Args)]
pub(super) struct VerifyArgs {
    /// Names to verify [default: every name].
    #[arg(value_name = "NAME")]
    names: Vec<String>,

    /// Move corrupt blobs aside and fetch what is missing or corrupt again.
    #[arg(long)]
    repair: bool,

    #[command(flatten)]
    registry: RegistryArgs,
}

pub(super) fn run(cli: &Cli, args: &VerifyArgs) -> Result<u8, Failure> {
    let references = parse_all::<Reference>(&args.names, "name")?;
    let names: Vec<String> = references.iter().map(Reference::to_string).collect();
    let store = open_store(cli)?;
    let problems = check(&store, &names)?;
    if problems.is_empty() || !args.repair {
        return Ok(if problems.is_empty() { 0 } else { EXIT_FAILURE });
    }

    let client = args.registry.client()?;
    let repair = repair::repair(&store, &client, &problems).map_err(Failure::failed)?;
    for (digest, path) in &repair.moved_aside {
        println!("moved corrupt blob {digest} aside to {}", path.display());
    }
    for report in &repair.refetched {
        println!("fetched {} {} again", report.name, report.root.digest);
    }
    for failure in &repair.failed {
        print_error(failure);
    }
    let remaining = check(&store, &names)?;
    Ok(if remaining.is_empty() {
        0
    } else {
        EXIT_FAILURE
    })
}

/// Verifies and prints each problem, or that all is sound.
fn check(store: &Store, names: &[String]) -> Result<Vec<Problem>, Failure> {
    let problems = store.verify(names).map_err(Failure::failed)?;
    for problem in &problems {
        println!("{problem}");
    }
    if problems.is_empty() {
        println!("sound: every blob matches its digest and every cached image is complete");
    }
    Ok(problems)
}
