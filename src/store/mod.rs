//! The cache directory: an OCI image layout (image-spec, image-layout.md)
//! shared with LinuxKit.
//!
//! ```text
//! oci-layout            {"imageLayoutVersion": "1.0.0"}
//! index.json            one descriptor per cached name
//! blobs/<alg>/<hex>     content-addressed, immutable
//! .lock                 the write lock shared with LinuxKit
//! .lkcache/ingest/      lkcache's temporary files
//! .lkcache/sweep.lock   keeps garbage collection off unnamed new blobs
//! ```
//!
//! The store keeps the design's invariants: `index.json` is only ever
//! replaced whole (written beside, synced, renamed); a blob appears under its
//! digest only after its bytes were hashed and matched; and every
//! read-modify-write of `index.json` happens under the cache lock, which is
//! held for nothing else.

mod blob;
mod gc;
mod graph;
mod image;
mod index;
pub mod ingest;
mod lock;
mod verify;

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use blob::{BlobWriter, Mismatch};
pub use gc::Sweep;
pub use graph::{Holding, Reached, Role};
pub use image::{CachedImage, Image, PlatformEntry};
pub use lock::{FileLock, LockMode};
pub use verify::{Fault, Problem};

use crate::digest::Digest;
use crate::manifest::{self, Descriptor, ManifestError};

const OCI_LAYOUT: &str = "oci-layout";
const OCI_LAYOUT_CONTENT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
const INDEX_JSON: &str = "index.json";
const LOCK: &str = ".lock";
const PRIVATE: &str = ".lkcache";
const INGEST: &str = ".lkcache/ingest";
const SWEEP_LOCK: &str = "sweep.lock";

/// What went wrong with the cache directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error("cannot {action} `{}`: {source}{}", path.display(), io_hint(source))]
    Io {
        /// What was being done, as a verb phrase.
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// `index.json` is not a valid OCI index.
    #[error(
        "`{}` is not a valid OCI image index; it was left untouched: \
         repair it, or move it aside to start an empty cache",
        path.display()
    )]
    InvalidIndex {
        /// The path of `index.json`.
        path: PathBuf,
        /// What the JSON parser found.
        #[source]
        source: serde_json::Error,
    },
    /// The directory is not an OCI layout lkcache can use.
    #[error("`{}` is not an OCI image layout: {reason}", path.display())]
    InvalidLayout {
        /// The cache directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Content does not match its descriptor.
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
    /// A blob the cache should hold is absent.
    #[error("blob `{0}` is missing from the cache")]
    MissingBlob(Digest),
    /// A stored manifest cannot be used.
    #[error("manifest `{digest}` in the cache cannot be read")]
    Manifest {
        /// The manifest's digest.
        digest: Digest,
        /// Why.
        #[source]
        source: ManifestError,
    },
    /// A stored config is not valid JSON.
    #[error("config `{digest}` in the cache is not a valid image config")]
    Config {
        /// The config's digest.
        digest: Digest,
        /// What the JSON parser found.
        #[source]
        source: serde_json::Error,
    },
    /// A sweep found a name whose content it cannot read.
    #[error(
        "cannot collect garbage: the content of `{name}` cannot be read, so what it uses is \
         unknown; run `lkcache verify --repair` or remove the name first"
    )]
    Unsweepable {
        /// The name whose content is broken.
        name: String,
        /// What is wrong with it.
        #[source]
        source: Box<StoreError>,
    },
    /// No image of that name is cached.
    #[error("`{0}` is not in the cache; pull it first")]
    NotCached(String),
    /// The image is cached, but not for the platform asked for.
    #[error("`{name}` is cached, but not for {platform} (cached: {available})")]
    PlatformNotCached {
        /// The image name.
        name: String,
        /// The platform asked for.
        platform: String,
        /// The platforms the cache holds completely.
        available: String,
    },
}

impl StoreError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

fn io_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            "; make the cache directory writable, or choose another with --cache"
        }
        io::ErrorKind::StorageFull => "; free some space, or choose another cache with --cache",
        _ => "",
    }
}

/// An image cache in an OCI image layout.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the cache at `root`, creating an empty layout there if the
    /// directory is new. An existing `index.json` is checked, never
    /// replaced: a broken one is reported, and the cache is left as it is.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let store = Store { root: root.into() };
        if store.root.join(INDEX_JSON).exists() {
            store.check_layout()?;
        } else {
            store.create_layout()?;
        }
        Ok(store)
    }

    /// Returns the default cache directory, `~/.linuxkit/cache`, shared
    /// with LinuxKit; `None` when there is no home directory.
    pub fn default_root() -> Option<PathBuf> {
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
        Some(PathBuf::from(home).join(".linuxkit").join("cache"))
    }

    /// Returns the cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Returns where the blob `digest` lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    /// Tells whether the blob is present with the size its descriptor
    /// gives. Content is hashed when it lands, so presence is enough here;
    /// `verify` re-hashes.
    pub fn has_blob(&self, descriptor: &Descriptor) -> bool {
        fs::metadata(self.blob_path(&descriptor.digest))
            .is_ok_and(|meta| meta.is_file() && meta.len() == descriptor.size)
    }

    /// Returns the bytes all files under `blobs/` take, reachable or not.
    pub fn blobs_size_bytes(&self) -> Result<u64, StoreError> {
        let blobs = self.root.join("blobs");
        let mut total = 0;
        let algorithms = fs::read_dir(&blobs).map_err(|e| StoreError::io("read", &blobs, e))?;
        for algorithm in algorithms {
            let dir = algorithm
                .map_err(|e| StoreError::io("read", &blobs, e))?
                .path();
            let entries = fs::read_dir(&dir).map_err(|e| StoreError::io("read", &dir, e))?;
            for entry in entries.flatten() {
                total += entry.metadata().map_or(0, |m| m.len());
            }
        }
        Ok(total)
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::MissingBlob(digest.clone()),
            _ => StoreError::io("open", &path, e),
        })
    }

    /// Reads a small blob (a manifest or config) whole, checking its size
    /// and digest, since what is read here decides what else is trusted.
    pub fn read_blob(&self, descriptor: &Descriptor) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(&descriptor.digest);
        let mut bytes =
            Vec::with_capacity(descriptor.size.min(manifest::MAX_MANIFEST_BYTES) as usize);
        self.open_blob(&descriptor.digest)?
            .take(descriptor.size + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| StoreError::io("read", &path, e))?;
        let mut hasher = crate::digest::Hasher::new(descriptor.digest.algorithm());
        hasher.update(&bytes);
        blob::check(descriptor, hasher)?;
        Ok(bytes)
    }

    /// Starts writing the blob `descriptor` names; nothing lands under its
    /// digest until [`BlobWriter::commit`] has checked it.
    pub fn begin_blob(&self, descriptor: &Descriptor) -> Result<BlobWriter, StoreError> {
        let final_path = self.blob_path(&descriptor.digest);
        let blob_dir = final_path.parent().unwrap_or(&self.root);
        fs::create_dir_all(blob_dir).map_err(|e| StoreError::io("create", blob_dir, e))?;
        let ingest = self.root.join(INGEST);
        fs::create_dir_all(&ingest).map_err(|e| StoreError::io("create", &ingest, e))?;
        BlobWriter::create(&ingest, final_path, descriptor)
    }

    /// Stores a blob held in memory, checking it against its descriptor.
    pub fn write_blob(&self, descriptor: &Descriptor, bytes: &[u8]) -> Result<(), StoreError> {
        let mut writer = self.begin_blob(descriptor)?;
        io::Write::write_all(&mut writer, bytes)
            .map_err(|e| StoreError::io("write", &self.root.join(INGEST), e))?;
        writer.commit()
    }

    /// Takes the lock on `index.json`, waiting for other writers
    /// (lkcache's and LinuxKit's). Hold it only around a read-modify-write
    /// of `index.json`.
    pub fn lock(&self) -> Result<FileLock, StoreError> {
        let path = self.root.join(LOCK);
        FileLock::acquire(&path, LockMode::Exclusive, "the cache lock")
            .map_err(|e| StoreError::io("lock", &path, e))
    }

    /// Declares that this process is about to write blobs that no name
    /// reaches yet: no garbage collection sweeps while the guard lives. Hold
    /// it from the first blob written until the name is in `index.json`.
    pub fn write_guard(&self) -> Result<FileLock, StoreError> {
        self.sweep_lock(LockMode::Shared, "a garbage collection to finish")
    }

    /// Waits until no pull or import is between writing blobs and naming
    /// them, and keeps new ones from starting, for the length of a sweep.
    pub fn sweep_guard(&self) -> Result<FileLock, StoreError> {
        self.sweep_lock(LockMode::Exclusive, "pulls and imports in flight to finish")
    }

    fn sweep_lock(&self, mode: LockMode, waiting_for: &str) -> Result<FileLock, StoreError> {
        let dir = self.root.join(PRIVATE);
        fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
        let path = dir.join(SWEEP_LOCK);
        FileLock::acquire(&path, mode, waiting_for).map_err(|e| StoreError::io("lock", &path, e))
    }

    fn check_layout(&self) -> Result<(), StoreError> {
        let layout_path = self.root.join(OCI_LAYOUT);
        let Ok(text) = fs::read_to_string(&layout_path) else {
            // LinuxKit's older caches lack the file; they are layouts still.
            return Ok(());
        };
        let version = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("imageLayoutVersion")?.as_str().map(str::to_string));
        match version.as_deref() {
            Some(v) if v.starts_with("1.") => self.check_index(),
            _ => Err(StoreError::InvalidLayout {
                path: self.root.clone(),
                reason: format!("`{OCI_LAYOUT}` does not declare layout version 1.x"),
            }),
        }
    }

    fn create_layout(&self) -> Result<(), StoreError> {
        fs::create_dir_all(&self.root).map_err(|e| StoreError::io("create", &self.root, e))?;
        let lock = self.lock()?;
        if self.root.join(INDEX_JSON).exists() {
            // Another process created it while this one waited. The check
            // may wait for the lock itself (see `read_index`), so let go.
            drop(lock);
            return self.check_layout();
        }
        let blobs = self.root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(|e| StoreError::io("create", &blobs, e))?;
        index::write_atomically(&self.root.join(OCI_LAYOUT), OCI_LAYOUT_CONTENT.as_bytes())?;
        self.write_index(&index::empty())
    }
}
