//! Reading an archive once, front to back, into the cache's ingest
//! directory.
//!
//! The layout documents at the top (`index.json`, `manifest.json`,
//! `oci-layout`, `repositories`) are small and kept in memory, with a size
//! limit. Every other file is streamed into an [`Ingest`] and hashed as it
//! goes: an entry named `blobs/<alg>/<hex>` must hash to that digest, or
//! the whole import stops right there; any other file (a legacy
//! `<id>/layer.tar`, a `<hex>.json` config) is known by the digest it
//! hashes to. Links are recorded as aliases. Nothing lands in `blobs/`
//! here: what the archive holds waits, hashed and durable, until the layout
//! has been resolved and checked.
//!
//! An archive compressed whole with gzip or zstd (`docker save | gzip`) is
//! decompressed on the way.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};

use crate::digest::{Algorithm, Digest};
use crate::manifest::MAX_MANIFEST_BYTES;
use crate::store::Store;
use crate::store::ingest::{Ingest, IngestedBlob};

use super::{ImportError, entry};

/// The top-level files that describe a layout, kept in memory.
const LAYOUT_DOCUMENTS: [&str; 4] = ["index.json", "manifest.json", "oci-layout", "repositories"];

/// How many links in a row lead from one path to the file it stands for.
const MAX_LINK_HOPS: usize = 16;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// What an archive holds, once read.
#[derive(Debug, Default)]
pub(super) struct Contents {
    /// The layout documents, by name.
    documents: BTreeMap<String, Vec<u8>>,
    /// The digest of every other file, by archive path.
    files: BTreeMap<String, Digest>,
    /// Links (symbolic or hard), by archive path: where each leads.
    links: BTreeMap<String, String>,
    /// The content of the files, hashed, not yet in `blobs/`.
    staged: BTreeMap<Digest, IngestedBlob>,
}

impl Contents {
    /// Returns a top-level layout document.
    pub(super) fn document(&self, name: &str) -> Option<&[u8]> {
        self.documents.get(name).map(Vec::as_slice)
    }

    /// Returns the digest of the file at `path`, following links.
    pub(super) fn file(&self, path: &str) -> Option<&Digest> {
        let mut path = path;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(digest) = self.files.get(path) {
                return Some(digest);
            }
            path = self.links.get(path)?;
        }
        None
    }

    /// Returns the staged content of `digest`.
    pub(super) fn staged(&self, digest: &Digest) -> Option<&IngestedBlob> {
        self.staged.get(digest)
    }

    /// Hands over the staged content of `digest`, to commit it.
    pub(super) fn take_staged(&mut self, digest: &Digest) -> Option<IngestedBlob> {
        self.staged.remove(digest)
    }

    fn add(
        &mut self,
        store: &Store,
        name: &str,
        entry: &mut tar::Entry<impl Read>,
    ) -> Result<(), ImportError> {
        let entry_type = entry.header().entry_type();
        if entry_type.is_pax_global_extensions() {
            return Ok(());
        }
        let unsafe_path = || ImportError::UnsafePath {
            entry: name.to_string(),
        };
        let path = entry::clean(name).ok_or_else(unsafe_path)?;
        if entry_type.is_symlink() || entry_type.is_hard_link() {
            let target = link_target(entry);
            let resolved = if entry_type.is_symlink() {
                entry::resolve_symlink(&path, &target)
            } else {
                entry::clean(&target)
            };
            let resolved = resolved.ok_or_else(|| ImportError::UnsafeLink {
                entry: name.to_string(),
                target: target.clone(),
            })?;
            self.links.insert(path, resolved);
            return Ok(());
        }
        let is_file =
            entry_type.is_file() || entry_type.is_contiguous() || entry_type.is_gnu_sparse();
        if !is_file || path.is_empty() {
            tracing::trace!("skipping archive entry `{name}`: not a file");
            return Ok(());
        }
        if LAYOUT_DOCUMENTS.contains(&path.as_str()) {
            let bytes = read_document(name, entry)?;
            self.documents.insert(path, bytes);
            return Ok(());
        }
        let claimed = claimed_digest(name, &path)?;
        let algorithm = claimed
            .as_ref()
            .map_or(Algorithm::Sha256, Digest::algorithm);
        let blob = stage(store, name, entry, algorithm)?;
        if let Some(claimed) = claimed
            && &claimed != blob.digest()
        {
            return Err(ImportError::DigestMismatch {
                entry: name.to_string(),
                actual: blob.digest().clone(),
            });
        }
        tracing::trace!("archive entry `{name}` hashes to `{}`", blob.digest());
        self.files.insert(path, blob.digest().clone());
        // A second copy of the same content is dropped, and its file with it.
        self.staged.entry(blob.digest().clone()).or_insert(blob);
        Ok(())
    }
}

/// Reads a staged document (a manifest, index or config) whole; `entry`
/// names it in messages.
pub(super) fn read_staged(blob: &IngestedBlob, entry: &str) -> Result<Vec<u8>, ImportError> {
    if blob.size_bytes() > MAX_MANIFEST_BYTES {
        return Err(ImportError::Oversized {
            entry: entry.to_string(),
            size: blob.size_bytes(),
            limit: MAX_MANIFEST_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(blob.size_bytes() as usize);
    blob.open()?
        .read_to_end(&mut bytes)
        .map_err(|source| ImportError::Read {
            entry: entry.to_string(),
            source,
        })?;
    Ok(bytes)
}

/// Reads the archive `input` into the store's ingest directory.
pub(super) fn scan(store: &Store, input: impl Read) -> Result<Contents, ImportError> {
    let mut input = EndWatch::new(decompressed(input)?);
    let mut contents = Contents::default();
    let mut last: Option<String> = None;
    {
        let mut archive = tar::Archive::new(&mut input);
        let entries = archive
            .entries()
            .map_err(|source| ImportError::NotTar { source })?;
        for entry in entries {
            let mut entry = entry.map_err(|source| match &last {
                None => ImportError::NotTar { source },
                Some(after) => ImportError::Damaged {
                    after: after.clone(),
                    source,
                },
            })?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            contents.add(store, &name, &mut entry)?;
            last = Some(name);
        }
    }
    // A tar ends with zero blocks; running out of input instead means the
    // archive was cut between two entries.
    match last {
        None if input.is_at_end => Err(ImportError::Empty),
        Some(after) if input.is_at_end => Err(ImportError::MissingEnd { after }),
        _ => Ok(contents),
    }
}

/// Unwraps an archive compressed whole with gzip or zstd.
fn decompressed<'a>(mut input: impl Read + 'a) -> Result<Box<dyn Read + 'a>, ImportError> {
    let mut head = [0u8; 4];
    let mut len = 0;
    while len < head.len() {
        match input.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(ImportError::NotTar { source }),
        }
    }
    let head = &head[..len];
    let input = BufReader::with_capacity(1 << 16, io::Cursor::new(head.to_vec()).chain(input));
    if head.starts_with(&GZIP_MAGIC) {
        tracing::debug!("the archive is compressed with gzip");
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(input)))
    } else if head.starts_with(&ZSTD_MAGIC) {
        tracing::debug!("the archive is compressed with zstd");
        let decoder = zstd::stream::read::Decoder::with_buffer(input)
            .map_err(|source| ImportError::NotTar { source })?;
        Ok(Box::new(decoder))
    } else {
        Ok(Box::new(input))
    }
}

/// Returns the digest a file's name claims: `blobs/<alg>/<hex>` is the
/// digest `<alg>:<hex>`; files elsewhere claim none.
fn claimed_digest(name: &str, path: &str) -> Result<Option<Digest>, ImportError> {
    let Some(rest) = path.strip_prefix("blobs/") else {
        return Ok(None);
    };
    let digest = match rest.split_once('/') {
        Some((algorithm, hex)) => format!("{algorithm}:{hex}"),
        None => rest.to_string(),
    };
    digest
        .parse()
        .map(Some)
        .map_err(|source| ImportError::BlobName {
            entry: name.to_string(),
            source,
        })
}

fn link_target(entry: &tar::Entry<impl Read>) -> String {
    entry
        .link_name_bytes()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// Reads a small layout document whole.
fn read_document(name: &str, entry: &mut tar::Entry<impl Read>) -> Result<Vec<u8>, ImportError> {
    let size = entry.size();
    if size > MAX_MANIFEST_BYTES {
        return Err(ImportError::Oversized {
            entry: name.to_string(),
            size,
            limit: MAX_MANIFEST_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry
        .read_to_end(&mut bytes)
        .map_err(|source| ImportError::Read {
            entry: name.to_string(),
            source,
        })?;
    if bytes.len() as u64 != size {
        return Err(ImportError::Truncated {
            entry: name.to_string(),
            expected: size,
            actual: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// Streams an entry into the ingest directory, hashing it.
fn stage(
    store: &Store,
    name: &str,
    entry: &mut tar::Entry<impl Read>,
    algorithm: Algorithm,
) -> Result<IngestedBlob, ImportError> {
    let size = entry.size();
    let mut ingest: Ingest = store.begin_ingest(algorithm)?;
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = match entry.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ImportError::Read {
                    entry: name.to_string(),
                    source,
                });
            }
        };
        ingest.append(&buffer[..n])?;
    }
    if ingest.written_bytes() != size {
        return Err(ImportError::Truncated {
            entry: name.to_string(),
            expected: size,
            actual: ingest.written_bytes(),
        });
    }
    Ok(ingest.finish()?)
}

/// A reader that remembers whether its input ran out.
struct EndWatch<R> {
    inner: R,
    is_at_end: bool,
}

impl<R> EndWatch<R> {
    fn new(inner: R) -> EndWatch<R> {
        EndWatch {
            inner,
            is_at_end: false,
        }
    }
}

impl<R: Read> Read for EndWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.is_at_end = true;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::import::test_tar::{TestResult, tar_of};

    fn store() -> TestResult<(tempfile::TempDir, Store)> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().join("cache"))?;
        Ok((dir, store))
    }

    #[test]
    fn stages_files_by_digest_and_keeps_layout_documents() -> TestResult {
        let (_dir, store) = store()?;
        let blob = Digest::sha256_of(b"layer");
        let blob_name = format!("./blobs/sha256/{}", blob.hex());
        let tar = tar_of(&[
            ("./index.json", b"{}"),
            (&blob_name, b"layer"),
            ("abc/layer.tar", b"legacy"),
        ])?;

        let contents = scan(&store, tar.as_slice())?;

        assert_eq!(contents.document("index.json"), Some(&b"{}"[..]));
        let blob_path = format!("blobs/sha256/{}", blob.hex());
        assert_eq!(contents.file(&blob_path), Some(&blob));
        let legacy = Digest::sha256_of(b"legacy");
        assert_eq!(contents.file("abc/layer.tar"), Some(&legacy));
        assert!(contents.staged(&legacy).is_some());
        assert!(!store.blob_path(&blob).exists());
        Ok(())
    }

    #[test]
    fn refuses_a_blob_whose_name_lies() -> TestResult {
        let (_dir, store) = store()?;
        let name = format!("blobs/sha256/{}", Digest::sha256_of(b"claimed").hex());
        let tar = tar_of(&[(&name, b"actual")])?;

        let result = scan(&store, tar.as_slice());

        assert!(
            matches!(&result, Err(ImportError::DigestMismatch { entry, .. }) if *entry == name),
            "{result:?}"
        );
        Ok(())
    }

    #[test]
    fn tells_truncation_from_input_that_is_no_tar() -> TestResult {
        let (_dir, store) = store()?;
        let tar = tar_of(&[("a", &[7u8; 2000]), ("b", b"second")])?;
        let text = b"just some text, not a tar archive\n".repeat(40);

        let cut_in_content = scan(&store, &tar[..1024]);
        let cut_between_entries = scan(&store, &tar[..512 + 2048]);
        let not_tar = scan(&store, text.as_slice());
        let empty = scan(&store, &b""[..]);

        assert!(
            matches!(cut_in_content, Err(ImportError::Truncated { .. })),
            "{cut_in_content:?}"
        );
        assert!(
            matches!(cut_between_entries, Err(ImportError::MissingEnd { .. })),
            "{cut_between_entries:?}"
        );
        assert!(
            matches!(not_tar, Err(ImportError::NotTar { .. })),
            "{not_tar:?}"
        );
        assert!(matches!(empty, Err(ImportError::Empty)), "{empty:?}");
        Ok(())
    }

    #[test]
    fn reads_an_archive_compressed_whole_with_gzip_or_zstd() -> TestResult {
        let (_dir, store) = store()?;
        let tar = tar_of(&[("manifest.json", b"[]")])?;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gzip, &tar)?;
        let zstd = zstd::encode_all(tar.as_slice(), 3)?;

        for compressed in [gzip.finish()?, zstd] {
            let contents = scan(&store, compressed.as_slice())?;
            assert_eq!(contents.document("manifest.json"), Some(&b"[]"[..]));
        }
        Ok(())
    }

    #[test]
    fn follows_links_to_the_file_they_stand_for() -> TestResult {
        let (_dir, store) = store()?;
        let mut builder = tar::Builder::new(Vec::new());
        let mut file = tar::Header::new_gnu();
        file.set_size(5);
        file.set_cksum();
        builder.append_data(&mut file, "0123.tar", &b"layer"[..])?;
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        builder.append_link(&mut link, "abc/layer.tar", "../0123.tar")?;
        let tar = builder.into_inner()?;

        let contents = scan(&store, tar.as_slice())?;

        let layer = Digest::sha256_of(b"layer");
        assert_eq!(contents.file("abc/layer.tar"), Some(&layer));
        Ok(())
    }
}
