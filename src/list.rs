//! Listing what the cache holds: each name, its root, the platforms held
//! completely, and the bytes its blobs take on disk.

use serde::Serialize;

use crate::digest::Digest;
use crate::platform::Platform;
use crate::store::{Store, StoreError};

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
    /// Whether the root document itself is missing or unreadable.
    pub is_broken: bool,
}

/// Lists every cached name, sorted by name.
pub fn list(store: &Store) -> Result<Vec<ListEntry>, StoreError> {
    let index = store.read_index()?;
    let mut entries: Vec<ListEntry> = index
        .manifests
        .iter()
        .filter_map(|descriptor| {
            let name = descriptor.ref_name()?.to_string();
            Some(describe(store, name, descriptor))
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

fn describe(store: &Store, name: String, root: &crate::manifest::Descriptor) -> ListEntry {
    let mut entry = ListEntry {
        name,
        digest: root.digest.clone(),
        media_type: root.media_type.clone(),
        platforms: Vec::new(),
        size_bytes: 0,
        is_broken: true,
    };
    let Ok(cached) = store.cached_root(&entry.name, root.clone()) else {
        return entry;
    };
    let Ok(platforms) = cached.platforms(store) else {
        return entry;
    };
    entry.is_broken = false;
    entry.platforms = platforms
        .iter()
        .filter(|p| p.is_complete)
        .map(|p| {
            p.platform
                .as_ref()
                .map_or("unknown".to_string(), Platform::to_string)
        })
        .collect();
    entry.size_bytes = cached
        .blobs_on_disk(store)
        .iter()
        .map(|(_, size)| size)
        .sum();
    entry
}
