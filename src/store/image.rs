//! Reading images back out of the cache: from a name to its root document,
//! from the root to the platform manifests the cache holds, and from a
//! platform manifest to its config and layers.
//!
//! A platform counts as held only when it is complete: its manifest, config
//! and every layer are present. Pulls write bottom-up, so a manifest without
//! its content is rare (a LinuxKit cache, or one changed by hand), but a
//! reader never assumes it away.

use std::fs::File;

use crate::digest::Digest;
use crate::manifest::{self, Descriptor, ImageConfig, ImageIndex, ImageManifest, Manifest};
use crate::platform::Platform;

use super::{Store, StoreError};

/// A cached name and the root document it points at.
#[derive(Debug, Clone)]
pub struct CachedImage {
    /// The full reference the image is cached under.
    pub name: String,
    /// The descriptor in `index.json`.
    pub root: Descriptor,
    /// The root document, parsed.
    pub manifest: Manifest,
}

/// One platform of a cached image, as its root names it.
#[derive(Debug, Clone)]
pub struct PlatformEntry {
    /// The platform, from the index entry or, for a single manifest, from
    /// its config; `None` when neither says.
    pub platform: Option<Platform>,
    /// The platform's manifest.
    pub descriptor: Descriptor,
    /// Whether the manifest, its config and all its layers are cached.
    pub is_complete: bool,
}

/// One platform's image, read from the cache: what a builder consumes.
#[derive(Debug, Clone)]
pub struct Image {
    /// The name the image is cached under.
    pub name: String,
    /// The image manifest's descriptor.
    pub descriptor: Descriptor,
    /// The image manifest.
    pub manifest: ImageManifest,
    /// The config's exact bytes.
    pub config_bytes: Vec<u8>,
    /// The config, parsed.
    pub config: ImageConfig,
}

impl Image {
    /// Returns the layers, base first.
    pub fn layers(&self) -> &[Descriptor] {
        &self.manifest.layers
    }

    /// Opens a layer blob for reading, compressed as stored.
    pub fn open_layer(&self, store: &Store, layer: &Descriptor) -> Result<File, StoreError> {
        store.open_blob(&layer.digest)
    }
}

impl Store {
    /// Returns the image cached under `name` (a full reference such as
    /// `docker.io/library/alpine:3.19`), or `None`.
    pub fn cached(&self, name: &str) -> Result<Option<CachedImage>, StoreError> {
        let Some(root) = self.lookup(name)? else {
            return Ok(None);
        };
        self.cached_root(name, root).map(Some)
    }

    /// Reads the root document of an `index.json` entry.
    pub fn cached_root(&self, name: &str, root: Descriptor) -> Result<CachedImage, StoreError> {
        let manifest = self.read_manifest(&root)?;
        Ok(CachedImage {
            name: name.to_string(),
            root,
            manifest,
        })
    }

    /// Reads `name`'s image for `platform`: manifest, config, and the
    /// layers' descriptors.
    pub fn image(&self, name: &str, platform: &Platform) -> Result<Image, StoreError> {
        let cached = self
            .cached(name)?
            .ok_or_else(|| StoreError::NotCached(name.to_string()))?;
        let entries = cached.platforms(self)?;
        let complete = entries.iter().filter(|e| e.is_complete);
        let Some(entry) = select(platform, complete) else {
            return Err(StoreError::PlatformNotCached {
                name: name.to_string(),
                platform: platform.to_string(),
                available: describe_platforms(&entries),
            });
        };
        self.image_at(name, &entry.descriptor)
    }

    /// Reads a manifest or index blob and parses it.
    pub fn read_manifest(&self, descriptor: &Descriptor) -> Result<Manifest, StoreError> {
        let bytes = self.read_blob(descriptor)?;
        manifest::parse(&bytes, &descriptor.media_type)
            .map(|(parsed, _)| parsed)
            .map_err(|source| StoreError::Manifest {
                digest: descriptor.digest.clone(),
                source,
            })
    }

    /// Reads the image manifest `descriptor` names, with its config, as an
    /// image of `name`.
    pub fn image_at(&self, name: &str, descriptor: &Descriptor) -> Result<Image, StoreError> {
        let Manifest::Image(manifest) = self.read_manifest(descriptor)? else {
            return Err(StoreError::Manifest {
                digest: descriptor.digest.clone(),
                source: manifest::ManifestError::UnknownMediaType(descriptor.media_type.clone()),
            });
        };
        let config_bytes = self.read_blob(&manifest.config)?;
        let config = parse_config(&manifest.config.digest, &config_bytes)?;
        Ok(Image {
            name: name.to_string(),
            descriptor: descriptor.clone(),
            manifest: *manifest,
            config_bytes,
            config,
        })
    }

    /// Tells whether an image manifest and everything it names are cached.
    pub fn is_complete(&self, descriptor: &Descriptor) -> bool {
        if !self.has_blob(descriptor) {
            return false;
        }
        match self.read_manifest(descriptor) {
            Ok(Manifest::Image(image)) => self.holds_blobs_of(&image),
            _ => false,
        }
    }

    /// Tells whether the config and every layer of a manifest are cached.
    fn holds_blobs_of(&self, image: &ImageManifest) -> bool {
        image.blobs().all(|blob| self.has_blob(blob))
    }
}

impl CachedImage {
    /// Lists the platforms the root names, each marked complete or not.
    /// Attestation entries are not platforms and are left out.
    pub fn platforms(&self, store: &Store) -> Result<Vec<PlatformEntry>, StoreError> {
        match &self.manifest {
            Manifest::Index(index) => Ok(index_platforms(store, index)),
            Manifest::Image(image) => {
                let platform = store
                    .read_blob(&image.config)
                    .ok()
                    .and_then(|bytes| parse_config(&image.config.digest, &bytes).ok())
                    .and_then(|config| config.platform());
                Ok(vec![PlatformEntry {
                    platform,
                    descriptor: self.root.clone(),
                    // The root was just read, so it is present.
                    is_complete: store.holds_blobs_of(image),
                }])
            }
        }
    }
}

fn index_platforms(store: &Store, index: &ImageIndex) -> Vec<PlatformEntry> {
    index
        .platform_manifests()
        .map(|descriptor| PlatformEntry {
            platform: descriptor.platform.as_ref().map(Platform::normalize),
            descriptor: descriptor.clone(),
            is_complete: store.is_complete(descriptor),
        })
        .collect()
}

/// Picks the entry that best serves `wanted`, as containerd would.
pub(crate) fn select<'a>(
    wanted: &Platform,
    entries: impl Iterator<Item = &'a PlatformEntry>,
) -> Option<&'a PlatformEntry> {
    let entries: Vec<&PlatformEntry> = entries.collect();
    let platforms = entries.iter().filter_map(|e| e.platform.as_ref());
    let best = wanted.select(platforms)?;
    entries
        .into_iter()
        .find(|e| e.platform.as_ref() == Some(best))
}

/// Lists platforms for a message: `linux/amd64, linux/arm64`.
pub(crate) fn describe_platforms(entries: &[PlatformEntry]) -> String {
    let names: Vec<String> = entries
        .iter()
        .filter(|e| e.is_complete)
        .map(|e| {
            e.platform
                .as_ref()
                .map_or("unknown".to_string(), Platform::to_string)
        })
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

fn parse_config(digest: &Digest, bytes: &[u8]) -> Result<ImageConfig, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Config {
        digest: digest.clone(),
        source,
    })
}
