//! Hostile input: a registry that serves wrong digests, an index that names
//! itself, a deeply nested index, absurd sizes and unknown media types;
//! references and platform strings from a quick generator; archives with
//! hard-link escapes, device nodes and duplicate entries (traversal,
//! absolute paths and symlink escapes are in `import.rs`). Each gives a
//! clear error, writes nothing outside the cache and loses nothing valid.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use lkcache::manifest::ANNOTATION_REF_NAME;
use lkcache::{Platform, Reference, media_type};

use crate::harness::archives::{self, Entry, Kind};
use crate::harness::http::{Answer, Server};
use crate::harness::images::{self, Blob, Image, Style};
use crate::harness::{Cache, Pusher, Registry, Run, TestResult, run_of};

use super::{Rng, check_cache, count, snapshot};

/// Starts a test double of a registry that serves fixed documents by
/// path: `manifests` maps `REPO/manifests/REF` and `blobs` maps a digest
/// (of any repository) to `(content type, bytes)`. No real registry
/// serves content that does not match its digest, which is the point.
fn hostile_registry(
    manifests: HashMap<String, (String, Vec<u8>)>,
    blobs: Vec<Blob>,
) -> TestResult<Server> {
    let blobs: HashMap<String, Vec<u8>> = blobs
        .into_iter()
        .map(|b| (b.digest.to_string(), b.bytes))
        .collect();
    let served = Arc::new((manifests, blobs));
    Server::start(move |request| {
        let path = request.path.trim_start_matches("/v2/");
        if let Some((content_type, body)) = served.0.get(path) {
            return Answer::with_status(200, content_type, body.clone());
        }
        if let Some((_, digest)) = path.split_once("/blobs/")
            && let Some(body) = served.1.get(digest)
        {
            return Answer::with_status(200, "application/octet-stream", body.clone());
        }
        if path.is_empty() {
            return Answer::json(&json!({}));
        }
        Answer::with_status(
            404,
            "application/json",
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#.to_vec(),
        )
    })
}

/// A hostile case: what the double serves, and what pulling `hostile:1`
/// may do (`ok_allowed`: succeeding is acceptable too).
struct Case {
    label: &'static str,
    manifests: Vec<(String, Blob)>,
    blobs: Vec<Blob>,
    ok_allowed: bool,
}

fn tag_and_digests(root: &Blob, others: &[&Blob]) -> Vec<(String, Blob)> {
    let mut served = vec![("hostile/manifests/1".to_string(), root.clone())];
    for blob in std::iter::once(root).chain(others.iter().copied()) {
        served.push((format!("hostile/manifests/{}", blob.digest), blob.clone()));
    }
    served
}

fn content(image: &Image) -> Vec<Blob> {
    let mut blobs: Vec<Blob> = image.layers.iter().map(|l| l.blob.clone()).collect();
    blobs.push(image.config.clone());
    blobs
}

/// Returns `image` with its first layer's descriptor changed by `edit`.
fn manifest_with_layer(image: &Image, edit: impl Fn(&mut Value)) -> TestResult<Blob> {
    let mut document: Value = serde_json::from_slice(&image.manifest.bytes)?;
    edit(&mut document["layers"][0]);
    Ok(Blob::new(
        &image.manifest.media_type,
        serde_json::to_vec(&document)?,
    ))
}

/// Returns an OCI index over `children` (descriptors).
fn index_of(children: Vec<Value>) -> Blob {
    let document =
        json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": children});
    Blob::new(
        media_type::OCI_INDEX,
        serde_json::to_vec(&document).expect("json"),
    )
}

fn child(blob: &Blob) -> Value {
    let mut descriptor = blob.descriptor();
    descriptor["platform"] = json!({"os": "linux", "architecture": "amd64"});
    descriptor
}

fn cases() -> TestResult<Vec<Case>> {
    let layer = images::layer(Style::Oci, &[("h", images::text(950, 5000))])?;
    let layer_size = layer.blob.bytes.len() as u64;
    let image = images::image(Style::Oci, "linux/amd64", vec![layer]);
    let mut cases = Vec::new();

    // A child manifest whose bytes do not match the index's descriptor.
    let index = index_of(vec![child(&image.manifest)]);
    let mut forged = image.manifest.clone();
    forged.bytes.extend_from_slice(b"\n");
    let mut served = tag_and_digests(&index, &[]);
    served.push((
        format!("hostile/manifests/{}", image.manifest.digest),
        forged,
    ));
    cases.push(Case {
        label: "child manifest with wrong digest",
        manifests: served,
        blobs: content(&image),
        ok_allowed: false,
    });

    // A tag whose index names a child with the digest of the index
    // itself; the double answers every manifest digest with that index.
    let mut self_child = child(&image.manifest);
    self_child["mediaType"] = json!(media_type::OCI_INDEX);
    let looping = index_of(vec![self_child.clone()]);
    let served = vec![
        ("hostile/manifests/1".to_string(), looping.clone()),
        (
            format!("hostile/manifests/{}", image.manifest.digest),
            looping.clone(),
        ),
        (
            format!("hostile/manifests/{}", looping.digest),
            looping.clone(),
        ),
    ];
    cases.push(Case {
        label: "index naming itself",
        manifests: served,
        blobs: vec![],
        ok_allowed: false,
    });

    // An index nested 64 deep above a real manifest.
    let mut nested = vec![image.manifest.clone()];
    for _ in 0..64 {
        let mut descriptor = child(nested.last().ok_or("nested")?);
        descriptor["mediaType"] = json!(nested.last().ok_or("nested")?.media_type);
        nested.push(index_of(vec![descriptor]));
    }
    let top = nested.last().ok_or("nested")?.clone();
    let others: Vec<&Blob> = nested.iter().collect();
    cases.push(Case {
        label: "index nested 64 deep",
        manifests: tag_and_digests(&top, &others),
        blobs: content(&image),
        ok_allowed: false,
    });

    for (label, size) in [
        ("layer of 2^62 bytes", json!(1u64 << 62)),
        ("layer of -1 bytes", json!(-1)),
        ("layer of u64::MAX bytes", json!(u64::MAX)),
        ("layer of 0 bytes", json!(0)),
        ("layer 10 bytes smaller than served", json!(layer_size - 10)),
        ("layer 1.5 bytes", json!(1.5)),
        ("layer size as a string", json!("100")),
    ] {
        let manifest = manifest_with_layer(&image, |d| d["size"] = size.clone())?;
        cases.push(Case {
            label,
            manifests: tag_and_digests(&manifest, &[]),
            blobs: content(&image),
            ok_allowed: false,
        });
    }
    let mut huge_child = child(&image.manifest);
    huge_child["size"] = json!(1u64 << 62);
    let index = index_of(vec![huge_child]);
    cases.push(Case {
        label: "child manifest of 2^62 bytes",
        manifests: tag_and_digests(&index, &[&image.manifest]),
        blobs: content(&image),
        ok_allowed: false,
    });

    let mut unknown: Value = serde_json::from_slice(&image.manifest.bytes)?;
    unknown["mediaType"] = json!("application/vnd.example.unknown+json");
    let unknown = Blob::new(
        "application/vnd.example.unknown+json",
        serde_json::to_vec(&unknown)?,
    );
    cases.push(Case {
        label: "unknown manifest media type",
        manifests: tag_and_digests(&unknown, &[]),
        blobs: content(&image),
        ok_allowed: false,
    });
    let mut unknown_child = child(&image.manifest);
    unknown_child["mediaType"] = json!("application/vnd.example.unknown+json");
    let index = index_of(vec![unknown_child]);
    cases.push(Case {
        label: "unknown child media type",
        manifests: tag_and_digests(&index, &[&image.manifest]),
        blobs: content(&image),
        ok_allowed: true,
    });
    let weird_layer = manifest_with_layer(&image, |d| {
        d["mediaType"] = json!("application/vnd.example.weird")
    })?;
    cases.push(Case {
        label: "unknown layer media type",
        manifests: tag_and_digests(&weird_layer, &[]),
        blobs: content(&image),
        ok_allowed: true,
    });
    Ok(cases)
}

/// A cache holding one valid image from the real registry, and that
/// image's name.
fn cache_with_a_kept_image(registry: &Registry) -> TestResult<(Cache, String)> {
    let layer = images::layer(Style::Oci, &[("kept", images::text(960, 4000))])?;
    let image = images::image(Style::Oci, "linux/amd64", vec![layer]);
    Pusher::new(registry.addr()).image("kept", "1", &image)?;
    let name = format!("{}/kept:1", registry.addr());
    let cache = Cache::new()?;
    cache.run(&["pull", &name])?.ok()?;
    Ok((cache, name))
}

/// Runs `lkcache ARGS` in an empty working directory with an empty home,
/// and checks that nothing was written there.
fn run_contained(cache: &Cache, args: &[&str]) -> TestResult<Run> {
    let cwd = tempfile::tempdir()?;
    let home = tempfile::tempdir()?;
    let outside_before = entries(cache.root().parent().ok_or("parent")?)?;
    let output = cache
        .command(args)
        .current_dir(cwd.path())
        .env("HOME", home.path())
        .env("TMPDIR", home.path())
        .output()?;
    let run = run_of(output);
    assert!(
        entries(cwd.path())?.is_empty(),
        "{args:?} wrote into its working directory"
    );
    assert!(
        entries(home.path())?.is_empty(),
        "{args:?} wrote into HOME or TMPDIR"
    );
    let outside_after = entries(cache.root().parent().ok_or("parent")?)?;
    assert_eq!(
        outside_before, outside_after,
        "{args:?} wrote beside the cache"
    );
    Ok(run)
}

fn entries(dir: &Path) -> TestResult<BTreeSet<String>> {
    Ok(fs::read_dir(dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

#[test]
fn hostile_registries_give_clear_errors_and_lose_nothing() -> TestResult {
    let registry = Registry::start()?;
    let (cache, kept) = cache_with_a_kept_image(&registry)?;
    let mut failures = Vec::new();
    let all = cases()?;
    let tried = all.len();

    for case in all {
        let before = snapshot(&cache)?;
        let server = hostile_registry(
            case.manifests
                .into_iter()
                .map(|(path, blob)| (path, (blob.media_type.clone(), blob.bytes)))
                .collect(),
            case.blobs,
        )?;
        let name = format!("{}/hostile:1", server.addr());
        let run = run_contained(&cache, &["pull", "--platform", "linux/amd64", &name])?;
        let clear =
            run.status == 1 && run.stderr.contains("error:") && !run.stderr.contains("panicked");
        if !(clear || case.ok_allowed && run.status == 0) {
            failures.push(format!("{}: {run:?}", case.label));
        }
        if run.status != 0 && snapshot(&cache)?.index_json != before.index_json {
            failures.push(format!(
                "{}: index.json changed by a failed pull",
                case.label
            ));
        }
        check_cache(&cache, case.label)?;
        cache.run(&["verify", &kept])?.ok()?;
        if run.status == 0 {
            cache.run(&["rm", &name])?.ok()?;
        }
        eprintln!(
            "{}: exit {}: {}",
            case.label,
            run.status,
            run.stderr.trim_end().replace('\n', " | ")
        );
    }
    eprintln!("hostile registries: {tried} cases");
    assert!(failures.is_empty(), "{failures:#?}");
    Ok(())
}

const VALID_REFERENCES: [&str; 8] = [
    "alpine",
    "docker.io/library/alpine:3.20",
    "localhost:5000/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "[::1]:5000/x:y",
    "user/app",
    "a.b.c/d_e-f/g__h:tag.1",
    "127.0.0.1:5000/deep/er/path:v1.2-rc_3",
    "ghcr.io/o/r:t@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
];

const VALID_PLATFORMS: [&str; 6] = [
    "linux/amd64",
    "linux/arm64/v8",
    "linux/arm/v7",
    "aarch64",
    "windows/amd64",
    "darwin/arm64",
];

/// Returns a random string: random bytes, mostly from the alphabet of
/// references and platforms, or a mutation of one of `valid`.
fn generate(rng: &mut Rng, valid: &[&str]) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCZ0123456789:/@._-[]+ ";
    let mut bytes: Vec<u8> = if rng.below(2) == 0 {
        (0..rng.below(80))
            .map(|_| match rng.below(8) {
                0 => rng.next_u64() as u8,
                _ => ALPHABET[rng.below(ALPHABET.len())],
            })
            .collect()
    } else {
        valid[rng.below(valid.len())].as_bytes().to_vec()
    };
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(5) {
            0 if at < bytes.len() => {
                bytes.remove(at);
            }
            1 => bytes.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
            2 => bytes.insert(at, rng.next_u64() as u8),
            3 if at < bytes.len() => bytes[at] = bytes[at].to_ascii_uppercase(),
            _ => {
                let copy = bytes[at..].to_vec();
                bytes.extend_from_slice(&copy[..copy.len().min(64)]);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether the command line can carry `s` as an argument of its own.
fn is_plain_argument(s: &str) -> bool {
    !s.contains('\0') && !s.starts_with('-') && !s.is_empty()
}

#[test]
fn generated_references_and_platforms_never_panic_and_bad_ones_are_usage_errors() -> TestResult {
    let mut rng = Rng::new();
    let inputs = count(3000, 20_000);
    let mut rejected_references = Vec::new();
    let mut rejected_platforms = Vec::new();
    for _ in 0..inputs {
        let reference = generate(&mut rng, &VALID_REFERENCES);
        let parsed = std::panic::catch_unwind(|| reference.parse::<Reference>().is_ok());
        let parsed = parsed.map_err(|_| {
            format!(
                "parsing reference {reference:?} panicked (seed {})",
                rng.seed
            )
        })?;
        if !parsed && is_plain_argument(&reference) {
            rejected_references.push(reference);
        }
        let platform = generate(&mut rng, &VALID_PLATFORMS);
        let parsed = std::panic::catch_unwind(|| platform.parse::<Platform>().is_ok());
        let parsed = parsed
            .map_err(|_| format!("parsing platform {platform:?} panicked (seed {})", rng.seed))?;
        if !parsed && is_plain_argument(&platform) {
            rejected_platforms.push(platform);
        }
    }

    let cache = Cache::new()?;
    let processes = count(25, 300);
    for reference in rejected_references.iter().take(processes) {
        let run = cache.run(&["pull", reference])?;
        assert!(
            run.status == 2 && run.stderr.contains("invalid image reference"),
            "pull {reference:?} (seed {}): {run:?}",
            rng.seed
        );
    }
    for platform in rejected_platforms.iter().take(processes) {
        let run = cache.run(&["pull", "--platform", platform, "alpine"])?;
        assert!(
            run.status == 2 && run.stderr.contains("invalid platform"),
            "--platform {platform:?} (seed {}): {run:?}",
            rng.seed
        );
    }
    assert!(!cache.root().exists(), "a usage error created the cache");
    eprintln!(
        "generated {inputs} references ({} rejected) and {inputs} platforms ({} rejected); {processes} of each run as `lkcache pull`",
        rejected_references.len(),
        rejected_platforms.len()
    );
    Ok(())
}

/// An archive entry the harness's `write_tar` cannot write.
enum Raw {
    Plain(Entry),
    HardLink { name: String, target: String },
    Device { name: String },
}

fn write_raw_tar(entries: &[Raw]) -> TestResult<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1_700_000_000);
        header.set_mode(0o644);
        let (name, content): (&str, &[u8]) = match entry {
            Raw::Plain(Entry {
                name,
                kind: Kind::File(content),
            }) => {
                header.set_entry_type(tar::EntryType::Regular);
                (name, content)
            }
            Raw::Plain(other) => return Err(format!("unsupported entry {}", other.name).into()),
            Raw::HardLink { name, target } => {
                header.set_entry_type(tar::EntryType::Link);
                header.as_gnu_mut().ok_or("gnu")?.linkname[..target.len()]
                    .copy_from_slice(target.as_bytes());
                (name, &[])
            }
            Raw::Device { name } => {
                header.set_entry_type(tar::EntryType::Char);
                header.set_device_major(1)?;
                header.set_device_minor(3)?;
                (name, &[])
            }
        };
        header.set_size(content.len() as u64);
        header.as_gnu_mut().ok_or("gnu")?.name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        builder.append(&header, content)?;
    }
    Ok(builder.into_inner()?)
}

#[test]
fn archives_with_hard_link_escapes_devices_and_duplicates_lose_nothing() -> TestResult {
    let image = images::image(
        Style::Oci,
        "linux/amd64",
        vec![images::layer(Style::Oci, &[("a", images::text(970, 900))])?],
    );
    let layout = archives::oci_layout(
        &image.manifest,
        json!({ANNOTATION_REF_NAME: "example.com/hostile:1"}),
        &archives::image_blobs(&image),
    );
    let layer_entry = archives::blob_entry(&image.layers[0].blob);
    let plain = |entries: &[Entry]| entries.iter().cloned().map(Raw::Plain).collect::<Vec<_>>();
    let with = |at: usize, extra: Raw| {
        let mut entries = plain(&layout);
        entries.insert(at, extra);
        entries
    };
    let mut wrong = image.layers[0].blob.bytes.clone();
    wrong[0] ^= 1;
    let other_index = json!({"schemaVersion": 2, "manifests": [image.manifest.descriptor()]});
    let cases: Vec<(&str, Vec<Raw>, bool)> = vec![
        (
            "hard link out of the archive",
            with(
                1,
                Raw::HardLink {
                    name: "escape".into(),
                    target: "../../../etc/passwd".into(),
                },
            ),
            false,
        ),
        (
            "hard link to an absolute path",
            with(
                1,
                Raw::HardLink {
                    name: "escape".into(),
                    target: "/etc/passwd".into(),
                },
            ),
            false,
        ),
        (
            "blob that is a hard link out of the archive",
            {
                let mut entries: Vec<Raw> = plain(&layout)
                    .into_iter()
                    .filter(|e| !matches!(e, Raw::Plain(p) if p.name == layer_entry))
                    .collect();
                entries.push(Raw::HardLink {
                    name: layer_entry.clone(),
                    target: "../../../etc/passwd".into(),
                });
                entries
            },
            false,
        ),
        (
            "device node",
            with(
                1,
                Raw::Device {
                    name: "dev-null".into(),
                },
            ),
            true,
        ),
        (
            "blob that is a device node",
            {
                let mut entries: Vec<Raw> = plain(&layout)
                    .into_iter()
                    .filter(|e| !matches!(e, Raw::Plain(p) if p.name == layer_entry))
                    .collect();
                entries.push(Raw::Device {
                    name: layer_entry.clone(),
                });
                entries
            },
            false,
        ),
        (
            "a blob twice, the second wrong",
            with(layout.len(), Raw::Plain(Entry::file(&layer_entry, wrong))),
            false,
        ),
        (
            "index.json twice, the second without names",
            with(
                layout.len(),
                Raw::Plain(Entry::file("index.json", serde_json::to_vec(&other_index)?)),
            ),
            true,
        ),
    ];

    let mut failures = Vec::new();
    let tried = cases.len();
    for (label, entries, ok_allowed) in cases {
        let cache = Cache::new()?;
        let kept = images::image(
            Style::Oci,
            "linux/amd64",
            vec![images::layer(
                Style::Oci,
                &[("kept", images::text(971, 500))],
            )?],
        );
        let kept_layout = archives::oci_layout(
            &kept.manifest,
            json!({ANNOTATION_REF_NAME: "example.com/kept:1"}),
            &archives::image_blobs(&kept),
        );
        let dir = tempfile::tempdir()?;
        let kept_file =
            archives::write_file(dir.path(), "kept.tar", &archives::write_tar(&kept_layout)?)?;
        cache.run(&["import", &kept_file])?.ok()?;
        let before = snapshot(&cache)?;
        let file = archives::write_file(dir.path(), "hostile.tar", &write_raw_tar(&entries)?)?;

        let run = run_contained(&cache, &["import", &file])?;

        let clear =
            run.status == 1 && run.stderr.contains("error:") && !run.stderr.contains("panicked");
        if !(clear || ok_allowed && run.status == 0) {
            failures.push(format!("{label}: {run:?}"));
        }
        if run.status != 0 && snapshot(&cache)? != before {
            failures.push(format!("{label}: a failed import changed the cache"));
        }
        check_cache(&cache, label)?;
        cache.run(&["verify", "example.com/kept:1"])?.ok()?;
        eprintln!(
            "{label}: exit {}: {}",
            run.status,
            run.stderr.trim_end().replace('\n', " | ")
        );
    }
    eprintln!("hostile archives: {tried} cases");
    assert!(failures.is_empty(), "{failures:#?}");
    Ok(())
}
