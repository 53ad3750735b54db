//! What an import writes, worked out and checked before anything is
//! written, and then written bottom-up.
//!
//! A [`Plan`] lists the blobs to land in an order where every blob comes
//! after all those it names (a post-order walk from each root), the
//! documents lkcache made itself (the manifest of a legacy Docker
//! archive), and the roots with the names the archive gives them. Building
//! it reads and checks everything; [`Plan::execute`] only moves staged files
//! into `blobs/` and then records the names, so once it starts, the archive
//! has been found whole and sound.

use std::collections::{BTreeMap, BTreeSet};

use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::platform::Platform;
use crate::store::Store;

use super::naming::ArchiveName;
use super::scan::Contents;
use super::{ImportError, ImportedImage, entry};

/// One image of the archive: an entry of `index.json` or of
/// `manifest.json`.
#[derive(Debug, Clone)]
pub(super) struct Root {
    /// The descriptor to record in the cache's `index.json`.
    pub descriptor: Descriptor,
    /// What the archive calls it.
    pub names: Vec<ArchiveName>,
    /// The platforms it holds, in the archive's order.
    pub platforms: Vec<Platform>,
}

/// The blobs to land, in order, and the roots to name.
#[derive(Debug, Default)]
pub(super) struct Plan {
    writes: Vec<Descriptor>,
    planned: BTreeSet<Digest>,
    made: BTreeMap<Digest, Vec<u8>>,
    pub roots: Vec<Root>,
}

impl Plan {
    /// Adds a blob to land after every blob added before it.
    pub(super) fn add(&mut self, descriptor: &Descriptor) {
        if self.planned.insert(descriptor.digest.clone()) {
            self.writes.push(descriptor.clone());
        }
    }

    /// Adds a document lkcache made, to land after every blob added before.
    pub(super) fn add_made(&mut self, descriptor: &Descriptor, bytes: Vec<u8>) {
        self.made.insert(descriptor.digest.clone(), bytes);
        self.add(descriptor);
    }

    /// Lands the blobs, bottom-up, then records `names` (one list per
    /// root). Blobs the cache already holds are left as they are.
    pub(super) fn execute(
        self,
        store: &Store,
        contents: &mut Contents,
        names: Vec<Vec<String>>,
    ) -> Result<Vec<ImportedImage>, ImportError> {
        for descriptor in &self.writes {
            if store.has_blob(descriptor) {
                continue;
            }
            if let Some(blob) = contents.take_staged(&descriptor.digest) {
                blob.commit()?;
            } else if let Some(bytes) = self.made.get(&descriptor.digest) {
                store.write_blob(descriptor, bytes)?;
            } else {
                // Planning found every blob staged or cached, and the write
                // guard keeps cached ones from being swept since.
                return Err(ImportError::MissingBlob {
                    digest: descriptor.digest.clone(),
                    named_by: "the import plan".to_string(),
                    entry: entry::blob_path(&descriptor.digest),
                });
            }
            tracing::trace!("landed `{}`", descriptor.digest);
        }

        let mut imported = Vec::with_capacity(self.roots.len());
        for (root, names) in self.roots.into_iter().zip(names) {
            for name in &names {
                store.set_name(name, &root.descriptor)?;
            }
            if names.is_empty() {
                store.add_unnamed(&root.descriptor)?;
            }
            imported.push(ImportedImage {
                names,
                root: root.descriptor,
                platforms: root.platforms,
            });
        }
        Ok(imported)
    }
}

/// Returns a plain descriptor, without platform or annotations.
pub(super) fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest: digest.clone(),
        size,
        platform: None,
        annotations: BTreeMap::new(),
        extra: serde_json::Map::new(),
    }
}
