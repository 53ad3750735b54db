//! Listing what the cache holds: each name, its root, the platforms held
//! completely, the bytes its blobs take on disk and how many of those it
//! shares with other names.

use std::collections::{HashMap, HashSet};

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

/// Lists every cached name, sorted by name.
pub fn list(store: &Store) -> Result<Listing, StoreError> {
    let index = store.read_index()?;
    let mut blob_sets = Vec::new();
    for root in &index.manifests {
        // An unnamed image (imported from an archive without names) is
        // listed by its digest.
        let name = root.ref_name().map_or_else(|| format!("@{}", root.digest), str::to_string);
        blob_sets.push((name, root, blobs_on_disk(store, root)));
    }
    let mut users: HashMap<&Digest, usize> = HashMap::new();
    for (_, _, blobs) in &blob_sets {
        for digest in blobs.keys() {
            *users.entry(digest).or_default() += 1;
        }
    }

    let mut images: Vec<ListEntry> = blob_sets
        .iter()
        .map(|(name, root, blobs)| describe(store, name, root, blobs, &users))
        .collect();
    images.sort_by(|a, b| a.name.cmp(&b.name));
    let mut distinct = HashSet::new();
    let reachable_bytes = blob_sets
        .iter()
        .flat_map(|(_, _, blobs)| blobs.iter())
        .filter(|(digest, _)| distinct.insert(*digest))
        .map(|(_, size)| size)
        .sum();
    Ok(Listing {
        images,
        reachable_bytes,
        total_bytes: store.blobs_size_bytes()?,
    })
}

/// Returns the present blobs a root reaches, with their sizes.
fn blobs_on_disk(store: &Store, root: &Descriptor) -> HashMap<Digest, u64> {
    store
        .reach(root)
        .into_iter()
        .filter(|reached| matches!(reached.holding, Holding::Present))
        .map(|reached| (reached.descriptor.digest, reached.descriptor.size))
        .collect()
}

fn describe(
    store: &Store,
    name: &str,
    root: &Descriptor,
    blobs: &HashMap<Digest, u64>,
    users: &HashMap<&Digest, usize>,
) -> ListEntry {
    let platforms = store
        .cached_root(name, root.clone())
        .and_then(|cached| cached.platforms(store));
    let shared_bytes = blobs
        .iter()
        .filter(|(digest, _)| users.get(digest).is_some_and(|n| *n > 1))
        .map(|(_, size)| size)
        .sum();
    ListEntry {
        name: name.to_string(),
        digest: root.digest.clone(),
        media_type: root.media_type.clone(),
        is_broken: platforms.is_err(),
        platforms: platforms
            .unwrap_or_default()
            .iter()
            .filter(|p| p.is_complete)
            .map(|p| {
                p.platform
                    .as_ref()
                    .map_or("unknown".to_string(), Platform::to_string)
            })
            .collect(),
        size_bytes: blobs.values().sum(),
        shared_bytes,
    }
}
