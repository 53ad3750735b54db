//! The `docker` export: an archive that `docker load` accepts, in the shape
//! Docker 25 and later save: `manifest.json` listing, for each image, its
//! config, its tags and its layers, which are stored under
//! `blobs/sha256/<hex>` exactly as the cache holds them (compressed:
//! `docker load` and skopeo's `docker-archive:` transport decompress them).
//!
//! One platform per image. `RepoTags` holds the familiar form of each tagged
//! name (`alpine:3.19`), as `docker save` writes it; an image named only by
//! digest gets no tag, since Docker refuses a digest there, and loads
//! untagged.

use std::collections::BTreeSet;
use std::io::Write;

use serde_json::json;

use crate::reference::Reference;
use crate::store::Store;

use super::archive::{EntryMeta, TarWriter};
use super::oci::{append_blob, append_directory, blob_path};
use super::{ExportError, ExportOptions, ExportedImage, platform_images};

/// Writes the Docker archive of `images`.
pub(super) fn write<W: Write>(
    store: &Store,
    images: &[Reference],
    options: &ExportOptions,
    writer: &mut TarWriter<W>,
) -> Result<Vec<ExportedImage>, ExportError> {
    let resolved = platform_images(store, images, options)?;

    let algorithms: BTreeSet<&str> = resolved
        .iter()
        .flat_map(|(image, _)| image.manifest.blobs())
        .map(|blob| blob.digest.algorithm().name())
        .collect();
    append_directory(writer, "blobs/")?;
    for algorithm in algorithms {
        append_directory(writer, &format!("blobs/{algorithm}/"))?;
    }

    let mut written = BTreeSet::new();
    let mut manifest = Vec::new();
    for (reference, (image, _)) in images.iter().zip(&resolved) {
        let config = &image.manifest.config;
        if written.insert(config.digest.clone()) {
            let meta = EntryMeta::file(image.config_bytes.len() as u64);
            writer
                .append_bytes(
                    blob_path(&config.digest).as_bytes(),
                    &meta,
                    &image.config_bytes,
                )
                .map_err(ExportError::Write)?;
        }
        for layer in image.layers() {
            if written.insert(layer.digest.clone()) {
                append_blob(store, layer, writer)?;
            }
        }
        let name = options.name.as_ref().unwrap_or(reference);
        manifest.push(json!({
            "Config": blob_path(&config.digest),
            "RepoTags": repo_tags(name),
            "Layers": image.layers().iter().map(|l| blob_path(&l.digest)).collect::<Vec<_>>(),
        }));
    }

    let manifest = serde_json::to_vec(&manifest).expect("JSON values always serialise");
    writer
        .append_bytes(
            b"manifest.json",
            &EntryMeta::file(manifest.len() as u64),
            &manifest,
        )
        .map_err(ExportError::Write)?;
    Ok(resolved.into_iter().map(|(_, exported)| exported).collect())
}

/// Returns the `RepoTags` of an image named `name`: its familiar form when
/// it has a tag, nothing when it is named by digest alone.
fn repo_tags(name: &Reference) -> Vec<String> {
    match name.tag() {
        Some(_) => vec![name.familiar()],
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_images_in_their_familiar_form_and_leaves_digests_untagged() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let cases: &[(&str, &[&str])] = &[
            ("alpine:3.19", &["alpine:3.19"]),
            ("docker.io/library/alpine", &["alpine:latest"]),
            ("localhost:5000/app:v1", &["localhost:5000/app:v1"]),
            (&format!("alpine@{digest}"), &[]),
        ];
        for (name, expected) in cases {
            let reference: Reference = name.parse().unwrap();
            assert_eq!(repo_tags(&reference), *expected, "{name}");
        }
    }
}
