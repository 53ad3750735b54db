//! Pulling images into the cache, cache first.
//!
//! For each image: when the cache holds the name and every wanted platform
//! completely, nothing touches the network. Otherwise the root document is
//! fetched from the registry; for an index, only the wanted platforms'
//! manifests (and the attestations that describe them) are followed; the
//! blobs the cache lacks are downloaded in parallel; and content is stored
//! bottom-up: layers and configs, then platform manifests, then the root,
//! and the name in `index.json` last (design invariant 3).

mod download;

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::digest::Digest;
use crate::manifest::{Descriptor, ImageConfig, ImageIndex, ImageManifest, Manifest};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::{Client, FetchedManifest, RegistryError};
use crate::store::{CachedImage, FileLock, Mismatch, Store, StoreError};

pub use download::Transferred;

/// The number of blobs downloaded at once unless told otherwise.
pub const DEFAULT_PARALLEL_BLOBS: usize = 4;

/// The number of images whose pulls run at once.
pub const MAX_PARALLEL_IMAGES: usize = 8;

/// The largest config lkcache reads into memory to check its platform.
const MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The registry could not serve what was needed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The cache could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index has no manifest for a wanted platform.
    #[error(
        "`{reference}` has no image for {wanted} (it has: {available}); choose one with --platform"
    )]
    PlatformMissing {
        /// The full reference.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms the index offers.
        available: String,
    },
    /// A single-platform image for another platform than the one asked for.
    #[error(
        "`{reference}` is an image for {actual}, not for {wanted}; ask for --platform {actual}"
    )]
    PlatformMismatch {
        /// The full reference.
        reference: String,
        /// The platform(s) asked for.
        wanted: String,
        /// The platform the image's config names.
        actual: String,
    },
    /// An index entry that is not an image manifest.
    #[error("`{reference}` names `{digest}` as a platform image, but it is not an image manifest")]
    NotAnImage {
        /// The full reference.
        reference: String,
        /// The entry's digest.
        digest: Digest,
    },
    /// A manifest the index names whose size differs from the index entry.
    #[error("manifest `{digest}` of `{reference}` is {actual} bytes, the index says {expected}")]
    ManifestSize {
        /// The full reference.
        reference: String,
        /// The manifest's digest.
        digest: Digest,
        /// The size the index gives.
        expected: u64,
        /// The size served.
        actual: u64,
    },
    /// A blob's bytes do not match its descriptor.
    #[error(
        "a blob of `{reference}` does not match its descriptor; nothing was stored under its digest"
    )]
    BlobContent {
        /// The full reference.
        reference: String,
        /// How it differs.
        #[source]
        source: Mismatch,
    },
    /// A blob's download broke off.
    #[error("downloading blob `{digest}` of `{reference}` failed")]
    BlobRead {
        /// The full reference.
        reference: String,
        /// The blob's digest.
        digest: Digest,
        /// The transport's error.
        #[source]
        source: std::io::Error,
    },
    /// A config larger than lkcache reads.
    #[error(
        "the config of `{reference}` is {size_bytes} bytes, more than the limit of {MAX_CONFIG_BYTES}"
    )]
    ConfigTooLarge {
        /// The full reference.
        reference: String,
        /// The size its descriptor gives.
        size_bytes: u64,
    },
    /// A config that is not valid JSON.
    #[error("the config `{digest}` of `{reference}` is not a valid image config")]
    Config {
        /// The full reference.
        reference: String,
        /// The config's digest.
        digest: Digest,
        /// What the JSON parser found.
        #[source]
        source: serde_json::Error,
    },
}

/// Which platforms to pull, and how.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platforms wanted; empty means the host's.
    pub platforms: Vec<Platform>,
    /// Pull every platform an index names.
    pub all_platforms: bool,
    /// Ask the registry even when the cache holds the image (`--pull`).
    pub force: bool,
    /// How many blobs to download at once.
    pub parallel_blobs: usize,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            platforms: Vec::new(),
            all_platforms: false,
            force: false,
            parallel_blobs: DEFAULT_PARALLEL_BLOBS,
        }
    }
}

/// Receives progress of blob downloads; every method defaults to nothing.
pub trait Progress: Sync {
    /// Tells that a blob download starts.
    fn blob_started(&self, _reference: &Reference, _blob: &Descriptor) {}
    /// Tells how many bytes of a blob have arrived so far.
    fn blob_advanced(&self, _reference: &Reference, _blob: &Descriptor, _bytes: u64) {}
    /// Tells that a blob download ended, well or not.
    fn blob_finished(&self, _reference: &Reference, _blob: &Descriptor, _is_ok: bool) {}
}

/// A [`Progress`] that ignores everything.
pub struct NoProgress;

impl Progress for NoProgress {}

/// What a pull did for one image.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The name the image is cached under.
    pub name: String,
    /// The root descriptor recorded in `index.json`.
    pub root: Descriptor,
    /// The platforms now held for this pull.
    pub platforms: Vec<Platform>,
    /// Whether the registry was asked at all.
    pub contacted_registry: bool,
    /// What was downloaded.
    pub transferred: Transferred,
}

/// An image whose content is in the cache, to be named.
struct Stored {
    report: PullReport,
    /// Held from the first blob written until the name is recorded, so
    /// that no sweep removes the unnamed content; `None` for a cache hit,
    /// which wrote nothing.
    guard: Option<FileLock>,
}

/// Pulls images into a store.
pub struct Puller<'a> {
    store: &'a Store,
    client: &'a Client,
    options: PullOptions,
    wanted: Vec<Platform>,
    progress: &'a dyn Progress,
    downloader: download::Downloader,
}

impl<'a> Puller<'a> {
    /// Prepares to pull into `store` from the registries `client` reaches.
    pub fn new(
        store: &'a Store,
        client: &'a Client,
        options: PullOptions,
        progress: &'a dyn Progress,
    ) -> Puller<'a> {
        let wanted = if options.platforms.is_empty() {
            vec![Platform::host()]
        } else {
            options.platforms.iter().map(Platform::normalize).collect()
        };
        Puller {
            store,
            client,
            downloader: download::Downloader::new(options.parallel_blobs),
            options,
            wanted,
            progress,
        }
    }

    /// Pulls several images at once; their downloads share the bound on
    /// blobs in flight, and at most [`MAX_PARALLEL_IMAGES`] talk to
    /// registries at a time. The names are recorded together once every
    /// image is stored, in one change of `index.json`. Results come in the
    /// order of `references`.
    pub fn pull_all(&self, references: &[Reference]) -> Vec<Result<PullReport, PullError>> {
        if let [reference] = references {
            // The common case, often a cache hit of a few hundred
            // microseconds: not worth a thread.
            return vec![self.pull(reference)];
        }
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<Stored, PullError>>>> =
            Mutex::new(references.iter().map(|_| None).collect());
        let workers = references.len().min(MAX_PARALLEL_IMAGES);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let position = next.fetch_add(1, Ordering::Relaxed);
                        let Some(reference) = references.get(position) else {
                            break;
                        };
                        let result = self.store_content(reference, &reference.to_string());
                        results.lock().expect("lock poisoned")[position] = Some(result);
                    }
                });
            }
        });
        let results: Vec<Result<Stored, PullError>> = results
            .into_inner()
            .expect("lock poisoned")
            .into_iter()
            .map(|result| result.expect("every reference was pulled"))
            .collect();
        let stored: Vec<&Stored> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        if self.record(&stored).is_ok() {
            return results.into_iter().map(|r| r.map(|s| s.report)).collect();
        }
        // Name them one by one, so that each image reports its own failure.
        results
            .into_iter()
            .map(|result| self.name(result?))
            .collect()
    }

    /// Pulls one image, from the cache when it holds all that is wanted.
    pub fn pull(&self, reference: &Reference) -> Result<PullReport, PullError> {
        self.pull_as(reference, &reference.to_string())
    }

    /// Pulls what `reference` names and records it under `name`: a repair
    /// fetches a name's content by the digest the cache recorded.
    pub fn pull_as(&self, reference: &Reference, name: &str) -> Result<PullReport, PullError> {
        self.name(self.store_content(reference, name)?)
    }

    /// Records the name of one stored image.
    fn name(&self, stored: Stored) -> Result<PullReport, PullError> {
        self.record(&[&stored])?;
        Ok(stored.report)
    }

    /// Records the names of images stored from a registry; cache hits are
    /// named already.
    fn record(&self, stored: &[&Stored]) -> Result<(), StoreError> {
        let entries: Vec<(Option<&str>, &Descriptor)> = stored
            .iter()
            .filter(|s| s.guard.is_some())
            .map(|s| (Some(s.report.name.as_str()), &s.report.root))
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        self.store.record(&entries)
    }

    /// Makes the cache hold what the image needs: nothing to do when it
    /// holds all that is wanted, else the blobs and documents the registry
    /// serves, stored bottom-up. Recording the name is the caller's part.
    fn store_content(&self, reference: &Reference, name: &str) -> Result<Stored, PullError> {
        if !self.options.force
            && let Some(report) = self.cached_report(name)?
        {
            tracing::debug!("{name}: cache hit, not asking the registry");
            return Ok(Stored {
                report,
                guard: None,
            });
        }
        let root = self.client.fetch_manifest(reference)?;
        let guard = self.store.write_guard()?;
        let (platforms, transferred) = match &root.manifest {
            Manifest::Index(index) => self.store_index(reference, index)?,
            Manifest::Image(image) => self.store_image(reference, &root.digest, image)?,
        };
        let descriptor = root.descriptor();
        if !self.store.has_blob(&descriptor) {
            self.store.write_blob(&descriptor, &root.bytes)?;
        }
        Ok(Stored {
            report: PullReport {
                name: name.to_string(),
                root: descriptor,
                platforms,
                contacted_registry: true,
                transferred,
            },
            guard: Some(guard),
        })
    }

    /// Answers from the cache alone, or `None` when the registry is needed.
    fn cached_report(&self, name: &str) -> Result<Option<PullReport>, PullError> {
        let cached = match self.store.cached(name) {
            Ok(Some(cached)) => cached,
            Ok(None) | Err(StoreError::MissingBlob(_)) => return Ok(None),
            Err(other) => return Err(other.into()),
        };
        let Some(platforms) = self.held_platforms(&cached)? else {
            return Ok(None);
        };
        Ok(Some(PullReport {
            name: cached.name,
            root: cached.root,
            platforms,
            contacted_registry: false,
            transferred: Transferred::default(),
        }))
    }

    /// Returns the platforms served from the cache, or `None` when some
    /// wanted platform is missing or incomplete.
    fn held_platforms(&self, cached: &CachedImage) -> Result<Option<Vec<Platform>>, PullError> {
        let entries = cached.platforms(self.store)?;
        if self.options.all_platforms {
            let all_complete = entries.iter().all(|e| e.is_complete);
            return Ok(
                all_complete.then(|| entries.into_iter().filter_map(|e| e.platform).collect())
            );
        }
        if let Manifest::Image(_) = cached.manifest {
            let entry = &entries[0];
            let fits = entry
                .platform
                .as_ref()
                .is_none_or(|p| self.wanted.iter().any(|w| w.is_compatible(p)));
            return Ok(
                (entry.is_complete && fits).then(|| entry.platform.iter().cloned().collect())
            );
        }
        let mut held = Vec::new();
        for wanted in &self.wanted {
            let platforms = entries.iter().filter_map(|e| e.platform.as_ref());
            let Some(best) = wanted.select(platforms) else {
                return Ok(None);
            };
            let Some(entry) = entries.iter().find(|e| e.platform.as_ref() == Some(best)) else {
                return Ok(None);
            };
            if !entry.is_complete {
                return Ok(None);
            }
            held.push(best.clone());
        }
        Ok(Some(held))
    }

    /// Stores the wanted platforms of an index: their blobs, then their
    /// manifests. The caller stores the index itself afterwards.
    fn store_index(
        &self,
        reference: &Reference,
        index: &ImageIndex,
    ) -> Result<(Vec<Platform>, Transferred), PullError> {
        let chosen = self.choose_platforms(reference, index)?;
        let mut children: Vec<&Descriptor> = Vec::new();
        for descriptor in &chosen {
            children.push(descriptor);
            children.extend(index.attestations_of(&descriptor.digest));
        }

        let mut manifests = Vec::new();
        for child in children {
            manifests.push(self.child_manifest(reference, child)?);
        }
        let blobs: Vec<Descriptor> = manifests
            .iter()
            .flat_map(|(_, image, _)| image.blobs().cloned())
            .collect();
        let transferred = self.downloader.fetch_missing(
            self.store,
            self.client,
            reference,
            &blobs,
            self.progress,
        )?;
        for (descriptor, _, bytes) in &manifests {
            if let Some(bytes) = bytes {
                self.store.write_blob(descriptor, bytes)?;
            }
        }
        let platforms = chosen
            .iter()
            .filter_map(|d| d.platform.as_ref().map(Platform::normalize))
            .collect();
        Ok((platforms, transferred))
    }

    /// Picks the index entries that serve the wanted platforms.
    fn choose_platforms<'i>(
        &self,
        reference: &Reference,
        index: &'i ImageIndex,
    ) -> Result<Vec<&'i Descriptor>, PullError> {
        if self.options.all_platforms {
            return Ok(index.platform_manifests().collect());
        }
        let mut chosen: Vec<&Descriptor> = Vec::new();
        let mut seen = HashSet::new();
        for wanted in &self.wanted {
            let candidates = index
                .platform_manifests()
                .filter_map(|d| d.platform.as_ref());
            let Some(best) = wanted.select(candidates) else {
                return Err(PullError::PlatformMissing {
                    reference: reference.to_string(),
                    wanted: wanted.to_string(),
                    available: describe_index_platforms(index),
                });
            };
            let entry = index
                .platform_manifests()
                .find(|d| d.platform.as_ref() == Some(best))
                .expect("select returns one of the candidates");
            if seen.insert(entry.digest.clone()) {
                chosen.push(entry);
            }
        }
        Ok(chosen)
    }

    /// Reads a platform manifest from the cache, or fetches it; returns
    /// the bytes still to be stored when it was fetched.
    fn child_manifest(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
    ) -> Result<(Descriptor, ImageManifest, Option<Vec<u8>>), PullError> {
        let not_an_image = || PullError::NotAnImage {
            reference: reference.to_string(),
            digest: descriptor.digest.clone(),
        };
        if self.store.has_blob(descriptor) {
            let Manifest::Image(image) = self.store.read_manifest(descriptor)? else {
                return Err(not_an_image());
            };
            return Ok((descriptor.clone(), *image, None));
        }
        let fetched = self
            .client
            .fetch_manifest(&reference.with_digest(descriptor.digest.clone()))?;
        check_size(reference, descriptor, &fetched)?;
        let Manifest::Image(image) = fetched.manifest else {
            return Err(not_an_image());
        };
        Ok((descriptor.clone(), *image, Some(fetched.bytes)))
    }

    /// Stores a single-platform image's blobs, after checking that its
    /// config names a wanted platform.
    fn store_image(
        &self,
        reference: &Reference,
        digest: &Digest,
        image: &ImageManifest,
    ) -> Result<(Vec<Platform>, Transferred), PullError> {
        let (config, config_transferred) = self.fetch_config(reference, image)?;
        let platform = config.platform();
        if let Some(actual) = platform.as_ref().filter(|_| !self.options.all_platforms)
            && !self.wanted.iter().any(|w| w.is_compatible(actual))
        {
            return Err(PullError::PlatformMismatch {
                reference: reference.to_string(),
                wanted: join_platforms(&self.wanted),
                actual: actual.to_string(),
            });
        }
        tracing::debug!("{reference}: single image {digest}, platform {platform:?}");
        let mut transferred = self.downloader.fetch_missing(
            self.store,
            self.client,
            reference,
            &image.layers,
            self.progress,
        )?;
        transferred += config_transferred;
        Ok((platform.into_iter().collect(), transferred))
    }

    /// Fetches the config into the cache like any blob (resumably), then
    /// reads it: configs are small, and one above [`MAX_CONFIG_BYTES`] is
    /// refused before it is downloaded.
    fn fetch_config(
        &self,
        reference: &Reference,
        image: &ImageManifest,
    ) -> Result<(ImageConfig, Transferred), PullError> {
        let descriptor = &image.config;
        if descriptor.size > MAX_CONFIG_BYTES {
            return Err(PullError::ConfigTooLarge {
                reference: reference.to_string(),
                size_bytes: descriptor.size,
            });
        }
        let transferred = self.downloader.fetch_missing(
            self.store,
            self.client,
            reference,
            std::slice::from_ref(descriptor),
            self.progress,
        )?;
        let bytes = self.store.read_blob(descriptor)?;
        let config = serde_json::from_slice(&bytes).map_err(|source| PullError::Config {
            reference: reference.to_string(),
            digest: descriptor.digest.clone(),
            source,
        })?;
        Ok((config, transferred))
    }
}

fn check_size(
    reference: &Reference,
    descriptor: &Descriptor,
    fetched: &FetchedManifest,
) -> Result<(), PullError> {
    let actual = fetched.bytes.len() as u64;
    if actual == descriptor.size {
        return Ok(());
    }
    Err(PullError::ManifestSize {
        reference: reference.to_string(),
        digest: descriptor.digest.clone(),
        expected: descriptor.size,
        actual,
    })
}

fn describe_index_platforms(index: &ImageIndex) -> String {
    let platforms: Vec<Platform> = index
        .platform_manifests()
        .filter_map(|d| d.platform.as_ref().map(Platform::normalize))
        .collect();
    if platforms.is_empty() {
        "no platforms".to_string()
    } else {
        join_platforms(&platforms)
    }
}

fn join_platforms(platforms: &[Platform]) -> String {
    platforms
        .iter()
        .map(Platform::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
