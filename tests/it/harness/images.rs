//! Images the tests build themselves: layers as real tar+gzip, configs,
//! manifests and indexes in OCI or Docker media types, pushed to the test
//! registry through the Distribution API.

use std::io::Write;

use serde_json::{Value, json};

use lkcache::Digest;
use lkcache::media_type;

use super::TestResult;

/// Which family of media types an image uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// OCI image spec types.
    Oci,
    /// Docker schema 2 types.
    Docker,
}

/// Some content with its digest.
#[derive(Debug, Clone)]
pub struct Blob {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            digest: Digest::sha256_of(&bytes),
            bytes,
            media_type: media_type.to_string(),
        }
    }

    /// Returns this blob's descriptor as JSON.
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest.to_string(),
            "size": self.bytes.len(),
        })
    }
}

/// A gzip-compressed tar layer and the digest of its uncompressed tar.
#[derive(Debug, Clone)]
pub struct Layer {
    pub blob: Blob,
    pub diff_id: Digest,
}

/// Builds a layer holding `files` (path, content), compressed with gzip.
pub fn layer(style: Style, files: &[(&str, Vec<u8>)]) -> TestResult<Layer> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append_data(&mut header, path, content.as_slice())?;
    }
    let tar = builder.into_inner()?;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&tar)?;
    let media_type = match style {
        Style::Oci => media_type::OCI_LAYER_GZIP,
        Style::Docker => media_type::DOCKER_LAYER_GZIP,
    };
    Ok(Layer {
        blob: Blob::new(media_type, gzip.finish()?),
        diff_id: Digest::sha256_of(&tar),
    })
}

/// Returns `len` bytes of text-like content that compresses as real files
/// do, different for each seed.
pub fn text(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "container",
        "image",
        "layer",
        "registry",
        "digest",
        "manifest",
        "index",
        "blob",
        "platform",
        "cache",
        "linux",
        "arm64",
        "amd64",
        "config",
        "tar",
        "gzip",
    ];
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.extend_from_slice(WORDS[(state >> 60) as usize].as_bytes());
        out.push(if state & 0x700 == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

/// Returns `len` bytes that do not compress, different for each seed: for
/// blobs that must stay large after gzip.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A single-platform image: manifest, config and layers.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Layer>,
    pub platform: Value,
}

/// Builds an image for `platform` (`os/arch[/variant]`) from `layers`.
pub fn image(style: Style, platform: &str, layers: Vec<Layer>) -> Image {
    let mut parts = platform.split('/');
    let os = parts.next().unwrap_or_default();
    let architecture = parts.next().unwrap_or_default();
    let variant = parts.next();
    let mut platform_json = json!({"os": os, "architecture": architecture});
    if let Some(variant) = variant {
        platform_json["variant"] = json!(variant);
    }
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let mut config = platform_json.clone();
    config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
    config["config"] = json!({"Cmd": ["/bin/sh"]});
    let (config_type, manifest_type) = match style {
        Style::Oci => (media_type::OCI_CONFIG, media_type::OCI_MANIFEST),
        Style::Docker => (media_type::DOCKER_CONFIG, media_type::DOCKER_MANIFEST),
    };
    let config = Blob::new(config_type, serde_json::to_vec(&config).expect("json"));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config.descriptor(),
        "layers": layers.iter().map(|l| l.blob.descriptor()).collect::<Vec<_>>(),
    });
    Image {
        manifest: Blob::new(
            manifest_type,
            serde_json::to_vec_pretty(&manifest).expect("json"),
        ),
        config,
        layers,
        platform: platform_json,
    }
}

/// An index over several images.
#[derive(Debug, Clone)]
pub struct Index {
    pub blob: Blob,
    pub images: Vec<Image>,
}

/// Builds an index (or Docker manifest list) over `images`.
pub fn index(style: Style, images: Vec<Image>) -> Index {
    let media_type = match style {
        Style::Oci => media_type::OCI_INDEX,
        Style::Docker => media_type::DOCKER_MANIFEST_LIST,
    };
    let manifests: Vec<Value> = images
        .iter()
        .map(|image| {
            let mut descriptor = image.manifest.descriptor();
            descriptor["platform"] = image.platform.clone();
            descriptor
        })
        .collect();
    let document = json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests});
    Index {
        blob: Blob::new(
            media_type,
            serde_json::to_vec_pretty(&document).expect("json"),
        ),
        images,
    }
}

/// Builds the three-platform index most tests use: linux/amd64,
/// linux/arm64/v8 and linux/arm/v7, two layers each, nothing shared.
pub fn three_platform_index(seed: u64) -> TestResult<Index> {
    let platforms = ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"];
    let mut images = Vec::new();
    for (i, platform) in platforms.iter().enumerate() {
        let seed = seed * 100 + i as u64 * 10;
        let base = layer(Style::Oci, &[("etc/os-release", text(seed, 2000))])?;
        let app = layer(Style::Oci, &[("usr/bin/app", text(seed + 1, 50_000))])?;
        images.push(image(Style::Oci, platform, vec![base, app]));
    }
    Ok(index(Style::Oci, images))
}

/// Pushes content to a registry through the Distribution API.
pub struct Pusher {
    base: String,
}

impl Pusher {
    /// Pushes to the registry at `addr` (`127.0.0.1:PORT`).
    pub fn new(addr: &str) -> Pusher {
        Pusher {
            base: format!("http://{addr}"),
        }
    }

    /// Uploads a blob with a monolithic upload.
    pub fn blob(&self, repo: &str, blob: &Blob) -> TestResult<()> {
        let agent = ureq::agent();
        let start = agent
            .post(&format!("{}/v2/{repo}/blobs/uploads/", self.base))
            .send_empty()?;
        let location = start
            .headers()
            .get("location")
            .ok_or("upload answer without Location")?
            .to_str()?
            .to_string();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        agent
            .put(&format!("{location}{separator}digest={}", blob.digest))
            .header("Content-Type", "application/octet-stream")
            .send(&blob.bytes[..])?;
        Ok(())
    }

    /// Uploads a manifest or index under `target` (a tag or digest).
    pub fn manifest(&self, repo: &str, target: &str, blob: &Blob) -> TestResult<()> {
        ureq::put(&format!("{}/v2/{repo}/manifests/{target}", self.base))
            .header("Content-Type", &blob.media_type)
            .send(&blob.bytes[..])?;
        Ok(())
    }

    /// Pushes a single-platform image under `tag`.
    pub fn image(&self, repo: &str, tag: &str, image: &Image) -> TestResult<()> {
        self.image_content(repo, image)?;
        self.manifest(repo, tag, &image.manifest)
    }

    /// Pushes an index and all its images under `tag`.
    pub fn index(&self, repo: &str, tag: &str, index: &Index) -> TestResult<()> {
        for image in &index.images {
            self.image_content(repo, image)?;
            self.manifest(repo, &image.manifest.digest.to_string(), &image.manifest)?;
        }
        self.manifest(repo, tag, &index.blob)
    }

    fn image_content(&self, repo: &str, image: &Image) -> TestResult<()> {
        for layer in &image.layers {
            self.blob(repo, &layer.blob)?;
        }
        self.blob(repo, &image.config)
    }
}
