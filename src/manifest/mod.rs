//! Descriptors, manifests, indexes and image configs: the JSON documents of
//! the OCI image spec (descriptor.md, manifest.md, image-index.md,
//! config.md) and their Docker schema 2 twins.
//!
//! These types are for reading. A document's identity is its raw bytes: the
//! digest covers them, and re-serialising a parsed document may change them,
//! so lkcache stores and serves the bytes it received, never a re-encoding.
//! Fields lkcache does not use are kept in `extra`, so that a descriptor read
//! from another tool's `index.json` is written back whole.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_type::{self, ManifestKind};
use crate::platform::Platform;

mod decode;

/// The largest manifest or index lkcache accepts, as registries commonly
/// limit them: anything bigger is refused before it is read whole.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// The annotation that names an image in an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The annotation in which containerd (and BuildKit) record an image's
/// full name in an OCI layout's `index.json`.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The annotation by which BuildKit ties an attestation manifest to the
/// platform manifest it describes.
pub const ANNOTATION_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// A descriptor: the media type, digest and size of a piece of content.
/// (Decoded in [`decode`], in one pass.)
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the content described.
    pub media_type: String,
    /// The digest of the content.
    pub digest: Digest,
    /// The size of the content in bytes.
    pub size: u64,
    /// The platform of an image manifest named by an index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations, sorted by key.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Fields lkcache does not interpret, kept as they were.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Descriptor {
    /// Returns a descriptor of `bytes` with `media_type`.
    pub fn of_bytes(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: Digest::sha256_of(bytes),
            size: bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
            extra: serde_json::Map::new(),
        }
    }

    /// Returns the image name this descriptor carries in `index.json`.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations
            .get(ANNOTATION_REF_NAME)
            .map(String::as_str)
    }

    /// Tells whether this names a BuildKit attestation manifest (platform
    /// `unknown/unknown`) and, if so, returns the manifest it describes.
    pub fn attests(&self) -> Option<&str> {
        let platform = self.platform.as_ref()?;
        if platform.os != "unknown" || platform.architecture != "unknown" {
            return None;
        }
        self.annotations
            .get(ANNOTATION_REFERENCE_DIGEST)
            .map(String::as_str)
    }
}

/// An image manifest (OCI, or Docker schema 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// The media type, when the document states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// The layers, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

impl ImageManifest {
    /// Returns the config and then every layer: the blobs this manifest needs.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }
}

/// An image index (OCI), or manifest list (Docker). (Decoded in
/// [`decode`], in one pass.)
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// The media type, when the document states it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests this index names.
    pub manifests: Vec<Descriptor>,
    /// Fields lkcache does not interpret, kept as they were.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ImageIndex {
    /// Returns the entries that are runnable images, leaving out
    /// attestations.
    pub fn platform_manifests(&self) -> impl Iterator<Item = &Descriptor> {
        self.manifests.iter().filter(|d| d.attests().is_none())
    }

    /// Returns the attestation manifests that describe `digest`.
    pub fn attestations_of<'a>(
        &'a self,
        digest: &'a Digest,
    ) -> impl Iterator<Item = &'a Descriptor> {
        let wanted = digest.to_string();
        self.manifests
            .iter()
            .filter(move |d| d.attests() == Some(wanted.as_str()))
    }
}

/// The parts of an image config that lkcache reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfig {
    /// The operating system the image runs on.
    #[serde(default)]
    pub os: String,
    /// The CPU architecture the image runs on.
    #[serde(default)]
    pub architecture: String,
    /// The CPU variant, such as `v7`.
    #[serde(default)]
    pub variant: Option<String>,
}

impl ImageConfig {
    /// Returns the platform the config names, or `None` when it names none.
    pub fn platform(&self) -> Option<Platform> {
        if self.os.is_empty() || self.architecture.is_empty() {
            return None;
        }
        let platform = Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
            os_version: None,
            os_features: Vec::new(),
        };
        Some(platform.normalize())
    }
}

/// A manifest or index, parsed.
#[derive(Debug, Clone)]
pub enum Manifest {
    /// An index or manifest list.
    Index(ImageIndex),
    /// An image manifest.
    Image(Box<ImageManifest>),
}

/// Why a manifest document cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A Docker schema 1 manifest.
    #[error(
        "the image uses Docker's manifest schema 1, which lkcache does not support; \
         push it again with a current Docker or BuildKit to get schema 2 or OCI"
    )]
    Schema1,
    /// A media type that is not a manifest or index.
    #[error("`{0}` is not an image manifest or index media type")]
    UnknownMediaType(String),
    /// The JSON does not have the shape of its media type.
    #[error("the {kind} is not valid JSON of its type")]
    Malformed {
        /// "manifest" or "index".
        kind: &'static str,
        /// What the parser found.
        #[source]
        source: serde_json::Error,
    },
}

/// Parses `bytes` as a manifest or index.
///
/// The media type comes from the document's own `mediaType` field when it
/// has one, otherwise from `declared` (the `Content-Type` a registry sent,
/// or the media type of the descriptor that named it).
pub fn parse(bytes: &[u8], declared: &str) -> Result<(Manifest, String), ManifestError> {
    let media_type = detect_media_type(bytes, declared);
    match media_type::manifest_kind(&media_type) {
        Some(ManifestKind::Index) => serde_json::from_slice(bytes)
            .map(|index| (Manifest::Index(index), media_type))
            .map_err(|source| ManifestError::Malformed {
                kind: "index",
                source,
            }),
        Some(ManifestKind::Manifest) => serde_json::from_slice(bytes)
            .map(|image| (Manifest::Image(Box::new(image)), media_type))
            .map_err(|source| ManifestError::Malformed {
                kind: "manifest",
                source,
            }),
        Some(ManifestKind::Schema1) => Err(ManifestError::Schema1),
        None => Err(ManifestError::UnknownMediaType(media_type)),
    }
}

/// Works out a document's media type: its own `mediaType` field first, then
/// the declared type, then its shape (schema 1 documents and some OCI
/// documents carry no `mediaType`).
fn detect_media_type(bytes: &[u8], declared: &str) -> String {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let probe: Option<Probe> = serde_json::from_slice(bytes).ok();
    let Some(probe) = probe else {
        return declared.to_string();
    };
    if let Some(media_type) = probe.media_type.filter(|m| !m.is_empty()) {
        return media_type;
    }
    if probe.schema_version == Some(1) {
        return media_type::DOCKER_SCHEMA1.to_string();
    }
    if media_type::manifest_kind(declared).is_some() {
        return declared.to_string();
    }
    if probe.manifests.is_some() {
        media_type::OCI_INDEX.to_string()
    } else if probe.config.is_some() {
        media_type::OCI_MANIFEST.to_string()
    } else {
        declared.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG_DIGEST: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn manifest_json(media_type: Option<&str>) -> String {
        let media_type = media_type
            .map(|m| format!(r#""mediaType":"{m}","#))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{media_type}"config":{{"mediaType":"{}","digest":"{CONFIG_DIGEST}","size":0}},"layers":[]}}"#,
            media_type::OCI_CONFIG
        )
    }

    #[test]
    fn parses_manifests_by_their_own_media_type_then_the_declared_one() {
        let cases = [
            (
                manifest_json(Some(media_type::DOCKER_MANIFEST)),
                "application/json",
            ),
            (manifest_json(None), media_type::OCI_MANIFEST),
            (manifest_json(None), "application/octet-stream"),
        ];
        for (doc, declared) in cases {
            let (parsed, _) = parse(doc.as_bytes(), declared).expect(declared);
            assert!(matches!(parsed, Manifest::Image(_)), "{declared}");
        }
    }

    #[test]
    fn refuses_schema1_and_unknown_types() {
        let schema1 = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(matches!(
            parse(schema1, "application/json"),
            Err(ManifestError::Schema1)
        ));
        let other = br#"{"schemaVersion":2,"mediaType":"text/plain"}"#;
        assert!(matches!(
            parse(other, ""),
            Err(ManifestError::UnknownMediaType(_))
        ));
    }

    #[test]
    fn refuses_sizes_beyond_int64() {
        for (size, valid) in [
            ("9223372036854775807", true),
            ("9223372036854775808", false),
            ("-1", false),
        ] {
            let text = format!(
                r#"{{"mediaType":"{}","digest":"{CONFIG_DIGEST}","size":{size}}}"#,
                media_type::OCI_LAYER_GZIP
            );
            assert_eq!(
                serde_json::from_str::<Descriptor>(&text).is_ok(),
                valid,
                "{size}"
            );
        }
    }

    #[test]
    fn keeps_unknown_descriptor_fields() {
        let text = format!(
            r#"{{"mediaType":"{}","digest":"{CONFIG_DIGEST}","size":3,"artifactType":"x/y"}}"#,
            media_type::OCI_MANIFEST
        );
        let descriptor: Descriptor = serde_json::from_str(&text).unwrap();
        let again = serde_json::to_value(&descriptor).unwrap();
        assert_eq!(again["artifactType"], "x/y");
    }
}
