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
    roots: Vec<Root>,
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

    /// Adds an image to name. An archive that lists the same image twice
    /// (two `index.json` entries, or two `manifest.json` entries with one
    /// config) holds one image under all the names the entries give.
    pub(super) fn add_root(&mut self, root: Root) {
        let Some(known) = self
            .roots
            .iter_mut()
            .find(|known| known.descriptor.digest == root.descriptor.digest)
        else {
            self.roots.push(root);
            return;
        };
        for name in root.names {
            if !known.names.contains(&name) {
                known.names.push(name);
            }
        }
    }

    /// Returns the images to name, in the archive's order.
    pub(super) fn roots(&self) -> &[Root] {
        &self.roots
    }

    /// Lands the blobs, bottom-up, then records `names` (one list per
    /// root), all in one change of `index.json`. Blobs the cache already
    /// holds are left as they are.
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

        let imported: Vec<ImportedImage> = self
            .roots
            .into_iter()
            .zip(names)
            .map(|(root, names)| ImportedImage {
                names,
                root: root.descriptor,
                platforms: root.platforms,
            })
            .collect();
        let entries: Vec<(Option<&str>, &Descriptor)> = imported
            .iter()
            .flat_map(|image| {
                let unnamed = image.names.is_empty().then_some((None, &image.root));
                let named = image.names.iter().map(|n| (Some(n.as_str()), &image.root));
                named.chain(unnamed)
            })
            .collect();
        store.record(&entries)?;
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
