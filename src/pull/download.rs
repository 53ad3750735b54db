//! Downloading blobs in parallel: a bounded number in flight, each streamed
//! from the registry into the store while it is hashed, and each digest
//! fetched at most once at a time even when several images share it.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::reference::Reference;
use crate::registry::{BlobStream, Client};
use crate::store::{BlobWriter, Store, StoreError};

use super::{Progress, PullError};

const CHUNK_BYTES: usize = 256 * 1024;

/// How many times one blob download is resumed before it fails.
const MAX_RESUMES: u32 = 5;

/// The pause before a resume, growing with each one.
const RESUME_PAUSE: Duration = Duration::from_millis(200);

/// What a batch of downloads fetched.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Transferred {
    /// Blobs downloaded.
    pub blobs: usize,
    /// Bytes downloaded.
    pub bytes: u64,
}

impl std::ops::AddAssign for Transferred {
    fn add_assign(&mut self, other: Transferred) {
        self.blobs += other.blobs;
        self.bytes += other.bytes;
    }
}

/// Bounds the downloads in flight and keeps two threads from fetching the
/// same digest at once.
#[derive(Debug)]
pub(super) struct Downloader {
    slots: Mutex<usize>,
    slot_freed: Condvar,
    in_flight: Mutex<HashSet<Digest>>,
    landed: Condvar,
}

impl Downloader {
    pub(super) fn new(max_in_flight: usize) -> Downloader {
        Downloader {
            slots: Mutex::new(max_in_flight.max(1)),
            slot_freed: Condvar::new(),
            in_flight: Mutex::new(HashSet::new()),
            landed: Condvar::new(),
        }
    }

    /// Downloads every blob of `blobs` that the store lacks, in parallel.
    /// Stops starting new downloads after the first failure, and returns it.
    pub(super) fn fetch_missing(
        &self,
        store: &Store,
        client: &Client,
        reference: &Reference,
        blobs: &[Descriptor],
        progress: &dyn Progress,
    ) -> Result<Transferred, PullError> {
        let mut seen = HashSet::new();
        let missing: Vec<&Descriptor> = blobs
            .iter()
            .filter(|d| seen.insert(d.digest.clone()) && !store.has_blob(d))
            .collect();
        tracing::debug!(
            "{reference}: {} of {} blobs to download, the rest are cached",
            missing.len(),
            seen.len()
        );
        let failed = AtomicBool::new(false);
        let results: Vec<Result<Transferred, PullError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = missing
                .iter()
                .map(|blob| {
                    let failed = &failed;
                    scope.spawn(move || {
                        let result =
                            self.fetch_one(store, client, reference, blob, progress, failed);
                        if result.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        result
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a download thread panicked"))
                .collect()
        });
        let mut total = Transferred::default();
        for result in results {
            total += result?;
        }
        Ok(total)
    }

    fn fetch_one(
        &self,
        store: &Store,
        client: &Client,
        reference: &Reference,
        blob: &Descriptor,
        progress: &dyn Progress,
        failed: &AtomicBool,
    ) -> Result<Transferred, PullError> {
        let _slot = self.take_slot();
        let _claim = self.claim(&blob.digest);
        if failed.load(Ordering::Relaxed) || store.has_blob(blob) {
            // Either another download failed, which reports the error, or
            // another image's pull landed the blob while this one waited.
            return Ok(Transferred::default());
        }
        progress.blob_started(reference, blob);
        let result = download(store, client, reference, blob, progress);
        progress.blob_finished(reference, blob, result.is_ok());
        result?;
        Ok(Transferred {
            blobs: 1,
            bytes: blob.size,
        })
    }

    fn take_slot(&self) -> Slot<'_> {
        let mut free = self.slots.lock().expect("lock poisoned");
        while *free == 0 {
            free = self.slot_freed.wait(free).expect("lock poisoned");
        }
        *free -= 1;
        Slot { downloader: self }
    }

    fn claim(&self, digest: &Digest) -> Claim<'_> {
        let mut in_flight = self.in_flight.lock().expect("lock poisoned");
        while in_flight.contains(digest) {
            in_flight = self.landed.wait(in_flight).expect("lock poisoned");
        }
        in_flight.insert(digest.clone());
        Claim {
            downloader: self,
            digest: digest.clone(),
        }
    }
}

struct Slot<'a> {
    downloader: &'a Downloader,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.downloader.slots.lock().expect("lock poisoned") += 1;
        self.downloader.slot_freed.notify_one();
    }
}

struct Claim<'a> {
    downloader: &'a Downloader,
    digest: Digest,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.downloader.in_flight.lock().expect("lock poisoned");
        in_flight.remove(&self.digest);
        self.downloader.landed.notify_all();
    }
}

/// Streams one blob into the store; it lands only if it matches. A body
/// that breaks off is resumed from the bytes already hashed, or started
/// again when the registry cannot serve a range.
fn download(
    store: &Store,
    client: &Client,
    reference: &Reference,
    blob: &Descriptor,
    progress: &dyn Progress,
) -> Result<(), PullError> {
    let mut writer = store.begin_blob(blob)?;
    let mut stream = client.fetch_blob(reference, &blob.digest)?;
    let mut resumes = 0;
    loop {
        let broken = match copy_body(store, &mut stream, &mut writer, reference, blob, progress) {
            Ok(()) if writer.written_bytes() == blob.size => break,
            Ok(()) => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the body ended after {} of {} bytes",
                    writer.written_bytes(),
                    blob.size
                ),
            ),
            Err(Interruption::Read(error)) => error,
            Err(Interruption::Fatal(error)) => return Err(error),
        };
        resumes += 1;
        if resumes > MAX_RESUMES {
            return Err(blob_read_error(reference, blob, broken));
        }
        let offset = writer.written_bytes();
        tracing::debug!(
            "{reference}: blob {} broke off at byte {offset} ({broken}); resuming",
            blob.digest
        );
        std::thread::sleep(RESUME_PAUSE * resumes);
        stream = client.fetch_blob_from(reference, &blob.digest, offset)?;
        if stream.offset() != offset {
            tracing::debug!(
                "{reference}: the registry ignored the range; starting blob {} again",
                blob.digest
            );
            writer.restart()?;
        }
    }
    writer.commit().map_err(|e| match e {
        StoreError::Mismatch(mismatch) => PullError::BlobContent {
            reference: reference.to_string(),
            source: mismatch,
        },
        other => PullError::Store(other),
    })
}

/// Why copying a body stopped short.
enum Interruption {
    /// Reading from the registry failed: worth resuming.
    Read(io::Error),
    /// Anything else: writing to the cache, or more bytes than promised.
    Fatal(PullError),
}

/// Copies a body into the blob writer until it ends or breaks.
fn copy_body(
    store: &Store,
    stream: &mut BlobStream,
    writer: &mut BlobWriter,
    reference: &Reference,
    blob: &Descriptor,
    progress: &dyn Progress,
) -> Result<(), Interruption> {
    let mut buffer = vec![0u8; CHUNK_BYTES];
    loop {
        let read = match stream.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Interruption::Read(e)),
        };
        writer.write_all(&buffer[..read]).map_err(|source| {
            Interruption::Fatal(match source.kind() {
                io::ErrorKind::InvalidData => blob_read_error(reference, blob, source),
                _ => PullError::Store(StoreError::Io {
                    action: "write",
                    path: store.blob_path(&blob.digest),
                    source,
                }),
            })
        })?;
        progress.blob_advanced(reference, blob, writer.written_bytes());
    }
}

fn blob_read_error(reference: &Reference, blob: &Descriptor, source: io::Error) -> PullError {
    PullError::BlobRead {
        reference: reference.to_string(),
        digest: blob.digest.clone(),
        source,
    }
}
