//! The `oci` export: a tar of an OCI image layout (image-spec,
//! image-layout.md) holding the exported images, named in `index.json` by
//! both `org.opencontainers.image.ref.name` and `io.containerd.image.name`
//! with their full reference, so that lkcache, LinuxKit and containerd all
//! import them under their names.
//!
//! One platform per image by default: `index.json` names the platform's
//! manifest itself, with the cache's digest. With all platforms, it names
//! the image's index. The cache holds only the platforms that were pulled;
//! when it lacks some, the index as the registry served it would point at
//! content the archive cannot hold, so a new index is written that lists
//! only the platforms held completely (with their attestations), and the
//! archive's index digest then differs from the registry's. The report says
//! how many platforms were left out.
//!
//! Entries come bottom-up, as the cache writes them: `oci-layout`, then
//! layers and configs, manifests, indexes, and `index.json` last.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};

use crate::digest::{Digest, Hasher};
use crate::manifest::{
    ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, Descriptor, ImageIndex, Manifest,
    ManifestError,
};
use crate::media_type;
use crate::reference::Reference;
use crate::store::{Mismatch, Store, StoreError};

use super::archive::{CopyError, EntryMeta, TarWriter};
use super::{
    ExportError, ExportOptions, ExportedImage, archive_name, plain_descriptor, platform_images,
};

/// The content of `oci-layout`.
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// A blob the archive holds.
enum Content {
    /// Copied from the cache.
    Stored(Descriptor),
    /// Made for the export: a new index.
    Made(Descriptor, Vec<u8>),
}

impl Content {
    fn digest(&self) -> &Digest {
        match self {
            Content::Stored(d) | Content::Made(d, _) => &d.digest,
        }
    }
}

/// Writes the OCI layout archive of `images`.
pub(super) fn write<W: Write>(
    store: &Store,
    images: &[Reference],
    options: &ExportOptions,
    writer: &mut TarWriter<W>,
) -> Result<Vec<ExportedImage>, ExportError> {
    let mut contents = Vec::new();
    let exported = if options.all_platforms {
        let mut exported = Vec::new();
        let mut names = BTreeSet::new();
        for reference in images {
            let image = plan_all_platforms(store, reference, options, &mut contents)?;
            if !names.insert(image.name.clone()) {
                return Err(ExportError::DuplicateName(image.name));
            }
            exported.push(image);
        }
        exported
    } else {
        let resolved = platform_images(store, images, options)?;
        for (image, _) in &resolved {
            contents.extend(image.manifest.blobs().cloned().map(Content::Stored));
            contents.push(Content::Stored(image.descriptor.clone()));
        }
        resolved.into_iter().map(|(_, exported)| exported).collect()
    };

    writer
        .append_bytes(
            b"oci-layout",
            &EntryMeta::file(OCI_LAYOUT.len() as u64),
            OCI_LAYOUT,
        )
        .map_err(ExportError::Write)?;
    write_blobs(store, &contents, writer)?;
    let index = index_json(&exported);
    writer
        .append_bytes(b"index.json", &EntryMeta::file(index.len() as u64), &index)
        .map_err(ExportError::Write)?;
    Ok(exported)
}

/// Lists the blobs of every platform of `reference` the cache holds
/// completely, and describes the image.
fn plan_all_platforms(
    store: &Store,
    reference: &Reference,
    options: &ExportOptions,
    contents: &mut Vec<Content>,
) -> Result<ExportedImage, ExportError> {
    let source = reference.to_string();
    let cached = store
        .cached(&source)?
        .ok_or_else(|| StoreError::NotCached(source.clone()))?;
    let entries = cached.platforms(store)?;
    let complete: Vec<_> = entries.iter().filter(|e| e.is_complete).collect();
    if complete.is_empty() {
        return Err(ExportError::NothingComplete(source));
    }
    let mut manifests: Vec<Descriptor> = complete.iter().map(|e| e.descriptor.clone()).collect();
    let index = match &cached.manifest {
        Manifest::Index(index) => {
            for entry in &complete {
                let attestations = index.attestations_of(&entry.descriptor.digest);
                manifests.extend(attestations.filter(|a| store.is_complete(a)).cloned());
            }
            Some(index)
        }
        Manifest::Image(_) => None,
    };
    for manifest in &manifests {
        let Manifest::Image(image) = store.read_manifest(manifest)? else {
            continue;
        };
        contents.extend(image.blobs().cloned().map(Content::Stored));
        contents.push(Content::Stored(plain_descriptor(manifest)));
    }

    let mut root = plain_descriptor(&cached.root);
    let left_out = entries.len() - complete.len();
    if let Some(index) = index {
        if manifests.len() == index.manifests.len() {
            contents.push(Content::Stored(root.clone()));
        } else {
            let bytes = trimmed_index(&cached.root, &store.read_blob(&cached.root)?, &manifests)?;
            root = Descriptor::of_bytes(&cached.root.media_type, &bytes);
            contents.push(Content::Made(root.clone(), bytes));
        }
    }
    Ok(ExportedImage {
        source,
        name: archive_name(reference, options),
        root,
        platforms: complete.iter().filter_map(|e| e.platform.clone()).collect(),
        platforms_left_out: left_out,
    })
}

/// Rewrites the index `root` to list only `kept`, every other field as it
/// was.
fn trimmed_index(
    root: &Descriptor,
    bytes: &[u8],
    kept: &[Descriptor],
) -> Result<Vec<u8>, ExportError> {
    let kept: BTreeSet<String> = kept.iter().map(|d| d.digest.to_string()).collect();
    let mut document: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|source| StoreError::Manifest {
            digest: root.digest.clone(),
            source: ManifestError::Malformed {
                kind: "index",
                source,
            },
        })?;
    if let Some(manifests) = document.get_mut("manifests").and_then(|m| m.as_array_mut()) {
        manifests.retain(|d| {
            d["digest"]
                .as_str()
                .is_some_and(|digest| kept.contains(digest))
        });
    }
    Ok(serde_json::to_vec(&document).expect("a JSON value always serialises"))
}

/// Returns `index.json`, naming each image's root.
fn index_json(images: &[ExportedImage]) -> Vec<u8> {
    let manifests = images
        .iter()
        .map(|image| {
            let mut descriptor = image.root.clone();
            if media_type::manifest_kind(&descriptor.media_type)
                == Some(media_type::ManifestKind::Manifest)
            {
                descriptor.platform = image.platforms.first().cloned();
            }
            for key in [ANNOTATION_REF_NAME, ANNOTATION_CONTAINERD_NAME] {
                descriptor
                    .annotations
                    .insert(key.to_string(), image.name.clone());
            }
            descriptor
        })
        .collect();
    let index = ImageIndex {
        schema_version: 2,
        media_type: Some(media_type::OCI_INDEX.to_string()),
        manifests,
        extra: serde_json::Map::new(),
    };
    serde_json::to_vec(&index).expect("an index always serialises")
}

/// Writes the `blobs/` directories and each distinct blob once, in order.
fn write_blobs<W: Write>(
    store: &Store,
    contents: &[Content],
    writer: &mut TarWriter<W>,
) -> Result<(), ExportError> {
    let algorithms: BTreeSet<&str> = contents
        .iter()
        .map(|c| c.digest().algorithm().name())
        .collect();
    append_directory(writer, "blobs/")?;
    for algorithm in algorithms {
        append_directory(writer, &format!("blobs/{algorithm}/"))?;
    }
    let mut written = BTreeSet::new();
    for content in contents {
        if !written.insert(content.digest().clone()) {
            continue;
        }
        match content {
            Content::Stored(descriptor) => append_blob(store, descriptor, writer)?,
            Content::Made(descriptor, bytes) => {
                let meta = EntryMeta::file(bytes.len() as u64);
                writer
                    .append_bytes(blob_path(&descriptor.digest).as_bytes(), &meta, bytes)
                    .map_err(ExportError::Write)?;
            }
        }
    }
    Ok(())
}

/// Writes a directory entry owned by root.
pub(super) fn append_directory<W: Write>(
    writer: &mut TarWriter<W>,
    path: &str,
) -> Result<(), ExportError> {
    writer
        .append_bytes(path.as_bytes(), &EntryMeta::directory(0o755), b"")
        .map_err(ExportError::Write)
}

/// Returns a blob's path inside an archive: `blobs/sha256/<hex>`.
pub(super) fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().name(), digest.hex())
}

/// Copies a blob from the cache into the archive at its `blobs/` path,
/// checking its size and digest on the way.
pub(super) fn append_blob<W: Write>(
    store: &Store,
    descriptor: &Descriptor,
    writer: &mut TarWriter<W>,
) -> Result<(), ExportError> {
    let digest = &descriptor.digest;
    let file = store.open_blob(digest)?;
    let mut reader = HashingReader {
        inner: file,
        hasher: Hasher::new(digest.algorithm()),
    };
    let meta = EntryMeta::file(descriptor.size);
    writer
        .append(blob_path(digest).as_bytes(), &meta, &mut reader)
        .map_err(|e| match e {
            CopyError::Read(source) if source.kind() == io::ErrorKind::UnexpectedEof => {
                ExportError::Damaged {
                    digest: digest.clone(),
                    source: Mismatch::Size {
                        digest: digest.clone(),
                        expected: descriptor.size,
                        actual: reader.hasher.len_bytes(),
                    },
                }
            }
            CopyError::Read(source) => ExportError::Blob {
                digest: digest.clone(),
                source,
            },
            CopyError::Write(source) => ExportError::Write(source),
        })?;
    check_blob_end(descriptor, reader)
}

/// Checks that a copied blob ends where its descriptor says and has its
/// digest.
fn check_blob_end(descriptor: &Descriptor, mut reader: HashingReader) -> Result<(), ExportError> {
    let digest = &descriptor.digest;
    let mut extra = [0u8; 1];
    let more = reader
        .inner
        .read(&mut extra)
        .map_err(|source| ExportError::Blob {
            digest: digest.clone(),
            source,
        })?;
    if more > 0 {
        let actual = reader
            .inner
            .metadata()
            .map_or(descriptor.size + 1, |m| m.len());
        return Err(ExportError::Damaged {
            digest: digest.clone(),
            source: Mismatch::Size {
                digest: digest.clone(),
                expected: descriptor.size,
                actual,
            },
        });
    }
    let actual = reader.hasher.finish();
    if actual != *digest {
        return Err(ExportError::Damaged {
            digest: digest.clone(),
            source: Mismatch::Digest {
                expected: digest.clone(),
                actual,
            },
        });
    }
    Ok(())
}

/// A blob file read through a hasher.
struct HashingReader {
    inner: std::fs::File,
    hasher: Hasher,
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
