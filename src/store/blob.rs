//! Writing blobs: stream into a private temporary file while hashing, and
//! move the file to `blobs/<alg>/<hex>` only once its digest and size are
//! those the descriptor promised (design invariant 2).
//!
//! Temporary files live in `<cache>/.lkcache/ingest/`, outside `blobs/`, so
//! other OCI tools never see them, and their names start with the writer's
//! process id, so that a later garbage collection can tell the files of a
//! dead process from those of a live one.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::{Digest, Hasher};
use crate::manifest::Descriptor;

use super::StoreError;

/// A blob being written; dropped without [`BlobWriter::commit`], it leaves
/// nothing behind.
#[derive(Debug)]
pub struct BlobWriter {
    file: File,
    is_committed: bool,
    temp_path: PathBuf,
    final_path: PathBuf,
    expected: Descriptor,
    hasher: Hasher,
    writeback: Writeback,
}

/// Why the bytes written do not match the descriptor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// More or fewer bytes than the descriptor's size.
    #[error("blob `{digest}` is {actual} bytes, expected {expected}")]
    Size {
        /// The digest the descriptor names.
        digest: Digest,
        /// The descriptor's size.
        expected: u64,
        /// The bytes received.
        actual: u64,
    },
    /// The bytes hash to another digest.
    #[error("blob content hashes to `{actual}`, expected `{expected}`")]
    Digest {
        /// The digest the descriptor names.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
}

impl BlobWriter {
    pub(super) fn create(
        ingest_dir: &Path,
        final_path: PathBuf,
        expected: &Descriptor,
    ) -> Result<BlobWriter, StoreError> {
        let temp_path = temp_path(ingest_dir, expected.digest.short());
        let file = File::create(&temp_path).map_err(|e| StoreError::io("create", &temp_path, e))?;
        reserve(&file, expected.size);
        Ok(BlobWriter {
            file,
            is_committed: false,
            temp_path,
            final_path,
            expected: expected.clone(),
            hasher: Hasher::new(expected.digest.algorithm()),
            writeback: Writeback::default(),
        })
    }

    /// Returns how many bytes have been written so far.
    pub fn written_bytes(&self) -> u64 {
        self.hasher.len_bytes()
    }

    /// Throws away what was written, to start the blob again from its
    /// first byte.
    pub fn restart(&mut self) -> Result<(), StoreError> {
        let reset = self
            .file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)));
        reset.map_err(|e| StoreError::io("truncate", &self.temp_path, e))?;
        self.hasher = Hasher::new(self.expected.digest.algorithm());
        self.writeback.restart();
        Ok(())
    }

    /// Checks digest and size, makes the bytes durable and moves them into
    /// place. Another process may have landed the same blob meanwhile: the
    /// content is the same, so either rename wins.
    pub fn commit(mut self) -> Result<(), StoreError> {
        let algorithm = self.expected.digest.algorithm();
        let hasher = std::mem::replace(&mut self.hasher, Hasher::new(algorithm));
        check(&self.expected, hasher)?;

        self.file
            .sync_all()
            .map_err(|e| StoreError::io("sync", &self.temp_path, e))?;
        fs::rename(&self.temp_path, &self.final_path)
            .map_err(|e| StoreError::io("move into place", &self.final_path, e))?;
        self.is_committed = true;
        sync_parent(&self.final_path)
    }
}

/// Returns a fresh path for a temporary file in `ingest_dir`, named
/// `PID-N-LABEL` so that garbage collection can tell whose it is.
pub(super) fn temp_path(ingest_dir: &Path, label: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    ingest_dir.join(format!(
        "{}-{}-{label}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Compares what was hashed with what the descriptor promised.
pub(super) fn check(expected: &Descriptor, hasher: Hasher) -> Result<(), Mismatch> {
    if hasher.len_bytes() != expected.size {
        return Err(Mismatch::Size {
            digest: expected.digest.clone(),
            expected: expected.size,
            actual: hasher.len_bytes(),
        });
    }
    let actual = hasher.finish();
    if actual != expected.digest {
        return Err(Mismatch::Digest {
            expected: expected.digest.clone(),
            actual,
        });
    }
    Ok(())
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.hasher.len_bytes() + buf.len() as u64 > self.expected.size {
            // Stop a registry that sends more than promised before it fills
            // the disk.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob `{}` is longer than its descriptor's {} bytes",
                    self.expected.digest, self.expected.size
                ),
            ));
        }
        let written = self.file.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.writeback.advance(&self.file, self.hasher.len_bytes());
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Allocates a blob's disk space before its bytes arrive, so that the file
/// system lays it out in one go instead of reserving blocks page by page as
/// they are written (8% of a large pull's system time here). The size
/// stays 0 until bytes are written. A blob larger than the free space is
/// not reserved: a failed reservation keeps what it got until the file is
/// removed, and would fill the disk for every other writer meanwhile. Any
/// failure is ignored: without `fallocate` the file system allocates as it
/// goes, and a full disk is reported by the writes themselves.
fn reserve(file: &File, size_bytes: u64) {
    let Ok(length) = i64::try_from(size_bytes) else {
        return;
    };
    if length == 0 || free_bytes(file).is_none_or(|free| free < size_bytes) {
        return;
    }
    // SAFETY: the descriptor is open for as long as `file` lives, and
    // fallocate touches no memory of this process.
    unsafe {
        libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, length);
    }
}

/// Returns the bytes an unprivileged writer may still use on `file`'s file
/// system.
fn free_bytes(file: &File) -> Option<u64> {
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `stats` is a valid, writable statvfs for the call to fill.
    if unsafe { libc::fstatvfs(file.as_raw_fd(), &mut stats) } != 0 {
        return None;
    }
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Has the kernel write a growing file to disk a few megabytes behind its
/// writer. Without it, a large blob's bytes reach the disk only in the
/// fsync before its rename, after the last byte arrived, and that wait
/// (tens of milliseconds per 100 MB here) is added to every pull.
#[derive(Debug, Default)]
pub(super) struct Writeback {
    started_to: u64,
}

impl Writeback {
    /// How far the writer gets ahead before the next range is started.
    const STEP_BYTES: u64 = 8 * 1024 * 1024;

    /// Starts writing out what `file` holds up to `written` bytes, once a
    /// step's worth has accumulated, without waiting for the writes.
    pub(super) fn advance(&mut self, file: &File, written: u64) {
        if written < self.started_to + Self::STEP_BYTES {
            return;
        }
        let (Ok(offset), Ok(length)) = (
            i64::try_from(self.started_to),
            i64::try_from(written - self.started_to),
        ) else {
            return;
        };
        // SAFETY: the descriptor is open for as long as `file` lives, and
        // sync_file_range touches no memory of this process. A failure is
        // ignored: this only starts writeback early, while the fsync
        // before the rename makes the bytes durable and reports errors.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset,
                length,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        self.started_to = written;
    }

    /// Forgets what was started, for a file truncated to start again.
    pub(super) fn restart(&mut self) {
        self.started_to = 0;
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.is_committed {
            // Not committed: the bytes are unverified and must not linger.
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

/// Makes a rename into `path`'s directory durable.
pub(super) fn sync_parent(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Makes the entries of a directory (renames, removals) durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| StoreError::io("sync", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_type;

    fn writer(dir: &Path, content: &[u8]) -> BlobWriter {
        let descriptor = Descriptor::of_bytes(media_type::OCI_LAYER_TAR, content);
        BlobWriter::create(dir, dir.join("final"), &descriptor).unwrap()
    }

    #[test]
    fn commits_matching_content() {
        let dir = tempfile::tempdir().unwrap();
        let mut blob = writer(dir.path(), b"layer bytes");
        blob.write_all(b"layer ").unwrap();
        blob.write_all(b"bytes").unwrap();
        blob.commit().unwrap();
        assert_eq!(fs::read(dir.path().join("final")).unwrap(), b"layer bytes");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_wrong_content_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut blob = writer(dir.path(), b"layer bytes");
        blob.write_all(b"layer BYTES").unwrap();
        let err = blob.commit().unwrap_err();
        assert!(
            matches!(err, StoreError::Mismatch(Mismatch::Digest { .. })),
            "{err}"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn reserves_the_space_of_a_blob_before_its_bytes_arrive() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let content = vec![7u8; 1024 * 1024];
        let mut blob = writer(dir.path(), &content);
        let reserved = blob.file.metadata().unwrap();
        assert_eq!(reserved.len(), 0);
        assert!(
            reserved.blocks() * 512 >= 1024 * 1024,
            "{} blocks",
            reserved.blocks()
        );

        blob.write_all(&content).unwrap();
        blob.commit().unwrap();
        assert_eq!(fs::read(dir.path().join("final")).unwrap(), content);
    }

    #[test]
    fn refuses_short_and_long_content() {
        let dir = tempfile::tempdir().unwrap();
        let mut short = writer(dir.path(), b"layer bytes");
        short.write_all(b"layer").unwrap();
        assert!(matches!(
            short.commit(),
            Err(StoreError::Mismatch(Mismatch::Size { .. }))
        ));

        let mut long = writer(dir.path(), b"layer");
        assert!(long.write_all(b"layer bytes").is_err());
        drop(long);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
