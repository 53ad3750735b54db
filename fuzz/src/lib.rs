//! The properties lkcache's fuzz targets check, one function per target.
//!
//! Each `check_*` function takes the raw fuzz input and panics when a
//! property fails, which is what libFuzzer reports as a crash. The fuzz
//! targets in `fuzz_targets/` only call them; `tests/fuzz_regressions.rs`
//! includes this file by path and replays the crash inputs through the very
//! same functions, so a regression test checks exactly what the fuzzer
//! checked. The file therefore depends only on crates lkcache itself
//! depends on (`serde_json`, `flate2`, `zstd`, and `tempfile` for tests).
//!
//! The properties: parsers never panic; what parses prints back to text
//! that parses to the same value; normalising is idempotent; reading a
//! cache never changes it; and an import either succeeds with a cache that
//! verifies, or fails leaving `index.json` and `blobs/` as they were.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use lkcache::digest::Digest;
use lkcache::import::{ImportError, ImportOptions};
use lkcache::manifest::{self, Descriptor, ImageConfig, Manifest};
use lkcache::media_type::{self, ManifestKind};
use lkcache::{Platform, Reference, Store};

/// The media types the `manifest` target declares for a document, chosen
/// by the input's first byte (modulo the length).
pub const DECLARED_MEDIA_TYPES: [&str; 10] = [
    "",
    media_type::OCI_INDEX,
    media_type::OCI_MANIFEST,
    media_type::DOCKER_MANIFEST_LIST,
    media_type::DOCKER_MANIFEST,
    media_type::DOCKER_SCHEMA1,
    media_type::DOCKER_SCHEMA1_SIGNED,
    "application/json",
    "application/octet-stream",
    media_type::OCI_CONFIG,
];

/// Separates `index.json` from the blobs in an `index_json` input.
pub const BLOB_SEPARATOR: &[u8] = b"\n--lkcache-fuzz-blob--\n";

/// The most an archive compressed whole may expand to before the `import`
/// target skips it: a decompression bomb is slow, not wrong.
pub const MAX_ARCHIVE_BYTES: u64 = 256 << 10;

/// The name the `import` target gives when the archive needs one.
const IMPORT_NAME: &str = "example.com/fuzz/imported:latest";

/// Checks reference and digest parsing of the input's UTF-8 prefix: no
/// panic; a parsed reference has exactly one of tag and digest, and both
/// its full form (`Display`) and its familiar form parse back to it; a
/// parsed digest prints as written.
pub fn check_reference(input: &[u8]) {
    let input = text(input);
    let _ = lkcache::reference::parse_unnormalized(input);
    if let Ok(digest) = input.parse::<Digest>() {
        assert_eq!(
            digest.to_string(),
            input,
            "a digest prints as it was written"
        );
    }
    let Ok(reference) = input.parse::<Reference>() else {
        return;
    };
    assert!(
        reference.tag().is_some() != reference.digest().is_some(),
        "`{input}` parsed to {reference:?}, which lacks a tag or a digest, or has both"
    );
    let shown = reference.to_string();
    let again = shown
        .parse::<Reference>()
        .unwrap_or_else(|e| panic!("`{input}` prints as `{shown}`, which does not parse: {e}"));
    assert_eq!(
        again, reference,
        "`{input}` prints as `{shown}`, which parses to another reference"
    );
    let plain = lkcache::reference::parse_unnormalized(&shown)
        .unwrap_or_else(|e| panic!("`{shown}` does not parse without normalising: {e}"));
    assert_eq!(
        (
            plain.domain.as_str(),
            plain.path.as_str(),
            plain.digest.as_ref()
        ),
        (
            reference.domain(),
            reference.repository(),
            reference.digest()
        ),
        "`{shown}` parses to other parts without normalising"
    );
    // The familiar form is what users see, and what a Docker archive's
    // `RepoTags` holds: it must name the same image.
    let familiar = reference.familiar();
    let again = familiar.parse::<Reference>();
    assert_eq!(
        again.as_ref(),
        Ok(&reference),
        "`{input}` is `{shown}`, whose familiar form `{familiar}` names another image"
    );
    let _ = (reference.is_loopback(), reference.registry_host());
}

/// Checks platform parsing of the input's UTF-8 prefix: no panic; `FromStr` is `parse` then
/// `normalize`; normalising is idempotent; a parsed platform's `Display`
/// and `format_all` strings parse back to it.
pub fn check_platform(input: &[u8]) {
    let spec = text(input);
    check_platform_value(&raw_platform(spec));
    let parsed = Platform::parse(spec);
    let from_str = spec.parse::<Platform>();
    match (&parsed, &from_str) {
        (Ok(platform), Ok(normalized)) => assert_eq!(
            &platform.normalize(),
            normalized,
            "`{spec}`: FromStr is not parse then normalize"
        ),
        (Err(a), Err(b)) => assert_eq!(a, b, "`{spec}`: parse and FromStr fail differently"),
        _ => panic!("`{spec}`: parse gives {parsed:?} but FromStr gives {from_str:?}"),
    }
    let Ok(platform) = parsed else {
        return;
    };
    check_platform_value(&platform);

    let normalized = platform.normalize();
    let shown = normalized.to_string();
    let expected = Platform {
        os_version: None,
        os_features: Vec::new(),
        ..normalized.clone()
    };
    let again = shown.parse::<Platform>();
    assert_eq!(
        again,
        Ok(expected),
        "`{spec}` prints as `{shown}`, which parses otherwise"
    );

    let all = platform.format_all();
    let again = Platform::parse(&all).map(|p| p.normalize());
    assert_eq!(
        again,
        Ok(normalized),
        "`{spec}` formats all as `{all}`, which parses otherwise"
    );
}

/// Checks what holds for any platform value, parsed or not: normalising is
/// idempotent and printing does not panic.
fn check_platform_value(platform: &Platform) {
    let normalized = platform.normalize();
    assert_eq!(
        normalized.normalize(),
        normalized,
        "normalize is not idempotent for {platform:?}"
    );
    assert_eq!(
        platform.to_string(),
        normalized.to_string(),
        "Display normalizes first"
    );
    let _ = platform.format_all();
}

/// Builds a platform straight from `os/arch/variant`, bypassing parsing,
/// as a descriptor's JSON could carry it.
fn raw_platform(spec: &str) -> Platform {
    let mut parts = spec.splitn(3, '/');
    let mut next = || parts.next().unwrap_or("").to_string();
    let (os, architecture, variant) = (next(), next(), next());
    Platform {
        os,
        architecture,
        variant: Some(variant).filter(|v| !v.is_empty()),
        os_version: None,
        os_features: Vec::new(),
    }
}

/// Checks manifest parsing. The first byte picks the declared media type
/// from [`DECLARED_MEDIA_TYPES`], the rest is the document: no panic; the
/// kind parsed agrees with the media type returned; a parsed document
/// serialises to JSON that parses back to the same descriptors.
pub fn check_manifest(input: &[u8]) {
    let Some((&selector, document)) = input.split_first() else {
        return;
    };
    let declared = DECLARED_MEDIA_TYPES[usize::from(selector) % DECLARED_MEDIA_TYPES.len()];
    if let Ok(config) = serde_json::from_slice::<ImageConfig>(document)
        && let Some(platform) = config.platform()
    {
        check_platform_value(&platform);
    }
    let Ok((parsed, media_type)) = manifest::parse(document, declared) else {
        return;
    };
    let kind = media_type::manifest_kind(&media_type);
    match (&parsed, kind) {
        (Manifest::Index(_), Some(ManifestKind::Index)) => {}
        (Manifest::Image(_), Some(ManifestKind::Manifest)) => {}
        _ => panic!("parsed as {parsed:?}, but the media type returned is `{media_type}`"),
    }
    check_manifest_round_trip(&parsed, &media_type);
}

/// Serialises a parsed manifest or index and parses it again, as writing a
/// descriptor to `index.json` and reading it back does.
fn check_manifest_round_trip(parsed: &Manifest, media_type: &str) {
    let bytes = match parsed {
        Manifest::Index(index) => serde_json::to_vec(index),
        Manifest::Image(image) => serde_json::to_vec(image),
    }
    .expect("a parsed document serialises");
    let (again, _) = manifest::parse(&bytes, media_type).unwrap_or_else(|e| {
        let text = String::from_utf8_lossy(&bytes);
        panic!("the document serialises to `{text}`, which does not parse: {e}")
    });
    match (parsed, &again) {
        (Manifest::Index(index), Manifest::Index(again)) => {
            assert_eq!(
                index.manifests, again.manifests,
                "index entries change on a round trip"
            );
            assert_eq!(
                index.extra, again.extra,
                "index fields change on a round trip"
            );
            assert_eq!(index.media_type, again.media_type);
            for entry in &index.manifests {
                check_descriptor(entry);
                let _ = index.attestations_of(&entry.digest).count();
            }
            let _ = index.platform_manifests().count();
        }
        (Manifest::Image(image), Manifest::Image(again)) => {
            assert_eq!(
                image.config, again.config,
                "the config changes on a round trip"
            );
            assert_eq!(
                image.layers, again.layers,
                "the layers change on a round trip"
            );
            assert_eq!(image.media_type, again.media_type);
            image.blobs().for_each(check_descriptor);
        }
        _ => panic!("{parsed:?} parses back as {again:?}"),
    }
}

fn check_descriptor(descriptor: &Descriptor) {
    if let Some(platform) = &descriptor.platform {
        check_platform_value(platform);
    }
    let _ = (descriptor.ref_name(), descriptor.attests());
}

/// Checks reading a cache. The input is `index.json`, optionally followed
/// by blobs, each after a [`BLOB_SEPARATOR`] and stored under its own
/// sha256 digest: opening the store, listing it, verifying it and reading
/// its images must return `Ok` or `Err`, and must change no file.
pub fn check_index_json(input: &[u8]) {
    let mut sections = split(input, BLOB_SEPARATOR);
    let index_json = sections.remove(0);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path().join("cache");
    let blobs = root.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).expect("create blobs/sha256");
    fs::write(
        root.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("write oci-layout");
    for blob in sections {
        fs::write(blobs.join(Digest::sha256_of(blob).hex()), blob).expect("write a blob");
    }
    fs::write(root.join("index.json"), index_json).expect("write index.json");
    let before = snapshot(&root.join("blobs"));

    if let Ok(store) = Store::open(&root) {
        read_everything(&store);
    }

    let after = fs::read(root.join("index.json")).expect("index.json is still there");
    assert!(after == index_json, "reading the cache changed index.json");
    assert!(
        snapshot(&root.join("blobs")) == before,
        "reading the cache changed blobs/"
    );
}

/// Reads the store every read-only way there is.
fn read_everything(store: &Store) {
    let _ = lkcache::list::list(store);
    let _ = store.verify(&[]);
    let Ok(index) = store.read_index() else {
        return;
    };
    let names: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.ref_name().map(str::to_string))
        .take(4)
        .collect();
    for name in &names {
        let _ = store.verify(std::slice::from_ref(name));
        if let Ok(Some(cached)) = store.cached(name) {
            let _ = cached.platforms(store);
        }
        let _ = store.image(name, &Platform::host());
    }
    for root in index.manifests.iter().take(4) {
        let _ = store.reach(root);
    }
}

/// Checks importing an archive into an empty cache: no panic; on success
/// every name points at its root and the cache verifies, and importing the
/// same archive again changes nothing; on failure `index.json` and
/// `blobs/` are as they were. An archive that needs a name (an image named
/// only by a tag) is imported again with one, as a user would.
pub fn check_import(archive: &[u8]) {
    if !expands_within(archive, MAX_ARCHIVE_BYTES) {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path().join("cache");
    let store = Store::open(&root).expect("an empty cache opens");
    let index_before = fs::read(root.join("index.json")).expect("read index.json");
    let blobs_before = snapshot(&root.join("blobs"));

    let mut options = ImportOptions::default();
    let mut result = lkcache::import::import(&store, archive, &options);
    if result.as_ref().is_err_and(ImportError::is_usage) {
        options.name = Some(IMPORT_NAME.parse().expect("a valid name"));
        result = lkcache::import::import(&store, archive, &options);
    }
    let images = match result {
        Ok(images) => images,
        Err(err) => {
            let index_after = fs::read(root.join("index.json")).expect("read index.json");
            assert!(
                index_after == index_before,
                "a failed import changed index.json: {err}"
            );
            let blobs_after = snapshot(&root.join("blobs"));
            assert!(
                blobs_after == blobs_before,
                "a failed import changed blobs/: {err}"
            );
            return;
        }
    };

    for image in &images {
        for name in &image.names {
            let found = store.lookup(name).expect("index.json reads");
            assert_eq!(
                found.map(|d| d.digest),
                Some(image.root.digest.clone()),
                "`{name}` does not name the root imported"
            );
        }
    }
    let problems = store.verify(&[]).expect("the cache verifies");
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(
        problems.is_empty(),
        "the imported cache has problems: {problems:?}"
    );
    let listing = lkcache::list::list(&store).expect("the cache lists");
    let broken: Vec<&str> = listing
        .images
        .iter()
        .filter(|entry| entry.is_broken)
        .map(|entry| entry.name.as_str())
        .collect();
    assert!(
        broken.is_empty(),
        "imported names list as broken: {broken:?}"
    );
    let index_after = fs::read(root.join("index.json")).expect("read index.json");
    let again = lkcache::import::import(&store, archive, &options);
    assert!(
        again.is_ok(),
        "a second import of the same archive fails: {again:?}"
    );
    let index_again = fs::read(root.join("index.json")).expect("read index.json");
    assert!(
        index_again == index_after,
        "a second import of the same archive changed index.json"
    );
}

/// Tells whether `archive`, when compressed whole with gzip or zstd,
/// expands to at most `limit` bytes (or fails to decompress, which import
/// reports); plain input always fits.
pub fn expands_within(archive: &[u8], limit: u64) -> bool {
    let decoder: Box<dyn Read + '_> = if archive.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(archive))
    } else if archive.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        match zstd::stream::read::Decoder::new(archive) {
            Ok(decoder) => Box::new(decoder),
            Err(_) => return true,
        }
    } else {
        return true;
    };
    let mut counted = 0u64;
    let mut limited = decoder.take(limit + 1);
    let mut buffer = [0u8; 1 << 14];
    loop {
        match limited.read(&mut buffer) {
            Ok(0) | Err(_) => return counted <= limit,
            Ok(n) => counted += n as u64,
        }
    }
}

/// Returns the longest prefix of `input` that is UTF-8: the text a string
/// parser is given.
pub fn text(input: &[u8]) -> &str {
    match std::str::from_utf8(input) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&input[..e.valid_up_to()]).expect("the valid prefix"),
    }
}

/// Splits `input` at every `separator`.
fn split<'a>(input: &'a [u8], separator: &[u8]) -> Vec<&'a [u8]> {
    let mut sections = Vec::new();
    let mut rest = input;
    // Comparing the first byte before the window keeps libFuzzer's memcmp
    // hook off all but a few positions.
    let is_separator = |w: &[u8]| w[0] == separator[0] && w == separator;
    while let Some(at) = rest.windows(separator.len()).position(is_separator) {
        sections.push(&rest[..at]);
        rest = &rest[at + separator.len()..];
    }
    sections.push(rest);
    sections
}

/// Returns every file under `dir` with its content; a missing directory is
/// empty.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.map(|e| e.expect("read a directory entry")) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let content = fs::read(&path).or_else(|e| match e.kind() {
                    io::ErrorKind::NotFound => Ok(Vec::new()),
                    _ => Err(e),
                });
                files.insert(path, content.expect("read a file"));
            }
        }
    }
    files
}
