//! Verification: re-hash what names reach and check that every manifest the
//! cache holds has its config and layers (design invariants 2 and 3).
//!
//! An index's other platforms are absent by design and are not problems;
//! a present manifest without its content, a missing root, or a blob whose
//! bytes no longer match its digest are. Each blob is hashed once however
//! many names share it, in parallel across blobs, since one hash runs on
//! one core.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Mutex;

use crate::digest::{Digest, Hasher};
use crate::manifest::Descriptor;
use crate::platform::Platform;

use super::graph::{Holding, Reached, Role};
use super::{Mismatch, Store, StoreError};

const CHUNK_BYTES: usize = 1024 * 1024;

/// What is wrong with one blob of one name.
#[derive(Debug)]
pub struct Problem {
    /// The name affected.
    pub name: String,
    /// The platform affected, where it is known.
    pub platform: Option<Platform>,
    /// What the blob is to the image.
    pub role: Role,
    /// The blob's descriptor.
    pub descriptor: Descriptor,
    /// What is wrong.
    pub fault: Fault,
}

/// How a blob is wrong.
#[derive(Debug)]
pub enum Fault {
    /// It should be present and is not.
    Missing,
    /// Its bytes do not match its descriptor.
    Corrupt(Mismatch),
    /// It cannot be read or parsed.
    Unreadable(StoreError),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let role = match self.role {
            Role::Index => "index",
            Role::Manifest => "manifest",
            Role::Config => "config",
            Role::Layer => "layer",
        };
        write!(f, "{}", self.name)?;
        if let Some(platform) = &self.platform {
            write!(f, " ({platform})")?;
        }
        write!(f, ": {role} `{}` ", self.descriptor.digest)?;
        match &self.fault {
            Fault::Missing => write!(f, "is missing"),
            Fault::Corrupt(mismatch) => write!(f, "is corrupt: {mismatch}"),
            Fault::Unreadable(err) => write!(f, "cannot be read: {}", error_chain(err)),
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Store {
    /// Verifies the images cached under `names`, or under every name when
    /// `names` is empty; returns the problems found, none when sound.
    pub fn verify(&self, names: &[String]) -> Result<Vec<Problem>, StoreError> {
        let index = self.read_index()?;
        let mut roots: Vec<(String, Descriptor)> = Vec::new();
        for root in &index.manifests {
            let name = root.ref_name().unwrap_or("(unnamed)").to_string();
            if names.is_empty() || names.contains(&name) {
                roots.push((name, root.clone()));
            }
        }
        if let Some(absent) = names
            .iter()
            .find(|n| !roots.iter().any(|(name, _)| name == *n))
        {
            return Err(StoreError::NotCached(absent.clone()));
        }

        let reached: Vec<(String, Vec<Reached>)> = roots
            .iter()
            .map(|(name, root)| (name.clone(), self.reach(root)))
            .collect();
        let hashed = self.hash_all(reached.iter().flat_map(|(_, r)| r.iter()));
        let mut problems = Vec::new();
        for (name, blobs) in reached {
            for (position, mut blob) in blobs.into_iter().enumerate() {
                let is_root = position == 0;
                if let Some(fault) = judge(&mut blob, is_root, &hashed) {
                    problems.push(Problem {
                        name: name.clone(),
                        platform: blob.platform,
                        role: blob.role,
                        descriptor: blob.descriptor,
                        fault,
                    });
                }
            }
        }
        Ok(problems)
    }

    /// Re-hashes every present config and layer, each once, on all cores.
    fn hash_all<'a>(
        &self,
        reached: impl Iterator<Item = &'a Reached>,
    ) -> HashMap<Digest, Option<Mismatch>> {
        let mut unique: BTreeMap<Digest, &Descriptor> = BTreeMap::new();
        for blob in reached {
            let is_content = matches!(blob.role, Role::Config | Role::Layer);
            if is_content && matches!(blob.holding, Holding::Present) {
                unique.insert(blob.descriptor.digest.clone(), &blob.descriptor);
            }
        }
        let queue = Mutex::new(unique.into_values().collect::<Vec<_>>());
        let results = Mutex::new(HashMap::new());
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    while let Some(descriptor) = queue.lock().expect("lock poisoned").pop() {
                        let outcome = self.check_blob(descriptor);
                        results
                            .lock()
                            .expect("lock poisoned")
                            .insert(descriptor.digest.clone(), outcome);
                    }
                });
            }
        });
        results.into_inner().expect("lock poisoned")
    }

    /// Hashes one blob; returns how it differs from its descriptor, if it
    /// does. A blob that vanished meanwhile counts as zero bytes.
    fn check_blob(&self, descriptor: &Descriptor) -> Option<Mismatch> {
        let mut hasher = Hasher::new(descriptor.digest.algorithm());
        if let Ok(mut file) = self.open_blob(&descriptor.digest) {
            let mut buffer = vec![0u8; CHUNK_BYTES];
            while let Ok(read @ 1..) = file.read(&mut buffer) {
                hasher.update(&buffer[..read]);
            }
        }
        super::blob::check(descriptor, hasher).err()
    }
}

/// Decides whether a reached blob is a problem.
fn judge(
    blob: &mut Reached,
    is_root: bool,
    hashed: &HashMap<Digest, Option<Mismatch>>,
) -> Option<Fault> {
    let holding = std::mem::replace(&mut blob.holding, Holding::Missing);
    match holding {
        Holding::Broken(StoreError::Mismatch(mismatch)) => Some(Fault::Corrupt(mismatch)),
        Holding::Broken(other) => Some(Fault::Unreadable(other)),
        // Indexes name platforms the cache skips on purpose.
        Holding::Missing if matches!(blob.role, Role::Index | Role::Manifest) && !is_root => None,
        Holding::Missing => Some(Fault::Missing),
        Holding::Present => hashed
            .get(&blob.descriptor.digest)
            .and_then(Option::clone)
            .map(Fault::Corrupt),
    }
}

impl Store {
    /// Moves a blob out of `blobs/` into `.lkcache/corrupt/`, so that it is
    /// fetched again and can still be examined; returns where it went.
    pub fn quarantine(&self, digest: &Digest) -> Result<std::path::PathBuf, StoreError> {
        let dir = self.root.join(super::PRIVATE).join("corrupt");
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
        let target = dir.join(format!("{}-{}", digest.algorithm().name(), digest.hex()));
        let source = self.blob_path(digest);
        std::fs::rename(&source, &target).map_err(|e| StoreError::io("move aside", &source, e))?;
        super::blob::sync_parent(&source)?;
        Ok(target)
    }
}
