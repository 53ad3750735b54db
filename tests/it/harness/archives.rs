//! Image archives for the import tests: made by skopeo from images in the
//! test registry, or by hand from the images built here, and taken apart
//! and put back together so that a test can rename, alter, drop or add
//! entries, hostile ones included (absolute names, `..`, lying blobs).

use std::io::Read;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use super::images::{Blob, Image, Index};
use super::{TestResult, require_tool};

/// Runs skopeo and returns what it printed, or fails with its errors.
pub fn skopeo(args: &[&str]) -> TestResult<String> {
    let output = Command::new(require_tool("skopeo", "skopeo")?)
        .args(args)
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "skopeo {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// Copies `image` (`127.0.0.1:PORT/repo:tag`) from the test registry to
/// `destination` (`oci-archive:FILE:NAME`, `docker-archive:FILE:NAME`),
/// every platform of an index when `all` is set.
pub fn skopeo_copy(image: &str, destination: &str, all: bool) -> TestResult<()> {
    let source = format!("docker://{image}");
    let mut args = vec!["copy", "--quiet", "--src-tls-verify=false"];
    if all {
        args.push("--all");
    }
    args.extend([source.as_str(), destination]);
    skopeo(&args).map(drop)
}

/// One entry of a tar archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name exactly as it is written in the archive.
    pub name: String,
    /// What the entry is.
    pub kind: Kind,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file and its content.
    File(Vec<u8>),
    /// A directory.
    Dir,
    /// A symbolic link and its target.
    Symlink(String),
}

impl Entry {
    /// Returns a regular file entry.
    pub fn file(name: &str, content: impl Into<Vec<u8>>) -> Entry {
        Entry {
            name: name.to_string(),
            kind: Kind::File(content.into()),
        }
    }
}

/// Reads every entry of a tar archive into memory.
pub fn read_tar(tar: &[u8]) -> TestResult<Vec<Entry>> {
    let mut archive = tar::Archive::new(tar);
    let mut entries = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = String::from_utf8(entry.path_bytes().into_owned())?;
        let entry_type = entry.header().entry_type();
        let kind = if entry_type.is_dir() {
            Kind::Dir
        } else if entry_type.is_symlink() {
            let target = entry.link_name_bytes().ok_or("symlink without target")?;
            Kind::Symlink(String::from_utf8(target.into_owned())?)
        } else {
            let mut content = Vec::new();
            entry.read_to_end(&mut content)?;
            Kind::File(content)
        };
        entries.push(Entry { name, kind });
    }
    Ok(entries)
}

/// Writes entries into a tar archive with their names exactly as given,
/// `..` and absolute ones too, which `tar::Builder` would refuse.
pub fn write_tar(entries: &[Entry]) -> TestResult<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1_700_000_000);
        let content: &[u8] = match &entry.kind {
            Kind::File(content) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                content
            }
            Kind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                &[]
            }
            Kind::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                set_raw(&mut header.as_gnu_mut().ok_or("gnu")?.linkname, target)?;
                &[]
            }
        };
        header.set_size(content.len() as u64);
        set_raw(&mut header.as_gnu_mut().ok_or("gnu")?.name, &entry.name)?;
        header.set_cksum();
        builder.append(&header, content)?;
    }
    Ok(builder.into_inner()?)
}

fn set_raw(field: &mut [u8; 100], value: &str) -> TestResult<()> {
    if value.len() > field.len() {
        return Err(format!("`{value}` is too long for a plain tar header").into());
    }
    field.fill(0);
    field[..value.len()].copy_from_slice(value.as_bytes());
    Ok(())
}

/// Returns the blobs of an image: layers, config, manifest.
pub fn image_blobs(image: &Image) -> Vec<&Blob> {
    let mut blobs: Vec<&Blob> = image.layers.iter().map(|l| &l.blob).collect();
    blobs.push(&image.config);
    blobs.push(&image.manifest);
    blobs
}

/// Returns the blobs of an index and all its images.
pub fn index_blobs(index: &Index) -> Vec<&Blob> {
    let mut blobs: Vec<&Blob> = index.images.iter().flat_map(image_blobs).collect();
    blobs.push(&index.blob);
    blobs
}

/// Returns the entries of an OCI layout holding `blobs`, whose
/// `index.json` has one entry for `root` with `annotations`.
pub fn oci_layout(root: &Blob, annotations: Value, blobs: &[&Blob]) -> Vec<Entry> {
    let mut descriptor = root.descriptor();
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        descriptor["annotations"] = annotations;
    }
    let index = json!({"schemaVersion": 2, "manifests": [descriptor]});
    let mut entries = vec![
        Entry::file("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#),
        Entry::file("index.json", serde_json::to_vec(&index).expect("json")),
    ];
    entries.extend(
        blobs
            .iter()
            .map(|blob| Entry::file(&blob_entry(blob), blob.bytes.clone())),
    );
    entries
}

/// Returns the name of a blob's entry in an OCI layout.
pub fn blob_entry(blob: &Blob) -> String {
    format!("blobs/sha256/{}", blob.digest.hex())
}

/// Writes an archive to a file in `dir` and returns its path as a string.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> TestResult<String> {
    let path = dir.join(name);
    std::fs::write(&path, bytes)?;
    Ok(path.display().to_string())
}
