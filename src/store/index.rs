//! `index.json`: the names of the cache.
//!
//! Each entry is a descriptor of an image's root (an index or a manifest)
//! with the image's full reference in `org.opencontainers.image.ref.name`,
//! as LinuxKit writes it. The file is read without a lock: lkcache only
//! ever replaces it whole, but LinuxKit rewrites it in place under its
//! write lock, so a read that finds no valid document waits for that lock
//! (shared) and reads again before it reports the file broken. It is
//! changed only under the cache lock, by reading it again, changing it and
//! renaming a new file over it, so that concurrent writers (lkcache or
//! LinuxKit) never lose each other's names.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::manifest::{ANNOTATION_REF_NAME, Descriptor, ImageIndex};
use crate::media_type;

use super::lock::{FileLock, LockMode};
use super::{INDEX_JSON, LOCK, Store, StoreError, blob::sync_parent};

pub(super) fn empty() -> ImageIndex {
    ImageIndex {
        schema_version: 2,
        media_type: Some(media_type::OCI_INDEX.to_string()),
        manifests: Vec::new(),
        extra: serde_json::Map::new(),
    }
}

impl Store {
    /// Reads `index.json` as it is now, waiting for a writer that is
    /// rewriting it in place (LinuxKit) when it is not a valid document.
    /// Not for callers that hold the cache lock: they use
    /// [`Store::read_index_locked`].
    pub fn read_index(&self) -> Result<ImageIndex, StoreError> {
        let first = self.read_index_locked();
        if !matches!(first, Err(StoreError::InvalidIndex { .. })) {
            return first;
        }
        // A read lock waits for LinuxKit's write lock; where the lock file
        // cannot be opened (a read-only cache), the first answer stands.
        let lock_path = self.root.join(LOCK);
        let Ok(_lock) = FileLock::acquire(&lock_path, LockMode::Shared, "the cache lock") else {
            return first;
        };
        self.read_index_locked()
    }

    /// Reads `index.json` as it is now, for a caller that holds the cache
    /// lock (so no writer is halfway through it).
    pub(super) fn read_index_locked(&self) -> Result<ImageIndex, StoreError> {
        let path = self.root.join(INDEX_JSON);
        let bytes = fs::read(&path).map_err(|e| StoreError::io("read", &path, e))?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::InvalidIndex { path, source })
    }

    /// Checks that `index.json` is a JSON document, without building it:
    /// opening a cache of many names stays cheap, and a broken file is
    /// reported before a command does any work.
    pub(super) fn check_index(&self) -> Result<(), StoreError> {
        let path = self.root.join(INDEX_JSON);
        let bytes = fs::read(&path).map_err(|e| StoreError::io("read", &path, e))?;
        match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            Ok(_) => Ok(()),
            // Perhaps LinuxKit is rewriting it in place: read it properly.
            Err(_) => self.read_index().map(drop),
        }
    }

    /// Returns the descriptor cached under `name`, if any.
    pub fn lookup(&self, name: &str) -> Result<Option<Descriptor>, StoreError> {
        let index = self.read_index()?;
        Ok(index
            .manifests
            .into_iter()
            .rev()
            .find(|d| d.ref_name() == Some(name)))
    }

    /// Records `root` under `name` in `index.json`, replacing what the name
    /// pointed at before. The caller must have stored everything `root`
    /// reaches first: this makes it reachable.
    pub fn set_name(&self, name: &str, root: &Descriptor) -> Result<(), StoreError> {
        self.record(&[(Some(name), root)])
    }

    /// Records `root` in `index.json` without a name, so that an image an
    /// archive left unnamed stays reachable (and so safe from garbage
    /// collection) and can be found by its digest.
    pub fn add_unnamed(&self, root: &Descriptor) -> Result<(), StoreError> {
        self.record(&[(None, root)])
    }

    /// Records several roots in one replacement of `index.json`: each one
    /// with a name as [`Store::set_name`] does, each one without as
    /// [`Store::add_unnamed`] does. A command that names many images
    /// rewrites the file once, and a crash leaves all of them named or
    /// none.
    pub fn record(&self, entries: &[(Option<&str>, &Descriptor)]) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        let mut index = self.read_index_locked()?;
        let mut is_changed = false;
        for (name, root) in entries {
            is_changed |= match name {
                Some(name) => put_named(&mut index, name, root),
                None => put_unnamed(&mut index, root),
            };
        }
        if !is_changed {
            return Ok(());
        }
        self.write_index(&index)
    }

    pub(super) fn write_index(&self, index: &ImageIndex) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(index).expect("an index always serialises");
        write_atomically(&self.root.join(INDEX_JSON), &bytes)
    }
}

/// Points `name` at `root`; returns whether that changed anything.
fn put_named(index: &mut ImageIndex, name: &str, root: &Descriptor) -> bool {
    let mut entry = root.clone();
    entry
        .annotations
        .insert(ANNOTATION_REF_NAME.to_string(), name.to_string());
    let unchanged = index
        .manifests
        .iter()
        .filter(|d| d.ref_name() == Some(name))
        .eq([&entry]);
    if unchanged {
        return false;
    }
    index.manifests.retain(|d| d.ref_name() != Some(name));
    index.manifests.push(entry);
    true
}

/// Adds `root` without a name unless it is there already; returns whether
/// it was added.
fn put_unnamed(index: &mut ImageIndex, root: &Descriptor) -> bool {
    let mut entry = root.clone();
    entry.annotations.remove(ANNOTATION_REF_NAME);
    if index
        .manifests
        .iter()
        .any(|d| d.digest == entry.digest && d.ref_name().is_none())
    {
        return false;
    }
    index.manifests.push(entry);
    true
}

/// Replaces the file at `path` with `bytes`, so that a reader sees either
/// the old file or the new one, whole, whenever the writer stops.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = path.with_file_name(format!(
        ".{file_name}.{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_synced(&temp, bytes)
        .map_err(|e| StoreError::io("write", &temp, e))
        .and_then(|()| fs::rename(&temp, path).map_err(|e| StoreError::io("replace", path, e)));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;
    sync_parent(path)
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(content: &[u8]) -> Descriptor {
        Descriptor::of_bytes(media_type::OCI_MANIFEST, content)
    }

    #[test]
    fn replaces_a_name_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .set_name("docker.io/library/a:1", &descriptor(b"a1"))
            .unwrap();
        store
            .set_name("docker.io/library/b:1", &descriptor(b"b1"))
            .unwrap();
        store
            .set_name("docker.io/library/a:1", &descriptor(b"a2"))
            .unwrap();

        let index = store.read_index().unwrap();
        let names: Vec<_> = index
            .manifests
            .iter()
            .filter_map(|d| d.ref_name())
            .collect();
        assert_eq!(names, ["docker.io/library/b:1", "docker.io/library/a:1"]);
        let a = store.lookup("docker.io/library/a:1").unwrap().unwrap();
        assert_eq!(a.digest, descriptor(b"a2").digest);
    }

    #[test]
    fn records_several_roots_in_one_replacement_and_none_when_unchanged() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .set_name("docker.io/library/a:1", &descriptor(b"old"))
            .unwrap();
        let (a, b, loose) = (descriptor(b"a"), descriptor(b"b"), descriptor(b"loose"));
        let entries = [
            (Some("docker.io/library/a:1"), &a),
            (Some("docker.io/library/b:1"), &b),
            (None, &loose),
        ];
        let inode = || fs::metadata(dir.path().join(INDEX_JSON)).unwrap().ino();

        let before = inode();
        store.record(&entries).unwrap();
        let after = inode();
        store.record(&entries).unwrap();

        assert_ne!(before, after, "replaced by a rename");
        assert_eq!(inode(), after, "nothing to change, nothing written");
        let index = store.read_index().unwrap();
        let recorded: Vec<_> = index
            .manifests
            .iter()
            .map(|d| (d.ref_name(), &d.digest))
            .collect();
        assert_eq!(
            recorded,
            [
                (Some("docker.io/library/a:1"), &a.digest),
                (Some("docker.io/library/b:1"), &b.digest),
                (None, &loose.digest),
            ]
        );
    }

    #[test]
    fn refuses_a_broken_index_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap();
        fs::write(dir.path().join(INDEX_JSON), b"{not json").unwrap();

        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::InvalidIndex { .. }), "{err}");
        assert_eq!(fs::read(dir.path().join(INDEX_JSON)).unwrap(), b"{not json");
    }

    #[test]
    fn leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .set_name("docker.io/library/a:1", &descriptor(b"a1"))
            .unwrap();
        let stray: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    }
}
