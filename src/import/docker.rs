//! Resolving a Docker archive, as `docker save` writes it: `manifest.json`
//! lists each image's config file, its `RepoTags` and its layer files.
//!
//! Legacy archives hold each layer as an uncompressed tar
//! (`<id>/layer.tar`, or `<diff-id>.tar` with links from `<id>/layer.tar`)
//! whose name says nothing of its digest: it was hashed as it streamed in,
//! and here it must hash to the diff ID its config lists in its place; a
//! layer compressed with gzip is accepted too when it decompresses to its
//! diff ID. A config named `<hex>.json` must hash to that hex.
//!
//! The archive holds no manifest, so lkcache writes one: an OCI image
//! manifest over the config and layers, with layers of media type
//! `application/vnd.oci.image.layer.v1.tar` whose digests are their diff
//! IDs. The same archive always gives the same manifest digest. OCI rather
//! than Docker schema 2, as `skopeo copy docker-archive:… oci:…` converts
//! too: the cache is an OCI layout, and containers/image (skopeo, podman,
//! buildah) and umoci find only OCI manifests in one.

use std::io::{self, Read, Write};

use flate2::read::MultiGzDecoder;

use serde::Deserialize;

use crate::digest::{Algorithm, Digest, Hasher};
use crate::manifest::{Descriptor, ImageConfig, ImageManifest};
use crate::media_type;
use crate::reference::Reference;
use crate::store::ingest::IngestedBlob;

use super::naming::{self, ArchiveName};
use super::plan::{Plan, Root, descriptor};
use super::scan::{self, Contents};
use super::{ImportError, entry, oci};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Docker's list of images in an archive.
pub(super) const MANIFEST_JSON: &str = "manifest.json";

/// One image of `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// The parts of a Docker image config read here.
#[derive(Debug, Deserialize)]
struct Config {
    rootfs: RootFs,
    #[serde(flatten)]
    image: ImageConfig,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

/// Resolves `manifest.json` into a plan, checking every layer against its
/// diff ID.
pub(super) fn plan(contents: &Contents) -> Result<Plan, ImportError> {
    let images: Vec<ArchiveImage> = oci::parse_document(contents, MANIFEST_JSON)?;
    let mut plan = Plan::default();
    for image in &images {
        plan_image(contents, &mut plan, image)?;
    }
    if plan.roots().is_empty() {
        return Err(ImportError::NoImages(MANIFEST_JSON));
    }
    Ok(plan)
}

/// Returns each `manifest.json` image's config digest with its names, for
/// an OCI layout that has a `manifest.json` beside it; empty without one.
pub(super) fn names_by_config(
    contents: &Contents,
) -> Result<Vec<(Digest, Vec<Reference>)>, ImportError> {
    if contents.document(MANIFEST_JSON).is_none() {
        return Ok(Vec::new());
    }
    let images: Vec<ArchiveImage> = oci::parse_document(contents, MANIFEST_JSON)?;
    let mut names = Vec::new();
    for image in &images {
        let Some(digest) = entry::clean(&image.config).and_then(|path| contents.file(&path)) else {
            continue;
        };
        let tags = repo_tags(image)?
            .into_iter()
            .filter_map(|name| match name {
                ArchiveName::Full(reference) => Some(reference),
                ArchiveName::BareTag(_) => None,
            })
            .collect();
        names.push((digest.clone(), tags));
    }
    Ok(names)
}

fn plan_image(
    contents: &Contents,
    plan: &mut Plan,
    image: &ArchiveImage,
) -> Result<(), ImportError> {
    let (config_path, config_blob) = find(contents, &image.config)?;
    let config_bytes = scan::read_staged(config_blob, &config_path)?;
    check_config_name(&config_path, config_blob.digest())?;
    let config: Config =
        serde_json::from_slice(&config_bytes).map_err(|source| ImportError::InvalidJson {
            entry: config_path.clone(),
            source,
        })?;
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != image.layers.len() {
        return Err(ImportError::LayerCount {
            config: config_path,
            layers: image.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }

    let mut layers = Vec::with_capacity(diff_ids.len());
    for (path, diff_id) in image.layers.iter().zip(diff_ids) {
        let (layer_path, blob) = find(contents, path)?;
        let media_type = layer_media_type(blob, &layer_path, diff_id)?;
        layers.push(descriptor(media_type, blob.digest(), blob.size_bytes()));
    }
    let config_descriptor = descriptor(
        media_type::OCI_CONFIG,
        config_blob.digest(),
        config_blob.size_bytes(),
    );
    for layer in &layers {
        plan.add(layer);
    }
    plan.add(&config_descriptor);
    let manifest_bytes = image_manifest(&config_descriptor, &layers);
    let manifest = Descriptor::of_bytes(media_type::OCI_MANIFEST, &manifest_bytes);
    plan.add_made(&manifest, manifest_bytes);

    plan.add_root(Root {
        descriptor: manifest,
        names: repo_tags(image)?,
        platforms: config.image.platform().into_iter().collect(),
    });
    Ok(())
}

/// Finds the staged file `manifest.json` names by `path`.
fn find<'a>(contents: &'a Contents, path: &str) -> Result<(String, &'a IngestedBlob), ImportError> {
    let cleaned = entry::clean(path).ok_or_else(|| ImportError::UnsafePath {
        entry: path.to_string(),
    })?;
    contents
        .file(&cleaned)
        .and_then(|digest| contents.staged(digest))
        .map(|blob| (cleaned, blob))
        .ok_or_else(|| ImportError::MissingEntry {
            path: path.to_string(),
        })
}

/// Checks a config file named `<hex>.json` (or `blobs/sha256/<hex>`,
/// checked as it came in) against its content.
fn check_config_name(path: &str, digest: &Digest) -> Result<(), ImportError> {
    let file_name = path.rsplit('/').next().unwrap_or(path);
    let Some(hex) = file_name.strip_suffix(".json") else {
        return Ok(());
    };
    let is_digest = hex.len() == Algorithm::Sha256.hex_len()
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if is_digest && hex != digest.hex() {
        return Err(ImportError::DigestMismatch {
            entry: path.to_string(),
            actual: digest.clone(),
        });
    }
    Ok(())
}

/// Returns the media type of the layer at `path`, after checking that it
/// is, or decompresses to, the `diff_id` its config lists.
fn layer_media_type(
    blob: &IngestedBlob,
    path: &str,
    diff_id: &Digest,
) -> Result<&'static str, ImportError> {
    if blob.digest() == diff_id {
        return Ok(media_type::OCI_LAYER_TAR);
    }
    let read_error = |source| ImportError::Read {
        entry: path.to_string(),
        source,
    };
    let mut magic = [0u8; 2];
    let is_gzip = blob.open()?.read_exact(&mut magic).is_ok() && magic == GZIP_MAGIC;
    let actual = if is_gzip {
        let mut hashing = HashingSink(Hasher::new(diff_id.algorithm()));
        io::copy(&mut MultiGzDecoder::new(blob.open()?), &mut hashing).map_err(read_error)?;
        hashing.0.finish()
    } else {
        blob.digest().clone()
    };
    if &actual == diff_id {
        Ok(media_type::OCI_LAYER_GZIP)
    } else {
        Err(ImportError::DiffId {
            entry: path.to_string(),
            expected: diff_id.clone(),
            actual,
        })
    }
}

/// Reads `RepoTags`, each a full reference.
fn repo_tags(image: &ArchiveImage) -> Result<Vec<ArchiveName>, ImportError> {
    image
        .repo_tags
        .iter()
        .flatten()
        .map(|tag| naming::full_reference(tag).map(ArchiveName::Full))
        .collect()
}

/// Writes the OCI image manifest of a config and its layers.
fn image_manifest(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_string()),
        config: config.clone(),
        layers: layers.to_vec(),
    };
    serde_json::to_vec(&manifest).expect("a manifest always serialises")
}

/// A writer that only hashes.
struct HashingSink(Hasher);

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::import::{ImportOptions, import};
    use crate::platform::Platform;
    use crate::store::Store;

    use crate::import::test_tar::{TestResult, tar_of};

    fn gzip(bytes: &[u8]) -> TestResult<Vec<u8>> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes)?;
        Ok(encoder.finish()?)
    }

    /// The two layers of the legacy archive, uncompressed.
    fn layer_tars() -> TestResult<[Vec<u8>; 2]> {
        Ok([tar_of(&[("a", b"first")])?, tar_of(&[("b", b"second")])?])
    }

    /// A legacy archive with a plain and a gzip layer, whose config lists
    /// `diff_ids`; returns the archive and the config.
    fn legacy_archive(diff_ids: &[Digest]) -> TestResult<(Vec<u8>, Vec<u8>)> {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "arm64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))?;
        let config_name = format!("{}.json", Digest::sha256_of(&config).hex());
        let manifest = serde_json::json!([{
            "Config": config_name,
            "RepoTags": ["legacy:1"],
            "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
        }]);
        let [plain, compressed] = layer_tars()?;
        let archive = tar_of(&[
            (&config_name, &config),
            ("aaa/layer.tar", &plain),
            ("bbb/layer.tar", &gzip(&compressed)?),
            ("manifest.json", &serde_json::to_vec(&manifest)?),
        ])?;
        Ok((archive, config))
    }

    fn diff_ids() -> TestResult<Vec<Digest>> {
        Ok(layer_tars()?.iter().map(|t| Digest::sha256_of(t)).collect())
    }

    #[test]
    fn stores_legacy_layers_under_their_diff_ids_beneath_an_oci_manifest() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let (archive, config) = legacy_archive(&diff_ids()?)?;

        let imported = import(&store, archive.as_slice(), &ImportOptions::default())?;
        let again = import(&store, archive.as_slice(), &ImportOptions::default())?;

        assert_eq!(imported[0].names, ["docker.io/library/legacy:1"]);
        assert_eq!(imported[0].root.media_type, media_type::OCI_MANIFEST);
        assert_eq!(again[0].root, imported[0].root);
        let image = store.image(
            "docker.io/library/legacy:1",
            &Platform::parse("linux/arm64")?,
        )?;
        assert_eq!(image.config_bytes, config);
        let layers: Vec<(&str, &Digest)> = image
            .layers()
            .iter()
            .map(|l| (l.media_type.as_str(), &l.digest))
            .collect();
        assert_eq!(layers[0], (media_type::OCI_LAYER_TAR, &diff_ids()?[0]));
        assert_eq!(layers[1].0, media_type::OCI_LAYER_GZIP);
        Ok(())
    }

    #[test]
    fn refuses_a_layer_that_is_not_its_diff_id() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let mut wrong = diff_ids()?;
        wrong[0] = Digest::sha256_of(b"something else");
        let (archive, _) = legacy_archive(&wrong)?;

        let result = import(&store, archive.as_slice(), &ImportOptions::default());

        assert!(
            matches!(&result, Err(ImportError::DiffId { entry, .. }) if entry == "aaa/layer.tar"),
            "{result:?}"
        );
        assert!(store.read_index()?.manifests.is_empty());
        Ok(())
    }

    #[test]
    fn refuses_a_config_whose_name_is_another_digest() {
        let config = Digest::sha256_of(b"config");
        let lying = check_config_name(&format!("{}.json", "0".repeat(64)), &config);
        assert!(
            matches!(lying, Err(ImportError::DigestMismatch { .. })),
            "{lying:?}"
        );
        assert!(check_config_name("config.json", &config).is_ok());
        assert!(check_config_name(&format!("{}.json", config.hex()), &config).is_ok());
    }
}
