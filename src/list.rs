//! Listing what the cache holds: each name, its root, the platforms held
//! completely, the bytes its blobs take on disk and how many of those it
//! shares with other names.

use std::collections::HashMap;

use serde::Serialize;

use crate::digest::Digest;
use crate::manifest::Descriptor;
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

/// What one root reaches, worked out once however many names share it.
struct RootSummary {
    /// The present blobs the root reaches, with their sizes.
    blobs: HashMap<Digest, u64>,
    /// The platforms held completely, or `None` when the root is broken.
    platforms: Option<Vec<String>>,
}

/// Lists every cached name, sorted by name.
pub fn list(store: &Store) -> Result<Listing, StoreError> {
    let index = store.read_index()?;
    let mut summaries: HashMap<&Digest, RootSummary> = HashMap::new();
    for root in &index.manifests {
        summaries
            .entry(&root.digest)
            .or_insert_with(|| summarize(store, root));
    }
    let mut users: HashMap<&Digest, usize> = HashMap::new();
    for root in &index.manifests {
        for digest in summaries[&root.digest].blobs.keys() {
            *users.entry(digest).or_default() += 1;
        }
    }

    let mut images: Vec<ListEntry> = index
        .manifests
        .iter()
        .map(|root| describe(root, &summaries[&root.digest], &users))
        .collect();
    images.sort_by(|a, b| a.name.cmp(&b.name));
    let reachable_bytes = summaries
        .values()
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
    RootSummary { blobs, platforms }
}

fn describe(
    root: &Descriptor,
    summary: &RootSummary,
    users: &HashMap<&Digest, usize>,
) -> ListEntry {
    // An unnamed image (imported from an archive without names) is listed
    // by its digest.
    let name = root
        .ref_name()
        .map_or_else(|| format!("@{}", root.digest), str::to_string);
    let shared_bytes = summary
        .blobs
        .iter()
        .filter(|(digest, _)| users.get(digest).is_some_and(|n| *n > 1))
        .map(|(_, size)| size)
        .sum();
    ListEntry {
        name,
        digest: root.digest.clone(),
        media_type: root.media_type.clone(),
        is_broken: summary.platforms.is_none(),
        platforms: summary.platforms.clone().unwrap_or_default(),
        size_bytes: summary.blobs.values().sum(),
        shared_bytes,
    }
}
