//! The media types of the OCI image spec and of Docker's image manifest
//! v2 schema 2, and what each one means to the cache.
//!
//! Registries speak both families; lkcache treats an OCI index and a Docker
//! manifest list alike, and an OCI manifest and a Docker schema 2 manifest
//! alike. Docker's schema 1 is recognised only to refuse it clearly.

/// An OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// An OCI layer, uncompressed tar.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// An OCI layer, gzip-compressed tar.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// An OCI layer, zstd-compressed tar.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// A Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// A Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// A Docker layer, uncompressed tar (as `docker save` archives hold them).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// A Docker layer, gzip-compressed tar.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// A Docker image manifest, schema 1 (unsigned).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// A Docker image manifest, schema 1, signed.
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The `Accept` header for manifest requests: every type lkcache can store,
/// and nothing of schema 1, so that a registry converts where it can.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// What a manifest-like document is, judged by its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An OCI index or Docker manifest list: it names platform manifests.
    Index,
    /// An OCI or Docker schema 2 image manifest: it names a config and layers.
    Manifest,
    /// Docker schema 1, which lkcache does not support.
    Schema1,
}

/// Classifies a manifest media type; `None` when it is not a manifest type.
pub fn manifest_kind(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Manifest),
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Some(ManifestKind::Schema1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_manifest_media_types() {
        let cases = [
            (OCI_INDEX, Some(ManifestKind::Index)),
            (DOCKER_MANIFEST_LIST, Some(ManifestKind::Index)),
            (OCI_MANIFEST, Some(ManifestKind::Manifest)),
            (DOCKER_MANIFEST, Some(ManifestKind::Manifest)),
            (DOCKER_SCHEMA1_SIGNED, Some(ManifestKind::Schema1)),
            (OCI_CONFIG, None),
            (OCI_LAYER_GZIP, None),
        ];
        for (media_type, kind) in cases {
            assert_eq!(manifest_kind(media_type), kind, "{media_type}");
        }
    }

    #[test]
    fn accept_header_names_every_storable_manifest_type() {
        for media_type in [
            OCI_INDEX,
            DOCKER_MANIFEST_LIST,
            OCI_MANIFEST,
            DOCKER_MANIFEST,
        ] {
            assert!(MANIFEST_ACCEPT.contains(media_type), "{media_type}");
        }
        assert!(!MANIFEST_ACCEPT.contains("v1+prettyjws"));
    }
}
