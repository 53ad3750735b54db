//! Ingesting content whose digest is learnt only once it has streamed in:
//! a legacy Docker `layer.tar`, or any blob of an archive that has to be
//! verified whole before anything of it may land.
//!
//! An [`Ingest`] hashes what is written to it into a temporary file under
//! `<cache>/.lkcache/ingest/`, named as [`super::BlobWriter`] names its
//! files, so that garbage collection leaves it alone while this process
//! lives. [`Ingest::finish`] makes the bytes durable and returns an
//! [`IngestedBlob`]: it knows its digest and size, and still lies outside
//! `blobs/`. Only [`IngestedBlob::commit`] moves it to `blobs/<alg>/<hex>`,
//! so a caller can stage everything, check it, and then land it bottom-up
//! (design invariants 2 and 3). Dropped before that, either one removes its
//! file.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;

use crate::digest::{Algorithm, Digest, Hasher};

use super::blob::{Writeback, sync_parent, temp_path};
use super::{INGEST, Store, StoreError};

/// Content being written whose digest is not known in advance.
#[derive(Debug)]
pub struct Ingest {
    file: File,
    temp_path: PathBuf,
    algorithm: Algorithm,
    hasher: Hasher,
    writeback: Writeback,
    store: Store,
    is_finished: bool,
}

/// Content hashed and made durable in the ingest directory, not yet in
/// `blobs/`.
#[derive(Debug)]
pub struct IngestedBlob {
    temp_path: PathBuf,
    digest: Digest,
    size_bytes: u64,
    store: Store,
    is_committed: bool,
}

impl Store {
    /// Starts ingesting content of unknown digest, hashed with `algorithm`.
    pub fn begin_ingest(&self, algorithm: Algorithm) -> Result<Ingest, StoreError> {
        let ingest_dir = self.root.join(INGEST);
        fs::create_dir_all(&ingest_dir).map_err(|e| StoreError::io("create", &ingest_dir, e))?;
        let temp_path = temp_path(&ingest_dir, "ingest");
        let file = File::create(&temp_path).map_err(|e| StoreError::io("create", &temp_path, e))?;
        Ok(Ingest {
            file,
            temp_path,
            algorithm,
            hasher: Hasher::new(algorithm),
            writeback: Writeback::default(),
            store: self.clone(),
            is_finished: false,
        })
    }
}

impl Ingest {
    /// Returns how many bytes have been written so far.
    pub fn written_bytes(&self) -> u64 {
        self.hasher.len_bytes()
    }

    /// Appends `bytes`, hashing them.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.write_all(bytes)
            .map_err(|e| StoreError::io("write", &self.temp_path, e))
    }

    /// Makes the bytes durable and returns them as a blob of known digest,
    /// still outside `blobs/`.
    pub fn finish(mut self) -> Result<IngestedBlob, StoreError> {
        self.file
            .sync_all()
            .map_err(|e| StoreError::io("sync", &self.temp_path, e))?;
        let hasher = std::mem::replace(&mut self.hasher, Hasher::new(self.algorithm));
        self.is_finished = true;
        Ok(IngestedBlob {
            temp_path: std::mem::take(&mut self.temp_path),
            size_bytes: hasher.len_bytes(),
            digest: hasher.finish(),
            store: self.store.clone(),
            is_committed: false,
        })
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.writeback.advance(&self.file, self.hasher.len_bytes());
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if !self.is_finished {
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

impl IngestedBlob {
    /// Returns the digest of the content.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Returns the size of the content.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Opens the content for reading, before it is committed.
    pub fn open(&self) -> Result<File, StoreError> {
        File::open(&self.temp_path).map_err(|e| StoreError::io("open", &self.temp_path, e))
    }

    /// Moves the content to `blobs/<alg>/<hex>`. Another process may have
    /// landed the same blob meanwhile: the content is the same, so either
    /// rename wins.
    pub fn commit(mut self) -> Result<(), StoreError> {
        let final_path = self.store.blob_path(&self.digest);
        if let Some(dir) = final_path.parent() {
            fs::create_dir_all(dir).map_err(|e| StoreError::io("create", dir, e))?;
        }
        fs::rename(&self.temp_path, &final_path)
            .map_err(|e| StoreError::io("move into place", &final_path, e))?;
        self.is_committed = true;
        sync_parent(&final_path)
    }
}

impl Drop for IngestedBlob {
    fn drop(&mut self) {
        if !self.is_committed {
            // Never committed: nothing names these bytes.
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn ingest_dir_is_empty(store: &Store) -> bool {
        fs::read_dir(store.root().join(INGEST)).is_ok_and(|mut entries| entries.next().is_none())
    }

    #[test]
    fn names_content_after_hashing_and_lands_it_on_commit() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let mut ingest = store.begin_ingest(Algorithm::Sha256)?;
        ingest.append(b"legacy ")?;
        ingest.append(b"layer")?;
        let blob = ingest.finish()?;

        let digest = Digest::sha256_of(b"legacy layer");
        assert_eq!(blob.digest(), &digest);
        assert_eq!(blob.size_bytes(), 12);
        assert!(!store.blob_path(&digest).exists());
        assert_eq!(io::read_to_string(blob.open()?)?, "legacy layer");

        blob.commit()?;
        assert_eq!(fs::read(store.blob_path(&digest))?, b"legacy layer");
        assert!(ingest_dir_is_empty(&store));
        Ok(())
    }

    #[test]
    fn leaves_nothing_when_dropped_before_commit() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let mut unfinished = store.begin_ingest(Algorithm::Sha256)?;
        unfinished.append(b"half")?;
        drop(unfinished);
        let mut uncommitted = store.begin_ingest(Algorithm::Sha512)?;
        uncommitted.append(b"whole")?;
        let blob = uncommitted.finish()?;
        let digest = blob.digest().clone();
        drop(blob);

        assert!(ingest_dir_is_empty(&store));
        assert!(!store.blob_path(&digest).exists());
        Ok(())
    }
}
