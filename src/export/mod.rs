//! Export: images read back out of the cache in the three forms builders
//! use: an OCI image layout archive ([`Format::Oci`]), an archive that
//! `docker load` accepts ([`Format::Docker`]), or the root filesystem the
//! layers make, as one flat tar ([`Format::Filesystem`]).
//!
//! Every export is one tar stream, written once from the start to the end;
//! the two zero blocks that end it come last, so a stream cut short by a
//! failure never reads as a whole archive. Written to a file, an export goes
//! to a temporary file beside it first and is renamed into place only when
//! complete ([`OutputFile`]).
//!
//! Blobs are copied as stored, their digests checked on the way; layers are
//! never recompressed. The archive names images by their full reference
//! (`docker.io/library/alpine:3.19`), or by the name asked for.

mod archive;
mod docker;
mod flatten;
mod layer;
mod oci;
mod output;

use std::fmt;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::{Image, Mismatch, Store, StoreError};

pub use flatten::{DropReason, DroppedEntry, FlattenError};
pub use output::OutputFile;

use archive::TarWriter;
use layer::{BlobLayer, LayerSource};

/// How much of the output is buffered before it is written.
const OUTPUT_BUFFER: usize = 1024 * 1024;
/// The most layers decompressed ahead of the one being flattened.
const MAX_LAYERS_AHEAD: usize = 3;

/// The form of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A tar of an OCI image layout.
    Oci,
    /// A tar that `docker load` accepts: `manifest.json` and the blobs.
    Docker,
    /// The image's root filesystem as one flat tar.
    Filesystem,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Oci => "oci",
            Format::Docker => "docker",
            Format::Filesystem => "filesystem",
        })
    }
}

/// What to export, and how.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The form of the archive.
    pub format: Format,
    /// The platform to export, chosen as a pull chooses it.
    pub platform: Platform,
    /// For [`Format::Oci`]: export the index and every platform the cache
    /// holds completely, instead of one platform.
    pub all_platforms: bool,
    /// The name to give the one image exported, instead of its own.
    pub name: Option<Reference>,
}

impl ExportOptions {
    /// Returns options to export the host's platform in `format`.
    pub fn new(format: Format) -> ExportOptions {
        ExportOptions {
            format,
            platform: Platform::host(),
            all_platforms: false,
            name: None,
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// The images, in the order given.
    pub images: Vec<ExportedImage>,
    /// The layer entries the flattened filesystem left out, and why.
    pub dropped: Vec<DroppedEntry>,
    /// The size of the archive.
    pub archive_bytes: u64,
}

/// One image of an export.
#[derive(Debug, Clone)]
pub struct ExportedImage {
    /// The name the image is cached under.
    pub source: String,
    /// The name the archive gives it.
    pub name: String,
    /// The manifest, or with all platforms the index, the archive names.
    pub root: Descriptor,
    /// The platforms exported.
    pub platforms: Vec<Platform>,
    /// With all platforms: how many of the index's platforms the cache does
    /// not hold completely, and so were left out of a new index.
    pub platforms_left_out: usize,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The cache could not give the image.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `--name` with several images.
    #[error("a new name can be given to one image only, not {0}")]
    NameForSeveralImages(usize),
    /// All platforms in a format that holds one.
    #[error("only the oci format holds several platforms; {0} exports one platform per image")]
    AllPlatformsNeedsOci(Format),
    /// Nothing to export.
    #[error("no image to export")]
    NoImages,
    /// The same name twice in one archive.
    #[error("`{0}` is named twice; an archive names each image once")]
    DuplicateName(String),
    /// With all platforms: the cache holds no platform of the image whole.
    #[error(
        "`{0}` has no platform whose manifest, config and layers are all cached; pull it again"
    )]
    NothingComplete(String),
    /// A blob could not be read from the cache.
    #[error("cannot read blob `{digest}` from the cache")]
    Blob {
        /// The blob.
        digest: Digest,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// A blob's bytes are not those its digest names.
    #[error("blob `{digest}` in the cache is damaged; pull the image again")]
    Damaged {
        /// The blob.
        digest: Digest,
        /// How it differs.
        #[source]
        source: Mismatch,
    },
    /// Flattening the layers failed.
    #[error(transparent)]
    Flatten(#[from] FlattenError),
    /// The archive could not be written.
    #[error("cannot write the archive")]
    Write(#[source] io::Error),
    /// The output file could not be created or completed.
    #[error("cannot {action} `{}`", path.display())]
    Output {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
}

/// Exports `images` (cached names, in order) as one archive written to
/// `out`, which the export buffers itself.
pub fn export<W: Write>(
    store: &Store,
    images: &[Reference],
    options: &ExportOptions,
    out: W,
) -> Result<ExportReport, ExportError> {
    check_options(images, options)?;
    let mut writer = TarWriter::new(BufWriter::with_capacity(OUTPUT_BUFFER, out));
    let (exported, dropped) = match options.format {
        Format::Oci => (oci::write(store, images, options, &mut writer)?, Vec::new()),
        Format::Docker => (
            docker::write(store, images, options, &mut writer)?,
            Vec::new(),
        ),
        Format::Filesystem => write_filesystem(store, images, options, &mut writer)?,
    };
    let archive_bytes = writer.written_bytes() + 1024;
    writer.finish().map_err(ExportError::Write)?;
    Ok(ExportReport {
        images: exported,
        dropped,
        archive_bytes,
    })
}

fn check_options(images: &[Reference], options: &ExportOptions) -> Result<(), ExportError> {
    if images.is_empty() {
        return Err(ExportError::NoImages);
    }
    if options.name.is_some() && images.len() > 1 {
        return Err(ExportError::NameForSeveralImages(images.len()));
    }
    if options.all_platforms && options.format != Format::Oci {
        return Err(ExportError::AllPlatformsNeedsOci(options.format));
    }
    Ok(())
}

/// Returns the name the archive gives `reference`.
fn archive_name(reference: &Reference, options: &ExportOptions) -> String {
    options.name.as_ref().unwrap_or(reference).to_string()
}

/// Reads the one platform of each image that the options select.
fn platform_images(
    store: &Store,
    images: &[Reference],
    options: &ExportOptions,
) -> Result<Vec<(Image, ExportedImage)>, ExportError> {
    let mut seen = std::collections::BTreeSet::new();
    images
        .iter()
        .map(|reference| {
            let source = reference.to_string();
            let name = archive_name(reference, options);
            if options.format != Format::Filesystem && !seen.insert(name.clone()) {
                return Err(ExportError::DuplicateName(name));
            }
            let image = store.image(&source, &options.platform)?;
            let platform = image
                .config
                .platform()
                .or_else(|| image.descriptor.platform.clone())
                .unwrap_or_else(|| options.platform.clone());
            let exported = ExportedImage {
                source,
                name,
                root: plain_descriptor(&image.descriptor),
                platforms: vec![platform],
                platforms_left_out: 0,
            };
            Ok((image, exported))
        })
        .collect()
}

/// Returns a descriptor with only media type, digest and size.
fn plain_descriptor(descriptor: &Descriptor) -> Descriptor {
    Descriptor {
        media_type: descriptor.media_type.clone(),
        digest: descriptor.digest.clone(),
        size: descriptor.size,
        platform: None,
        annotations: Default::default(),
        extra: Default::default(),
    }
}

fn write_filesystem<W: Write>(
    store: &Store,
    images: &[Reference],
    options: &ExportOptions,
    writer: &mut TarWriter<W>,
) -> Result<(Vec<ExportedImage>, Vec<DroppedEntry>), ExportError> {
    let resolved = platform_images(store, images, options)?;
    let layers: Vec<Arc<dyn LayerSource>> = resolved
        .iter()
        .flat_map(|(image, _)| image.layers())
        .map(|descriptor| {
            let path = store.blob_path(&descriptor.digest);
            Arc::new(BlobLayer::new(descriptor.clone(), path)) as Arc<dyn LayerSource>
        })
        .collect();
    let dropped = flatten::flatten(&layers, writer, layers_ahead())?;
    Ok((resolved.into_iter().map(|(_, e)| e).collect(), dropped))
}

/// Returns how many layers to decompress ahead: one per spare core.
fn layers_ahead() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_sub(1).clamp(1, MAX_LAYERS_AHEAD)
}
