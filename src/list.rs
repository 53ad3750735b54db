//! Listing what the cache holds: each name, its root, the platforms held
//! completely, the bytes its blobs take on disk and how many of those it
//! shares with other names.

use std::collections::HashMap;

use serde::Serialize;

use crate::digest::Digest;
use crate::manifest::{ANNOTATION_REF_NAME, Descriptor};
use crate::platform::Platform;
use crate::store::{Holding, Store, StoreError};

/// One cached name, as `lkcache ls` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ListEntry {
    /// The full reference.
    pub name: String,
    /// The digest of the root index or manifest.
    pub digest: Digest,
    /// The root's media type.
    pub media_type: String,
    /// The platforms whose manifest, config and layers are all cached.
    pub platforms: Vec<String>,
    /// The bytes this image's cached blobs take, each blob counted once.
    pub size_bytes: u64,
    /// The part of `size_bytes` in blobs that other names use too.
    pub shared_bytes: u64,
    /// Whether the root document itself is missing or unreadable.
    pub is_broken: bool,
}

/// The whole listing: every name, and what the cache takes in all.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// The names, sorted.
    pub images: Vec<ListEntry>,
    /// The bytes of the distinct blobs that names reach.
    pub reachable_bytes: u64,
    /// The bytes of every file under `blobs/`, reachable or not.
    pub total_bytes: u64,
}

/// What one root reaches, worked out once however many names share it:
/// caches hold many names for few roots (tags of one build, LinuxKit's
/// per-architecture names), so nothing below is done per name.
struct RootSummary {
    /// The present blobs the root reaches, with their sizes.
    blobs: HashMap<Digest, u64>,
    /// The platforms held completely, or `None` when the root is broken.
    platforms: Option<Vec<String>>,
    /// How many names point at the root.
    names: usize,
}

/// Lists every cached name, sorted by name.
pub fn list(store: &Store) -> Result<Listing, StoreError> {
    let index = store.read_index()?;
    let mut positions: HashMap<&Digest, usize> = HashMap::new();
    let mut summaries: Vec<RootSummary> = Vec::new();
    let summary_of: Vec<usize> = index
        .manifests
        .iter()
        .map(|root| {
            let at = *positions.entry(&root.digest).or_insert_with(|| {
                summaries.push(summarize(store, root));
                summaries.len() - 1
            });
            summaries[at].names += 1;
            at
        })
        .collect();
    // Its keys borrow from the index, which the entries take apart below.
    drop(positions);
    let sizes = sizes_bytes(&summaries);

    let mut images: Vec<ListEntry> = index
        .manifests
        .into_iter()
        .zip(summary_of)
        .map(|(root, at)| describe(root, &summaries[at], sizes[at]))
        .collect();
    images.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let reachable_bytes = summaries
        .iter()
        .flat_map(|summary| summary.blobs.iter())
        .collect::<HashMap<_, _>>()
        .values()
        .copied()
        .sum();
    Ok(Listing {
        images,
        reachable_bytes,
        total_bytes: store.blobs_size_bytes()?,
    })
}

fn summarize(store: &Store, root: &Descriptor) -> RootSummary {
    let blobs = store
        .reach(root)
        .into_iter()
        .filter(|reached| matches!(reached.holding, Holding::Present))
        .map(|reached| (reached.descriptor.digest, reached.descriptor.size))
        .collect();
    let platforms = store
        .cached_root("", root.clone())
        .and_then(|cached| cached.platforms(store))
        .ok()
        .map(|entries| {
            entries
                .iter()
                .filter(|p| p.is_complete)
                .map(|p| {
                    p.platform
                        .as_ref()
                        .map_or("unknown".to_string(), Platform::to_string)
                })
                .collect()
        });
    RootSummary {
        blobs,
        platforms,
        names: 0,
    }
}

/// For each root, the bytes of its blobs, and those of them that more than
/// one name uses: another root's names, or another name of the same root.
fn sizes_bytes(summaries: &[RootSummary]) -> Vec<(u64, u64)> {
    let mut users: HashMap<&Digest, usize> = HashMap::new();
    for summary in summaries {
        for digest in summary.blobs.keys() {
            *users.entry(digest).or_default() += summary.names;
        }
    }
    summaries
        .iter()
        .map(|summary| {
            let shared = summary
                .blobs
                .iter()
                .filter(|(digest, _)| users[digest] > 1)
                .map(|(_, size)| size)
                .sum();
            (summary.blobs.values().sum(), shared)
        })
        .collect()
}

fn describe(
    mut root: Descriptor,
    summary: &RootSummary,
    (size_bytes, shared_bytes): (u64, u64),
) -> ListEntry {
    // An unnamed image (imported from an archive without names) is listed
    // by its digest.
    let name = root
        .annotations
        .remove(ANNOTATION_REF_NAME)
        .unwrap_or_else(|| format!("@{}", root.digest));
    ListEntry {
        name,
        digest: root.digest,
        media_type: root.media_type,
        is_broken: summary.platforms.is_none(),
        platforms: summary.platforms.clone().unwrap_or_default(),
        size_bytes,
        shared_bytes,
    }
}
