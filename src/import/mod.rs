//! Importing image archives into the cache: an OCI image layout in a tar
//! (as `docker buildx build --output type=oci`, `skopeo copy …
//! oci-archive:` and `lkcache export --format oci` write it), or a Docker
//! archive (as `docker save` writes it: legacy `manifest.json` with
//! `<id>/layer.tar` files, or, since Docker 25, an OCI layout with a
//! `manifest.json` beside it).
//!
//! An archive is a stream that may be read only once (a pipe). The scan
//! reads it front to back and hashes every file into the cache's ingest
//! directory as it comes, so no layer is ever held in memory; an entry named
//! `blobs/<alg>/<hex>` is checked against its name right then. Only when
//! the whole archive has been seen is the layout resolved (as an OCI
//! layout, or as a Docker archive when there is no `index.json`): every manifest, config and
//! layer an imported image reaches must be in the archive (or already in
//! the cache) and match its descriptor. Until then nothing has moved into
//! `blobs/` and `index.json` is untouched, so a rejected archive imports
//! nothing at all. Then the blobs land bottom-up (layers and configs,
//! manifests, indexes) and the names last, all under the store's write
//! guard, which keeps garbage collection off blobs not yet named (design
//! invariants 2 to 4).

mod docker;
mod entry;
mod naming;
mod oci;
mod plan;
mod scan;

/// Plain tars for the unit tests of the archive readers.
#[cfg(test)]
mod test_tar {
    pub(super) type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

    /// Builds a tar of regular files `(name, content)`.
    pub(super) fn tar_of(files: &[(&str, &[u8])]) -> TestResult<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *content)?;
        }
        Ok(builder.into_inner()?)
    }
}

use std::io::{self, Read};

use crate::digest::{Digest, DigestError};
use crate::manifest::{Descriptor, ManifestError};
use crate::platform::Platform;
use crate::reference::{Reference, ReferenceError};
use crate::store::{Store, StoreError};

/// How to import an archive.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The name for what the archive leaves unnamed: an image the archive
    /// names only by a bare tag `T` is recorded as `REPOSITORY:T`, with this
    /// reference's repository; the one image the archive gives no name at
    /// all is recorded under this reference whole. Pinning it to a digest
    /// is refused.
    pub name: Option<Reference>,
}

/// One image an archive held, as it is now in the cache.
#[derive(Debug, Clone)]
pub struct ImportedImage {
    /// The full references recorded for it; empty when the archive named it
    /// nowhere, so that only its digest finds it.
    pub names: Vec<String>,
    /// The root descriptor (an index or a manifest) the names point at.
    pub root: Descriptor,
    /// The platforms whose manifest, config and layers were imported.
    pub platforms: Vec<Platform>,
}

/// Why an archive cannot be imported. Whatever the reason, no name was
/// added and `index.json` is as it was.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input holds no bytes at all.
    #[error("the input is empty; give an OCI image layout tar or a `docker save` archive")]
    Empty,
    /// The input does not start like a tar archive.
    #[error(
        "the input is not a tar archive; give an OCI image layout tar or a `docker save` \
         archive, plain or compressed with gzip or zstd"
    )]
    NotTar {
        /// What the tar reader found.
        #[source]
        source: io::Error,
    },
    /// An entry's content stops before the size its header gives.
    #[error(
        "the archive is truncated: entry `{entry}` ends after {actual} of its {expected} bytes; \
         copy or download the archive again"
    )]
    Truncated {
        /// The entry's name.
        entry: String,
        /// The size the entry's header gives.
        expected: u64,
        /// The bytes that followed.
        actual: u64,
    },
    /// The archive stops between two entries, without the two zero blocks
    /// that end every tar.
    #[error(
        "the archive is truncated: it stops after entry `{after}` without the end-of-archive \
         marker; copy or download the archive again"
    )]
    MissingEnd {
        /// The last entry read whole.
        after: String,
    },
    /// The tar structure breaks off after an entry.
    #[error("the archive is damaged or truncated after entry `{after}`; copy or download it again")]
    Damaged {
        /// The last entry read whole.
        after: String,
        /// What the tar reader found.
        #[source]
        source: io::Error,
    },
    /// An entry's content cannot be read (a broken compressed stream, a
    /// failing disk or pipe).
    #[error("cannot read archive entry `{entry}`")]
    Read {
        /// The entry's name.
        entry: String,
        /// The reader's error.
        #[source]
        source: io::Error,
    },
    /// An entry name that would leave the archive's root.
    #[error(
        "archive entry `{entry}` has an absolute path or a `..` component; lkcache refuses \
         such archives (it never writes entries to the file system, only hashed blobs into the \
         cache, but no well-formed image archive has such names)"
    )]
    UnsafePath {
        /// The entry's name.
        entry: String,
    },
    /// A link whose target leaves the archive's root.
    #[error(
        "archive entry `{entry}` links to `{target}`, outside the archive; lkcache refuses \
         such archives"
    )]
    UnsafeLink {
        /// The entry's name.
        entry: String,
        /// The link's target.
        target: String,
    },
    /// A file under `blobs/` whose name is not a digest.
    #[error("archive entry `{entry}` is under `blobs/`, but its name is not a digest")]
    BlobName {
        /// The entry's name.
        entry: String,
        /// Why the name is not a digest.
        #[source]
        source: DigestError,
    },
    /// An entry whose content does not hash to the digest its name claims.
    #[error(
        "archive entry `{entry}` hashes to `{actual}`: its name claims other content, so \
         nothing from this archive was imported; the archive is corrupt or was tampered with"
    )]
    DigestMismatch {
        /// The entry's name.
        entry: String,
        /// The digest of what the entry holds.
        actual: Digest,
    },
    /// A manifest, index or config too large to be one.
    #[error(
        "archive entry `{entry}` is {size} bytes, more than the {limit} bytes lkcache accepts \
         for a manifest, index or config"
    )]
    Oversized {
        /// The entry's name.
        entry: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Neither `index.json` nor `manifest.json` at the top level.
    #[error(
        "the archive is neither an OCI image layout (no `index.json` at its top level) nor a \
         Docker archive (no `manifest.json`)"
    )]
    UnknownLayout,
    /// A layout that lists no image.
    #[error("the archive's `{0}` lists no image")]
    NoImages(&'static str),
    /// An `oci-layout` file of another major version.
    #[error("the archive's `oci-layout` declares layout version `{0}`; lkcache reads 1.x")]
    LayoutVersion(String),
    /// A layout document or config that is not the JSON it should be.
    #[error("archive entry `{entry}` is not valid JSON of its kind")]
    InvalidJson {
        /// The entry's name.
        entry: String,
        /// What the parser found.
        #[source]
        source: serde_json::Error,
    },
    /// A blob an imported image needs is not in the archive.
    #[error(
        "{named_by} names `{digest}`, which the archive does not hold (no entry `{entry}`); \
         the archive is incomplete"
    )]
    MissingBlob {
        /// The blob's digest.
        digest: Digest,
        /// The document that names it, for example "manifest `sha256:…`".
        named_by: String,
        /// The entry that should hold it.
        entry: String,
    },
    /// A file `manifest.json` lists is not in the archive.
    #[error("`manifest.json` names `{path}`, which the archive does not hold; it is incomplete")]
    MissingEntry {
        /// The path as `manifest.json` gives it.
        path: String,
    },
    /// A blob whose size differs from its descriptor's.
    #[error(
        "{named_by} says `{digest}` is {expected} bytes, but the archive holds {actual} bytes \
         of it"
    )]
    SizeMismatch {
        /// The blob's digest.
        digest: Digest,
        /// The document that names it.
        named_by: String,
        /// The descriptor's size.
        expected: u64,
        /// The size in the archive.
        actual: u64,
    },
    /// A manifest or index that cannot be parsed.
    #[error("{named_by} names `{digest}`, which is not a usable manifest or index")]
    Manifest {
        /// Its digest.
        digest: Digest,
        /// The document that names it.
        named_by: String,
        /// Why.
        #[source]
        source: ManifestError,
    },
    /// An index none of whose manifests the archive holds.
    #[error("index `{digest}` names {count} manifests, and the archive holds none of them")]
    EmptyIndex {
        /// The index's digest.
        digest: Digest,
        /// How many entries it has.
        count: usize,
    },
    /// Indexes nested deeper than lkcache follows.
    #[error("index `{digest}` is nested deeper than the {limit} levels lkcache follows")]
    TooDeep {
        /// The innermost index's digest.
        digest: Digest,
        /// The depth limit.
        limit: usize,
    },
    /// A Docker layer whose uncompressed digest is not the config's diff ID.
    #[error(
        "layer `{entry}` has the diff ID `{actual}`, but its config lists `{expected}` in its \
         place; the archive is corrupt or was tampered with"
    )]
    DiffId {
        /// The layer's entry.
        entry: String,
        /// The config's diff ID.
        expected: Digest,
        /// The layer's uncompressed digest.
        actual: Digest,
    },
    /// `manifest.json` and the config disagree on the number of layers.
    #[error(
        "`manifest.json` lists {layers} layers for config `{config}`, which lists {diff_ids} \
         diff IDs"
    )]
    LayerCount {
        /// The config's entry.
        config: String,
        /// The layers `manifest.json` lists.
        layers: usize,
        /// The diff IDs the config lists.
        diff_ids: usize,
    },
    /// A name in the archive that is not a reference.
    #[error("the archive names an image `{name}`, which is not a valid image reference")]
    InvalidName {
        /// The name as written.
        name: String,
        /// Why it is not a reference.
        #[source]
        source: ReferenceError,
    },
    /// An image named only by a tag, without `--name`.
    #[error(
        "the archive names `{digest}` only by the tag `{tag}`; say which repository it belongs \
         to with --name, for example --name example.com/app"
    )]
    BareTag {
        /// The image's root digest.
        digest: Digest,
        /// The tag.
        tag: String,
    },
    /// One name for two different images.
    #[error("the archive gives the name `{name}` to both `{first}` and `{second}`")]
    NameConflict {
        /// The name.
        name: String,
        /// One root digest.
        first: Digest,
        /// The other.
        second: Digest,
    },
    /// `--name` given, and several images without a name.
    #[error(
        "--name can name one image without a name, but the archive holds {} of them: {}",
        digests.len(),
        digests.iter().map(Digest::to_string).collect::<Vec<_>>().join(", ")
    )]
    AmbiguousName {
        /// The unnamed roots.
        digests: Vec<Digest>,
    },
    /// `--name` pinned to a digest.
    #[error("--name `{0}` is pinned to a digest; give a repository, with or without a tag")]
    NameWithDigest(String),
    /// The cache could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImportError {
    /// Tells whether the command line, not the archive or the cache, has to
    /// change: a missing or ambiguous `--name`.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ImportError::BareTag { .. }
                | ImportError::AmbiguousName { .. }
                | ImportError::NameWithDigest(_)
        )
    }
}

/// Imports the archive `input` into `store` and returns the images it held.
///
/// Either every image of the archive is imported, or no name is added: a
/// blob that does not match its digest, a missing blob, a truncated archive
/// or a name that cannot be resolved stops the import before anything lands
/// in `blobs/`.
pub fn import(
    store: &Store,
    input: impl Read,
    options: &ImportOptions,
) -> Result<Vec<ImportedImage>, ImportError> {
    if let Some(name) = options.name.as_ref().filter(|n| n.digest().is_some()) {
        return Err(ImportError::NameWithDigest(name.to_string()));
    }
    let mut contents = scan::scan(store, input)?;

    // From here until the names are set, blobs the cache already holds
    // are relied upon, and new ones land unnamed.
    let _guard = store.write_guard()?;
    let plan = if contents.document(oci::INDEX_JSON).is_some() {
        tracing::debug!("the archive is an OCI image layout");
        oci::plan(&contents, store)?
    } else if contents.document(docker::MANIFEST_JSON).is_some() {
        tracing::debug!("the archive is a Docker archive");
        docker::plan(&contents)?
    } else {
        return Err(ImportError::UnknownLayout);
    };
    let names = naming::resolve(plan.roots(), options.name.as_ref())?;
    plan.execute(store, &mut contents, names)
}
