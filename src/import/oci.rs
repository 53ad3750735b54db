//! Resolving an OCI image layout (image-spec, image-layout.md): from the
//! entries of `index.json` down to every layer.
//!
//! Each `index.json` entry is one image. Under an index, the archive may
//! hold only some platforms (`lkcache export` writes the ones the cache
//! holds, as the cache itself keeps them): a platform manifest absent from
//! the archive is skipped, but one that is present must be complete, and an
//! index with none present is refused. Under an image manifest, the config
//! and every layer must be present. "Present" means staged from the archive
//! or already in the cache; either way the size must be the descriptor's,
//! and staged content was hashed against its name as it came in.
//!
//! When a Docker archive's `manifest.json` sits beside the layout (`docker
//! save` since Docker 25), the layout is what is imported, and entries that
//! `index.json` leaves unnamed take the `RepoTags` of the `manifest.json`
//! entry with the same config.

use std::collections::BTreeSet;

use crate::digest::Digest;
use crate::manifest::{self, Descriptor, ImageConfig, ImageIndex, MAX_MANIFEST_BYTES, Manifest};
use crate::platform::Platform;
use crate::store::Store;

use super::naming::{self, ArchiveName};
use super::plan::{Plan, Root, descriptor};
use super::scan::{self, Contents};
use super::{ImportError, docker, entry};

/// The layout's index, naming its images.
pub(super) const INDEX_JSON: &str = "index.json";
const OCI_LAYOUT: &str = "oci-layout";

/// How many indexes deep an image may nest (an index in `index.json` that
/// names an index is two).
const MAX_DEPTH: usize = 3;

/// Resolves the layout into a plan, checking that every image is whole.
pub(super) fn plan(contents: &Contents, store: &Store) -> Result<Plan, ImportError> {
    check_layout_version(contents)?;
    let index: ImageIndex = parse_document(contents, INDEX_JSON)?;
    if index.manifests.is_empty() {
        return Err(ImportError::NoImages(INDEX_JSON));
    }

    let mut docker_names = None;
    let mut plan = Plan::default();
    for entry in &index.manifests {
        let mut walk = Walk {
            contents,
            store,
            plan: &mut plan,
            configs: BTreeSet::new(),
        };
        let (media_type, platforms) = walk.visit(entry, "`index.json`", 0)?;
        let configs = walk.configs;

        let mut names = naming::index_entry_names(entry)?;
        if names.is_empty() {
            let docker_names = match &mut docker_names {
                Some(names) => names,
                None => docker_names.insert(docker::names_by_config(contents)?),
            };
            names = docker_names
                .iter()
                .filter(|(config, _)| configs.contains(config))
                .flat_map(|(_, names)| names.iter().cloned().map(ArchiveName::Full))
                .collect();
        }
        plan.add_root(Root {
            descriptor: descriptor(&media_type, &entry.digest, entry.size),
            names,
            platforms,
        });
    }
    Ok(plan)
}

fn check_layout_version(contents: &Contents) -> Result<(), ImportError> {
    let Some(bytes) = contents.document(OCI_LAYOUT) else {
        tracing::debug!("the archive has no `{OCI_LAYOUT}`; reading it as a version 1 layout");
        return Ok(());
    };
    let layout: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|source| ImportError::InvalidJson {
            entry: OCI_LAYOUT.to_string(),
            source,
        })?;
    let version = layout["imageLayoutVersion"].as_str().unwrap_or_default();
    if version.starts_with("1.") {
        Ok(())
    } else {
        Err(ImportError::LayoutVersion(version.to_string()))
    }
}

/// Parses a top-level layout document.
pub(super) fn parse_document<T: serde::de::DeserializeOwned>(
    contents: &Contents,
    name: &str,
) -> Result<T, ImportError> {
    let bytes = contents.document(name).unwrap_or_default();
    serde_json::from_slice(bytes).map_err(|source| ImportError::InvalidJson {
        entry: name.to_string(),
        source,
    })
}

/// A walk from one `index.json` entry down to its layers.
struct Walk<'a> {
    contents: &'a Contents,
    store: &'a Store,
    plan: &'a mut Plan,
    /// The configs of the image manifests met, to match `manifest.json`.
    configs: BTreeSet<Digest>,
}

impl Walk<'_> {
    /// Checks a manifest or index and everything under it, adds them to the
    /// plan children first, and returns its media type and its platforms.
    fn visit(
        &mut self,
        descriptor: &Descriptor,
        named_by: &str,
        depth: usize,
    ) -> Result<(String, Vec<Platform>), ImportError> {
        let bytes = self.read_document(descriptor, named_by)?;
        let (manifest, media_type) =
            manifest::parse(&bytes, &descriptor.media_type).map_err(|source| {
                ImportError::Manifest {
                    digest: descriptor.digest.clone(),
                    named_by: named_by.to_string(),
                    source,
                }
            })?;
        let platforms = match manifest {
            Manifest::Index(index) => self.visit_index(descriptor, &index, depth)?,
            Manifest::Image(image) => {
                let this = format!("manifest `{}`", descriptor.digest);
                for blob in image.blobs() {
                    self.require(blob, &this)?;
                    self.plan.add(blob);
                }
                self.configs.insert(image.config.digest.clone());
                self.config_platform(&image.config).into_iter().collect()
            }
        };
        self.plan
            .add(&descriptor_with_type(descriptor, &media_type));
        Ok((media_type, platforms))
    }

    fn visit_index(
        &mut self,
        descriptor: &Descriptor,
        index: &ImageIndex,
        depth: usize,
    ) -> Result<Vec<Platform>, ImportError> {
        if depth + 1 >= MAX_DEPTH {
            return Err(ImportError::TooDeep {
                digest: descriptor.digest.clone(),
                limit: MAX_DEPTH,
            });
        }
        let this = format!("index `{}`", descriptor.digest);
        let mut platforms = Vec::new();
        let mut held = 0;
        for child in &index.manifests {
            if !self.is_present(child) {
                tracing::debug!(
                    "{this}: `{}` ({}) is not in the archive; leaving it out",
                    child.digest,
                    child
                        .platform
                        .as_ref()
                        .map_or("no platform".to_string(), Platform::to_string)
                );
                continue;
            }
            let (_, child_platforms) = self.visit(child, &this, depth + 1)?;
            held += 1;
            if child.attests().is_none() {
                match &child.platform {
                    Some(platform) => platforms.push(platform.normalize()),
                    None => platforms.extend(child_platforms),
                }
            }
        }
        if held == 0 {
            return Err(ImportError::EmptyIndex {
                digest: descriptor.digest.clone(),
                count: index.manifests.len(),
            });
        }
        Ok(platforms)
    }

    /// Returns the platform an image's config names, when it is readable.
    fn config_platform(&self, config: &Descriptor) -> Option<Platform> {
        let bytes = self.read_document(config, "").ok()?;
        serde_json::from_slice::<ImageConfig>(&bytes)
            .ok()?
            .platform()
    }

    fn is_present(&self, descriptor: &Descriptor) -> bool {
        self.contents.staged(&descriptor.digest).is_some() || self.store.has_blob(descriptor)
    }

    /// Checks that a blob is in the archive or the cache, at its size.
    fn require(&self, descriptor: &Descriptor, named_by: &str) -> Result<(), ImportError> {
        if let Some(blob) = self.contents.staged(&descriptor.digest) {
            if blob.size_bytes() != descriptor.size {
                return Err(ImportError::SizeMismatch {
                    digest: descriptor.digest.clone(),
                    named_by: named_by.to_string(),
                    expected: descriptor.size,
                    actual: blob.size_bytes(),
                });
            }
            return Ok(());
        }
        if self.store.has_blob(descriptor) {
            return Ok(());
        }
        Err(ImportError::MissingBlob {
            digest: descriptor.digest.clone(),
            named_by: named_by.to_string(),
            entry: entry::blob_path(&descriptor.digest),
        })
    }

    /// Reads a manifest, index or config, from the archive or the cache.
    fn read_document(
        &self,
        descriptor: &Descriptor,
        named_by: &str,
    ) -> Result<Vec<u8>, ImportError> {
        self.require(descriptor, named_by)?;
        let path = entry::blob_path(&descriptor.digest);
        if descriptor.size > MAX_MANIFEST_BYTES {
            return Err(ImportError::Oversized {
                entry: path,
                size: descriptor.size,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        match self.contents.staged(&descriptor.digest) {
            Some(blob) => scan::read_staged(blob, &path),
            None => Ok(self.store.read_blob(descriptor)?),
        }
    }
}

/// Returns a descriptor for the plan, with the media type the document
/// itself declares when the archive's descriptor left it out.
fn descriptor_with_type(original: &Descriptor, media_type: &str) -> Descriptor {
    descriptor(media_type, &original.digest, original.size)
}
