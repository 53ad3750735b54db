//! Mending a cache from its registries: corrupt blobs are moved aside, and
//! each affected name is pulled again by the digest the cache recorded for
//! it, for the platforms it held, which fetches exactly what is missing.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::platform::Platform;
use crate::pull::{NoProgress, PullError, PullOptions, PullReport, Puller};
use crate::reference::{Reference, ReferenceError};
use crate::registry::Client;
use crate::store::{Fault, Holding, Problem, Role, Store, StoreError};

/// Why a name could not be repaired.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The cache could not be changed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The name in `index.json` is not a reference to fetch from.
    #[error("`{name}` is not a reference lkcache can fetch from")]
    Name {
        /// The name.
        name: String,
        /// Why it does not parse.
        #[source]
        source: ReferenceError,
    },
    /// The registry could not serve the content.
    #[error("cannot fetch `{name}` again")]
    Pull {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: PullError,
    },
}

/// What a repair did.
#[derive(Debug, Default)]
pub struct Repair {
    /// Corrupt blobs moved aside, and where to.
    pub moved_aside: Vec<(Digest, PathBuf)>,
    /// Names fetched again.
    pub refetched: Vec<PullReport>,
    /// Names that could not be mended.
    pub failed: Vec<RepairError>,
}

/// Mends the `problems` that [`Store::verify`] found.
pub fn repair(store: &Store, client: &Client, problems: &[Problem]) -> Result<Repair, StoreError> {
    let names: BTreeSet<&str> = problems.iter().map(|p| p.name.as_str()).collect();
    let mut plans = Vec::new();
    for name in names {
        // Plan before moving anything aside: what a name held decides what
        // it gets back.
        if let Some(root) = store.lookup(name)? {
            let options = options_for(store, &root);
            plans.push((name.to_string(), root, options));
        }
    }

    let mut repair = Repair::default();
    for problem in problems {
        if matches!(problem.fault, Fault::Corrupt(_)) && store.has_blob(&problem.descriptor) {
            let digest = problem.descriptor.digest.clone();
            let target = store.quarantine(&digest)?;
            tracing::warn!(
                "moved corrupt blob `{digest}` aside to `{}`",
                target.display()
            );
            repair.moved_aside.push((digest, target));
        }
    }
    for (name, root, options) in plans {
        match refetch(store, client, &name, &root, options) {
            Ok(report) => repair.refetched.push(report),
            Err(err) => repair.failed.push(err),
        }
    }
    Ok(repair)
}

/// Works out which platforms a name held, so that exactly those come back.
fn options_for(store: &Store, root: &Descriptor) -> PullOptions {
    let reached = store.reach(root);
    let is_single_image = reached.first().is_some_and(|r| r.role == Role::Manifest);
    let held: Vec<Platform> = reached
        .iter()
        .filter(|r| r.role == Role::Manifest && !matches!(r.holding, Holding::Missing))
        .filter(|r| r.descriptor.attests().is_none())
        .filter_map(|r| r.platform.clone())
        .collect();
    PullOptions {
        platforms: held,
        all_platforms: is_single_image,
        force: true,
        ..PullOptions::default()
    }
}

fn refetch(
    store: &Store,
    client: &Client,
    name: &str,
    root: &Descriptor,
    options: PullOptions,
) -> Result<PullReport, RepairError> {
    let reference: Reference = name.parse().map_err(|source| RepairError::Name {
        name: name.to_string(),
        source,
    })?;
    let pinned = reference.with_digest(root.digest.clone());
    Puller::new(store, client, options, &NoProgress)
        .pull_as(&pinned, name)
        .map_err(|source| RepairError::Pull {
            name: name.to_string(),
            source,
        })
}
